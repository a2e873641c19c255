//! Graceful shutdown, mini-redis style: every connection task holds a [`Shutdown`]; the
//! accept loop's [`ShutdownController`] tells them all to stop, then waits until the last
//! one is dropped (open work drained) or the grace period ends.

use std::time::Duration;

use tokio::sync::{mpsc, watch};

/// Held by every connection and tunnel task: a signal to stop, and (by existing) open work.
#[derive(Debug, Clone)]
pub struct Shutdown {
    notify: watch::Receiver<bool>,
    /// Never sent on; its drop tells the controller this piece of work is over.
    _work: mpsc::Sender<()>,
}

impl Shutdown {
    /// Resolves once shutdown has begun.
    pub async fn recv(&mut self) {
        let _ = self.notify.wait_for(|stop| *stop).await;
    }
}

/// Owned by the accept loop.
#[derive(Debug)]
pub struct ShutdownController {
    notify: watch::Sender<bool>,
    work_tx: mpsc::Sender<()>,
    work_rx: mpsc::Receiver<()>,
}

impl Default for ShutdownController {
    fn default() -> Self {
        Self::new()
    }
}

impl ShutdownController {
    pub fn new() -> ShutdownController {
        let (notify, _) = watch::channel(false);
        let (work_tx, work_rx) = mpsc::channel(1);
        ShutdownController {
            notify,
            work_tx,
            work_rx,
        }
    }

    /// A handle for a new piece of work.
    pub fn handle(&self) -> Shutdown {
        Shutdown {
            notify: self.notify.subscribe(),
            _work: self.work_tx.clone(),
        }
    }

    /// Signals every handle, then waits up to `grace` for all of them to be dropped.
    /// Returns true when everything finished in time.
    pub async fn shutdown(self, grace: Duration) -> bool {
        let ShutdownController {
            notify,
            work_tx,
            mut work_rx,
        } = self;
        let _ = notify.send(true);
        drop(work_tx);
        tokio::time::timeout(grace, work_rx.recv()).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_work_then_times_out() {
        let controller = ShutdownController::new();
        let mut handle = controller.handle();
        let task = tokio::spawn(async move {
            handle.recv().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        });
        assert!(controller.shutdown(Duration::from_secs(5)).await);
        task.await.unwrap();

        let controller = ShutdownController::new();
        let stuck = controller.handle();
        assert!(!controller.shutdown(Duration::from_millis(20)).await);
        drop(stuck);
    }
}

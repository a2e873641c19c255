//! stderr that can never stall or crash the proxy (bounded: [`QUEUE`] pieces and
//! [`QUEUE_BYTES`] bytes waiting). One thread owns it; everyone else (the
//! live log, the log lines of `tracing`, the banner and the exit table) hands it text through
//! a bounded queue without waiting. When the terminal is paused or the pipe is full, the
//! queue fills and further text is dropped and counted; when the reader has gone (`2>&1 |
//! head`, EPIPE), stderr is switched off for the rest of the session. The session files are
//! written by the recorder as before, whatever happens here.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// How many pieces of text (a batch of live-log lines, one log line) may wait for stderr.
pub const QUEUE: usize = 1024;
/// How many bytes of text may wait for stderr (a paused terminal holds at most this much).
pub const QUEUE_BYTES: usize = 1 << 20;

/// The process's one stderr writer, started on first use.
pub fn get() -> &'static Out {
    static OUT: OnceLock<Out> = OnceLock::new();
    OUT.get_or_init(|| Out::start(io::stderr()))
}

/// A handle that queues text for stderr.
#[derive(Debug, Clone)]
pub struct Out {
    tx: SyncSender<Piece>,
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    /// Bytes queued and not yet written.
    queued: AtomicUsize,
    /// Pieces dropped because the queue was full.
    dropped: AtomicU64,
    /// The reader went away: nothing more is queued.
    off: AtomicBool,
}

enum Piece {
    Text(String),
    /// Answered once everything queued before it has been written (or dropped).
    Flush(mpsc::Sender<()>),
}

impl Out {
    /// Starts the writer thread over `sink` (stderr, or a test's pipe).
    pub fn start(sink: impl Write + Send + 'static) -> Out {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let shared = Arc::new(Shared::default());
        let writer_shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("diagproxy-stderr".into())
            .spawn(move || write_all(sink, rx, &writer_shared));
        if spawned.is_err() {
            shared.off.store(true, Ordering::Relaxed);
        }
        Out { tx, shared }
    }

    /// Queues `text`; never waits. Dropped (and counted) when the queue is full.
    pub fn say(&self, text: String) {
        if text.is_empty() || self.shared.off.load(Ordering::Relaxed) {
            return;
        }
        let len = text.len();
        if self.shared.queued.fetch_add(len, Ordering::AcqRel) + len > QUEUE_BYTES {
            self.shared.queued.fetch_sub(len, Ordering::AcqRel);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match self.tx.try_send(Piece::Text(text)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.shared.queued.fetch_sub(len, Ordering::AcqRel);
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => self.shared.off.store(true, Ordering::Relaxed),
        }
    }

    /// Waits at most `limit` for what was queued so far to be written: used before exit, so
    /// the exit table is seen when stderr works and a stalled one cannot hang the exit.
    pub fn flush(&self, limit: Duration) {
        let (done, wait) = mpsc::channel();
        let sent = match self.tx.try_send(Piece::Flush(done)) {
            Ok(()) => true,
            Err(TrySendError::Full(piece)) => {
                // Full: wait for room, but no longer than the limit.
                let tx = self.tx.clone();
                std::thread::spawn(move || tx.send(piece));
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        };
        if sent {
            let _ = wait.recv_timeout(limit);
        }
    }

    /// Pieces of text dropped because stderr did not keep up.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Whether stderr was switched off (its reader went away).
    pub fn is_off(&self) -> bool {
        self.shared.off.load(Ordering::Relaxed)
    }
}

fn write_all(mut sink: impl Write, rx: Receiver<Piece>, shared: &Shared) {
    for piece in rx {
        match piece {
            Piece::Text(text) => {
                if !shared.off.load(Ordering::Relaxed) {
                    let written = sink.write_all(text.as_bytes()).and_then(|()| sink.flush());
                    if written.is_err() {
                        // EPIPE and the like: the reader is gone; the live log is off.
                        shared.off.store(true, Ordering::Relaxed);
                    }
                }
                shared.queued.fetch_sub(text.len(), Ordering::AcqRel);
            }
            Piece::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

/// `tracing`'s writer: each log line goes through the same queue.
impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Out {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line {
            out: self,
            buf: Vec::new(),
        }
    }
}

/// One log line being formatted; queued when dropped.
pub struct Line<'a> {
    out: &'a Out,
    buf: Vec<u8>,
}

impl Write for Line<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Line<'_> {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.buf).into_owned();
        self.out.say(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that blocks until told, then fails as a closed pipe would.
    struct Stalled(mpsc::Receiver<()>);

    impl Write for Stalled {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            let _ = self.0.recv();
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_stderr_drops_and_counts_and_a_closed_one_switches_off() {
        let (release, stalled) = mpsc::channel();
        let out = Out::start(Stalled(stalled));
        // The writer holds one piece in a stalled write; the queue takes QUEUE more.
        for i in 0..QUEUE + 100 {
            out.say(format!("line {i}\n"));
        }
        assert!(out.dropped() >= 99, "dropped {}", out.dropped());
        // A flush with a stalled writer returns after its limit, without hanging.
        out.flush(Duration::from_millis(50));
        release.send(()).unwrap();
        drop(release); // every later write fails at once (closed pipe)
        out.flush(Duration::from_secs(10));
        assert!(out.is_off());
        let before = out.dropped();
        out.say("after the reader left\n".into());
        assert_eq!(out.dropped(), before, "off: not queued, not counted");
    }

    #[test]
    fn text_arrives_in_order() {
        #[derive(Clone, Default)]
        struct Shared(Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, d: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(d);
                Ok(d.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let sink = Shared::default();
        let out = Out::start(sink.clone());
        for i in 0..10 {
            out.say(format!("{i}\n"));
        }
        out.flush(Duration::from_secs(10));
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text, "0\n1\n2\n3\n4\n5\n6\n7\n8\n9\n");
        assert_eq!(out.dropped(), 0);
    }

    #[test]
    fn the_queue_holds_at_most_its_bytes() {
        let (_release, stalled) = mpsc::channel::<()>();
        let out = Out::start(Stalled(stalled));
        let piece = "x".repeat(64 * 1024);
        for _ in 0..100 {
            out.say(piece.clone());
        }
        let queued = out.shared.queued.load(Ordering::Relaxed);
        assert!(queued <= QUEUE_BYTES, "{queued}");
        assert!(out.dropped() >= 100 - (QUEUE_BYTES / piece.len()) as u64 - 1);
    }
}

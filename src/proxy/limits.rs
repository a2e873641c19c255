//! The limits on downstream connections, before anything is parsed: how many may be open
//! at once (`--max-connections`), and how long one may take to send a request head
//! (`--header-timeout`). Each time a limit acts it is counted for the session's summary,
//! and said in the log at most once a second.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use tokio::net::TcpStream;

use crate::session::event::LimitCounts;

/// What a refused connection is told when it can be told cheaply (one non-blocking write).
const OVERLOADED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nX-Diagproxy-Error: overloaded\r\nContent-Type: text/plain\r\nContent-Length: 57\r\nConnection: close\r\n\r\ndiagproxy: too many connections open (--max-connections)\n";

#[derive(Debug)]
pub struct Limits {
    /// `--max-connections`.
    max: usize,
    /// Downstream connections open now.
    open: AtomicUsize,
    header_timeouts: AtomicU64,
    refused: AtomicU64,
    /// When a refusal was last logged (ms after `started`), so a flood logs once a second.
    last_logged: AtomicU64,
    started: Instant,
}

impl Limits {
    pub fn new(max_connections: usize) -> Limits {
        Limits {
            max: max_connections,
            open: AtomicUsize::new(0),
            header_timeouts: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            last_logged: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    /// Counts a new connection in, or says it is one too many.
    pub fn admit(&self) -> bool {
        let before = self.open.fetch_add(1, Ordering::AcqRel);
        if before < self.max {
            return true;
        }
        self.open.fetch_sub(1, Ordering::AcqRel);
        false
    }

    /// A connection admitted by [`Limits::admit`] has ended.
    pub fn release(&self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }

    /// Refuses a connection beyond the limit: a 503 if the socket takes it at once, then
    /// closed. Never waits.
    pub fn refuse(&self, stream: TcpStream) {
        let _ = stream.try_write(OVERLOADED);
        let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.last_logged.load(Ordering::Relaxed);
        if (refused == 1 || now.saturating_sub(last) >= 1000)
            && self
                .last_logged
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                "{} connections open: refusing new ones (--max-connections; {refused} refused so far)",
                self.max
            );
        }
    }

    /// A downstream connection was closed by `--header-timeout`.
    pub fn header_timed_out(&self) {
        self.header_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    pub fn counts(&self) -> LimitCounts {
        LimitCounts {
            header_timeouts: self.header_timeouts.load(Ordering::Relaxed),
            connections_refused: self.refused.load(Ordering::Relaxed),
            // The recorder fills these in when it writes the session's end.
            ..LimitCounts::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_stops_at_the_limit_and_resumes_after_a_release() {
        let limits = Limits::new(2);
        assert!(limits.admit() && limits.admit());
        assert!(!limits.admit());
        limits.release();
        assert!(limits.admit());
        assert_eq!(limits.open.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn the_overload_answer_is_well_formed() {
        let text = std::str::from_utf8(OVERLOADED).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains("Content-Length: 57"));
        assert_eq!(body.len(), 57, "{body:?}");
    }
}

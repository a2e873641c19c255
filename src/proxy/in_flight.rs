//! The requests waiting for their answer, so a session that ends while some still wait
//! records each one with what was known (who asked for what, since when) instead of losing
//! it. Bounded by `--max-connections`: a connection carries one request at a time on the
//! HTTP/1.1 paths, and an HTTP/2 connection's streams end with it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use crate::session::event::{Downstream, RequestEvent, Timings};

/// What is kept of a request in flight: enough for its event.
#[derive(Debug, Clone)]
pub struct Waiting {
    pub ts: String,
    pub method: String,
    pub url: String,
    pub host: String,
    pub port: u16,
    pub allowlist: Option<String>,
    pub downstream: Downstream,
    pub intercepted: bool,
    pub started: Instant,
}

/// The registry.
#[derive(Debug, Default)]
pub struct InFlight {
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, Waiting>>,
}

impl InFlight {
    /// Registers a request as it begins; the id takes it off again.
    pub fn add(&self, event: &RequestEvent) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let waiting = Waiting {
            ts: event.ts.clone(),
            method: event.method.clone(),
            url: event.url.clone(),
            host: event.host.clone(),
            port: event.port,
            allowlist: event.allowlist.clone(),
            downstream: event.downstream.clone(),
            intercepted: event.intercepted,
            started: Instant::now(),
        };
        if let Ok(mut map) = self.waiting.lock() {
            map.insert(id, waiting);
        }
        id
    }

    pub fn remove(&self, id: u64) {
        if let Ok(mut map) = self.waiting.lock() {
            map.remove(&id);
        }
    }

    /// Every request still waiting, as the event to record for it (oldest first).
    pub fn unfinished(&self) -> Vec<RequestEvent> {
        let mut waiting: Vec<Waiting> = match self.waiting.lock() {
            Ok(mut map) => map.drain().map(|(_, w)| w).collect(),
            Err(_) => Vec::new(),
        };
        waiting.sort_by_key(|w| w.started);
        waiting.into_iter().map(event_of).collect()
    }
}

/// The event of a request the session ended on: no status, not complete, and why.
fn event_of(w: Waiting) -> RequestEvent {
    let age = w.started.elapsed();
    RequestEvent {
        ts: w.ts,
        method: w.method,
        url: w.url,
        host: w.host,
        port: w.port,
        allowlist: w.allowlist,
        server_ip: None,
        route: Default::default(),
        downstream: w.downstream,
        status: None,
        content_type: None,
        reused: false,
        timings: Timings {
            total_ms: crate::clock::ms(age),
            ..Timings::default()
        },
        bytes_up: 0,
        bytes_down: 0,
        complete: false,
        intercepted: w.intercepted,
        upstream_protocol: None,
        headers: None,
        findings: Vec::new(),
        failure: None,
        block_page_body: None,
        body: None,
        unfinished: Some(format!(
            "still waiting for the answer when the session ended, after {}",
            crate::session::livelog::duration(crate::clock::ms(age))
        )),
    }
}

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

/// How many entries of answered requests are kept for the next requests to fill in place,
/// and how much text one may hold to be kept: at most 64 × 1 KiB.
const SPARES: usize = 64;
const SPARE_TEXT: usize = 1024;

impl Waiting {
    fn of(event: &RequestEvent) -> Waiting {
        Waiting {
            ts: event.ts.clone(),
            method: event.method.clone(),
            url: event.url.clone(),
            host: event.host.clone(),
            port: event.port,
            allowlist: event.allowlist.clone(),
            downstream: event.downstream.clone(),
            intercepted: event.intercepted,
            started: Instant::now(),
        }
    }

    /// This entry, now for `event`: `clone_from` writes into the strings' buffers.
    fn refill(&mut self, event: &RequestEvent) {
        self.ts.clone_from(&event.ts);
        self.method.clone_from(&event.method);
        self.url.clone_from(&event.url);
        self.host.clone_from(&event.host);
        self.port = event.port;
        self.allowlist.clone_from(&event.allowlist);
        self.downstream.addr.clone_from(&event.downstream.addr);
        let agent = &event.downstream.user_agent;
        self.downstream.user_agent.clone_from(agent);
        self.intercepted = event.intercepted;
        self.started = Instant::now();
    }

    /// The bytes its strings hold on to.
    fn text_capacity(&self) -> usize {
        let agent = self
            .downstream
            .user_agent
            .as_ref()
            .map_or(0, String::capacity);
        let allowlist = self.allowlist.as_ref().map_or(0, String::capacity);
        self.ts.capacity()
            + self.method.capacity()
            + self.url.capacity()
            + self.host.capacity()
            + self.downstream.addr.capacity()
            + agent
            + allowlist
    }
}

/// The registry. Registering runs for every request, so an answered request's entry is
/// kept (up to [`SPARES`]) and the next request's strings are copied into its buffers: a
/// request costs no allocation here.
#[derive(Debug, Default)]
pub struct InFlight {
    next: AtomicU64,
    registry: Mutex<Registry>,
}

#[derive(Debug, Default)]
struct Registry {
    waiting: HashMap<u64, Waiting>,
    spare: Vec<Waiting>,
}

impl InFlight {
    /// Registers a request as it begins; the id takes it off again.
    pub fn add(&self, event: &RequestEvent) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut registry) = self.registry.lock() {
            let waiting = match registry.spare.pop() {
                Some(mut spare) => {
                    spare.refill(event);
                    spare
                }
                None => Waiting::of(event),
            };
            registry.waiting.insert(id, waiting);
        }
        id
    }

    pub fn remove(&self, id: u64) {
        if let Ok(mut registry) = self.registry.lock() {
            let Some(done) = registry.waiting.remove(&id) else {
                return;
            };
            if registry.spare.len() < SPARES && done.text_capacity() <= SPARE_TEXT {
                registry.spare.push(done);
            }
        }
    }

    /// Every request still waiting, as the event to record for it (oldest first).
    pub fn unfinished(&self) -> Vec<RequestEvent> {
        let mut waiting: Vec<Waiting> = match self.registry.lock() {
            Ok(mut registry) => registry.waiting.drain().map(|(_, w)| w).collect(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn event(host: &str, agent: Option<&str>, allowlist: Option<&str>) -> RequestEvent {
        let mut event = RequestEvent::get(host, "/path");
        event.downstream.addr = "127.0.0.1:5000".into();
        event.downstream.user_agent = agent.map(String::from);
        event.allowlist = allowlist.map(String::from);
        event
    }

    /// A kept entry filled for the next request says nothing of the one before it: every
    /// field is the new request's, an absent user agent or allowlist entry included.
    #[test]
    fn an_entry_filled_again_forgets_the_request_before_it() {
        let in_flight = InFlight::default();
        let mut first = event("chatgpt.com", Some("Chrome"), Some("chatgpt.com"));
        first.intercepted = true;
        let id = in_flight.add(&first);
        in_flight.remove(id);
        let second = event("example.org", None, None);
        in_flight.add(&second);
        std::thread::sleep(std::time::Duration::from_millis(5));
        let unfinished = in_flight.unfinished();
        assert_eq!(unfinished.len(), 1);
        let got = &unfinished[0];
        assert_eq!(
            (&got.host, &got.url, &got.allowlist, &got.downstream),
            (&second.host, &second.url, &None, &second.downstream)
        );
        assert!(!got.intercepted && got.unfinished.is_some());
        assert!(got.timings.total_ms >= 5.0, "how long it waited");
    }

    /// At most [`SPARES`] entries are kept, and none that holds more than [`SPARE_TEXT`].
    #[test]
    fn spare_entries_are_bounded_in_number_and_size() {
        let in_flight = InFlight::default();
        let ids: Vec<u64> = (0..SPARES + 10)
            .map(|i| in_flight.add(&event(&format!("h{i}.example"), None, None)))
            .collect();
        ids.into_iter().for_each(|id| in_flight.remove(id));
        assert_eq!(in_flight.registry.lock().unwrap().spare.len(), SPARES);
        let fresh = InFlight::default();
        let long = event(&"a".repeat(SPARE_TEXT), None, None);
        let id = fresh.add(&long);
        fresh.remove(id);
        assert!(fresh.registry.lock().unwrap().spare.is_empty());
    }
}

//! The running proxy's counters (`run --metrics`, `/metrics`): requests, tunnels, failures by
//! kind and bytes per host — the profile's hosts by name, every other host folded into
//! `host="other"` so the label stays bounded — and what is open and dropped now. Pure: read
//! from the session's summary.

use std::collections::BTreeMap;

use super::{render, Family, Kind};
use crate::session::summary::Summary;

/// The label every host outside the profile shares.
pub const OTHER: &str = "other";

/// Per-host totals, folded.
#[derive(Debug, Default)]
struct Totals {
    requests: u64,
    tunnels: u64,
    bytes_up: u64,
    bytes_down: u64,
    failures: BTreeMap<&'static str, u64>,
}

/// The exposition: `open` tunnels and requests now, events `dropped` so far.
pub fn exposition(summary: &Summary, open: usize, dropped: u64) -> String {
    let mut hosts: BTreeMap<&str, Totals> = BTreeMap::new();
    for h in summary.hosts() {
        let name = if h.allowlist.is_some() {
            h.host.as_str()
        } else {
            OTHER
        };
        let t = hosts.entry(name).or_default();
        t.requests += h.requests;
        t.tunnels += h.tunnels;
        t.bytes_up += h.bytes_up;
        t.bytes_down += h.bytes_down;
        for (kind, n) in &h.failures {
            *t.failures.entry(kind.as_str()).or_default() += n;
        }
    }
    let mut requests = Family::new(
        "diagproxy_requests_total",
        Kind::Counter,
        "Plain-HTTP and intercepted requests relayed, per host.",
    );
    let mut tunnels = Family::new(
        "diagproxy_tunnels_total",
        Kind::Counter,
        "CONNECT tunnels opened (intercepted or not), per host.",
    );
    let mut failures = Family::new(
        "diagproxy_failures_total",
        Kind::Counter,
        "Failures per host and kind.",
    );
    let mut bytes = Family::new(
        "diagproxy_bytes_total",
        Kind::Counter,
        "Bytes relayed per host; direction up (to the upstream) or down.",
    );
    for (host, t) in &hosts {
        requests.add(&[("host", host)], t.requests as f64);
        tunnels.add(&[("host", host)], t.tunnels as f64);
        bytes.add(&[("host", host), ("direction", "up")], t.bytes_up as f64);
        bytes.add(
            &[("host", host), ("direction", "down")],
            t.bytes_down as f64,
        );
        for (kind, n) in &t.failures {
            failures.add(&[("host", host), ("kind", kind)], *n as f64);
        }
    }
    let mut open_now = Family::new(
        "diagproxy_open_tunnels",
        Kind::Gauge,
        "Tunnels and requests open now.",
    );
    open_now.add(&[], open as f64);
    let mut dropped_total = Family::new(
        "diagproxy_events_dropped_total",
        Kind::Counter,
        "Events not written to events.jsonl because it could not be written (a full disk).",
    );
    dropped_total.add(&[], dropped as f64);
    render(&[requests, tunnels, failures, bytes, open_now, dropped_total])
}

//! The report's waterfall: one row per request or tunnel with its status (or failure, or
//! block page) and DNS, connect, TLS, wait and receive bars on the session's time axis —
//! an axis on which idle stretches longer than [`IDLE`] are squeezed to a marked sliver, so
//! a session with a lunch break in it still shows its requests.

use std::fmt::Write;

use super::{esc, parse_ts, Session};
use crate::inspect::FindingKind;
use crate::session::event::Event;
use crate::session::livelog::{self, duration};

/// A browser renders a few thousand waterfall rows comfortably; a long session has more.
pub const WATERFALL_ROWS: usize = 2000;

/// Idle stretches (nothing in flight) longer than this are squeezed on the time axis …
const IDLE: f64 = 1000.0;
/// … to this many milliseconds' worth of width.
const SQUEEZED: f64 = 100.0;

/// One row: when it started (ms after the session), what, its status in words, the phases
/// (DNS, connect, TLS, wait, receive), its total, and how it ended.
#[derive(Debug, Clone)]
struct Row {
    at: f64,
    label: String,
    status: String,
    phases: [f64; 5],
    total: f64,
    mark: Mark,
}

/// How a row is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    Normal,
    Failed,
    Blocked,
}

/// The rows a report shows, kept as events are read: the failed and blocked ones first,
/// then the earliest, [`WATERFALL_ROWS`] in all, so a session of a million requests keeps
/// at most twice that many rows in memory.
#[derive(Debug, Default)]
pub struct Rows {
    /// Failed or blocked, earliest first (at most [`WATERFALL_ROWS`]).
    problems: Vec<Row>,
    /// The others, earliest first (at most [`WATERFALL_ROWS`]).
    normal: Vec<Row>,
    /// Every request and tunnel seen.
    recorded: usize,
}

impl Rows {
    pub fn add(&mut self, event: &Event) {
        let Some(row) = row(event) else { return };
        self.recorded += 1;
        let list = match row.mark {
            Mark::Normal => &mut self.normal,
            _ => &mut self.problems,
        };
        if list.len() < WATERFALL_ROWS {
            list.push(row);
        }
    }

    /// The rows to draw, in time order, and how many were recorded.
    fn shown(&self) -> (Vec<Row>, usize) {
        let room = WATERFALL_ROWS.saturating_sub(self.problems.len());
        let mut rows = self.problems.clone();
        rows.extend(self.normal.iter().take(room).cloned());
        rows.sort_by(|a, b| a.at.total_cmp(&b.at));
        (rows, self.recorded)
    }
}

/// A request's or a tunnel's row, `at` in ms since the epoch.
fn row(event: &Event) -> Option<Row> {
    match event {
        Event::Request(r) => {
            let t = &r.timings;
            let blocked = r.findings.iter().any(|f| f.kind == FindingKind::BlockPage);
            let (status, mark) = match (&r.failure, r.status) {
                (Some(f), _) => (f.kind.to_string(), Mark::Failed),
                (None, Some(s)) if blocked => (format!("{s} block page"), Mark::Blocked),
                (None, Some(s)) => (s.to_string(), Mark::Normal),
                (None, None) => ("-".into(), Mark::Normal),
            };
            Some(Row {
                at: parse_ts(&r.ts)?,
                label: format!("{} {}", r.method, r.url),
                status,
                phases: [
                    t.dns_ms.unwrap_or(0.0),
                    t.connect_ms.unwrap_or(0.0),
                    t.ssl_ms.unwrap_or(0.0),
                    t.wait_ms.unwrap_or(0.0),
                    t.receive_ms.unwrap_or(0.0),
                ],
                total: t.total_ms,
                mark,
            })
        }
        Event::Tunnel(t) => {
            let tm = &t.timings;
            let setup = tm.connect_ms.unwrap_or(0.0) + tm.proxy_connect_ms.unwrap_or(0.0);
            let wait = tm.wait_ms.unwrap_or(0.0);
            let rest = (tm.total_ms - tm.dns_ms.unwrap_or(0.0) - setup - wait).max(0.0);
            let blocked = t.findings.iter().any(|f| f.kind.is_error());
            let (status, mark) = match (&t.failure, t.findings.first()) {
                (Some(f), _) => (f.kind.to_string(), Mark::Failed),
                (None, Some(f)) if blocked => (f.kind.to_string(), Mark::Blocked),
                _ => (livelog::end(t.end).to_string(), Mark::Normal),
            };
            Some(Row {
                at: parse_ts(&t.ts)?,
                label: format!("CONNECT {}:{} ({})", t.host_name(), t.port, t.mode),
                status,
                phases: [tm.dns_ms.unwrap_or(0.0), setup, 0.0, wait, rest],
                total: tm.total_ms,
                mark,
            })
        }
        _ => None,
    }
}

/// The time axis with idle stretches squeezed: busy spans map one to one, each gap longer
/// than [`IDLE`] takes [`SQUEEZED`] ms of width.
#[derive(Debug)]
struct Axis {
    /// (start, end, position of start) of each busy span, in order.
    spans: Vec<(f64, f64, f64)>,
    /// The whole width in ms after squeezing.
    width: f64,
}

impl Axis {
    fn of(rows: &[Row]) -> Axis {
        let mut busy: Vec<(f64, f64)> = rows.iter().map(|r| (r.at, r.at + r.total)).collect();
        busy.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut merged: Vec<(f64, f64)> = Vec::new();
        for (s, e) in busy {
            match merged.last_mut() {
                Some(last) if s <= last.1 + IDLE => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        let mut spans = Vec::new();
        let mut x = merged.first().map_or(0.0, |m| m.0.min(IDLE));
        for (i, (s, e)) in merged.iter().enumerate() {
            if i > 0 {
                x += SQUEEZED;
            }
            spans.push((*s, *e, x));
            x += e - s;
        }
        Axis {
            spans,
            width: x.max(1.0),
        }
    }

    /// Where `t` sits, in percent of the width.
    fn pct(&self, t: f64) -> f64 {
        let x = self
            .spans
            .iter()
            .rev()
            .find(|(s, _, _)| t >= *s)
            .map_or(t, |(s, e, x)| x + (t.min(*e) - s));
        x / self.width * 100.0
    }

    /// The squeezed gaps: where they sit (percent) and how long they really were.
    fn gaps(&self) -> Vec<(f64, f64)> {
        self.spans
            .windows(2)
            .map(|w| ((w[1].2 - SQUEEZED) / self.width * 100.0, w[1].0 - w[0].1))
            .collect()
    }
}

pub fn render(out: &mut String, session: &Session) {
    let start = session.start_ms();
    let (mut rows, recorded) = session.waterfall.shown();
    for row in &mut rows {
        row.at -= start;
    }
    out.push_str("<h2>Waterfall</h2><p class=\"legend\"><span class=\"w-dns\"></span>DNS<span class=\"w-connect\"></span>connect<span class=\"w-ssl\"></span>TLS<span class=\"w-wait\"></span>wait<span class=\"w-receive\"></span>receive / open<span class=\"w-fail\"></span>failed<span class=\"w-block\"></span>blocked<span class=\"w-gap\"></span>idle, squeezed</p>");
    if rows.is_empty() {
        out.push_str("<p>No requests or tunnels were recorded.</p>");
        return;
    }
    if recorded > rows.len() {
        let _ = write!(
            out,
            "<p>{WATERFALL_ROWS} of {recorded} requests and tunnels shown (every failed or blocked one first, then the earliest); all are in <code>session.har</code> and <code>events.jsonl</code>.</p>"
        );
    }
    let axis = Axis::of(&rows);
    let gaps: String = axis
        .gaps()
        .iter()
        .map(|(at, idle)| {
            format!(
                "<span class=\"w-gap\" title=\"{} idle\" style=\"left:{at:.3}%\"></span>",
                duration(*idle)
            )
        })
        .collect();
    out.push_str("<table id=\"waterfall\"><thead><tr><th>what</th><th>status</th><th>time</th><th style=\"width:50%\">timeline</th></tr></thead><tbody>\n");
    for row in rows {
        let class = match row.mark {
            Mark::Normal => "wf-row",
            Mark::Failed => "wf-row fail",
            Mark::Blocked => "wf-row blocked",
        };
        let _ = writeln!(
            out,
            "<tr class=\"{class}\"><td><code>{}</code></td><td><span class=\"tag {}\">{}</span></td><td>{}</td><td><div class=\"wf\">{gaps}{}</div></td></tr>",
            esc(&row.label),
            if row.mark == Mark::Normal { "" } else { "fail" },
            esc(&row.status),
            duration(row.total),
            bars(&row, &axis)
        );
    }
    out.push_str("</tbody></table>\n");
}

/// A row's phase bars on the axis (a sliver when it has no timings).
fn bars(row: &Row, axis: &Axis) -> String {
    let mut bars = String::new();
    let mut left = row.at;
    for (phase, name) in row
        .phases
        .iter()
        .zip(["dns", "connect", "ssl", "wait", "receive"])
    {
        if *phase > 0.0 {
            let class = match row.mark {
                Mark::Failed => "w-fail".to_string(),
                Mark::Blocked => "w-block".to_string(),
                Mark::Normal => format!("w-{name}"),
            };
            let (from, to) = (axis.pct(left), axis.pct(left + phase));
            let _ = write!(bars, "<span class=\"{class}\" title=\"{name} {}\" style=\"left:{from:.3}%;width:{:.3}%\"></span>", duration(*phase), (to - from).max(0.15));
            left += phase;
        }
    }
    if bars.is_empty() {
        let class = if row.mark == Mark::Normal {
            "w-wait"
        } else {
            "w-fail"
        };
        let _ = write!(
            bars,
            "<span class=\"{class}\" style=\"left:{:.3}%;width:0.3%\"></span>",
            axis.pct(row.at)
        );
    }
    bars
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures;

    fn row(at: f64, total: f64) -> Row {
        Row {
            at,
            label: String::new(),
            status: String::new(),
            phases: [0.0, 0.0, 0.0, 0.0, total],
            total,
            mark: Mark::Normal,
        }
    }

    #[test]
    fn idle_stretches_are_squeezed_and_busy_time_is_not() {
        // 0–100 ms busy, an hour of nothing, 100 ms busy again.
        let hour = 3_600_000.0;
        let axis = Axis::of(&[row(0.0, 100.0), row(hour, 100.0)]);
        assert_eq!(axis.width, 100.0 + SQUEEZED + 100.0);
        assert!((axis.pct(50.0) - 50.0 / 300.0 * 100.0).abs() < 1e-9);
        assert!((axis.pct(hour + 50.0) - 250.0 / 300.0 * 100.0).abs() < 1e-9);
        let gaps = axis.gaps();
        assert_eq!(gaps.len(), 1);
        assert_eq!(gaps[0].1, hour - 100.0);
        // Requests closer than IDLE share one span: nothing is squeezed.
        let close = Axis::of(&[row(0.0, 100.0), row(600.0, 100.0)]);
        assert!(close.gaps().is_empty());
        assert_eq!(close.width, 700.0);
    }

    #[test]
    fn rows_carry_status_failure_and_block_marks() {
        let mut html = String::new();
        render(&mut html, &fixtures::session());
        assert!(html.contains("<th>status</th>"), "{html}");
        // The fixture's blocked upload tunnel, and its failing request.
        assert!(html.contains("class=\"wf-row fail\""), "{html}");
        assert!(
            html.contains("class=\"tag fail\">upstream_proxy_refused<"),
            "{html}"
        );
    }
    #[test]
    fn a_long_session_shows_a_bounded_waterfall_with_every_failure() {
        use crate::failure::{Failure, FailureKind, Side};
        let mut events = fixtures::events();
        let request = events
            .iter()
            .find_map(|e| match e {
                Event::Request(r) if r.failure.is_none() => Some(r.clone()),
                _ => None,
            })
            .unwrap();
        let late = WATERFALL_ROWS + 400;
        for i in 0..WATERFALL_ROWS + 500 {
            let mut r = request.clone();
            r.url = format!("http://example.test/n{i}/");
            if i == late {
                r.failure = Some(Failure::new(FailureKind::Reset, Side::Upstream, "late"));
            }
            events.push(Event::Request(r));
        }
        let mut html = String::new();
        render(&mut html, &fixtures::session_of(&events));
        let recorded = events
            .iter()
            .filter(|e| matches!(e, Event::Request(_) | Event::Tunnel(_)))
            .count();
        assert!(html.contains(&format!("{WATERFALL_ROWS} of {recorded} requests")));
        assert_eq!(html.matches("<tr class=\"wf-row").count(), WATERFALL_ROWS);
        assert!(
            html.contains(&format!("example.test/n{late}/")),
            "the late failure"
        );
        assert!(!html.contains(&format!("example.test/n{}/", late + 1)));
        // What is kept while reading is bounded too: at most the rows that can be shown
        // of each kind, however long the session.
        let mut rows = Rows::default();
        for _ in 0..3 {
            for event in &events {
                rows.add(event);
            }
        }
        assert!(rows.normal.len() <= WATERFALL_ROWS && rows.problems.len() <= WATERFALL_ROWS);
        assert_eq!(rows.recorded, 3 * recorded);
        assert_eq!(rows.shown().0.len(), WATERFALL_ROWS);
    }
}

//! The HTML report: one self-contained file (no external scripts, fonts or images) that an
//! administrator reads at a glance and can print. JavaScript only adds sorting and
//! filtering; everything else is plain HTML and CSS. A host never touched, or a check that
//! could not run, is shown as such — never as passing.

use std::fmt::Write;

use super::{esc, parse_ts, Session};
use crate::profile::Entry;
use crate::session::event::Event;
use crate::session::livelog::{bytes, duration};
use crate::session::summary::HostStats;

/// The reports' look, shared with `compare --html`.
pub const STYLE: &str = "
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:2em;color:#1b1b1b}
h1{font-size:1.5em;margin:0}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ccc}
.meta{color:#555}.verdict{font-size:1.2em;padding:.8em 1em;border-left:6px solid #b00;background:#fdecec;margin:1em 0}
.verdict.good{border-color:#1a7f37;background:#e9f7ee}
table{border-collapse:collapse;width:100%;margin:.5em 0}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #e3e3e3;vertical-align:top}
th{background:#f4f4f4;cursor:pointer}tr.ok td:first-child{border-left:5px solid #1a7f37}tr.fail td:first-child{border-left:5px solid #b00}
tr.warn td:first-child{border-left:5px solid #d4a017}tr.untouched{color:#777}tr.untouched td:first-child{border-left:5px solid #ccc}
.tag{display:inline-block;padding:0 6px;border-radius:3px;font-size:.85em;background:#eee}.tag.fail{background:#fbd5d5}.tag.warn{background:#fbefc4}.tag.ok{background:#d3f0dc}
.finding{border:1px solid #e3c0c0;border-radius:4px;padding:.6em 1em;margin:.6em 0}.finding h3{margin:0 0 .3em;font-size:1em}
code{font:12px ui-monospace,Menlo,monospace;background:#f6f6f6;padding:1px 4px;word-break:break-all}
.wf{position:relative;height:14px;background:#f7f7f7;min-width:300px}.wf span{position:absolute;top:2px;height:10px}
.w-dns{background:#1f8a8a}.w-connect{background:#e07b00}.w-ssl{background:#a04cd0}.w-wait{background:#2c7be5}.w-receive{background:#3aa757}.w-fail{background:#b00}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px}
#filter{margin:.4em 0;padding:4px;width:20em}
@media print{#filter{display:none}body{margin:1cm}.finding{break-inside:avoid}th{cursor:auto}}
";

const SCRIPT: &str = "
document.querySelectorAll('table.sortable th').forEach(function(th,i){th.addEventListener('click',function(){
var t=th.closest('table'),rows=Array.prototype.slice.call(t.querySelectorAll('tbody tr')),d=th.dataset.dir==='a'?-1:1;th.dataset.dir=d===1?'a':'d';
rows.sort(function(a,b){var x=a.children[i].innerText,y=b.children[i].innerText,nx=parseFloat(x),ny=parseFloat(y);
return (!isNaN(nx)&&!isNaN(ny)?nx-ny:x.localeCompare(y))*d;});rows.forEach(function(r){t.tBodies[0].appendChild(r);});});});
var f=document.getElementById('filter');if(f){f.addEventListener('input',function(){var q=f.value.toLowerCase();
document.querySelectorAll('table.filterable tbody tr').forEach(function(r){r.style.display=r.innerText.toLowerCase().indexOf(q)>=0?'':'none';});});}
";

pub fn render(session: &Session) -> String {
    let mut out = String::new();
    let info = session.info();
    let verdict = session.summary.verdict();
    let good = verdict.starts_with("No problem") || verdict.starts_with("Nothing that stops");
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>diagproxy report {}</title><style>{STYLE}</style></head><body>\
         <h1>diagproxy report</h1><p class=\"meta\">Session <code>{}</code>, started {}, listening on {}, {} · profile {}{}</p>\
         <p class=\"verdict{}\" id=\"verdict\">{}</p>",
        esc(&info.id),
        esc(&info.id),
        esc(&info.started_at),
        esc(&info.listen),
        info.upstream_proxy.as_deref().map_or("no corporate proxy".to_string(), |p| format!("through {}", esc(p))),
        esc(&info.profile),
        if session.skipped > 0 { format!(" · {} unreadable event line(s) skipped", session.skipped) } else { String::new() },
        if good { " good" } else { "" },
        esc(&verdict)
    );
    out.push_str("<input id=\"filter\" placeholder=\"filter hosts…\" aria-label=\"filter hosts\">");
    allowlist_table(&mut out, session);
    other_hosts(&mut out, session);
    findings(&mut out, session);
    waterfall(&mut out, session);
    chains(&mut out, session);
    let _ = writeln!(out, "<script>{SCRIPT}</script></body></html>");
    out
}

/// The state of an allowlist entry, from the hosts it covered.
fn entry_state(hosts: &[&HostStats]) -> (&'static str, String) {
    if hosts.is_empty() {
        return (
            "untouched",
            "not touched in this session (not tested)".into(),
        );
    }
    let mut kinds: Vec<String> = hosts
        .iter()
        .flat_map(|h| h.failures.keys().map(|k| k.to_string()))
        .collect();
    kinds.extend(
        hosts
            .iter()
            .flat_map(|h| h.findings.iter().map(|f| f.kind.to_string())),
    );
    kinds.sort();
    kinds.dedup();
    let blocking = kinds.iter().any(|k| {
        !matches!(
            k.as_str(),
            "tls_inspection" | "proxy_header" | "cloudflare_challenge" | "client_rejected_ca"
        )
    });
    match (kinds.is_empty(), blocking) {
        (true, _) => ("ok", "worked".into()),
        (false, true) => ("fail", kinds.join(", ")),
        (false, false) => ("warn", kinds.join(", ")),
    }
}

fn allowlist_table(out: &mut String, session: &Session) {
    out.push_str("<h2>Allowlist</h2><table class=\"sortable filterable\" id=\"allowlist\"><thead><tr><th>entry</th><th>purpose</th><th>touched</th><th>outcome</th><th>TLS verdict</th><th>issuer</th><th>vendor</th></tr></thead><tbody>\n");
    type Row<'a> = (&'a Entry, Vec<&'a HostStats>, &'static str, String);
    let mut rows: Vec<Row> = session
        .profile
        .entries
        .iter()
        .map(|entry| {
            let hosts: Vec<&HostStats> = session
                .summary
                .hosts()
                .filter(|h| h.allowlist.as_deref() == Some(&entry.pattern))
                .collect();
            let (class, outcome) = entry_state(&hosts);
            (entry, hosts, class, outcome)
        })
        .collect();
    // What needs attention first, then what worked, then what was not tested.
    rows.sort_by_key(|(_, _, class, _)| {
        ["fail", "warn", "ok", "untouched"]
            .iter()
            .position(|c| c == class)
    });
    for (entry, hosts, class, outcome) in rows {
        let touched: Vec<String> = hosts
            .iter()
            .map(|h| format!("{}:{}", h.host, h.port))
            .collect();
        let tls = hosts.iter().find_map(|h| h.tls.as_ref());
        let tls_error = hosts.iter().find_map(|h| h.tls_error.as_deref());
        let (verdict, issuer, vendor) = match (tls, tls_error) {
            (Some(t), _) => (
                t.verdict.as_str().to_string(),
                t.issuer.clone(),
                t.vendor.clone().unwrap_or_else(|| "-".into()),
            ),
            (None, Some(e)) => (format!("could not check: {e}"), "-".into(), "-".into()),
            (None, None) if hosts.is_empty() => ("not checked".into(), "-".into(), "-".into()),
            (None, None) => (
                "not checked (plain HTTP or no TLS seen)".into(),
                "-".into(),
                "-".into(),
            ),
        };
        let tls_class = match verdict.as_str() {
            "public" => "ok",
            "inspected" => "warn",
            "untrusted" => "fail",
            _ => "",
        };
        let _ = writeln!(
            out,
            "<tr class=\"{class}\"><td><code>{}</code></td><td>{}</td><td>{}</td><td><span class=\"tag {class}\">{}</span></td><td><span class=\"tag {tls_class}\">{}</span></td><td>{}</td><td>{}</td></tr>",
            esc(&entry.pattern),
            esc(&entry.purpose),
            if touched.is_empty() { "no".to_string() } else { esc(&touched.join(", ")) },
            esc(&outcome),
            esc(&verdict),
            esc(&issuer),
            esc(&vendor)
        );
    }
    out.push_str("</tbody></table>\n");
}

fn other_hosts(out: &mut String, session: &Session) {
    let others: Vec<&HostStats> = session
        .summary
        .hosts()
        .filter(|h| h.allowlist.is_none())
        .collect();
    if others.is_empty() {
        return;
    }
    out.push_str("<h2>Other hosts</h2><table class=\"sortable filterable\" id=\"other-hosts\"><thead><tr><th>host</th><th>connections</th><th>requests</th><th>down</th><th>failures</th></tr></thead><tbody>\n");
    for h in others {
        let failures: Vec<String> = h
            .failures
            .iter()
            .map(|(k, n)| format!("{k} × {n}"))
            .collect();
        let class = if failures.is_empty() { "ok" } else { "fail" };
        let _ = writeln!(
            out,
            "<tr class=\"{class}\"><td>{}:{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&h.host),
            h.port,
            h.connections,
            h.requests,
            bytes(h.bytes_down),
            esc(&failures.join(", "))
        );
    }
    out.push_str("</tbody></table>\n");
}

fn findings(out: &mut String, session: &Session) {
    out.push_str("<h2>Findings</h2><div id=\"findings\">\n");
    let mut any = false;
    for h in session.summary.hosts() {
        for f in &h.findings {
            any = true;
            let _ = writeln!(
                out,
                "<div class=\"finding\"><h3><span class=\"tag fail\">{}</span> {}:{}{}</h3><p>{}</p><p><b>Evidence:</b> {}</p>{}{}<p><b>Change:</b> {}</p>{}</div>",
                esc(f.kind.as_str()),
                esc(&h.host),
                h.port,
                f.vendor.as_deref().map_or(String::new(), |v| format!(" — {}", esc(v))),
                esc(&f.detail),
                esc(&f.evidence),
                f.excerpt.as_deref().map_or(String::new(), |e| format!("<p><b>What the user saw:</b> <q>{}</q></p>", esc(e))),
                f.feature.as_deref().map_or(String::new(), |b| format!("<p><b>What breaks:</b> {}</p>", esc(b))),
                esc(&f.remedy),
                f.reproduce.as_deref().map_or(String::new(), |r| format!("<p><b>Reproduce without diagproxy:</b> <code>{}</code></p>", esc(r)))
            );
        }
    }
    if !any {
        out.push_str("<p>No findings in this session.</p>");
    }
    out.push_str("</div>\n");
}

/// One row per request or tunnel: DNS, connect, TLS, wait and receive bars on the session's
/// time axis.
/// A browser renders a few thousand waterfall rows comfortably; a long session has more.
const WATERFALL_ROWS: usize = 2000;

/// One waterfall row: start (ms after the session's), label, phase lengths (DNS, connect,
/// TLS, wait, receive), total, failed.
type Row = (f64, String, [f64; 5], f64, bool);

/// The rows of every request and tunnel, in event order.
fn waterfall_rows(session: &Session, start: f64) -> Vec<Row> {
    session
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Request(r) => {
                let t = &r.timings;
                let phases = [
                    t.dns_ms.unwrap_or(0.0),
                    t.connect_ms.unwrap_or(0.0),
                    t.ssl_ms.unwrap_or(0.0),
                    t.wait_ms.unwrap_or(0.0),
                    t.receive_ms.unwrap_or(0.0),
                ];
                Some((
                    parse_ts(&r.ts)? - start,
                    format!("{} {}", r.method, r.url),
                    phases,
                    t.total_ms,
                    r.failure.is_some(),
                ))
            }
            Event::Tunnel(t) => {
                let tm = &t.timings;
                let setup = tm.connect_ms.unwrap_or(0.0) + tm.proxy_connect_ms.unwrap_or(0.0);
                let wait = tm.wait_ms.unwrap_or(0.0);
                let rest = (tm.total_ms - tm.dns_ms.unwrap_or(0.0) - setup - wait).max(0.0);
                let phases = [tm.dns_ms.unwrap_or(0.0), setup, 0.0, wait, rest];
                Some((
                    parse_ts(&t.ts)? - start,
                    format!("CONNECT {}:{} ({})", t.host_name(), t.port, t.mode),
                    phases,
                    tm.total_ms,
                    t.failure.is_some(),
                ))
            }
            _ => None,
        })
        .collect()
}

fn waterfall(out: &mut String, session: &Session) {
    let start = session.start_ms();
    let mut rows = waterfall_rows(session, start);
    out.push_str("<h2>Waterfall</h2><p class=\"legend\"><span class=\"w-dns\"></span>DNS<span class=\"w-connect\"></span>connect<span class=\"w-ssl\"></span>TLS<span class=\"w-wait\"></span>wait<span class=\"w-receive\"></span>receive / open<span class=\"w-fail\"></span>failed</p>");
    if rows.is_empty() {
        out.push_str("<p>No requests or tunnels were recorded.</p>");
        return;
    }
    let recorded = rows.len();
    if recorded > WATERFALL_ROWS {
        // The failed ones first, then the earliest; shown in time order.
        rows.sort_by_key(|row| !row.4);
        rows.truncate(WATERFALL_ROWS);
        rows.sort_by(|a, b| a.0.total_cmp(&b.0));
        let _ = write!(
            out,
            "<p>{WATERFALL_ROWS} of {recorded} requests and tunnels shown (every failed one first, then the earliest); all are in <code>session.har</code> and <code>events.jsonl</code>.</p>"
        );
    }
    let span = rows
        .iter()
        .map(|(at, _, _, total, _)| at + total)
        .fold(1.0_f64, f64::max);
    out.push_str("<table id=\"waterfall\"><thead><tr><th>what</th><th>time</th><th style=\"width:55%\">timeline</th></tr></thead><tbody>\n");
    for (at, label, phases, total, failed) in rows {
        let mut bars = String::new();
        let mut left = at;
        for (phase, class) in phases
            .iter()
            .zip(["dns", "connect", "ssl", "wait", "receive"])
        {
            if *phase > 0.0 {
                let class = if failed {
                    "w-fail".to_string()
                } else {
                    format!("w-{class}")
                };
                let _ = write!(bars, "<span class=\"{class}\" title=\"{class} {}\" style=\"left:{:.3}%;width:{:.3}%\"></span>", duration(*phase), left / span * 100.0, (phase / span * 100.0).max(0.15));
                left += phase;
            }
        }
        if bars.is_empty() {
            let _ = write!(
                bars,
                "<span class=\"{}\" style=\"left:{:.3}%;width:0.3%\"></span>",
                if failed { "fail" } else { "wait" },
                at / span * 100.0
            );
        }
        let _ = writeln!(out, "<tr class=\"wf-row\"><td><code>{}</code></td><td>{}</td><td><div class=\"wf\">{bars}</div></td></tr>", esc(&label), duration(total));
    }
    out.push_str("</tbody></table>\n");
}

fn chains(out: &mut String, session: &Session) {
    out.push_str("<h2>Certificate chains</h2>");
    let mut any = false;
    for h in session.summary.hosts() {
        let Some(tls) = &h.tls else { continue };
        any = true;
        let _ = write!(
            out,
            "<h3>{}:{} — {}{}</h3><table class=\"chain\"><thead><tr><th>subject</th><th>issuer</th><th>valid</th><th>SPKI SHA-256</th></tr></thead><tbody>",
            esc(&h.host),
            h.port,
            tls.verdict.as_str(),
            tls.reason.as_deref().map_or(String::new(), |r| format!(" ({})", esc(r)))
        );
        for c in &tls.chain {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{} – {}</td><td><code>{}</code></td></tr>",
                esc(&c.subject),
                esc(&c.issuer),
                esc(&c.not_before[..10.min(c.not_before.len())]),
                esc(&c.not_after[..10.min(c.not_after.len())]),
                esc(&c.spki_sha256)
            );
        }
        let _ = write!(
            out,
            "</tbody></table><p>Embedded SCTs: {}</p>",
            if tls.scts { "yes" } else { "no" }
        );
    }
    if !any {
        out.push_str("<p>No chain was checked in this session.</p>");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures;

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
        let html = render(&fixtures::session_of(&events));
        let recorded = events
            .iter()
            .filter(|e| matches!(e, Event::Request(_) | Event::Tunnel(_)))
            .count();
        assert!(html.contains(&format!("{WATERFALL_ROWS} of {recorded} requests")));
        assert_eq!(html.matches("class=\"wf-row\"").count(), WATERFALL_ROWS);
        assert!(
            html.contains(&format!("example.test/n{late}/")),
            "the late failure"
        );
        assert!(!html.contains(&format!("example.test/n{}/", late + 1)));
    }

    #[test]
    fn report_has_verdict_tables_findings_waterfall_and_no_external_resources() {
        let html = render(&fixtures::session());
        assert!(
            html.contains("id=\"verdict\"")
                && html.contains("Fortinet FortiGuard blocks files.oaiusercontent.com"),
            "verdict"
        );
        assert!(
            html.contains("<code>files.oaiusercontent.com</code>")
                && html.contains("upstream_proxy_refused"),
            "allowlist row"
        );
        assert!(
            html.contains("not touched in this session (not tested)"),
            "honest untouched state"
        );
        assert!(
            html.contains("class=\"tag warn\">inspected"),
            "inspected verdict shown"
        );
        assert!(html.contains("class=\"wf-row\""), "waterfall");
        assert!(
            html.contains("Reproduce without diagproxy"),
            "reproduce command"
        );
        for external in ["src=\"http", "href=\"http", "@import", "url("] {
            assert!(!html.contains(external), "external resource {external}");
        }
    }

    #[test]
    fn an_empty_session_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let events: String = fixtures::events()
            .into_iter()
            .filter(|e| matches!(e, Event::SessionStarted(_)))
            .map(|e| serde_json::to_string(&e).unwrap() + "\n")
            .collect();
        std::fs::write(dir.path().join("events.jsonl"), events).unwrap();
        let html = render(&Session::load(dir.path()).unwrap());
        assert!(html.contains("No ChatGPT host went through the proxy"));
        assert!(html.contains("No requests or tunnels were recorded."));
        assert!(html.contains("No chain was checked"));
    }
}

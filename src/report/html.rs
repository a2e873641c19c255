//! The HTML report: one self-contained file (no external scripts, fonts or images) that an
//! administrator reads at a glance and can print. JavaScript only adds sorting and
//! filtering; everything else is plain HTML and CSS. A host never touched, or a check that
//! could not run, is shown as such — never as passing.

use std::fmt::Write;

use super::{esc, Session};
use crate::profile::Entry;
use crate::session::livelog::bytes;
use crate::session::summary::HostStats;

/// The reports' look, shared with `compare --html`.
pub const STYLE: &str = "
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:2em;color:#1b1b1b}
h1{font-size:1.5em;margin:0}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ccc}
.meta{color:#555}.verdict{font-size:1.2em;padding:.8em 1em;border-left:6px solid #b00;background:#fdecec;margin:1em 0}
.verdict.good{border-color:#1a7f37;background:#e9f7ee}
table{border-collapse:collapse;width:100%;margin:.5em 0}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #e3e3e3;vertical-align:top}
th{background:#f4f4f4;cursor:pointer}tr.ok td:first-child{border-left:5px solid #1a7f37}tr.fail td:first-child{border-left:5px solid #b00}
tr.warn td:first-child{border-left:5px solid #d4a017}tr.untouched{color:#777}tr.other{color:#555}tr.untouched td:first-child{border-left:5px solid #ccc}
.tag{display:inline-block;padding:0 6px;border-radius:3px;font-size:.85em;background:#eee}.tag.fail{background:#fbd5d5}.tag.warn{background:#fbefc4}.tag.ok{background:#d3f0dc}
.finding{border:1px solid #e3c0c0;border-radius:4px;padding:.6em 1em;margin:.6em 0}.finding h3{margin:0 0 .3em;font-size:1em}
code{font:12px ui-monospace,Menlo,monospace;background:#f6f6f6;padding:1px 4px;overflow-wrap:anywhere}
.host,code.host{white-space:nowrap;overflow-wrap:normal}
.counts{font-size:1.05em}.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(13em,1fr));gap:.6em;margin:.8em 0 1.5em}
.tile{border:1px solid #ddd;border-left:6px solid #ccc;border-radius:4px;padding:.5em .8em}.tile-name{font-weight:600}
.tile.ok{border-left-color:#1a7f37}.tile.fail{border-left-color:#b00;background:#fdecec}.tile.warn{border-left-color:#d4a017}.tile.untouched{color:#666}
.tile-state{font-size:1.1em}.tile-detail{font-size:.85em;color:#444}details summary{cursor:pointer;margin:.5em 0}
.wf{position:relative;height:14px;background:#f7f7f7;min-width:300px}.wf span{position:absolute;top:2px;height:10px}
.w-dns{background:#1f8a8a}.w-connect{background:#e07b00}.w-ssl{background:#a04cd0}.w-wait{background:#2c7be5}.w-receive{background:#3aa757}.w-fail{background:#b00}
.w-block{background:repeating-linear-gradient(45deg,#b00 0 4px,#f3b3b3 4px 8px)}.wf .w-gap{top:0;height:14px;width:3px;background:#fff;border-left:1px dashed #999;border-right:1px dashed #999}
tr.blocked td:first-child{border-left:5px solid #b00}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px}
#filter{margin:.4em 0;padding:4px;width:20em}
details.body pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f8f8f8;border:1px solid #eee;padding:.5em;max-height:30em;overflow:auto;font-size:12px}
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
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>diagproxy report {}</title><style>{STYLE}</style></head><body>\
         <h1>diagproxy report</h1><p class=\"meta\">Session <code>{}</code>, started {}, listening on {}, {} · profile {}{}</p>",
        esc(&info.id),
        esc(&info.id),
        esc(&info.started_at),
        esc(&info.listen),
        route_meta(info),
        esc(&info.profile),
        if session.skipped > 0 { format!(" · {} unreadable event line(s) skipped", session.skipped) } else { String::new() },
    );
    verdict(&mut out, &session.summary);
    imported(&mut out, session);
    super::overview::render(&mut out, &session.summary);
    findings(&mut out, session);
    out.push_str("<input id=\"filter\" placeholder=\"filter hosts…\" aria-label=\"filter hosts\">");
    allowlist_table(&mut out, session);
    other_hosts(&mut out, session);
    super::waterfall::render(&mut out, session);
    bodies(&mut out, session);
    chains(&mut out, session);
    let _ = writeln!(out, "<script>{SCRIPT}</script></body></html>");
    out
}

/// An imported file: what it was, where reading stopped, and what it cannot show.
fn imported(out: &mut String, session: &Session) {
    let Some(source) = session.info().source.as_deref() else {
        return;
    };
    let _ = write!(
        out,
        "<p class=\"meta\">Imported from <code>{}</code>: {} records{}</p><ul>",
        esc(&source.file),
        source.records,
        source
            .capture_mode
            .as_deref()
            .map_or(String::new(), |m| format!(", capture mode {}", esc(m)))
    );
    if let Some(stopped) = &source.stopped {
        let _ = write!(out, "<li>Note: {}</li>", esc(stopped));
    }
    for line in &source.cannot_tell {
        let _ = write!(out, "<li>Cannot tell: {}</li>", esc(line));
    }
    out.push_str("</ul>");
}

/// The verdict (green when nothing stops ChatGPT) and a line per corporate proxy signed in
/// to: the report's first lines, and the live page's.
pub fn verdict(out: &mut String, summary: &crate::session::summary::Summary) {
    let verdict = summary.verdict();
    let good = verdict.starts_with("No problem") || verdict.starts_with("Nothing that stops");
    let _ = write!(
        out,
        "<p class=\"verdict{}\" id=\"verdict\">{}</p>",
        if good { " good" } else { "" },
        esc(&verdict)
    );
    for signed in summary.sign_ins() {
        let _ = write!(
            out,
            "<p class=\"meta\">Proxy sign-in: {}</p>",
            esc(&signed.line())
        );
    }
}

/// The state of an allowlist entry, from the hosts it covered: its class and, in words,
/// what happened (the same severity order as everywhere: errors fail, the rest warn).
fn entry_state(hosts: &[&HostStats]) -> (&'static str, String) {
    if hosts.is_empty() {
        return (
            "untouched",
            "not touched in this session (not tested)".into(),
        );
    }
    let mut words: Vec<String> = Vec::new();
    let mut found: Vec<&crate::inspect::Finding> = hosts.iter().flat_map(|h| &h.findings).collect();
    found.sort_by_key(|f| f.kind.severity());
    for f in found {
        let said = f.in_words();
        if !words.contains(&said) {
            words.push(said);
        }
    }
    match (words.is_empty(), hosts.iter().any(|h| h.is_failing())) {
        (true, _) => ("ok", "worked".into()),
        (false, true) => ("fail", words.join("; ")),
        (false, false) => ("warn", words.join("; ")),
    }
}

fn allowlist_table(out: &mut String, session: &Session) {
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
    // What needs attention first, then what worked; what was not tested folds away.
    rows.sort_by_key(|(_, _, class, _)| {
        ["fail", "warn", "ok", "untouched"]
            .iter()
            .position(|c| c == class)
    });
    let head = "<thead><tr><th>entry</th><th>purpose</th><th>touched</th><th>outcome</th><th>route</th><th>TLS verdict</th><th>issuer</th><th>vendor</th></tr></thead><tbody>\n";
    let _ = write!(
        out,
        "<h2>Allowlist</h2><table class=\"sortable filterable\" id=\"allowlist\">{head}"
    );
    let untouched = rows.iter().filter(|r| r.2 == "untouched").count();
    for (entry, hosts, class, outcome) in &rows {
        if *class == "untouched" {
            continue;
        }
        out.push_str(&entry_row(entry, hosts, class, outcome));
    }
    out.push_str("</tbody></table>\n");
    if untouched > 0 {
        let _ = write!(
            out,
            "<details id=\"untouched\"><summary>{untouched} allowlist entries not touched in this session (not tested)</summary><table class=\"filterable\">{head}"
        );
        for (entry, hosts, class, outcome) in rows.iter().filter(|r| r.2 == "untouched") {
            out.push_str(&entry_row(entry, hosts, class, outcome));
        }
        out.push_str("</tbody></table></details>\n");
    }
}

/// The session's way out, for the report's first line: the route source and the PAC file.
pub fn route_meta(info: &crate::session::event::SessionInfo) -> String {
    let source = match (&info.route_source, &info.upstream_proxy) {
        (Some(source), _) => format!("route {}", esc(source)),
        (None, Some(p)) => format!("through {}", esc(p)),
        (None, None) => "no corporate proxy".to_string(),
    };
    match &info.pac {
        Some(pac) => format!(
            "{source} (PAC {} bytes, SHA-256 <code>{}</code>)",
            pac.size,
            esc(&pac.sha256)
        ),
        None => source,
    }
}

/// ` (check)` for a host only `diagproxy check` touched, ` (check + traffic)` for one the
/// client's traffic reached too, nothing for traffic alone.
fn origin_mark(host: &HostStats) -> &'static str {
    let agent = crate::check::record::CHECK_AGENT;
    let checked = host.user_agents.contains(agent);
    match (checked, host.user_agents.len()) {
        (true, 1) => " (check)",
        (true, _) => " (check + traffic)",
        (false, _) => "",
    }
}

/// One allowlist row; the TLS cells name each host when the entry's hosts differ.
fn entry_row(entry: &Entry, hosts: &[&HostStats], class: &str, outcome: &str) -> String {
    let touched: Vec<String> = hosts
        .iter()
        .map(|h| format!("{}:{}{}", h.host, h.port, origin_mark(h)))
        .collect();
    let (verdict, issuer, vendor) = tls_cells(hosts);
    let mut routes: Vec<&str> = hosts
        .iter()
        .flat_map(|h| h.routes.iter().map(String::as_str))
        .collect();
    routes.sort_unstable();
    routes.dedup();
    let route = if routes.is_empty() {
        "-".to_string()
    } else {
        routes.join(", ")
    };
    let tls_class = match verdict.as_str() {
        "public" => "ok",
        "inspected" => "warn",
        "untrusted" => "fail",
        _ => "",
    };
    format!(
        "<tr class=\"{class}\"><td><code class=\"host\">{}</code></td><td>{}</td><td class=\"host\">{}</td><td><span class=\"tag {class}\">{}</span></td><td class=\"host\">{}</td><td><span class=\"tag {tls_class}\">{}</span></td><td>{}</td><td>{}</td></tr>\n",
        esc(&entry.pattern),
        esc(&entry.purpose),
        if touched.is_empty() { "no".to_string() } else { esc(&touched.join(", ")) },
        esc(outcome),
        esc(&route),
        esc(&verdict),
        esc(&issuer),
        esc(&vendor)
    )
}

/// The TLS verdict, issuer and vendor of an entry's hosts: one value when they agree, else
/// each host with its own.
fn tls_cells(hosts: &[&HostStats]) -> (String, String, String) {
    let per_host: Vec<(String, String, String, String)> = hosts
        .iter()
        .map(|h| {
            let (v, i, d) = match (&h.tls, &h.tls_error) {
                (Some(t), _) => (
                    t.verdict.as_str().to_string(),
                    t.issuer.clone(),
                    t.vendor.clone().unwrap_or_else(|| "-".into()),
                ),
                (None, Some(e)) => (format!("could not check: {e}"), "-".into(), "-".into()),
                (None, None) => (
                    "not checked (plain HTTP or no TLS seen)".into(),
                    "-".into(),
                    "-".into(),
                ),
            };
            (h.host.clone(), v, i, d)
        })
        .collect();
    let Some(first) = per_host.first() else {
        return ("not checked".into(), "-".into(), "-".into());
    };
    if per_host.iter().all(|p| p.1 == first.1 && p.2 == first.2) {
        return (first.1.clone(), first.2.clone(), first.3.clone());
    }
    let each = |pick: fn(&(String, String, String, String)) -> &String| {
        per_host
            .iter()
            .map(|p| format!("{}: {}", p.0, pick(p)))
            .collect::<Vec<_>>()
            .join("; ")
    };
    (each(|p| &p.1), each(|p| &p.2), each(|p| &p.3))
}

/// Traffic outside the profile (a browser's own update and sign-in hosts): collapsed, never
/// coloured as a failure, its findings with it rather than among ChatGPT's.
fn other_hosts(out: &mut String, session: &Session) {
    let others: Vec<&HostStats> = session
        .summary
        .hosts()
        .filter(|h| h.allowlist.is_none())
        .collect();
    if others.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "<details id=\"other-traffic\"><summary>Other traffic (not ChatGPT): {} host(s); not part of the verdict</summary>\
         <table class=\"sortable filterable\" id=\"other-hosts\"><thead><tr><th>host</th><th>connections</th><th>requests</th><th>down</th><th>what happened</th></tr></thead><tbody>",
        others.len()
    );
    for h in &others {
        let mut what: Vec<String> = h
            .failures
            .iter()
            .map(|(k, n)| format!("{k} × {n}"))
            .collect();
        what.extend(h.findings.iter().map(|f| f.kind.as_str().to_string()));
        what.dedup();
        let _ = writeln!(
            out,
            "<tr class=\"other\"><td>{}:{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&h.host),
            h.port,
            h.connections,
            h.requests,
            bytes(h.bytes_down),
            esc(&what.join(", "))
        );
    }
    out.push_str("</tbody></table>\n");
    for h in others {
        for f in &h.findings {
            finding(out, h, f, "other");
        }
    }
    out.push_str("</details>\n");
}

/// The findings on the profile's hosts (other traffic's are with it, collapsed).
fn findings(out: &mut String, session: &Session) {
    out.push_str("<h2>Findings</h2><div id=\"findings\">\n");
    let mut any = false;
    for h in session.summary.hosts().filter(|h| h.allowlist.is_some()) {
        for f in &h.findings {
            any = true;
            finding(out, h, f, "fail");
        }
    }
    if !any {
        out.push_str("<p>No findings on ChatGPT's hosts in this session.</p>");
    }
    out.push_str("</div>\n");
}

fn finding(out: &mut String, h: &HostStats, f: &crate::inspect::Finding, class: &str) {
    let _ = writeln!(
        out,
        "<div class=\"finding\"><h3><span class=\"tag {class}\">{}</span> {}:{}{}</h3><p>{}</p><p><b>Evidence:</b> {}</p>{}{}<p><b>Change:</b> {}</p>{}</div>",
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

/// The kept bodies of answers that went wrong (block pages, error JSON), folded, as text.
fn bodies(out: &mut String, session: &Session) {
    if session.problem_bodies.is_empty() {
        return;
    }
    out.push_str("<h2>Bodies of answers that went wrong</h2><p class=\"meta\">As kept in the session folder (<code>bodies/</code>, first 64 KiB each); what the user's browser got.</p>");
    for shown in &session.problem_bodies {
        let b = &shown.body;
        let text = session
            .body_text(b)
            .unwrap_or_else(|| "(binary, or no longer in the folder)".into());
        let _ = write!(
            out,
            "<details class=\"body\"><summary>{}{} · {}{}</summary><pre>{}</pre></details>",
            esc(&shown.line),
            if shown.times > 1 {
                format!(" · {} times", shown.times)
            } else {
                String::new()
            },
            bytes(b.size as u64),
            if b.truncated { ", cut at 64 KiB" } else { "" },
            esc(&text)
        );
    }
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
    use crate::session::event::Event;

    #[test]
    fn report_has_verdict_tables_findings_waterfall_and_no_external_resources() {
        let html = render(&fixtures::session());
        assert!(
            html.contains("id=\"verdict\"")
                && html.contains("Fortinet FortiGuard blocks files.oaiusercontent.com"),
            "verdict"
        );
        assert!(
            html.contains("<code class=\"host\">files.oaiusercontent.com</code>")
                && html.contains("blocked (block page) — Fortinet FortiGuard"),
            "allowlist row, its outcome in words"
        );
        assert!(
            html.contains("not touched in this session (not tested)"),
            "honest untouched state"
        );
        // A manager's order: verdict, tiles, findings, then the allowlist with the untouched
        // entries folded under one line.
        let at = |needle: &str| html.find(needle).unwrap_or_else(|| panic!("{needle}"));
        assert!(at("id=\"verdict\"") < at("id=\"tiles\""));
        assert!(at("id=\"tiles\"") < at("id=\"findings\""));
        assert!(at("id=\"findings\"") < at("id=\"allowlist\""));
        assert!(at("id=\"allowlist\"") < at("<details id=\"untouched\">"));
        assert!(
            html.contains("allowlist entries not touched in this session (not tested)</summary>")
        );
        assert!(
            html.contains("class=\"tag warn\">inspected"),
            "inspected verdict shown"
        );
        assert!(html.contains("<tr class=\"wf-row"), "waterfall");
        assert!(
            html.contains("Reproduce without diagproxy"),
            "reproduce command"
        );
        for external in ["src=\"http", "href=\"http", "@import", "url("] {
            assert!(!html.contains(external), "external resource {external}");
        }
    }

    #[test]
    fn other_traffic_is_collapsed_apart_and_never_the_verdict() {
        let mut events = fixtures::events();
        let mut other = events
            .iter()
            .find_map(|e| match e {
                Event::Tunnel(t) => Some(t.clone()),
                _ => None,
            })
            .unwrap();
        other.host = "update.googleapis.com".into();
        other.sni = Some(other.host.clone());
        other.allowlist = None;
        other.findings.clear();
        other.end = crate::session::event::TunnelEnd::Failed;
        other.failure = Some(crate::failure::Failure::new(
            crate::failure::FailureKind::DnsFailed,
            crate::failure::Side::Upstream,
            "no such name",
        ));
        let without = fixtures::session_of(&events).summary.verdict();
        let at = events.len() - 1;
        events.insert(at, Event::Tunnel(other));
        let session = fixtures::session_of(&events);
        assert_eq!(
            session.summary.verdict(),
            without,
            "other traffic changes no verdict"
        );
        let html = render(&session);
        let other_at = html
            .find("<details id=\"other-traffic\">")
            .expect("the section");
        assert!(html.contains("Other traffic (not ChatGPT): 1 host(s); not part of the verdict"));
        let findings = &html[html.find("id=\"findings\"").unwrap()..other_at];
        assert!(
            !findings.contains("update.googleapis.com"),
            "not among ChatGPT's findings"
        );
        assert!(html[other_at..].contains("<tr class=\"other\"><td>update.googleapis.com:"));
        assert!(html[other_at..].contains("dns_failed"));
        let doc = session.summary.doc();
        assert_eq!(
            (doc.other_hosts.hosts, doc.other_hosts.with_problems),
            (1, 1)
        );
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

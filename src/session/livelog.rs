//! The live log on stderr: one line per tunnel and per request, failures highlighted with
//! their remedy, and the per-host table printed at exit. Formatting is pure; the recorder
//! prints.

use std::fmt::Write;

use super::event::{Event, RequestEvent, TlsCheckEvent, TunnelEnd, TunnelEvent};
use super::summary::{HostStats, Summary};
use crate::inspect::explain::{finding_for, tls_finding};
use crate::profile::Profile;
use crate::tls::chain::Verdict;

/// The live log's format (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One aligned line per tunnel and request.
    Human,
    /// One JSON object per line.
    Json,
}

/// How the live log looks.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub format: Format,
    /// ANSI colours (stderr is a terminal).
    pub color: bool,
    /// Failures only.
    pub quiet: bool,
}

const RED: &str = "\x1b[1;31m";
const DIM: &str = "\x1b[2m";
const YELLOW: &str = "\x1b[33m";
const RESET: &str = "\x1b[0m";

/// The live-log line for an event, or `None` when the style leaves it out.
pub fn line(event: &Event, profile: &Profile, style: Style) -> Option<String> {
    let failed = match event {
        Event::Tunnel(t) => t.failure.is_some() || !t.findings.is_empty(),
        Event::Request(r) => r.failure.is_some() || !r.complete || !r.findings.is_empty(),
        Event::Refused(_) | Event::ClientRejectedCa(_) => true,
        Event::TlsCheck(c) => c.tls.as_ref().is_some_and(|t| t.verdict != Verdict::Public),
        Event::SessionStarted(_) | Event::SessionEnded(_) => false,
    };
    if style.quiet && !failed {
        return None;
    }
    if style.format == Format::Json {
        return serde_json::to_string(event).ok();
    }
    let text = match event {
        Event::SessionStarted(s) => format!("session {} started, listening on {}", s.id, s.listen),
        Event::SessionEnded(e) => format!(
            "session ended at {} ({} unfinished)",
            e.ended_at, e.unfinished
        ),
        Event::ClientRejectedCa(r) => format!(
            "{} INTERCEPT {}:{} client rejected diagproxy's certificate: {}{}",
            time(&r.ts),
            r.host,
            r.port,
            r.detail,
            if r.passthrough {
                " (tunnelled untouched from now on)"
            } else {
                ""
            }
        ),
        Event::TlsCheck(c) => tls_line(c, profile),
        Event::Refused(r) => format!(
            "{} {} {} refused {}: {}",
            time(&r.ts),
            r.method,
            r.target,
            r.status,
            r.reason
        ),
        Event::Tunnel(t) => tunnel_line(t, profile),
        Event::Request(r) => request_line(r, profile),
    };
    // Certificate names, SNI, URLs and headers come from the network: shown, never
    // interpreted by the terminal (the only newlines are the line's own finding lines).
    let text = crate::text::terminal(&text, true).into_owned();
    Some(if failed && style.color {
        format!("{RED}{text}{RESET}")
    } else {
        text
    })
}

/// A side handshake's verdict, with the remedy when the chain is not public.
fn tls_line(c: &TlsCheckEvent, profile: &Profile) -> String {
    let mut s = format!("{} TLS {}:{} ", time(&c.ts), c.host, c.port);
    match (&c.tls, &c.error) {
        (Some(t), _) => {
            let _ = write!(s, "{} issuer {}", t.verdict.as_str(), t.issuer);
            if let Some(v) = &t.vendor {
                let _ = write!(s, " vendor {v}");
            }
            if let Some(finding) = tls_finding(profile, &c.host, c.port, t) {
                let _ = write!(s, "\n    -> {}", finding.remedy);
            }
        }
        (None, Some(e)) => {
            let _ = write!(s, "not checked: {e}");
        }
        (None, None) => s.push_str("not checked"),
    }
    s
}

/// A tunnel: how it ended, timings and bytes, or its failure; findings below.
fn tunnel_line(t: &TunnelEvent, profile: &Profile) -> String {
    let mut s = format!("{} CONNECT {}:{}", time(&t.ts), t.host, t.port);
    if let Some(sni) = t.sni.as_deref().filter(|sni| *sni != t.host) {
        let _ = write!(s, " (sni {sni})");
    }
    match &t.failure {
        Some(f) => {
            let _ = write!(s, " FAILED {} [{}]", f, allow(t.allowlist.as_deref()));
        }
        None => {
            let _ = write!(
                s,
                " {} {} {} up {} down {} [{}]",
                end(t.end),
                timing("connect", t.timings.connect_ms),
                duration(t.timings.total_ms),
                bytes(t.bytes_up),
                bytes(t.bytes_down),
                allow(t.allowlist.as_deref())
            );
        }
    }
    s.push_str(&via(&t.route));
    if let Some(ua) = &t.downstream.user_agent {
        let _ = write!(s, " {ua}");
    }
    let s = with_remedy(s, profile, t.host_name(), t.failure.as_ref());
    with_findings(s, &t.findings)
}

/// A request: status, timings and bytes, or its failure; findings below.
fn request_line(r: &RequestEvent, profile: &Profile) -> String {
    let mut s = format!("{} {} {}", time(&r.ts), r.method, r.url);
    match (&r.failure, r.status) {
        (Some(f), _) => {
            let _ = write!(s, " FAILED {} [{}]", f, allow(r.allowlist.as_deref()));
        }
        (None, None) if r.unfinished.is_some() => {
            let why = r.unfinished.as_deref().unwrap_or_default();
            let _ = write!(s, " UNFINISHED {why} [{}]", allow(r.allowlist.as_deref()));
        }
        (None, status) => {
            let cut = if r.complete { "" } else { " (body cut off)" };
            let _ = write!(
                s,
                " {}{cut} {} {} down {} [{}]",
                status.map_or("-".to_string(), |c| c.to_string()),
                timing("wait", r.timings.wait_ms),
                duration(r.timings.total_ms),
                bytes(r.bytes_down),
                allow(r.allowlist.as_deref())
            );
        }
    }
    s.push_str(&via(&r.route));
    let s = with_remedy(s, profile, &r.host, r.failure.as_ref());
    with_findings(s, &r.findings)
}

/// ` via PROXY proxy.corp:8080` (or ` via DIRECT`), unless the session goes DIRECT for
/// every host anyway.
fn via(route: &crate::upstream::route::Taken) -> String {
    let always_direct = route
        .route_source
        .as_deref()
        .is_none_or(|s| s.starts_with("DIRECT ("));
    let signed = match &route.proxy_auth {
        Some(auth) if auth.outcome == crate::upstream::auth::Outcome::Ok => {
            format!(" (signed in: {})", auth.scheme.as_deref().unwrap_or("?"))
        }
        _ => String::new(),
    };
    match &route.hop {
        Some(hop) if !always_direct => format!(" via {hop}{signed}"),
        _ => String::new(),
    }
}

fn with_remedy(
    mut s: String,
    profile: &Profile,
    host: &str,
    failure: Option<&crate::failure::Failure>,
) -> String {
    if let Some(f) = failure {
        let finding = finding_for(profile, host, f);
        if !finding.remedy.is_empty() {
            let _ = write!(s, "\n    -> {}", finding.remedy);
        }
    }
    s
}

/// One highlighted line per finding: kind, vendor, detail, evidence, remedy.
fn with_findings(mut s: String, findings: &[crate::inspect::Finding]) -> String {
    for f in findings {
        let vendor = f
            .vendor
            .as_deref()
            .map_or(String::new(), |v| format!(" ({v})"));
        let _ = write!(
            s,
            "\n    !! {}{vendor}: {} [{}]",
            f.kind, f.detail, f.evidence
        );
        if let Some(excerpt) = &f.excerpt {
            let _ = write!(s, "\n    saw: {:?}", crate::text::terminal(excerpt, false));
        }
        let _ = write!(s, "\n    -> {}", f.remedy);
    }
    s
}

/// The per-host table printed when the session ends, led by the one-sentence verdict.
/// One host's row of the exit table, made safe for the terminal.
fn exit_row(h: &HostStats) -> String {
    let failures: Vec<String> = h.failures.iter().map(|(k, n)| format!("{k}×{n}")).collect();
    let worst = h.worst().map_or_else(|| "-".to_string(), |f| f.label());
    let row = format!(
        "{:<40} {:<26} {:>5} {:>5} {:>9} {:>9}  {:<40} {}",
        format!("{}:{}", h.host, h.port),
        allow(h.allowlist.as_deref()),
        h.connections,
        h.requests,
        bytes(h.bytes_up),
        bytes(h.bytes_down),
        worst,
        if failures.is_empty() {
            "-".to_string()
        } else {
            failures.join(" ")
        }
    );
    crate::text::terminal(&row, false).into_owned()
}

pub fn exit_table(summary: &Summary, color: bool) -> String {
    let mut out = String::new();
    let (on, off) = if color { (RED, RESET) } else { ("", "") };
    let verdict = summary.verdict();
    let _ = writeln!(out, "\n{on}{}{off}", crate::text::terminal(&verdict, false));
    let _ = writeln!(out, "\nsession {} — hosts seen:", summary.session().id);
    let _ = writeln!(
        out,
        "{:<40} {:<26} {:>5} {:>5} {:>9} {:>9}  {:<40} failures",
        "host:port", "allowlist", "conns", "reqs", "up", "down", "finding"
    );
    let (ours, others): (Vec<&HostStats>, Vec<&HostStats>) =
        summary.hosts().partition(|h| h.allowlist.is_some());
    let any = !ours.is_empty() || !others.is_empty();
    for h in ours {
        let row = exit_row(h);
        let row = match (color, h.is_failing(), h.worst().is_some()) {
            (true, true, _) => format!("{RED}{row}{RESET}"),
            (true, false, true) => format!("{YELLOW}{row}{RESET}"),
            _ => row,
        };
        let _ = writeln!(out, "{row}");
    }
    if !others.is_empty() {
        // A browser's own traffic: listed, never coloured as a failure.
        let (dim, reset) = if color { (DIM, RESET) } else { ("", "") };
        let _ = writeln!(
            out,
            "{dim}other traffic (not ChatGPT, not part of the verdict):{reset}"
        );
        for h in others {
            let _ = writeln!(out, "{dim}{}{reset}", exit_row(h));
        }
    }
    if !any {
        let _ = writeln!(
            out,
            "{}(no traffic went through the proxy){}",
            if color { DIM } else { "" },
            if color { RESET } else { "" }
        );
    }
    out
}

fn time(ts: &str) -> &str {
    ts.split_once('T')
        .map_or(ts, |(_, t)| t.trim_end_matches('Z'))
}

fn allow(entry: Option<&str>) -> &str {
    entry.unwrap_or("other")
}

/// How a tunnel ended, in words.
pub fn end(end: TunnelEnd) -> &'static str {
    match end {
        TunnelEnd::DownstreamClosed => "closed by client",
        TunnelEnd::UpstreamClosed => "closed by server",
        TunnelEnd::DownstreamReset => "RESET by client",
        TunnelEnd::UpstreamReset => "RESET by server",
        TunnelEnd::IdleTimeout => "idle timeout",
        TunnelEnd::OpenAtShutdown => "still open at shutdown",
        TunnelEnd::Failed => "failed",
    }
}

fn timing(name: &str, ms: Option<f64>) -> String {
    ms.map_or(String::new(), |ms| format!("{name} {}", duration(ms)))
}

pub fn duration(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.1}ms")
    } else {
        format!("{:.2}s", ms / 1000.0)
    }
}

pub fn bytes(n: u64) -> String {
    match n {
        0..=1023 => format!("{n} B"),
        1024..=1_048_575 => format!("{:.1} KiB", n as f64 / 1024.0),
        _ => format!("{:.1} MiB", n as f64 / 1_048_576.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::{Failure, FailureKind, Side};
    use crate::session::event::{Downstream, Timings, TunnelEvent};
    use crate::session::event::{Payload, TunnelMode};

    fn failed_tunnel() -> Event {
        Event::Tunnel(Box::new(TunnelEvent {
            mode: TunnelMode::Tunnel,
            ts: "2026-11-27T18:30:01.123Z".into(),
            host: "files.oaiusercontent.com".into(),
            port: 443,
            sni: None,
            alpn: vec![],
            payload: Payload::None,
            first_bytes: None,
            allowlist: Some("files.oaiusercontent.com".into()),
            server_ip: None,
            route: Default::default(),
            downstream: Downstream::default(),
            timings: Timings::default(),
            bytes_up: 0,
            bytes_down: 0,
            end: TunnelEnd::Failed,
            failure: Some(Failure::new(
                FailureKind::DnsFailed,
                Side::Upstream,
                "no such name",
            )),
            findings: Vec::new(),
        }))
    }

    #[test]
    fn failures_carry_the_remedy_and_survive_quiet() {
        let style = Style {
            format: Format::Human,
            color: false,
            quiet: true,
        };
        let text = line(&failed_tunnel(), &Profile::builtin(), style).unwrap();
        assert!(
            text.starts_with("18:30:01.123 CONNECT files.oaiusercontent.com:443 FAILED dns_failed"),
            "{text}"
        );
        assert!(text.contains("-> Check the DNS filter"), "{text}");
        assert!(text.contains("VPN, web proxy and firewall"), "{text}");
    }

    #[test]
    fn json_lines_are_events() {
        let style = Style {
            format: Format::Json,
            color: false,
            quiet: false,
        };
        let text = line(&failed_tunnel(), &Profile::builtin(), style).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["type"], "tunnel");
        assert_eq!(value["failure"]["kind"], "dns_failed");
    }

    #[test]
    fn sizes_and_durations_read_well() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(2048), "2.0 KiB");
        assert_eq!(bytes(3 * 1_048_576), "3.0 MiB");
        assert_eq!(duration(12.34), "12.3ms");
        assert_eq!(duration(1500.0), "1.50s");
    }

    #[test]
    fn network_text_cannot_drive_the_terminal() {
        let evil = "EVIL\x1b]0;PWNED\x07\x1b[31m\u{9b}";
        let mut event = failed_tunnel();
        if let Event::Tunnel(t) = &mut event {
            t.downstream.user_agent = Some(evil.into());
            t.failure = Some(Failure::new(FailureKind::TlsFailed, Side::Upstream, evil));
        }
        for color in [false, true] {
            let style = Style {
                format: Format::Human,
                color,
                quiet: false,
            };
            let text = line(&event, &Profile::builtin(), style).unwrap();
            let text = text.replace(RED, "").replace(RESET, "");
            assert!(text.contains("EVIL\\x1b]0;PWNED\\x07"), "{text}");
            assert!(
                !text
                    .chars()
                    .any(|c| c != '\n' && (c.is_control() || ('\u{80}'..='\u{9f}').contains(&c))),
                "{text:?}"
            );
        }
        let mut summary = Summary::new(Default::default(), std::sync::Arc::new(Profile::builtin()));
        summary.apply(&event);
        let table = exit_table(&summary, false);
        assert!(!table.contains('\x1b'), "{table:?}");
    }
}

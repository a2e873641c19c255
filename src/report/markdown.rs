//! Markdown for a support ticket: environment, verdict, failing hosts with evidence and
//! remedies, how to reproduce, what was tried. Short enough to paste.

use std::fmt::Write;

use super::Session;

pub fn render(session: &Session) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# ChatGPT network diagnosis (diagproxy)\n");
    let _ = writeln!(md, "**Verdict:** {}\n", cell(&session.summary.verdict()));
    imported(&mut md, session);
    environment(&mut md, session);
    failing(&mut md, session);
    other_traffic(&mut md, session);
    tried(&mut md, session);
    md
}

/// An imported file: what it was, where reading stopped, and what it cannot show.
fn imported(md: &mut String, session: &Session) {
    let Some(source) = session.info().source.as_deref() else {
        return;
    };
    let _ = writeln!(
        md,
        "Imported from `{}` ({} records{}{}).\n",
        cell(&source.file),
        source.records,
        source
            .capture_mode
            .as_deref()
            .map_or(String::new(), |m| format!(", capture mode {}", cell(m))),
        source
            .browser
            .as_deref()
            .map_or(String::new(), |b| format!(", written by {}", cell(b))),
    );
    if let Some(stopped) = &source.stopped {
        let _ = writeln!(md, "- Note: {}", cell(stopped));
    }
    for line in &source.cannot_tell {
        let _ = writeln!(md, "- Cannot tell: {}", cell(line));
    }
    md.push('\n');
}

/// Machine, path out and session times.
fn environment(md: &mut String, session: &Session) {
    let info = session.info();
    let _ = writeln!(md, "## Environment\n");
    let os = if info.os.is_empty() {
        "unknown"
    } else {
        &info.os
    };
    let _ = writeln!(
        md,
        "- Machine: {os}; diagproxy {}; profile `{}`",
        info.diagproxy, info.profile
    );
    let chain = match &info.upstream_proxy {
        Some(p) => format!(
            "client → diagproxy ({}) → corporate proxy {p} → internet",
            info.listen
        ),
        None if info
            .route_source
            .as_deref()
            .is_some_and(|s| !s.starts_with("DIRECT (")) =>
        {
            format!(
                "client → diagproxy ({}) → each host's own route (below) → internet",
                info.listen
            )
        }
        None => format!(
            "client → diagproxy ({}) → internet (no corporate proxy configured)",
            info.listen
        ),
    };
    let _ = writeln!(md, "- Path: {chain}");
    if let Some(source) = &info.route_source {
        let _ = writeln!(md, "- Route source: {}", crate::text::markdown(source));
    }
    if let Some(pac) = &info.pac {
        let _ = writeln!(
            md,
            "- PAC file: {} ({} bytes, SHA-256 `{}`)",
            crate::text::markdown(&pac.url),
            pac.size,
            pac.sha256
        );
    }
    for signed in session.summary.sign_ins() {
        let _ = writeln!(
            md,
            "- Proxy sign-in: {}",
            crate::text::markdown(&signed.line())
        );
    }
    let ended = &session.ended_at;
    let _ = writeln!(
        md,
        "- Session `{}`: {} to {}\n",
        info.id,
        info.started_at,
        ended.as_deref().unwrap_or("(cut off, no clean end)")
    );
}

/// Every finding per host, then the commands that reproduce them.
fn failing(md: &mut String, session: &Session) {
    let failing: Vec<_> = session
        .summary
        .hosts()
        .filter(|h| h.allowlist.is_some() && !h.findings.is_empty())
        .collect();
    let _ = writeln!(md, "## Failing hosts\n");
    if failing.is_empty() {
        let _ = writeln!(md, "None seen.\n");
    } else {
        let _ = writeln!(
            md,
            "| host | problem | evidence | what breaks | remedy |\n|---|---|---|---|---|"
        );
        for h in &failing {
            for f in &h.findings {
                let vendor = f
                    .vendor
                    .as_deref()
                    .map_or(String::new(), |v| format!(" ({})", cell(v)));
                let _ = writeln!(
                    md,
                    "| {}:{} | {}{vendor} | {} | {} | {} |",
                    cell(&h.host),
                    h.port,
                    f.kind,
                    cell(&match &f.excerpt {
                        Some(saw) => format!("{}; the user saw: \"{saw}\"", f.evidence),
                        None => f.evidence.clone(),
                    }),
                    cell(f.feature.as_deref().unwrap_or("-")),
                    cell(&f.remedy)
                );
            }
        }
        let _ = writeln!(md);
        reproduce(md, &failing);
    }
}

/// Hosts outside the profile with problems, in one folded list: not ChatGPT's, said so.
fn other_traffic(md: &mut String, session: &Session) {
    let troubled: Vec<String> = session
        .summary
        .hosts()
        .filter(|h| h.allowlist.is_none() && (h.is_failing() || !h.findings.is_empty()))
        .map(|h| {
            let mut what: Vec<String> = h.failures.keys().map(|k| k.to_string()).collect();
            what.extend(h.findings.iter().map(|f| f.kind.to_string()));
            what.dedup();
            format!("{}:{} ({})", h.host, h.port, what.join(", "))
        })
        .collect();
    if troubled.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "<details><summary>Other traffic (not ChatGPT): {} host(s) with problems, not part of the verdict</summary>\n\n{}\n\n</details>\n",
        troubled.len(),
        cell(&troubled.join("; "))
    );
}

/// The reproduce commands of `failing`'s findings, each once.
fn reproduce(md: &mut String, failing: &[&crate::session::summary::HostStats]) {
    let commands: Vec<&str> = failing
        .iter()
        .flat_map(|h| h.findings.iter().filter_map(|f| f.reproduce.as_deref()))
        .collect();
    if !commands.is_empty() {
        // An indented code block: nothing in a command (backticks included) can end it.
        let _ = writeln!(md, "## Reproduce without diagproxy\n");
        let mut seen = Vec::new();
        for c in commands {
            if !seen.contains(&c) {
                let _ = writeln!(md, "    {}", crate::text::terminal(c, false));
                seen.push(c);
            }
        }
        let _ = writeln!(md);
    }
}

/// What went through diagproxy: counts, allowlist coverage, clients.
fn tried(md: &mut String, session: &Session) {
    let _ = writeln!(md, "## What was tried\n");
    let (tunnels, requests) = (session.tunnels, session.requests);
    let doc = session.summary.doc();
    let _ = writeln!(
        md,
        "- {tunnels} tunnel(s) and {requests} request(s) to {} host(s) went through diagproxy.",
        doc.hosts.len()
    );
    let _ = writeln!(
        md,
        "- Allowlist entries touched: {} of {}; failing: {}.",
        doc.allowlist.touched.len(),
        session.profile.entries.len(),
        if doc.allowlist.failing.is_empty() {
            "none".to_string()
        } else {
            doc.allowlist.failing.join(", ")
        }
    );
    let user_agents: std::collections::BTreeSet<&str> = session
        .summary
        .hosts()
        .flat_map(|h| h.user_agents.iter().map(String::as_str))
        .collect();
    if !user_agents.is_empty() {
        let _ = writeln!(
            md,
            "- Clients: {}.",
            cell(&user_agents.into_iter().collect::<Vec<_>>().join("; "))
        );
    }
    let _ = writeln!(md, "- OpenAI's status page should be checked first; the isolation test is `diagproxy compare <this session> <a session on a mobile hotspot>`.");
}

/// Keeps a table cell on one line, with no markup from the network in it.
fn cell(text: &str) -> String {
    crate::text::markdown(&text.replace('\n', " "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures;
    use crate::session::event::Event;

    #[test]
    fn ticket_text_is_short_and_complete() {
        let md = render(&fixtures::session());
        assert!(
            md.contains("**Verdict:** Fortinet FortiGuard blocks files.oaiusercontent.com"),
            "{md}"
        );
        assert!(
            md.contains("corporate proxy http://***@corp.example:3128"),
            "{md}"
        );
        assert!(
            md.contains("| files.oaiusercontent.com:443 | block_page (Fortinet FortiGuard) |"),
            "{md}"
        );
        assert!(
            md.contains("curl -sv -o /dev/null -x http://corp.example:3128 --proxy-user USER:PASS"),
            "{md}"
        );
        assert!(!md.contains("sk-live-very-secret") && !md.contains("sk-query-secret"));
        assert!(md.lines().count() < 60, "short enough to paste");
    }

    #[test]
    fn network_text_carries_no_markup_or_escapes() {
        let mut events = fixtures::events();
        for e in &mut events {
            let findings = match e {
                Event::Request(r) => &mut r.findings,
                Event::Tunnel(t) => &mut t.findings,
                _ => continue,
            };
            for f in findings {
                f.evidence = "Location: <script>alert(1)</script> `x` \x1b[31m".into();
            }
        }
        let md = render(&fixtures::session_of(&events));
        assert!(
            md.contains("&lt;script&gt;alert(1)&lt;/script&gt; &#96;x&#96; \\x1b[31m"),
            "{md}"
        );
        assert!(!md.contains("<script>") && !md.contains('\x1b'), "{md}");
    }
}

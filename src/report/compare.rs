//! `diagproxy compare A B`, the guidance's decisive isolation test: the same device on the
//! company network (A) and on a mobile hotspot (B). Hosts that work in one and fail in the
//! other, chains whose issuer or CA key differs, answers whose status or type differs, and
//! the latency each network adds. The first line answers "is the company network the cause?".

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use super::{esc, Session};
use crate::session::event::Event;
use crate::session::summary::HostStats;

#[derive(Debug, Serialize)]
pub struct Comparison {
    /// The answer, in one sentence.
    pub answer: String,
    pub a: String,
    pub b: String,
    pub hosts: Vec<HostDiff>,
    pub chains: Vec<ChainDiff>,
    pub responses: Vec<ResponseDiff>,
    pub latency: Vec<LatencyDiff>,
}

#[derive(Debug, Serialize)]
pub struct HostDiff {
    pub host: String,
    pub a: String,
    pub b: String,
}

#[derive(Debug, Serialize)]
pub struct ChainDiff {
    pub host: String,
    pub a: String,
    pub b: String,
    /// The SPKI hashes of the CAs above the leaf differ (a different CA key signs).
    pub ca_key_differs: bool,
}

#[derive(Debug, Serialize)]
pub struct ResponseDiff {
    pub url: String,
    pub a: String,
    pub b: String,
}

#[derive(Debug, Serialize)]
pub struct LatencyDiff {
    pub host: String,
    pub a_ms: f64,
    pub b_ms: f64,
    /// What A adds over B (negative: A is faster).
    pub added_ms: f64,
}

/// How a host fared in one session.
fn outcome(h: Option<&HostStats>) -> Option<(bool, String)> {
    let h = h?;
    let mut problems: Vec<String> = h.failures.keys().map(|k| k.to_string()).collect();
    for f in &h.findings {
        let label = match &f.vendor {
            Some(v) => format!("{} ({v})", f.kind),
            None => f.kind.to_string(),
        };
        if !problems.contains(&f.kind.to_string()) && !problems.contains(&label) {
            problems.push(label);
        }
    }
    Some((
        problems.is_empty(),
        if problems.is_empty() {
            "ok".into()
        } else {
            problems.join(", ")
        },
    ))
}

pub fn compare(a: &Session, b: &Session) -> Comparison {
    let key = |h: &HostStats| format!("{}:{}", h.host, h.port);
    let a_hosts: BTreeMap<String, &HostStats> = a.summary.hosts().map(|h| (key(h), h)).collect();
    let b_hosts: BTreeMap<String, &HostStats> = b.summary.hosts().map(|h| (key(h), h)).collect();
    let mut names: Vec<&String> = a_hosts.keys().chain(b_hosts.keys()).collect();
    names.sort();
    names.dedup();
    let mut hosts = Vec::new();
    let mut chains = Vec::new();
    let (mut only_a, mut only_b, mut both) = (0, 0, 0);
    for name in names {
        let (ha, hb) = (a_hosts.get(name).copied(), b_hosts.get(name).copied());
        let (oa, ob) = (outcome(ha), outcome(hb));
        match (&oa, &ob) {
            (Some((ok_a, text_a)), Some((ok_b, text_b)))
                if ok_a != ok_b || (!ok_a && text_a != text_b) =>
            {
                if !ok_a && *ok_b {
                    only_a += 1;
                } else if *ok_a && !ok_b {
                    only_b += 1;
                } else {
                    both += 1;
                }
                hosts.push(HostDiff {
                    host: name.clone(),
                    a: text_a.clone(),
                    b: text_b.clone(),
                });
            }
            (Some((false, _)), Some((false, _))) => both += 1,
            (Some((false, text_a)), None) => hosts.push(HostDiff {
                host: name.clone(),
                a: text_a.clone(),
                b: "not touched".into(),
            }),
            (None, Some((false, text_b))) => hosts.push(HostDiff {
                host: name.clone(),
                a: "not touched".into(),
                b: text_b.clone(),
            }),
            _ => {}
        }
        chains.extend(chain_diff(name, ha, hb));
    }
    let resigned_a = chains
        .iter()
        .filter(|c| c.a.starts_with("inspected") || c.a.starts_with("untrusted"))
        .count();
    let resigned_b = chains
        .iter()
        .filter(|c| c.b.starts_with("inspected") || c.b.starts_with("untrusted"))
        .count();
    let answer = answer(
        &a.info().id,
        &b.info().id,
        only_a + resigned_a,
        only_b + resigned_b,
        both,
        &hosts,
        &chains,
    );
    Comparison {
        answer,
        a: a.info().id.clone(),
        b: b.info().id.clone(),
        hosts,
        chains,
        responses: responses(a, b),
        latency: latency(a, b),
    }
}

/// How the chain presented for one host differs between the sessions, if it does.
fn chain_diff(name: &str, ha: Option<&HostStats>, hb: Option<&HostStats>) -> Option<ChainDiff> {
    let (ta, tb) = (ha?.tls.as_ref()?, hb?.tls.as_ref()?);
    let cas = |t: &crate::tls::chain::TlsVerdict| {
        t.chain
            .iter()
            .skip(1)
            .map(|c| c.spki_sha256.clone())
            .collect::<Vec<_>>()
    };
    let ca_key_differs = cas(ta) != cas(tb);
    if ta.issuer != tb.issuer || ca_key_differs || ta.verdict != tb.verdict {
        let show = |t: &crate::tls::chain::TlsVerdict| {
            format!(
                "{} by {}{}",
                t.verdict.as_str(),
                t.issuer,
                t.vendor
                    .as_deref()
                    .map_or(String::new(), |v| format!(" ({v})"))
            )
        };
        return Some(ChainDiff {
            host: name.to_string(),
            a: show(ta),
            b: show(tb),
            ca_key_differs,
        });
    }
    None
}

fn answer(
    a: &str,
    b: &str,
    a_worse: usize,
    b_worse: usize,
    both: usize,
    hosts: &[HostDiff],
    chains: &[ChainDiff],
) -> String {
    let blocked = |pick: fn(&HostDiff) -> &String| {
        hosts
            .iter()
            .filter(|h| pick(h) != "ok" && pick(h) != "not touched")
            .count()
    };
    match (a_worse, b_worse) {
        (0, 0) if both > 0 => format!("No: the same {both} host(s) fail on both networks, so the network is not what differs: look at this device (local software, settings) and OpenAI's status page."),
        (0, 0) if hosts.is_empty() && chains.is_empty() => "No: the two sessions look the same; nothing in the network differs.".to_string(),
        (0, 0) => "Unclear: the sessions touched different hosts; reproduce the same steps on both networks.".to_string(),
        (x, 0) => format!("Yes: the network of session A ({a}) is the likely cause: {x} problem(s) there ({} failing host(s), {} re-signed chain(s)) that session B ({b}) does not have.", blocked(|h| &h.a), chains.iter().filter(|c| c.a.starts_with("inspected") || c.a.starts_with("untrusted")).count()),
        (0, y) => format!("Yes, but the other way round: session B ({b}) has {y} problem(s) that session A ({a}) does not."),
        (x, y) => format!("Partly: session A ({a}) has {x} problem(s) B lacks, and B ({b}) has {y} A lacks."),
    }
}

/// Answers whose status or content type differs for the same URL (first answer of each).
fn responses(a: &Session, b: &Session) -> Vec<ResponseDiff> {
    let answers = |s: &Session| {
        let mut map = BTreeMap::new();
        for e in &s.events {
            if let Event::Request(r) = e {
                let url = r.url.split('?').next().unwrap_or(&r.url).to_string();
                let text = match (r.status, &r.failure) {
                    (Some(st), _) => format!("{st} {}", r.content_type.as_deref().unwrap_or("-")),
                    (None, Some(f)) => f.kind.to_string(),
                    (None, None) => "no answer".into(),
                };
                map.entry(url).or_insert(text);
            }
        }
        map
    };
    let (ma, mb) = (answers(a), answers(b));
    ma.iter()
        .filter_map(|(url, ta)| {
            mb.get(url).filter(|tb| *tb != ta).map(|tb| ResponseDiff {
                url: url.clone(),
                a: ta.clone(),
                b: tb.clone(),
            })
        })
        .collect()
}

/// Mean connect + wait per host in each session, where both have numbers.
fn latency(a: &Session, b: &Session) -> Vec<LatencyDiff> {
    let means = |s: &Session| {
        let mut sums: BTreeMap<String, (f64, u32)> = BTreeMap::new();
        for e in &s.events {
            let (host, ms) = match e {
                Event::Request(r) => (
                    r.host.clone(),
                    r.timings.connect_ms.unwrap_or(0.0) + r.timings.wait_ms.unwrap_or(0.0),
                ),
                Event::Tunnel(t) if t.failure.is_none() => (
                    t.host_name().to_string(),
                    t.timings.connect_ms.unwrap_or(0.0)
                        + t.timings.proxy_connect_ms.unwrap_or(0.0)
                        + t.timings.wait_ms.unwrap_or(0.0),
                ),
                _ => continue,
            };
            let entry = sums.entry(host).or_insert((0.0, 0));
            entry.0 += ms;
            entry.1 += 1;
        }
        sums.into_iter()
            .map(|(h, (sum, n))| (h, sum / f64::from(n)))
            .collect::<BTreeMap<_, _>>()
    };
    let (ma, mb) = (means(a), means(b));
    ma.iter()
        .filter_map(|(host, a_ms)| {
            let b_ms = *mb.get(host)?;
            Some(LatencyDiff {
                host: host.clone(),
                a_ms: round(*a_ms),
                b_ms: round(b_ms),
                added_ms: round(a_ms - b_ms),
            })
        })
        .collect()
}

fn round(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// Plain text: the answer first, then each section.
pub fn text(c: &Comparison) -> String {
    let mut out = format!("{}\n\nA = {}\nB = {}\n", c.answer, c.a, c.b);
    if !c.hosts.is_empty() {
        let _ = writeln!(out, "\nhosts that differ:\n{:<40} {:<40} B", "host", "A");
        for h in &c.hosts {
            let _ = writeln!(out, "{:<40} {:<40} {}", h.host, h.a, h.b);
        }
    }
    if !c.chains.is_empty() {
        let _ = writeln!(out, "\ncertificate chains that differ:");
        for ch in &c.chains {
            let _ = writeln!(
                out,
                "{}\n  A: {}\n  B: {}{}",
                ch.host,
                ch.a,
                ch.b,
                if ch.ca_key_differs {
                    "\n  (a different CA key signs)"
                } else {
                    ""
                }
            );
        }
    }
    if !c.responses.is_empty() {
        let _ = writeln!(out, "\nanswers that differ:");
        for r in &c.responses {
            let _ = writeln!(out, "{}\n  A: {}\n  B: {}", r.url, r.a, r.b);
        }
    }
    if !c.latency.is_empty() {
        let _ = writeln!(
            out,
            "\nlatency (connect + wait, mean):\n{:<40} {:>10} {:>10} {:>10}",
            "host", "A ms", "B ms", "A adds"
        );
        for l in &c.latency {
            let _ = writeln!(
                out,
                "{:<40} {:>10.1} {:>10.1} {:>+10.1}",
                l.host, l.a_ms, l.b_ms, l.added_ms
            );
        }
    }
    out
}

/// A self-contained HTML page of the same.
pub fn html(c: &Comparison) -> String {
    let mut rows = String::new();
    for h in &c.hosts {
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&h.host),
            esc(&h.a),
            esc(&h.b)
        );
    }
    for ch in &c.chains {
        let _ = write!(
            rows,
            "<tr><td>{} (certificate)</td><td>{}</td><td>{}</td></tr>",
            esc(&ch.host),
            esc(&ch.a),
            esc(&ch.b)
        );
    }
    for r in &c.responses {
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.url),
            esc(&r.a),
            esc(&r.b)
        );
    }
    for l in &c.latency {
        let _ = write!(
            rows,
            "<tr><td>{} (latency)</td><td>{:.1} ms</td><td>{:.1} ms</td></tr>",
            esc(&l.host),
            l.a_ms,
            l.b_ms
        );
    }
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>diagproxy compare</title><style>body{{font:14px system-ui,sans-serif;margin:2em}}\
         table{{border-collapse:collapse}}td,th{{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left}}.answer{{font-size:1.2em;padding:.6em;background:#f4f4f4}}</style></head>\
         <body><h1>diagproxy compare</h1><p class=\"answer\" id=\"answer\">{}</p><table><tr><th>what</th><th>A: {}</th><th>B: {}</th></tr>{rows}</table></body></html>\n",
        esc(&c.answer),
        esc(&c.a),
        esc(&c.b)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures;
    use crate::session::event::{Event, TunnelEnd};

    /// The fixture session as if recorded on a hotspot: the upload works, the chain is public.
    fn hotspot() -> Session {
        let events: Vec<Event> = fixtures::events()
            .into_iter()
            .map(|e| match e {
                Event::SessionStarted(mut info) => {
                    info.id = "hotspot".into();
                    Event::SessionStarted(info)
                }
                Event::Tunnel(mut t) => {
                    t.failure = None;
                    t.findings.clear();
                    t.end = TunnelEnd::DownstreamClosed;
                    t.timings.proxy_connect_ms = None;
                    Event::Tunnel(t)
                }
                Event::TlsCheck(mut c) => {
                    if let Some(tls) = c.tls.as_mut() {
                        tls.verdict = crate::tls::chain::Verdict::Public;
                        tls.issuer = "CN=WE1, O=Google Trust Services".into();
                        tls.vendor = None;
                        tls.chain.push(crate::tls::chain::CertInfo {
                            subject: "CN=WE1".into(),
                            issuer: "CN=GTS Root R4".into(),
                            not_before: String::new(),
                            not_after: String::new(),
                            spki_sha256: "cd".repeat(32),
                        });
                    }
                    Event::TlsCheck(c)
                }
                other => other,
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let text: String = events
            .iter()
            .map(|e| serde_json::to_string(e).unwrap() + "\n")
            .collect();
        std::fs::write(dir.path().join("events.jsonl"), text).unwrap();
        Session::load(dir.path()).unwrap()
    }

    #[test]
    fn a_block_and_a_resigned_chain_on_the_company_network() {
        let c = compare(&fixtures::session(), &hotspot());
        assert!(
            c.answer.starts_with("Yes: the network of session A"),
            "{}",
            c.answer
        );
        let upload = c
            .hosts
            .iter()
            .find(|h| h.host == "files.oaiusercontent.com:443")
            .unwrap();
        assert!(
            upload.a.contains("block_page (Fortinet FortiGuard)") && upload.b == "ok",
            "{upload:?}"
        );
        let chain = c
            .chains
            .iter()
            .find(|ch| ch.host == "chatgpt.com:443")
            .unwrap();
        assert!(
            chain.a.starts_with("inspected by CN=Zscaler") && chain.b.starts_with("public"),
            "{chain:?}"
        );
        assert!(chain.ca_key_differs);
        let text = text(&c);
        assert_eq!(text.lines().next().unwrap(), c.answer);
        assert!(html(&c).contains("id=\"answer\""));
        let cdn = c
            .latency
            .iter()
            .find(|l| l.host == "cdn.oaistatic.com")
            .unwrap();
        assert_eq!(
            cdn.added_ms, 40.0,
            "the corporate proxy's CONNECT adds 40 ms"
        );
    }

    #[test]
    fn the_same_failures_on_both_networks_are_not_the_network() {
        let c = compare(&fixtures::session(), &fixtures::session());
        assert!(c.answer.starts_with("No: the same"), "{}", c.answer);
        assert!(c.chains.is_empty() && c.responses.is_empty());
    }
}

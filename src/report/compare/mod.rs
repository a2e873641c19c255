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
    /// Said before the answer when the comparison cannot mean anything (a session compared
    /// with itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// The sessions' ids.
    pub a: String,
    pub b: String,
    /// The sessions' folder names, as the columns are labelled.
    pub a_label: String,
    pub b_label: String,
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

/// `host:port` → the profile's hosts of a session.
fn profile_hosts(s: &Session) -> BTreeMap<String, &HostStats> {
    s.summary
        .hosts()
        .filter(|h| h.allowlist.is_some())
        .map(|h| (format!("{}:{}", h.host, h.port), h))
        .collect()
}

pub fn compare(a: &Session, b: &Session) -> Comparison {
    // Only the profile's hosts answer "is the network the cause?": a browser's own
    // background hosts failing on one network say nothing about ChatGPT.
    let (a_hosts, b_hosts) = (profile_hosts(a), profile_hosts(b));
    let mut names: Vec<&String> = a_hosts.keys().chain(b_hosts.keys()).collect();
    names.sort();
    names.dedup();
    let mut hosts = Vec::new();
    let mut chains = Vec::new();
    let mut both = 0;
    for name in names {
        let (ha, hb) = (a_hosts.get(name).copied(), b_hosts.get(name).copied());
        let (oa, ob) = (outcome(ha), outcome(hb));
        match (&oa, &ob) {
            (Some((ok_a, text_a)), Some((ok_b, text_b)))
                if ok_a != ok_b || (!ok_a && text_a != text_b) =>
            {
                if !ok_a && !ok_b {
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
    let worse_a = Worse::of(&hosts, &chains, |h| &h.a, |h| &h.b, |c| &c.a, |c| &c.b);
    let worse_b = Worse::of(&hosts, &chains, |h| &h.b, |h| &h.a, |c| &c.b, |c| &c.a);
    let (mut a_label, mut b_label) = (label(a, 1), label(b, 1));
    if a_label == b_label {
        (a_label, b_label) = (label(a, 2), label(b, 2));
    }
    let answer = answer(
        &a_label, &b_label, &worse_a, &worse_b, both, &hosts, &chains,
    );
    let (ia, ib) = (a.info(), b.info());
    let same = (ia.id == ib.id && ia.started_at == ib.started_at)
        || a.dir
            .canonicalize()
            .ok()
            .is_some_and(|d| Some(d) == b.dir.canonicalize().ok());
    let warning = same.then(|| {
        format!(
            "Warning: A and B are the same session ({}): compare a session recorded on the company network with one of the same steps on another network (a mobile hotspot).",
            a.info().id
        )
    });
    Comparison {
        answer,
        warning,
        a: a.info().id.clone(),
        b: b.info().id.clone(),
        a_label,
        b_label,
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

/// A session's label: the last `parts` components of its folder (what the user typed),
/// else its id.
fn label(s: &Session, parts: usize) -> String {
    let names: Vec<String> = s
        .dir
        .components()
        .rev()
        .take(parts)
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let joined: Vec<&str> = names.iter().rev().map(String::as_str).collect();
    let label = joined.join("/");
    if label.is_empty() || label == "." {
        s.info().id.clone()
    } else {
        crate::text::terminal(&label, false).into_owned()
    }
}

/// The hosts one session has a problem with and the other has not, each counted once.
struct Worse {
    /// Every such host.
    hosts: std::collections::BTreeSet<String>,
    /// Of those, the ones whose chain is re-signed or untrusted there and not in the other.
    resigned: usize,
}

impl Worse {
    fn of(
        hosts: &[HostDiff],
        chains: &[ChainDiff],
        here: fn(&HostDiff) -> &String,
        there: fn(&HostDiff) -> &String,
        chain_here: fn(&ChainDiff) -> &String,
        chain_there: fn(&ChainDiff) -> &String,
    ) -> Worse {
        let bad = |t: &str| t.starts_with("inspected") || t.starts_with("untrusted");
        let mut set: std::collections::BTreeSet<String> = hosts
            .iter()
            .filter(|h| {
                let (x, y) = (here(h), there(h));
                x != "ok" && x != "not touched" && (y == "ok" || y == "not touched")
            })
            .map(|h| h.host.clone())
            .collect();
        let resigned: Vec<&ChainDiff> = chains
            .iter()
            .filter(|c| bad(chain_here(c)) && !bad(chain_there(c)))
            .collect();
        set.extend(resigned.iter().map(|c| c.host.clone()));
        Worse {
            hosts: set,
            resigned: resigned.len(),
        }
    }
}

fn answer(
    a: &str,
    b: &str,
    worse_a: &Worse,
    worse_b: &Worse,
    both: usize,
    hosts: &[HostDiff],
    chains: &[ChainDiff],
) -> String {
    let (x, y) = (worse_a.hosts.len(), worse_b.hosts.len());
    let resigned = |w: &Worse| match w.resigned {
        0 => String::new(),
        n => format!(", {n} of them because that network re-signs their TLS"),
    };
    match (x, y) {
        (0, 0) if both > 0 => format!("No: the same {both} host(s) fail on both networks, so the network is not what differs: look at this device (local software, settings) and OpenAI's status page."),
        (0, 0) if hosts.is_empty() && chains.is_empty() => "No: the two sessions look the same; nothing in the network differs.".to_string(),
        (0, 0) => "Unclear: the sessions touched different hosts; reproduce the same steps on both networks.".to_string(),
        (x, 0) => format!("Yes: the network of A ({a}) is the likely cause: {x} host(s) fail there and not in B ({b}){}.", resigned(worse_a)),
        (0, y) => format!("Yes, but the other way round: {y} host(s) fail in B ({b}) and not in A ({a}){}.", resigned(worse_b)),
        (x, y) => format!("Partly: {x} host(s) fail only in A ({a}), {y} only in B ({b})."),
    }
}

/// What `compare` needs of a session's events, folded as they are read: the first answer
/// to each URL and the connect + wait times per host, each for at most [`MAX_COMPARED`]
/// URLs or hosts (a session with more compares its first ones).
#[derive(Debug, Default)]
pub struct Digest {
    answers: BTreeMap<String, String>,
    sums: BTreeMap<String, (f64, u32)>,
}

/// URLs and hosts a [`Digest`] remembers.
pub const MAX_COMPARED: usize = 10_000;

impl Digest {
    pub fn add(&mut self, event: &Event) {
        match event {
            Event::Request(r) => {
                let url = r.url.split('?').next().unwrap_or(&r.url);
                if self.answers.len() < MAX_COMPARED && !self.answers.contains_key(url) {
                    let text = match (r.status, &r.failure) {
                        (Some(st), _) => {
                            format!("{st} {}", r.content_type.as_deref().unwrap_or("-"))
                        }
                        (None, Some(f)) => f.kind.to_string(),
                        (None, None) => "no answer".into(),
                    };
                    self.answers.insert(url.to_string(), text);
                }
                let ms = r.timings.connect_ms.unwrap_or(0.0) + r.timings.wait_ms.unwrap_or(0.0);
                self.time(&r.host, ms);
            }
            Event::Tunnel(t) if t.failure.is_none() => {
                let ms = t.timings.connect_ms.unwrap_or(0.0)
                    + t.timings.proxy_connect_ms.unwrap_or(0.0)
                    + t.timings.wait_ms.unwrap_or(0.0);
                self.time(t.host_name(), ms);
            }
            _ => {}
        }
    }

    fn time(&mut self, host: &str, ms: f64) {
        if let Some(entry) = self.sums.get_mut(host) {
            entry.0 += ms;
            entry.1 += 1;
        } else if self.sums.len() < MAX_COMPARED {
            self.sums.insert(host.to_string(), (ms, 1));
        }
    }
}

/// Answers whose status or content type differs for the same URL (first answer of each).
fn responses(a: &Session, b: &Session) -> Vec<ResponseDiff> {
    let (ma, mb) = (&a.digest.answers, &b.digest.answers);
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
        s.digest
            .sums
            .iter()
            .map(|(h, (sum, n))| (h.clone(), sum / f64::from(*n)))
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
    let warning = c
        .warning
        .as_deref()
        .map_or(String::new(), |w| format!("{w}\n"));
    let mut out = format!(
        "{warning}{}\n\nA = {} ({})\nB = {} ({})\n",
        c.answer, c.a_label, c.a, c.b_label, c.b
    );
    if !c.hosts.is_empty() {
        let (a, b) = (format!("A: {}", c.a_label), format!("B: {}", c.b_label));
        let _ = writeln!(out, "\nhosts that differ:\n{:<40} {:<40} {b}", "host", a);
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
            "\nlatency (connect + wait, mean; A = {}, B = {}):\n{:<40} {:>10} {:>10} {:>10}",
            c.a_label, c.b_label, "host", "A ms", "B ms", "A adds"
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
    let warning = c.warning.as_deref().map_or(String::new(), |w| {
        format!("<p class=\"verdict\" id=\"warning\">{}</p>", esc(w))
    });
    let good = c.answer.starts_with("No:");
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>diagproxy compare</title><style>{}</style></head>\
         <body><h1>diagproxy compare</h1><p class=\"meta\">A = <code>{}</code> ({}), B = <code>{}</code> ({})</p>{warning}\
         <p class=\"verdict{}\" id=\"answer\">{}</p><table><thead><tr><th>what</th><th>A: {}</th><th>B: {}</th></tr></thead><tbody>{rows}</tbody></table></body></html>\n",
        super::html::STYLE,
        esc(&c.a_label),
        esc(&c.a),
        esc(&c.b_label),
        esc(&c.b),
        if good { " good" } else { "" },
        esc(&c.answer),
        esc(&c.a_label),
        esc(&c.b_label)
    )
}

#[cfg(test)]
mod tests;

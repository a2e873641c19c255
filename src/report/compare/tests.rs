use super::*;
use crate::report::fixtures;
use crate::session::event::{Event, TunnelEnd};

#[test]
fn a_digest_remembers_at_most_max_compared_urls_and_hosts() {
    let request = fixtures::events()
        .into_iter()
        .find_map(|e| match e {
            Event::Request(r) => Some(r),
            _ => None,
        })
        .unwrap();
    let mut digest = Digest::default();
    for i in 0..MAX_COMPARED + 50 {
        let mut r = request.clone();
        r.url = format!("http://h{i}.test/?secret=1");
        r.host = format!("h{i}.test");
        digest.add(&Event::Request(r));
    }
    assert_eq!(digest.answers.len(), MAX_COMPARED);
    assert_eq!(digest.sums.len(), MAX_COMPARED);
    assert!(
        digest.answers.keys().all(|u| !u.contains('?')),
        "no query kept"
    );
}

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
                        fingerprint_sha256: String::new(),
                        not_after_unix: 0,
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
    // Counts that add up: two hosts fail only on A, one of them by its re-signed chain.
    assert!(
        c.answer.starts_with("Yes: the network of A (")
            && c.answer.contains("2 host(s) fail there and not in B")
            && c.answer
                .ends_with("1 of them because that network re-signs their TLS."),
        "{}",
        c.answer
    );
    assert_eq!(c.hosts.len(), 2, "{:?}", c.hosts);
    assert!(c.warning.is_none());
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
    // Columns say which folder is which.
    let header = format!("A: {}", c.a_label);
    assert!(
        text.contains(&header) && text.contains(&format!("B: {}", c.b_label)),
        "{text}"
    );
    let page = html(&c);
    assert!(page.contains("id=\"answer\"") && page.contains(&format!("<th>{header}</th>")));
    assert!(page.contains(".verdict{"), "styled like the report");
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
    // The same session twice (same id) is said to be meaningless, first.
    let warning = c.warning.as_deref().unwrap();
    assert!(
        warning.starts_with("Warning: A and B are the same session"),
        "{warning}"
    );
    assert!(text(&c).starts_with(warning));
    assert!(c.chains.is_empty() && c.responses.is_empty());
}

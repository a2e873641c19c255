use super::*;
use crate::failure::Side;
use crate::session::event::{Downstream, RequestEvent, Timings, TunnelEvent};
use crate::session::event::{Payload, TunnelMode};

fn info() -> SessionInfo {
    SessionInfo {
        id: "s1".into(),
        started_at: "2026-11-27T00:00:00.000Z".into(),
        listen: "127.0.0.1:8080".into(),
        upstream_proxy: None,
        upstream_credentials: false,
        route_source: None,
        pac: None,
        profile: "built-in:chatgpt".into(),
        diagproxy: "0".into(),
        os: String::new(),
        max_hosts: 100,
        resolve: vec![
            "chatgpt.com:8443:127.0.0.1".into(),
            "x.test:443:[::1]".into(),
        ],
        include_secrets: false,
        keylog: None,
        source: None,
    }
}

#[test]
fn pins_are_read_back_for_reproduce_commands() {
    let info = info();
    assert_eq!(
        info.pin("ChatGPT.com", 8443),
        Some("127.0.0.1".parse().unwrap())
    );
    assert_eq!(info.pin("x.test", 443), Some("::1".parse().unwrap()));
    assert_eq!(info.pin("chatgpt.com", 443), None);
    let mut s = Summary::new(info, Arc::new(Profile::builtin()));
    let f = Failure::new(FailureKind::ConnectRefused, Side::Upstream, "refused");
    match tunnel("chatgpt.com", Some(f)) {
        Event::Tunnel(mut t) => {
            t.port = 8443;
            s.apply(&Event::Tunnel(t));
        }
        _ => unreachable!(),
    }
    let doc = s.doc();
    assert_eq!(
        doc.hosts[0].findings[0].reproduce.as_deref(),
        Some("curl -sv -o /dev/null --resolve chatgpt.com:8443:127.0.0.1 'https://chatgpt.com:8443/'")
    );
}

#[test]
fn hosts_past_the_limit_share_one_row_and_profile_hosts_never_do() {
    let mut s = Summary::new(info(), Arc::new(Profile::builtin()));
    let failed = || Some(Failure::new(FailureKind::DnsFailed, Side::Upstream, "x"));
    for i in 0..3000 {
        s.apply(&tunnel(&format!("h{i}.invalid"), failed()));
    }
    s.apply(&tunnel("h2999.invalid", failed())); // folded again: counted once
    s.apply(&tunnel("chatgpt.com", None));
    let doc = s.doc();
    assert_eq!(doc.session.hosts_folded, 2900);
    assert_eq!(doc.hosts.len(), 102, "100 rows, `other hosts`, chatgpt.com");
    let other = doc.hosts.iter().find(|h| h.host == OTHER_HOSTS).unwrap();
    assert_eq!(other.failures.get(&FailureKind::DnsFailed), Some(&2901));
    assert!(doc.hosts.iter().any(|h| h.host == "chatgpt.com"));
    assert!(s.to_json().len() < 200_000, "{}", s.to_json().len());
}

#[test]
fn folded_pairs_past_the_tracked_ones_are_counted_and_seen_ones_are_not() {
    let mut folded = Folded::default();
    for i in 0..MAX_FOLDED_TRACKED {
        folded.insert((format!("h{i}"), 443));
    }
    assert_eq!(folded.count(), MAX_FOLDED_TRACKED as u64);
    folded.insert(("h7".into(), 443)); // already seen: not again
    assert_eq!(folded.count(), MAX_FOLDED_TRACKED as u64);
    folded.insert(("new".into(), 443));
    folded.insert(("new2".into(), 443));
    assert_eq!(folded.count(), MAX_FOLDED_TRACKED as u64 + 2);
    assert_eq!(folded.beyond, 2);
}

#[test]
fn user_agents_are_kept_once_each_up_to_sixteen_and_the_slowest_connect() {
    let mut s = Summary::new(info(), Arc::new(Profile::builtin()));
    for i in 0..20 {
        let Event::Tunnel(mut t) = tunnel("chatgpt.com", None) else {
            unreachable!()
        };
        t.downstream.user_agent = Some(format!("agent/{}", i % 18));
        t.timings.connect_ms = Some(f64::from(i));
        s.apply(&Event::Tunnel(t));
    }
    let doc = s.doc();
    let host = &doc.hosts[0];
    assert_eq!(host.user_agents.len(), 16);
    assert!(host.user_agents.contains("agent/0") && !host.user_agents.contains("agent/16"));
    assert_eq!(host.max_connect_ms, Some(19.0));
}

fn with_route(event: Event, hop: &str) -> Event {
    match event {
        Event::Tunnel(mut t) => {
            t.route.hop = Some(hop.into());
            Event::Tunnel(t)
        }
        other => other,
    }
}

#[test]
fn sign_ins_are_counted_per_proxy_by_scheme_and_failure() {
    use crate::upstream::auth::{AuthFailure, AuthRecord, Outcome};
    let mut s = Summary::new(info(), Arc::new(Profile::builtin()));
    let signed = |failure: Option<AuthFailure>, ms: f64| {
        let mut event = tunnel("chatgpt.com", None);
        if let Event::Tunnel(t) = &mut event {
            t.route.proxy_auth = Some(AuthRecord {
                proxy: "proxy.corp:3128".into(),
                offered: vec!["Negotiate".into(), "NTLM".into()],
                scheme: Some("Negotiate".into()),
                spn: Some("HTTP@proxy.corp".into()),
                outcome: if failure.is_some() {
                    Outcome::Failed
                } else {
                    Outcome::Ok
                },
                failure,
                ms,
                ..AuthRecord::default()
            });
        }
        event
    };
    s.apply(&signed(None, 2.0));
    s.apply(&signed(None, 5.0));
    s.apply(&signed(Some(AuthFailure::NoTicket), 1.0));
    s.apply(&tunnel("chatgpt.com", None));
    let doc = s.doc();
    assert_eq!(doc.proxy_sign_in.len(), 1);
    let p = doc.proxy_sign_in[0];
    assert_eq!(
        (
            p.ok["Negotiate"],
            p.failed["proxy_auth_no_ticket"],
            p.max_ms
        ),
        (2, 1, 5.0)
    );
    assert_eq!(
        p.line(),
        "proxy.corp:3128 (offers NTLM, Negotiate) as HTTP@proxy.corp: Negotiate ok ×2, proxy_auth_no_ticket ×1"
    );
    let json = serde_json::to_value(&doc).unwrap();
    assert_eq!(json["proxy_sign_in"][0]["ok"]["Negotiate"], 2);
}

/// The proxy a host went through is the last one seen, with the headers it added then:
/// the fold skips rewriting it only when both are the same as before.
#[test]
fn the_proxy_a_host_went_through_is_the_last_seen_with_its_headers() {
    let mut s = Summary::new(info(), Arc::new(Profile::builtin()));
    let via = |hop: &str, header: &str| {
        let mut event = with_route(tunnel("chatgpt.com", None), hop);
        if let Event::Tunnel(t) = &mut event {
            t.route.proxy_headers = vec![("via".into(), header.into())];
        }
        event
    };
    let seen = |s: &mut Summary| s.host("chatgpt.com", 443).via_proxy.clone();
    let expect = |hop: &str, header: &str| {
        Some((
            hop.to_string(),
            vec![("via".to_string(), header.to_string())],
        ))
    };
    s.apply(&via("PROXY p:1", "1.1 a"));
    assert_eq!(seen(&mut s), expect("PROXY p:1", "1.1 a"));
    s.apply(&via("PROXY p:1", "1.1 b"));
    assert_eq!(seen(&mut s), expect("PROXY p:1", "1.1 b"), "new headers");
    s.apply(&via("PROXY q:2", "1.1 b"));
    assert_eq!(seen(&mut s), expect("PROXY q:2", "1.1 b"), "another proxy");
}

#[test]
fn routes_are_kept_per_host_and_a_profile_host_going_another_way_is_split() {
    let mut s = Summary::new(info(), Arc::new(Profile::builtin()));
    s.apply(&with_route(tunnel("chatgpt.com", None), "PROXY p:1"));
    s.apply(&with_route(tunnel("chatgpt.com", None), "PROXY p:1"));
    s.apply(&with_route(tunnel("ab.chatgpt.com", None), "PROXY p:1"));
    s.apply(&with_route(tunnel("example.invalid", None), "DIRECT"));
    let doc = s.doc();
    let host = |name: &str| doc.hosts.iter().find(|h| h.host == name).unwrap();
    assert_eq!(host("chatgpt.com").routes.len(), 1);
    assert_eq!(host("chatgpt.com").connections, 2);
    assert!(
        doc.hosts.iter().all(|h| h.findings.is_empty()),
        "same way out, or not a profile host: no split"
    );
    s.apply(&with_route(tunnel("cdn.oaistatic.com", None), "DIRECT"));
    let doc = s.doc();
    let cdn = doc
        .hosts
        .iter()
        .find(|h| h.host == "cdn.oaistatic.com")
        .unwrap();
    assert_eq!(cdn.findings[0].kind, FindingKind::SplitRoute);
    assert_eq!(
        cdn.findings[0].evidence,
        "chatgpt.com goes PROXY p:1, cdn.oaistatic.com goes DIRECT"
    );
    for i in 0..20 {
        s.apply(&with_route(
            tunnel("chatgpt.com", None),
            &format!("PROXY p:{i}"),
        ));
    }
    let doc = s.doc();
    let chatgpt = doc.hosts.iter().find(|h| h.host == "chatgpt.com").unwrap();
    assert_eq!(
        chatgpt.routes.len(),
        MAX_ROUTES,
        "at most {MAX_ROUTES} routes per host"
    );
}

#[test]
fn a_failure_its_event_explains_is_counted_once_and_not_listed() {
    let mut s = Summary::new(info(), Arc::new(Profile::builtin()));
    let reset = || Some(Failure::new(FailureKind::Reset, Side::Upstream, "reset"));
    let named = |kind| {
        crate::inspect::Finding::new(
            &Profile::builtin(),
            kind,
            "chatgpt.com",
            None,
            "e".into(),
            "d".into(),
        )
    };
    for _ in 0..2 {
        let Event::Tunnel(mut t) = tunnel("chatgpt.com", reset()) else {
            unreachable!()
        };
        t.findings = vec![named(FindingKind::ResetAfterClientHello)];
        s.apply(&Event::Tunnel(t));
    }
    // A weaker finding does not explain the failure: the failure is listed too.
    let Event::Tunnel(mut t) = tunnel("cdn.oaistatic.com", reset()) else {
        unreachable!()
    };
    t.findings = vec![named(FindingKind::ProxyHeader)];
    s.apply(&Event::Tunnel(t));
    let doc = s.doc();
    let chatgpt = doc.hosts.iter().find(|h| h.host == "chatgpt.com").unwrap();
    assert_eq!(chatgpt.failures.get(&FailureKind::Reset), Some(&2));
    let kinds: Vec<FindingKind> = chatgpt.findings.iter().map(|f| f.kind).collect();
    assert_eq!(kinds, [FindingKind::ResetAfterClientHello]);
    let cdn = doc
        .hosts
        .iter()
        .find(|h| h.host == "cdn.oaistatic.com")
        .unwrap();
    let kinds: Vec<FindingKind> = cdn.findings.iter().map(|f| f.kind).collect();
    assert_eq!(
        kinds,
        [
            FindingKind::ProxyHeader,
            FindingKind::Failure(FailureKind::Reset)
        ]
    );
    assert_eq!(cdn.failures.get(&FailureKind::Reset), Some(&1));
}

fn tunnel(host: &str, failure: Option<Failure>) -> Event {
    Event::Tunnel(Box::new(TunnelEvent {
        mode: TunnelMode::Tunnel,
        ts: "t".into(),
        host: host.into(),
        port: 443,
        sni: None,
        alpn: vec![],
        payload: Payload::Tls,
        first_bytes: None,
        allowlist: None,
        server_ip: None,
        route: Default::default(),
        downstream: Downstream {
            addr: "127.0.0.1:1".into(),
            user_agent: Some("curl/8".into()),
        },
        timings: Timings {
            connect_ms: Some(2.0),
            ..Timings::default()
        },
        bytes_up: 10,
        bytes_down: 20,
        end: if failure.is_some() {
            TunnelEnd::Failed
        } else {
            TunnelEnd::DownstreamClosed
        },
        failure,
        findings: Vec::new(),
    }))
}

#[test]
fn the_live_pages_detail_gets_a_failure_as_a_finding_with_its_remedy_and_command() {
    let s = Summary::new(info(), Arc::new(Profile::builtin()));
    let failure = Failure::new(FailureKind::Reset, Side::Upstream, "reset");
    let found = s.findings_of(&tunnel("chatgpt.com", Some(failure.clone())));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].kind, FindingKind::Failure(FailureKind::Reset));
    assert!(!found[0].remedy.is_empty());
    assert!(found[0]
        .reproduce
        .as_deref()
        .is_some_and(|r| r.starts_with("curl") && r.contains("chatgpt.com")));
    // The same as the summary's own fold makes of it.
    let mut folded = Summary::new(info(), Arc::new(Profile::builtin()));
    folded.apply(&tunnel("chatgpt.com", Some(failure)));
    assert_eq!(
        folded.hosts().next().map(|h| h.findings.clone()),
        Some(found)
    );
    assert!(s.findings_of(&tunnel("chatgpt.com", None)).is_empty());
}

#[test]
fn hosts_are_counted_and_matched() {
    let mut s = Summary::new(info(), Arc::new(Profile::builtin()));
    s.apply(&tunnel("example.org", None));
    s.apply(&tunnel("chatgpt.com", None));
    s.apply(&tunnel("ChatGPT.com", None));
    let doc = s.doc();
    assert_eq!(doc.hosts.len(), 2);
    let names: Vec<&str> = doc.hosts.iter().map(|h| h.host.as_str()).collect();
    assert_eq!(names, ["chatgpt.com", "example.org"], "rows in name order");
    let chatgpt = doc.hosts.iter().find(|h| h.host == "chatgpt.com").unwrap();
    assert_eq!(
        (chatgpt.connections, chatgpt.bytes_up, chatgpt.bytes_down),
        (2, 20, 40)
    );
    assert_eq!(chatgpt.allowlist.as_deref(), Some("*.chatgpt.com"));
    let other = doc.hosts.iter().find(|h| h.host == "example.org").unwrap();
    assert_eq!(other.allowlist, None);
    assert_eq!(doc.allowlist.touched, vec!["*.chatgpt.com".to_string()]);
    assert!(doc.allowlist.failing.is_empty());
    assert_eq!(
        doc.allowlist.untouched.len(),
        Profile::builtin().entries.len() - 1
    );
}

#[test]
fn findings_that_are_errors_make_a_host_failing_and_lead_the_exit_table() {
    let profile = Arc::new(Profile::builtin());
    let mut s = Summary::new(info(), profile.clone());
    let finding = |kind, host: &str, vendor: &str| {
        Finding::new(
            &profile,
            kind,
            host,
            Some(vendor.into()),
            "e".into(),
            "d".into(),
        )
    };
    let with = |host: &str, found: Vec<Finding>| match tunnel(host, None) {
        Event::Tunnel(mut t) => {
            t.findings = found;
            Event::Tunnel(t)
        }
        other => other,
    };
    s.apply(&with(
        "chatgpt.com",
        vec![
            finding(FindingKind::ProxyHeader, "chatgpt.com", "Zscaler"),
            finding(FindingKind::TlsInspection, "chatgpt.com", "Zscaler"),
        ],
    ));
    s.apply(&with(
        "cdn.oaistatic.com",
        vec![finding(
            FindingKind::ProxyHeader,
            "cdn.oaistatic.com",
            "Zscaler",
        )],
    ));
    let doc = s.doc();
    // No transport failure anywhere, yet inspection is an error and a header is not.
    assert_eq!(doc.allowlist.failing, vec!["*.chatgpt.com".to_string()]);
    let table = crate::session::livelog::exit_table(&s, false);
    let row = |host: &str| {
        table
            .lines()
            .find(|l| l.starts_with(host))
            .unwrap_or_else(|| panic!("{table}"))
            .to_string()
    };
    assert!(
        row("chatgpt.com:443").contains("tls_inspection (Zscaler)"),
        "{table}"
    );
    assert!(
        row("cdn.oaistatic.com:443").contains("proxy_header (Zscaler)"),
        "{table}"
    );
    assert!(
        table.lines().nth(4).unwrap_or("").contains("finding"),
        "{table}"
    );
    let colored = crate::session::livelog::exit_table(&s, true);
    assert!(colored.contains("\x1b[1;31mchatgpt.com:443"), "{colored}");
    assert!(
        colored.contains("\x1b[33mcdn.oaistatic.com:443"),
        "{colored}"
    );
}

#[test]
fn failures_count_and_become_one_finding_per_kind() {
    let mut s = Summary::new(info(), Arc::new(Profile::builtin()));
    let f = Failure::new(FailureKind::DnsFailed, Side::Upstream, "no such host");
    s.apply(&tunnel("files.oaiusercontent.com", Some(f.clone())));
    s.apply(&tunnel("files.oaiusercontent.com", Some(f)));
    let doc = s.doc();
    let h = doc.hosts[0];
    assert_eq!(h.connections, 0, "failed tunnels are not connections");
    assert_eq!(h.failures.get(&FailureKind::DnsFailed), Some(&2));
    assert_eq!(h.findings.len(), 1);
    assert_eq!(h.findings[0].kind, "dns_failed");
    assert!(
        h.findings[0]
            .remedy
            .contains("nslookup files.oaiusercontent.com"),
        "{}",
        h.findings[0].remedy
    );
    assert!(
        h.findings[0].remedy.contains("Uploads fail"),
        "{}",
        h.findings[0].remedy
    );
    assert_eq!(
        doc.allowlist.failing,
        vec!["files.oaiusercontent.com".to_string()]
    );
    assert_eq!(
        h.findings[0].reproduce.as_deref(),
        Some("curl -sv -o /dev/null 'https://files.oaiusercontent.com:443/'")
    );
    assert!(
        doc.verdict.starts_with(
            "The network fails (dns_failed) for files.oaiusercontent.com: Uploads fail"
        ),
        "{}",
        doc.verdict
    );
    let json: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
    assert_eq!(json["hosts"][0]["failures"]["dns_failed"], 2);
    assert_eq!(json["version"], 1);
    assert!(json["session"]["ended_at"].is_null());
}

#[test]
fn requests_count_new_connections_only() {
    let mut s = Summary::new(info(), Arc::new(Profile::builtin()));
    let req = |connect_ms: Option<f64>| {
        Event::Request(Box::new(RequestEvent {
            reused: connect_ms.is_none(),
            timings: Timings {
                connect_ms,
                ..Timings::default()
            },
            bytes_up: 3,
            bytes_down: 5,
            ..RequestEvent::get("chat.openai.com", "/")
        }))
    };
    s.apply(&req(Some(1.0)));
    s.apply(&req(None));
    let h = s.doc().hosts[0].clone();
    assert_eq!(
        (h.requests, h.connections, h.bytes_up, h.bytes_down),
        (2, 1, 6, 10)
    );
    assert_eq!(h.allowlist.as_deref(), Some("chat.openai.com"));
    for _ in 0..2 {
        s.apply(&Event::Refused(Box::new(
            crate::session::event::RefusedEvent {
                ts: "t".into(),
                downstream: Downstream::default(),
                method: "GET".into(),
                target: "/".into(),
                status: 400,
                reason: "r".into(),
            },
        )));
    }
    assert_eq!(s.doc().refused, 2);
}

//! A realistic recorded session for the report tests: an intercepted request carrying
//! credentials (as recorded with --include-secrets), a blocked upload tunnel, an inspected
//! chain and a clean tunnel.

use crate::failure::{Failure, FailureKind, Side};
use crate::inspect::Finding;
use crate::profile::Profile;
use crate::session::event::*;
use crate::tls::chain::{CertInfo, TlsVerdict, Verdict};

pub fn events() -> Vec<Event> {
    let profile = Profile::builtin();
    let info = SessionInfo {
        id: "20261127T180000Z-1".into(),
        started_at: "2026-11-27T18:00:00.000Z".into(),
        listen: "127.0.0.1:8080".into(),
        upstream_proxy: Some("http://***@corp.example:3128".into()),
        upstream_credentials: true,
        route_source: None,
        pac: None,
        profile: "built-in:chatgpt".into(),
        diagproxy: "0.1.0".into(),
        os: "macos aarch64".into(),
        max_hosts: crate::session::event::MAX_HOSTS,
        resolve: Vec::new(),
        include_secrets: false,
        keylog: None,
        source: None,
    };
    let request = RequestEvent {
        ts: "2026-11-27T18:00:01.000Z".into(),
        method: "POST".into(),
        url: "https://chatgpt.com/backend-api/conversation?access_token=sk-query-secret&model=gpt"
            .into(),
        host: "chatgpt.com".into(),
        port: 443,
        allowlist: Some("*.chatgpt.com".into()),
        server_ip: Some("104.18.32.47".into()),
        route: Default::default(),
        downstream: Downstream {
            addr: "127.0.0.1:50000".into(),
            user_agent: Some("Mozilla/5.0 Chrome/131".into()),
        },
        status: Some(200),
        content_type: Some("text/event-stream".into()),
        reused: false,
        timings: Timings {
            dns_ms: Some(12.5),
            connect_ms: Some(20.0),
            ssl_ms: Some(30.0),
            wait_ms: Some(150.0),
            receive_ms: Some(800.0),
            first_byte_ms: Some(210.0),
            total_ms: 1012.5,
            ..Timings::default()
        },
        bytes_up: 512,
        bytes_down: 20_480,
        complete: true,
        intercepted: true,
        upstream_protocol: Some("h2".into()),
        headers: Some(Headers {
            request: HeaderList::from(vec![
                ("authorization".into(), "Bearer sk-live-very-secret".into()),
                (
                    "cookie".into(),
                    "__Secure-next-auth.session-token=abc123".into(),
                ),
                ("content-type".into(), "application/json".into()),
            ]),
            response: HeaderList::from(vec![
                ("set-cookie".into(), "__cf_bm=xyz".into()),
                ("content-type".into(), "text/event-stream".into()),
            ]),
        }),
        findings: Vec::new(),
        failure: None,
        block_page_body: None,
        body: None,
        unfinished: None,
    };
    let mut blocked = Failure::new(
        FailureKind::UpstreamProxyRefused,
        Side::UpstreamProxy,
        "the corporate proxy refused CONNECT files.oaiusercontent.com:443: 403 Forbidden",
    );
    blocked.proxy_status = Some(403);
    blocked.proxy_body = Some("<html><title>Web Filter Violation</title></html>".into());
    let block_finding = Finding::new(&profile, crate::inspect::FindingKind::BlockPage, "files.oaiusercontent.com", Some("Fortinet FortiGuard".into()), "status 403 with body marker \"<title>Web Filter Violation</title>\"".into(), "Fortinet FortiGuard answered files.oaiusercontent.com with its block page instead of the server".into())
        .with_reproduce(Some("curl -sv -o /dev/null -x http://corp.example:3128 --proxy-user USER:PASS 'https://files.oaiusercontent.com:443/'".into()));
    let upload = tunnel(
        "2026-11-27T18:00:02.000Z",
        "files.oaiusercontent.com",
        Some(blocked),
        vec![block_finding],
    );
    let clean = tunnel(
        "2026-11-27T18:00:03.000Z",
        "cdn.oaistatic.com",
        None,
        Vec::new(),
    );
    let verdict = TlsVerdict {
        verdict: Verdict::Inspected,
        reason: Some("UnknownIssuer".into()),
        issuer: "CN=Zscaler Intermediate Root CA (zscalerthree.net) (t) , O=Zscaler Inc.".into(),
        root: "CN=Zscaler Root CA, O=Zscaler Inc.".into(),
        vendor: Some("Zscaler".into()),
        chain: vec![CertInfo {
            subject: "CN=chatgpt.com".into(),
            issuer: "CN=Zscaler Intermediate Root CA (zscalerthree.net) (t) , O=Zscaler Inc."
                .into(),
            not_before: "2026-11-20T00:00:00.000Z".into(),
            not_after: "2026-12-04T00:00:00.000Z".into(),
            spki_sha256: "ab".repeat(32),
            fingerprint_sha256: String::new(),
            not_after_unix: 0,
        }],
        scts: false,
    };
    let check = TlsCheckEvent {
        ts: "2026-11-27T18:00:01.500Z".into(),
        host: "chatgpt.com".into(),
        port: 443,
        via: ChainSource::Interception,
        tls: Some(verdict),
        error: None,
    };
    vec![
        Event::SessionStarted(Box::new(info)),
        Event::Request(Box::new(request)),
        Event::TlsCheck(Box::new(check)),
        Event::Tunnel(Box::new(upload)),
        Event::Tunnel(Box::new(clean)),
        Event::SessionEnded(Box::new(SessionEnd {
            ended_at: "2026-11-27T18:00:10.000Z".into(),
            unfinished: 0,
            limits: LimitCounts::default(),
        })),
    ]
}

fn tunnel(ts: &str, host: &str, failure: Option<Failure>, findings: Vec<Finding>) -> TunnelEvent {
    let failed = failure.is_some();
    TunnelEvent {
        ts: ts.into(),
        mode: TunnelMode::Tunnel,
        host: host.into(),
        port: 443,
        sni: Some(host.into()),
        alpn: vec!["h2".into(), "http/1.1".into()],
        payload: if failed { Payload::None } else { Payload::Tls },
        first_bytes: None,
        allowlist: Profile::builtin()
            .match_host(host)
            .map(|e| e.pattern.clone()),
        server_ip: Some("10.0.0.3".into()),
        route: Default::default(),
        downstream: Downstream {
            addr: "127.0.0.1:50001".into(),
            user_agent: Some("ChatGPT/1.2025 (Macintosh)".into()),
        },
        timings: Timings {
            dns_ms: None,
            connect_ms: Some(3.0),
            proxy_connect_ms: Some(40.0),
            wait_ms: if failed { None } else { Some(60.0) },
            total_ms: if failed { 45.0 } else { 5000.0 },
            ..Timings::default()
        },
        bytes_up: if failed { 0 } else { 1_200 },
        bytes_down: if failed { 0 } else { 240_000 },
        end: if failed {
            TunnelEnd::Failed
        } else {
            TunnelEnd::DownstreamClosed
        },
        failure,
        findings,
    }
}

pub fn events_jsonl() -> String {
    jsonl(&events())
}

fn jsonl(events: &[Event]) -> String {
    events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap() + "\n")
        .collect()
}

/// A loaded session of the fixture events.
pub fn session() -> super::Session {
    session_of(&events())
}

/// A loaded session of `events`.
pub fn session_of(events: &[Event]) -> super::Session {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("events.jsonl"), jsonl(events)).unwrap();
    super::Session::load_owned(dir).unwrap()
}

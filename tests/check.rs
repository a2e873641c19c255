//! `diagproxy check` against loopback fixtures, every name pinned with `--resolve`: a clean
//! host, a re-signed chain, a block page answered with 403 and with 200, a corporate proxy
//! that wants credentials, a reset after the ClientHello, a silent host, a refused port, a
//! plaintext gateway; and voice against a STUN responder and one that drops every packet.

mod common;

use std::net::SocketAddr;

use common::*;
use serde_json::Value;

const BLOCK_403: &str = "<html><head><title>Access Denied</title></head><body><h1>Internet Security by Zscaler</h1><p>Your organization's security policy has blocked access to this site.</p></body></html>";

/// A UDP STUN responder on loopback that answers each Binding request (or drops it).
fn stun_responder(answer: bool) -> SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((len, from)) = socket.recv_from(&mut buf) {
            if !answer || len < 20 {
                continue;
            }
            let mut id = [0u8; 12];
            id.copy_from_slice(&buf[8..20]);
            let _ = socket.send_to(&diagproxy::check::stun::answer(id, from), from);
        }
    });
    addr
}

fn dead_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Runs `diagproxy check --json ARGS`: the document and the exit code.
fn check(args: &[String]) -> (Value, Option<i32>) {
    let out = diagproxy()
        .arg("check")
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (doc, out.status.code())
}

fn host<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == name)
        .unwrap_or_else(|| panic!("{name} not in {doc:#}"))
}

fn states(h: &Value) -> [String; 4] {
    ["dns", "tcp", "tls", "http"].map(|s| h[s]["state"].as_str().unwrap().to_string())
}

fn kinds(h: &Value) -> Vec<String> {
    h["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn every_stage_of_every_fixture_is_judged() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let public = TestCa::root("Test Public Root", "Public CA Inc.");
    let zscaler = TestCa::root("Zscaler Root CA", "Zscaler Inc.");
    let public_pem = write_file(dir.path(), "public.pem", &public.pem());
    let system_pem = write_file(dir.path(), "system.pem", &(public.pem() + &zscaler.pem()));

    let (leaf, key) = public.leaf(&["chatgpt.com"]);
    let clean = rt.block_on(canned_https_origin(
        vec![leaf],
        key,
        vec![canned(
            "/",
            200,
            &[("content-type", "text/html")],
            "<html><title>ChatGPT</title></html>",
        )],
    ));
    let (leaf, key) = zscaler.leaf(&["cdn.oaistatic.com"]);
    let resigned = rt.block_on(canned_https_origin(
        vec![leaf],
        key,
        vec![canned("/", 200, &[], "ok")],
    ));
    let (leaf, key) = public.leaf(&["ab.chatgpt.com"]);
    let blocked = rt.block_on(canned_https_origin(
        vec![leaf],
        key,
        vec![canned(
            "/",
            403,
            &[("content-type", "text/html")],
            BLOCK_403,
        )],
    ));
    let (leaf, key) = public.leaf(&["openai.com"]);
    let blocked_200 = rt.block_on(canned_https_origin(
        vec![leaf],
        key,
        vec![canned(
            "/",
            200,
            &[("content-type", "text/html"), ("server", "Zscaler/6.2")],
            BLOCK_403,
        )],
    ));
    let reset = rt.block_on(resetting_server());
    let silent = rt.block_on(silent_server());
    let refused = dead_port();
    let gateway = rt.block_on(plaintext_gateway(BLOCK_PAGE));

    let fixtures = [
        ("chatgpt.com", clean.port()),
        ("cdn.oaistatic.com", resigned.port()),
        ("ab.chatgpt.com", blocked.port()),
        ("openai.com", blocked_200.port()),
        ("ws.chatgpt.com", reset.port()),
        ("auth.openai.com", silent.port()),
        ("api.openai.com", refused),
        ("js.stripe.com", gateway.port()),
    ];
    let mut args: Vec<String> = [
        "--upstream-proxy",
        "direct",
        "--stage-timeout",
        "1s",
        "--voice",
        "none",
        "--public-roots",
        &public_pem,
        "--system-roots",
        &system_pem,
        "--session-dir",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(dir.path().join("s").display().to_string());
    for (name, port) in fixtures {
        args.extend(["--resolve".into(), format!("{name}:{port}:127.0.0.1")]);
        args.push(format!("{name}:{port}"));
    }
    let (doc, code) = check(&args);
    assert_eq!(code, Some(2), "something fails: exit 2");

    let clean = host(&doc, "chatgpt.com");
    assert_eq!(states(clean), ["pass", "pass", "pass", "pass"], "{clean:#}");
    assert_eq!(clean["tls_verdict"]["verdict"], "public");
    assert!(
        clean["tls"]["detail"].as_str().unwrap().contains("TLSv1_3"),
        "{clean:#}"
    );
    assert_eq!(clean["route"], "DIRECT");
    assert!(clean["tcp"]["ms"].as_f64().is_some());

    let resigned = host(&doc, "cdn.oaistatic.com");
    assert_eq!(states(resigned)[2], "warn");
    assert_eq!(resigned["tls_verdict"]["vendor"], "Zscaler");
    assert!(kinds(resigned).contains(&"tls_inspection".to_string()));

    for name in ["ab.chatgpt.com", "openai.com"] {
        let h = host(&doc, name);
        assert_eq!(states(h)[3], "fail", "{h:#}");
        assert!(kinds(h).contains(&"block_page".to_string()), "{h:#}");
    }

    let reset = host(&doc, "ws.chatgpt.com");
    assert_eq!(
        states(reset),
        ["pass", "pass", "fail", "skipped"],
        "{reset:#}"
    );
    assert!(
        kinds(reset).contains(&"reset_after_client_hello".to_string()),
        "{reset:#}"
    );

    let silent = host(&doc, "auth.openai.com");
    assert_eq!(states(silent)[2], "fail");
    assert!(
        silent["tls"]["detail"]
            .as_str()
            .unwrap()
            .contains("no answer to the TLS ClientHello"),
        "{silent:#}"
    );

    let refused = host(&doc, "api.openai.com");
    assert_eq!(
        states(refused),
        ["pass", "fail", "skipped", "skipped"],
        "{refused:#}"
    );
    assert!(kinds(refused).contains(&"connect_refused".to_string()));

    let gateway = host(&doc, "js.stripe.com");
    assert_eq!(states(gateway)[2], "fail");
    assert!(
        kinds(gateway).contains(&"non_tls_in_tunnel".to_string()),
        "{gateway:#}"
    );

    assert_eq!(doc["failing"], 6, "{doc:#}");
    let written = std::fs::read_to_string(dir.path().join("s/check.json")).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&written).unwrap()["failing"],
        6
    );
}

#[test]
fn a_proxy_that_wants_credentials_fails_the_tcp_stage() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (corp, _) = rt.block_on(corporate_proxy(CorpMode::RequireAuth));
    let proxy = format!("http://{corp}");
    // A reserved name (RFC 6761): the local lookup fails without asking anyone, as an
    // outside name may behind a proxy that resolves for its clients.
    let args: Vec<String> = [
        "--upstream-proxy",
        &proxy,
        "--voice",
        "none",
        "--stage-timeout",
        "2s",
        "chatgpt.invalid",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (doc, code) = check(&args);
    assert_eq!(code, Some(2));
    let h = host(&doc, "chatgpt.invalid");
    assert_eq!(
        h["dns"]["state"], "warn",
        "behind a proxy, local DNS is only a warning: {h:#}"
    );
    assert_eq!(h["tcp"]["state"], "fail");
    assert_eq!(h["route"], format!("PROXY {corp}"));
    assert!(
        kinds(h).contains(&"upstream_proxy_auth".to_string()),
        "{h:#}"
    );
}

#[test]
fn voice_measures_stun_and_names_a_dead_udp_path() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let answering = stun_responder(true);
    let tls = rt.block_on(echo_server());
    let run = |stun: SocketAddr| {
        let args: Vec<String> = [
            "--upstream-proxy".to_string(),
            "direct".into(),
            "--stage-timeout".into(),
            "1s".into(),
            "--voice".into(),
            format!("turn.example.test:{}", stun.port()),
            "--resolve".into(),
            format!("turn.example.test:{}:127.0.0.1", stun.port()),
            "--resolve".into(),
            "turn.example.test:443:127.0.0.1".into(),
            "--resolve".into(),
            "turn.example.test:7881:127.0.0.1".into(),
            format!("127.0.0.1:{}", tls.port()),
        ]
        .to_vec();
        check(&args).0
    };
    let doc = run(answering);
    let voice = &doc["voice"];
    assert_eq!(voice["stun"]["state"], "pass", "{voice:#}");
    assert_eq!(voice["rtt_ms"].as_array().unwrap().len(), 10);
    assert_eq!(voice["loss"], 0.0);
    assert!(
        voice["mapped"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{voice:#}"
    );
    assert_eq!(voice["media_udp"]["state"], "not_run");
    assert!(voice["media_udp"]["detail"]
        .as_str()
        .unwrap()
        .contains("50000–60000"));

    let dropping = stun_responder(false);
    let doc = run(dropping);
    let voice = &doc["voice"];
    assert_eq!(voice["stun"]["state"], "fail", "{voice:#}");
    assert_eq!(voice["loss"], 1.0);
    assert!(
        voice["meaning"]
            .as_str()
            .unwrap()
            .contains("voice will not connect")
            || voice["meaning"].as_str().unwrap().contains("falls back"),
        "{voice:#}"
    );
}

#[test]
fn websocket_upgrades_cloudflares_trace_and_streams_follow_the_get() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let public = TestCa::root("Test Public Root", "Public CA Inc.");
    let public_pem = write_file(dir.path(), "public.pem", &public.pem());
    let mut profile: Value =
        serde_json::from_str(include_str!("../src/profile/chatgpt.json")).unwrap();
    profile["check"]["websocket"] = serde_json::json!(["ws.chatgpt.com/ws", "ab.chatgpt.com"]);
    profile["check"]["event_stream"] =
        serde_json::json!(["ws.chatgpt.com/sse", "chatgpt.com/events"]);
    let profile_path = write_file(dir.path(), "profile.json", &profile.to_string());

    let (leaf, key) = public.leaf(&["ws.chatgpt.com"]);
    let ws = rt.block_on(https_origin(vec![leaf], key));
    const TRACE: &str = "fl=1\nh=chatgpt.com\nip=203.0.113.7\ncolo=FRA\nloc=DE\ntls=TLSv1.3\nwarp=on\ngateway=off\n";
    let (leaf, key) = public.leaf(&["chatgpt.com"]);
    let cf = rt.block_on(canned_https_origin(
        vec![leaf],
        key,
        vec![
            canned(
                "/",
                200,
                &[("content-type", "text/html"), ("cf-ray", "8f00-FRA")],
                "<html><title>ChatGPT</title></html>",
            ),
            canned(
                "/cdn-cgi/trace",
                200,
                &[("content-type", "text/plain")],
                TRACE,
            ),
            // A whole stream in one body: what a buffering proxy delivers.
            canned(
                "/events",
                200,
                &[("content-type", "text/event-stream")],
                "data: one\n\ndata: two\n\n",
            ),
        ],
    ));
    let (leaf, key) = public.leaf(&["ab.chatgpt.com"]);
    let blocked = rt.block_on(canned_https_origin(
        vec![leaf],
        key,
        vec![canned(
            "/",
            403,
            &[("content-type", "text/html")],
            BLOCK_403,
        )],
    ));
    let mut args: Vec<String> = [
        "--upstream-proxy",
        "direct",
        "--voice",
        "none",
        "--public-roots",
        &public_pem,
        "--profile",
        &profile_path,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for (name, port) in [
        ("ws.chatgpt.com", ws.port()),
        ("chatgpt.com", cf.port()),
        ("ab.chatgpt.com", blocked.port()),
    ] {
        args.extend([
            "--resolve".into(),
            format!("{name}:{port}:127.0.0.1"),
            format!("{name}:{port}"),
        ]);
    }
    let (doc, _) = check(&args);
    let ws = host(&doc, "ws.chatgpt.com");
    assert_eq!(ws["websocket"]["state"], "pass", "{ws:#}");
    assert_eq!(ws["websocket"]["detail"], "101 Switching Protocols");
    assert_eq!(ws["egress"]["state"], "not_run");
    let cf = host(&doc, "chatgpt.com");
    assert_eq!(cf["egress"]["state"], "warn", "{cf:#}");
    let egress = cf["egress"]["detail"].as_str().unwrap();
    assert!(
        egress.starts_with("egress 203.0.113.7: ip=203.0.113.7 loc=DE colo=FRA"),
        "{egress}"
    );
    assert!(egress.contains("WARP is in the path"), "{egress}");
    assert_eq!(cf["websocket"]["state"], "not_run");
    assert_eq!(ws["stream"]["state"], "pass", "{ws:#}");
    assert!(
        ws["stream"]["detail"]
            .as_str()
            .unwrap()
            .contains("still open"),
        "{ws:#}"
    );
    assert_eq!(cf["stream"]["state"], "fail", "{cf:#}");
    assert!(
        cf["stream"]["detail"]
            .as_str()
            .unwrap()
            .contains("buffers event streams"),
        "{cf:#}"
    );
    let blocked = host(&doc, "ab.chatgpt.com");
    assert_eq!(blocked["websocket"]["state"], "fail", "{blocked:#}");
    assert!(
        blocked["websocket"]["detail"]
            .as_str()
            .unwrap()
            .contains("block page"),
        "{blocked:#}"
    );
}

#[tokio::test]
async fn run_with_check_judges_every_profile_host_and_marks_the_rows() {
    let dir = tempfile::tempdir().unwrap();
    // A profile of two entries, both pinned: the check must not ask real DNS for the rest.
    let mut profile: Value =
        serde_json::from_str(include_str!("../src/profile/chatgpt.json")).unwrap();
    let entry = |pattern: &str, probe: &str| serde_json::json!({"pattern": pattern, "probe": [probe], "purpose": "test", "breaks": "test", "remedy": "test", "source": "published"});
    profile["entries"] = serde_json::json!([
        entry("*.chatgpt.com", "chatgpt.com"),
        entry("*.oaistatic.com", "cdn.oaistatic.com")
    ]);
    profile["capabilities"] = serde_json::json!([]);
    profile.as_object_mut().unwrap().remove("voice");
    let profile_path = write_file(dir.path(), "profile.json", &profile.to_string());
    // The check probes port 443, where these tests serve nothing: each host is judged (a
    // failure, or a verdict if the machine serves 443), never skipped.
    let pins = [
        "chatgpt.com:443:127.0.0.1",
        "cdn.oaistatic.com:443:127.0.0.1",
    ];
    let proxy = Proxy::start(&[
        "--check",
        "--profile",
        &profile_path,
        "--resolve",
        pins[0],
        "--resolve",
        pins[1],
    ])
    .await;
    proxy.wait_events("tunnel", 2).await;
    let session = proxy.stop().await;
    let tunnels = session.events_of("tunnel");
    assert_eq!(tunnels.len(), 2, "{tunnels:?}");
    assert!(tunnels.iter().all(|t| t["downstream"]["user_agent"]
        .as_str()
        .unwrap()
        .starts_with("diagproxy-check/")));
    for name in ["chatgpt.com", "cdn.oaistatic.com"] {
        let h = session.host(name, 443);
        let failed = !h["failures"].as_object().unwrap().is_empty();
        assert!(failed || h["tls"].is_object(), "{h:#}");
    }
    let html = std::fs::read_to_string(session.folder.path().join("session/report.html")).unwrap();
    assert!(
        html.contains("chatgpt.com:443 (check)"),
        "the report marks the check's rows"
    );
}

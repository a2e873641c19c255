//! Reports from real sessions: the HAR of an intercepted session validated against the HAR
//! 1.2 schema (har-validator, from the npm registry, in CI), the HTML report rendered in
//! headless Chromium, `diagproxy compare` on two recorded sessions that differ by a block
//! page and a re-signed chain, and `diagproxy report` on a session cut off by SIGKILL.
//! Outside programs (node + har-validator, chromium, curl) skip when missing unless
//! DIAGPROXY_REQUIRE_TOOLS=1.

mod common;

use std::process::Command;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};

const FORTI: &str = "<html><head><title>Web Filter Violation</title></head><body><h1>FortiGuard Intrusion Prevention - Access Blocked</h1></body></html>";

/// An intercepted session with credentials in headers and the query, a block page, and a
/// plain tunnel beside it. Returns the session folder (kept alive by the TempDir).
async fn recorded_session() -> (Session, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (ca_dir, ca_pem) = local_ca(dir.path());
    let public = TestCa::root("Test Public Root", "Public CA Inc.");
    let (leaf, key) = public.leaf(&["chatgpt.com"]);
    let origin = canned_https_origin(
        vec![leaf],
        key,
        vec![
            canned(
                "/backend-api/me",
                200,
                &[
                    ("content-type", "application/json"),
                    ("set-cookie", "__cf_bm=secret-cookie"),
                ],
                "{\"email\":\"a@example.com\"}",
            ),
            canned("/blocked", 403, &[("content-type", "text/html")], FORTI),
        ],
    )
    .await;
    let (leaf, key) = public.leaf(&["cdn.oaistatic.com"]);
    let cdn = tls_origin_with(vec![leaf], key).await;
    let roots = write_file(dir.path(), "public.pem", &public.pem());
    let pins = [
        format!("chatgpt.com:{}:127.0.0.1", origin.port()),
        format!("cdn.oaistatic.com:{}:127.0.0.1", cdn.port()),
    ];
    let proxy = Proxy::start(&[
        "--intercept",
        "chatgpt.com",
        "--ca-dir",
        ca_dir.to_str().unwrap(),
        "--public-roots",
        &roots,
        "--system-roots",
        &roots,
        "--resolve",
        &pins[0],
        "--resolve",
        &pins[1],
    ])
    .await;
    for path in [
        "/backend-api/me?access_token=sk-query-secret&v=1",
        "/blocked",
    ] {
        let request = hyper::Request::get(path)
            .header("host", "chatgpt.com")
            .header("authorization", "Bearer sk-live-header-secret")
            .header("cookie", "__Secure-next-auth.session-token=cookie-secret")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response =
            intercepted_h1(proxy.addr, "chatgpt.com", origin.port(), &ca_pem, request).await;
        drop(response.into_body().collect().await);
    }
    https_through(proxy.addr, "cdn.oaistatic.com", cdn.port(), &public.pem()).await;
    proxy.wait_events("request", 2).await;
    proxy.wait_events("tunnel", 1).await;
    (proxy.stop().await, dir)
}

#[tokio::test]
async fn the_har_of_an_intercepted_session_is_valid_and_redacted() {
    let (session, _keep) = recorded_session().await;
    let dir = session.outcome.dir.clone();
    let har_path = dir.join("session.har");
    let text = std::fs::read_to_string(&har_path).expect("run writes session.har at shutdown");
    for secret in [
        "sk-live-header-secret",
        "cookie-secret",
        "sk-query-secret",
        "secret-cookie",
    ] {
        assert!(!text.contains(secret), "{secret} leaked into the HAR");
    }
    let har: serde_json::Value = serde_json::from_str(&text).unwrap();
    let entries = har["log"]["entries"].as_array().unwrap();
    assert!(
        entries.iter().any(|e| e["request"]["method"] == "CONNECT"),
        "the tunnel is a CONNECT entry"
    );
    let me = entries
        .iter()
        .find(|e| {
            e["request"]["url"]
                .as_str()
                .unwrap()
                .contains("/backend-api/me")
        })
        .unwrap();
    assert_eq!(
        me["request"]["url"],
        format!(
            "https://{}/backend-api/me?access_token=REDACTED&v=1",
            me["request"]["url"]
                .as_str()
                .unwrap()
                .split('/')
                .nth(2)
                .unwrap()
        )
    );
    // Redacted, not dropped: the headers are there, with the value REDACTED (a cookie
    // keeps its name, so support can see which one was sent).
    let header = |name: &str| {
        me["request"]["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["name"].as_str().unwrap().eq_ignore_ascii_case(name))
            .unwrap_or_else(|| panic!("{name} dropped from the HAR: {me:#}"))["value"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(header("authorization"), "REDACTED");
    assert!(
        header("cookie").contains("REDACTED"),
        "{}",
        header("cookie")
    );
    assert!(me["timings"]["ssl"].as_f64().unwrap() >= 0.0);
    let blocked = entries
        .iter()
        .find(|e| e["request"]["url"].as_str().unwrap().ends_with("/blocked"))
        .unwrap();
    assert_eq!(blocked["_diagproxy"]["findings"][0]["kind"], "block_page");
    assert!(dir.join("report.html").exists() && dir.join("report.md").exists());

    if !require_tool("node") {
        return;
    }
    let Some(validator) = std::env::var_os("DIAGPROXY_HAR_VALIDATOR") else {
        if std::env::var("DIAGPROXY_REQUIRE_TOOLS").is_ok_and(|v| v == "1") {
            panic!(
                "DIAGPROXY_HAR_VALIDATOR (the har-validator module .ci/run installs) is not set"
            );
        }
        eprintln!("SKIPPED: har-validator not installed (set DIAGPROXY_HAR_VALIDATOR)");
        return;
    };
    let script = "const v=require(process.argv[1]);const h=JSON.parse(require('fs').readFileSync(process.argv[2],'utf8'));\
                  v.har(h).then(()=>console.log('valid')).catch(e=>{console.error(JSON.stringify(e.errors||e.message));process.exit(1)});";
    let out = Command::new("node")
        .arg("-e")
        .arg(script)
        .arg(&validator)
        .arg(&har_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "HAR 1.2 schema: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "valid");
}

#[tokio::test]
async fn the_html_report_renders_in_headless_chromium() {
    let (session, _keep) = recorded_session().await;
    let dir = session.outcome.dir.clone();
    let report = dir.join("report.html");
    assert!(report.exists());
    if !require_tool("chromium") {
        return;
    }
    let profile = tempfile::tempdir().unwrap();
    let flags = |extra: &[&str]| {
        let mut cmd = Command::new("chromium");
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(format!("file://{}", report.display()));
        cmd
    };
    let dom = flags(&["--dump-dom"]).output().unwrap();
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.contains("id=\"verdict\"") && dom.contains("Fortinet FortiGuard blocks chatgpt.com"),
        "verdict in the DOM"
    );
    let rows = dom.matches("<tr class=").count();
    assert!(
        rows >= diagproxy::profile::Profile::builtin().entries.len(),
        "allowlist rows: {rows}"
    );
    assert!(
        dom.contains("block_page") && dom.contains("Reproduce without diagproxy"),
        "findings"
    );
    assert!(dom.contains("class=\"wf-row\""), "waterfall");
    assert!(
        dom.contains("Certificate chains") && dom.contains("Test Public Root"),
        "chains"
    );
    let shot = artefacts().join("report.png");
    let _ = std::fs::remove_file(&shot);
    let out = flags(&[
        &format!("--screenshot={}", shot.display()),
        "--window-size=1280,1600",
        "--hide-scrollbars",
    ])
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).expect("screenshot kept as a test artefact");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000);
}

/// Records one session: a plain-HTTP request to chatgpt.com and a tunnel to
/// files.oaiusercontent.com, both pinned to `ip` (127.0.0.1 = "company", 127.0.0.2 = "hotspot").
async fn session_on(
    ip: &str,
    port_http: u16,
    port_tls: u16,
    trusted: &TestCa,
    roots: &[String; 2],
) -> Session {
    let pins = [
        format!("chatgpt.com:{port_http}:{ip}"),
        format!("files.oaiusercontent.com:{port_tls}:{ip}"),
    ];
    let proxy = Proxy::start(&[
        "--public-roots",
        &roots[0],
        "--system-roots",
        &roots[1],
        "--resolve",
        &pins[0],
        "--resolve",
        &pins[1],
    ])
    .await;
    get(
        proxy.addr,
        &format!("http://chatgpt.com:{port_http}/backend-api/conversation"),
    )
    .await;
    https_through(
        proxy.addr,
        "files.oaiusercontent.com",
        port_tls,
        &trusted.pem(),
    )
    .await;
    proxy.wait_events("tls_check", 1).await;
    proxy.stop().await
}

#[tokio::test]
async fn compare_tells_the_company_network_from_the_hotspot() {
    let public = TestCa::root("Test Public Root", "Public CA Inc.");
    let zscaler = TestCa::root("Zscaler Root CA", "Zscaler Inc.");
    let keep = tempfile::tempdir().unwrap();
    // The managed laptop trusts the corporate root; the public set does not.
    let roots = [
        write_file(keep.path(), "public.pem", &public.pem()),
        write_file(keep.path(), "machine.pem", &(public.pem() + &zscaler.pem())),
    ];
    // The company network (127.0.0.1): a FortiGuard block page and a Zscaler-re-signed chain.
    // The hotspot (127.0.0.2, same ports): the real answers.
    let gateway = canned_origin_at(
        "127.0.0.1:0",
        vec![canned(
            "/backend-api/conversation",
            403,
            &[("content-type", "text/html")],
            FORTI,
        )],
    )
    .await;
    canned_origin_at(
        &format!("127.0.0.2:{}", gateway.port()),
        vec![canned(
            "/backend-api/conversation",
            200,
            &[("content-type", "application/json")],
            "{}",
        )],
    )
    .await;
    let (leaf, key) = zscaler.leaf(&["files.oaiusercontent.com"]);
    let company_tls =
        tls_origin_at("127.0.0.1:0", vec![leaf, zscaler.cert.der().clone()], key).await;
    let (leaf, key) = public.leaf(&["files.oaiusercontent.com"]);
    tls_origin_at(
        &format!("127.0.0.2:{}", company_tls.port()),
        vec![leaf],
        key,
    )
    .await;
    let company = session_on(
        "127.0.0.1",
        gateway.port(),
        company_tls.port(),
        &zscaler,
        &roots,
    )
    .await;
    let hotspot = session_on(
        "127.0.0.2",
        gateway.port(),
        company_tls.port(),
        &public,
        &roots,
    )
    .await;

    let (a, b) = (company.outcome.dir.clone(), hotspot.outcome.dir.clone());
    let out = common::diagproxy()
        .arg("compare")
        .arg(&a)
        .arg(&b)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next().unwrap();
    assert!(first.starts_with("Yes: the network of A ("), "{text}");
    assert!(
        first.contains("2 host(s) fail there and not in B"),
        "{text}"
    );
    assert!(text.contains("block_page (Fortinet FortiGuard)"), "{text}");
    assert!(
        text.contains("inspected by CN=Zscaler") && text.contains("public by CN=Test Public Root"),
        "{text}"
    );
    let json = common::diagproxy()
        .arg("compare")
        .arg(&a)
        .arg(&b)
        .arg("--json")
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["answer"].as_str().unwrap(), first);
    let responses = json["responses"].as_array().unwrap();
    assert!(
        responses
            .iter()
            .any(|r| r["a"].as_str().unwrap().starts_with("403 text/html")
                && r["b"].as_str().unwrap().starts_with("200 application/json")),
        "{responses:?}"
    );
    let html = keep.path().join("compare.html");
    let out = common::diagproxy()
        .arg("compare")
        .arg(&a)
        .arg(&b)
        .arg("--html")
        .arg(&html)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(std::fs::read_to_string(&html)
        .unwrap()
        .contains("Yes: the network of A ("));
    std::fs::write(artefacts().join("compare.txt"), text.as_bytes()).unwrap();
}

#[test]
fn report_rebuilds_a_session_cut_off_by_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("session");
    let Running {
        mut child, addr, ..
    } = run_binary(&["--session-dir".as_ref(), session.as_os_str()]);
    // A request the proxy answers itself with a failure, then a hard kill.
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    std::io::Write::write_all(
        &mut stream,
        b"CONNECT files.oaiusercontent.invalid:443 HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .unwrap();
    let mut buf = [0u8; 64];
    let _ = std::io::Read::read(&mut stream, &mut buf);
    common::wait_for_events(&session, "tunnel", 1);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !session.join("summary.json").exists(),
        "a killed run writes no summary"
    );

    let out = common::diagproxy()
        .arg("report")
        .arg(&session)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("wrote") && said.contains("1 other host(s) did, 1 of them with problems"),
        "{said}"
    );
    for file in ["session.har", "report.html", "report.md"] {
        assert!(session.join(file).exists(), "{file}");
    }
    let md = std::fs::read_to_string(session.join("report.md")).unwrap();
    assert!(md.contains("(cut off, no clean end)"), "{md}");
    // Asking a redacted session for its secrets says why it cannot have them.
    let secrets = common::diagproxy()
        .args(["report", "--include-secrets"])
        .arg(&session)
        .output()
        .unwrap();
    assert!(secrets.status.success());
    let said = String::from_utf8_lossy(&secrets.stderr);
    assert!(said.contains("cannot be restored"), "{said}");
    let out = common::diagproxy()
        .args(["report", "/nonexistent/session"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

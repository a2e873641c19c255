//! The live page (`/`, `/events`, `/api/…`) and `--bodies`: the event stream over real
//! sockets (resume with `Last-Event-ID`, the page's security headers), the kept bodies in the
//! session folder and the HAR, and the page itself in a real headless Chromium driven over
//! DevTools (rows appear, the filter works, the detail pane shows a block page's body, 5,000
//! events later it still keeps up). Chromium skips when missing unless
//! `DIAGPROXY_REQUIRE_TOOLS=1`.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::chromium::Browser;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BLOCK_PAGE: &str = "<html><head><title>Access Denied</title></head><body><h1>Access to this site is blocked by your organization</h1><p>Web filter category: Artificial Intelligence. Contact the help desk.</p></body></html>";
/// Its message in Chinese: a string whose seventh byte is inside a character (the bearer
/// check once sliced it there and panicked the request's task).
const ERROR_JSON: &str = r#"{"error":{"code":"unsupported_country","message":"您的请求不可用"},"access_token":"eyJhbGciOi.eyJzdWIi.c2ln"}"#;

/// An origin with a normal answer, a block page, error JSON, a JSON success and a body
/// longer than what is kept.
async fn origin() -> SocketAddr {
    let big: &'static str = Box::leak("<p>x</p>".repeat(10_000).into_boxed_str());
    canned_origin(vec![
        canned("/", 200, &[("content-type", "text/plain")], "hello"),
        canned(
            "/blocked",
            403,
            &[("content-type", "text/html")],
            BLOCK_PAGE,
        ),
        canned(
            "/error",
            403,
            &[("content-type", "application/json")],
            ERROR_JSON,
        ),
        canned(
            "/ok.json",
            200,
            &[("content-type", "application/json")],
            "{\"ok\":true}",
        ),
        canned(
            "/logo.png",
            200,
            &[("content-type", "image/png")],
            "\u{89}PNG\r\n\u{1a}\n",
        ),
        canned("/big", 500, &[("content-type", "text/html")], big),
    ])
    .await
}

/// Reads an event stream into `text` until `until` appears in it (or 5 s pass); returns
/// what came after `text` was `from` bytes long.
async fn read_stream(stream: &mut TcpStream, text: &mut String, until: &str) -> String {
    let from = text.len();
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !text.contains(until) {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no {until:?} in {text}"))
            .unwrap();
        assert!(n > 0, "closed before {until:?}: {text}");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    text[from..].to_string()
}

async fn open_events(proxy: SocketAddr, last_id: Option<u64>) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    let resume = last_id.map_or(String::new(), |id| format!("Last-Event-ID: {id}\r\n"));
    let head = format!(
        "GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Diagproxy-Token: test-live-token-0000\r\nAccept: text/event-stream\r\n{resume}\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut text = String::new();
    read_stream(&mut stream, &mut text, "\r\n\r\n").await;
    (stream, text)
}

#[tokio::test]
async fn events_stream_live_and_resume_after_the_last_event_id() {
    let origin = origin().await;
    let proxy = Proxy::start(&[]).await;
    let (mut stream, mut head) = open_events(proxy.addr, None).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    assert!(head.contains("content-security-policy: default-src 'none'; script-src 'self'"));
    // The session's first event comes from the ring, then a request made now, live.
    read_stream(&mut stream, &mut head, "\"type\":\"session_started\"").await;
    get(proxy.addr, &format!("http://{origin}/")).await;
    let live = read_stream(&mut stream, &mut head, "\"type\":\"request\"").await;
    assert!(
        live.contains("id: 2\ndata: {\"type\":\"request\""),
        "{live}"
    );
    drop(stream);
    // Two more while away; back with Last-Event-ID 2: exactly those two.
    get(proxy.addr, &format!("http://{origin}/blocked")).await;
    get(proxy.addr, &format!("http://{origin}/error")).await;
    proxy.wait_events("request", 3).await;
    let (mut stream, mut resumed) = open_events(proxy.addr, Some(2)).await;
    read_stream(&mut stream, &mut resumed, "id: 4\n").await;
    assert!(
        !resumed.contains("id: 1\n") && !resumed.contains("id: 2\n"),
        "{resumed}"
    );
    assert!(
        resumed.contains("id: 3\ndata:") && resumed.contains("/blocked"),
        "{resumed}"
    );
    // Another site's page cannot read the stream through DNS rebinding.
    let refused = raw_exchange(
        proxy.addr,
        b"GET /events HTTP/1.1\r\nHost: attacker.example:8080\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(refused.starts_with("HTTP/1.1 421"), "{refused}");
    // A page still connected when the session ends does not hold the shutdown up: its
    // stream ends and the session drains.
    let session = proxy.stop().await;
    assert!(
        session.outcome.drained,
        "an open /events stream ends with the session"
    );
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    assert!(ended.is_ok(), "the stream closed");
}

#[tokio::test]
async fn bodies_of_problems_are_kept_once_redacted_and_in_the_har() {
    let origin = origin().await;
    let proxy = Proxy::start(&[]).await;
    for path in ["/", "/blocked", "/blocked", "/error", "/ok.json", "/big"] {
        get(proxy.addr, &format!("http://{origin}{path}")).await;
    }
    // The page's download links: the session so far, rebuilt while it runs.
    proxy.wait_events("request", 6).await;
    for (path, needle) in [
        ("/session.har", "\"entries\":["),
        ("/report.html", "Bodies of answers that went wrong"),
    ] {
        let ask = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Diagproxy-Token: test-live-token-0000\r\nConnection: close\r\n\r\n");
        let answer = raw_exchange(proxy.addr, ask.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{path}: {answer}");
        assert!(answer.contains("content-disposition: attachment"), "{path}");
        assert!(
            answer.contains(needle) && answer.contains("/blocked"),
            "{path}: {answer}"
        );
    }
    let session = proxy.stop().await;
    let dir = session.outcome.dir.clone();
    let requests = session.events_of("request");
    let body_of = |path: &str| {
        requests
            .iter()
            .find(|r| r["url"].as_str().unwrap().ends_with(path))
            .map(|r| r["body"].clone())
            .unwrap()
    };
    // Default `problems`: the answers that went wrong, not the two successes.
    assert!(body_of("/").is_null() && body_of("/ok.json").is_null());
    let block = body_of("/blocked");
    assert_eq!(block["encoding"], "text");
    assert_eq!(block["truncated"], false);
    let file = dir.join("bodies").join(block["sha256"].as_str().unwrap());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), BLOCK_PAGE);
    let error = std::fs::read_to_string(
        dir.join("bodies")
            .join(body_of("/error")["sha256"].as_str().unwrap()),
    )
    .unwrap();
    assert!(error.contains("unsupported_country"), "{error}");
    assert!(error.contains("您的请求不可用"), "{error}");
    assert!(
        !error.contains("eyJhbGciOi") && error.contains("\"access_token\":\"REDACTED\""),
        "{error}"
    );
    let big = body_of("/big");
    assert_eq!(
        (big["size"].as_u64(), big["truncated"].as_bool()),
        (Some(64 * 1024), Some(true))
    );
    // The same block page twice is one file; three distinct bodies in all.
    assert_eq!(std::fs::read_dir(dir.join("bodies")).unwrap().count(), 3);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let har: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("session.har")).unwrap()).unwrap();
    let entries = har["log"]["entries"].as_array().unwrap();
    let content = |path: &str| {
        entries
            .iter()
            .find(|e| e["request"]["url"].as_str().unwrap().ends_with(path))
            .map(|e| e["response"]["content"].clone())
            .unwrap()
    };
    assert_eq!(content("/blocked")["text"], BLOCK_PAGE);
    assert_eq!(content("/big")["_diagproxy_truncated"], true);
    assert!(content("/").get("text").is_none());
    let report = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(
        report.contains("Access to this site is blocked by your organization"),
        "the report shows the body"
    );
}

#[tokio::test]
async fn bodies_none_keeps_none_text_keeps_json_successes_and_all_keeps_binary() {
    let origin = origin().await;
    for (mode, expect) in [("none", 0), ("text", 4), ("all", 5)] {
        let proxy = Proxy::start(&["--bodies", mode]).await;
        for path in ["/", "/blocked", "/error", "/ok.json", "/logo.png"] {
            get(proxy.addr, &format!("http://{origin}{path}")).await;
        }
        let session = proxy.stop().await;
        let kept = session
            .events_of("request")
            .iter()
            .filter(|r| !r["body"].is_null())
            .count();
        assert_eq!(kept, expect, "--bodies {mode}");
        let files = std::fs::read_dir(session.outcome.dir.join("bodies")).map_or(0, |d| d.count());
        assert_eq!(files, expect, "--bodies {mode}");
        if mode == "all" {
            let har = std::fs::read_to_string(session.outcome.dir.join("session.har")).unwrap();
            let har: serde_json::Value = serde_json::from_str(&har).unwrap();
            let png = har["log"]["entries"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["request"]["url"].as_str().unwrap().ends_with("/logo.png"))
                .map(|e| e["response"]["content"].clone())
                .unwrap();
            assert_eq!(png["encoding"], "base64");
            assert_eq!(png["text"], "wolQTkcNChoK", "the bytes as sent, base64");
        }
    }
}

/// Opens the live page in Chromium; `None` (skipped) when Chromium is missing.
fn live_page(proxy: SocketAddr) -> Option<Browser> {
    if !require_tool("chromium") {
        return None;
    }
    let mut browser = Browser::open(
        &format!("http://127.0.0.1:{}/?token={LIVE_TOKEN}", proxy.port()),
        &[],
    );
    assert!(
        browser.wait_for(
            "document.getElementById('conn').textContent === 'live'",
            Duration::from_secs(10)
        ),
        "the page connects to /events"
    );
    Some(browser)
}

const ROWS: &str = "document.querySelectorAll('#rows tbody tr').length";
const SHOWN: &str = "Array.prototype.filter.call(document.querySelectorAll('#rows tbody tr'), function (r) { return !r.hidden; }).length";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_page_shows_requests_as_they_come_filters_them_and_shows_a_block_page() {
    let origin = origin().await;
    // The profile's names, pinned to the test origin: the page looks as it would.
    let port = origin.port();
    let pins: Vec<String> = [
        "chatgpt.com",
        "cdn.oaistatic.com",
        "files.oaiusercontent.com",
        "api.openai.com",
    ]
    .iter()
    .map(|h| format!("--resolve={h}:{port}:127.0.0.1"))
    .collect();
    let pins: Vec<&str> = pins.iter().map(String::as_str).collect();
    let proxy = Proxy::start(&pins).await;
    let addr = proxy.addr;
    let Some(mut browser) = tokio::task::block_in_place(|| live_page(addr)) else {
        return;
    };
    for url in [
        "chatgpt.com/",
        "cdn.oaistatic.com/",
        "files.oaiusercontent.com/blocked",
        "api.openai.com/error",
    ] {
        let (host, path) = url.split_once('/').unwrap();
        get(addr, &format!("http://{host}:{port}/{path}")).await;
    }
    tokio::task::block_in_place(|| {
        assert!(
            browser.wait_for(&format!("{ROWS} === 4"), Duration::from_secs(2)),
            "4 rows within 2 s: {}",
            browser.eval(ROWS)
        );
        // Newest first.
        let top = browser.eval("document.querySelector('#rows tbody tr').textContent");
        assert!(top.as_str().unwrap().contains("/error"), "{top}");
        let filter = |b: &mut Browser, text: &str| {
            b.eval(&format!("(function(){{var q=document.getElementById('q');q.value={text:?};q.dispatchEvent(new Event('input'));return true;}})()"));
            b.eval(SHOWN)
        };
        assert_eq!(filter(&mut browser, "status:403"), 2);
        assert_eq!(filter(&mut browser, "finding:block_page"), 1);
        assert_eq!(filter(&mut browser, "nothing-matches-this"), 0);
        assert_eq!(filter(&mut browser, ""), 4);
        browser.eval("(function(){var p=document.getElementById('problems');p.checked=true;p.dispatchEvent(new Event('change'));return true;})()");
        assert_eq!(
            browser.eval(SHOWN),
            2,
            "problems only: the block page and the error"
        );
        // The block page's row: its finding with the remedy, the copy button, its body.
        browser.eval("(function(){var rows=document.querySelectorAll('#rows tbody tr');for(var i=0;i<rows.length;i++){if(rows[i].textContent.indexOf('/blocked')>=0){rows[i].click();return true;}}return false;})()");
        assert!(
            browser.wait_for("document.querySelector('#detail pre.body') !== null && document.querySelector('#detail pre.body').textContent.indexOf('blocked by your organization') >= 0", Duration::from_secs(2)),
            "the body in the detail pane: {}",
            browser.eval("document.getElementById('detail').textContent")
        );
        let detail = browser.eval("document.getElementById('detail').textContent");
        let detail = detail.as_str().unwrap();
        assert!(
            detail.contains("block_page") && detail.contains("Change:"),
            "{detail}"
        );
        assert!(
            detail.contains("Reproduce without diagproxy") && detail.contains("curl"),
            "{detail}"
        );
        assert!(
            detail.contains("Response headers") && detail.contains("Timings"),
            "{detail}"
        );
        // The markup of the block page is text in the pane, never elements of it.
        assert_eq!(
            browser.eval("document.querySelectorAll('#detail h1').length"),
            0
        );
        // The overview followed: the verdict names the block page.
        assert!(browser.wait_for(
            "document.getElementById('verdict').textContent.indexOf('block') >= 0",
            Duration::from_secs(3)
        ));
        let png = browser.screenshot();
        assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000);
        std::fs::write(artefacts().join("live.png"), png).unwrap();
    });
    drop(browser);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_page_keeps_up_after_5000_events() {
    let origin = origin().await;
    let proxy = Proxy::start(&[]).await;
    let addr = proxy.addr;
    let Some(mut browser) = tokio::task::block_in_place(|| live_page(addr)) else {
        return;
    };
    let mut client = Client::connect(addr).await;
    for _ in 0..5000 {
        client.get(&format!("http://{origin}/")).await;
    }
    proxy.wait_events("request", 5000).await;
    tokio::task::block_in_place(|| {
        // Every one arrived (none lost: the page kept up, or was told what it missed).
        let all = "window.diagproxy.rows() >= 5000";
        assert!(
            browser.wait_for(all, Duration::from_secs(30)),
            "{}",
            browser.eval("window.diagproxy.rows()")
        );
        assert_eq!(
            browser.eval("document.querySelectorAll('#rows tr.gap').length"),
            0,
            "no resync needed"
        );
    });
    // One more still appears within 2 s, on top, and the filter still answers.
    get(addr, &format!("http://{origin}/blocked")).await;
    tokio::task::block_in_place(|| {
        let top = "document.querySelector('#rows tbody tr').textContent.indexOf('/blocked') >= 0";
        assert!(
            browser.wait_for(top, Duration::from_secs(2)),
            "the new row on top within 2 s"
        );
        browser.eval("(function(){var q=document.getElementById('q');q.value='status:403';q.dispatchEvent(new Event('input'));return true;})()");
        assert_eq!(browser.eval(SHOWN), 1);
    });
    drop(browser);
    proxy.stop().await;
}

/// A CA for diagproxy, a public root the origin's leaf for `chatgpt.com` chains to (written
/// to `public.pem`), and the origin.
struct BrowserFixture {
    dir: tempfile::TempDir,
    ca_dir: PathBuf,
    roots: String,
    origin: SocketAddr,
}

async fn browser_fixture() -> BrowserFixture {
    let dir = tempfile::tempdir().unwrap();
    let (ca_dir, _) = local_ca(dir.path());
    let public = TestCa::root("Test Public Root", "Public CA Inc.");
    let (leaf, key) = public.leaf(&["chatgpt.com"]);
    let origin = https_origin(vec![leaf], key).await;
    let roots = write_file(dir.path(), "public.pem", &public.pem());
    BrowserFixture {
        dir,
        ca_dir,
        roots,
        origin,
    }
}

/// `diagproxy browser --headless --no-live-page` on `/proto` of the fixture's origin, with
/// `extra` arguments; its stdout (the DOM) and stderr.
async fn run_browser(f: &BrowserFixture, extra: &[String]) -> (String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_diagproxy"))
        .env("DIAGPROXY_LOOPBACK_ONLY", "1")
        .args([
            "browser",
            "--headless",
            "--no-live-page",
            "--chromium-flag=--dump-dom",
        ])
        .arg(format!("https://chatgpt.com:{}/proto", f.origin.port()))
        .args(extra)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    // The origin's answer (the protocol it was asked in), not Chromium's interstitial.
    assert!(
        stdout.contains(">HTTP/2.0<") || stdout.contains(">HTTP/1.1<"),
        "{stdout}\n{stderr}"
    );
    (stdout, stderr)
}

/// The request for `/proto` among a session's events (the browser's own come too).
fn proto_request(events: &[serde_json::Value]) -> serde_json::Value {
    events
        .iter()
        .find(|e| {
            e["type"] == "request" && e["url"].as_str().is_some_and(|u| u.ends_with("/proto"))
        })
        .cloned()
        .unwrap_or_else(|| panic!("{events:#?}"))
}

#[tokio::test]
async fn diagproxy_browser_reaches_an_https_origin_through_interception_without_a_certificate_error(
) {
    if !require_tool("chromium") {
        return;
    }
    let f = browser_fixture().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let session = f.dir.path().join("session");
    let extra = [
        format!("--proxy=127.0.0.1:{port}"),
        format!("--ca-dir={}", f.ca_dir.display()),
        format!(
            "--run-arg=--resolve=chatgpt.com:{}:127.0.0.1",
            f.origin.port()
        ),
        format!("--run-arg=--public-roots={}", f.roots),
        format!("--run-arg=--system-roots={}", f.roots),
        format!("--run-arg=--session-dir={}", session.display()),
        "--run-arg=-q".to_string(),
    ];
    let (_, stderr) = run_browser(&f, &extra).await;
    assert!(
        stderr.contains("trusting diagproxy's CA (SPKI "),
        "{stderr}"
    );
    // It went through interception: the session started for the browser recorded it.
    let request = proto_request(&read_events(&session));
    assert_eq!(request["intercepted"], true);
    assert_eq!(request["status"], 200);
    assert!(
        session.join("report.html").exists(),
        "the started run ended cleanly"
    );
    // Through diagproxy's PAC only the profile's hosts came: the browser's own traffic
    // stayed out, and the verdict is about ChatGPT.
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(session.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["other_hosts"]["hosts"], 0, "{summary:#}");
    let verdict = summary["verdict"].as_str().unwrap();
    assert!(
        verdict.starts_with("No problem seen: 1 allowlisted host(s)"),
        "{verdict}"
    );
    let html = std::fs::read_to_string(session.join("report.html")).unwrap();
    assert!(
        !html.contains("id=\"other-traffic\""),
        "no other traffic to show"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagproxy_browser_uses_the_run_already_listening_and_its_ca() {
    if !require_tool("chromium") {
        return;
    }
    let f = browser_fixture().await;
    let pin = format!("chatgpt.com:{}:127.0.0.1", f.origin.port());
    let ca = f.ca_dir.to_str().unwrap();
    let roots = f.roots.as_str();
    let args = [
        "--intercept",
        "profile",
        "--ca-dir",
        ca,
        "--public-roots",
        roots,
        "--system-roots",
        roots,
        "--resolve",
        &pin,
    ];
    let proxy = Proxy::start(&args).await;
    // The CA comes from the same --ca-dir on disk, once the running proxy proved it holds
    // its key; curl's -x form is taken.
    let extra = [
        format!("--proxy=http://{}", proxy.addr),
        format!("--ca-dir={ca}"),
    ];
    let (_, stderr) = run_browser(&f, &extra).await;
    // A --ca-dir with no CA is refused rather than trusting what the proxy serves.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_diagproxy"))
        .env("DIAGPROXY_LOOPBACK_ONLY", "1")
        .args(["browser", "--headless", "--ca-dir=/nonexistent"])
        .arg(format!("--proxy={}", proxy.addr))
        .output()
        .await
        .unwrap();
    let refused = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{refused}");
    assert!(refused.contains("no CA at /nonexistent/"), "{refused}");
    assert!(
        !stderr.contains("diagproxy listening"),
        "no second run started: {stderr}"
    );
    let session = proxy.stop().await;
    assert_eq!(proto_request(&session.events)["intercepted"], true);
}

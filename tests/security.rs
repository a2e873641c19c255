//! The attacks of a hostile PAC author, a hostile local user and a hostile page, each
//! performed against diagproxy: what must not leak, or be trusted, does not.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use common::*;
use diagproxy::upstream::auth::{Credentials, Mode, Settings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const PASSWORD: &str = "corp-Secret-42";

/// A proxy that asks everyone to sign in (`407` offering Basic and NTLM) and keeps every
/// request head it receives.
async fn credential_thief() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let kept = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                while let Some(head) = read_request_head(&mut stream).await {
                    kept.lock().unwrap().push(head);
                    let answer = "HTTP/1.1 407 Proxy Authentication Required\r\n\
                        Proxy-Authenticate: NTLM\r\nProxy-Authenticate: Basic realm=\"corp\"\r\n\
                        Content-Length: 0\r\n\r\n";
                    if stream.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, heads)
}

async fn read_request_head(stream: &mut tokio::net::TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// An in-process diagproxy routed by the PAC at `pac`, with `--upstream-user CORP\bob`.
async fn with_password(pac: SocketAddr, extra: &[&str], auth_proxies: Vec<String>) -> Proxy {
    let source = format!("pac:http://{pac}/proxy.pac");
    let mut args = vec!["--upstream-proxy", source.as_str()];
    args.extend_from_slice(extra);
    let trust = args.contains(&"--trust-pac-proxies");
    let mode = if args.contains(&"basic") {
        Mode::Basic
    } else {
        Mode::Auto
    };
    Proxy::start_with(&args, move |config| {
        config.upstream_auth = Arc::new(Settings {
            mode,
            user: Some(Credentials::parse("CORP\\bob", PASSWORD.into()).unwrap()),
            auth_proxies,
            trust_pac_proxies: trust,
        });
    })
    .await
}

#[tokio::test]
async fn a_proxy_only_a_pac_names_never_gets_the_password() {
    let (thief, heads) = credential_thief().await;
    let pac = pac_server(format!(
        "function FindProxyForURL(u, h) {{ return 'PROXY 127.0.0.1:{}'; }}",
        thief.port()
    ))
    .await;
    let proxy = with_password(pac, &[], Vec::new()).await;
    // A tunnel and a plain request, the two ways a sign-in starts.
    let (_, head) = raw_connect(proxy.addr, "chatgpt.com:443", "").await;
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    assert!(head.contains("not sending your password"), "{head}");
    let reply = get(proxy.addr, "http://chatgpt.com/").await;
    assert_eq!(reply.status, 502, "{}", reply.text());
    let session = proxy.stop().await;

    let heads = heads.lock().unwrap().clone();
    assert!(
        heads.len() >= 2,
        "both requests reached the thief: {heads:?}"
    );
    for head in &heads {
        assert!(
            !head.to_ascii_lowercase().contains("proxy-authorization"),
            "a PAC-named proxy got credentials: {head}"
        );
    }
    let tunnel = &session.events_of("tunnel")[0];
    assert_eq!(tunnel["failure"]["kind"], "upstream_proxy_auth", "{tunnel}");
    let detail = tunnel["proxy_auth"]["detail"].as_str().unwrap_or_default();
    let port = thief.port();
    assert!(
        detail.contains(&format!(
            "not sending your password to 127.0.0.1:{port}, which the PAC named; add it to --upstream-auth-proxies if it is yours"
        )),
        "{tunnel}"
    );
}

#[tokio::test]
async fn a_pac_proxy_the_user_lists_gets_the_password_and_basic_is_called_plaintext() {
    let (corp, heads) = credential_thief().await;
    let pac = pac_server(format!(
        "function FindProxyForURL(u, h) {{ return 'PROXY 127.0.0.1:{}'; }}",
        corp.port()
    ))
    .await;
    let listed = vec![format!("127.0.0.1:{}", corp.port())];
    let proxy = with_password(pac, &["--upstream-auth", "basic"], listed).await;
    let (_, head) = raw_connect(proxy.addr, "chatgpt.com:443", "").await;
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    let session = proxy.stop().await;
    let heads = heads.lock().unwrap().clone();
    assert!(
        heads.iter().any(|h| h
            .to_ascii_lowercase()
            .contains("proxy-authorization: basic ")),
        "the listed proxy was asked with Basic: {heads:?}"
    );
    let auth = &session.events_of("tunnel")[0]["proxy_auth"];
    assert!(
        auth["warning"]
            .as_str()
            .unwrap_or_default()
            .contains("plain HTTP"),
        "{auth}"
    );
}

#[tokio::test]
async fn trust_pac_proxies_trusts_the_pac_servers_own_domain_only() {
    let (thief, heads) = credential_thief().await;
    // The PAC is served from 127.0.0.1: its "domain" is that address; a proxy on
    // 127.0.0.2 is outside it.
    let pac = pac_server(format!(
        "function FindProxyForURL(u, h) {{ return 'PROXY 127.0.0.1:{}'; }}",
        thief.port()
    ))
    .await;
    let proxy = with_password(pac, &["--trust-pac-proxies"], Vec::new()).await;
    let _ = raw_connect(proxy.addr, "chatgpt.com:443", "").await;
    drop(proxy.stop().await);
    let heads = heads.lock().unwrap().clone();
    assert!(
        heads.iter().any(|h| h
            .to_ascii_lowercase()
            .contains("proxy-authorization: ntlm ")),
        "a proxy in the PAC's own domain is trusted with --trust-pac-proxies: {heads:?}"
    );
}

async fn ask(addr: SocketAddr, path: &str, extra: &str) -> String {
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Connection: close\r\n\r\n");
    raw_exchange(addr, request.as_bytes()).await
}

#[tokio::test]
async fn another_local_user_cannot_read_the_live_page_without_the_token() {
    let proxy = Proxy::start(&["--bodies", "all"]).await;
    for path in [
        "/",
        "/summary.json",
        "/events",
        "/api/overview",
        "/api/event/1",
        "/api/body/00",
        "/session.har",
        "/report.html",
        "/live.js",
    ] {
        let page = ask(proxy.addr, path, "").await;
        assert!(page.starts_with("HTTP/1.1 403"), "{path}: {page}");
        assert!(page.contains("needs the session's token"), "{page}");
        let wrong = ask(proxy.addr, path, "Cookie: diagproxy_token_1=x\r\n").await;
        assert!(wrong.starts_with("HTTP/1.1 403"), "{path}: {wrong}");
        let wrong = ask(
            proxy.addr,
            &format!("{path}?token=test-live-token-0001"),
            "",
        )
        .await;
        assert!(wrong.starts_with("HTTP/1.1 403"), "{path}: {wrong}");
    }
    // What a device needs before it can be given a token stays public.
    let pac = ask(proxy.addr, "/proxy.pac", "").await;
    assert!(pac.starts_with("HTTP/1.1 200"), "{pac}");
    let ca = ask(proxy.addr, "/ca.pem", "").await;
    assert!(
        ca.starts_with("HTTP/1.1 404"),
        "no CA here, but no token asked: {ca}"
    );
    // The token once in the URL sets the cookie; the cookie then suffices.
    let first = ask(proxy.addr, &format!("/summary.json?token={LIVE_TOKEN}"), "").await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    let port = proxy.addr.port();
    let cookie = format!("diagproxy_token_{port}={LIVE_TOKEN}");
    assert!(
        first.contains(&format!(
            "set-cookie: {cookie}; HttpOnly; SameSite=Strict; Path=/"
        )),
        "{first}"
    );
    let again = ask(
        proxy.addr,
        "/summary.json",
        &format!("Cookie: a=b; {cookie}\r\n"),
    )
    .await;
    assert!(again.starts_with("HTTP/1.1 200"), "{again}");
    proxy.stop().await;
}

#[test]
fn the_banner_prints_the_live_page_with_a_random_token_even_to_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("s");
    let mut command = diagproxy();
    command.env_remove("DIAGPROXY_LIVE_TOKEN");
    let child = command
        .args(["run", "--listen", "127.0.0.1:0", "--session-dir"])
        .arg(&session)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut running = attach(child);
    let line = loop {
        let line = running
            .lines
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("a live page line");
        if line.starts_with("live page: ") {
            break line;
        }
    };
    let url = line.split_whitespace().nth(2).expect("the URL").to_string();
    let token = url.split("?token=").nth(1).unwrap_or_default();
    assert_eq!(token.len(), 32, "{line}");
    assert_ne!(token, LIVE_TOKEN);
    assert!(
        url.starts_with(&format!("http://{}/?token=", running.addr)),
        "{line}"
    );
    let _ = running.child.kill();
    let _ = running.child.wait();
}

/// A program that answers every request `200` with a CA certificate of its own: what a
/// hostile local user could leave on port 8080.
async fn impostor(pem: String) -> SocketAddr {
    let page: &'static str = Box::leak(pem.into_boxed_str());
    canned_origin(vec![
        canned("/summary.json", 200, &[], "{}"),
        canned("/ca.pem", 200, &[], page),
        canned("/api/prove", 200, &[], "bm90IGEgc2lnbmF0dXJl"),
    ])
    .await
}

#[tokio::test]
async fn diagproxy_browser_trusts_only_the_ca_on_disk_and_only_a_proxy_that_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_dir, ca_pem) = local_ca(dir.path());
    // The impostor even serves our own CA certificate: without the key it proves nothing.
    let fake = impostor(ca_pem).await;
    let marker = dir.path().join("browser-ran");
    let browser = dir.path().join("fake-chromium");
    std::fs::write(
        &browser,
        format!("#!/bin/sh\ntouch '{}'\n", marker.display()),
    )
    .unwrap();
    std::fs::set_permissions(
        &browser,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let out = diagproxy()
        .args(["browser", "--headless", "--proxy"])
        .arg(format!("http://{fake}"))
        .arg("--ca-dir")
        .arg(&ca_dir)
        .arg("--browser")
        .arg(&browser)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("not trusting what answers at {fake}")),
        "{stderr}"
    );
    assert!(!marker.exists(), "the browser was started for an impostor");

    let out = diagproxy()
        .args(["browser", "--proxy", "10.0.0.1:8080", "--browser"])
        .arg(&browser)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("not a loopback address"), "{stderr}");
}

#[tokio::test]
async fn a_hostile_pac_cannot_fill_the_session_files() {
    // An 8 MiB exception for every host, a 5 MiB answer, and 200 proxies.
    let pac = pac_server(
        "function FindProxyForURL(u, h) {
            if (h == 'answer.example') return 'PROXY a:1; '.repeat(800000);
            if (h == 'many.example') return 'PROXY 127.0.0.1:9;'.repeat(200);
            throw 'x'.repeat(8 << 20) + h;
        }"
        .to_string(),
    )
    .await;
    let source = format!("pac:http://{pac}/proxy.pac");
    let proxy = Proxy::start(&["--upstream-proxy", &source]).await;
    for i in 0..10 {
        let _ = get(proxy.addr, &format!("http://h{i}.example/")).await;
    }
    let _ = get(proxy.addr, "http://answer.example/").await;
    let _ = get(proxy.addr, "http://many.example/").await;
    let session = proxy.stop().await;
    let events = std::fs::metadata(session.folder.path().join("session/events.jsonl"))
        .unwrap()
        .len();
    assert!(events < 256 * 1024, "events.jsonl is {events} bytes");
    let requests = session.events_of("request");
    let error_of = |host: &str| {
        requests
            .iter()
            .find(|r| r["url"].as_str().is_some_and(|u| u.contains(host)))
            .map(|r| r["pac_error"].as_str().unwrap_or_default().to_string())
            .unwrap_or_else(|| panic!("no request to {host}"))
    };
    let thrown = error_of("h3.example");
    assert!(thrown.len() < 1024, "{} bytes", thrown.len());
    assert!(thrown.contains("truncated"), "{thrown}");
    let answer = error_of("answer.example");
    assert!(
        answer.contains("more than 4096 is not a proxy list"),
        "{answer}"
    );
    let many = requests
        .iter()
        .find(|r| {
            r["url"]
                .as_str()
                .is_some_and(|u| u.contains("many.example"))
        })
        .unwrap();
    let failed = many["route_failed"].as_array().map_or(0, Vec::len);
    assert!((1..=32).contains(&failed), "{failed} hops tried: {many}");
}

#[tokio::test]
async fn secrets_in_an_intercepted_query_reach_no_file_and_no_stream() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_dir, ca_pem) = local_ca(dir.path());
    let public = TestCa::root("Test Public Root", "Public CA Inc.");
    let (leaf, key) = public.leaf(&["chatgpt.com"]);
    let to_filter = &[("location", "http://block.filter.example/denied")];
    let origin = canned_https_origin(vec![leaf], key, vec![canned("/b", 302, to_filter, "")]).await;
    let roots = write_file(dir.path(), "public.pem", &public.pem());
    let pin = format!("chatgpt.com:{}:127.0.0.1", origin.port());
    let proxy = Proxy::start(&[
        "--intercept",
        "profile",
        "--ca-dir",
        ca_dir.to_str().unwrap(),
        "--public-roots",
        &roots,
        "--system-roots",
        &roots,
        "--resolve",
        &pin,
        "--bodies",
        "all",
    ])
    .await;
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let ask = format!(
        "GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Diagproxy-Token: {LIVE_TOKEN}\r\nAccept: text/event-stream\r\n\r\n"
    );
    stream.write_all(ask.as_bytes()).await.unwrap();
    // HTTP/2 downstream: the hyper path, where the path kept its query.
    let port = origin.port();
    let tls = intercepted_tls(proxy.addr, "chatgpt.com", port, &ca_pem, &["h2"]).await;
    let (mut h2, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let url = format!("https://chatgpt.com:{port}/b?token=SECRETTOK1&code=SECRETCODE2&q=ok");
    let request = hyper::Request::get(url)
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let response = h2.send_request(request).await.unwrap();
    drop(http_body_util::BodyExt::collect(response.into_body()).await);
    proxy.wait_events("request", 1).await;
    // The live stream, up to the request's event.
    let mut sse = String::new();
    let mut buf = vec![0u8; 65536];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !sse.contains("redirect_off_allowlist") {
        let read = tokio::time::timeout_at(deadline, stream.read(&mut buf)).await;
        let Ok(Ok(n @ 1..)) = read else { break };
        sse.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(sse.contains("redirect_off_allowlist"), "{sse}");
    let session = proxy.stop().await;
    let finding = &session.events_of("request")[0]["findings"][0];
    assert!(
        finding["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("/b?token=REDACTED&code=REDACTED&q=ok redirected"),
        "{finding}"
    );
    let mut texts = vec![("the /events stream".to_string(), sse)];
    for entry in std::fs::read_dir(session.folder.path().join("session")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
            texts.push((path.display().to_string(), text));
        }
    }
    assert!(
        texts.len() >= 5,
        "events, summary, HAR, reports: {}",
        texts.len()
    );
    for (name, text) in texts {
        for secret in ["SECRETTOK1", "SECRETCODE2"] {
            assert!(!text.contains(secret), "{secret} in {name}");
        }
    }
}

#[test]
fn chaining_to_its_own_port_in_any_spelling_is_a_usage_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for host in [
        "127.0.0.1",
        "127.1",
        "localhost",
        "2130706433",
        "0x7f000001",
        "[::ffff:127.0.0.1]",
    ] {
        let out = diagproxy()
            .args(["run", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--upstream-proxy", &format!("http://{host}:{port}")])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{host}: {stderr}");
        assert!(stderr.contains("is this proxy itself"), "{stderr}");
    }
}

#[tokio::test]
async fn a_broken_request_body_from_the_client_is_the_downstreams_failure() {
    let origin = common::origin().await;
    let proxy = Proxy::start(&[]).await;
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let head = format!(
        "POST http://{origin}/echo HTTP/1.1\r\nHost: {origin}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz-not-a-size\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut answer),
    )
    .await;
    drop(stream);
    let session = proxy.stop().await;
    let request = &session.events_of("request")[0];
    assert_eq!(request["failure"]["side"], "downstream", "{request}");
    let detail = request["failure"]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("the client's request body"), "{request}");
}

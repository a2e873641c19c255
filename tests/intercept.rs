//! Interception on loopback: a local CA made by `ca init` (name-constrained), an HTTPS origin
//! (h1 + h2) signed by a test "public" root, and real clients (hyper over rustls, curl).

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Setup {
    proxy: Proxy,
    origin: std::net::SocketAddr,
    ca_pem: String,
    public: TestCa,
    _dir: tempfile::TempDir,
}

/// A CA in a temp dir, an origin for chatgpt.com, and a proxy intercepting the profile.
async fn setup(extra: &[&str]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (ca_dir, ca_pem) = local_ca(dir.path());
    let public = TestCa::root("Test Public Root", "Public CA Inc.");
    let (leaf, key) = public.leaf(&["chatgpt.com"]);
    let origin = https_origin(vec![leaf], key).await;
    let roots = write_file(dir.path(), "public.pem", &public.pem());
    let pin = format!("chatgpt.com:{}:127.0.0.1", origin.port());
    let mut args = vec![
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
    ];
    args.extend_from_slice(extra);
    let proxy = Proxy::start(&args).await;
    Setup {
        proxy,
        origin,
        ca_pem,
        public,
        _dir: dir,
    }
}

type H2 = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

async fn h2_client(s: &Setup) -> H2 {
    let tls = intercepted_tls(
        s.proxy.addr,
        "chatgpt.com",
        s.origin.port(),
        &s.ca_pem,
        &["h2"],
    )
    .await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

/// RFC 6455's sample upgrade to `/ws`.
fn websocket_upgrade() -> Request<Full<Bytes>> {
    Request::get("/ws")
        .header("host", "chatgpt.com")
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

fn get(url: &str) -> Request<Full<Bytes>> {
    Request::get(url).body(Full::new(Bytes::new())).unwrap()
}

#[tokio::test]
async fn intercepts_http2_and_http1_and_records_each_request() {
    let s = setup(&[]).await;
    let base = format!("https://chatgpt.com:{}", s.origin.port());

    let mut h2 = h2_client(&s).await;
    let response = h2
        .send_request(get(&format!("{base}/proto")))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"HTTP/2.0", "the origin offered h2 and got it");

    let request = Request::get("/hello")
        .header("host", format!("chatgpt.com:{}", s.origin.port()))
        .header("authorization", "Bearer sk-test-secret")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = intercepted_h1(
        s.proxy.addr,
        "chatgpt.com",
        s.origin.port(),
        &s.ca_pem,
        request,
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        &response.into_body().collect().await.unwrap().to_bytes()[..],
        b"hello"
    );

    s.proxy.wait_events("request", 2).await;
    let session = s.proxy.stop().await;
    let requests = session.events_of("request");
    let proto = requests
        .iter()
        .find(|r| r["url"].as_str().unwrap().ends_with("/proto"))
        .unwrap();
    assert_eq!(proto["intercepted"], true);
    assert_eq!(proto["upstream_protocol"], "h2");
    assert_eq!(proto["status"], 200);
    assert!(proto["timings"]["ssl_ms"].as_f64().is_some(), "{proto:#}");
    let hello = requests
        .iter()
        .find(|r| r["url"].as_str().unwrap().ends_with("/hello"))
        .unwrap();
    // An HTTP/1.1-only client: the origin is offered HTTP/1.1 too, as without diagproxy.
    assert_eq!(hello["upstream_protocol"], "http/1.1");
    let headers = hello["headers"]["request"].to_string();
    assert!(
        headers.contains("REDACTED") && !headers.contains("sk-test-secret"),
        "{headers}"
    );
    let check = &session.events_of("tls_check")[0];
    assert_eq!(check["via"], "interception");
    assert_eq!(check["tls"]["verdict"], "public");
    let host = session.host("chatgpt.com", s.origin.port());
    assert_eq!(host["requests"], 2);
    assert_eq!(host["tls"]["verdict"], "public");
}

/// A browser sends a page's requests together as streams of one connection: diagproxy
/// opens one HTTP/2 connection to the origin for them, not one per stream (each its own
/// TLS handshake, and through a corporate proxy its own CONNECT and sign-in).
#[tokio::test]
async fn a_burst_of_http2_streams_shares_one_upstream_connection() {
    let s = setup(&[]).await;
    let base = format!("https://chatgpt.com:{}", s.origin.port());
    let h2 = h2_client(&s).await;
    let streams: Vec<_> = (0..16)
        .map(|i| {
            let mut h2 = h2.clone();
            let request = get(&format!("{base}/proto?stream={i}"));
            tokio::spawn(async move { h2.send_request(request).await.unwrap().status() })
        })
        .collect();
    for stream in streams {
        assert_eq!(stream.await.unwrap(), 200);
    }
    s.proxy.wait_events("request", 16).await;
    let session = s.proxy.stop().await;
    let requests = session.events_of("request");
    assert_eq!(requests.len(), 16);
    assert!(requests.iter().all(|r| r["upstream_protocol"] == "h2"));
    // Only the request that connected shook hands with the origin; the others used its
    // connection.
    let handshakes = requests
        .iter()
        .filter(|r| r["timings"]["ssl_ms"].as_f64().is_some())
        .count();
    let reused = requests.iter().filter(|r| r["reused"] == true).count();
    assert_eq!((handshakes, reused), (1, 15), "{requests:#?}");
}

#[tokio::test]
async fn streams_a_50_mb_upload_through_interception() {
    let s = setup(&[]).await;
    let mut h2 = h2_client(&s).await;
    let size: u64 = 50 * 1024 * 1024;
    let (mut sender, conn) = {
        let tls = intercepted_tls(
            s.proxy.addr,
            "chatgpt.com",
            s.origin.port(),
            &s.ca_pem,
            &["h2"],
        )
        .await;
        hyper::client::conn::http2::handshake::<_, _, Zeros>(
            TokioExecutor::new(),
            TokioIo::new(tls),
        )
        .await
        .unwrap()
    };
    tokio::spawn(conn);
    let upload = Request::post(format!("https://chatgpt.com:{}/count", s.origin.port()))
        .body(Zeros::new(size))
        .unwrap();
    let response = sender.send_request(upload).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(String::from_utf8_lossy(&body), size.to_string());
    drop(
        h2.send_request(get(&format!(
            "https://chatgpt.com:{}/hello",
            s.origin.port()
        )))
        .await
        .unwrap(),
    );
    let requests = s.proxy.wait_events("request", 1).await;
    let upload = requests
        .iter()
        .find(|r| r["method"] == "POST")
        .expect("the upload was recorded");
    assert_eq!(upload["bytes_up"], size);
    s.proxy.stop().await;
}

#[tokio::test]
async fn event_streams_are_relayed_as_they_arrive() {
    let s = setup(&[]).await;
    let mut h2 = h2_client(&s).await;
    let response = h2
        .send_request(get(&format!("https://chatgpt.com:{}/sse", s.origin.port())))
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    // The origin holds the rest of the stream until we release it: the first event can only
    // arrive now if diagproxy passes it on without waiting for the end.
    let first = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .expect("first event before the stream ends")
        .unwrap()
        .unwrap();
    assert_eq!(
        first.data_ref().map(|d| &d[..]),
        Some(&b"data: first\n\n"[..])
    );
    sse_gate().notify_waiters();
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(&rest[..], b"data: second\n\n");
    let requests = s.proxy.wait_events("request", 1).await;
    assert!(requests[0]["timings"]["first_byte_ms"].as_f64().is_some());
    assert_eq!(requests[0]["content_type"], "text/event-stream");
    s.proxy.stop().await;
}

#[tokio::test]
async fn websocket_upgrades_are_relayed() {
    let s = setup(&[]).await;
    let request = websocket_upgrade();
    let response = intercepted_h1(
        s.proxy.addr,
        "chatgpt.com",
        s.origin.port(),
        &s.ca_pem,
        request,
    )
    .await;
    assert_eq!(response.status(), 101);
    assert_eq!(
        response.headers()["sec-websocket-accept"],
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
    let mut io = TokioIo::new(hyper::upgrade::on(response).await.unwrap());
    io.write_all(b"ping over websocket").await.unwrap();
    let mut echoed = [0u8; 19];
    io.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"ping over websocket");
    // Held open a while: the CONNECT's line must span the WebSocket's life, not its upgrade.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    drop(io);
    let requests = s.proxy.wait_events("request", 1).await;
    assert_eq!(requests[0]["status"], 101);
    assert_eq!(requests[0]["bytes_up"], 19);
    let tunnels = s.proxy.wait_events("tunnel", 1).await;
    s.proxy.stop().await;
    let lived = requests[0]["timings"]["total_ms"].as_f64().unwrap();
    assert!(lived >= 300.0, "{lived}");
    assert!(
        tunnels[0]["timings"]["total_ms"].as_f64().unwrap() >= lived,
        "{:#}",
        tunnels[0]
    );
    assert!(
        tunnels[0]["bytes_up"].as_u64() > Some(19),
        "{:#}",
        tunnels[0]
    );
}

#[tokio::test]
async fn a_client_that_rejects_the_ca_is_passed_through_next_time() {
    let s = setup(&[]).await;
    // This client trusts only the public root, not diagproxy's CA.
    let (stream, head) = raw_connect(
        s.proxy.addr,
        &format!("chatgpt.com:{}", s.origin.port()),
        "",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(s.public.cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("chatgpt.com").unwrap();
    assert!(
        connector.connect(name, stream).await.is_err(),
        "the minted leaf must not verify for this client"
    );
    let rejected = s.proxy.wait_events("client_rejected_ca", 1).await;
    assert_eq!(rejected[0]["passthrough"], true);
    assert!(
        rejected[0]["detail"].as_str().unwrap().contains("alert"),
        "{:#}",
        rejected[0]
    );

    // Next time the host is tunnelled untouched: the client sees the origin's own certificate.
    let answer = https_through(
        s.proxy.addr,
        "chatgpt.com",
        s.origin.port(),
        &s.public.pem(),
    )
    .await;
    assert!(answer.contains("404") || answer.contains("200"), "{answer}");

    // The status page lists it, with a button that intercepts it again.
    let port = s.origin.port();
    let get_status = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Diagproxy-Token: test-live-token-0000\r\nConnection: close\r\n\r\n";
    let status = raw_exchange(s.proxy.addr, get_status).await;
    let form = format!("action=\"/passthrough/reenable?host=chatgpt.com&amp;port={port}\"");
    assert!(
        status.contains("Tunnelled untouched") && status.contains(&form),
        "{status}"
    );
    let post = |origin: &str| {
        format!(
            "POST /passthrough/reenable?host=chatgpt.com&port={port} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Diagproxy-Token: test-live-token-0000\r\n{origin}Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
    };
    let forged = raw_exchange(
        s.proxy.addr,
        post("Origin: http://evil.example\r\n").as_bytes(),
    )
    .await;
    assert!(
        forged.starts_with("HTTP/1.1 403"),
        "another site cannot: {forged}"
    );
    // Nor a page of another local server (an IP literal, another port).
    let other_port = format!("Origin: http://127.0.0.1:{}\r\n", s.proxy.addr.port() + 1);
    let forged = raw_exchange(s.proxy.addr, post(&other_port).as_bytes()).await;
    assert!(
        forged.starts_with("HTTP/1.1 403"),
        "another port cannot: {forged}"
    );
    let own = format!("Origin: http://{}\r\n", s.proxy.addr);
    let done = raw_exchange(s.proxy.addr, post(&own).as_bytes()).await;
    assert!(done.starts_with("HTTP/1.1 303"), "{done}");
    let status = raw_exchange(s.proxy.addr, get_status).await;
    assert!(!status.contains("Tunnelled untouched"), "{status}");
    // Intercepted again: a client that trusts diagproxy's CA completes the handshake.
    drop(intercepted_tls(s.proxy.addr, "chatgpt.com", port, &s.ca_pem, &["http/1.1"]).await);

    let session = s.proxy.stop().await;
    let host = session.host("chatgpt.com", s.origin.port());
    assert_eq!(host["findings"][0]["kind"], "client_rejected_ca");
    assert!(session
        .events_of("tunnel")
        .iter()
        .any(|t| t["mode"] == "tunnel"));
}

#[tokio::test]
async fn an_untrusted_origin_gets_an_html_page_naming_the_issuer() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_dir, ca_pem) = local_ca(dir.path());
    let public = TestCa::root("Test Public Root", "Public CA Inc.");
    let middlebox = TestCa::root("FortiGate CA", "Fortinet");
    let (leaf, key) = middlebox.leaf(&["chatgpt.com"]);
    let origin = https_origin(vec![leaf], key).await;
    let roots = write_file(dir.path(), "public.pem", &public.pem());
    let pin = format!("chatgpt.com:{}:127.0.0.1", origin.port());
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
        &pin,
    ])
    .await;

    let request = Request::get("/")
        .header("host", "chatgpt.com")
        .header("accept", "text/html,*/*")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = intercepted_h1(proxy.addr, "chatgpt.com", origin.port(), &ca_pem, request).await;
    assert_eq!(response.status(), 502);
    assert_eq!(response.headers()["x-diagproxy-error"], "tls_failed");
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = String::from_utf8_lossy(&response.into_body().collect().await.unwrap().to_bytes())
        .into_owned();
    assert!(
        page.contains("FortiGate CA") && page.contains("untrusted") && page.contains("Fortinet"),
        "{page}"
    );
    let session = proxy.stop().await;
    let host = session.host("chatgpt.com", origin.port());
    assert_eq!(host["failures"]["tls_failed"], 1);
    assert_eq!(host["tls"]["verdict"], "untrusted");
    assert_eq!(host["tls"]["vendor"], "Fortinet");
}

#[tokio::test]
async fn curl_through_interception_over_http1_and_http2() {
    if !require_tool("curl") {
        return;
    }
    let s = setup(&[]).await;
    let ca = write_file(s._dir.path(), "diagproxy-ca.pem", &s.ca_pem);
    let proxy_url = format!("http://{}", s.proxy.addr);
    let url = format!("https://chatgpt.com:{}/proto", s.origin.port());
    for (flag, expected) in [("--http1.1", "HTTP/1.1"), ("--http2", "HTTP/2.0")] {
        let args = [
            "-sS",
            "--max-time",
            "20",
            "--cacert",
            &ca,
            "-x",
            &proxy_url,
            flag,
            &url,
        ];
        let out = tokio::task::spawn_blocking({
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            move || curl().args(args).output().unwrap()
        })
        .await
        .unwrap();
        assert!(
            out.status.success(),
            "curl {flag}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The origin is offered what the client chose (the /proto answer names it).
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            expected,
            "curl {flag}"
        );
    }
    s.proxy.wait_events("request", 2).await;
    s.proxy.stop().await;
}

#[tokio::test]
async fn an_inspected_origin_is_named_and_still_served() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_dir, ca_pem) = local_ca(dir.path());
    let public = TestCa::root("Test Public Root", "Public CA Inc.");
    let zscaler = TestCa::root("Zscaler Root CA", "Zscaler Inc.");
    let issuing = zscaler.intermediate(
        "Zscaler Intermediate Root CA (zscalerthree.net) (t) ",
        "Zscaler Inc.",
    );
    let (leaf, key) = issuing.leaf(&["files.oaiusercontent.com"]);
    let origin = https_origin(vec![leaf, issuing.cert.der().clone()], key).await;
    let public_pem = write_file(dir.path(), "public.pem", &public.pem());
    let system_pem = write_file(dir.path(), "system.pem", &(public.pem() + &zscaler.pem()));
    let pin = format!("files.oaiusercontent.com:{}:127.0.0.1", origin.port());
    let ca_arg = ca_dir.to_str().unwrap();
    let proxy = Proxy::start(&[
        "--intercept",
        "profile",
        "--ca-dir",
        ca_arg,
        "--public-roots",
        &public_pem,
        "--system-roots",
        &system_pem,
        "--resolve",
        &pin,
    ])
    .await;

    let request = Request::get("/hello")
        .header("host", "files.oaiusercontent.com")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = intercepted_h1(
        proxy.addr,
        "files.oaiusercontent.com",
        origin.port(),
        &ca_pem,
        request,
    )
    .await;
    assert_eq!(
        response.status(),
        200,
        "a browser on this machine would accept the re-signed chain, so diagproxy does too"
    );
    drop(response.into_body().collect().await.unwrap());

    let checks = proxy.wait_events("tls_check", 1).await;
    assert_eq!(checks[0]["via"], "interception");
    let session = proxy.stop().await;
    let host = session.host("files.oaiusercontent.com", origin.port());
    assert_eq!(host["tls"]["verdict"], "inspected");
    assert_eq!(host["tls"]["vendor"], "Zscaler");
    assert_eq!(host["findings"][0]["kind"], "tls_inspection");
}

#[tokio::test]
async fn intercepted_http1_requests_keep_one_origin_connection_and_its_host() {
    let s = setup(&[]).await;
    let port = s.origin.port();
    let mut h1 = intercepted_h1_client(s.proxy.addr, "chatgpt.com", port, &s.ca_pem).await;
    let mut answers = Vec::new();
    for (path, host) in [
        ("/host", "elsewhere.example"),
        ("/peer", "chatgpt.com"),
        ("/peer", "chatgpt.com"),
    ] {
        let request = Request::get(path)
            .header("host", host)
            .body(Full::new(Bytes::new()))
            .unwrap();
        h1.ready().await.unwrap();
        let response = h1.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        answers.push(String::from_utf8(body.to_vec()).unwrap());
    }
    // The origin sees the tunnel's host, whatever the client wrote.
    assert_eq!(answers[0], format!("chatgpt.com:{}", s.origin.port()));
    assert_eq!(answers[1], answers[2], "one origin connection for both");
    s.proxy.wait_events("request", 3).await;
    let session = s.proxy.stop().await;
    let requests = session.events_of("request");
    assert_eq!(requests.len(), 3);
    for request in &requests {
        assert_eq!(request["intercepted"], true);
        assert_eq!(request["upstream_protocol"], "http/1.1");
        assert_eq!(request["complete"], true);
    }
    assert_eq!(
        requests[2]["url"],
        format!("https://chatgpt.com:{}/peer", s.origin.port())
    );
    assert_eq!(requests[2]["reused"], true);
    assert!(requests[0]["timings"]["ssl_ms"].as_f64().is_some());
}

#[tokio::test]
async fn an_intercepted_connection_the_client_closes_ends_with_close_notify() {
    let s = setup(&[]).await;
    let mut tls = intercepted_tls(
        s.proxy.addr,
        "chatgpt.com",
        s.origin.port(),
        &s.ca_pem,
        &["http/1.1"],
    )
    .await;
    tls.write_all(b"GET /hello HTTP/1.1\r\nHost: chatgpt.com\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    // rustls reports a close without close_notify as an error: the read must end cleanly.
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("hello"), "{answer}");
    s.proxy.stop().await;
}

#[tokio::test]
async fn a_client_that_never_finishes_its_tls_handshake_is_closed() {
    let s = setup(&["--header-timeout", "300ms"]).await;
    let target = format!("chatgpt.com:{}", s.origin.port());
    let (mut stream, head) = raw_connect(s.proxy.addr, &target, "").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // Say nothing: the proxy closes the connection once --header-timeout has passed.
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::io::AsyncReadExt::read(&mut stream, &mut byte),
    )
    .await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    let session = s.proxy.stop().await;
    assert_eq!(session.summary["session"]["header_timeouts"], 1);
}

/// A client that trusts diagproxy's CA, completes the handshake and closes without a
/// request — as a browser's spare (preconnect) connection does.
async fn spare_connection(s: &Setup) {
    let mut tls = intercepted_tls(
        s.proxy.addr,
        "chatgpt.com",
        s.origin.port(),
        &s.ca_pem,
        &["h2", "http/1.1"],
    )
    .await;
    let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
}

#[tokio::test]
async fn a_browsers_spare_connections_do_not_turn_interception_off() {
    let s = setup(&[]).await;
    for _ in 0..2 {
        spare_connection(&s).await;
    }
    s.proxy.wait_events("tunnel", 2).await;
    let answer = https_through(s.proxy.addr, "chatgpt.com", s.origin.port(), &s.ca_pem).await;
    assert!(
        answer.starts_with("HTTP/1.1 "),
        "intercepted as before: {answer}"
    );
    s.proxy.wait_events("tunnel", 3).await;
    // Where requests were served, any number of spare connections is no refusal.
    for _ in 0..5 {
        spare_connection(&s).await;
    }
    s.proxy.wait_events("tunnel", 8).await;
    let session = s.proxy.stop().await;
    assert!(session.events_of("client_rejected_ca").is_empty());
    let tunnels = session.events_of("tunnel");
    assert!(
        tunnels.iter().all(|t| t["mode"] == "intercept"),
        "{tunnels:?}"
    );
    // Intercepted CONNECT lines count the client side's bytes, as a tunnel's do: the one
    // that served a request carried the handshake and the exchange both ways.
    let served = tunnels
        .iter()
        .find(|t| t["bytes_down"].as_u64() > Some(1000))
        .unwrap_or_else(|| panic!("{tunnels:#?}"));
    assert!(served["bytes_up"].as_u64() > Some(200), "{served:#}");
    assert!(!session.summary["verdict"]
        .as_str()
        .unwrap()
        .contains("refused by the client"));
}

#[tokio::test]
async fn quiet_closes_in_a_row_where_nothing_was_served_are_a_refusal_of_that_port_only() {
    let s = setup(&[]).await;
    for _ in 0..3 {
        spare_connection(&s).await;
    }
    let rejected = s.proxy.wait_events("client_rejected_ca", 1).await;
    let detail = rejected[0]["detail"].as_str().unwrap();
    assert!(detail.contains("3 connections in a row"), "{detail}");
    assert_eq!(rejected[0]["passthrough"], true);
    // That host:port is tunnelled untouched now: the client sees the origin's certificate.
    let answer = https_through(
        s.proxy.addr,
        "chatgpt.com",
        s.origin.port(),
        &s.public.pem(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 "), "{answer}");
    let session = s.proxy.stop().await;
    assert!(session
        .events_of("tunnel")
        .iter()
        .any(|t| t["mode"] == "tunnel"));
    // The client's refusal of diagproxy's own CA is not the network's verdict.
    let verdict = session.summary["verdict"].as_str().unwrap();
    assert!(!verdict.contains("refused by the client"), "{verdict}");
}

#[tokio::test]
async fn intercept_all_with_a_constrained_ca_tunnels_what_the_ca_cannot_sign() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_dir, ca_pem) = local_ca(dir.path());
    let (outside, outside_pem) = tls_origin(&["example.test"]).await;
    let (inside, _) = tls_origin(&["chatgpt.com"]).await;
    let pins = [
        format!("example.test:{}:127.0.0.1", outside.port()),
        format!("chatgpt.com:{}:127.0.0.1", inside.port()),
    ];
    let proxy = Proxy::start(&[
        "--intercept",
        "all",
        "--ca-dir",
        ca_dir.to_str().unwrap(),
        "--resolve",
        &pins[0],
        "--resolve",
        &pins[1],
    ])
    .await;
    // The client trusts only the origin's own certificate: it works because the host the
    // constrained CA may not sign for is tunnelled untouched, not intercepted.
    let answer = https_through(proxy.addr, "example.test", outside.port(), &outside_pem).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // A profile host is still intercepted (the client sees diagproxy's CA).
    let tls = intercepted_tls(
        proxy.addr,
        "chatgpt.com",
        inside.port(),
        &ca_pem,
        &["http/1.1"],
    )
    .await;
    drop(tls);
    let tunnels = proxy.wait_events("tunnel", 1).await;
    let session = proxy.stop().await;
    assert_eq!(tunnels[0]["host"], "example.test");
    assert_eq!(tunnels[0]["mode"], "tunnel", "{:#}", tunnels[0]);
    assert!(session.events_of("client_rejected_ca").is_empty());
}

/// The intercepted tunnel to chatgpt.com in a finished session, with its failure.
fn the_tunnel(session: &Session, port: u16) -> serde_json::Value {
    let tunnels = session.events_of("tunnel");
    let tunnel = tunnels
        .iter()
        .find(|t| t["host"] == "chatgpt.com" && t["port"] == port && t["mode"] == "intercept")
        .unwrap_or_else(|| panic!("no intercepted tunnel recorded: {:#?}", session.events));
    (*tunnel).clone()
}

#[tokio::test]
async fn a_client_that_speaks_plaintext_inside_an_intercepted_connect_is_recorded() {
    let s = setup(&[]).await;
    let port = s.origin.port();
    let (mut stream, head) = raw_connect(s.proxy.addr, &format!("chatgpt.com:{port}"), "").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: chatgpt.com\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    s.proxy.wait_events("tunnel", 1).await;
    let session = s.proxy.stop().await;
    let tunnel = the_tunnel(&session, port);
    assert_eq!(tunnel["failure"]["kind"], "client_not_tls", "{tunnel}");
    assert_eq!(tunnel["failure"]["side"], "downstream", "{tunnel}");
    let detail = tunnel["failure"]["detail"].as_str().unwrap();
    assert!(detail.contains("GET / HTTP/1.1"), "{detail}");
    // The host is in the summary, and the client's doing is not the network failing.
    let host = session.host("chatgpt.com", port);
    assert_eq!(host["failures"]["client_not_tls"], 1, "{host}");
    assert!(
        !session.summary["verdict"]
            .as_str()
            .unwrap()
            .starts_with("No ChatGPT host went through"),
        "{}",
        session.summary["verdict"]
    );
}

#[tokio::test]
async fn a_broken_handshake_and_a_stalled_one_are_recorded_by_name() {
    let s = setup(&["--header-timeout", "1s"]).await;
    let port = s.origin.port();
    let target = format!("chatgpt.com:{port}");
    // A TLS record header, then garbage: rustls refuses it.
    let (mut broken, _) = raw_connect(s.proxy.addr, &target, "").await;
    broken
        .write_all(b"\x16\x03\x01\x00\x05hello-not-a-client-hello")
        .await
        .unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), broken.read_to_end(&mut sink)).await;
    // Nothing at all after the 200: the handshake times out.
    let (_stalled, _) = raw_connect(s.proxy.addr, &target, "").await;
    s.proxy.wait_events("tunnel", 2).await;
    let session = s.proxy.stop().await;
    let kinds: Vec<String> = session
        .events_of("tunnel")
        .iter()
        .map(|t| t["failure"]["kind"].as_str().unwrap_or("none").to_string())
        .collect();
    assert!(
        kinds.contains(&"client_handshake_failed".into()),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&"client_handshake_timeout".into()),
        "{kinds:?}"
    );
    let host = session.host("chatgpt.com", port);
    assert!(host["failures"]["client_handshake_timeout"] == 1, "{host}");
}

/// Every connection path records its host: the lean HTTP/1.1 forward, the hyper forward (an
/// `Expect` hands the request over), a failed tunnel, intercepted HTTP/1.1, HTTP/2 and a
/// WebSocket — each host:port is a row of summary.json.
#[tokio::test]
async fn every_connection_path_leaves_its_host_in_the_summary() {
    let s = setup(&[]).await;
    let plain = common::origin().await;
    let lean = get(&format!("http://{plain}/headers"));
    let reply = Client::connect(s.proxy.addr).await.send(lean).await;
    assert_eq!(reply.status, 200);
    // `Expect: 100-continue` is left to hyper's path.
    let expect = format!(
        "POST http://localhost:{}/echo HTTP/1.1\r\nHost: localhost:{}\r\nExpect: 100-continue\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
        plain.port(),
        plain.port()
    );
    let answer = raw_exchange(s.proxy.addr, expect.as_bytes()).await;
    assert!(answer.contains("HTTP/1.1 200"), "{answer}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (_, head) = raw_connect(s.proxy.addr, &format!("127.0.0.2:{closed}"), "").await;
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    let port = s.origin.port();
    let h1 = Request::get("/headers")
        .header("host", "chatgpt.com")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = intercepted_h1(s.proxy.addr, "chatgpt.com", port, &s.ca_pem, h1).await;
    drop(response.into_body().collect().await);
    let mut h2 = h2_client(&s).await;
    let url = format!("https://chatgpt.com:{port}/headers");
    let response = h2.send_request(get(&url)).await.unwrap();
    drop(response.into_body().collect().await);
    drop(h2);
    let ws = websocket_upgrade();
    let response = intercepted_h1(s.proxy.addr, "chatgpt.com", port, &s.ca_pem, ws).await;
    assert_eq!(response.status(), 101);
    drop(hyper::upgrade::on(response).await.unwrap());
    s.proxy.wait_events("request", 5).await;
    let session = s.proxy.stop().await;
    assert!(session.host("127.0.0.1", plain.port())["requests"].as_u64() >= Some(1));
    assert!(session.host("localhost", plain.port())["requests"].as_u64() >= Some(1));
    assert!(session.host("127.0.0.2", closed)["failures"]["connect_refused"] == 1);
    let chatgpt = session.host("chatgpt.com", port);
    assert!(
        chatgpt["requests"].as_u64() >= Some(3),
        "h1, h2 and the WebSocket: {chatgpt}"
    );
    let protocols: Vec<&str> = session
        .events_of("request")
        .iter()
        .filter(|r| r["host"] == "chatgpt.com")
        .filter_map(|r| {
            r["status"]
                .as_u64()
                .map(|_| r["url"].as_str().unwrap_or(""))
        })
        .collect();
    assert!(
        protocols.iter().any(|u| u.ends_with("/ws")),
        "{protocols:?}"
    );
}

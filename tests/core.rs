//! The core proxy through real sockets on loopback: forwarding, tunnels, every named
//! failure, corporate proxy chaining, authentication, malformed input and shutdown.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::Request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn forwards_get_and_post_and_strips_hop_by_hop_headers() {
    let origin = origin().await;
    let proxy = Proxy::start(&[]).await;
    let mut client = Client::connect(proxy.addr).await;

    let hello = client.get(&format!("http://{origin}/hello")).await;
    assert_eq!((hello.status, hello.text().as_str()), (200, "hello"));

    let post = Request::post(format!("http://{origin}/echo"))
        .body(Full::new(Bytes::from_static(b"a posted body")))
        .unwrap();
    assert_eq!(client.send(post).await.text(), "a posted body");

    let request = Request::get(format!("http://{origin}/headers?x=1"))
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "must go")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic c2VjcmV0OnNlY3JldA==")
        .header("x-end-to-end", "kept")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let seen = client.send(request).await.text();
    assert!(
        seen.starts_with("GET /headers?x=1 HTTP/1.1"),
        "origin-form expected upstream: {seen}"
    );
    assert!(seen.contains("x-end-to-end: kept"), "{seen}");
    for gone in [
        "x-hop",
        "keep-alive",
        "proxy-authorization",
        "connection: keep-alive, x-hop",
    ] {
        assert!(
            !seen.to_ascii_lowercase().contains(gone),
            "{gone} was forwarded: {seen}"
        );
    }

    let session = proxy.stop().await;
    let host = session.host("127.0.0.1", origin.port());
    assert_eq!(host["requests"], 3);
    assert_eq!(host["allowlist"], serde_json::Value::Null);
    let requests = session.events_of("request");
    assert_eq!(requests[1]["method"], "POST");
    assert_eq!(requests[1]["bytes_up"], 13);
    assert_eq!(requests[0]["status"], 200);
    assert_eq!(requests[0]["complete"], true);
}

#[tokio::test]
async fn streams_a_50_mb_chunked_upload_and_a_large_download() {
    let origin = origin().await;
    let proxy = Proxy::start(&[]).await;
    let mut client = Client::connect(proxy.addr).await;

    let size: u64 = 50 * 1024 * 1024;
    // Zeros has no length: hyper sends it chunked, and so must diagproxy.
    let upload = Request::post(format!("http://{origin}/count"))
        .body(Zeros::new(size))
        .unwrap();
    let reply = client.send(upload).await;
    assert_eq!(reply.text(), size.to_string());

    let download = client
        .get(&format!("http://{origin}/big?n={}", 20 * 1024 * 1024))
        .await;
    assert_eq!(download.body.len(), 20 * 1024 * 1024);
    assert_eq!(download.header("content-length"), Some("20971520"));

    let session = proxy.stop().await;
    let requests = session.events_of("request");
    assert_eq!(requests[0]["bytes_up"], size);
    assert_eq!(requests[1]["bytes_down"], 20 * 1024 * 1024);
}

#[tokio::test]
async fn keep_alive_reuses_the_upstream_connection() {
    let origin = origin().await;
    let proxy = Proxy::start(&[]).await;
    let mut client = Client::connect(proxy.addr).await;
    let first = client.get(&format!("http://{origin}/peer")).await.text();
    let second = client.get(&format!("http://{origin}/peer")).await.text();
    assert_eq!(
        first, second,
        "the second request should reuse the pooled upstream connection"
    );
    let session = proxy.stop().await;
    let requests = session.events_of("request");
    assert_eq!(requests[0]["reused"], false);
    assert_eq!(requests[1]["reused"], true);
    assert!(requests[1]["timings"]["connect_ms"].is_null());
    assert_eq!(session.host("127.0.0.1", origin.port())["connections"], 1);
}

#[tokio::test]
async fn head_and_expect_continue_behave() {
    let origin = origin().await;
    let proxy = Proxy::start(&[]).await;
    let head = Request::head(format!("http://{origin}/big?n=1000"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reply = Client::connect(proxy.addr).await.send(head).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-length"), Some("1000"));
    assert!(reply.body.is_empty());

    let raw = format!(
        "POST http://{origin}/echo HTTP/1.1\r\nHost: {origin}\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
    );
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    stream.write_all(raw.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 64];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100 Continue"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    stream.write_all(b"hello").await.unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.unwrap();
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.contains("200 OK") && rest.ends_with("hello"), "{rest}");

    let session = proxy.stop().await;
    assert!(session
        .events_of("request")
        .iter()
        .all(|r| r["complete"] == true));
}

#[tokio::test]
async fn connect_tunnels_tls_and_records_sni_and_alpn() {
    let (tls, cert) = tls_origin(&["chatgpt.com", "files.oaiusercontent.com"]).await;
    let pin = format!("chatgpt.com:{}:127.0.0.1", tls.port());
    let proxy = Proxy::start(&["--resolve", &pin]).await;

    // By name, pinned with --resolve.
    let (stream, head) = raw_connect(proxy.addr, &format!("chatgpt.com:{}", tls.port()), "").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut tls_stream = tls_client(stream, "chatgpt.com", &cert, &["h2", "http/1.1"]).await;
    tls_stream
        .write_all(b"GET / HTTP/1.1\r\nHost: chatgpt.com\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tls_stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.ends_with("hello over tls"), "{answer}");
    drop(tls_stream);

    // By IP, with a name inside the ClientHello.
    let (stream, head) = raw_connect(proxy.addr, &tls.to_string(), "").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut tls_stream = tls_client(stream, "files.oaiusercontent.com", &cert, &["http/1.1"]).await;
    tls_stream
        .write_all(
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Diagproxy-Token: test-live-token-0000\r\n\r\n",
        )
        .await
        .unwrap();
    let mut answer = String::new();
    tls_stream.read_to_string(&mut answer).await.unwrap();
    drop(tls_stream);

    proxy.wait_events("tunnel", 2).await;
    let session = proxy.stop().await;
    let tunnels = session.events_of("tunnel");
    let by_name = tunnels
        .iter()
        .find(|t| t["host"] == "chatgpt.com")
        .expect("tunnel by name");
    assert_eq!(by_name["sni"], "chatgpt.com");
    assert_eq!(by_name["alpn"], serde_json::json!(["h2", "http/1.1"]));
    assert_eq!(by_name["payload"], "tls");
    assert_eq!(by_name["allowlist"], "*.chatgpt.com");
    assert_eq!(by_name["server_ip"], "127.0.0.1");
    assert_eq!(by_name["downstream"]["user_agent"], "diagproxy-test/1");
    assert!(
        by_name["bytes_up"].as_u64().unwrap() > 100
            && by_name["bytes_down"].as_u64().unwrap() > 100
    );
    assert!(by_name["timings"]["connect_ms"].as_f64().is_some());
    assert!(
        by_name["timings"]["wait_ms"].as_f64().is_some(),
        "time to first upstream byte"
    );
    assert!(
        by_name["timings"]["dns_ms"].is_null(),
        "a --resolve pin makes no lookup"
    );
    assert!(
        by_name["end"] == "upstream_closed" || by_name["end"] == "downstream_closed",
        "{}",
        by_name["end"]
    );

    let by_ip = tunnels
        .iter()
        .find(|t| t["host"] == "127.0.0.1")
        .expect("tunnel by IP");
    assert_eq!(by_ip["sni"], "files.oaiusercontent.com");
    assert_eq!(by_ip["alpn"], serde_json::json!(["http/1.1"]));

    let chatgpt = session.host("chatgpt.com", tls.port());
    assert_eq!(chatgpt["connections"], 1);
    assert_eq!(chatgpt["allowlist"], "*.chatgpt.com");
    let files = session.host("files.oaiusercontent.com", tls.port());
    assert_eq!(files["allowlist"], "files.oaiusercontent.com");
    let touched = &session.summary["allowlist"]["touched"];
    assert!(
        touched
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "*.chatgpt.com"),
        "{touched}"
    );
}

#[tokio::test]
async fn tunnel_honours_half_close() {
    let echo = echo_server().await;
    let proxy = Proxy::start(&[]).await;
    let (mut stream, head) = raw_connect(proxy.addr, &echo.to_string(), "").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    stream.write_all(b"ping").await.unwrap();
    stream.shutdown().await.unwrap(); // half-close: we can still read
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    assert_eq!(answer, b"pingbye");
    let tunnels = proxy.wait_events("tunnel", 1).await;
    assert_eq!(tunnels[0]["end"], "downstream_closed");
    assert_eq!(tunnels[0]["payload"], "not_tls");
    assert_eq!(tunnels[0]["first_bytes"], "ping");
    assert_eq!(
        (
            tunnels[0]["bytes_up"].as_u64(),
            tunnels[0]["bytes_down"].as_u64()
        ),
        (Some(4), Some(7))
    );
    proxy.stop().await;
}

/// 8 MiB each way at once: past the first bytes the relay splices bulk transfer (Linux), so
/// this checks that path end to end — every byte in order, half-close, and the counts.
#[tokio::test]
async fn bulk_tunnel_moves_every_byte_intact_both_ways() {
    bulk_both_ways(&[]).await;
}

/// The same through the corporate proxy: the tunnel it opens is spliced too.
#[tokio::test]
async fn bulk_tunnel_through_the_corporate_proxy_is_intact() {
    let (corp, log) = corporate_proxy(CorpMode::Allow).await;
    let upstream = format!("http://{corp}");
    bulk_both_ways(&["--upstream-proxy", &upstream]).await;
    let seen = log.lock().unwrap().clone();
    assert!(
        seen.iter().any(|l| l.starts_with("CONNECT 127.0.0.1:")),
        "{seen:?}"
    );
}

async fn bulk_both_ways(proxy_args: &[&str]) {
    const SIZE: usize = 8 << 20;
    let pattern = |seed: u64| -> Vec<u8> {
        let mut x = seed;
        (0..SIZE)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    // The upstream sends its own 8 MiB while it reads ours, then the SHA-256 of what it got.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let down_data = pattern(7);
    let sent_down = down_data.clone();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (mut read, mut write) = stream.into_split();
        let sender = tokio::spawn(async move {
            write.write_all(&sent_down).await.unwrap();
            write
        });
        let mut got = Vec::new();
        read.read_to_end(&mut got).await.unwrap();
        let mut write = sender.await.unwrap();
        let digest = ring::digest::digest(&ring::digest::SHA256, &got);
        write.write_all(digest.as_ref()).await.unwrap();
        write.shutdown().await.unwrap();
    });
    let proxy = Proxy::start(proxy_args).await;
    let (stream, head) = raw_connect(proxy.addr, &upstream.to_string(), "").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let up_data = pattern(11);
    let (mut read, mut write) = stream.into_split();
    let to_send = up_data.clone();
    let sender = tokio::spawn(async move {
        write.write_all(&to_send).await.unwrap();
        write.shutdown().await.unwrap(); // half-close; the answer still comes back
    });
    let mut received = Vec::new();
    read.read_to_end(&mut received).await.unwrap();
    sender.await.unwrap();
    assert_eq!(received.len(), SIZE + 32);
    assert!(received[..SIZE] == down_data[..], "downstream bytes differ");
    let sent_digest = ring::digest::digest(&ring::digest::SHA256, &up_data);
    assert_eq!(
        &received[SIZE..],
        sent_digest.as_ref(),
        "upstream got other bytes"
    );
    let tunnels = proxy.wait_events("tunnel", 1).await;
    assert_eq!(tunnels[0]["bytes_up"].as_u64(), Some(SIZE as u64));
    assert_eq!(tunnels[0]["bytes_down"].as_u64(), Some(SIZE as u64 + 32));
    assert_eq!(tunnels[0]["end"], "downstream_closed");
    proxy.stop().await;
}

#[tokio::test]
async fn idle_tunnels_are_closed_and_recorded() {
    let silent = silent_server().await;
    let proxy = Proxy::start(&["--idle-timeout", "200ms"]).await;
    let (mut stream, head) = raw_connect(proxy.addr, &silent.to_string(), "").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the tunnel should have been closed after 200ms idle"
    );
    let tunnels = proxy.wait_events("tunnel", 1).await;
    assert_eq!(tunnels[0]["end"], "idle_timeout");
    proxy.stop().await;
}

/// Every failure kind, produced for real, in the downstream's answer and in summary.json.
#[tokio::test]
async fn every_failure_kind_is_named() {
    let reset = resetting_server().await;
    let silent = silent_server().await;
    let (unanswering, _fillers, _listener) = unanswering_listener();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    }; // dropped: nothing listens there now
    let proxy = Proxy::start(&["--connect-timeout", "300ms", "--response-timeout", "500ms"]).await;

    let (_, dns) = raw_connect(proxy.addr, "files.oaiusercontent.invalid:443", "").await;
    assert!(dns.starts_with("HTTP/1.1 502"), "{dns}");
    assert!(dns.contains("x-diagproxy-error: dns_failed"), "{dns}");
    assert!(
        dns.contains("files.oaiusercontent.invalid:443") && dns.contains("check:"),
        "{dns}"
    );

    let (_, refused) = raw_connect(proxy.addr, &closed.to_string(), "").await;
    assert!(
        refused.starts_with("HTTP/1.1 502")
            && refused.contains("x-diagproxy-error: connect_refused"),
        "{refused}"
    );

    let (_, timed_out) = raw_connect(proxy.addr, &unanswering.to_string(), "").await;
    assert!(
        timed_out.starts_with("HTTP/1.1 504")
            && timed_out.contains("x-diagproxy-error: connect_timeout"),
        "{timed_out}"
    );

    let reply = get(proxy.addr, &format!("http://{reset}/")).await;
    assert_eq!(
        (reply.status, reply.header("x-diagproxy-error")),
        (502, Some("reset")),
        "{}",
        reply.text()
    );

    let reply = get(proxy.addr, &format!("http://{silent}/")).await;
    assert_eq!(
        (reply.status, reply.header("x-diagproxy-error")),
        (504, Some("timeout")),
        "{}",
        reply.text()
    );
    assert!(
        reply.text().contains("no response head within"),
        "{}",
        reply.text()
    );

    let session = proxy.stop().await;
    let failures = |host: &str, port: u16| session.host(host, port)["failures"].clone();
    assert_eq!(
        failures("files.oaiusercontent.invalid", 443)["dns_failed"],
        1
    );
    assert_eq!(failures("127.0.0.1", closed.port())["connect_refused"], 1);
    assert_eq!(
        failures("127.0.0.1", unanswering.port())["connect_timeout"],
        1
    );
    assert_eq!(failures("127.0.0.1", reset.port())["reset"], 1);
    assert_eq!(failures("127.0.0.1", silent.port())["timeout"], 1);
    let dns_host = session.host("files.oaiusercontent.invalid", 443);
    assert_eq!(dns_host["findings"][0]["kind"], "dns_failed");
}

#[tokio::test]
async fn tunnels_and_requests_chain_through_the_corporate_proxy() {
    let (tls, cert) = tls_origin(&["chatgpt.com"]).await;
    let (corp, log) = corporate_proxy(CorpMode::RequireAuth).await;
    let upstream = format!("http://user:pass@{corp}");
    let proxy = Proxy::start(&["--upstream-proxy", &upstream]).await;

    let (stream, head) = raw_connect(proxy.addr, &format!("chatgpt.com:{}", tls.port()), "").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut tls_stream = tls_client(stream, "chatgpt.com", &cert, &["http/1.1"]).await;
    tls_stream
        .write_all(b"GET / HTTP/1.1\r\nHost: chatgpt.com\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tls_stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.ends_with("hello over tls"), "{answer}");
    drop(tls_stream);

    let reply = get(proxy.addr, "http://chat.openai.com/backend-api/x").await;
    assert_eq!(
        reply.text(),
        "corp proxy forwarded http://chat.openai.com/backend-api/x",
        "absolute-form to the corporate proxy"
    );

    let seen = log.lock().unwrap().clone();
    assert!(
        seen.contains(&format!(
            "CONNECT chatgpt.com:{} auth=Basic dXNlcjpwYXNz",
            tls.port()
        )),
        "{seen:?}"
    );
    assert!(
        seen.contains(
            &"GET http://chat.openai.com/backend-api/x auth=Basic dXNlcjpwYXNz".to_string()
        ),
        "{seen:?}"
    );

    proxy.wait_events("tunnel", 1).await;
    let session = proxy.stop().await;
    assert_eq!(
        session.summary["session"]["upstream_proxy"],
        format!("http://***@{corp}")
    );
    let tunnel = &session.events_of("tunnel")[0];
    assert!(tunnel["timings"]["proxy_connect_ms"].as_f64().is_some());
    assert_eq!(tunnel["sni"], "chatgpt.com");
}

#[tokio::test]
async fn corporate_proxy_407_and_block_page_are_reported() {
    let (auth_corp, _) = corporate_proxy(CorpMode::RequireAuth).await;
    let no_creds = format!("http://{auth_corp}");
    let proxy = Proxy::start(&["--upstream-proxy", &no_creds]).await;
    let (_, head) = raw_connect(proxy.addr, "chatgpt.com:443", "").await;
    assert!(
        head.starts_with("HTTP/1.1 502") && head.contains("x-diagproxy-error: upstream_proxy_auth"),
        "{head}"
    );
    assert!(
        head.contains("Basic realm=\"corp\""),
        "the proxy's challenge is shown: {head}"
    );
    let reply = get(proxy.addr, "http://chatgpt.com/").await;
    assert_eq!(
        (reply.status, reply.header("x-diagproxy-error")),
        (502, Some("upstream_proxy_auth"))
    );
    let session = proxy.stop().await;
    assert_eq!(
        session.host("chatgpt.com", 443)["failures"]["upstream_proxy_auth"],
        1
    );
    assert_eq!(
        session.host("chatgpt.com", 80)["failures"]["upstream_proxy_auth"],
        1
    );

    let (block_corp, _) = corporate_proxy(CorpMode::Block).await;
    let blocking = format!("http://{block_corp}");
    let proxy = Proxy::start(&["--upstream-proxy", &blocking]).await;
    let (_, head) = raw_connect(proxy.addr, "files.oaiusercontent.com:443", "").await;
    assert!(
        head.starts_with("HTTP/1.1 502")
            && head.contains("x-diagproxy-error: upstream_proxy_refused"),
        "{head}"
    );
    assert!(
        head.contains("FortiGuard Intrusion Prevention - Access Blocked"),
        "block page body kept: {head}"
    );
    let session = proxy.stop().await;
    let host = session.host("files.oaiusercontent.com", 443);
    assert_eq!(host["failures"]["upstream_proxy_refused"], 1);
    let tunnel = &session.events_of("tunnel")[0];
    assert_eq!(tunnel["failure"]["proxy_status"], 403);
    assert!(tunnel["failure"]["proxy_body"]
        .as_str()
        .unwrap()
        .contains("Web Filter Violation"));
    assert_eq!(tunnel["failure"]["side"], "upstream_proxy");
    assert_eq!(
        session.summary["allowlist"]["failing"],
        serde_json::json!(["files.oaiusercontent.com"])
    );
}

#[tokio::test]
async fn proxy_auth_is_required_when_configured() {
    let origin = origin().await;
    let proxy = Proxy::start(&["--proxy-auth", "me:secret"]).await;
    let denied = get(proxy.addr, &format!("http://{origin}/hello")).await;
    assert_eq!(denied.status, 407);
    assert_eq!(
        denied.header("proxy-authenticate"),
        Some("Basic realm=\"diagproxy\"")
    );
    let (_, head) = raw_connect(proxy.addr, &origin.to_string(), "").await;
    assert!(head.starts_with("HTTP/1.1 407"), "{head}");
    let (_, head) = raw_connect(
        proxy.addr,
        &origin.to_string(),
        "Proxy-Authorization: Basic bWU6c2VjcmV0\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let allowed = Request::get(format!("http://{origin}/headers"))
        .header("proxy-authorization", "Basic bWU6c2VjcmV0")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reply = Client::connect(proxy.addr).await.send(allowed).await;
    assert_eq!(reply.status, 200);
    assert!(
        !reply.text().contains("proxy-authorization"),
        "our credentials are never forwarded"
    );
    // The proxy's own pages want the same credentials, as a web server would ask (401).
    let page = raw_exchange(
        proxy.addr,
        b"GET /summary.json HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Diagproxy-Token: test-live-token-0000\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        page.starts_with("HTTP/1.1 401")
            && page.contains("www-authenticate: Basic realm=\"diagproxy\""),
        "{page}"
    );
    let page = raw_exchange(proxy.addr, b"GET /summary.json HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Diagproxy-Token: test-live-token-0000\r\nAuthorization: Basic bWU6c2VjcmV0\r\nConnection: close\r\n\r\n").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    let session = proxy.stop().await;
    assert_eq!(session.summary["refused"], 3);
}

#[tokio::test]
async fn malformed_requests_get_400_naming_the_problem() {
    let proxy = Proxy::start(&[]).await;
    let garbage = raw_exchange(proxy.addr, b"THIS IS NOT HTTP\r\n\r\n").await;
    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage}");

    let no_port = raw_exchange(
        proxy.addr,
        b"CONNECT chatgpt.com HTTP/1.1\r\nHost: chatgpt.com\r\n\r\n",
    )
    .await;
    assert!(no_port.starts_with("HTTP/1.1 400"), "{no_port}");
    assert!(
        no_port.contains("CONNECT needs a host:port target"),
        "{no_port}"
    );

    let https = raw_exchange(
        proxy.addr,
        b"GET https://chatgpt.com/ HTTP/1.1\r\nHost: chatgpt.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        https.starts_with("HTTP/1.1 400") && https.contains("send https through CONNECT"),
        "{https}"
    );

    let session = proxy.stop().await;
    let refused = session.events_of("refused");
    assert_eq!(refused.len(), 2);
    assert!(refused.iter().all(|r| r["status"] == 400));
}

#[tokio::test]
async fn requests_to_the_proxy_itself_are_loops_and_pages_are_served() {
    let proxy = Proxy::start(&[]).await;
    let looped = get(proxy.addr, &format!("http://{}/", proxy.addr)).await;
    assert_eq!(looped.status, 508);
    let (_, head) = raw_connect(proxy.addr, &format!("localhost:{}", proxy.addr.port()), "").await;
    assert!(head.starts_with("HTTP/1.1 508"), "{head}");

    let page = raw_exchange(
        proxy.addr,
        b"GET /summary.json HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Diagproxy-Token: test-live-token-0000\r\nConnection: close\r\n\r\n",
    )
    .await;
    let json = &page[page.find("\r\n\r\n").unwrap() + 4..];
    let summary: serde_json::Value = serde_json::from_str(json).expect("live summary.json");
    assert_eq!(summary["version"], 1);
    assert!(summary["session"]["ended_at"].is_null(), "still running");

    let pac = raw_exchange(
        proxy.addr,
        b"GET /proxy.pac HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Diagproxy-Token: test-live-token-0000\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(pac.contains("application/x-ns-proxy-autoconfig"), "{pac}");
    assert!(pac.contains(&format!("PROXY {}", proxy.addr)), "{pac}");
    assert!(pac.contains("dnsDomainIs(host, \".chatgpt.com\")"), "{pac}");

    let status = raw_exchange(
        proxy.addr,
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Diagproxy-Token: test-live-token-0000\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(status.contains("<h1>diagproxy"), "{status}");
    assert!(
        status.contains(&format!("{}:{}", "127.0.0.1", proxy.addr.port()))
            || status.contains("No traffic yet"),
        "{status}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn shutdown_waits_for_open_tunnels_then_writes_the_summary() {
    let echo = echo_server().await;
    let proxy = Proxy::start(&["--grace", "300ms"]).await;
    let (mut stream, head) = raw_connect(proxy.addr, &echo.to_string(), "").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    stream.write_all(b"still open").await.unwrap();
    let mut buf = [0u8; 10];
    stream.read_exact(&mut buf).await.unwrap();
    // The tunnel stays open: it relays for most of the grace period, then is recorded as
    // still open, so nothing is left unfinished.
    let session = proxy.stop().await;
    assert!(session.outcome.drained);
    assert!(session.summary["session"]["ended_at"].is_string());
    let ended = session.events_of("session_ended");
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0]["unfinished"], 0);
    let tunnel = session.events_of("tunnel");
    assert_eq!(tunnel.len(), 1);
    assert_eq!(tunnel[0]["end"], "open_at_shutdown");
    assert_eq!(tunnel[0]["bytes_up"], 10);
    assert_eq!(tunnel[0]["bytes_down"], 10);
    assert_eq!(session.events.first().unwrap()["type"], "session_started");
}

#[tokio::test]
async fn a_connect_by_ip_is_filed_under_the_name_its_client_hello_asked_for() {
    let (origin, _) = tls_origin(&["chatgpt.com"]).await;
    let proxy = Proxy::start(&[]).await;
    // The handshake fails (the client trusts no root); the tunnel still saw the SNI.
    hello_through(proxy.addr, &origin.to_string(), "chatgpt.com").await;
    let tunnels = proxy.wait_events("tunnel", 1).await;
    let session = proxy.stop().await;
    assert_eq!(tunnels[0]["host"], "127.0.0.1");
    assert_eq!(tunnels[0]["sni"], "chatgpt.com");
    assert_eq!(tunnels[0]["allowlist"], "*.chatgpt.com");
    let row = session.host("chatgpt.com", origin.port());
    assert_eq!(row["allowlist"], "*.chatgpt.com");
}

#[tokio::test]
async fn a_request_still_waiting_when_the_session_ends_is_recorded() {
    let silent = silent_server().await;
    let proxy = Proxy::start(&["--grace", "300ms", "--response-timeout", "60s"]).await;
    let url = format!("http://{silent}/slow");
    let waiting = tokio::spawn({
        let addr = proxy.addr;
        let url = url.clone();
        async move { get(addr, &url).await }
    });
    // Poll the status page until the request is open (no sleeping on a guess).
    let status = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Diagproxy-Token: test-live-token-0000\r\nConnection: close\r\n\r\n";
    let mut open = String::new();
    for _ in 0..200 {
        open = raw_exchange(proxy.addr, status).await;
        if open.contains(" 1 open now") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(open.contains(" 1 open now"), "{open}");
    let session = proxy.stop().await;
    waiting.abort();
    let requests = session.events_of("request");
    let event = requests
        .iter()
        .find(|e| e["url"] == url.as_str())
        .unwrap_or_else(|| panic!("the waiting request was lost: {requests:#?}"));
    assert!(event["status"].is_null());
    assert_eq!(event["complete"], false);
    let why = event["unfinished"].as_str().unwrap();
    assert!(
        why.starts_with("still waiting for the answer when the session ended, after"),
        "{why}"
    );
}

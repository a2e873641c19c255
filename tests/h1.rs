//! The lean HTTP/1.1 forward path (`proxy::h1`): what it sends the origin and the client,
//! byte for byte, and how it follows each kind of answer framing.

mod common;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `request` on a new connection to the proxy and reads until the proxy closes.
async fn exchange_until_close(proxy: std::net::SocketAddr, request: &str) -> String {
    raw_exchange(proxy, request.as_bytes()).await
}

/// One GET through a new proxy to an origin that sends `reply` and closes: what the client
/// read, and the request's event.
async fn one_answer_then_close(reply: &'static str) -> (String, serde_json::Value) {
    let (origin, _) = scripted_origin(vec![(reply, true)]).await;
    let proxy = Proxy::start(&[]).await;
    let request = format!("GET http://{origin}/ HTTP/1.1\r\n\r\n");
    let answer = exchange_until_close(proxy.addr, &request).await;
    let session = proxy.stop().await;
    let event = session.events_of("request")[0].clone();
    (answer, event)
}

#[tokio::test]
async fn header_case_and_order_are_kept_and_hop_by_hop_headers_dropped() {
    let (origin, received) = scripted_origin(vec![(
        "HTTP/1.1 200 OK\r\nX-Reply-Case: R\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok",
        false,
    )])
    .await;
    let proxy = Proxy::start(&[]).await;
    let answer = exchange_until_close(
        proxy.addr,
        &format!(
            "GET http://{origin}/x?q=1 HTTP/1.1\r\nHost: {origin}\r\nX-Mixed-Case: A\r\n\
             Proxy-Connection: keep-alive\r\nConnection: X-Hop, close\r\nX-Hop: 1\r\n\
             x-lower: b\r\n\r\n"
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("X-Reply-Case: R\r\n"), "{answer}");
    assert!(
        !answer.to_ascii_lowercase().contains("keep-alive"),
        "{answer}"
    );
    assert!(answer.ends_with("\r\n\r\nok"), "{answer}");
    assert_eq!(
        received.lock().unwrap()[0],
        format!(
            "GET /x?q=1 HTTP/1.1\r\nHost: {origin}\r\nVia: {}\r\nX-Mixed-Case: A\r\nx-lower: b\r\n\r\n",
            diagproxy::upstream::route::via()
        )
    );
    let session = proxy.stop().await;
    let request = &session.events_of("request")[0];
    assert_eq!(request["status"], 200);
    assert_eq!(request["complete"], true);
    assert_eq!(request["bytes_down"], 2);
    assert_eq!(request["url"], format!("http://{origin}/x?q=1"));
}

#[tokio::test]
async fn chunked_answers_pass_through_and_the_connection_is_kept() {
    const CHUNKED: &str = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\
        Content-Type: text/plain\r\n\r\n5\r\nhello\r\n6;ext\r\n world\r\n0\r\nX-T: 1\r\n\r\n";
    let (origin, received) = scripted_origin(vec![(CHUNKED, false), (CHUNKED, false)]).await;
    let proxy = Proxy::start(&[]).await;
    let mut client = Client::connect(proxy.addr).await;
    for _ in 0..2 {
        let reply = client.get(&format!("http://{origin}/chunks")).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), "hello world");
    }
    assert_eq!(received.lock().unwrap().len(), 2);
    let session = proxy.stop().await;
    let requests = session.events_of("request");
    for request in &requests {
        assert_eq!(request["complete"], true, "{request}");
        assert_eq!(
            request["bytes_down"], 11,
            "payload bytes, not chunk framing"
        );
    }
    assert_eq!(requests[1]["reused"], true);
    assert_eq!(session.host("127.0.0.1", origin.port())["connections"], 1);
}

#[tokio::test]
async fn an_upstream_connection_closed_while_idle_is_replaced() {
    // The origin closes after each answer without saying so: the kept connection is dead
    // when the second request comes, which must still be answered.
    let ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let (origin, received) = scripted_origin(vec![(ok, true), (ok, true)]).await;
    let proxy = Proxy::start(&[]).await;
    let mut client = Client::connect(proxy.addr).await;
    for _ in 0..2 {
        let reply = client.get(&format!("http://{origin}/again")).await;
        assert_eq!((reply.status, reply.text().as_str()), (200, "ok"));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(received.lock().unwrap().len(), 2);
    let session = proxy.stop().await;
    let requests = session.events_of("request");
    assert!(
        requests.iter().all(|r| r["failure"].is_null()),
        "{requests:?}"
    );
    assert_eq!(requests[1]["reused"], false, "answered on a new connection");
}

#[tokio::test]
async fn a_post_on_a_connection_closed_while_idle_is_not_sent_twice() {
    // RFC 9110 §9.2.2: only idempotent requests are repeated on a new connection; a POST
    // may have been acted on, so it fails with the origin named instead.
    let ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let (origin, received) = scripted_origin(vec![(ok, true), (ok, true)]).await;
    let proxy = Proxy::start(&[]).await;
    let mut client = Client::connect(proxy.addr).await;
    let reply = client.get(&format!("http://{origin}/first")).await;
    assert_eq!(reply.status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let post = hyper::Request::post(format!("http://{origin}/order"))
        .header("content-length", "0")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let reply = client.send(post).await;
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert_eq!(
        received.lock().unwrap().len(),
        1,
        "the POST reached the origin once at most"
    );
    let session = proxy.stop().await;
    let requests = session.events_of("request");
    assert_eq!(requests[1]["method"], "POST");
    assert_eq!(
        requests[1]["failure"]["kind"], "http_error",
        "{:?}",
        requests[1]
    );
}

#[tokio::test]
async fn an_answer_delimited_by_close_is_relayed_whole() {
    let (answer, request) =
        one_answer_then_close("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end")
            .await;
    assert!(answer.contains("Connection: close\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nuntil the end"), "{answer}");
    assert_eq!(request["complete"], true);
    assert_eq!(request["bytes_down"], 13);
}

#[tokio::test]
async fn an_answer_cut_short_is_recorded_as_the_origins_failure() {
    let (answer, request) = one_answer_then_close(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nonly 13 bytes",
    )
    .await;
    assert!(answer.ends_with("only 13 bytes"), "{answer}");
    assert_eq!(request["complete"], false);
    assert_eq!(request["failure"]["kind"], "http_error");
    assert_eq!(request["failure"]["side"], "upstream");
    let detail = request["failure"]["detail"].as_str().unwrap();
    assert!(detail.contains("after 13 body bytes"), "{detail}");
}

#[tokio::test]
async fn a_garbled_answer_gets_a_502_naming_it() {
    let (origin, _) = scripted_origin(vec![("SMTP ready\r\n\r\n", true)]).await;
    let proxy = Proxy::start(&[]).await;
    let reply = get(proxy.addr, &format!("http://{origin}/")).await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.header("x-diagproxy-error"), Some("http_error"));
    assert!(
        reply.text().contains("not valid HTTP/1.1"),
        "{}",
        reply.text()
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_connect_after_a_forwarded_request_on_one_connection_still_tunnels() {
    let (origin, _) = scripted_origin(vec![(
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        false,
    )])
    .await;
    let echo = echo_server().await;
    let proxy = Proxy::start(&[]).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let get = format!("GET http://{origin}/ HTTP/1.1\r\nHost: {origin}\r\n\r\n");
    stream.write_all(get.as_bytes()).await.unwrap();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut ok = [0u8; 2];
    stream.read_exact(&mut ok).await.unwrap();
    assert_eq!(&ok, b"ok");
    let connect = format!("CONNECT {echo} HTTP/1.1\r\nHost: {echo}\r\n\r\n");
    stream.write_all(connect.as_bytes()).await.unwrap();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    stream.write_all(b"ping").await.unwrap();
    let mut pong = [0u8; 4];
    stream.read_exact(&mut pong).await.unwrap();
    assert_eq!(&pong, b"ping");
    drop(stream);
    let session = proxy.stop().await;
    assert_eq!(session.events_of("request").len(), 1);
    assert_eq!(session.events_of("tunnel").len(), 1);
}

#[tokio::test]
async fn idle_client_connections_do_not_hold_up_the_end_of_the_session() {
    let (origin, _) = scripted_origin(vec![(
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        false,
    )])
    .await;
    let proxy = Proxy::start(&["--grace", "2s"]).await;
    // One connection that never sent a byte, one idle after a keep-alive exchange.
    let silent = TcpStream::connect(proxy.addr).await.unwrap();
    let mut client = Client::connect(proxy.addr).await;
    assert_eq!(client.get(&format!("http://{origin}/")).await.text(), "ok");
    let session = proxy.stop().await;
    assert!(session.outcome.drained, "idle connections were waited for");
    drop(silent);
}

#[tokio::test]
async fn a_large_upload_with_a_length_streams_through_and_is_counted() {
    let origin = origin().await;
    let proxy = Proxy::start(&[]).await;
    let size = 8 * 1024 * 1024;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let head = format!(
        "POST http://{origin}/count HTTP/1.1\r\nHost: {origin}\r\nContent-Length: {size}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let body = vec![7u8; 64 * 1024];
    for _ in 0..size / body.len() {
        stream.write_all(&body).await.unwrap();
    }
    let answer = read_head(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let mut count = vec![0u8; content_length_of(&answer)];
    stream.read_exact(&mut count).await.unwrap();
    assert_eq!(String::from_utf8(count).unwrap(), size.to_string());
    drop(stream);
    let session = proxy.stop().await;
    assert_eq!(session.events_of("request")[0]["bytes_up"], size);
}

#[tokio::test]
async fn a_head_that_arrives_four_bytes_at_a_time_is_forwarded_whole() {
    let origin = origin().await;
    let proxy = Proxy::start(&[]).await;
    let filler = "x".repeat(4000);
    let request = format!(
        "GET http://{origin}/headers HTTP/1.1\r\nX-Filler: {filler}\r\nConnection: close\r\n\r\n"
    );
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    for piece in request.as_bytes().chunks(4) {
        stream.write_all(piece).await.unwrap();
    }
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains(&filler),
        "the whole head reached the origin"
    );
    proxy.stop().await;
}

/// An origin that answers each request on a connection with `len` bytes framed by
/// Content-Length (a byte pattern that shows any byte out of place); a request for `/cut`
/// gets a third of them, then the close.
async fn long_body_origin(len: usize) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
                loop {
                    let head = read_head(&mut stream).await;
                    if head.is_empty() {
                        return;
                    }
                    let cut = head.starts_with("GET /cut ");
                    let reply = format!("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\n\r\n");
                    let _ = stream.write_all(reply.as_bytes()).await;
                    let sent = if cut { len / 3 } else { len };
                    if stream.write_all(&body[..sent]).await.is_err() || cut {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Reads an answer's head and then exactly `len` body bytes.
async fn read_answer(stream: &mut TcpStream, len: usize) -> (String, Vec<u8>) {
    let head = read_head(stream).await;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await.unwrap();
    (head, body)
}

#[tokio::test]
async fn a_long_content_length_body_moves_exactly_and_the_connection_is_kept() {
    // Past the detectors' 64 KiB and the splice threshold: on Linux the rest is spliced.
    let len = 3 * 1024 * 1024 + 17;
    let origin = long_body_origin(len).await;
    let proxy = Proxy::start(&[]).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    let expected: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    for path in ["/one", "/two"] {
        let ask = format!("GET http://{origin}{path} HTTP/1.1\r\nHost: {origin}\r\n\r\n");
        client.write_all(ask.as_bytes()).await.unwrap();
        let (head, body) = read_answer(&mut client, len).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(body == expected, "the body byte for byte ({path})");
    }
    // Cut by the origin a third of the way: the client's connection closes, the event says so.
    let ask = format!("GET http://{origin}/cut HTTP/1.1\r\nHost: {origin}\r\n\r\n");
    let mut cut = TcpStream::connect(proxy.addr).await.unwrap();
    cut.write_all(ask.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let _ = cut.read_to_end(&mut got).await;
    let session = proxy.stop().await;
    let requests = session.events_of("request");
    let of = |path: &str| {
        requests
            .iter()
            .find(|r| r["url"].as_str().unwrap().ends_with(path))
            .unwrap()
    };
    for path in ["/one", "/two"] {
        assert_eq!(of(path)["bytes_down"], len as u64, "{path}");
        assert_eq!(of(path)["complete"], true);
    }
    let cut = of("/cut");
    assert_eq!(cut["bytes_down"], (len / 3) as u64);
    assert_eq!(cut["complete"], false);
    assert_eq!(cut["failure"]["kind"], "http_error", "{cut}");
}

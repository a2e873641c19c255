//! Origins the proxy reaches: plain and TLS origins with test routes, an HTTPS origin that
//! speaks h1 and h2, canned answers (block pages, a PAC file), and servers that misbehave on
//! purpose (reset, silence, a full accept queue, a plaintext gateway, a scripted origin).

#![allow(dead_code)]

use super::*;

/// An HTTP/1.1 origin with a few routes:
/// `/hello`, `/echo` (body back), `/count` (bytes received), `/big?n=N` (N bytes),
/// `/headers` (request head as text), `/peer` (the connection's remote address).
pub async fn origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(move |req| route(req, peer));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

pub(super) type OriginBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

pub(super) async fn route(
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<OriginBody>, Infallible> {
    let full = |s: String| {
        Full::new(Bytes::from(s))
            .map_err(|never| match never {})
            .boxed()
    };
    let path = req.uri().path().to_string();
    let response = match path.as_str() {
        "/hello" => Response::builder()
            .header("content-type", "text/plain")
            .body(full("hello".into())),
        "/echo" => Response::builder().body(req.into_body().map_err(BoxError::from).boxed()),
        "/count" => {
            let mut body = req.into_body();
            let mut n: u64 = 0;
            while let Some(Ok(frame)) = body.frame().await {
                n += frame.data_ref().map_or(0, |d| d.len() as u64);
            }
            Response::builder().body(full(n.to_string()))
        }
        "/big" => {
            let n: u64 = req
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("n="))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            Response::builder()
                .header("content-length", n.to_string())
                .body(Zeros::new(n).boxed())
        }
        "/headers" => {
            let mut text = format!("{} {} {:?}\n", req.method(), req.uri(), req.version());
            for (name, value) in req.headers() {
                text.push_str(&format!("{}: {}\n", name, value.to_str().unwrap_or("?")));
            }
            Response::builder().body(full(text))
        }
        "/peer" => Response::builder().body(full(peer.to_string())),
        _ => Response::builder()
            .status(404)
            .body(full("not found".into())),
    };
    Ok(response.expect("response"))
}

/// A body of `n` zero bytes in 64 KiB chunks, never held in memory at once.
pub struct Zeros {
    left: u64,
    chunk: Bytes,
}

impl Zeros {
    pub fn new(n: u64) -> Zeros {
        Zeros {
            left: n,
            chunk: Bytes::from(vec![0u8; 64 * 1024]),
        }
    }
}

impl Body for Zeros {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(self.chunk.len() as u64) as usize;
        self.left -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))))
    }
}

/// A TLS origin whose certificate (made now, never stored) names `names` and 127.0.0.1.
/// Answers one HTTP/1.1 request per connection with "hello over tls". Returns the address and
/// the certificate in PEM, for clients to trust.
pub async fn tls_origin(names: &[&str]) -> (SocketAddr, String) {
    let mut sans: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    sans.push("127.0.0.1".into());
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(sans)
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    let pem = cert.pem();
    let der_key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key der");
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], der_key)
        .expect("server config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    (serve_tls(config).await, pem)
}

/// Accepts, reads a little, then resets the connection (RST, not FIN).
pub async fn resetting_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf).await;
            let _ = stream.set_zero_linger();
            drop(stream);
        }
    });
    addr
}

/// Accepts and reads forever, never answering.
pub async fn silent_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// Echoes bytes; when the client half-closes, writes "bye" and closes.
pub async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = stream.write_all(b"bye").await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

/// A listener whose accept queue is full, so a new connect gets no answer at all: the
/// loopback way to make a connect time out. Keep the returned value alive.
pub fn unanswering_listener() -> (
    SocketAddr,
    Vec<std::net::TcpStream>,
    tokio::net::TcpListener,
) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let listener = socket.listen(0).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let mut fillers = Vec::new();
    for _ in 0..8 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => fillers.push(s),
            Err(_) => break, // the queue is full
        }
    }
    (addr, fillers, listener)
}

/// A TLS origin presenting exactly `chain`; answers one HTTP/1.1 request per connection.
pub async fn tls_origin_with(
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> SocketAddr {
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    serve_tls(config).await
}

pub(super) async fn serve_tls(config: rustls::ServerConfig) -> SocketAddr {
    serve_tls_at(config, "127.0.0.1:0").await
}

pub(super) async fn serve_tls_at(config: rustls::ServerConfig, addr: &str) -> SocketAddr {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(addr).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let body = "hello over tls";
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(reply.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

/// Releases the second half of `/sse` streams: the first event is sent at once, the rest only
/// after a test calls `sse_gate().notify_waiters()`.
pub fn sse_gate() -> Arc<tokio::sync::Notify> {
    static GATE: std::sync::OnceLock<Arc<tokio::sync::Notify>> = std::sync::OnceLock::new();
    GATE.get_or_init(|| Arc::new(tokio::sync::Notify::new()))
        .clone()
}

/// An HTTPS origin speaking HTTP/1.1 and HTTP/2 (ALPN), with the routes of [`origin`] plus
/// `/proto` (the HTTP version it saw), `/peer` (the connection's remote address), `/host`
/// (the Host header), `/sse` (an event stream held open by [`sse_gate`]) and
/// `/ws` (a WebSocket-style upgrade that echoes bytes).
pub async fn https_origin(
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> SocketAddr {
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = service_fn(move |req| secure_route(req, peer));
                let builder = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                );
                let _ = builder
                    .serve_connection_with_upgrades(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

pub(super) async fn secure_route(
    mut req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<OriginBody>, Infallible> {
    let full = |s: String| {
        Full::new(Bytes::from(s))
            .map_err(|never| match never {})
            .boxed()
    };
    match req.uri().path() {
        "/proto" => Ok(Response::new(full(format!("{:?}", req.version())))),
        "/peer" => Ok(Response::new(full(peer.to_string()))),
        "/json" => Ok(Response::builder()
            .header("content-type", "application/json")
            .body(full(r#"{"ok":true}"#.to_string()))
            .expect("response")),
        "/host" => {
            let host = req.headers().get("host").and_then(|h| h.to_str().ok());
            Ok(Response::new(full(host.unwrap_or("-").to_string())))
        }
        "/sse" => {
            let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
            tokio::spawn(async move {
                let gate = sse_gate();
                let released = gate.notified();
                let _ = tx.send(Bytes::from_static(b"data: first\n\n")).await;
                released.await;
                let _ = tx.send(Bytes::from_static(b"data: second\n\n")).await;
            });
            let body = ChannelBody { rx }.boxed();
            Ok(Response::builder()
                .header("content-type", "text/event-stream")
                .body(body)
                .expect("response"))
        }
        "/ws" => {
            let key = req
                .headers()
                .get("sec-websocket-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(upgraded) = on_upgrade.await {
                    let mut io = TokioIo::new(upgraded);
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = io.read(&mut buf).await {
                        if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            });
            let accept = {
                use base64::Engine;
                let digest = ring::digest::digest(
                    &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
                    format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes(),
                );
                base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
            };
            Ok(Response::builder()
                .status(101)
                .header("upgrade", "websocket")
                .header("connection", "Upgrade")
                .header("sec-websocket-accept", accept)
                .body(full(String::new()))
                .expect("response"))
        }
        _ => route(req, peer).await,
    }
}

/// A body fed from a channel: each message is sent as it arrives.
pub(super) struct ChannelBody {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx.poll_recv(cx).map(|m| m.map(|b| Ok(Frame::data(b))))
    }
}

/// A TLS origin (see [`tls_origin_with`]) on a chosen address.
pub async fn tls_origin_at(
    addr: &str,
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> SocketAddr {
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    serve_tls_at(config, addr).await
}

/// The live page's token in every diagproxy the suite starts (random in real sessions).
pub const LIVE_TOKEN: &str = "test-live-token-0000";

/// Every variable a proxy may be named in, both cases.
pub const PROXY_VARS: [&str; 8] = [
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
];

/// The built binary running `diagproxy run --listen 127.0.0.1:0 ARGS`: the child, the
/// address it listens on (from its banner), and its remaining stderr lines.
pub struct Running {
    pub child: std::process::Child,
    pub addr: String,
    /// The banner and the lines before it (the session's first log line).
    pub before: Vec<String>,
    pub lines: std::sync::mpsc::Receiver<String>,
}

/// What a [`scripted_origin`] received: each request's head and body, as text.
pub type Received = Arc<Mutex<Vec<String>>>;

/// An origin that answers each request with the next reply of the script, byte for byte
/// (so a test controls framing and header case), closing the connection after a reply whose
/// flag says so. Requests are read as head plus Content-Length body.
pub async fn scripted_origin(script: Vec<(&'static str, bool)>) -> (SocketAddr, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let script = Arc::new(Mutex::new(std::collections::VecDeque::from(script)));
    let received: Received = Arc::default();
    let seen = received.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (script, seen) = (script.clone(), seen.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let Some(end) = read_until_head_end(&mut stream, &mut buf).await else {
                        return;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    let length = content_length_of(&head);
                    while buf.len() < end + length {
                        let mut more = [0u8; 4096];
                        match stream.read(&mut more).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&more[..n]),
                        }
                    }
                    let body = String::from_utf8_lossy(&buf[end..end + length]).into_owned();
                    buf.drain(..end + length);
                    seen.lock().unwrap().push(head + &body);
                    let next = script.lock().unwrap().pop_front();
                    let Some((reply, close)) = next else { return };
                    if stream.write_all(reply.as_bytes()).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    (addr, received)
}

/// Reads until `buf` holds a whole head; returns where it ends.
pub(super) async fn read_until_head_end(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> Option<usize> {
    loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(at + 4);
        }
        let mut more = [0u8; 4096];
        match stream.read(&mut more).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&more[..n]),
        }
    }
}

//! Test helpers: an in-process diagproxy on 127.0.0.1:0, test origins (HTTP and TLS with a
//! certificate made at test time), a fake corporate proxy, and servers that misbehave on
//! purpose. Everything listens on loopback only.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use diagproxy::cli::{Cli, Command};
use diagproxy::config::Config;
use diagproxy::proxy::SessionOutcome;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub mod capture;
pub mod chromium;
pub mod dante;
pub mod kerberos;
pub mod squid;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where test artefacts (screenshots of the report and the live page) are kept.
pub fn artefacts() -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A diagproxy running in this process.
pub struct Proxy {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<SessionOutcome, diagproxy::proxy::RunError>>,
}

/// What a finished session left in its folder.
pub struct Session {
    /// Keeps the session folder alive as long as the session is looked at.
    pub folder: tempfile::TempDir,
    pub outcome: SessionOutcome,
    pub summary: Value,
    pub events: Vec<Value>,
}

impl Session {
    pub fn host(&self, host: &str, port: u16) -> &Value {
        self.summary["hosts"]
            .as_array()
            .and_then(|hosts| {
                hosts
                    .iter()
                    .find(|h| h["host"] == host && h["port"] == port)
            })
            .unwrap_or_else(|| panic!("{host}:{port} not in summary: {:#}", self.summary))
    }

    pub fn events_of(&self, kind: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["type"] == kind).collect()
    }
}

impl Proxy {
    pub async fn start(args: &[&str]) -> Proxy {
        Proxy::start_with(args, |_| {}).await
    }

    /// [`Proxy::start`], with `configure` changing the configuration first (a test
    /// resolver's answers, say).
    pub async fn start_with(args: &[&str], configure: impl FnOnce(&mut Config)) -> Proxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let session = dir.path().join("session");
        let session = session.to_str().expect("utf-8 path");
        let mut argv = vec!["diagproxy", "run", "--session-dir", session, "-q"];
        argv.extend_from_slice(args);
        let Command::Run(run) = Cli::try_parse_from(argv).expect("args").command else {
            panic!("not a run command")
        };
        let mut config = Config::from_run_args(&run).expect("config");
        // Every in-process proxy of the suite dials loopback only, and goes DIRECT unless
        // the test names a route: no test follows this machine's proxy settings.
        config.loopback_only = true;
        config.live_token = std::sync::Arc::from(LIVE_TOKEN);
        if !args.iter().any(|a| a.starts_with("--upstream-proxy")) {
            config.upstream = diagproxy::upstream::discover::Spec::Direct;
        }
        configure(&mut config);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(diagproxy::run(listener, config, async move {
            let _ = stopped.await;
        }));
        Proxy {
            addr,
            dir,
            stop: Some(stop),
            task,
        }
    }

    pub fn session_dir(&self) -> PathBuf {
        self.dir.path().join("session")
    }

    /// Stops the proxy as Ctrl-C would and reads the session files.
    pub async fn stop(self) -> Session {
        let Proxy {
            dir: folder,
            stop,
            task,
            ..
        } = self;
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        let dir = folder.path().join("session");
        let outcome = task.await.expect("join").expect("run");
        // What `diagproxy run` does after the session: the reports from its events.
        diagproxy::report::write_in_folder(&dir).expect("reports");
        let summary: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("summary.json")).expect("summary.json"),
        )
        .expect("json");
        let events = read_events(&dir);
        Session {
            folder,
            outcome,
            summary,
            events,
        }
    }

    /// The recorder writes asynchronously; wait until `n` events of `kind` are in the file.
    pub async fn wait_events(&self, kind: &str, n: usize) -> Vec<Value> {
        for _ in 0..200 {
            let events: Vec<Value> = read_events(&self.session_dir())
                .into_iter()
                .filter(|e| e["type"] == kind)
                .collect();
            if events.len() >= n {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("fewer than {n} {kind} events were recorded");
    }
}

/// The events written so far. Only whole lines count: the writer may be in the middle of
/// the last one while a test polls.
pub fn read_events(dir: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("events.jsonl")).unwrap_or_default();
    let whole = text.rfind('\n').map_or("", |end| &text[..end]);
    whole
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

/// Polls `dir/events.jsonl` (whole lines only) until `n` events of `kind` are written, for
/// tests that run the binary; panics after 10 s.
pub fn wait_for_events(dir: &std::path::Path, kind: &str, n: usize) -> Vec<Value> {
    for _ in 0..500 {
        let found: Vec<Value> = read_events(dir)
            .into_iter()
            .filter(|e| e["type"] == kind)
            .collect();
        if found.len() >= n {
            return found;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("fewer than {n} {kind} events in {}", dir.display());
}

/// curl that can only go where the test sends it: an inherited `NO_PROXY`/`no_proxy` would
/// let it bypass diagproxy (or, with `*`, resolve names in real DNS), so both are cleared
/// and `--noproxy ''` makes every host go through `-x`.
pub fn curl() -> std::process::Command {
    let mut command = std::process::Command::new("curl");
    command
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .args(["--noproxy", ""]);
    command
}

/// Runs a finding's `reproduce` command (as a user would paste it) with curl, `extra`
/// options added (a `--cacert` for a test CA), and returns the HTTP status curl saw
/// (`000` when it got none). `None` when curl or sh is missing (the caller decides).
pub fn run_reproduce(command: &str, extra: &str) -> Option<String> {
    if !require_tool("curl") {
        return None;
    }
    let prefix = "curl -sv -o /dev/null";
    assert!(command.starts_with(prefix), "{command}");
    let command = command.replacen(
        prefix,
        &format!("curl -s -o /dev/null -w '%{{http_code}}' --max-time 10 --noproxy '' {extra}"),
        1,
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &command])
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// [`run_reproduce`] off the test's runtime thread, so the test's own origins keep answering.
pub async fn reproduce_status(command: &str, extra: &str) -> Option<String> {
    let (command, extra) = (command.to_string(), extra.to_string());
    tokio::task::spawn_blocking(move || run_reproduce(&command, &extra))
        .await
        .expect("reproduce thread")
}

/// A plain response from the proxy or an origin.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// An HTTP/1.1 client connection to the proxy.
pub struct Client {
    sender: hyper::client::conn::http1::SendRequest<
        http_body_util::combinators::BoxBody<Bytes, BoxError>,
    >,
}

impl Client {
    pub async fn connect(proxy: SocketAddr) -> Client {
        let stream = TcpStream::connect(proxy).await.expect("connect to proxy");
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn.with_upgrades());
        Client { sender }
    }

    pub async fn send<B>(&mut self, request: Request<B>) -> Reply
    where
        B: Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = request.into_parts();
        let request = Request::from_parts(parts, body.map_err(Into::into).boxed());
        self.sender.ready().await.expect("ready");
        let response = self.sender.send_request(request).await.expect("response");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        }
    }

    pub async fn get(&mut self, url: &str) -> Reply {
        self.send(
            Request::get(url)
                .body(Full::new(Bytes::new()))
                .expect("request"),
        )
        .await
    }
}

pub async fn get(proxy: SocketAddr, url: &str) -> Reply {
    Client::connect(proxy).await.get(url).await
}

/// Sends a raw CONNECT and returns the stream plus the response head (and any body bytes).
pub async fn raw_connect(proxy: SocketAddr, target: &str, extra: &str) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(proxy).await.expect("connect to proxy");
    let head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: diagproxy-test/1\r\n{extra}\r\n");
    stream.write_all(head.as_bytes()).await.expect("write");
    let head = read_head(&mut stream).await;
    (stream, head)
}

/// Reads up to the end of a response head (and, for errors, the whole short body).
pub async fn read_head(stream: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => buf.push(byte[0]),
            _ => break,
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    if head.starts_with("HTTP/1.1 200") {
        return head;
    }
    let length = content_length_of(&head);
    let mut rest = vec![0u8; length];
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut rest)).await;
    head + &String::from_utf8_lossy(&rest)
}

/// The Content-Length a head declares (0 without one).
pub fn content_length_of(head: &str) -> usize {
    head.lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|n| n.trim().parse::<usize>().unwrap_or(0))
        })
        .unwrap_or(0)
}

/// Writes raw bytes to the proxy and returns everything it answers until it closes.
pub async fn raw_exchange(proxy: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(proxy).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------- origins

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

type OriginBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

async fn route(
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

/// A TLS client over `stream` trusting `ca_pem`, with the given SNI and ALPN.
pub async fn tls_client(
    stream: TcpStream,
    sni: &str,
    ca_pem: &str,
    alpn: &[&str],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    let mut reader = std::io::BufReader::new(ca_pem.as_bytes());
    for cert in rustls_pemfile_certs(&mut reader) {
        roots.add(cert).expect("add root");
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).expect("server name");
    connector
        .connect(name, stream)
        .await
        .expect("TLS handshake through the tunnel")
}

fn rustls_pemfile_certs(
    reader: &mut dyn std::io::BufRead,
) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    let mut text = String::new();
    let _ = reader.read_to_string(&mut text);
    rustls::pki_types::CertificateDer::pem_slice_iter(text.as_bytes())
        .filter_map(Result::ok)
        .collect()
}

// ---------------------------------------------------------------- misbehaving servers

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

// ---------------------------------------------------------------- fake corporate proxy

/// How the fake corporate proxy behaves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CorpMode {
    /// Tunnels every CONNECT to 127.0.0.1 on the requested port; answers plain requests itself.
    Allow,
    /// 407 unless `Proxy-Authorization: Basic dXNlcjpwYXNz` (user:pass) is sent.
    RequireAuth,
    /// 403 with a FortiGuard-style block page.
    Block,
}

/// What the fake corporate proxy saw: request lines and Proxy-Authorization values.
pub type CorpLog = Arc<Mutex<Vec<String>>>;

pub const BLOCK_PAGE: &str = "<html><head><title>Web Filter Violation</title></head><body><h1>FortiGuard Intrusion Prevention - Access Blocked</h1><p>You have tried to access a web page that is in violation of your Internet usage policy.</p></body></html>";

pub async fn corporate_proxy(mode: CorpMode) -> (SocketAddr, CorpLog) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let log: CorpLog = Arc::default();
    let seen = log.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| corp_handle(req, mode, seen.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    (addr, log)
}

async fn corp_handle(
    req: Request<Incoming>,
    mode: CorpMode,
    seen: CorpLog,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let auth = req
        .headers()
        .get("proxy-authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    if let Ok(mut log) = seen.lock() {
        log.push(format!("{} {} auth={auth}", req.method(), req.uri()));
    }
    let reply = |status: u16, body: &str| {
        Response::builder()
            .status(status)
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("response")
    };
    match mode {
        CorpMode::RequireAuth if auth != "Basic dXNlcjpwYXNz" => {
            let mut r = reply(407, "proxy authentication required");
            r.headers_mut().insert(
                "proxy-authenticate",
                hyper::header::HeaderValue::from_static("Basic realm=\"corp\""),
            );
            return Ok(r);
        }
        CorpMode::Block => return Ok(reply(403, BLOCK_PAGE)),
        _ => {}
    }
    if req.method() != hyper::Method::CONNECT {
        return Ok(reply(200, &format!("corp proxy forwarded {}", req.uri())));
    }
    let port = req.uri().port_u16().unwrap_or(443);
    let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", port)).await else {
        return Ok(reply(502, "corp proxy could not connect"));
    };
    tokio::spawn(async move {
        if let Ok(upgraded) = hyper::upgrade::on(req).await {
            let mut upgraded = TokioIo::new(upgraded);
            let _ = tokio::io::copy_bidirectional(&mut upgraded, &mut upstream).await;
        }
    });
    // A squid says who it is in its CONNECT answer's Via.
    let mut ok = reply(200, "");
    ok.headers_mut().insert(
        "via",
        hyper::header::HeaderValue::from_static("1.1 corp-proxy (squid/5.7)"),
    );
    Ok(ok)
}

/// Tools CI installs: a test that needs one skips when it is missing, unless
/// DIAGPROXY_REQUIRE_TOOLS=1 (set by .ci/run) turns the skip into a failure.
pub fn require_tool(name: &str) -> bool {
    // Found means it could be started at all (`openssl --version` exits 1, yet openssl is there).
    let found = std::process::Command::new(name)
        .arg("--version")
        .output()
        .is_ok();
    if !found {
        if std::env::var("DIAGPROXY_REQUIRE_TOOLS").is_ok_and(|v| v == "1") {
            panic!("{name} is required (DIAGPROXY_REQUIRE_TOOLS=1) but was not found");
        }
        eprintln!("SKIPPED: {name} is not installed");
    }
    found
}

// ---------------------------------------------------------------- certificates made at test time

/// A CA made at test time (its key never leaves memory).
pub struct TestCa {
    pub cert: rcgen::Certificate,
    pub key: rcgen::KeyPair,
}

impl TestCa {
    pub fn root(cn: &str, org: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, org);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        TestCa { cert, key }
    }

    pub fn intermediate(&self, cn: &str, org: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, org);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("cert");
        TestCa { cert, key }
    }

    /// A leaf for `names` (and 127.0.0.1) signed by this CA.
    pub fn leaf(
        &self,
        names: &[&str],
    ) -> (
        rustls::pki_types::CertificateDer<'static>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ) {
        let mut sans: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        sans.push("127.0.0.1".into());
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(sans)
            .expect("params")
            .signed_by(&key, &self.cert, &self.key)
            .expect("cert");
        let der_key =
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key der");
        (cert.der().clone(), der_key)
    }

    /// A leaf for `names` as PEM: (certificate, private key), for servers that read files.
    pub fn leaf_pem(&self, names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let cert = rcgen::CertificateParams::new(names)
            .expect("params")
            .signed_by(&key, &self.cert, &self.key)
            .expect("cert");
        (cert.pem(), key.serialize_pem())
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A root with a full distinguished name as products write theirs: `(type, value)` pairs.
    pub fn root_named(dn: &[(rcgen::DnType, &str)]) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        for (kind, value) in dn {
            params.distinguished_name.push(kind.clone(), *value);
        }
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        TestCa { cert, key }
    }

    /// A leaf for `names` shaped by `shape` (validity, extensions) before it is signed.
    pub fn leaf_shaped(
        &self,
        names: &[&str],
        shape: impl FnOnce(&mut rcgen::CertificateParams),
    ) -> (
        rustls::pki_types::CertificateDer<'static>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        shape(&mut params);
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("cert");
        let der_key =
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key der");
        (cert.der().clone(), der_key)
    }
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

async fn serve_tls(config: rustls::ServerConfig) -> SocketAddr {
    serve_tls_at(config, "127.0.0.1:0").await
}

async fn serve_tls_at(config: rustls::ServerConfig, addr: &str) -> SocketAddr {
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

/// CONNECTs through the proxy to `name:port`, does a TLS handshake trusting `ca_pem`, sends
/// one request and returns the answer.
pub async fn https_through(proxy: SocketAddr, name: &str, port: u16, ca_pem: &str) -> String {
    let (stream, head) = raw_connect(proxy, &format!("{name}:{port}"), "").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut tls = tls_client(stream, name, ca_pem, &["http/1.1"]).await;
    let request = format!("GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

pub fn write_file(dir: &std::path::Path, name: &str, contents: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write");
    path.to_str().expect("utf-8").to_string()
}

// ---------------------------------------------------------------- an HTTPS origin (h1 + h2)

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

async fn secure_route(
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
struct ChannelBody {
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

/// CONNECTs through the proxy and completes TLS trusting `ca_pem` with the given ALPN.
pub async fn intercepted_tls(
    proxy: SocketAddr,
    name: &str,
    port: u16,
    ca_pem: &str,
    alpn: &[&str],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let (stream, head) = raw_connect(proxy, &format!("{name}:{port}"), "").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    tls_client(stream, name, ca_pem, alpn).await
}

// ---------------------------------------------------------------- canned answers (block pages)

/// One canned answer: path → status, headers, body.
#[derive(Clone)]
pub struct Canned {
    pub path: &'static str,
    pub status: u16,
    pub headers: Vec<(&'static str, &'static str)>,
    pub body: &'static str,
}

pub fn canned(
    path: &'static str,
    status: u16,
    headers: &[(&'static str, &'static str)],
    body: &'static str,
) -> Canned {
    Canned {
        path,
        status,
        headers: headers.to_vec(),
        body,
    }
}

async fn answer_canned(
    req: Request<Incoming>,
    routes: Arc<Vec<Canned>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let found = routes.iter().find(|c| c.path == req.uri().path());
    let mut builder = Response::builder();
    let response = match found {
        Some(c) => {
            builder = builder.status(c.status);
            for (name, value) in &c.headers {
                builder = builder.header(*name, *value);
            }
            builder.body(Full::new(Bytes::from_static(c.body.as_bytes())))
        }
        None => builder
            .status(404)
            .body(Full::new(Bytes::from_static(b"not found"))),
    };
    Ok(response.expect("response"))
}

/// A plain-HTTP server answering `/proxy.pac` with `script` (its lifetime is the test's).
pub async fn pac_server(script: String) -> SocketAddr {
    let script: &'static str = Box::leak(script.into_boxed_str());
    let headers = &[("content-type", "application/x-ns-proxy-autoconfig")];
    canned_origin(vec![canned("/proxy.pac", 200, headers, script)]).await
}

/// A plain-HTTP origin answering `routes` (a fake gateway's block pages).
pub async fn canned_origin(routes: Vec<Canned>) -> SocketAddr {
    canned_origin_at("127.0.0.1:0", routes).await
}

/// An HTTPS origin answering `routes`, with the given chain.
pub async fn canned_https_origin(
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
    routes: Vec<Canned>,
) -> SocketAddr {
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let routes = Arc::new(routes);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, routes) = (acceptor.clone(), routes.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = service_fn(move |req| answer_canned(req, routes.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

/// A gateway that answers whatever arrives (a ClientHello) with a plaintext HTTP block page.
pub async fn plaintext_gateway(page: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let reply = format!("HTTP/1.1 403 Forbidden\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}", page.len());
            let _ = stream.write_all(reply.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    });
    addr
}

/// Sends a TLS ClientHello for `sni` through a CONNECT tunnel and reports how the handshake failed.
pub async fn hello_through(proxy: SocketAddr, target: &str, sni: &str) -> String {
    let (stream, head) = raw_connect(proxy, target, "").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).expect("name");
    match connector.connect(name, stream).await {
        Ok(_) => "handshake completed".to_string(),
        Err(e) => e.to_string(),
    }
}

/// A canned plain-HTTP origin on a chosen address (127.0.0.2 for a second "network").
pub async fn canned_origin_at(addr: &str, routes: Vec<Canned>) -> SocketAddr {
    let routes = Arc::new(routes);
    let listener = TcpListener::bind(addr).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let routes = routes.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| answer_canned(req, routes.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
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

/// A local CA made by `ca init` (name-constrained, as users get it) in `dir/ca`: its folder
/// and its certificate in PEM.
pub fn local_ca(dir: &std::path::Path) -> (std::path::PathBuf, String) {
    let ca_dir = dir.join("ca");
    let options = diagproxy::tls::ca::InitOptions {
        dir: ca_dir.clone(),
        days: 30,
        unconstrained: false,
        force: false,
    };
    diagproxy::tls::ca::init(&options, &diagproxy::profile::Profile::builtin()).expect("ca init");
    let pem = std::fs::read_to_string(ca_dir.join(diagproxy::tls::ca::CERT_FILE)).expect("ca pem");
    (ca_dir, pem)
}

/// Sends one HTTP/1.1 request through an intercepted CONNECT to `name:port`, trusting
/// `ca_pem` (diagproxy's CA); upgrades stay possible on the returned response.
pub async fn intercepted_h1(
    proxy: SocketAddr,
    name: &str,
    port: u16,
    ca_pem: &str,
    request: Request<Full<Bytes>>,
) -> Response<Incoming> {
    let mut h1 = intercepted_h1_client(proxy, name, port, ca_pem).await;
    h1.send_request(request).await.expect("response")
}

/// An HTTP/1.1 client connection inside an intercepted tunnel to `name:port`.
pub async fn intercepted_h1_client(
    proxy: SocketAddr,
    name: &str,
    port: u16,
    ca_pem: &str,
) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let tls = intercepted_tls(proxy, name, port, ca_pem, &["http/1.1"]).await;
    let (h1, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("handshake");
    tokio::spawn(conn.with_upgrades());
    h1
}

/// The built binary, under the loopback-only guard (`DIAGPROXY_LOOPBACK_ONLY=1`): whatever a
/// test makes it do, it dials nothing outside 127.0.0.0/8 and ::1.
/// The built binary, loopback only, and DIRECT unless a test passes `--upstream-proxy`
/// (`DIAGPROXY_UPSTREAM_PROXY=direct`, no proxy variables): no test follows this machine's
/// proxy settings.
pub fn diagproxy() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_diagproxy"));
    command.env("DIAGPROXY_LOOPBACK_ONLY", "1");
    command.env("DIAGPROXY_UPSTREAM_PROXY", "direct");
    command.env("DIAGPROXY_LIVE_TOKEN", LIVE_TOKEN);
    for var in PROXY_VARS {
        command.env_remove(var);
    }
    command
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

pub fn run_binary(args: &[&std::ffi::OsStr]) -> Running {
    run_binary_with(args, &[])
}

/// [`run_binary`] with environment variables set (after the suite's defaults).
pub fn run_binary_with(args: &[&std::ffi::OsStr], env: &[(&str, &str)]) -> Running {
    let mut command = diagproxy();
    for (name, value) in env {
        command.env(name, value);
    }
    let child = command
        .args(["run", "--listen", "127.0.0.1:0"])
        .args(args)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn diagproxy");
    attach(child)
}

/// A spawned `diagproxy run` (stderr piped) as a [`Running`]: its stderr read on a thread
/// to the end, its banner waited for.
pub fn attach(mut child: std::process::Child) -> Running {
    use std::io::BufRead;
    let (tx, lines) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut before = Vec::new();
    let addr = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no banner line after {before:?}"));
        let addr = banner_addr_in(&line);
        before.push(line);
        if let Some(addr) = addr {
            break addr;
        }
    };
    Running {
        child,
        addr,
        before,
        lines,
    }
}

/// The address in the "diagproxy listening on http://ADDR …" banner.
pub fn banner_addr(banner: &str) -> String {
    banner_addr_in(banner).unwrap_or_else(|| panic!("no address in {banner:?}"))
}

/// The address in a human banner, or in the JSON one (`{"type":"listening","listen":…}`).
fn banner_addr_in(line: &str) -> Option<String> {
    if let Ok(value) = serde_json::from_str::<Value>(line) {
        return (value["type"] == "listening")
            .then(|| value["listen"].as_str().map(str::to_string))
            .flatten();
    }
    line.split("diagproxy listening on http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_string)
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
async fn read_until_head_end(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
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

//! Clients that talk to the proxy as browsers and curl do: plain HTTP/1.1, raw CONNECTs,
//! TLS through a tunnel or an interception, and curl itself for `reproduce` commands.

#![allow(dead_code)]

use super::*;

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

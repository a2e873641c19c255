//! The load generators: keep-alive request loops over plain HTTP or TLS, new TLS connection
//! per request, tunnel bulk transfer and CONNECT set-up, each direct to the origin or through
//! a proxy, bounded by time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where the load goes.
#[derive(Debug, Clone, Copy)]
pub enum Via {
    Direct,
    Proxy(SocketAddr),
}

/// A request-rate result.
#[derive(Debug, Clone, Default)]
pub struct Rate {
    pub requests: u64,
    pub secs: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub mean_us: f64,
    /// Every latency (µs, sorted), so results of several slices can be merged.
    latencies: Vec<u32>,
}

impl Rate {
    pub fn per_sec(&self) -> f64 {
        if self.secs > 0.0 {
            self.requests as f64 / self.secs
        } else {
            0.0
        }
    }

    /// Two slices of the same measurement as one.
    pub fn merge(mut self, other: Rate) -> Rate {
        self.latencies.extend(other.latencies);
        Rate::from(self.latencies, self.secs + other.secs)
    }

    fn from(mut latencies: Vec<u32>, secs: f64) -> Rate {
        latencies.sort_unstable();
        let at = |q: f64| {
            latencies
                .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or(0) as f64
        };
        let mean = if latencies.is_empty() {
            0.0
        } else {
            latencies.iter().map(|&l| l as f64).sum::<f64>() / latencies.len() as f64
        };
        Rate {
            requests: latencies.len() as u64,
            secs,
            p50_us: at(0.5),
            p99_us: at(0.99),
            mean_us: mean,
            latencies,
        }
    }
}

/// One client's connection: HTTP/1.1 (one request at a time), or a handle on a shared
/// HTTP/2 connection (its streams side by side, as a browser sends one origin's requests).
enum Sender {
    H1(http1::SendRequest<Empty<Bytes>>),
    H2(H2Sender),
}

impl Sender {
    /// GETs `uri` (origin-form with `Host: host` over HTTP/1.1; absolute over HTTP/2, whose
    /// `:authority` comes from it).
    async fn get(&mut self, uri: &str, host: &str) -> Result<Response<Incoming>, String> {
        let request = match self {
            Sender::H1(_) => Request::get(uri).header("host", host),
            Sender::H2(_) => Request::get(uri),
        };
        let request = request.body(Empty::new()).map_err(|e| e.to_string())?;
        let sent = match self {
            Sender::H1(sender) => sender.send_request(request).await,
            Sender::H2(sender) => sender.send_request(request).await,
        };
        sent.map_err(|e| e.to_string())
    }
}

/// Runs `c` clients side by side until `duration` is over; each returns its latencies (µs).
async fn clients<F, Fut>(c: usize, duration: Duration, client: F) -> Result<Rate, String>
where
    F: Fn(Instant) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<u32>, String>> + Send + 'static,
{
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..c).map(|_| tokio::spawn(client(deadline))).collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.map_err(|e| e.to_string())??);
    }
    Ok(Rate::from(all, started.elapsed().as_secs_f64()))
}

/// `c` clients, each sending keep-alive requests for `uri` with `Host: host` on a connection
/// made by `open`. `host` names the port too (RFC 9110 §7.2): a proxy that intercepts and
/// rebuilds the URL from `Host` (squid's `ssl_bump`) would otherwise go to port 443.
async fn keep_alive<F, Fut>(
    c: usize,
    duration: Duration,
    uri: String,
    host: String,
    open: F,
) -> Result<Rate, String>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Sender, String>> + Send,
{
    let open = Arc::new(open);
    clients(c, duration, |deadline| {
        let (open, uri, host) = (open.clone(), uri.clone(), host.clone());
        async move {
            let mut sender = open().await?;
            let mut latencies = Vec::with_capacity(4096);
            while Instant::now() < deadline {
                let t = Instant::now();
                let response = sender.get(&uri, &host).await?;
                succeeded(&response)?;
                response
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| e.to_string())?;
                latencies.push(t.elapsed().as_micros() as u32);
            }
            Ok(latencies)
        }
    })
    .await
}

/// Plain HTTP/1.1 keep-alive GETs of the small answer.
pub async fn forward(
    origin: SocketAddr,
    via: Via,
    c: usize,
    duration: Duration,
) -> Result<Rate, String> {
    let (target, uri) = match via {
        Via::Direct => (origin, "/small".to_string()),
        Via::Proxy(proxy) => (proxy, format!("http://{origin}/small")),
    };
    keep_alive(c, duration, uri, origin.to_string(), move || async move {
        handshake(
            TcpStream::connect(target)
                .await
                .map_err(|e| e.to_string())?,
        )
        .await
    })
    .await
}

/// What the HTTPS rows speak.
#[derive(Debug, Clone, Copy)]
pub enum Protocol {
    /// HTTP/1.1, one request at a time on each client's own connection.
    Http1,
    /// HTTP/2, every client's requests as streams of one shared connection, as a browser
    /// sends one origin's requests.
    Http2,
}

/// Keep-alive GETs of the small answer over TLS by `c` clients (through interception when
/// via a proxy).
pub async fn https(
    origin: SocketAddr,
    name: &'static str,
    trust: Arc<rustls::ClientConfig>,
    via: Via,
    protocol: Protocol,
    c: usize,
    duration: Duration,
) -> Result<Rate, String> {
    let host = format!("{name}:{}", origin.port());
    if let Protocol::Http1 = protocol {
        return keep_alive(c, duration, "/small".into(), host, move || {
            let trust = trust.clone();
            async move { handshake(tls(origin, name, &trust, via).await?).await }
        })
        .await;
    }
    let (sender, conn) = h2_connection(origin, name, &trust, via)
        .await?
        .ok_or_else(|| format!("{name} did not agree to HTTP/2 (ALPN)"))?;
    let uri = format!("https://{host}/small");
    let rate = keep_alive(c, duration, uri, host, move || {
        let sender = Sender::H2(sender.clone());
        async move { Ok(sender) }
    })
    .await;
    conn.abort();
    rate
}

/// Whether TLS to `name` (through the proxy, when via one) agrees to HTTP/2: a proxy that
/// intercepts only HTTP/1.1 (squid's `ssl_bump`, hudsucker's example) has no HTTP/2 row.
pub async fn speaks_h2(
    origin: SocketAddr,
    name: &'static str,
    trust: &Arc<rustls::ClientConfig>,
    via: Via,
) -> Result<bool, String> {
    Ok(h2_connection(origin, name, trust, via).await?.is_some())
}

/// An HTTP/2 connection to `name` and the task driving it; `None` when ALPN chose another
/// protocol.
async fn h2_connection(
    origin: SocketAddr,
    name: &'static str,
    trust: &Arc<rustls::ClientConfig>,
    via: Via,
) -> Result<Option<(H2Sender, tokio::task::JoinHandle<()>)>, String> {
    let mut offering_h2 = (**trust).clone();
    // Both, as a browser offers them: a proxy that speaks only HTTP/1.1 may refuse a
    // handshake that offers only h2 (hudsucker's example does).
    offering_h2.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let stream = tls(origin, name, &Arc::new(offering_h2), via).await?;
    if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
        return Ok(None);
    }
    let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Some((sender, conn)))
}

type H2Sender = http2::SendRequest<Empty<Bytes>>;

/// A new TLS connection (and CONNECT, via a proxy) for every request.
pub async fn new_connections(
    origin: SocketAddr,
    name: &'static str,
    trust: Arc<rustls::ClientConfig>,
    via: Via,
    c: usize,
    duration: Duration,
) -> Result<Rate, String> {
    clients(c, duration, |deadline| {
        let trust = trust.clone();
        async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                latencies.push(one_request(origin, name, &trust, via).await?);
            }
            Ok(latencies)
        }
    })
    .await
}

/// One TLS connection, one GET, closed: its latency in µs.
pub async fn one_request(
    origin: SocketAddr,
    name: &str,
    trust: &Arc<rustls::ClientConfig>,
    via: Via,
) -> Result<u32, String> {
    let t = Instant::now();
    let mut sender = handshake(tls(origin, name, trust, via).await?).await?;
    let host = format!("{name}:{}", origin.port());
    let response = sender.get("/small", &host).await?;
    succeeded(&response)?;
    response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(t.elapsed().as_micros() as u32)
}

/// Only answers the origin gave count: a proxy's own error page is not a fast request.
fn succeeded<B>(response: &hyper::Response<B>) -> Result<(), String> {
    match response.status() {
        s if s.is_success() => Ok(()),
        s => Err(format!(
            "the request was answered {s}, not by the bench origin (is the proxy trusting its root and reaching 127.0.0.1?)"
        )),
    }
}

/// Bytes of an endless body read for `duration` — through a tunnel, or (`plain`: the path,
/// `/endless` chunked or `/endless-length`) as a plain-HTTP request the proxy forwards, or
/// directly — and the seconds that took.
pub async fn bulk_throughput(
    origin: SocketAddr,
    via: Via,
    plain: Option<&str>,
    duration: Duration,
) -> Result<(u64, f64), String> {
    let (mut stream, request) = match (via, plain) {
        (Via::Proxy(proxy), Some(path)) => {
            let stream = TcpStream::connect(proxy).await.map_err(|e| e.to_string())?;
            let _ = stream.set_nodelay(true);
            let request = format!("GET http://{origin}{path} HTTP/1.1\r\nHost: {origin}\r\n\r\n");
            (stream, request)
        }
        _ => {
            let stream = open_tunnel(origin, via).await?;
            let path = plain.unwrap_or("/endless");
            (
                stream,
                format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n"),
            )
        }
    };
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 256 * 1024];
    let started = Instant::now();
    let mut bytes = 0u64;
    while started.elapsed() < duration {
        let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
    }
    Ok((bytes, started.elapsed().as_secs_f64()))
}

/// Mean time to an open tunnel (CONNECT answered 200), or to a TCP connect when direct, in µs.
/// A live page that reads the proxy's `/events` slowly (1 KiB every 100 ms through a 4 KiB
/// receive buffer), until the task is aborted.
pub async fn slow_event_reader(
    proxy: SocketAddr,
    token: &str,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket
        .set_recv_buffer_size(4096)
        .map_err(|e| e.to_string())?;
    let mut stream = socket.connect(proxy).await.map_err(|e| e.to_string())?;
    let ask = format!(
        "GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Diagproxy-Token: {token}\r\nAccept: text/event-stream\r\n\r\n"
    );
    stream
        .write_all(ask.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    // The page must really be connected, or the row measures nothing.
    let mut head = [0u8; 12];
    stream
        .read_exact(&mut head)
        .await
        .map_err(|e| format!("the live page's /events: {e}"))?;
    if &head != b"HTTP/1.1 200" {
        let said = String::from_utf8_lossy(&head).into_owned();
        return Err(format!("the live page's /events answered {said:?}"));
    }
    Ok(tokio::spawn(async move {
        let mut buf = [0u8; 1024];
        while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }))
}

pub async fn tunnel_setup(
    origin: SocketAddr,
    via: Via,
    duration: Duration,
) -> Result<Rate, String> {
    let started = Instant::now();
    let mut latencies = Vec::new();
    while started.elapsed() < duration {
        let t = Instant::now();
        let stream = open_tunnel(origin, via).await?;
        latencies.push(t.elapsed().as_micros() as u32);
        drop(stream);
    }
    Ok(Rate::from(latencies, started.elapsed().as_secs_f64()))
}

/// A byte stream to `target`: a TCP connection, or a CONNECT tunnel through the proxy.
pub async fn open_tunnel(target: SocketAddr, via: Via) -> Result<TcpStream, String> {
    match via {
        Via::Direct => TcpStream::connect(target).await.map_err(|e| e.to_string()),
        Via::Proxy(proxy) => connect_through(proxy, &target.to_string()).await,
    }
}

async fn connect_through(proxy: SocketAddr, authority: &str) -> Result<TcpStream, String> {
    let mut stream = TcpStream::connect(proxy).await.map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    stream
        .write_all(format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    // Peek until the head is complete, then take exactly the head: bytes after it belong to
    // the tunnel. (Reading a byte at a time would charge the proxy for ~40 system calls of
    // the load generator's.)
    let mut peeked = vec![0u8; 1024];
    let head_len = loop {
        let n = stream.peek(&mut peeked).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the proxy closed the CONNECT".into());
        }
        if let Some(at) = peeked[..n].windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if n == peeked.len() {
            return Err("the proxy's answer to CONNECT has a head over 1 KiB".into());
        }
        // Part of the head (proxies send it in one write, so this is rare): the socket stays
        // readable while data waits, so let other tasks run before peeking again.
        tokio::task::yield_now().await;
    };
    let mut head = vec![0u8; head_len];
    stream
        .read_exact(&mut head)
        .await
        .map_err(|e| e.to_string())?;
    if !head.starts_with(b"HTTP/1.1 200") && !head.starts_with(b"HTTP/1.0 200") {
        return Err(format!(
            "CONNECT {authority}: {}",
            String::from_utf8_lossy(&head).lines().next().unwrap_or("")
        ));
    }
    Ok(stream)
}

/// TLS to `name` at `origin` (directly, or CONNECT name:port through the proxy).
async fn tls(
    origin: SocketAddr,
    name: &str,
    trust: &Arc<rustls::ClientConfig>,
    via: Via,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let stream = match via {
        Via::Direct => {
            let s = TcpStream::connect(origin)
                .await
                .map_err(|e| e.to_string())?;
            let _ = s.set_nodelay(true);
            s
        }
        Via::Proxy(proxy) => connect_through(proxy, &format!("{name}:{}", origin.port())).await?,
    };
    let server =
        rustls::pki_types::ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
    tokio_rustls::TlsConnector::from(trust.clone())
        .connect(server, stream)
        .await
        .map_err(|e| format!("TLS to {name}: {e}"))
}

async fn handshake<S: AsyncRead + AsyncWrite + Send + Unpin + 'static>(
    stream: S,
) -> Result<Sender, String> {
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(Sender::H1(sender))
}

/// A client config trusting exactly `pem`, offering HTTP/1.1.
pub fn trusting(pem: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// CPU time a process has used so far (user + system, all its threads, also those that
/// ended), from Linux `/proc/PID/stat`; the kernel counts it in clock ticks (10 ms on most
/// systems), so it is read around measurements that last seconds.
#[cfg(target_os = "linux")]
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after it are plain numbers:
    // state is field 3, utime and stime are fields 14 and 15.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_sec = u64::try_from(per_sec).ok().filter(|&t| t > 0)?;
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / per_sec as f64,
    ))
}

/// Elsewhere the proxy's CPU time is not measured.
#[cfg(not(target_os = "linux"))]
pub fn cpu_time(_pid: u32) -> Option<Duration> {
    None
}

/// One memory figure of a process from Linux `/proc/PID/status`, in KiB: `VmRSS:` (resident,
/// including the shared pages of the binary and libraries) or `RssAnon:` (private memory).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Waits for `child`: its exit status and its own peak RSS in KiB (`wait4`'s rusage: this
/// child alone, not every child the process ever had).
pub fn wait_with_rss(
    child: std::process::Child,
) -> std::io::Result<(std::process::ExitStatus, u64)> {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child and fills locals; std's handle is not waited on again.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    drop(child);
    if waited != pid {
        return Err(std::io::Error::last_os_error());
    }
    let status = std::os::unix::process::ExitStatusExt::from_raw(status);
    // ru_maxrss is in KiB on Linux.
    Ok((status, usage.ru_maxrss.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A proxy's `502` (an origin it could not reach or did not trust) is an error, not a
    /// fast request: the rows count only the origin's answers.
    #[test]
    fn only_the_origins_answers_count() {
        let answer = |status: u16| hyper::Response::builder().status(status).body(()).unwrap();
        assert!(succeeded(&answer(200)).is_ok());
        let err = succeeded(&answer(502)).unwrap_err();
        assert!(err.contains("502"), "{err}");
        assert!(succeeded(&answer(407)).is_err());
    }
}

//! Opening connections upstream: name resolution (honouring `--resolve`), TCP connect with a
//! deadline, and CONNECT through the corporate proxy. Every failure comes back as a named
//! [`Failure`] that says whose side failed.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, HOST, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::addr::join as host_port;
use super::auth::{self, AuthRecord, Mode};
use super::resolve;
use super::route::{Hop, Taken, TakenHop, UpstreamProxy};
use crate::config::Config;
use crate::failure::{Failure, FailureKind, Side};

/// A byte stream to the upstream, direct or through the corporate proxy.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {
    /// The stream as a TCP socket, when it is one (plain HTTP's bodies can then be
    /// spliced from socket to socket).
    fn tcp(&self) -> Option<&TcpStream>;
}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {
    fn tcp(&self) -> Option<&TcpStream> {
        (self as &dyn std::any::Any).downcast_ref::<TcpStream>()
    }
}

/// A TCP connection and what it took to open it.
pub struct Dialed {
    pub stream: TcpStream,
    pub addr: SocketAddr,
    /// `None` when no lookup was made (an IP literal or a `--resolve` pin).
    pub dns: Option<Duration>,
    /// What DNS answered (empty when no lookup was made), for the sinkhole check.
    pub dns_answer: Vec<IpAddr>,
    pub connect: Duration,
}

/// A tunnel's upstream byte stream.
pub enum Stream {
    /// A TCP connection (to the origin, or a tunnel through the corporate proxy): the relay
    /// can splice it. `early`: bytes that already arrived with the corporate proxy's answer.
    Tcp { stream: TcpStream, early: Bytes },
    /// Anything else.
    Other(Box<dyn Io>),
}

impl Stream {
    pub fn into_io(self) -> Box<dyn Io> {
        match self {
            Stream::Tcp { stream, early } if early.is_empty() => Box::new(stream),
            Stream::Tcp { stream, early } => Box::new(Prefixed::new(early, stream)),
            Stream::Other(io) => io,
        }
    }
}

/// A stream whose first bytes were already read: they are read again first.
pub struct Prefixed<S> {
    early: Bytes,
    inner: S,
}

impl<S> Prefixed<S> {
    pub fn new(early: Bytes, inner: S) -> Prefixed<S> {
        Prefixed { early, inner }
    }
}

impl<S: AsyncRead + Unpin> tokio::io::AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.early.is_empty() {
            return std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        let n = self.early.len().min(buf.remaining());
        buf.put_slice(&self.early.split_to(n));
        std::task::Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> tokio::io::AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A tunnel's upstream side, ready for bytes.
pub struct Upstream {
    pub io: Stream,
    /// The address dialled (the corporate proxy's when chaining).
    pub addr: SocketAddr,
    pub dns: Option<Duration>,
    /// What DNS answered for the origin (empty through a corporate proxy, which resolves).
    pub dns_answer: Vec<IpAddr>,
    pub connect: Duration,
    /// The CONNECT exchange with the corporate proxy.
    pub proxy_connect: Option<Duration>,
    /// The corporate proxy's `200`'s headers that say what it is (`Via`, `Server`, …): a
    /// chain re-signed on this route is named after them when its issuer names nothing.
    pub proxy_headers: Vec<(String, String)>,
    /// An HTTPS proxy's own chain, judged: re-signed on the way to the proxy is a finding
    /// on the proxy's row (other traffic, never the verdict on ChatGPT).
    pub proxy_tls: Option<crate::tls::chain::TlsVerdict>,
}

/// Most of a block page fits here; corporate proxies put theirs in refusal bodies.
const PROXY_BODY_LIMIT: usize = 4096;

/// Resolves and connects to `host:port`; `side` says whose failure a failure is.
pub async fn dial(host: &str, port: u16, config: &Config, side: Side) -> Result<Dialed, Failure> {
    let deadline = Instant::now() + config.connect_timeout;
    let (addrs, dns) = resolve::resolve(host, port, config, side).await?;
    let mut last = None;
    let started = Instant::now();
    for addr in &addrs {
        if config.loopback_only && !addr.ip().is_loopback() {
            let why = "not dialled: DIAGPROXY_LOOPBACK_ONLY=1 allows loopback addresses only";
            last = Some((FailureKind::ConnectFailed, *addr, why.to_string()));
            continue;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                let dns_answer = if dns.is_some() {
                    addrs.iter().map(|a| a.ip()).collect()
                } else {
                    Vec::new()
                };
                return Ok(Dialed {
                    stream,
                    addr: *addr,
                    dns,
                    dns_answer,
                    connect: started.elapsed(),
                });
            }
            Ok(Err(e)) => last = Some((FailureKind::from_connect_error(&e), *addr, e.to_string())),
            Err(_) => {
                last = Some((
                    FailureKind::ConnectTimeout,
                    *addr,
                    format!("no answer in {:?}", config.connect_timeout),
                ));
                break;
            }
        }
    }
    let Some((kind, addr, why)) = last else {
        return Err(Failure::new(
            FailureKind::DnsFailed,
            side,
            format!("DNS lookup of {host}: no addresses"),
        ));
    };
    let whom = if side == Side::UpstreamProxy {
        "the corporate proxy at "
    } else {
        ""
    };
    let target = host_port(host, port);
    let at = if target == addr.to_string() {
        String::new()
    } else {
        format!(" ({addr})")
    };
    let mut failure = Failure::new(
        kind,
        side,
        format!("TCP connect to {whom}{target}{at}: {why}"),
    );
    if dns.is_some() {
        failure.dns_answer = addrs.iter().map(|a| a.ip()).collect();
    }
    Err(failure)
}

/// Opens a tunnel's upstream side along the host's route: each hop in turn (DIRECT, or
/// CONNECT through a corporate proxy, a SOCKS handshake) until one connects. A hop that
/// cannot be reached (DNS, refused, timed out, reset) falls back to the next, and a proxy that
/// did so is skipped for five minutes (Chromium's rule); a proxy's refusal of the CONNECT
/// itself (403, 407) is its answer and ends the attempt. `taken` says which way was taken
/// and what failed before it, for the event.
pub async fn open_tunnel(
    host: &str,
    port: u16,
    config: &Config,
) -> (Taken, Result<Upstream, Failure>) {
    let route = config.route(port != 80, host, port, "").await;
    let mut taken = Taken::from(&*route);
    let hops = config.router.in_order(&route);
    let mut result = Err(Failure::new(
        FailureKind::ConnectFailed,
        Side::Upstream,
        "no route",
    ));
    for (i, hop) in hops.iter().enumerate() {
        result = match hop {
            Hop::Direct => direct(host, port, config).await,
            Hop::Proxy(proxy) => through(proxy, host, port, config, &mut taken.proxy_auth).await,
            Hop::Socks(proxy) => socks_tunnel(proxy, host, port, config).await,
        };
        let Err(failure) = &result else {
            taken.hop = Some(TakenHop::from(*hop));
            if let Ok(up) = &result {
                taken.proxy_headers.clone_from(&up.proxy_headers);
                taken.proxy_tls.clone_from(&up.proxy_tls);
            }
            return (taken, result);
        };
        let unreachable = hop.unreachable(failure);
        if let (Some(at), true) = (hop.endpoint(), unreachable) {
            config.router.mark_bad_at(at);
        }
        taken.hop = Some(TakenHop::from(*hop));
        if !unreachable || i + 1 == hops.len() {
            break;
        }
        taken
            .route_failed
            .push(format!("{hop}: {}", failure.detail));
    }
    (taken, result)
}

/// A connection to `host:port` through the SOCKS server `proxy`, its handshake done.
pub async fn through_socks(
    proxy: &super::route::SocksProxy,
    host: &str,
    port: u16,
    config: &Config,
) -> Result<Dialed, Failure> {
    let d = dial(&proxy.host, proxy.port, config, Side::UpstreamProxy).await?;
    let started = Instant::now();
    let stream = super::socks::handshake(proxy, d.stream, host, port, config).await?;
    Ok(Dialed {
        stream,
        addr: d.addr,
        dns: d.dns,
        dns_answer: Vec::new(),
        connect: d.connect + started.elapsed(),
    })
}

/// A tunnel through a SOCKS server: the stream to splice.
async fn socks_tunnel(
    proxy: &super::route::SocksProxy,
    host: &str,
    port: u16,
    config: &Config,
) -> Result<Upstream, Failure> {
    through_socks(proxy, host, port, config).await.map(spliced)
}

/// A dialled TCP connection as a tunnel's upstream, which the relay can splice.
fn spliced(d: Dialed) -> Upstream {
    Upstream {
        io: Stream::Tcp {
            stream: d.stream,
            early: Bytes::new(),
        },
        addr: d.addr,
        dns: d.dns,
        dns_answer: d.dns_answer,
        connect: d.connect,
        proxy_connect: None,
        proxy_headers: Vec::new(),
        proxy_tls: None,
    }
}

async fn direct(host: &str, port: u16, config: &Config) -> Result<Upstream, Failure> {
    dial(host, port, config, Side::Upstream).await.map(spliced)
}

/// A tunnel through `proxy` (signing in as `config.upstream_auth` says; `auth` gets the
/// record of it).
pub async fn through(
    proxy: &UpstreamProxy,
    host: &str,
    port: u16,
    config: &Config,
    auth: &mut Option<AuthRecord>,
) -> Result<Upstream, Failure> {
    let d = dial(&proxy.host, proxy.port, config, Side::UpstreamProxy).await?;
    let started = Instant::now();
    let mut judged = None;
    let exchange = async {
        if !proxy.tls {
            return connect_through(d.stream, proxy, (host, port), config, auth).await;
        }
        let (tls, verdict) = proxy_tls(proxy, d.stream, config).await?;
        judged = Some(verdict);
        connect_through(tls, proxy, (host, port), config, auth).await
    };
    let (io, proxy_headers) = match tokio::time::timeout(config.response_timeout, exchange).await {
        Ok(result) => result?,
        Err(_) => {
            let detail = format!(
                "the corporate proxy did not answer CONNECT {} in {:?}",
                host_port(host, port),
                config.response_timeout
            );
            return Err(Failure::new(
                FailureKind::Timeout,
                Side::UpstreamProxy,
                detail,
            ));
        }
    };
    Ok(Upstream {
        io,
        addr: d.addr,
        dns: d.dns,
        dns_answer: Vec::new(),
        connect: d.connect,
        proxy_connect: Some(started.elapsed()),
        proxy_headers,
        proxy_tls: judged,
    })
}

/// TLS to an HTTPS proxy, its chain judged as any chain is: a proxy whose certificate
/// neither the public roots nor this machine trust is `proxy_tls_failed`, the verdict said.
pub async fn proxy_tls(
    proxy: &UpstreamProxy,
    stream: TcpStream,
    config: &Config,
) -> Result<
    (
        tokio_rustls::client::TlsStream<TcpStream>,
        crate::tls::chain::TlsVerdict,
    ),
    Failure,
> {
    let at = host_port(&proxy.host, proxy.port);
    let failed = |why: String| Failure::new(FailureKind::ProxyTlsFailed, Side::UpstreamProxy, why);
    let name =
        rustls::pki_types::ServerName::try_from(super::addr::unbracket(&proxy.host).to_string())
            .map_err(|_| failed(format!("{} is no name TLS can check", proxy.host)))?;
    let connector = tokio_rustls::TlsConnector::from(crate::tls::look::look_only_config(false));
    let tls = connector.connect(name, stream).await.map_err(|e| {
        failed(format!(
            "the TLS handshake with the HTTPS proxy {at} failed: {e}"
        ))
    })?;
    let chain: Vec<_> = tls
        .get_ref()
        .1
        .peer_certificates()
        .unwrap_or_default()
        .to_vec();
    let verdict = crate::tls::chain::judge(
        &chain,
        &proxy.host,
        &config.roots,
        &config.profile,
        rustls::pki_types::UnixTime::now(),
    )
    .map_err(|e| failed(format!("the HTTPS proxy {at}'s certificate: {e}")))?;
    if verdict.verdict == crate::tls::chain::Verdict::Untrusted {
        let why = verdict.reason.as_deref().unwrap_or("untrusted");
        return Err(failed(format!(
            "the HTTPS proxy {at} presents a certificate issued by {} that neither the public roots nor this machine trust ({why})",
            verdict.issuer
        )));
    }
    Ok((tls, verdict))
}

async fn connect_through<S>(
    stream: S,
    proxy: &UpstreamProxy,
    (host, port): (&str, u16),
    config: &Config,
    auth: &mut Option<AuthRecord>,
) -> Result<(Stream, Vec<(String, String)>), Failure>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let target = host_port(host, port);
    let mut connect = Connect::open(stream, &target).await?;
    let preemptive = proxy
        .authorization
        .as_deref()
        .filter(|_| config.upstream_auth.sends_url_basic())
        .and_then(|a| HeaderValue::from_str(a).ok());
    let mut response = connect.send(preemptive).await?;
    if response.status() == StatusCode::PROXY_AUTHENTICATION_REQUIRED
        && config.upstream_auth.mode != Mode::None
    {
        let who = auth::sign_in::Proxy {
            host: &proxy.host,
            port: proxy.port,
            url_basic: proxy.authorization.as_deref(),
            chosen: proxy.chosen,
        };
        let (result, record) =
            auth::sign_in::sign_in(response, &mut connect, &who, &config.upstream_auth).await;
        tracing::debug!("{}", record.line());
        *auth = Some(record);
        response = result?;
    }
    if response.status().is_success() {
        let said = crate::inspect::detect::evidence_headers(response.headers());
        let upgraded = hyper::upgrade::on(response).await.map_err(proxy_error)?;
        // Back to the TCP connection underneath, so the relay can splice it.
        let stream = match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => Stream::Tcp {
                stream: parts.io.into_inner(),
                early: parts.read_buf,
            },
            Err(upgraded) => Stream::Other(Box::new(TokioIo::new(upgraded))),
        };
        return Ok((stream, said));
    }
    Err(proxy_refusal(response, &format!("CONNECT {target}")).await)
}

/// What `proxy` answers a bare CONNECT to `host:port`, credentials none: its status and the
/// sign-in schemes it offers (`diagproxy auth-test`).
pub async fn ask(
    proxy: &UpstreamProxy,
    (host, port): (&str, u16),
    config: &Config,
) -> Result<(u16, Vec<auth::Challenge>), Failure> {
    let d = dial(&proxy.host, proxy.port, config, Side::UpstreamProxy).await?;
    let mut connect = Connect::open(d.stream, &host_port(host, port)).await?;
    let asked = tokio::time::timeout(config.response_timeout, connect.send(None)).await;
    let response = asked.map_err(|_| {
        Failure::new(
            FailureKind::Timeout,
            Side::UpstreamProxy,
            "no answer to CONNECT",
        )
    })??;
    let offered = auth::challenges(
        response
            .headers()
            .get_all(PROXY_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    Ok((response.status().as_u16(), offered))
}

fn proxy_error(e: hyper::Error) -> Failure {
    Failure::from_exchange_error(&e, Side::UpstreamProxy)
}

/// A CONNECT to one target on one connection to the corporate proxy, sent again with
/// credentials while signing in.
struct Connect {
    sender: SendRequest<Empty<Bytes>>,
    target: hyper::Uri,
}

impl Connect {
    /// An HTTP/1.1 connection to the proxy over `stream`, for CONNECTs to `target`.
    async fn open<S>(stream: S, target: &str) -> Result<Connect, Failure>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let target = target.parse().map_err(|_| {
            let why = format!("bad CONNECT target {target}");
            Failure::new(FailureKind::HttpError, Side::Downstream, why)
        })?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
                .await
                .map_err(proxy_error)?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!("corporate proxy connection: {e}");
            }
        });
        Ok(Connect { sender, target })
    }

    async fn send(
        &mut self,
        authorization: Option<HeaderValue>,
    ) -> Result<Response<Incoming>, Failure> {
        self.sender.ready().await.map_err(proxy_error)?;
        let mut request = Request::new(Empty::new());
        *request.method_mut() = Method::CONNECT;
        *request.uri_mut() = self.target.clone();
        let headers = request.headers_mut();
        if let Ok(value) = HeaderValue::from_str(&self.target.to_string()) {
            headers.insert(HOST, value);
        }
        if let Ok(value) = HeaderValue::from_str(super::route::via()) {
            headers.insert(hyper::header::VIA, value);
        }
        if let Some(value) = authorization {
            headers.insert(PROXY_AUTHORIZATION, value);
        }
        self.sender.send_request(request).await.map_err(proxy_error)
    }
}

impl auth::sign_in::Resend for Connect {
    async fn resend(&mut self, authorization: HeaderValue) -> Result<Response<Incoming>, Failure> {
        self.send(Some(authorization)).await
    }
}

/// Turns a corporate proxy's non-success answer into `upstream_proxy_auth` (407) or
/// `upstream_proxy_refused`, keeping its status and the start of its body.
pub async fn proxy_refusal(response: Response<Incoming>, what: &str) -> Failure {
    let status = response.status();
    let challenge = response
        .headers()
        .get(PROXY_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let evidence = crate::inspect::detect::evidence_headers(response.headers());
    let body = read_prefix(response.into_body(), PROXY_BODY_LIMIT).await;
    let (kind, mut detail) = if status == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
        let how = challenge.map_or(String::new(), |c| format!(" ({c})"));
        (
            FailureKind::UpstreamProxyAuth,
            format!("the corporate proxy wants credentials for {what}: 407{how}"),
        )
    } else {
        (
            FailureKind::UpstreamProxyRefused,
            format!("the corporate proxy refused {what}: {status}"),
        )
    };
    let said: Vec<String> = evidence
        .iter()
        .filter(|(name, _)| name != "content-type")
        .map(|(name, value)| format!("{name}: {value}"))
        .collect();
    if !said.is_empty() {
        detail.push_str(&format!(" ({})", said.join(", ")));
    }
    let mut failure = Failure::new(kind, Side::UpstreamProxy, detail);
    failure.proxy_status = Some(status.as_u16());
    failure.proxy_body = Some(body).filter(|b| !b.is_empty());
    failure.proxy_headers = evidence;
    failure
}

/// Reads at most `limit` bytes of a body, giving up after two seconds.
async fn read_prefix(mut body: Incoming, limit: usize) -> String {
    let mut buf = Vec::new();
    let read = async {
        while buf.len() < limit {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        buf.extend_from_slice(data);
                    }
                }
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), read).await;
    buf.truncate(limit);
    String::from_utf8_lossy(&buf).into_owned()
}

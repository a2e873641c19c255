//! One intercepted tunnel's connections to the origin, over diagproxy's own TLS: HTTP/2 when
//! the client chose h2 and the origin offers it (one multiplexed connection, which the
//! requests that arrive while it is being opened wait for), else a small pool of HTTP/1.1
//! connections. Every new connection's chain is judged; an untrusted chain
//! is refused as a browser on this machine would refuse it (public ∪ machine roots).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper::header::{HeaderMap, HeaderValue, HOST, USER_AGENT};
use hyper::{Request, Response, Uri, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{ServerName, UnixTime};

use crate::clock::{self, ms};
use crate::failure::{Failure, FailureKind, Side};
use crate::inspect::detect::{self, TunnelSight};
use crate::inspect::explain;
use crate::proxy::body::Body;
use crate::proxy::exchange;
use crate::proxy::Shared;
use crate::session::event::{ChainSource, Downstream, Event, RequestEvent, TlsCheckEvent};
use crate::tls::chain::{self, TlsVerdict, Verdict};
use crate::tls::probe;
use crate::upstream::dial::{self, Io};
use crate::upstream::route::Taken;
use crate::upstream::sighted::Watch;

/// Why a request could not be sent upstream: the failure, and the verdict when the chain
/// was the reason (for the page the browser gets).
pub struct SendError {
    pub failure: Failure,
    pub tls: Option<Box<TlsVerdict>>,
}

impl From<Failure> for SendError {
    fn from(failure: Failure) -> SendError {
        SendError { failure, tls: None }
    }
}

/// What every request of one intercepted connection shares.
pub struct Ctx {
    pub state: Shared,
    pub origin: Origin,
    pub downstream: Downstream,
    /// Requests served on this connection (0 at close means the client gave up).
    pub served: AtomicU64,
    /// Ends when a WebSocket this connection was upgraded to closes: the tunnel's line is
    /// written then, so its duration and bytes are the WebSocket's whole life.
    pub upgraded: Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
}

impl Ctx {
    /// Counts a request on this connection and says who asked: the connection's client,
    /// with the request's User-Agent when it has one.
    pub fn begin_request(&self, headers: &HeaderMap) -> Downstream {
        self.served.fetch_add(1, Ordering::Relaxed);
        let mut downstream = self.downstream.clone();
        if let Some(agent) = exchange::header_string(headers, &USER_AGENT) {
            downstream.user_agent = Some(agent);
        }
        downstream
    }
}

/// The origin side of one intercepted tunnel.
pub struct Origin {
    pub host: String,
    pub port: u16,
    /// `host` or `host:port`, as the Host header and `:authority`.
    authority: String,
    state: Shared,
    /// Offer h2 to the origin only when the downstream chose h2 with us: the origin then
    /// speaks the protocol the client would have spoken without diagproxy.
    offer_h2: bool,
    /// The multiplexed HTTP/2 connection, once the origin chose h2.
    h2: Mutex<Option<http2::SendRequest<Body>>>,
    /// Idle HTTP/1.1 connections.
    idle: Mutex<Vec<http1::SendRequest<Body>>>,
    /// Held by the request that connects while h2 is offered: a browser's streams arrive
    /// together, and the rest wait for that connection instead of each opening their own.
    connecting: tokio::sync::Mutex<()>,
    /// The origin answered a connection with HTTP/1.1: requests then connect side by side.
    h1_only: AtomicBool,
    /// The way out the last connection took: each request's event carries it.
    route: Mutex<Taken>,
}

/// How long a request waits while another connects to the same origin, hoping to share its
/// HTTP/2 connection; past it (a slow or failing origin) it connects on its own.
const CONNECT_TURN: Duration = Duration::from_secs(3);

/// An HTTP/1.1 connection to hand back when its response body is done.
pub type Reusable = Option<http1::SendRequest<Body>>;

enum Fresh {
    H1(http1::SendRequest<Body>),
    H2(http2::SendRequest<Body>),
}

impl Origin {
    pub fn new(host: String, port: u16, offer_h2: bool, state: Shared) -> Origin {
        let authority = if port == 443 {
            host.clone()
        } else {
            crate::upstream::addr::join(&host, port)
        };
        Origin {
            host,
            port,
            authority,
            state,
            offer_h2,
            h2: Mutex::default(),
            idle: Mutex::default(),
            connecting: tokio::sync::Mutex::new(()),
            h1_only: AtomicBool::new(false),
            route: Mutex::default(),
        }
    }

    /// The way out the last connection to the origin took.
    pub fn route(&self) -> Taken {
        self.route.lock().map(|r| r.clone()).unwrap_or_default()
    }

    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// Sends `req` (any URI form) on an open connection if one is free, else on a new one.
    pub async fn send(
        &self,
        req: Request<Body>,
        event: &mut RequestEvent,
    ) -> Result<(Response<Incoming>, Reusable), SendError> {
        let mut req = req;
        if let Some(sender) = self.ready_h2().await {
            return self.send_h2(sender, req, event).await;
        }
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        if let Some(mut sender) = idle.filter(|s| !s.is_closed()) {
            if sender.ready().await.is_ok() {
                let sent = Instant::now();
                match sender.try_send_request(self.shape(req, false)).await {
                    Ok(response) => {
                        event.upstream_protocol = Some("http/1.1".into());
                        event.reused = true;
                        event.timings.wait_ms = Some(ms(sent.elapsed()));
                        return Ok((response, Some(sender)));
                    }
                    Err(mut e) => match e.take_message() {
                        Some(unsent) => req = unsent,
                        None => return Err(self.exchange_error(&e.into_error()).into()),
                    },
                }
            }
        }
        let turn = self.connect_turn().await;
        if let Some(sender) = self.ready_h2().await {
            drop(turn);
            return self.send_h2(sender, req, event).await;
        }
        let sent = Instant::now();
        // Boxed: the dial and TLS handshake are kilobytes of state, needed once per
        // connection, and inline they would be copied with every request's future.
        // The turn ends once the connection is shared (or known to be HTTP/1.1), before its
        // first request is answered; a failed connect ends it at the `?`.
        let result = match Box::pin(self.connect(event, self.offer_h2)).await? {
            Fresh::H2(mut sender) => {
                if let Ok(mut h2) = self.h2.lock() {
                    *h2 = Some(sender.clone());
                }
                drop(turn);
                let response = sender
                    .send_request(self.shape(req, true))
                    .await
                    .map_err(|e| self.exchange_error(&e))?;
                (response, None)
            }
            Fresh::H1(mut sender) => {
                self.h1_only.store(true, Ordering::Relaxed);
                drop(turn);
                let response = sender
                    .send_request(self.shape(req, false))
                    .await
                    .map_err(|e| self.exchange_error(&e))?;
                (response, Some(sender))
            }
        };
        event.timings.wait_ms = Some(ms(sent.elapsed()));
        Ok(result)
    }

    /// The origin's HTTP/2 connection, when one is open and takes another stream.
    async fn ready_h2(&self) -> Option<http2::SendRequest<Body>> {
        let shared = self.h2.lock().ok().and_then(|h| h.clone());
        let mut sender = shared.filter(|s| !s.is_closed())?;
        sender.ready().await.ok()?;
        Some(sender)
    }

    /// Sends `req` as a stream of the origin's HTTP/2 connection (one another request
    /// opened, so the event counts it reused).
    async fn send_h2(
        &self,
        mut sender: http2::SendRequest<Body>,
        req: Request<Body>,
        event: &mut RequestEvent,
    ) -> Result<(Response<Incoming>, Reusable), SendError> {
        event.upstream_protocol = Some("h2".into());
        event.reused = true;
        let sent = Instant::now();
        let response = sender
            .send_request(self.shape(req, true))
            .await
            .map_err(|e| self.exchange_error(&e))?;
        event.timings.wait_ms = Some(ms(sent.elapsed()));
        Ok((response, None))
    }

    /// The turn to connect, while h2 is offered and the origin has not answered with
    /// HTTP/1.1: whoever holds it is connecting, and the next may find its connection.
    /// `None` (connect at once) for HTTP/1.1 origins, or after waiting [`CONNECT_TURN`].
    async fn connect_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        if !self.offer_h2 || self.h1_only.load(Ordering::Relaxed) {
            return None;
        }
        let turn = tokio::time::timeout(CONNECT_TURN, self.connecting.lock())
            .await
            .ok()?;
        // The origin chose HTTP/1.1 while this request waited: no connection to share.
        (!self.h1_only.load(Ordering::Relaxed)).then_some(turn)
    }

    /// A fresh HTTP/1.1 connection with upgrades, for WebSocket.
    pub async fn connect_for_upgrade(
        &self,
        event: &mut RequestEvent,
    ) -> Result<http1::SendRequest<Body>, SendError> {
        match self.connect(event, false).await? {
            Fresh::H1(sender) => Ok(sender),
            Fresh::H2(_) => Err(Failure::new(
                FailureKind::HttpError,
                Side::Upstream,
                "the origin insisted on HTTP/2 for a WebSocket upgrade",
            )
            .into()),
        }
    }

    /// Returns an HTTP/1.1 connection whose exchange finished cleanly.
    pub fn put_back(&self, sender: http1::SendRequest<Body>) {
        if let Ok(mut idle) = self.idle.lock() {
            if !sender.is_closed() && idle.len() < 8 {
                idle.push(sender);
            }
        }
    }

    /// The request as the chosen protocol wants it: absolute URI and no Host for h2,
    /// origin-form and Host for HTTP/1.1.
    pub fn shape(&self, mut req: Request<Body>, h2: bool) -> Request<Body> {
        let path = req
            .uri()
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_string();
        if h2 {
            *req.version_mut() = Version::HTTP_2;
            req.headers_mut().remove(HOST);
            if let Ok(uri) = format!("https://{}{path}", self.authority).parse::<Uri>() {
                *req.uri_mut() = uri;
            }
        } else {
            *req.version_mut() = Version::HTTP_11;
            if let Ok(value) = HeaderValue::from_str(&self.authority) {
                req.headers_mut().insert(HOST, value);
            }
            if let Ok(uri) = path.parse::<Uri>() {
                *req.uri_mut() = uri;
            }
        }
        req
    }

    fn exchange_error(&self, e: &hyper::Error) -> Failure {
        Failure::from_exchange_error(e, Side::Upstream)
    }

    async fn connect(&self, event: &mut RequestEvent, offer_h2: bool) -> Result<Fresh, SendError> {
        let tls = self.open(event, offer_h2).await?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(tls);
        let fail = |e: hyper::Error| Failure::from_exchange_error(&e, Side::Upstream);
        if h2 {
            event.upstream_protocol = Some("h2".into());
            let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(fail)?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!("h2 origin connection ended: {e}");
                }
            });
            return Ok(Fresh::H2(sender));
        }
        event.upstream_protocol = Some("http/1.1".into());
        let (sender, conn) = http1::handshake(io).await.map_err(fail)?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!("origin connection ended: {e}");
            }
        });
        Ok(Fresh::H1(sender))
    }

    /// A new HTTP/1.1 connection as a byte stream, for the lean path (`h1`).
    pub async fn open_h1(&self, event: &mut RequestEvent) -> Result<Box<dyn Io>, SendError> {
        let tls = self.open(event, false).await?;
        event.upstream_protocol = Some("http/1.1".into());
        Ok(Box::new(tls))
    }

    /// Dials (directly or through the corporate proxy), shakes hands over TLS and judges the
    /// chain; an untrusted chain is refused.
    async fn open(
        &self,
        event: &mut RequestEvent,
        offer_h2: bool,
    ) -> Result<tokio_rustls::client::TlsStream<Box<dyn Io>>, SendError> {
        let upstream = self.dial(event).await?;
        let name = ServerName::try_from(self.host.clone()).map_err(|_| {
            Failure::new(
                FailureKind::TlsFailed,
                Side::Upstream,
                format!("{:?} is not a server name", self.host),
            )
        })?;
        let handshake_started = Instant::now();
        let connector = tokio_rustls::TlsConnector::from(probe::look_only_config(offer_h2));
        let watch = Watch::default();
        let io: Box<dyn Io> = Box::new(watch.wrap(upstream.io.into_io()));
        let handshake = connector.connect(name, io);
        let tls = match tokio::time::timeout(detect::NO_SERVER_HELLO, handshake).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => return Err(self.handshake_failed(event, &watch, Some(e)).into()),
            Err(_) => return Err(self.handshake_failed(event, &watch, None).into()),
        };
        watch.finish();
        event.timings.ssl_ms = Some(ms(handshake_started.elapsed()));
        let chain: Vec<_> = tls
            .get_ref()
            .1
            .peer_certificates()
            .unwrap_or_default()
            .iter()
            .map(|c| c.clone().into_owned())
            .collect();
        let verdict = self.judge(&chain)?;
        if verdict.verdict == Verdict::Untrusted {
            let by = verdict
                .vendor
                .as_deref()
                .map_or(String::new(), |v| format!(" ({v})"));
            let detail = format!(
                "the certificate for {} is issued by {}{by}, which neither the public roots nor this machine trust ({})",
                self.host,
                verdict.issuer,
                verdict.reason.as_deref().unwrap_or("-")
            );
            return Err(SendError {
                failure: Failure::new(FailureKind::TlsFailed, Side::Upstream, detail),
                tls: Some(Box::new(verdict)),
            });
        }
        Ok(tls)
    }

    /// The upstream side along the host's route, recorded in `event` (route, address,
    /// timings, what the route and the DNS answer show); a failure with its findings.
    async fn dial(&self, event: &mut RequestEvent) -> Result<dial::Upstream, SendError> {
        let config = &self.state.config;
        let (taken, opened) = dial::open_tunnel(&self.host, self.port, config).await;
        if let Ok(mut route) = self.route.lock() {
            route.clone_from(&taken);
        }
        event.route = taken;
        let upstream = match opened {
            Ok(upstream) => upstream,
            Err(failure) => {
                // A block page in the corporate proxy's refusal, a sinkhole answer: named
                // as in tunnel mode.
                let url = format!("https://{}/", self.authority());
                let (host, port) = (&self.host, self.port);
                let found = self
                    .state
                    .failure_findings(host, &failure, &url, port, &event.route);
                event.findings.extend(found);
                return Err(failure.into());
            }
        };
        let on_route = self.state.route_findings(&self.host, &event.route, None);
        event.findings.extend(on_route);
        event.server_ip = Some(upstream.addr.ip().to_string());
        event.findings.extend(crate::inspect::detect::dns_sinkhole(
            &self.host,
            &upstream.dns_answer,
            &config.profile,
        ));
        event.timings.dns_ms = upstream.dns.map(ms);
        event.timings.connect_ms = Some(ms(upstream.connect));
        event.timings.proxy_connect_ms = upstream.proxy_connect.map(ms);
        Ok(upstream)
    }

    /// Names a failed upstream handshake as a tunnel would (reset right after the
    /// ClientHello, plaintext answer, silence), with the tunnel detectors' findings on what
    /// the upstream sent; `error` is `None` when it said nothing for
    /// [`detect::NO_SERVER_HELLO`].
    fn handshake_failed(
        &self,
        event: &mut RequestEvent,
        watch: &Watch,
        error: Option<std::io::Error>,
    ) -> Failure {
        let (first, died) = watch.seen();
        let sight = TunnelSight {
            host: &self.host,
            client_hello: true,
            first_upstream: &first,
            bytes_down: first.len() as u64,
            upstream_died: died && first.is_empty(),
            silent_for: (error.is_none() && first.is_empty()).then_some(detect::NO_SERVER_HELLO),
        };
        let found = detect::tunnel_findings(&sight, &self.state.config.profile);
        let url = format!("https://{}/", self.authority());
        let reproduce = self
            .state
            .reproduce(&url, &self.host, self.port, event.route.hop.as_ref());
        event.findings.extend(
            found
                .into_iter()
                .map(|f| f.with_reproduce(Some(reproduce.clone()))),
        );
        explain::handshake_failure(self.authority(), &first, died, error.as_ref())
    }

    /// Judges the chain (reusing the verdict when the leaf is the one judged last), and
    /// records the first verdict per host:port of the session.
    fn judge(
        &self,
        chain: &[rustls::pki_types::CertificateDer<'static>],
    ) -> Result<TlsVerdict, SendError> {
        let key = (self.host.to_ascii_lowercase(), self.port);
        let leaf = chain.first().map(|c| c.to_vec()).unwrap_or_default();
        let cached = self
            .state
            .verdicts
            .lock()
            .ok()
            .and_then(|mut v| v.get(&key).filter(|(l, _)| *l == leaf).map(|(_, v)| v));
        if let Some(verdict) = cached {
            return Ok(verdict);
        }
        let config = &self.state.config;
        let verdict = chain::judge(
            chain,
            &self.host,
            &config.roots,
            &config.profile,
            UnixTime::now(),
        )
        .map_err(|e| SendError::from(Failure::new(FailureKind::TlsFailed, Side::Upstream, e)))?;
        if let Ok(mut verdicts) = self.state.verdicts.lock() {
            verdicts.insert(key.clone(), (leaf, verdict.clone()));
        }
        let first = self.state.first_check(&key.0, key.1);
        if first {
            let check = TlsCheckEvent {
                ts: clock::rfc3339(std::time::SystemTime::now()),
                host: key.0,
                port: key.1,
                via: ChainSource::Interception,
                tls: Some(verdict.clone()),
                error: None,
            };
            self.state.recorder.record(Event::TlsCheck(Box::new(check)));
        }
        Ok(verdict)
    }
}

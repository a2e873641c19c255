//! Interception (`--intercept`): the CONNECT is answered 200, the downstream's TLS is
//! accepted with a leaf minted for the host, and each request inside (HTTP/1.1 or HTTP/2, as
//! the client chose; the origin is offered the same; simple HTTP/1.1 requests take the lean
//! path in `h1`) is sent to the origin over diagproxy's own TLS and recorded. Bodies stream
//! both ways (event streams arrive as they are sent); WebSocket upgrades are relayed. A
//! client that refuses the certificate is recorded as `client_rejected_ca` and, unless
//! `--no-auto-passthrough`, tunnelled untouched afterwards.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, CONNECTION, UPGRADE};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};

use super::origin::{Ctx, Origin};
use crate::clock::{self, ms};
use crate::failure::{Failure, FailureKind, Side};
use crate::proxy::body::{empty, Body, Counted};
use crate::proxy::exchange::{self, Asked};
use crate::proxy::hop::strip_hop_by_hop;
use crate::proxy::pages::answer;
use crate::proxy::{OpenGuard, Shared};
use crate::session::event::{
    ClientRejectedEvent, Downstream, Event, Payload, RequestEvent, Timings, TunnelEnd, TunnelEvent,
    TunnelMode,
};
use crate::shutdown::Shutdown;
use crate::upstream::dial::Prefixed;
use crate::upstream::sighted::{Counts, Tapped};

/// A client that closes this soon after the handshake without a request most likely
/// rejected the certificate (pinning apps do this instead of sending an alert).
const QUICK_CLOSE: Duration = Duration::from_secs(2);

pub async fn connect(
    req: Request<Incoming>,
    downstream: Downstream,
    host: String,
    port: u16,
    state: Shared,
    shutdown: Shutdown,
) -> Response<Body> {
    let Some(minter) = state.minter.clone() else {
        return answer::plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "diagproxy: interception is not set up\n".into(),
        );
    };
    let server_config = match minter.server_config(&host) {
        Ok(config) => config,
        Err(e) => {
            let reason = format!("cannot mint a certificate for {host}: {e}");
            return answer::refuse(
                &state,
                downstream,
                "CONNECT",
                &host,
                StatusCode::BAD_GATEWAY,
                &reason,
            );
        }
    };
    let guard = OpenGuard::new(&state);
    tokio::spawn(async move {
        let _open = guard;
        accept(req, server_config, host, port, state, downstream, shutdown).await;
    });
    Response::new(empty())
}

/// The client's TLS accepted with the minted leaf, its requests served, the tunnel recorded.
/// Every way it ends leaves a tunnel event: a client that sends no TLS, fails or stalls in
/// its handshake is recorded with a named `client_*` failure (its side: downstream).
async fn accept(
    req: Request<Incoming>,
    server_config: Arc<rustls::ServerConfig>,
    host: String,
    port: u16,
    state: Shared,
    downstream: Downstream,
    shutdown: Shutdown,
) {
    let started = Instant::now();
    let ts = clock::rfc3339(SystemTime::now());
    let record = |alpn: Vec<String>, failure: Option<Failure>, counts: &Counts| {
        let mut record = intercepted_record(&state, ts.clone(), &host, port, alpn, &downstream);
        record.timings.total_ms = ms(started.elapsed());
        (record.bytes_up, record.bytes_down) = counts.get();
        if let Some(failure) = failure {
            record.end = TunnelEnd::Failed;
            record.failure = Some(failure);
        }
        state.recorder.record(Event::Tunnel(Box::new(record)));
    };
    let counts = Counts::default();
    let Ok(upgraded) = hyper::upgrade::on(req).await else {
        let why = "the client left before its tunnel was set up".to_string();
        return record(
            Vec::new(),
            Some(client(FailureKind::ClientHandshakeFailed, why)),
            &counts,
        );
    };
    let tls = match handshake(upgraded, server_config, &counts, &state).await {
        Ok(tls) => tls,
        Err(end) => {
            let failure = match end {
                HandshakeEnd::Refused(detail) => {
                    rejected(&state, &host, port, &downstream, detail);
                    None
                }
                HandshakeEnd::Closed(failure) => {
                    quiet_close(&state, &host, port, &downstream, "during the TLS handshake");
                    Some(failure)
                }
                HandshakeEnd::Failed(failure) => Some(failure),
            };
            return record(Vec::new(), failure, &counts);
        }
    };
    let alpn: Vec<String> = tls
        .get_ref()
        .1
        .alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .into_iter()
        .collect();
    // The connection's handle goes to its server; this one keeps the shutdown waiting
    // until the tunnel's own event below is recorded (without it a session ending just as
    // the client left could close its files first and drop that event).
    let held = shutdown.clone();
    let ctx = serve_connection(tls, &alpn, &host, port, &state, &downstream, shutdown).await;
    let websocket = ctx.upgraded.lock().ok().and_then(|mut u| u.take());
    if let Some(closed) = websocket {
        let _ = closed.await;
    }
    let served = ctx.served.load(Ordering::Relaxed);
    if served > 0 {
        state.trust.served(&host, port);
    } else if started.elapsed() < QUICK_CLOSE {
        quiet_close(
            &state,
            &host,
            port,
            &downstream,
            "right after the TLS handshake",
        );
    }
    // The client's side of the tunnel, TLS included, as a tunnel's line counts it.
    record(alpn, None, &counts);
    drop(held);
}

/// The most of a non-TLS client's first bytes kept in its failure.
const FIRST_BYTES: usize = 64;

/// The client after its CONNECT: a TLS record must come first.
type Client = Prefixed<Tapped<TokioIo<hyper::upgrade::Upgraded>>>;

/// How a client's handshake ended short of a session.
enum HandshakeEnd {
    /// A certificate alert: the client refuses diagproxy's CA (`client_rejected_ca`).
    Refused(String),
    /// The client closed during the handshake (maybe a quiet refusal).
    Closed(Failure),
    /// Not TLS, another TLS error, or a stall.
    Failed(Failure),
}

/// The client's first bytes (within `--header-timeout`), judged, then its TLS handshake.
async fn handshake(
    upgraded: hyper::upgrade::Upgraded,
    server_config: Arc<rustls::ServerConfig>,
    counts: &Counts,
    state: &Shared,
) -> Result<tokio_rustls::server::TlsStream<Client>, HandshakeEnd> {
    use tokio::io::AsyncReadExt;
    let limit = state.config.header_timeout;
    let stalled = || {
        // A client that never finishes its handshake holds nothing for long.
        state.limits.header_timed_out();
        let why = format!("no TLS handshake from the client within {limit:?} (--header-timeout)");
        HandshakeEnd::Failed(client(FailureKind::ClientHandshakeTimeout, why))
    };
    let mut tapped = counts.wrap(TokioIo::new(upgraded));
    let mut first = vec![0u8; 4096];
    let n = match tokio::time::timeout(limit, tapped.read(&mut first)).await {
        Err(_) => return Err(stalled()),
        Ok(Err(e)) => {
            let why = format!("reading the client's first bytes: {e}");
            return Err(HandshakeEnd::Closed(client(
                FailureKind::ClientHandshakeFailed,
                why,
            )));
        }
        Ok(Ok(n)) => n,
    };
    first.truncate(n);
    if let Some(failure) = not_tls(&first) {
        return Err(HandshakeEnd::Failed(failure));
    }
    let stream = Prefixed::new(bytes::Bytes::from(first), tapped);
    let accepting = tokio_rustls::TlsAcceptor::from(server_config).accept(stream);
    let e = match tokio::time::timeout(limit, accepting).await {
        Err(_) => return Err(stalled()),
        Ok(Ok(tls)) => return Ok(tls),
        Ok(Err(e)) => e,
    };
    if let Some(detail) = rejection(&e) {
        return Err(HandshakeEnd::Refused(detail));
    }
    let why = format!("the client's TLS handshake failed: {e}");
    let failure = client(FailureKind::ClientHandshakeFailed, why);
    Err(match e.kind() {
        std::io::ErrorKind::UnexpectedEof => HandshakeEnd::Closed(failure),
        _ => HandshakeEnd::Failed(failure),
    })
}

/// `client_not_tls` when the first bytes are not a TLS handshake record (`0x16`), quoting
/// them (terminal-safe, at most [`FIRST_BYTES`]); nothing for an empty read (a close).
fn not_tls(first: &[u8]) -> Option<Failure> {
    match first.first() {
        None => Some(client(
            FailureKind::ClientHandshakeFailed,
            "the client closed without sending anything after its CONNECT".into(),
        )),
        Some(0x16) => None,
        Some(_) => {
            let shown = &first[..first.len().min(FIRST_BYTES)];
            let text = String::from_utf8_lossy(shown);
            let why = format!(
                "the client sent {} byte(s) that are not TLS after its CONNECT: {:?}",
                first.len(),
                crate::text::terminal(&text, false)
            );
            Some(client(FailureKind::ClientNotTls, why))
        }
    }
}

fn client(kind: FailureKind, detail: String) -> Failure {
    Failure::new(kind, Side::Downstream, detail)
}

/// Serves one accepted connection (HTTP/2, or HTTP/1.1 on the lean path first) until it
/// ends; returns what its requests shared.
async fn serve_connection<S>(
    tls: S,
    alpn: &[String],
    host: &str,
    port: u16,
    state: &Shared,
    downstream: &Downstream,
    mut shutdown: Shutdown,
) -> Arc<Ctx>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let h2 = alpn.iter().any(|p| p == "h2");
    let ctx = Arc::new(Ctx {
        origin: Origin::new(host.to_string(), port, h2, state.clone()),
        state: state.clone(),
        downstream: downstream.clone(),
        served: AtomicU64::new(0),
        upgraded: Mutex::new(None),
    });
    if h2 {
        serve(tls, ctx.clone(), shutdown).await;
    } else {
        if let Some(rest) =
            crate::proxy::h1::serve_intercepted(tls, ctx.clone(), &mut shutdown).await
        {
            serve(rest, ctx.clone(), shutdown).await;
        }
    }
    ctx
}

/// The intercepted tunnel's event, once its connection is over.
fn intercepted_record(
    state: &Shared,
    ts: String,
    host: &str,
    port: u16,
    alpn: Vec<String>,
    downstream: &Downstream,
) -> TunnelEvent {
    TunnelEvent {
        ts,
        mode: TunnelMode::Intercept,
        allowlist: state
            .config
            .profile
            .match_host(host)
            .map(|e| e.pattern.clone()),
        sni: Some(host.to_string()),
        host: host.to_string(),
        port,
        alpn,
        payload: Payload::Tls,
        first_bytes: None,
        server_ip: None,
        route: Default::default(),
        downstream: downstream.clone(),
        timings: Timings::default(),
        bytes_up: 0,
        bytes_down: 0,
        end: TunnelEnd::DownstreamClosed,
        failure: None,
        findings: Vec::new(),
    }
}

/// Serves the rest of an intercepted connection with hyper (HTTP/2, and HTTP/1.1 requests the
/// lean path leaves: upgrades, chunked uploads, …).
pub async fn serve<S>(tls: S, ctx: Arc<Ctx>, mut shutdown: Shutdown)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let ctx_timeout = ctx.state.config.header_timeout;
    let service = service_fn(move |req| {
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(handle(req, ctx).await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(ctx_timeout);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = shutdown.recv() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!("intercepted connection ended: {e}");
    }
}

/// An alert or early close during the handshake that means "I do not trust you".
/// A certificate alert from the client during the handshake (see `trust`).
fn rejection(e: &std::io::Error) -> Option<String> {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::AlertReceived(alert)) if super::trust::refuses_certificate(alert) => {
            Some(format!("TLS alert {alert:?} during the handshake"))
        }
        _ => None,
    }
}

/// A quick close without a request: a refusal only when it is the `QUIET_CLOSES`th in a
/// row on a host:port that never served one (a browser's spare connections close so too).
fn quiet_close(state: &Shared, host: &str, port: u16, downstream: &Downstream, when: &str) {
    if state.trust.quiet_close(host, port) {
        let detail = format!(
            "closed {} connections in a row {when}, without a request, and none ever sent one (certificate pinning?)",
            super::trust::QUIET_CLOSES
        );
        rejected(state, host, port, downstream, detail);
    }
}

fn rejected(state: &Shared, host: &str, port: u16, downstream: &Downstream, detail: String) {
    let passthrough = state.config.auto_passthrough;
    if passthrough {
        state.trust.pass_through(host, port);
    }
    let event = ClientRejectedEvent {
        ts: clock::rfc3339(SystemTime::now()),
        host: host.to_string(),
        port,
        downstream: downstream.clone(),
        detail,
        passthrough,
    };
    state
        .recorder
        .record(Event::ClientRejectedCa(Box::new(event)));
}

async fn handle(mut req: Request<Incoming>, ctx: Arc<Ctx>) -> Response<Body> {
    let downstream = ctx.begin_request(req.headers());
    let started = Instant::now();
    let state = &ctx.state;
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_string();
    let accept = exchange::header_string(req.headers(), &ACCEPT);
    let wants_html = answer::wants_html(accept.as_deref());
    let url = format!("https://{}{path}", ctx.origin.authority());
    let request_line = exchange::RequestLine {
        method: req.method().to_string(),
        url: &url,
        host: ctx.origin.host.clone(),
        port: ctx.origin.port,
    };
    let mut event =
        exchange::begin_event(state, req.headers().clone(), request_line, downstream, true);
    event.route = ctx.origin.route();
    if is_upgrade(&req) {
        let on_downstream = hyper::upgrade::on(&mut req);
        // Boxed: inline, this rare path's state would be copied with every request's future
        // (see H2_REQUEST_FUTURE_BUDGET in the tests).
        return Box::pin(upgrade(
            req,
            on_downstream,
            ctx.clone(),
            event,
            started,
            wants_html,
        ))
        .await;
    }
    let guard = OpenGuard::request(state, &event);
    let bytes_up = Arc::new(AtomicU64::new(0));
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(hyper::header::EXPECT);
    let upstream_req = Request::from_parts(parts, Counted::new(body, bytes_up.clone()).boxed());
    let sent = tokio::time::timeout(
        state.config.response_timeout,
        ctx.origin.send(upstream_req, &mut event),
    )
    .await
    .unwrap_or_else(|_| {
        let waited = state.config.response_timeout;
        Err(Failure::no_response_head(Side::Upstream, waited).into())
    });
    let (response, reusable) = match sent {
        Ok(ok) => ok,
        Err(e) => {
            return answer::intercepted_failure(&ctx, event, e, started, &bytes_up, wants_html)
        }
    };
    let asked = Asked {
        path,
        accept,
        intercepted: true,
        started,
        bytes_up,
    };
    let origin_end = ctx.clone();
    exchange::relay(state, response, event, asked, guard, move || {
        if let Some(sender) = reusable {
            origin_end.origin.put_back(sender);
        }
    })
}

fn is_upgrade(req: &Request<Incoming>) -> bool {
    req.headers().contains_key(UPGRADE)
        && req
            .headers()
            .get(CONNECTION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.to_ascii_lowercase().contains("upgrade"))
}

/// Relays a WebSocket (or other HTTP/1.1 upgrade): the handshake goes to the origin on a
/// connection of its own; after a 101 both sides' bytes are copied until either closes.
async fn upgrade(
    req: Request<Incoming>,
    on_downstream: hyper::upgrade::OnUpgrade,
    ctx: Arc<Ctx>,
    mut event: RequestEvent,
    started: Instant,
    wants_html: bool,
) -> Response<Body> {
    let mut sender = match ctx.origin.connect_for_upgrade(&mut event).await {
        Ok(sender) => sender,
        Err(e) => {
            return answer::intercepted_failure(
                &ctx,
                event,
                e,
                started,
                &AtomicU64::new(0),
                wants_html,
            )
        }
    };
    let wants_websocket = req
        .headers()
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let (parts, body) = req.into_parts();
    let upstream_req = ctx.origin.shape(
        Request::from_parts(parts, body.boxed_unsync_to_box()),
        false,
    );
    let mut response = match sender.send_request(upstream_req).await {
        Ok(response) => response,
        Err(e) => {
            return answer::intercepted_failure(
                &ctx,
                event,
                Failure::from_exchange_error(&e, Side::Upstream).into(),
                started,
                &AtomicU64::new(0),
                wants_html,
            )
        }
    };
    event.status = Some(response.status().as_u16());
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        event
            .findings
            .extend(upgrade_refused(&ctx, &event, wants_websocket));
        event.complete = true;
        event.timings.total_ms = ms(started.elapsed());
        ctx.state.recorder.record(Event::Request(Box::new(event)));
        return response.map(|b| b.boxed_unsync_to_box());
    }
    let ends = (on_downstream, hyper::upgrade::on(&mut response));
    tokio::spawn(relay_websocket(ends, &ctx, event, started));
    let (parts, _) = response.into_parts();
    Response::from_parts(parts, empty())
}

/// `websocket_blocked` for a WebSocket upgrade answered without `101` when a corporate proxy
/// or a TLS-inspecting middlebox is on the way to the origin.
fn upgrade_refused(
    ctx: &Ctx,
    event: &RequestEvent,
    wants_websocket: bool,
) -> Option<crate::inspect::Finding> {
    if !wants_websocket {
        return None;
    }
    let (host, port) = (ctx.origin.host.as_str(), ctx.origin.port);
    let hop = event.route.hop.as_ref().filter(|h| h.proxy().is_some());
    let inspected = ctx
        .state
        .verdicts
        .lock()
        .ok()
        .and_then(|mut v| v.get(&(host.to_string(), port)))
        .filter(|(_, v)| v.verdict == crate::tls::chain::Verdict::Inspected)
        .map(|(_, v)| format!("a TLS-inspecting middlebox (issuer {})", v.issuer));
    let middlebox = hop.map(|h| format!("the proxy {h}")).or(inspected);
    let path = event
        .url
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|at| &rest[at..]))
        .unwrap_or("/");
    crate::inspect::detect::websocket_refused(
        host,
        path,
        event.status.unwrap_or(0),
        middlebox.as_deref(),
        &ctx.state.config.profile,
    )
}

/// Relays an upgraded connection (a WebSocket) both ways until it ends, then records its
/// request with the bytes and the whole lifetime; the tunnel's line waits for it (`upgraded`).
fn relay_websocket(
    (on_downstream, on_upstream): (hyper::upgrade::OnUpgrade, hyper::upgrade::OnUpgrade),
    ctx: &Arc<Ctx>,
    mut event: RequestEvent,
    started: Instant,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let state = ctx.state.clone();
    let guard = OpenGuard::new(&state);
    let (closed, on_close) = tokio::sync::oneshot::channel::<()>();
    if let Ok(mut upgraded) = ctx.upgraded.lock() {
        *upgraded = Some(on_close);
    }
    async move {
        let _open = (guard, closed);
        if let (Ok(down), Ok(up)) = tokio::join!(on_downstream, on_upstream) {
            let spliced = super::relay::streams(
                TokioIo::new(down),
                TokioIo::new(up),
                state.config.idle_timeout,
                |_| false,
                |_| false,
                std::future::pending(),
            )
            .await;
            event.bytes_up = spliced.bytes_up;
            event.bytes_down = spliced.bytes_down;
            event.complete = spliced.upstream_error.is_none();
            if let Some(e) = spliced.upstream_error {
                event.failure = Some(Failure::new(
                    FailureKind::Reset,
                    Side::Upstream,
                    format!("the upstream broke the WebSocket: {e}"),
                ));
            }
        }
        event.timings.total_ms = ms(started.elapsed());
        state.recorder.record(Event::Request(Box::new(event)));
    }
}

/// `Incoming` → the proxy's body type, for bodies passed along unwatched.
trait IntoBody {
    fn boxed_unsync_to_box(self) -> Body;
}

impl IntoBody for Incoming {
    fn boxed_unsync_to_box(self) -> Body {
        self.map_err(|e| Box::new(e) as crate::proxy::body::BoxError)
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The most bytes one HTTP/2 request's future may take. hyper's HTTP/2 server moves
    /// each request's future (into its stream, into the task it spawns for it), copying
    /// every byte each time: at 13,048 bytes (the upstream connect and the WebSocket
    /// upgrade inline) the copies were about 100,000 of the 221,000 instructions an
    /// intercepted h2 request cost (callgrind, docs/performance.md "2026-12-07, sixth");
    /// the rare paths boxed, 3,392 bytes. A change that puts a large future inline again
    /// fails here, where no timing on a noisy machine would show it.
    const H2_REQUEST_FUTURE_BUDGET: usize = 4096;

    /// The size of the future `f` returns.
    fn future_size<A, B, F, Fut>(_: F) -> usize
    where
        F: Fn(A, B) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    #[test]
    fn an_h2_requests_future_stays_small() {
        let size = future_size(handle);
        assert!(
            size <= H2_REQUEST_FUTURE_BUDGET,
            "handle's future is {size} bytes, over the {H2_REQUEST_FUTURE_BUDGET} budget: box the large, rare await (Box::pin) instead of raising it"
        );
    }
}

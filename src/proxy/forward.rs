//! Plain HTTP: absolute-form requests forwarded upstream (origin-form to the origin, or
//! absolute-form to the corporate proxy), bodies streamed both ways, hop-by-hop headers
//! removed (RFC 9110 §7.6.1), keep-alive kept through the pool.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, ACCEPT, EXPECT, HOST, PROXY_AUTHORIZATION};
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;

use super::body::{Body, Counted};
use super::exchange::{self, Asked};
use super::hop::strip_hop_by_hop;
use super::pages::answer;
use super::{OpenGuard, Shared};
use crate::clock::ms;
use crate::failure::{Failure, FailureKind, Side};
use crate::session::event::{Downstream, RequestEvent};
use crate::upstream::pool::PoolKey;
use crate::upstream::route::{Hop, ProxyKind, Taken, TakenHop};
use crate::upstream::{auth, dial};

pub async fn forward(
    req: Request<Incoming>,
    downstream: Downstream,
    state: Shared,
) -> Response<Body> {
    let started = Instant::now();
    let method = req.method().to_string();
    let mut url = req.uri().to_string();
    // Copied only when there is userinfo to drop.
    if let Some(bare) = crate::session::redact::without_userinfo_changed(&url) {
        url = bare;
    }
    let path = req.uri().path().to_string();
    let accept = exchange::header_string(req.headers(), &ACCEPT);
    let (authority, host, port) = match target(&req, &url, &state) {
        Ok(target) => target,
        Err((status, reason)) => {
            return answer::refuse(&state, downstream, &method, &url, status, &reason)
        }
    };
    let request_line = exchange::RequestLine {
        method,
        url: &url,
        host,
        port,
    };
    let mut event = exchange::begin_event(
        &state,
        req.headers().clone(),
        request_line,
        downstream,
        false,
    );
    let guard = OpenGuard::request(&state, &event);
    let bytes_up = Arc::new(AtomicU64::new(0));
    let request = upstream_request(req, &authority, bytes_up.clone());
    let exchange = exchange(request, &authority, &state, &mut event);
    let result = match tokio::time::timeout(state.config.response_timeout, exchange).await {
        Ok(result) => result,
        Err(_) => {
            let side = if via_proxy(&event) {
                Side::UpstreamProxy
            } else {
                Side::Upstream
            };
            Err(Failure::no_response_head(
                side,
                state.config.response_timeout,
            ))
        }
    };
    let (response, sender, key) = match result {
        Ok(ok) => ok,
        Err(failure) => return answer::request_failed(&state, event, failure, started, &bytes_up),
    };
    let on_route = state.route_findings(&event.host, &event.route, None);
    event.findings.extend(on_route);
    if via_proxy(&event) && response.status() == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
        let failure =
            dial::proxy_refusal(response, &format!("{} {}", event.method, event.url)).await;
        return answer::request_failed(&state, event, failure, started, &bytes_up);
    }
    let asked = Asked {
        path,
        accept,
        intercepted: false,
        started,
        bytes_up,
    };
    let pool_state = state.clone();
    exchange::relay(&state, response, event, asked, guard, move || {
        pool_state.pool.put(key, sender)
    })
}

/// Where an absolute-form request goes, or why it is refused (400 for a URL diagproxy
/// does not forward, 508 for this proxy itself).
fn target(
    req: &Request<Incoming>,
    url: &str,
    state: &Shared,
) -> Result<(hyper::http::uri::Authority, String, u16), (StatusCode, String)> {
    if req.uri().scheme_str() != Some("http") {
        let reason =
            format!("only http:// URLs are forwarded; send https through CONNECT (got {url})");
        return Err((StatusCode::BAD_REQUEST, reason));
    }
    let Some(authority) = req.uri().authority().cloned() else {
        return Err((StatusCode::BAD_REQUEST, "the URL has no host".into()));
    };
    let host = crate::upstream::addr::unbracket(authority.host()).to_string();
    let port = authority.port_u16().unwrap_or(80);
    if !crate::text::is_host(&host) {
        return Err((
            StatusCode::BAD_REQUEST,
            crate::proxy::pages::answer::not_a_host(&host),
        ));
    }
    if state.is_self(&host, port) {
        let reason = format!("{url} is this proxy itself; refusing to loop");
        return Err((StatusCode::LOOP_DETECTED, reason));
    }
    Ok((authority, host, port))
}

/// The request as any upstream gets it: absolute-form until [`shape`] fits it to a hop.
fn upstream_request(
    req: Request<Incoming>,
    authority: &hyper::http::uri::Authority,
    bytes_up: Arc<AtomicU64>,
) -> Request<Body> {
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    // diagproxy already answered any Expect: 100-continue itself by reading the body.
    parts.headers.remove(EXPECT);
    // RFC 9112 §3.2.2: the Host is the URL's authority (never its userinfo), whatever the
    // client wrote.
    let hostport = crate::upstream::addr::without_userinfo(authority.as_str());
    if let Ok(value) = HeaderValue::from_str(hostport) {
        parts.headers.insert(HOST, value);
    }
    if let Ok(value) = HeaderValue::from_str(crate::upstream::route::via()) {
        parts.headers.append(hyper::header::VIA, value);
    }
    parts.version = Version::HTTP_11;
    let body = Counted::new(body, bytes_up).boxed();
    Request::from_parts(parts, body)
}

/// Fits the request to `hop` and names the peer it goes to: origin-form to the origin,
/// absolute-form (with the proxy's credentials) to a corporate proxy.
fn shape(
    request: &mut Request<Body>,
    absolute: &Uri,
    hop: &Hop,
    authority: &hyper::http::uri::Authority,
) -> PoolKey {
    let headers = request.headers_mut();
    headers.remove(PROXY_AUTHORIZATION);
    match hop {
        Hop::Proxy(proxy) => {
            if let Some(auth) = proxy
                .authorization
                .as_deref()
                .and_then(|a| HeaderValue::from_str(a).ok())
            {
                headers.insert(PROXY_AUTHORIZATION, auth);
            }
            *request.uri_mut() = absolute.clone();
            (proxy.host.clone(), proxy.port)
        }
        // Through a SOCKS server the request goes as to the origin, on the SOCKS connection.
        Hop::Direct | Hop::Socks(_) => {
            let origin_form = absolute.path_and_query().map_or("/", |pq| pq.as_str());
            *request.uri_mut() = origin_form
                .parse()
                .unwrap_or_else(|_| Uri::from_static("/"));
            let host = crate::upstream::addr::unbracket(authority.host());
            (host.to_string(), authority.port_u16().unwrap_or(80))
        }
    }
}

/// Sends along the host's route: on an idle pooled connection to the first hop if one is
/// open, else on a new connection, falling back hop by hop while a hop cannot be reached.
/// Returns the answer, the connection and its pool key.
async fn exchange(
    request: Request<Body>,
    authority: &hyper::http::uri::Authority,
    state: &Shared,
    event: &mut RequestEvent,
) -> Result<(Response<Incoming>, SendRequest<Body>, PoolKey), Failure> {
    let absolute = request.uri().clone();
    let host = crate::upstream::addr::unbracket(authority.host());
    let port = authority.port_u16().unwrap_or(80);
    let path = absolute.path_and_query().map_or("/", |pq| pq.as_str());
    let route = state.config.route(false, host, port, path).await;
    event.route = Taken::from(&*route);
    let hops = state.config.router.in_order(&route);
    let mut request = request;
    let mut last = None;
    for (i, hop) in hops.iter().enumerate() {
        event.route.hop = Some(TakenHop::from(*hop));
        let key = shape(&mut request, &absolute, hop, authority);
        let (again, head) = replayable(request, hop, state).await?;
        request = again;
        if i == 0 {
            match reuse(request, &key, state, event).await {
                Ok(Ok((response, sender))) => {
                    let (response, sender) =
                        signed_in(response, sender, head, hop, state, event).await?;
                    return Ok((response, sender, key));
                }
                Ok(Err(unsent)) => request = unsent,
                Err(e) => return Err(Failure::from_exchange_error(&e, side_of(hop))),
            }
        }
        let dialed = match hop {
            Hop::Socks(socks) => dial::through_socks(socks, &key.0, key.1, &state.config).await,
            _ => dial::dial(&key.0, key.1, &state.config, side_of(hop)).await,
        };
        let failure = match dialed {
            Ok(dialed) => {
                let (response, sender) = send_new(request, dialed, hop, state, event).await?;
                let (response, sender) =
                    signed_in(response, sender, head, hop, state, event).await?;
                return Ok((response, sender, key));
            }
            Err(failure) => failure,
        };
        let unreachable = hop.unreachable(&failure);
        if let (Some(at), true) = (hop.endpoint(), unreachable) {
            state.config.router.mark_bad_at(at);
        }
        if !unreachable || i + 1 == hops.len() {
            return Err(failure);
        }
        event
            .route
            .route_failed
            .push(format!("{hop}: {}", failure.detail));
        last = Some(failure);
    }
    Err(last
        .unwrap_or_else(|| Failure::new(FailureKind::ConnectFailed, Side::Upstream, "no route")))
}

/// A request kept to send it again while signing in to a proxy: its head, and its body when
/// it has one of at most [`REPLAY_LIMIT`] bytes (read whole before sending, as a browser
/// keeps an upload it may have to send again). Larger bodies are streamed and not replayable.
struct Head {
    method: hyper::Method,
    uri: Uri,
    headers: hyper::HeaderMap,
    body: bytes::Bytes,
}

/// The largest request body kept to be sent again after a proxy's `407`.
pub const REPLAY_LIMIT: u64 = 64 * 1024;

/// The request (its body read whole if it is small and may have to be sent again) and what
/// sending it again takes, when it goes to a proxy diagproxy may sign in to.
async fn replayable(
    request: Request<Body>,
    hop: &Hop,
    state: &Shared,
) -> Result<(Request<Body>, Option<Head>), Failure> {
    use hyper::body::Body as _;
    let signs_in = state.config.upstream_auth.mode != auth::Mode::None;
    let size = request.body().size_hint().exact();
    let small = request.body().is_end_stream() || size.is_some_and(|n| n <= REPLAY_LIMIT);
    if !(matches!(hop, Hop::Proxy(_)) && signs_in && small) {
        return Ok((request, None));
    }
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map_err(|e| {
        let detail = format!("the client stopped sending the request body: {e}");
        Failure::new(FailureKind::HttpError, Side::Downstream, detail)
    })?;
    let body = body.to_bytes();
    let head = Head {
        method: parts.method.clone(),
        uri: parts.uri.clone(),
        headers: parts.headers.clone(),
        body: body.clone(),
    };
    Ok((
        Request::from_parts(parts, super::body::full(body)),
        Some(head),
    ))
}

/// The same request, again, on the connection that got the proxy's `407`.
struct Again {
    sender: SendRequest<Body>,
    head: Head,
}

impl auth::sign_in::Resend for Again {
    async fn resend(&mut self, authorization: HeaderValue) -> Result<Response<Incoming>, Failure> {
        let fail = |e: hyper::Error| Failure::from_exchange_error(&e, Side::UpstreamProxy);
        self.sender.ready().await.map_err(fail)?;
        let mut request = Request::new(super::body::full(self.head.body.clone()));
        *request.method_mut() = self.head.method.clone();
        *request.uri_mut() = self.head.uri.clone();
        *request.headers_mut() = self.head.headers.clone();
        request
            .headers_mut()
            .insert(PROXY_AUTHORIZATION, authorization);
        self.sender.send_request(request).await.map_err(fail)
    }
}

/// After a proxy's `407` to a request that can be sent again: sign in on that connection
/// (recorded in the event's route), and the proxy's final answer.
async fn signed_in(
    response: Response<Incoming>,
    sender: SendRequest<Body>,
    head: Option<Head>,
    hop: &Hop,
    state: &Shared,
    event: &mut RequestEvent,
) -> Result<(Response<Incoming>, SendRequest<Body>), Failure> {
    let (Hop::Proxy(proxy), Some(head)) = (hop, head) else {
        return Ok((response, sender));
    };
    if response.status() != StatusCode::PROXY_AUTHENTICATION_REQUIRED {
        return Ok((response, sender));
    }
    let who = auth::sign_in::Proxy {
        host: &proxy.host,
        port: proxy.port,
        url_basic: proxy.authorization.as_deref(),
        chosen: proxy.chosen,
    };
    let mut again = Again { sender, head };
    let settings = &state.config.upstream_auth;
    let (result, record) = auth::sign_in::sign_in(response, &mut again, &who, settings).await;
    tracing::debug!("{}", record.line());
    event.route.proxy_auth = Some(record);
    Ok((result?, again.sender))
}

/// Sends on an idle pooled connection to `key`, if one is open and takes it; the request
/// comes back unsent otherwise.
async fn reuse(
    request: Request<Body>,
    key: &PoolKey,
    state: &Shared,
    event: &mut RequestEvent,
) -> Result<Result<(Response<Incoming>, SendRequest<Body>), Request<Body>>, hyper::Error> {
    let Some(mut sender) = state.pool.take(key) else {
        return Ok(Err(request));
    };
    if sender.ready().await.is_err() {
        return Ok(Err(request));
    }
    let sent = Instant::now();
    match sender.try_send_request(request).await {
        Ok(response) => {
            event.reused = true;
            event.timings.wait_ms = Some(ms(sent.elapsed()));
            Ok(Ok((response, sender)))
        }
        Err(mut e) => match e.take_message() {
            Some(unsent) => Ok(Err(unsent)),
            None => Err(e.into_error()),
        },
    }
}

/// Sends on a new connection.
async fn send_new(
    request: Request<Body>,
    dialed: dial::Dialed,
    hop: &Hop,
    state: &Shared,
    event: &mut RequestEvent,
) -> Result<(Response<Incoming>, SendRequest<Body>), Failure> {
    if matches!(hop, Hop::Direct) {
        let host = request
            .uri()
            .host()
            .unwrap_or(event.host.as_str())
            .to_string();
        event.findings.extend(crate::inspect::detect::dns_sinkhole(
            &host,
            &dialed.dns_answer,
            &state.config.profile,
        ));
    }
    event.server_ip = Some(dialed.addr.ip().to_string());
    event.timings.dns_ms = dialed.dns.map(ms);
    event.timings.connect_ms = Some(ms(dialed.connect));
    let fail = |e: hyper::Error| Failure::from_exchange_error(&e, side_of(hop));
    let mut sender = match hop {
        // An HTTPS proxy: TLS to it first (its chain judged), the request inside.
        Hop::Proxy(proxy) if proxy.tls => {
            let (tls, verdict) = dial::proxy_tls(proxy, dialed.stream, &state.config).await?;
            event.route.proxy_tls = Some(verdict);
            http1(tls).await.map_err(fail)?
        }
        _ => http1(dialed.stream).await.map_err(fail)?,
    };
    let sent = Instant::now();
    let response = sender.send_request(request).await.map_err(fail)?;
    event.timings.wait_ms = Some(ms(sent.elapsed()));
    Ok((response, sender))
}

/// An HTTP/1.1 client connection over `io`, its driver spawned.
async fn http1<T>(io: T) -> Result<SendRequest<Body>, hyper::Error>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("upstream connection ended: {e}");
        }
    });
    Ok(sender)
}

/// Whether the event's request went through a corporate proxy.
fn via_proxy(event: &RequestEvent) -> bool {
    event
        .route
        .hop
        .as_ref()
        .and_then(TakenHop::kind)
        .is_some_and(|k| matches!(k, ProxyKind::Http | ProxyKind::Https))
}

fn side_of(hop: &Hop) -> Side {
    match hop {
        Hop::Direct => Side::Upstream,
        _ => Side::UpstreamProxy,
    }
}

//! Plain HTTP: absolute-form requests forwarded upstream (origin-form to the origin, or
//! absolute-form to the corporate proxy), bodies streamed both ways, hop-by-hop headers
//! removed (RFC 9110 §7.6.1), keep-alive kept through the pool.

use std::sync::atomic::{AtomicU64, Ordering};
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
use super::{answer, OpenGuard, Shared};
use crate::clock::ms;
use crate::failure::{Failure, FailureKind, Side};
use crate::session::event::{Downstream, Event, RequestEvent};
use crate::upstream::dial;
use crate::upstream::pool::PoolKey;
use crate::upstream::route::Route;

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
    let (request, key) = upstream_request(req, &authority, &state, bytes_up.clone());
    let exchange = exchange(request, &key, &state, &mut event);
    let result = match tokio::time::timeout(state.config.response_timeout, exchange).await {
        Ok(result) => result,
        Err(_) => {
            let detail = format!(
                "no response head within {:?}",
                state.config.response_timeout
            );
            Err(Failure::new(FailureKind::Timeout, side_of(&state), detail))
        }
    };
    let (response, sender) = match result {
        Ok(ok) => ok,
        Err(failure) => return fail(&state, event, failure, started, &bytes_up),
    };
    if state.config.upstream_proxy.is_some()
        && response.status() == StatusCode::PROXY_AUTHENTICATION_REQUIRED
    {
        let failure =
            dial::proxy_refusal(response, &format!("{} {}", event.method, event.url)).await;
        return fail(&state, event, failure, started, &bytes_up);
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
        return Err((StatusCode::BAD_REQUEST, super::connect::not_a_host(&host)));
    }
    if state.is_self(&host, port) {
        let reason = format!("{url} is this proxy itself; refusing to loop");
        return Err((StatusCode::LOOP_DETECTED, reason));
    }
    Ok((authority, host, port))
}

/// The request as the upstream gets it, and the pool key of the peer it goes to.
fn upstream_request(
    req: Request<Incoming>,
    authority: &hyper::http::uri::Authority,
    state: &Shared,
    bytes_up: Arc<AtomicU64>,
) -> (Request<Body>, PoolKey) {
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
    let key = match state.config.route(authority.host()) {
        Route::Proxy(proxy) => {
            if let Some(auth) = proxy
                .authorization
                .as_deref()
                .and_then(|a| HeaderValue::from_str(a).ok())
            {
                parts.headers.insert(PROXY_AUTHORIZATION, auth);
            }
            (proxy.host.clone(), proxy.port)
        }
        Route::Direct => {
            let origin_form = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
            parts.uri = origin_form
                .parse()
                .unwrap_or_else(|_| Uri::from_static("/"));
            let host = crate::upstream::addr::unbracket(authority.host());
            (host.to_string(), authority.port_u16().unwrap_or(80))
        }
    };
    let body = Counted::new(body, bytes_up).boxed();
    (Request::from_parts(parts, body), key)
}

/// Sends on an idle pooled connection if one is open, else on a new one.
async fn exchange(
    request: Request<Body>,
    key: &PoolKey,
    state: &Shared,
    event: &mut RequestEvent,
) -> Result<(Response<Incoming>, SendRequest<Body>), Failure> {
    let side = side_of(state);
    let mut request = request;
    if let Some(mut sender) = state.pool.take(key) {
        if sender.ready().await.is_ok() {
            let sent = Instant::now();
            match sender.try_send_request(request).await {
                Ok(response) => {
                    event.reused = true;
                    event.timings.wait_ms = Some(ms(sent.elapsed()));
                    return Ok((response, sender));
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(Failure::from_exchange_error(&e.into_error(), side)),
                },
            }
        }
    }
    let dialed = dial::dial(&key.0, key.1, &state.config, side).await?;
    event.findings.extend(crate::inspect::detect::dns_sinkhole(
        &key.0,
        &dialed.dns_answer,
        &state.config.profile,
    ));
    event.server_ip = Some(dialed.addr.ip().to_string());
    event.timings.dns_ms = dialed.dns.map(ms);
    event.timings.connect_ms = Some(ms(dialed.connect));
    let fail = |e: hyper::Error| Failure::from_exchange_error(&e, side);
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(dialed.stream))
        .await
        .map_err(fail)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("upstream connection ended: {e}");
        }
    });
    let sent = Instant::now();
    let response = sender.send_request(request).await.map_err(fail)?;
    event.timings.wait_ms = Some(ms(sent.elapsed()));
    Ok((response, sender))
}

fn side_of(state: &Shared) -> Side {
    if state.config.upstream_proxy.is_some() {
        Side::UpstreamProxy
    } else {
        Side::Upstream
    }
}

pub(super) fn fail(
    state: &Shared,
    mut event: RequestEvent,
    failure: Failure,
    started: Instant,
    bytes_up: &AtomicU64,
) -> Response<Body> {
    let response = answer::failure(&failure, &event.host, event.port, &state.config.profile);
    event
        .findings
        .extend(state.failure_findings(&event.host, &failure, &event.url, event.port));
    event.failure = Some(failure);
    event.bytes_up = bytes_up.load(Ordering::Relaxed);
    event.timings.total_ms = ms(started.elapsed());
    state.recorder.record(Event::Request(Box::new(event)));
    response
}

//! The hyper path of a downstream connection: HTTP/1.1 with upgrades, each request sent where
//! it belongs (CONNECT → tunnel, absolute-form → forward, anything else → the proxy's pages).
//! Connections come here from the lean path (`h1`), which forwards simple requests itself.

use std::convert::Infallible;
use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, AUTHORIZATION, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, USER_AGENT,
    WWW_AUTHENTICATE,
};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

use super::body::Body;
use super::pages::answer;
use super::{connect, forward, pages, Shared};
use crate::session::event::Downstream;
use crate::shutdown::Shutdown;

/// Serves the rest of a downstream connection. `stream` is the raw `TcpStream` when nothing
/// was read from it yet (tunnels then splice it), else the bytes read followed by the socket.
pub async fn serve<S>(stream: S, peer: SocketAddr, state: Shared, mut shutdown: Shutdown)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let for_requests = (state.clone(), shutdown.clone());
    let service = service_fn(move |req| {
        let (state, shutdown) = for_requests.clone();
        async move { Ok::<_, Infallible>(handle(req, peer, state, shutdown).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(state.config.header_timeout)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = shutdown.recv() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        if e.is_timeout() {
            state.limits.header_timed_out();
        }
        if e.is_parse() || e.is_parse_too_large() {
            // hyper has already answered 400/431; say what was wrong in our log.
            tracing::warn!("malformed request from {peer}: {e}");
        } else {
            tracing::debug!("downstream connection from {peer} ended: {e}");
        }
    }
}

async fn handle(
    req: Request<Incoming>,
    peer: SocketAddr,
    state: Shared,
    shutdown: Shutdown,
) -> Response<Body> {
    let downstream = Downstream {
        addr: peer.to_string(),
        user_agent: req
            .headers()
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    };
    let is_proxy_request = req.method() == Method::CONNECT || req.uri().authority().is_some();
    if let Some(expected) = &state.config.proxy_auth {
        if let Some(response) = check_auth(&req, expected, is_proxy_request, &state, &downstream) {
            return response;
        }
    }
    if is_proxy_request && crate::upstream::route::came_through_us(req.headers()) {
        let target = req.uri().to_string();
        let reason = "this request already went through this diagproxy (its own Via): a proxy setting or PAC points back here";
        let status = StatusCode::LOOP_DETECTED;
        return answer::refuse(
            &state,
            downstream,
            req.method().as_str(),
            &target,
            status,
            reason,
        );
    }
    if req.method() == Method::CONNECT {
        return connect::connect(req, downstream, state, shutdown).await;
    }
    if is_proxy_request {
        return forward::forward(req, downstream, state).await;
    }
    pages::serve(&req, &state, shutdown).await
}

/// With `--proxy-auth`, proxy requests need `Proxy-Authorization` (407 otherwise) and the
/// proxy's own pages need `Authorization` (401), except the PAC file and the CA certificate.
fn check_auth(
    req: &Request<Incoming>,
    expected: &str,
    is_proxy_request: bool,
    state: &Shared,
    downstream: &Downstream,
) -> Option<Response<Body>> {
    let (header, status, challenge_name) = if is_proxy_request {
        (
            PROXY_AUTHORIZATION,
            StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            PROXY_AUTHENTICATE,
        )
    } else if matches!(req.uri().path(), "/proxy.pac" | "/ca.pem") {
        // Public by nature: a phone needs the CA (and browsers the PAC) before it can
        // authenticate.
        return None;
    } else {
        (AUTHORIZATION, StatusCode::UNAUTHORIZED, WWW_AUTHENTICATE)
    };
    let given = req.headers().get(&header).map(|v| v.as_bytes());
    if given.is_some_and(|g| credentials_match(g, expected)) {
        return None;
    }
    let reason = if given.is_some() {
        "wrong proxy credentials"
    } else {
        "this proxy needs credentials (--proxy-auth)"
    };
    let target = req.uri().to_string();
    let mut response = answer::refuse(
        state,
        downstream.clone(),
        req.method().as_str(),
        &target,
        status,
        reason,
    );
    response.headers_mut().insert(
        challenge_name,
        HeaderValue::from_static("Basic realm=\"diagproxy\""),
    );
    Some(response)
}

/// Whether a `Basic …` credential matches the expected one: the scheme name in any case
/// (RFC 9110 §11.1), the token compared in constant time (no timing hint of how much of a
/// guessed password was right).
fn credentials_match(given: &[u8], expected: &str) -> bool {
    let split = |value: &[u8]| -> Option<(Vec<u8>, Vec<u8>)> {
        let text = value.trim_ascii();
        let at = text.iter().position(|&b| b == b' ')?;
        let (scheme, token) = text.split_at(at);
        Some((scheme.to_ascii_lowercase(), token.trim_ascii().to_vec()))
    };
    let (Some((scheme, token)), Some((want_scheme, want_token))) =
        (split(given), split(expected.as_bytes()))
    else {
        return false;
    };
    scheme == want_scheme && crate::text::same_secret(&token, &want_token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_compare_by_scheme_in_any_case_and_token() {
        let expected = "Basic dXNlcjpwYXNz";
        assert!(credentials_match(b"Basic dXNlcjpwYXNz", expected));
        assert!(credentials_match(b"basic dXNlcjpwYXNz", expected));
        assert!(credentials_match(b"BASIC   dXNlcjpwYXNz ", expected));
        assert!(!credentials_match(b"Basic dXNlcjpwYXNa", expected));
        assert!(!credentials_match(b"Basic dXNlcjpwYXN", expected));
        assert!(!credentials_match(b"Bearer dXNlcjpwYXNz", expected));
        assert!(!credentials_match(b"dXNlcjpwYXNz", expected));
        assert!(!credentials_match(b"", expected));
    }
}

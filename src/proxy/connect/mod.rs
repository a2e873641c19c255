//! A CONNECT, before anything is dialled: its target parsed, a loop to this proxy refused,
//! and the choice between a byte tunnel and interception.
//!
//! What a CONNECT becomes lives in this folder:
//! - [`tunnel`]: bytes relayed unchanged (the ClientHello read as it passes);
//! - [`intercept`]: TLS accepted with a minted leaf, each request inside sent on and
//!   recorded, over [`origin`]'s connections to the origin (its chains judged);
//! - [`trust`]: whether a client refuses diagproxy's certificate;
//! - [`relay`]: both-ways byte relaying with half-close, over [`zerocopy`]'s `splice(2)`.

pub(super) mod intercept;
pub(super) mod origin;
pub(super) mod relay;
pub(super) mod trust;
pub(super) mod tunnel;
pub(super) mod zerocopy;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use crate::proxy::body::Body;
use crate::proxy::pages::answer;
use crate::proxy::Shared;
use crate::session::event::Downstream;
use crate::shutdown::Shutdown;
use crate::upstream::addr::unbracket;

/// Answers a CONNECT: 400 for a bad target, 508 for this proxy itself, else a tunnel or an
/// interception, as `--intercept` says for the host.
pub async fn connect(
    req: Request<Incoming>,
    downstream: Downstream,
    state: Shared,
    shutdown: Shutdown,
) -> Response<Body> {
    let target = req.uri().to_string();
    let parsed = req
        .uri()
        .authority()
        .and_then(|a| Some((unbracket(a.host()).to_string(), a.port_u16()?)));
    let Some((host, port)) = parsed else {
        let reason = format!(
            "CONNECT needs a host:port target, e.g. CONNECT chatgpt.com:443 (got {target:?})"
        );
        let status = StatusCode::BAD_REQUEST;
        return answer::refuse(&state, downstream, "CONNECT", &target, status, &reason);
    };
    if !crate::text::is_host(&host) {
        let reason = crate::proxy::pages::answer::not_a_host(&host);
        let status = StatusCode::BAD_REQUEST;
        return answer::refuse(&state, downstream, "CONNECT", &target, status, &reason);
    }
    if state.is_self(&host, port) {
        let reason = format!("{target} is this proxy itself; refusing to loop");
        let status = StatusCode::LOOP_DETECTED;
        return answer::refuse(&state, downstream, "CONNECT", &target, status, &reason);
    }
    if state.intercepts(&host, port) {
        return intercept::connect(req, downstream, host, port, state, shutdown).await;
    }
    tunnel::open(req, downstream, host, port, state, shutdown).await
}

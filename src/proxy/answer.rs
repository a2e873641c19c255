//! The answers diagproxy gives itself: the 502/504 that explains a failure, and the
//! 400/407/508 refusals. Every one names the problem and is recorded.

use std::time::SystemTime;

use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};

use super::body::{full, Body};
use super::Shared;
use crate::clock;
use crate::failure::Failure;
use crate::profile::Profile;
use crate::session::event::{Downstream, Event, RefusedEvent};
use crate::session::summary::finding_for;
use crate::upstream::addr::join as host_port;

/// The header that names the failure kind for scripts.
pub const ERROR_HEADER: &str = "x-diagproxy-error";

/// 502 or 504 with a plain-text explanation: host, failure, next check, remedy.
pub fn failure(failure: &Failure, host: &str, port: u16, profile: &Profile) -> Response<Body> {
    let mut text = format!(
        "diagproxy could not complete the request to {}\n\nfailure: {} ({})\ndetail:  {}\n",
        host_port(host, port),
        failure.kind,
        failure.side,
        failure.detail
    );
    if let Some(hint) = profile.hint(failure.kind) {
        text.push_str(&format!("meaning: {}\n", hint.meaning));
    }
    let finding = finding_for(profile, host, failure);
    if !finding.remedy.is_empty() {
        text.push_str(&format!("check:   {}\n", finding.remedy));
    }
    if let Some(body) = &failure.proxy_body {
        text.push_str(&format!(
            "\nThe corporate proxy answered {}:\n{}\n",
            failure.proxy_status.unwrap_or(0),
            body
        ));
    }
    let status = StatusCode::from_u16(failure.kind.status()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = plain(status, text);
    response.headers_mut().insert(
        ERROR_HEADER,
        HeaderValue::from_static(failure.kind.as_str()),
    );
    response
}

/// Refuses a downstream request diagproxy will not forward, and records why.
pub fn refuse(
    state: &Shared,
    downstream: Downstream,
    method: &str,
    target: &str,
    status: StatusCode,
    reason: &str,
) -> Response<Body> {
    state.recorder.record(Event::Refused(Box::new(RefusedEvent {
        ts: clock::rfc3339(SystemTime::now()),
        downstream,
        method: method.to_string(),
        target: target.to_string(),
        status: status.as_u16(),
        reason: reason.to_string(),
    })));
    let mut response = plain(status, format!("diagproxy: {reason}\n"));
    let kind = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::PROXY_AUTHENTICATION_REQUIRED => "proxy_auth_required",
        StatusCode::LOOP_DETECTED => "loop",
        _ => "refused",
    };
    response
        .headers_mut()
        .insert(ERROR_HEADER, HeaderValue::from_static(kind));
    response
}

pub fn plain(status: StatusCode, text: String) -> Response<Body> {
    let mut response = Response::new(full(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

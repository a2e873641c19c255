//! The answers diagproxy gives itself: the 502/504 that explains a failure, and the
//! 400/407/508 refusals. Every one names the problem and is recorded.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};

use crate::clock::{self, ms};
use crate::failure::Failure;
use crate::inspect::explain::finding_for;
use crate::profile::Profile;
use crate::proxy::body::{full, Body};
use crate::proxy::connect::origin::{Ctx, SendError};
use crate::proxy::Shared;
use crate::session::event::{Downstream, Event, RefusedEvent, RequestEvent};
use crate::tls::chain::TlsVerdict;
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

/// Whether a failure should be answered with an HTML page (a browser navigating).
pub fn wants_html(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("text/html"))
}

/// Answers an intercepted request that failed upstream (HTML for a browser navigating,
/// plain text otherwise) and records the failure.
pub fn intercepted_failure(
    ctx: &Ctx,
    mut event: RequestEvent,
    error: SendError,
    started: Instant,
    bytes_up: &AtomicU64,
    wants_html: bool,
) -> Response<Body> {
    let profile = &ctx.state.config.profile;
    let response = if wants_html {
        html_failure(
            &error.failure,
            &ctx.origin.host,
            error.tls.as_deref(),
            profile,
        )
    } else {
        failure(&error.failure, &ctx.origin.host, ctx.origin.port, profile)
    };
    event.failure = Some(error.failure);
    event.bytes_up = bytes_up.load(Ordering::Relaxed);
    event.timings.total_ms = ms(started.elapsed());
    ctx.state.recorder.record(Event::Request(Box::new(event)));
    response
}

/// The page a browser shows instead of a bare reset: host, failure, issuer, verdict, remedy.
fn html_failure(
    failure: &Failure,
    host: &str,
    tls: Option<&TlsVerdict>,
    profile: &crate::profile::Profile,
) -> Response<Body> {
    let esc = crate::text::html;
    let mut rows = format!("<tr><th>host</th><td>{}</td></tr><tr><th>failure</th><td>{} ({})</td></tr><tr><th>detail</th><td>{}</td></tr>", esc(host), failure.kind, failure.side, esc(&failure.detail));
    let mut remedy = crate::inspect::explain::finding_for(profile, host, failure).remedy;
    if let Some(t) = tls {
        rows.push_str(&format!(
            "<tr><th>verdict</th><td>{} ({})</td></tr><tr><th>issuer</th><td>{}</td></tr><tr><th>vendor</th><td>{}</td></tr>",
            t.verdict.as_str(),
            esc(t.reason.as_deref().unwrap_or("-")),
            esc(&t.issuer),
            esc(t.vendor.as_deref().unwrap_or("unknown"))
        ));
        if let Some(f) = crate::inspect::explain::tls_finding(profile, host, 443, t) {
            remedy = f.remedy;
        }
    }
    let page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>diagproxy: {host} failed</title></head><body style=\"font:15px system-ui,sans-serif;margin:2em\">\
         <h1>diagproxy could not reach {host}</h1><table>{rows}</table><h2>What to change</h2><p>{}</p></body></html>\n",
        esc(&remedy),
        host = esc(host)
    );
    let status = StatusCode::from_u16(failure.kind.status()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = Response::new(full(page));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
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
        target: crate::text::bounded(crate::session::redact::url(target)),
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
/// Answers a request that failed before its answer came, and records it with the
/// findings its failure shows.
pub(in crate::proxy) fn request_failed(
    state: &Shared,
    mut event: RequestEvent,
    failure: Failure,
    started: Instant,
    bytes_up: &AtomicU64,
) -> Response<Body> {
    let response = self::failure(&failure, &event.host, event.port, &state.config.profile);
    event.findings.extend(state.failure_findings(
        &event.host,
        &failure,
        &event.url,
        event.port,
        &event.route,
    ));
    event.failure = Some(failure);
    event.bytes_up = bytes_up.load(Ordering::Relaxed);
    event.timings.total_ms = ms(started.elapsed());
    state.recorder.record(Event::Request(Box::new(event)));
    response
}

/// Why a target host is refused (shown escaped: it came from the network).
pub fn not_a_host(host: &str) -> String {
    format!(
        "{:?} is neither a DNS name nor an IP address",
        crate::text::terminal(host, false)
    )
}

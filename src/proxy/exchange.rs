//! The part of a request's life that plain forwarding and interception share: the upstream's
//! answer goes back to the downstream as it streams, its first 64 KiB are kept for the
//! detectors when they may hold a block page, and when the body ends the request is
//! recorded with its timings and findings.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::Response;

use super::body::{Body, BodyEnd, Received, Watched};
use super::hop::strip_hop_by_hop;
use super::{OpenGuard, Shared};
use crate::clock::{self, ms};
use crate::config::{Bodies, KEPT_BODY};
use crate::failure::{Failure, Side};
use crate::inspect::detect::{self, Answer};
use crate::inspect::page::Page;
use crate::session::event::{
    BodyEncoding, Downstream, Event, HeaderList, Headers, KeptBody, RequestEvent, Timings,
};
use crate::session::redact;

/// The most of a body kept for the detectors.
const KEEP: usize = 64 * 1024;

/// What the detectors need to know about the request.
pub struct Asked {
    pub path: String,
    pub accept: Option<String>,
    pub intercepted: bool,
    pub started: Instant,
    pub bytes_up: Arc<AtomicU64>,
}

/// Sends the answer on and records the request when its body ends. `on_complete` runs when
/// the body arrived whole (to hand the upstream connection back to its pool).
pub fn relay(
    state: &Shared,
    response: Response<Incoming>,
    mut event: RequestEvent,
    asked: Asked,
    mut guard: OpenGuard,
    on_complete: impl FnOnce() + Send + Sync + Unpin + 'static,
) -> Response<Body> {
    // The answer's head came: the request is no longer waiting (its body is counted open).
    guard.answered();
    let head_at = Instant::now();
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    event.status = Some(parts.status.as_u16());
    event.content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // The detectors read the headers when the body ends, after `parts` went downstream: a
    // copy of the map (values are shared, not copied), which then goes into the event.
    let head = parts.headers.clone();
    let declared: Option<u64> = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let keep = keep_for(
        event.content_type.as_deref(),
        event.status,
        state.config.bodies,
    );
    let state = state.clone();
    let watched = Watched::new(body, keep, move |received, how| {
        let _open = guard;
        match how {
            BodyEnd::Complete => {
                event.complete = true;
                on_complete();
            }
            BodyEnd::Error(e) => {
                event.failure = Some(Failure::from_exchange_error(&*e, Side::Upstream))
            }
            BodyEnd::Abandoned => {}
        }
        let answered = Answered {
            head,
            declared,
            head_at,
        };
        finish(&state, event, &asked, answered, received);
    });
    Response::from_parts(parts, watched.boxed())
}

/// The upstream's answer head, as the detectors need it when the body has ended.
pub struct Answered {
    pub head: HeaderMap,
    /// Content-Length as declared.
    pub declared: Option<u64>,
    /// When the head arrived.
    pub head_at: Instant,
}

/// Records a request whose answer body has ended (`event.complete` / `event.failure` say
/// how): byte counts, timings, the detectors' findings on the answer, its headers.
pub fn finish(
    state: &Shared,
    mut event: RequestEvent,
    asked: &Asked,
    answered: Answered,
    received: Received,
) {
    event.bytes_down = received.bytes;
    event.bytes_up = asked.bytes_up.load(Ordering::Relaxed);
    event.timings.first_byte_ms = received.first_data.map(|t| ms(t - asked.started));
    event.timings.receive_ms = Some(ms(answered.head_at.elapsed()));
    event.timings.total_ms = ms(asked.started.elapsed());
    // Findings quote the path: its secrets go as the URL's do (the one redaction of every
    // URL that leaves the process, `redact::url`).
    let path = match asked.path.contains('?') && !state.config.include_secrets {
        true => std::borrow::Cow::Owned(redact::url(&asked.path)),
        false => std::borrow::Cow::Borrowed(asked.path.as_str()),
    };
    let answer = Answer {
        host: &event.host,
        path: &path,
        status: event.status.unwrap_or(0),
        headers: &answered.head,
        body: &received.prefix,
        accept: asked.accept.as_deref(),
        // HEAD answers declare a length they never send; a body cut by the downstream
        // leaving is no finding, one cut by the upstream is.
        declared_length: answered.declared.filter(|_| event.method != "HEAD"),
        received: event.failure.is_some().then_some(received.bytes),
        intercepted: asked.intercepted,
    };
    let found = detect::answer_findings(&answer, &state.config.profile);
    // An error answer is worth keeping even when no detector names it (a 403 with error
    // JSON from an API the profile does not know).
    let problem = !found.is_empty() || event.failure.is_some() || event.status >= Some(400);
    event.body = kept_body(
        &state.config,
        problem,
        &received,
        &answered.head,
        event.content_type.as_deref(),
    );
    if let Some(headers) = event.headers.as_mut() {
        headers.response = HeaderList::wire(answered.head, state.config.include_secrets);
    }
    if !found.is_empty() {
        let reproduce = state.reproduce(
            &event.url,
            &event.host,
            event.port,
            event.route.hop.as_ref(),
        );
        event.findings.extend(
            found
                .into_iter()
                .map(|f| f.with_reproduce(Some(reproduce.clone()))),
        );
    }
    state.recorder.record(Event::Request(Box::new(event)));
}

/// A header's value as text, if it is present and printable.
pub fn header_string(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Who asked for what: the parts of a request event each path knows in its own way.
pub struct RequestLine<'a> {
    pub method: String,
    /// The full URL, before redaction.
    pub url: &'a str,
    pub host: String,
    pub port: u16,
}

/// A request's event as it begins, forwarded or intercepted: when, who asked for what, the
/// allowlist entry, and the request's headers (redacted when written); the rest is filled in
/// as the exchange happens.
pub fn begin_event(
    state: &Shared,
    request_headers: HeaderMap,
    line: RequestLine<'_>,
    downstream: Downstream,
    intercepted: bool,
) -> RequestEvent {
    let profile = &state.config.profile;
    RequestEvent {
        ts: clock::rfc3339(SystemTime::now()),
        method: line.method,
        url: recorded_url(line.url, state),
        allowlist: profile.match_host(&line.host).map(|e| e.pattern.clone()),
        host: line.host,
        port: line.port,
        server_ip: None,
        route: Default::default(),
        downstream,
        status: None,
        content_type: None,
        reused: false,
        timings: Timings::default(),
        bytes_up: 0,
        bytes_down: 0,
        complete: false,
        intercepted,
        upstream_protocol: None,
        headers: Some(Headers {
            request: HeaderList::wire(request_headers, state.config.include_secrets),
            response: HeaderList::default(),
        }),
        failure: None,
        findings: Vec::new(),
        block_page_body: None,
        body: None,
        unfinished: None,
    }
}

/// The URL as recorded: query-string credentials redacted unless `--include-secrets`, and
/// at most 8 KiB.
pub fn recorded_url(url: &str, state: &Shared) -> String {
    crate::text::bounded(if state.config.include_secrets {
        url.to_string()
    } else {
        redact::url(url)
    })
}

/// The body the session folder keeps for this answer under `--bodies`, if any: text
/// decoded (JSON credentials redacted unless `--include-secrets`), anything else as it came.
/// Its name (the SHA-256) is filled in by the recorder; the writer thread stores it.
fn kept_body(
    config: &crate::config::Config,
    problem: bool,
    received: &Received,
    head: &HeaderMap,
    content_type: Option<&str>,
) -> Option<KeptBody> {
    let wanted = match config.bodies {
        Bodies::None => false,
        Bodies::Problems => problem,
        Bodies::Text => problem || is_text(content_type),
        Bodies::All => true,
    };
    if !wanted || received.prefix.is_empty() {
        return None;
    }
    let prefix = &received.prefix[..received.prefix.len().min(KEPT_BODY)];
    let text =
        is_text(content_type) || (content_type.is_none() && std::str::from_utf8(prefix).is_ok());
    let (data, encoding) = if text {
        let mut text = Page::source_of(prefix, head);
        if !config.include_secrets && content_type.is_some_and(|t| t.contains("json")) {
            text = redact::json_body(&text);
        }
        (bytes::Bytes::from(text), BodyEncoding::Text)
    } else {
        (bytes::Bytes::copy_from_slice(prefix), BodyEncoding::Binary)
    };
    Some(KeptBody {
        sha256: String::new(),
        size: data.len(),
        truncated: received.bytes > prefix.len() as u64,
        encoding,
        mime: content_type.map(str::to_string),
        data: Some(data),
    })
}

/// Text a person can read in the detail pane: `text/*`, JSON, JavaScript, XML, HTML, event
/// streams, forms.
fn is_text(content_type: Option<&str>) -> bool {
    // Compared without lower-casing a copy: with `--bodies text` this runs for every answer.
    let Some(t) = content_type.map(str::as_bytes) else {
        return false;
    };
    let has = |k: &str| {
        t.windows(k.len())
            .any(|w| w.eq_ignore_ascii_case(k.as_bytes()))
    };
    t.get(..5).is_some_and(|p| p.eq_ignore_ascii_case(b"text/"))
        || ["json", "javascript", "xml", "html", "x-www-form-urlencoded"]
            .iter()
            .any(|k| has(k))
}

/// How much of an answer's body is kept while it streams: what the detectors need (pages
/// and answers that are not a success), and what `--bodies text|all` asks for.
pub fn keep_for(content_type: Option<&str>, status: Option<u16>, bodies: Bodies) -> usize {
    let kept = match bodies {
        Bodies::None | Bodies::Problems => may_be_a_page(content_type, status),
        Bodies::Text => may_be_a_page(content_type, status) || is_text(content_type),
        Bodies::All => true,
    };
    if kept {
        KEEP
    } else {
        0
    }
}

/// Bodies worth keeping for the detectors: HTML, plain text, or no type at all, and any
/// answer that is not a success.
fn may_be_a_page(content_type: Option<&str>, status: Option<u16>) -> bool {
    let status_says = status.is_some_and(|s| !(200..300).contains(&s));
    // Compared without lower-casing a copy: this runs for every answer.
    let type_says = content_type.is_none_or(|t| {
        let t = t.as_bytes();
        t.windows(4).any(|w| w.eq_ignore_ascii_case(b"html"))
            || t.get(..10)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"text/plain"))
    });
    status_says || type_says
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_told_by_type_in_any_case_or_by_status() {
        assert!(may_be_a_page(Some("text/html; charset=utf-8"), Some(200)));
        assert!(may_be_a_page(Some("Application/XHTML+xml"), Some(200)));
        assert!(may_be_a_page(Some("TEXT/PLAIN"), Some(200)));
        assert!(may_be_a_page(None, Some(200)));
        assert!(may_be_a_page(Some("application/json"), Some(403)));
        assert!(!may_be_a_page(Some("application/json"), Some(200)));
        assert!(!may_be_a_page(Some("text/css"), Some(204)));
        assert!(!may_be_a_page(Some("htm"), Some(200)));
        assert!(!may_be_a_page(Some("text/plai"), Some(200)));
    }
}

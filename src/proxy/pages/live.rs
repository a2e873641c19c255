//! The live page: `/` (the page, with the overview rendered in so it reads without
//! JavaScript), `/events` (Server-Sent Events from the session's feed), and the `/api/…`
//! and download endpoints the page's script uses. `pages` routes here after its `Host` check
//! and `--proxy-auth`; the page's script and style are files in `assets/`, embedded.
//!
//! The event stream never slows the proxy: each page gets its own task, fed from the
//! session's [`Feed`](crate::session::feed::Feed) broadcast; a page that reads slowly falls
//! behind, loses events and gets a `resync` event saying how many.

use std::fmt::Write;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use tokio::sync::{broadcast, mpsc};

use super::answer::plain;
use crate::proxy::body::{full, Body, Channel};
use crate::proxy::Shared;
use crate::report::esc;
use crate::session::event::{Event, KeptBody};
use crate::session::feed::{Item, Subscription};
use crate::shutdown::Shutdown;

/// A comment sent on an idle stream this often, so proxies and browsers keep it open.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Chunks waiting for one page's socket, at most; past that the page's task waits (and
/// the page falls behind the feed, never the proxy).
const STREAM_QUEUE: usize = 8;
/// Bytes of events gathered into one chunk, at most.
const CHUNK: usize = 64 * 1024;
/// The largest `events.jsonl` the page's download links turn into a HAR or report on the
/// spot; past it, `diagproxy report` on the folder does it without holding the proxy's
/// memory.
const MAX_LIVE_DOWNLOAD: u64 = 64 << 20;

const SCRIPT: &str = include_str!("../../../assets/live.js");
const STYLE: &str = include_str!("../../../assets/live.css");
/// Only the page's own script and style; no inline script, no other origin, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// `/live.js` and `/live.css`.
pub fn asset(path: &str) -> Option<Response<Body>> {
    match path {
        "/live.js" => Some(secured(full(SCRIPT), "text/javascript; charset=utf-8")),
        "/live.css" => Some(secured(full(STYLE), "text/css; charset=utf-8")),
        _ => None,
    }
}

/// `/`: the page, with the overview as it is now.
pub fn page(state: &Shared) -> Response<Body> {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>diagproxy — live</title>\
         <link rel=\"stylesheet\" href=\"/live.css\"></head><body>\
         <header><h1>diagproxy <span id=\"conn\" class=\"conn\">connecting…</span></h1>\
         <nav>Session so far: <a href=\"/session.har\" download>HAR</a> · \
         <a href=\"/report.html\" download>report</a> · <a href=\"/summary.json\" download>summary.json</a> \
         · <a href=\"/ca.pem\">ca.pem</a> · <a href=\"/proxy.pac\">proxy.pac</a> \
         · <a id=\"bundle\" class=\"button\" href=\"/bundle.zip\" download title=\"One zip for support: \
         summary, reports, HAR, events, the bodies of answers that went wrong, environment.json and a \
         manifest of hashes. Never 2xx bodies, key logs or the CA key.\">Download bundle</a></nav></header>\
         <div id=\"overview\">{}</div>\
         <section id=\"live\"><h2>Requests</h2><div class=\"bar\">\
         <input id=\"q\" type=\"search\" placeholder=\"filter: text, host:…, status:…, finding:…\" aria-label=\"filter\">\
         <label><input type=\"checkbox\" id=\"problems\"> problems only</label>\
         <button id=\"pause\" type=\"button\">Pause</button> <span id=\"shown\"></span></div>\
         <div class=\"split\"><div class=\"list\"><table id=\"rows\"><thead><tr><th>time</th><th>method</th>\
         <th>host</th><th>path</th><th>status</th><th>outcome</th><th>ms</th><th>bytes</th></tr></thead>\
         <tbody></tbody></table></div><aside id=\"detail\"><p class=\"hint\">Select a request or tunnel \
         to see its headers, timings, certificate chain, findings and body.</p></aside></div></section>\
         <script src=\"/live.js\"></script></body></html>\n",
        overview(state)
    );
    secured(full(html), "text/html; charset=utf-8")
}

/// `/api/overview`: the part of the page the script refreshes — the session line, the
/// verdict, the capability tiles, the hosts and what is tunnelled untouched.
pub fn overview_page(state: &Shared) -> Response<Body> {
    secured(full(overview(state)), "text/html; charset=utf-8")
}

fn overview(state: &Shared) -> String {
    // Rendered under the summary's lock (bounded by --max-hosts rows); the recorder waits
    // that long at most.
    let summary = match state.summary.lock() {
        Ok(s) => s,
        Err(poisoned) => poisoned.into_inner(),
    };
    let s = summary.session();
    let mut out = format!(
        "<p class=\"meta\">Session <code>{}</code> since {} on {} — {} open now · {}.</p>",
        esc(&s.id),
        esc(&s.started_at),
        esc(&s.listen),
        state.open.load(std::sync::atomic::Ordering::Relaxed),
        crate::report::html::route_meta(s),
    );
    crate::report::html::verdict(&mut out, &summary);
    crate::report::overview::render(&mut out, &summary);
    out.push_str(&hosts_html(&summary));
    drop(summary);
    out.push_str(&passthrough_html(state));
    out
}

/// `/api/event/ID`: one event from the ring with what the summary makes of it — every
/// finding with its remedy and reproduce command (a failure's included) and the host's
/// chain verdict.
pub fn event(state: &Shared, id: &str) -> Response<Body> {
    let item = id.parse().ok().and_then(|id| state.recorder.feed().get(id));
    let Some(event) = item.and_then(|i| serde_json::from_str::<Event>(&i.json).ok()) else {
        return plain(
            StatusCode::NOT_FOUND,
            "diagproxy: that event is no longer in the live ring; the session's report has it\n"
                .into(),
        );
    };
    let json = {
        let summary = match state.summary.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        let tls = host_port(&event).and_then(|(h, p)| summary.tls_of(h, p));
        serde_json::json!({
            "event": &event,
            "findings": summary.findings_of(&event),
            "tls": tls,
        })
        .to_string()
    };
    secured(full(json), "application/json")
}

/// `/api/body/SHA256`: a kept body, as plain text or bytes (never as a page: the CSP and
/// `nosniff` keep a block page's markup inert, and the script shows it as text).
pub async fn body(state: &Shared, sha: &str) -> Response<Body> {
    if !KeptBody::is_name(sha) {
        return plain(StatusCode::NOT_FOUND, "diagproxy: no such body\n".into());
    }
    let path = state.config.session_dir.join("bodies").join(sha);
    match tokio::fs::read(&path).await {
        Ok(bytes) => {
            let kind = match std::str::from_utf8(&bytes) {
                Ok(_) => "text/plain; charset=utf-8",
                Err(_) => "application/octet-stream",
            };
            secured(full(bytes), kind)
        }
        Err(_) => plain(StatusCode::NOT_FOUND, "diagproxy: no such body\n".into()),
    }
}

fn host_port(event: &Event) -> Option<(&str, u16)> {
    match event {
        Event::Tunnel(t) => Some((t.host_name(), t.port)),
        Event::Request(r) => Some((&r.host, r.port)),
        Event::TlsCheck(c) => Some((&c.host, c.port)),
        Event::ClientRejectedCa(c) => Some((&c.host, c.port)),
        _ => None,
    }
}

/// `/session.har` and `/report.html`: the session so far, rebuilt from `events.jsonl` (as
/// `diagproxy report` would), as a download.
pub async fn download(state: &Shared, path: &str) -> Response<Body> {
    let dir = state.config.session_dir.clone();
    let size = std::fs::metadata(dir.join("events.jsonl")).map_or(0, |m| m.len());
    if size > MAX_LIVE_DOWNLOAD {
        return plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "diagproxy: this session is too long to rebuild here ({size} bytes of events); \
                 run `diagproxy report {}`\n",
                crate::text::shell(&dir.to_string_lossy())
            ),
        );
    }
    if path == "/bundle.zip" {
        return bundle(state, dir).await;
    }
    let har = path == "/session.har";
    let built = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
        let session = crate::report::Session::load(&dir)?;
        if !har {
            return Ok(crate::report::html::render(&session).into_bytes());
        }
        let mut out = Vec::new();
        crate::report::har::write(&session, false, &mut out).map_err(|e| e.to_string())?;
        Ok(out)
    })
    .await;
    match built {
        Ok(Ok(bytes)) => {
            let (kind, name) = match har {
                true => ("application/json", "session.har"),
                false => ("text/html; charset=utf-8", "report.html"),
            };
            let mut response = secured(full(bytes), kind);
            let disposition = format!("attachment; filename=\"{name}\"");
            if let Ok(value) = HeaderValue::from_str(&disposition) {
                response.headers_mut().insert(CONTENT_DISPOSITION, value);
            }
            response
        }
        Ok(Err(e)) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("diagproxy: {e}\n"),
        ),
        Err(e) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("diagproxy: {e}\n"),
        ),
    }
}

/// `/bundle.zip`: the session so far as `diagproxy bundle` would zip it, with the consent of
/// whoever pressed the button (recorded as `live_page` in the manifest).
async fn bundle(state: &Shared, dir: std::path::PathBuf) -> Response<Body> {
    let name = state.config.profile_name.clone();
    let roots = state.config.roots.clone();
    let built = tokio::task::spawn_blocking(move || {
        let text = crate::bundle::environment::profile_text(&name);
        let environment = crate::bundle::environment::file((&name, &text), &roots);
        let consent = crate::bundle::manifest::Consent {
            how: "live_page".into(),
            reviewed_by: "the live page's user (Download bundle)".into(),
            at: crate::clock::rfc3339(std::time::SystemTime::now()),
        };
        crate::bundle::running(&dir, environment, consent)
    })
    .await;
    match built {
        Ok(Ok(bytes)) => {
            let mut response = secured(full(bytes), "application/zip");
            let disposition = "attachment; filename=\"diagproxy-bundle.zip\"";
            response
                .headers_mut()
                .insert(CONTENT_DISPOSITION, HeaderValue::from_static(disposition));
            response
        }
        Ok(Err(e)) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("diagproxy: {e}\n"),
        ),
        Err(e) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("diagproxy: {e}\n"),
        ),
    }
}

/// `/events`: the session's events as Server-Sent Events, from after `Last-Event-ID` (or
/// all the ring holds), then live until the page leaves or the session ends.
pub fn events(req: &Request<Incoming>, state: &Shared, shutdown: Shutdown) -> Response<Body> {
    let after = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let subscription = state.recorder.feed().subscribe(after);
    let (tx, rx) = mpsc::channel(STREAM_QUEUE);
    tokio::spawn(async move {
        let mut shutdown = shutdown;
        tokio::select! {
            _ = shutdown.recv() => {}
            _ = stream(subscription, tx, KEEP_ALIVE) => {}
        }
    });
    let mut response = secured(Channel(rx).boxed(), "text/event-stream");
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// Writes one page's stream until it leaves: the backlog, then each event as it comes
/// (gathered into chunks), a keep-alive comment when nothing came for `keep_alive`, and a
/// `resync` event when the page fell behind and lost some.
async fn stream(mut sub: Subscription, tx: mpsc::Sender<Bytes>, keep_alive: Duration) {
    let mut out = String::from("retry: 1000\n\n");
    if sub.missed > 0 {
        resync(&mut out, sub.missed);
    }
    let mut last = 0;
    for item in std::mem::take(&mut sub.backlog) {
        last = frame(&mut out, &item);
        if out.len() >= CHUNK
            && tx
                .send(Bytes::from(std::mem::take(&mut out)))
                .await
                .is_err()
        {
            return;
        }
    }
    loop {
        if !out.is_empty()
            && tx
                .send(Bytes::from(std::mem::take(&mut out)))
                .await
                .is_err()
        {
            return;
        }
        let next = match tokio::time::timeout(keep_alive, sub.live.recv()).await {
            Err(_) => {
                out.push_str(": keep-alive\n\n");
                continue;
            }
            Ok(next) => next,
        };
        match next {
            Ok(item) if item.id > last => last = frame(&mut out, &item),
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(n)) => resync(&mut out, n),
            Err(broadcast::error::RecvError::Closed) => return,
        }
        // Whatever else already arrived goes in the same chunk.
        while out.len() < CHUNK {
            match sub.live.try_recv() {
                Ok(item) if item.id > last => last = frame(&mut out, &item),
                Ok(_) => {}
                Err(broadcast::error::TryRecvError::Lagged(n)) => resync(&mut out, n),
                Err(_) => break,
            }
        }
    }
}

/// One event as SSE; returns its id.
fn frame(out: &mut String, item: &Item) -> u64 {
    // The JSON is one line (serde_json escapes newlines), as a `data:` field must be.
    let _ = write!(out, "id: {}\ndata: {}\n\n", item.id, item.json);
    item.id
}

fn resync(out: &mut String, missed: u64) {
    let _ = write!(out, "event: resync\ndata: {{\"missed\":{missed}}}\n\n");
}

/// A page's response with the headers every page gets: its type, no caching, the CSP, no
/// type sniffing, no referrer.
fn secured(body: Body, content_type: &'static str) -> Response<Body> {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("content-security-policy", HeaderValue::from_static(CSP));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    response
}

/// Where the live page's "intercept again" buttons post (`pages` serves it).
pub(in crate::proxy) const REENABLE: &str = "/passthrough/reenable";

/// The passed-through host:port pairs, each with a button that intercepts it again.
fn passthrough_html(state: &Shared) -> String {
    let list = state.trust.passthrough_list();
    if list.is_empty() {
        return String::new();
    }
    let mut html = String::from(
        "<h2>Tunnelled untouched</h2><p>A client refused diagproxy's certificate for these, so they \
         are tunnelled without interception. After installing the CA (<a href=\"/ca.pem\">ca.pem</a>), \
         intercept them again:</p><table>",
    );
    for (host, port) in list {
        // Host names here passed the CONNECT's host check: letters, digits, dots, dashes.
        let host = esc(&host);
        html.push_str(&format!(
            "<tr><td>{host}:{port}</td><td><form method=\"post\" action=\"{REENABLE}?host={host}&amp;port={port}\">\
             <button>Intercept again</button></form></td></tr>"
        ));
    }
    html.push_str("</table>");
    html
}

/// The hosts so far, one row each, its most serious finding first.
fn hosts_html(summary: &crate::session::summary::Summary) -> String {
    let mut rows = host_rows(summary);
    if rows.is_empty() {
        rows.push_str("<tr><td colspan=\"8\">No traffic yet. Point a browser or <code>curl -x</code> at this proxy.</td></tr>");
    }
    format!(
        "<h2>Hosts</h2><table class=\"hosts\"><tr><th>host</th><th>allowlist</th><th>connections</th><th>requests</th>\
         <th>up</th><th>down</th><th>finding</th><th>failures</th></tr>\n{rows}</table>"
    )
}

/// One table row per host.
fn host_rows(summary: &crate::session::summary::Summary) -> String {
    let mut rows = String::new();
    for h in summary.hosts() {
        let failures: Vec<String> = h
            .failures
            .iter()
            .map(|(k, n)| format!("{k} × {n}"))
            .collect();
        let worst = h.worst();
        // Traffic outside the profile is never coloured as a failure.
        let class = match (h.allowlist.is_some(), h.is_failing(), worst.is_some()) {
            (false, _, _) => "other",
            (true, true, _) => "fail",
            (true, false, true) => "warn",
            (true, false, false) => "ok",
        };
        rows.push_str(&format!(
            "<tr class=\"{class}\"><td>{}:{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            esc(&h.host),
            h.port,
            esc(h.allowlist.as_deref().unwrap_or("other")),
            h.connections,
            h.requests,
            crate::session::livelog::bytes(h.bytes_up),
            crate::session::livelog::bytes(h.bytes_down),
            esc(&worst.map_or_else(|| "-".to_string(), |f| f.label())),
            esc(&failures.join(", "))
        ));
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::feed::Feed;

    async fn read(rx: &mut mpsc::Receiver<Bytes>) -> String {
        String::from_utf8(rx.recv().await.unwrap().to_vec()).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn the_stream_sends_the_backlog_then_live_events_and_keeps_alive_when_idle() {
        let feed = Feed::new();
        feed.publish("{\"type\":\"a\"}");
        let (tx, mut rx) = mpsc::channel(4);
        tokio::spawn(stream(feed.subscribe(None), tx, KEEP_ALIVE));
        let first = read(&mut rx).await;
        assert_eq!(first, "retry: 1000\n\nid: 1\ndata: {\"type\":\"a\"}\n\n");
        feed.publish("{\"type\":\"b\"}");
        assert_eq!(read(&mut rx).await, "id: 2\ndata: {\"type\":\"b\"}\n\n");
        // Nothing for 15 s (the paused clock jumps): a comment.
        assert_eq!(read(&mut rx).await, ": keep-alive\n\n");
    }

    #[tokio::test(start_paused = true)]
    async fn a_page_that_reconnects_gets_what_it_missed_and_one_too_late_is_told() {
        let feed = Feed::new();
        for n in 1..=5 {
            feed.publish(&format!("{{\"n\":{n}}}"));
        }
        let (tx, mut rx) = mpsc::channel(4);
        tokio::spawn(stream(feed.subscribe(Some(3)), tx, KEEP_ALIVE));
        assert_eq!(
            read(&mut rx).await,
            "retry: 1000\n\nid: 4\ndata: {\"n\":4}\n\nid: 5\ndata: {\"n\":5}\n\n"
        );
        // A page that stopped reading: the feed runs on, the page is told what it lost.
        let (tx, mut rx) = mpsc::channel(1);
        let slow = feed.subscribe(Some(5));
        for _ in 0..crate::session::feed::LIVE_QUEUE * 2 {
            feed.publish("{}");
        }
        tokio::spawn(stream(slow, tx, KEEP_ALIVE));
        let _retry = read(&mut rx).await;
        let next = read(&mut rx).await;
        assert!(
            next.starts_with("event: resync\ndata: {\"missed\":1024}\n\n"),
            "{next}"
        );
    }
}

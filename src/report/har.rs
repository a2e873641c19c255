//! HAR 1.2 for OpenAI support: one entry per recorded request (intercepted or plain HTTP),
//! tunnels as `CONNECT` entries with their outcome, TLS verdicts and findings under
//! `_diagproxy`. Credentials are `REDACTED` unless the caller opts in.
//!
//! Timings follow the spec: `-1` where a phase did not happen, `ssl` counted inside
//! `connect`, and `time` equal to the sum of the phases that happened.

use std::io::{self, Write};

use serde_json::{json, Value};

use super::Session;
use crate::session::event::{BodyEncoding, Event, RequestEvent, TunnelEvent, TunnelMode};
use crate::session::redact;

/// The HAR document, whole (for tests and small sessions; [`write`] streams it).
pub fn build(session: &Session, include_secrets: bool) -> io::Result<Value> {
    let mut document = log_without_entries(session);
    document["log"]["entries"] = Value::Array(entries(session, include_secrets)?.collect());
    Ok(document)
}

/// Writes the HAR document one entry at a time, so a session of a million requests never
/// holds its HAR in memory (it once took 2.4 GB for 128k requests).
pub fn write(session: &Session, include_secrets: bool, out: &mut impl Write) -> io::Result<()> {
    let document = log_without_entries(session);
    // The fields before the entries, then the entries, one per line.
    let text = serde_json::to_string(&document["log"])?;
    let fields = text.trim_end_matches('}');
    out.write_all(b"{\"log\":")?;
    out.write_all(fields.as_bytes())?;
    out.write_all(b",\"entries\":[\n")?;
    for (i, entry) in entries(session, include_secrets)?.enumerate() {
        if i > 0 {
            out.write_all(b",\n")?;
        }
        serde_json::to_writer(&mut *out, &entry)?;
    }
    out.write_all(b"\n]}}\n")
}

/// The `log` object with everything but its entries.
fn log_without_entries(session: &Session) -> Value {
    let info = session.info();
    json!({
        "log": {
            "version": "1.2",
            "creator": { "name": "diagproxy", "version": info.diagproxy },
            "pages": [],
            "comment": format!("diagproxy session {} ({}); {}", info.id, info.profile, session.summary.verdict()),
        }
    })
}

/// One entry per request and per plain tunnel, in the order they were recorded (read from
/// the file again: one event in memory at a time).
fn entries(
    session: &Session,
    include_secrets: bool,
) -> io::Result<impl Iterator<Item = Value> + '_> {
    let tls = &session.tls;
    let dir = &session.dir;
    Ok(session.events()?.filter_map(move |event| match event {
        Event::Request(r) => {
            let mut entry = request_entry(&r, include_secrets, tls.get(&(r.host.clone(), r.port)));
            entry["response"]["content"] = content(&r, dir);
            Some(entry)
        }
        Event::Tunnel(t) if t.mode == TunnelMode::Tunnel => Some(tunnel_entry(
            &t,
            tls.get(&(t.host_name().to_string(), t.port)),
        )),
        _ => None,
    }))
}

fn request_entry(
    r: &RequestEvent,
    include_secrets: bool,
    tls: Option<&Option<crate::tls::chain::TlsVerdict>>,
) -> Value {
    let url = if include_secrets {
        r.url.clone()
    } else {
        redact::url(&r.url)
    };
    let version = match r.upstream_protocol.as_deref() {
        Some("h2") => "HTTP/2.0",
        _ => "HTTP/1.1",
    };
    let (req_headers, resp_headers) = match &r.headers {
        Some(h) if include_secrets => (h.request.to_pairs(), h.response.to_pairs()),
        Some(h) => (
            redact::pairs(&h.request.to_pairs()),
            redact::pairs(&h.response.to_pairs()),
        ),
        None => (Vec::new(), Vec::new()),
    };
    let location = resp_headers
        .iter()
        .find(|(n, _)| n == "location")
        .map_or(String::new(), |(_, v)| v.clone());
    let timings = timings(
        r.timings.dns_ms,
        r.timings.connect_ms,
        r.timings.ssl_ms,
        r.timings.wait_ms.unwrap_or(0.0),
        r.timings.receive_ms.unwrap_or(0.0),
    );
    let mut entry = json!({
        "startedDateTime": r.ts,
        "time": total(&timings),
        "request": {
            "method": r.method,
            "url": url,
            "httpVersion": version,
            "cookies": [],
            "headers": header_list(&req_headers),
            "queryString": query(&url),
            "headersSize": -1,
            "bodySize": r.bytes_up,
        },
        "response": {
            "status": r.status.unwrap_or(0),
            "statusText": r.failure.as_ref().map_or(String::new(), |f| f.kind.to_string()),
            "httpVersion": version,
            "cookies": [],
            "headers": header_list(&resp_headers),
            "content": Value::Null,
            "redirectURL": location,
            "headersSize": -1,
            "bodySize": if r.status.is_some() { r.bytes_down as i64 } else { -1 },
        },
        "cache": {},
        "timings": timings,
        "_diagproxy": {
            "allowlist": r.allowlist,
            "intercepted": r.intercepted,
            "complete": r.complete,
            "failure": r.failure,
            "findings": r.findings,
            "tls": tls.cloned().flatten(),
        }
    });
    if r.route.hop.is_some() {
        entry["_route"] = json!(r.route);
    }
    if let Some(ip) = &r.server_ip {
        entry["serverIPAddress"] = json!(ip);
    }
    entry
}

/// The response's `content`: the kept body (`--bodies`) read from `bodies/`, as `text`
/// (base64 for a binary one, `_diagproxy_truncated` when it was cut at 64 KiB), else its size
/// and type only. Sessions from before `--bodies` kept a block page inline.
fn content(r: &RequestEvent, dir: &std::path::Path) -> Value {
    let mime = r.content_type.clone().unwrap_or_else(|| "x-unknown".into());
    let mut content = json!({ "size": r.bytes_down, "mimeType": mime });
    if let Some(text) = &r.block_page_body {
        content["text"] = json!(text);
    }
    let Some(kept) = &r.body else { return content };
    // A name that is not a hash is never joined to a path (a hand-edited events file).
    let Some(bytes) = kept.path_in(dir).and_then(|path| std::fs::read(path).ok()) else {
        return content;
    };
    match (kept.encoding, String::from_utf8(bytes)) {
        (BodyEncoding::Text, Ok(text)) => content["text"] = json!(text),
        (_, bytes) => {
            use base64::Engine;
            let bytes = bytes.map_or_else(|e| e.into_bytes(), String::into_bytes);
            content["text"] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
            content["encoding"] = json!("base64");
        }
    }
    if kept.truncated {
        content["_diagproxy_truncated"] = json!(true);
    }
    content
}

fn tunnel_entry(t: &TunnelEvent, tls: Option<&Option<crate::tls::chain::TlsVerdict>>) -> Value {
    let host = crate::upstream::addr::join(t.host_name(), t.port);
    let status = match &t.failure {
        Some(f) if t.end == crate::session::event::TunnelEnd::Failed => f.kind.status(),
        _ => 200,
    };
    let wait = t.timings.wait_ms.unwrap_or(0.0);
    let known = t.timings.dns_ms.unwrap_or(0.0)
        + t.timings.connect_ms.unwrap_or(0.0)
        + t.timings.proxy_connect_ms.unwrap_or(0.0)
        + wait;
    let receive = (t.timings.total_ms - known).max(0.0);
    let connect = match (t.timings.connect_ms, t.timings.proxy_connect_ms) {
        (Some(c), p) => Some(c + p.unwrap_or(0.0)),
        (None, p) => p,
    };
    let timings = timings(t.timings.dns_ms, connect, None, wait, receive);
    let mut entry = json!({
        "startedDateTime": t.ts,
        "time": total(&timings),
        "request": {
            "method": "CONNECT",
            "url": format!("https://{host}/"),
            "httpVersion": "HTTP/1.1",
            "cookies": [],
            "headers": t.downstream.user_agent.as_ref().map_or_else(Vec::new, |ua| vec![json!({"name": "User-Agent", "value": ua})]),
            "queryString": [],
            "headersSize": -1,
            "bodySize": t.bytes_up,
        },
        "response": {
            "status": status,
            "statusText": t.failure.as_ref().map_or("Connection established".to_string(), |f| f.kind.to_string()),
            "httpVersion": "HTTP/1.1",
            "cookies": [],
            "headers": [],
            "content": { "size": t.bytes_down, "mimeType": "application/octet-stream",
                         "comment": "bytes relayed through the tunnel (encrypted, not recorded)" },
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": t.bytes_down,
        },
        "cache": {},
        "timings": timings,
        "_diagproxy": {
            "tunnel": { "sni": t.sni, "alpn": t.alpn, "payload": t.payload, "end": t.end, "downstream": t.downstream.addr },
            "allowlist": t.allowlist,
            "failure": t.failure,
            "findings": t.findings,
            "tls": tls.cloned().flatten(),
        }
    });
    if t.route.hop.is_some() {
        entry["_route"] = json!(t.route);
    }
    if let Some(ip) = &t.server_ip {
        entry["serverIPAddress"] = json!(ip);
    }
    entry
}

/// HAR timings: `connect` includes `ssl`; phases that did not happen are -1.
fn timings(
    dns: Option<f64>,
    connect: Option<f64>,
    ssl: Option<f64>,
    wait: f64,
    receive: f64,
) -> Value {
    let round = |v: f64| (v * 1000.0).round() / 1000.0;
    let connect_total = connect.map(|c| c + ssl.unwrap_or(0.0));
    json!({
        "blocked": -1,
        "dns": dns.map_or(-1.0, round),
        "connect": connect_total.map_or(-1.0, round),
        "ssl": ssl.map_or(-1.0, round),
        "send": 0,
        "wait": round(wait),
        "receive": round(receive),
    })
}

/// The sum of the phases that happened (`ssl` is inside `connect`).
fn total(timings: &Value) -> f64 {
    let sum: f64 = ["blocked", "dns", "connect", "send", "wait", "receive"]
        .iter()
        .filter_map(|k| timings[k].as_f64())
        .filter(|v| *v >= 0.0)
        .sum();
    (sum * 1000.0).round() / 1000.0
}

fn header_list(list: &[(String, String)]) -> Vec<Value> {
    list.iter()
        .map(|(n, v)| json!({ "name": n, "value": v }))
        .collect()
}

fn query(url: &str) -> Vec<Value> {
    let Some((_, q)) = url.split_once('?') else {
        return Vec::new();
    };
    q.split('#')
        .next()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            json!({ "name": n, "value": v })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures;

    #[test]
    fn shape_is_har_1_2() {
        let har = build(&fixtures::session(), false).unwrap();
        assert_eq!(har["log"]["version"], "1.2");
        assert_eq!(har["log"]["creator"]["name"], "diagproxy");
        let entries = har["log"]["entries"].as_array().unwrap();
        assert_eq!(entries.len(), 3, "one request and two tunnels");
        for e in entries {
            for key in [
                "startedDateTime",
                "time",
                "request",
                "response",
                "cache",
                "timings",
            ] {
                assert!(!e[key].is_null(), "{key} missing in {e:#}");
            }
            for key in [
                "method",
                "url",
                "httpVersion",
                "cookies",
                "headers",
                "queryString",
                "headersSize",
                "bodySize",
            ] {
                assert!(!e["request"][key].is_null(), "request.{key} missing");
            }
            for key in [
                "status",
                "statusText",
                "httpVersion",
                "cookies",
                "headers",
                "content",
                "redirectURL",
                "headersSize",
                "bodySize",
            ] {
                assert!(!e["response"][key].is_null(), "response.{key} missing");
            }
            assert!(e["response"]["content"]["mimeType"].is_string());
        }
        let connect = entries
            .iter()
            .find(|e| e["request"]["method"] == "CONNECT" && e["response"]["status"] == 502)
            .unwrap();
        assert_eq!(
            connect["_diagproxy"]["findings"][0]["vendor"],
            "Fortinet FortiGuard"
        );
        let post = &entries[0];
        assert_eq!(post["request"]["httpVersion"], "HTTP/2.0");
        assert_eq!(post["_diagproxy"]["tls"]["verdict"], "inspected");
        assert_eq!(post["serverIPAddress"], "104.18.32.47");
    }

    #[test]
    fn timings_are_consistent() {
        let har = build(&fixtures::session(), false).unwrap();
        for e in har["log"]["entries"].as_array().unwrap() {
            let t = &e["timings"];
            let phases: f64 = ["blocked", "dns", "connect", "send", "wait", "receive"]
                .iter()
                .map(|k| t[k].as_f64().unwrap())
                .filter(|v| *v >= 0.0)
                .sum();
            assert!((e["time"].as_f64().unwrap() - phases).abs() < 0.01, "{e:#}");
            for k in [
                "blocked", "dns", "connect", "ssl", "send", "wait", "receive",
            ] {
                let v = t[k].as_f64().unwrap();
                assert!(v == -1.0 || v >= 0.0, "{k} = {v}");
            }
            if t["ssl"].as_f64().unwrap() >= 0.0 {
                assert!(
                    t["connect"].as_f64().unwrap() >= t["ssl"].as_f64().unwrap(),
                    "ssl is inside connect"
                );
            }
        }
        let post = &har["log"]["entries"][0]["timings"];
        assert_eq!(
            (
                post["dns"].as_f64(),
                post["connect"].as_f64(),
                post["ssl"].as_f64()
            ),
            (Some(12.5), Some(50.0), Some(30.0))
        );
    }

    fn to_string(session: &Session, include_secrets: bool) -> String {
        let mut out = Vec::new();
        write(session, include_secrets, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_streamed_har_is_the_built_document() {
        let session = fixtures::session();
        let streamed: Value = serde_json::from_str(&to_string(&session, false)).unwrap();
        let built = build(&session, false).unwrap();
        assert_eq!(streamed, built);
        assert!(built["log"]["entries"].as_array().unwrap().len() >= 2);
    }

    #[test]
    fn secrets_are_redacted_by_default_and_kept_on_request() {
        let session = fixtures::session();
        let text = to_string(&session, false);
        for secret in [
            "sk-live-very-secret",
            "abc123",
            "sk-query-secret",
            "__cf_bm=xyz",
        ] {
            assert!(!text.contains(secret), "{secret} leaked into the HAR");
        }
        assert!(text.contains("REDACTED"));
        assert!(text.contains("model=gpt"), "ordinary query parameters stay");
        let open = to_string(&session, true);
        assert!(open.contains("sk-live-very-secret") && open.contains("sk-query-secret"));
    }
}

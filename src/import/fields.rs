//! Chromium's fields read into diagproxy's values: status lines, header lines, URLs and
//! socket groups → destinations, proxy chains → hops, base64 bytes, tick times. Pure.

use std::time::{Duration, UNIX_EPOCH};

use hyper::header::{HeaderMap, HeaderName, HeaderValue};

use crate::session::event::HeaderList;

/// A destination: host (lower case) and port.
pub(super) type Target = (String, u16);

/// `HTTP/1.1 403 Forbidden` → 403.
pub(super) fn status_of(line: &str) -> Option<u16> {
    let mut words = line.split_whitespace();
    let proto = words.next()?;
    if !proto.starts_with("HTTP/") {
        return None;
    }
    words.next()?.parse().ok()
}

/// `Name: value` lines as pairs (lines without a colon are skipped).
pub(super) fn header_pairs<'s>(lines: impl Iterator<Item = &'s String>) -> Vec<(String, String)> {
    lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect()
}

pub(super) fn lower_names(pairs: &[(String, String)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
        .collect()
}

pub(super) fn header(pairs: &[(String, String)], name: &str) -> Option<String> {
    pairs
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

pub(super) fn header_map(pairs: &[(String, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            map.append(n, v);
        }
    }
    map
}

/// Headers as the session writes them: credentials redacted when serialised (as `run`).
pub(super) fn wire(pairs: &[(String, String)]) -> HeaderList {
    HeaderList::wire(header_map(pairs), false)
}

pub(super) fn decode(b64: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap_or_default()
}

pub(super) fn timestamp(ms: f64) -> String {
    crate::clock::rfc3339(UNIX_EPOCH + Duration::from_millis(ms.max(0.0) as u64))
}

/// `https://host:8443/x` → (`host`, 8443); schemes other than HTTP(S) and WebSocket are
/// not network requests diagproxy judges (`data:`, `blob:`, `chrome:`).
pub(super) fn target_of_url(url: &str) -> Option<Target> {
    let uri = hyper::Uri::try_from(url).ok()?;
    let default = match uri.scheme_str()? {
        "https" | "wss" => 443,
        "http" | "ws" => 80,
        _ => return None,
    };
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_ascii_lowercase(), uri.port_u16().unwrap_or(default)))
}

/// A socket group (`pm/https://chatgpt.com <https://chatgpt.com same_site>`, `https://a:8443
/// <…>`) → its destination.
pub(super) fn target_of_group(group: &str) -> Option<Target> {
    let first = group.split_whitespace().next()?;
    let at = first.find("://")?;
    let start = first[..at].rfind('/').map_or(0, |i| i + 1);
    target_of_url(&first[start..])
}

/// A proxy chain as Chromium logs it (`[direct://]`, `[proxy.corp:3128]`,
/// `[https://p:443]`) → a hop as diagproxy writes one (`DIRECT`, `PROXY proxy.corp:3128`).
pub(super) fn hop_of_chain(chain: &str) -> String {
    let inner = chain
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim();
    if inner.is_empty() || inner.starts_with("direct://") || inner.eq_ignore_ascii_case("DIRECT") {
        return "DIRECT".into();
    }
    let first = inner.split(',').next().unwrap_or(inner).trim();
    let (keyword, rest) = match first.split_once("://") {
        Some(("https", rest)) => ("HTTPS", rest),
        Some(("socks5" | "socks", rest)) => ("SOCKS5", rest),
        Some(("socks4", rest)) => ("SOCKS4", rest),
        Some((_, rest)) => ("PROXY", rest),
        None => match first.split_once(' ') {
            Some((kw, rest)) => (kw, rest),
            None => ("PROXY", first),
        },
    };
    crate::text::terminal(&format!("{keyword} {}", rest.trim()), false).into_owned()
}

/// What an imported request is made of. The rest of a [`RequestEvent`] is what a browser's
/// file does not say (timings, connection reuse, bytes sent) and stays empty.
pub(super) struct Exchange<'a> {
    pub ts: String,
    pub method: String,
    pub url: String,
    pub target: Target,
    /// Who recorded it: `browser (NetLog)`, `browser (HAR)`.
    pub recorded_by: &'static str,
    pub request: &'a [(String, String)],
    pub response: &'a [(String, String)],
    pub status: Option<u16>,
    pub bytes_down: u64,
    pub server_ip: Option<String>,
}

/// The session event of an imported request, with what diagproxy made of it.
pub(super) fn request_event(
    x: Exchange<'_>,
    profile: &crate::profile::Profile,
    route: crate::upstream::route::Taken,
    failure: Option<crate::failure::Failure>,
    findings: Vec<crate::inspect::Finding>,
) -> crate::session::event::RequestEvent {
    use crate::session::event::{Downstream, Headers, RequestEvent, Timings};
    let (host, port) = x.target;
    RequestEvent {
        ts: x.ts,
        method: x.method,
        url: x.url,
        allowlist: profile.match_host(&host).map(|e| e.pattern.clone()),
        host,
        port,
        server_ip: x.server_ip,
        route,
        downstream: Downstream {
            addr: x.recorded_by.into(),
            user_agent: header(x.request, "user-agent"),
        },
        status: x.status,
        content_type: header(x.response, "content-type"),
        reused: false,
        timings: Timings::default(),
        bytes_up: 0,
        bytes_down: x.bytes_down,
        complete: failure.is_none(),
        intercepted: false,
        upstream_protocol: None,
        headers: Some(Headers {
            request: wire(x.request),
            response: wire(x.response),
        }),
        findings,
        failure,
        block_page_body: None,
        body: None,
        unfinished: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_are_read_from_urls_and_socket_groups() {
        assert_eq!(
            target_of_url("https://ChatGPT.com/c/1"),
            Some(("chatgpt.com".into(), 443))
        );
        assert_eq!(target_of_url("http://a:8080/"), Some(("a".into(), 8080)));
        assert_eq!(target_of_url("wss://[::1]/x"), Some(("::1".into(), 443)));
        assert_eq!(target_of_url("data:text/plain,hi"), None);
        assert_eq!(
            target_of_group("pm/https://chatgpt.com <https://chatgpt.com same_site>"),
            Some(("chatgpt.com".into(), 443))
        );
        assert_eq!(
            target_of_group("https://a.example:8443 <null>"),
            Some(("a.example".into(), 8443))
        );
        assert_eq!(target_of_group("garbage"), None);
    }

    #[test]
    fn proxy_chains_become_hops() {
        assert_eq!(hop_of_chain("[direct://]"), "DIRECT");
        assert_eq!(hop_of_chain("[127.0.0.1:3128]"), "PROXY 127.0.0.1:3128");
        assert_eq!(hop_of_chain("[https://p.corp:443]"), "HTTPS p.corp:443");
        assert_eq!(hop_of_chain("[socks5://s:1080]"), "SOCKS5 s:1080");
        assert_eq!(hop_of_chain("PROXY a:1"), "PROXY a:1");
    }

    #[test]
    fn status_lines_and_headers_are_read() {
        assert_eq!(status_of("HTTP/1.1 403 Forbidden"), Some(403));
        assert_eq!(status_of("garbage 200"), None);
        let lines = ["Server: squid".to_string(), "nocolon".to_string()];
        assert_eq!(
            header_pairs(lines.iter()),
            vec![("Server".to_string(), "squid".to_string())]
        );
    }
}

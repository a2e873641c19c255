//! The detectors: a response head and the first bytes of its body, a tunnel's first
//! upstream bytes, a DNS answer or a corporate proxy's refusal → findings. Each returns at
//! most one [`Finding`]; the I/O code around them only collects what they need.

use std::net::IpAddr;

use hyper::header::{HeaderMap, HeaderName, HeaderValue};

use super::finding::{Finding, FindingKind};
use crate::profile::Profile;
use crate::text;

mod answer;
mod block_page;

use answer::expects_api;
pub use answer::Answer;
pub use block_page::block_page;

/// Every finding for one response, strongest first; a block page silences the weaker
/// detectors that would describe the same answer.
pub fn answer_findings(a: &Answer<'_>, profile: &Profile) -> Vec<Finding> {
    // The hot path: a successful answer with no body kept (JSON, an event stream, assets)
    // can only show a proxy header or a cut-off body.
    if a.body.is_empty() && (200..300).contains(&a.status) {
        return unexpected_content(a, profile)
            .into_iter()
            .chain(proxy_header(a, profile))
            .collect();
    }
    if let Some(block) = block_page(a, profile) {
        return vec![block];
    }
    let mut found = Vec::new();
    found.extend(cloudflare_challenge(a, profile));
    found.extend(redirect_off_allowlist(a, profile));
    if found.is_empty() {
        found.extend(unexpected_content(a, profile));
        found.extend(upstream_error(a, profile));
    }
    found.extend(proxy_header(a, profile));
    found
}

/// A redirect from an allowlisted host to a host outside the profile, a private address,
/// or a block-page port. Redirects inside the allowlist (chat.openai.com → chatgpt.com) are fine.
pub fn redirect_off_allowlist(a: &Answer<'_>, profile: &Profile) -> Option<Finding> {
    if !(300..400).contains(&a.status) || profile.match_host(a.host).is_none() {
        return None;
    }
    let location = a.header("location")?;
    let (target_host, target_port) = location_target(location)?;
    let private = target_host.parse::<IpAddr>().is_ok_and(is_private);
    let block_port = target_port.is_some_and(|p| profile.block_page_ports.contains(&p));
    let outside = profile.match_host(&target_host).is_none();
    if !(private || block_port || outside) {
        return None;
    }
    let why = if block_port {
        "a block-page port"
    } else if private {
        "a private address"
    } else {
        "a host outside the allowlist"
    };
    let evidence = format!("status {} Location: {location}", a.status);
    let detail = format!("{}{} redirected to {why} ({target_host})", a.host, a.path);
    Some(Finding::new(
        profile,
        FindingKind::RedirectOffAllowlist,
        a.host,
        None,
        evidence,
        detail,
    ))
}

/// HTML where the API answers JSON or an event stream, or a body shorter than declared.
pub fn unexpected_content(a: &Answer<'_>, profile: &Profile) -> Option<Finding> {
    if let (Some(declared), Some(received)) = (a.declared_length, a.received) {
        if received < declared {
            let evidence = format!("Content-Length {declared}, {received} bytes arrived");
            let detail = format!(
                "the answer for {}{} ended before its declared length",
                a.host, a.path
            );
            return Some(Finding::new(
                profile,
                FindingKind::UnexpectedContent,
                a.host,
                None,
                evidence,
                detail,
            ));
        }
    }
    // Every answer comes here: the type is lower-cased only for the finding's text.
    let content_type = a.header("content-type").unwrap_or("");
    if (300..400).contains(&a.status)
        || !contains_ignore_case(content_type.as_bytes(), b"text/html")
        || !expects_api(a)
    {
        return None;
    }
    let content_type = content_type.to_ascii_lowercase();
    let evidence = format!(
        "status {} Content-Type {content_type} for {}",
        a.status, a.path
    );
    let detail = format!(
        "{}{} answered HTML where the app expects JSON or an event stream",
        a.host, a.path
    );
    Some(Finding::new(
        profile,
        FindingKind::UnexpectedContent,
        a.host,
        None,
        evidence,
        detail,
    ))
}

/// A header a known product adds (`Via: … McAfee Web Gateway`, `X-BlueCoat-Via`, …): the
/// profile's first entry that any header matches, with the first header that matches it.
pub fn proxy_header(a: &Answer<'_>, profile: &Profile) -> Option<Finding> {
    // Runs on every answer: one pass over its headers, no allocation unless something is
    // found (the profile's names and substrings are lower case already).
    let known = &profile.proxy_headers;
    let mut best: Option<(usize, &str, &[u8])> = None;
    for (name, value) in a.headers {
        let before = best.map_or(known.len(), |(at, ..)| at);
        let name = name.as_str();
        if let Some(at) = known[..before]
            .iter()
            .position(|k| names_product(k, name, value.as_bytes()))
        {
            best = Some((at, name, value.as_bytes()));
        }
    }
    let (at, name, value) = best?;
    let vendor = &known[at].vendor;
    let evidence = format!("{name}: {}", String::from_utf8_lossy(value));
    let detail = format!("the answer for {} passed through {vendor}", a.host);
    Some(Finding::new(
        profile,
        FindingKind::ProxyHeader,
        a.host,
        Some(vendor.clone()),
        evidence,
        detail,
    ))
}

/// Whether the header `name: value` is the one `known` describes: its name, or its name and
/// a `-` suffix, with its substring in the value. The first byte is compared first: nearly
/// every pair differs there.
fn names_product(known: &crate::profile::ProxyHeader, name: &str, value: &[u8]) -> bool {
    let header = known.header.as_str();
    if name.as_bytes().first() != header.as_bytes().first() {
        return false;
    }
    let name_matches = name == header
        || name
            .strip_prefix(header)
            .is_some_and(|rest| rest.starts_with('-'));
    name_matches && contains_ignore_case(value, known.contains.as_bytes())
}

/// A Cloudflare challenge or mitigation answer.
pub fn cloudflare_challenge(a: &Answer<'_>, profile: &Profile) -> Option<Finding> {
    let mitigated = a
        .header("cf-mitigated")
        .is_some_and(|v| v.eq_ignore_ascii_case("challenge"));
    let body = String::from_utf8_lossy(a.body);
    let server_is_cloudflare = a
        .header("server")
        .is_some_and(|s| s.eq_ignore_ascii_case("cloudflare"));
    let marker = [
        "challenge-platform",
        "cf-chl",
        "<title>Just a moment...</title>",
    ]
    .into_iter()
    .find(|m| body.contains(m));
    let evidence = match (mitigated, marker) {
        (true, _) => format!("status {} cf-mitigated: challenge", a.status),
        (false, Some(m)) if server_is_cloudflare && matches!(a.status, 403 | 429 | 503) => {
            format!("status {} Server: cloudflare, body marker {m:?}", a.status)
        }
        _ => return None,
    };
    let mut detail = format!("Cloudflare challenged the request for {}{}", a.host, a.path);
    if a.intercepted {
        detail.push_str("; diagproxy intercepted this host, and its TLS fingerprint differs from the browser's, which may itself trigger the challenge: tunnel this host (drop it from --intercept) and compare");
    }
    Some(Finding::new(
        profile,
        FindingKind::CloudflareChallenge,
        a.host,
        Some("Cloudflare".into()),
        evidence,
        detail,
    ))
}

/// A 5xx from the upstream that is not a block page.
pub fn upstream_error(a: &Answer<'_>, profile: &Profile) -> Option<Finding> {
    if a.status < 500 {
        return None;
    }
    let evidence = format!("status {}", a.status);
    let detail = format!("{}{} answered {}", a.host, a.path, a.status);
    Some(Finding::new(
        profile,
        FindingKind::UpstreamError,
        a.host,
        None,
        evidence,
        detail,
    ))
}

/// How much of an upstream's first bytes the tunnel and the intercepted handshake keep for
/// the detectors (a plaintext block page can be long).
pub const FIRST_UPSTREAM_KEPT: usize = 16 * 1024;

/// How long a silence after the ClientHello makes a `no_server_hello` (a server answers in
/// milliseconds; a firewall that drops by SNI never does).
pub const NO_SERVER_HELLO: std::time::Duration = std::time::Duration::from_secs(10);

/// What a tunnel (or diagproxy's own upstream handshake) showed the detectors.
#[derive(Debug, Clone, Copy)]
pub struct TunnelSight<'a> {
    pub host: &'a str,
    /// The downstream sent a TLS ClientHello.
    pub client_hello: bool,
    /// The first bytes the upstream sent (up to [`FIRST_UPSTREAM_KEPT`]).
    pub first_upstream: &'a [u8],
    pub bytes_down: u64,
    /// The upstream reset, or closed, before sending anything.
    pub upstream_died: bool,
    /// How long the upstream has said nothing since the ClientHello (`None` once it spoke).
    pub silent_for: Option<std::time::Duration>,
}

/// Findings for a tunnel: a plaintext answer to a ClientHello (often a block page), or a
/// connection that died right after the ClientHello.
pub fn tunnel_findings(t: &TunnelSight<'_>, profile: &Profile) -> Vec<Finding> {
    let mut found = Vec::new();
    if t.client_hello && t.first_upstream.starts_with(b"HTTP/") {
        let text = String::from_utf8_lossy(t.first_upstream);
        let status_line = text.lines().next().unwrap_or("").to_string();
        let evidence = format!("plaintext {status_line:?} where a TLS record was expected");
        let detail = format!("a gateway answered the TLS handshake for {} in plain HTTP (clients report \"wrong version number\")", t.host);
        found.push(Finding::new(
            profile,
            FindingKind::NonTlsInTunnel,
            t.host,
            None,
            evidence,
            detail,
        ));
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let headers = parse_head(head);
            let status = status_line
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let answer = Answer::page(t.host, "/", status, &headers, body.as_bytes());
            found.extend(block_page(&answer, profile));
        }
    }
    let silent = t.silent_for.is_some_and(|s| s >= NO_SERVER_HELLO);
    if t.client_hello && t.bytes_down == 0 && !t.upstream_died && silent {
        let seconds = t.silent_for.unwrap_or_default().as_secs();
        let evidence = format!("0 bytes from the upstream in {seconds} s after the ClientHello");
        let detail = format!(
            "the server for {} never answered the ClientHello that named it: a firewall drops it silently (SNI filtering)",
            t.host
        );
        found.push(Finding::new(
            profile,
            FindingKind::NoServerHello,
            t.host,
            None,
            evidence,
            detail,
        ));
    }
    if t.client_hello && t.bytes_down == 0 && t.upstream_died {
        let evidence =
            "0 bytes from the upstream after the ClientHello, then the connection died".to_string();
        let detail = format!(
            "the connection to {} died right after the ClientHello named it: SNI filtering",
            t.host
        );
        found.push(Finding::new(
            profile,
            FindingKind::ResetAfterClientHello,
            t.host,
            None,
            evidence,
            detail,
        ));
    }
    found
}

/// The headers of a corporate proxy's refusal kept as evidence: who refused, and where it
/// sends the user.
pub const EVIDENCE_HEADERS: [&str; 11] = [
    "server",
    "via",
    "location",
    "proxy-agent",
    "x-squid-error",
    "x-cache",
    "x-cache-lookup",
    "x-error",
    "x-blocked-by",
    "content-type",
    "x-powered-by",
];
/// The most of one evidence header's value kept.
const EVIDENCE_VALUE: usize = 256;

/// The evidence headers of a refusal, as recorded (lower-case names, values cut).
pub fn evidence_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    EVIDENCE_HEADERS
        .iter()
        .filter_map(|name| {
            let value = headers.get(*name)?.to_str().ok()?;
            Some((
                name.to_string(),
                text::clip(value, EVIDENCE_VALUE).into_owned(),
            ))
        })
        .collect()
}

/// What a corporate proxy's refusal (of a CONNECT or a request) shows, judged with its own
/// headers: a product's block page (squid's `X-Squid-Error`, its `Via`), a redirect to a
/// block host, or a page whose words say the request was filtered or denied.
pub fn proxy_refusal(
    host: &str,
    status: u16,
    headers: &[(String, String)],
    body: &str,
    profile: &Profile,
) -> Option<Finding> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            hyper::header::HeaderValue::from_str(value),
        ) {
            map.append(name, value);
        }
    }
    let answer = Answer::page(host, "", status, &map, body.as_bytes());
    if let Some(mut finding) = block_page(&answer, profile) {
        finding.evidence = format!("the corporate proxy refused with {}", finding.evidence);
        return Some(finding);
    }
    let mut redirect = redirect_off_allowlist(&answer, profile)?;
    redirect.evidence = format!("the corporate proxy refused with {}", redirect.evidence);
    Some(redirect)
}

/// A WebSocket upgrade to a profile host answered without `101` where a middlebox sits on
/// the path (`middlebox`: a corporate proxy, a TLS-inspecting gateway): it dropped the
/// `Upgrade` (squid's ssl_bump does), so streaming answers and voice signalling fail. A
/// `401` is the app's own sign-in; with nothing in the path a refusal is the server's own
/// (a 4xx is normal without a session), so neither is a finding.
pub fn websocket_refused(
    host: &str,
    path: &str,
    status: u16,
    middlebox: Option<&str>,
    profile: &Profile,
) -> Option<Finding> {
    let middlebox = middlebox?;
    if status == 101 || status == 401 || profile.match_host(host).is_none() {
        return None;
    }
    let evidence = format!("status {status} to a WebSocket upgrade, through {middlebox}");
    let detail = format!(
        "the WebSocket upgrade for {host}{path} got {status} instead of 101: {middlebox} does not pass WebSocket upgrades"
    );
    Some(Finding::new(
        profile,
        FindingKind::WebsocketBlocked,
        host,
        None,
        evidence,
        detail,
    ))
}

/// A DNS answer inside a filter's sinkhole range (Umbrella's 146.112.61.0/24), or loopback /
/// 0.0.0.0 for a public name. Only for answers from DNS, never for `--resolve` pins.
pub fn dns_sinkhole(host: &str, addresses: &[IpAddr], profile: &Profile) -> Option<Finding> {
    if host.eq_ignore_ascii_case("localhost") || host.to_ascii_lowercase().ends_with(".localhost") {
        return None;
    }
    for addr in addresses {
        for sink in &profile.sinkholes {
            if cidr_contains(&sink.cidr, *addr) {
                let evidence = format!("{host} resolved to {addr} (in {})", sink.cidr);
                let detail =
                    format!("the DNS answer for {host} is a block address, not the real server");
                return Some(Finding::new(
                    profile,
                    FindingKind::DnsSinkhole,
                    host,
                    sink.vendor.clone(),
                    evidence,
                    detail,
                ));
            }
        }
    }
    None
}

/// The header lines of a plaintext answer (lines that are not valid headers are skipped).
fn parse_head(head: &str) -> HeaderMap {
    head.lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .filter_map(|(n, v)| {
            let name = HeaderName::from_bytes(n.trim().as_bytes()).ok()?;
            let value = HeaderValue::from_str(v.trim()).ok()?;
            Some((name, value))
        })
        .collect()
}

/// Whether `haystack` contains `needle_lower` (lower case), ignoring ASCII case.
fn contains_ignore_case(haystack: &[u8], needle_lower: &[u8]) -> bool {
    needle_lower.is_empty()
        || haystack
            .windows(needle_lower.len())
            .any(|w| w.eq_ignore_ascii_case(needle_lower))
}

/// (host, port) of a Location URL; `None` for a relative one.
fn location_target(location: &str) -> Option<(String, Option<u16>)> {
    let rest = location.split_once("://").map(|(_, r)| r)?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let crate::upstream::HostPort { host, port } = crate::upstream::HostPort::parse(authority, 0)?;
    Some((host.to_ascii_lowercase(), (port != 0).then_some(port)))
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private() || v4.is_loopback() || v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

fn cidr_contains(cidr: &str, addr: IpAddr) -> bool {
    let Some((net, bits)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (net, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;

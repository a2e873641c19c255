//! The `Event` type: one line of `events.jsonl`. The schema is documented in docs/session-files.md; a
//! field is only ever added, never renamed.

use std::fmt;

use crate::upstream::pac::PacFile;
use crate::upstream::route::Taken;
use serde::{Deserialize, Serialize};

use crate::failure::Failure;
use crate::inspect::Finding;
use crate::tls::chain::TlsVerdict;

/// One thing that happened in a session. Every variant is boxed, so an event is two words
/// and the recorder's channel moves pointers: its blocks (32 events each) then stay small
/// allocations instead of 5 KiB ones that made the allocator consolidate on every fill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The first line of every session.
    SessionStarted(Box<SessionInfo>),
    /// A CONNECT tunnel, recorded when it closes or fails.
    Tunnel(Box<TunnelEvent>),
    /// A plain-HTTP request, recorded when its response ends or it fails.
    Request(Box<RequestEvent>),
    /// A downstream request diagproxy answered itself with an error (400, 407, 508).
    Refused(Box<RefusedEvent>),
    /// The verdict on the chain a host presented (once per host:port per session).
    TlsCheck(Box<TlsCheckEvent>),
    /// A downstream refused diagproxy's interception certificate.
    ClientRejectedCa(Box<ClientRejectedEvent>),
    /// The last line of a session that shut down cleanly.
    SessionEnded(Box<SessionEnd>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub id: String,
    pub started_at: String,
    /// The address actually listened on.
    pub listen: String,
    /// The corporate proxy, credentials masked.
    pub upstream_proxy: Option<String>,
    /// Whether that proxy takes credentials (a reproduce command then asks for them).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub upstream_credentials: bool,
    /// Where routes came from (`PAC http://pac.corp/proxy.pac (GNOME settings)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_source: Option<String>,
    /// The PAC file the session used: URL, status, type, size, SHA-256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pac: Option<PacFile>,
    pub profile: String,
    /// diagproxy's version, so a report knows what wrote the file.
    pub diagproxy: String,
    /// The machine the session ran on (`linux x86_64`), for the ticket.
    #[serde(default)]
    pub os: String,
    /// `--max-hosts`: host:port rows outside the profile beyond it share one row (kept
    /// here so `diagproxy report` folds the same way).
    #[serde(default = "default_max_hosts")]
    pub max_hosts: usize,
    /// The `--resolve` pins as `host:port:address`, so reproduce commands built from the
    /// files take the same path as the session did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolve: Vec<String>,
    /// Whether credentials were recorded (`--include-secrets`); without it they were
    /// redacted before anything was written, and no report can bring them back.
    #[serde(default)]
    pub include_secrets: bool,
    /// Where the TLS key log went (`--keylog`), if one was written: a bundle leaves it out
    /// unless `--include-sensitive keylog`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keylog: Option<String>,
    /// The file a session was read from (`diagproxy import`), and what it could not show.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Box<crate::session::source::Source>>,
}

/// `--max-hosts`'s default.
pub const MAX_HOSTS: usize = 2000;

fn default_max_hosts() -> usize {
    MAX_HOSTS
}

impl Default for SessionInfo {
    fn default() -> Self {
        SessionInfo {
            id: String::new(),
            started_at: String::new(),
            listen: String::new(),
            upstream_proxy: None,
            upstream_credentials: false,
            route_source: None,
            pac: None,
            profile: String::new(),
            diagproxy: String::new(),
            os: String::new(),
            max_hosts: MAX_HOSTS,
            resolve: Vec::new(),
            include_secrets: false,
            keylog: None,
            source: None,
        }
    }
}

impl SessionInfo {
    /// Whether the corporate proxy takes credentials: the field, or, for a session written
    /// before it existed, the mask in `upstream_proxy` (`http://***@host:port`) — the one
    /// place the text is read for it.
    pub fn upstream_takes_credentials(&self) -> bool {
        self.upstream_credentials
            || self
                .upstream_proxy
                .as_deref()
                .is_some_and(|p| p.contains("***@"))
    }

    /// The address `host:port` was pinned to with `--resolve`, if it was.
    pub fn pin(&self, host: &str, port: u16) -> Option<std::net::IpAddr> {
        self.resolve.iter().find_map(|pin| {
            let (name, rest) = pin.split_once(':')?;
            let (p, addr) = rest.split_once(':')?;
            let addr = addr.trim_start_matches('[').trim_end_matches(']');
            (name.eq_ignore_ascii_case(host) && p.parse() == Ok(port))
                .then(|| addr.parse().ok())
                .flatten()
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionEnd {
    pub ended_at: String,
    /// Tunnels and requests still open when the grace period ran out.
    pub unfinished: usize,
    /// What the limits did (`--header-timeout`, `--max-connections`).
    #[serde(default)]
    pub limits: LimitCounts,
}

/// How often a limit acted during the session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitCounts {
    /// Downstream connections closed for not sending a whole head (or finishing the TLS
    /// handshake of an intercepted tunnel) within `--header-timeout`, idle ones included.
    pub header_timeouts: u64,
    /// Downstream connections refused beyond `--max-connections`.
    pub connections_refused: u64,
    /// Events not written to `events.jsonl` because it could not be written (a full disk);
    /// the summary counts them all the same. (Until 2026-12-07 also events a full queue to
    /// the writer thread dropped; recording threads now append their own lines.)
    #[serde(default)]
    pub events_dropped: u64,
    /// Pieces of live log (a batch of lines, a log line) dropped because stderr did not
    /// keep up (a paused terminal, a full pipe).
    #[serde(default)]
    pub live_log_dropped: u64,
    /// Kept bodies (`--bodies`) not stored: past the session's limit on them, the writer's
    /// queue full (the event is then written without its body), or the file could not be
    /// written (the event names a body `bodies/` does not hold).
    #[serde(default)]
    pub bodies_not_kept: u64,
}

/// Who asked: the downstream's address and User-Agent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Downstream {
    pub addr: String,
    pub user_agent: Option<String>,
}

/// Timings in milliseconds; `None` where a step did not happen (no DNS for an IP or a
/// `--resolve` pin, no connect for a pooled connection).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub dns_ms: Option<f64>,
    pub connect_ms: Option<f64>,
    /// CONNECT through the corporate proxy (tunnels with --upstream-proxy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_connect_ms: Option<f64>,
    /// The TLS handshake with the upstream (intercepted requests on a new connection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_ms: Option<f64>,
    /// Tunnels: from the 200 to the first byte from upstream. Requests: from sending the
    /// request to the response head.
    pub wait_ms: Option<f64>,
    /// Requests: from the response head to the end of its body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive_ms: Option<f64>,
    /// Requests: from the downstream's request to the first body byte of the response (for
    /// an event stream, the time to the first event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_byte_ms: Option<f64>,
    /// From the downstream's request to the end.
    pub total_ms: f64,
}

/// How a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TunnelEnd {
    /// The downstream closed first, cleanly.
    DownstreamClosed,
    /// The upstream closed first, cleanly.
    UpstreamClosed,
    /// The downstream reset the connection.
    DownstreamReset,
    /// The upstream reset the connection.
    UpstreamReset,
    /// No byte moved for `--idle-timeout`.
    IdleTimeout,
    /// Still open when the session ended: recorded with what was known then.
    OpenAtShutdown,
    /// The tunnel was never established (see `failure`).
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TunnelEvent {
    /// When the CONNECT arrived.
    pub ts: String,
    /// Bytes relayed, or TLS terminated and requests recorded one by one.
    #[serde(default)]
    pub mode: TunnelMode,
    /// The CONNECT target.
    pub host: String,
    pub port: u16,
    /// The ClientHello's server name, if the tunnel carried TLS.
    pub sni: Option<String>,
    /// The ALPN protocols the ClientHello offered.
    pub alpn: Vec<String>,
    /// What the downstream's first bytes were.
    pub payload: Payload,
    /// The first bytes of a non-TLS payload, as text (for the `non_tls_in_tunnel` finding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_bytes: Option<String>,
    /// The matched profile entry.
    pub allowlist: Option<String>,
    /// The address dialled.
    pub server_ip: Option<String>,
    /// The way out taken (`route`, `route_source`, `route_failed`, `pac_error`).
    #[serde(flatten, default)]
    pub route: Taken,
    pub downstream: Downstream,
    pub timings: Timings,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub end: TunnelEnd,
    pub failure: Option<Failure>,
    /// What the detectors made of the tunnel (plaintext answer, SNI reset, sinkhole, block page).
    #[serde(default)]
    pub findings: Vec<Finding>,
}

impl TunnelEvent {
    /// The URL a reproduce command for the tunnel asks for: `https://NAME:PORT/`.
    pub fn url(&self) -> String {
        format!(
            "https://{}/",
            crate::upstream::addr::join(self.host_name(), self.port)
        )
    }

    /// The name the tunnel is filed under: the SNI when the CONNECT named an IP address.
    pub fn host_name(&self) -> &str {
        match &self.sni {
            Some(sni) if self.host.parse::<std::net::IpAddr>().is_ok() => sni,
            _ => &self.host,
        }
    }
}

/// One request and its answer. Written to `events.jsonl` by `session/request_line.rs` (by
/// hand, byte for byte what this derive writes): a field added here goes there too, or its
/// every-field test fails.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestEvent {
    pub ts: String,
    pub method: String,
    pub url: String,
    pub host: String,
    pub port: u16,
    pub allowlist: Option<String>,
    pub server_ip: Option<String>,
    /// The way out taken (`route`, `route_source`, `route_failed`, `pac_error`).
    #[serde(flatten, default)]
    pub route: Taken,
    pub downstream: Downstream,
    /// The upstream's status, `None` when no response came.
    pub status: Option<u16>,
    /// The response's Content-Type.
    pub content_type: Option<String>,
    /// Whether an idle pooled upstream connection was reused.
    pub reused: bool,
    pub timings: Timings,
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// False when the response body was cut off (by either side).
    pub complete: bool,
    /// Whether the request came through an intercepted TLS tunnel.
    #[serde(default)]
    pub intercepted: bool,
    /// The protocol spoken upstream (`http/1.1`, `h2`) when intercepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_protocol: Option<String>,
    /// Request and response headers, credentials redacted (intercepted requests only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
    /// What the detectors made of the answer (block page, redirect, unexpected content, …).
    #[serde(default)]
    pub findings: Vec<Finding>,
    pub failure: Option<Failure>,
    /// Sessions before `--bodies`: a block page's decoded body (read for old HAR files;
    /// never written now, see `body`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_page_body: Option<String>,
    /// The answer's body as the session folder keeps it (`--bodies`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<KeptBody>,
    /// Set when the session ended before the answer came: what it was waiting for, and
    /// for how long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unfinished: Option<String>,
}

#[cfg(test)]
impl RequestEvent {
    /// A complete `GET http://HOST:80PATH` answered 200, everything else empty: for tests
    /// to change what they look at.
    pub fn get(host: &str, path: &str) -> RequestEvent {
        RequestEvent {
            ts: "t".into(),
            method: "GET".into(),
            url: format!("http://{host}{path}"),
            host: host.into(),
            port: 80,
            allowlist: None,
            server_ip: None,
            route: Default::default(),
            downstream: Downstream::default(),
            status: Some(200),
            content_type: None,
            reused: false,
            timings: Timings::default(),
            bytes_up: 0,
            bytes_down: 0,
            complete: true,
            intercepted: false,
            upstream_protocol: None,
            headers: None,
            failure: None,
            block_page_body: None,
            body: None,
            unfinished: None,
            findings: Vec::new(),
        }
    }
}

/// An answer's body kept in the session folder (`--bodies`): its first 64 KiB in
/// `bodies/SHA256`, a file named by the SHA-256 of what it holds (the same block page
/// served a hundred times is one file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptBody {
    /// The file's name under `bodies/` (lower-case hex), set by the recorder.
    pub sha256: String,
    /// Bytes in the file.
    pub size: usize,
    /// Whether the answer's body was longer than what was kept.
    pub truncated: bool,
    /// What the file holds.
    pub encoding: BodyEncoding,
    /// The answer's Content-Type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime: Option<String>,
    /// The bytes, from the request's task to the writer thread (never serialised).
    #[serde(skip)]
    pub data: Option<bytes::Bytes>,
}

impl KeptBody {
    /// Whether `name` can be a kept body's file name (64 lower-case hex digits): checked
    /// before a name from a URL or an events file is joined to a path.
    pub fn is_name(name: &str) -> bool {
        name.len() == 64
            && name
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }

    /// The file under `bodies/` in the session folder `dir`, when the name is one.
    pub fn path_in(&self, dir: &std::path::Path) -> Option<std::path::PathBuf> {
        KeptBody::is_name(&self.sha256).then(|| dir.join("bodies").join(&self.sha256))
    }
}

/// How a kept body is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyEncoding {
    /// Decoded (content coding and charset) to UTF-8 text, tokens redacted unless
    /// `--include-secrets`.
    Text,
    /// The bytes as received, after the content coding was undone where it could be.
    Binary,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TlsCheckEvent {
    pub ts: String,
    /// The name the host is filed under (the SNI).
    pub host: String,
    pub port: u16,
    /// How the chain was learnt.
    pub via: ChainSource,
    pub tls: Option<TlsVerdict>,
    /// Why no verdict could be reached (the side handshake failed).
    pub error: Option<String>,
}

/// What diagproxy did with a CONNECT.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TunnelMode {
    /// Bytes relayed unchanged (older sessions have no `mode`: they were tunnels).
    #[default]
    Tunnel,
    /// TLS terminated with a minted leaf; requests recorded one by one.
    Intercept,
}

/// What a tunnel's downstream bytes began with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Payload {
    /// A TLS ClientHello (its SNI and ALPN are recorded).
    Tls,
    /// Something else (the first bytes are in `first_bytes`).
    NotTls,
    /// A TLS record that does not parse as a ClientHello.
    Malformed,
    /// The start of a ClientHello, cut off.
    Partial,
    /// No byte at all.
    None,
}

/// How a chain was learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChainSource {
    /// diagproxy's own handshake beside a tunnel.
    SideHandshake,
    /// diagproxy's upstream handshake of an intercepted connection.
    Interception,
    /// `diagproxy check`'s handshake.
    Check,
    /// The browser's own handshake, read from its NetLog by `diagproxy import`.
    Browser,
}

impl fmt::Display for TunnelMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TunnelMode::Tunnel => "tunnel",
            TunnelMode::Intercept => "intercept",
        })
    }
}

/// Header lists as `[name, value]` pairs, in order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Headers {
    pub request: HeaderList,
    pub response: HeaderList,
}

/// One header list. On the hot path it keeps the headers as they came off the wire (a cheap
/// copy) and credentials are redacted while the writer thread serialises them; read back
/// from `events.jsonl` it is the recorded pairs. Either way it is written as
/// `[["name", "value"], …]`.
#[derive(Debug, Clone, PartialEq)]
pub enum HeaderList {
    Wire {
        map: hyper::HeaderMap,
        /// `--include-secrets`: write credentials as they are.
        include_secrets: bool,
    },
    Pairs(Vec<(String, String)>),
}

impl Default for HeaderList {
    fn default() -> Self {
        HeaderList::Pairs(Vec::new())
    }
}

impl HeaderList {
    pub fn wire(map: hyper::HeaderMap, include_secrets: bool) -> HeaderList {
        HeaderList::Wire {
            map,
            include_secrets,
        }
    }

    /// The pairs as recorded (credentials already redacted unless the user opted in).
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        match self {
            HeaderList::Pairs(pairs) => pairs.clone(),
            HeaderList::Wire {
                map,
                include_secrets,
            } => map
                .iter()
                .map(|(n, v)| {
                    let value = crate::session::redact::value(n.as_str(), v, *include_secrets);
                    (n.as_str().to_string(), value.into_owned())
                })
                .collect(),
        }
    }
}

impl From<Vec<(String, String)>> for HeaderList {
    fn from(pairs: Vec<(String, String)>) -> Self {
        HeaderList::Pairs(pairs)
    }
}

impl Serialize for HeaderList {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        match self {
            HeaderList::Pairs(pairs) => pairs.serialize(s),
            HeaderList::Wire {
                map,
                include_secrets,
            } => {
                let mut seq = s.serialize_seq(Some(map.len()))?;
                for (name, value) in map {
                    let value =
                        crate::session::redact::value(name.as_str(), value, *include_secrets);
                    seq.serialize_element(&(name.as_str(), &*value))?;
                }
                seq.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for HeaderList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<(String, String)>::deserialize(d).map(HeaderList::Pairs)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientRejectedEvent {
    pub ts: String,
    pub host: String,
    pub port: u16,
    pub downstream: Downstream,
    /// The alert or behaviour seen (`alert UnknownCA`, `closed right after the handshake`).
    pub detail: String,
    /// Whether the host is tunnelled untouched from now on.
    pub passthrough: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RefusedEvent {
    pub ts: String,
    pub downstream: Downstream,
    pub method: String,
    pub target: String,
    pub status: u16,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credentialled_upstream_is_a_field_and_old_sessions_are_read_from_the_mask() {
        let mut info = SessionInfo::default();
        assert!(!info.upstream_takes_credentials());
        assert!(!serde_json::to_string(&info)
            .unwrap()
            .contains("upstream_credentials"));
        info.upstream_credentials = true;
        let text = serde_json::to_string(&info).unwrap();
        assert!(text.contains("\"upstream_credentials\":true"), "{text}");
        // Written before the field existed: the masked URL tells it.
        let old = r#"{"id":"s","started_at":"t","listen":"l","upstream_proxy":"http://***@p:3128","profile":"x","diagproxy":"0","os":"linux"}"#;
        let old: SessionInfo = serde_json::from_str(old).unwrap();
        assert!(!old.upstream_credentials);
        assert!(old.upstream_takes_credentials());
    }
}

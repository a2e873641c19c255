//! The NetLog's constants as an import uses them: the event types it reads, named (Chromium
//! promises no stable numbers, so every number is looked up by name in the file's own
//! `constants`), the phases, the error names, the clock offset.

use std::collections::HashMap;

use super::raw::Constants;

/// The event types an import reads, by the name Chromium gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    RequestAlive,
    StartJob,
    ControllerBound,
    ResolvedProxyList,
    ProxyServerResolved,
    ControllerAlive,
    ResponseHeaders,
    SendRequestHeaders,
    TunnelResponseHeaders,
    ConnectJobCreated,
    ConnectJob,
    SocketAlive,
    SocketBytesReceived,
    SslConnect,
    BodyBytesRead,
    CertVerifierJob,
    CertVerifierBound,
    ProxyConfigChanged,
    PacFetch,
    PacScriptError,
}

const KIND_NAMES: &[(&str, Kind)] = &[
    ("REQUEST_ALIVE", Kind::RequestAlive),
    ("URL_REQUEST_START_JOB", Kind::StartJob),
    ("HTTP_STREAM_JOB_CONTROLLER_BOUND", Kind::ControllerBound),
    (
        "PROXY_RESOLUTION_SERVICE_RESOLVED_PROXY_LIST",
        Kind::ResolvedProxyList,
    ),
    (
        "HTTP_STREAM_JOB_CONTROLLER_PROXY_SERVER_RESOLVED",
        Kind::ProxyServerResolved,
    ),
    ("HTTP_STREAM_JOB_CONTROLLER", Kind::ControllerAlive),
    (
        "HTTP_TRANSACTION_READ_RESPONSE_HEADERS",
        Kind::ResponseHeaders,
    ),
    (
        "HTTP_TRANSACTION_SEND_REQUEST_HEADERS",
        Kind::SendRequestHeaders,
    ),
    (
        "HTTP_TRANSACTION_HTTP2_SEND_REQUEST_HEADERS",
        Kind::SendRequestHeaders,
    ),
    (
        "HTTP_TRANSACTION_READ_TUNNEL_RESPONSE_HEADERS",
        Kind::TunnelResponseHeaders,
    ),
    ("SOCKET_POOL_CONNECT_JOB_CREATED", Kind::ConnectJobCreated),
    ("CONNECT_JOB", Kind::ConnectJob),
    ("SOCKET_ALIVE", Kind::SocketAlive),
    ("SOCKET_BYTES_RECEIVED", Kind::SocketBytesReceived),
    ("SSL_CONNECT", Kind::SslConnect),
    ("URL_REQUEST_JOB_FILTERED_BYTES_READ", Kind::BodyBytesRead),
    ("CERT_VERIFIER_JOB", Kind::CertVerifierJob),
    (
        "CERT_VERIFIER_REQUEST_BOUND_TO_JOB",
        Kind::CertVerifierBound,
    ),
    ("PROXY_CONFIG_CHANGED", Kind::ProxyConfigChanged),
    ("PAC_FILE_DECIDER_FETCH_PAC_SCRIPT", Kind::PacFetch),
    ("PAC_JAVASCRIPT_ERROR", Kind::PacScriptError),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Begin,
    End,
    None,
}

/// The constants, as an import uses them.
pub(super) struct Names {
    pub(super) kinds: HashMap<u32, Kind>,
    pub(super) phases: HashMap<u32, Phase>,
    pub(super) errors: HashMap<i64, String>,
    /// `certStatusFlag`'s `COMMON_NAME_INVALID` bit, when the file names it.
    pub(super) name_invalid: Option<u64>,
    pub(super) time_offset_ms: f64,
}

impl Names {
    pub(super) fn from(c: &Constants) -> Names {
        let kinds = KIND_NAMES
            .iter()
            .filter_map(|(name, kind)| c.log_event_types.get(*name).map(|id| (*id, *kind)))
            .collect();
        let phase = |name: &str, p| c.log_event_phase.get(name).map(|id| (*id, p));
        let phases = [
            phase("PHASE_BEGIN", Phase::Begin),
            phase("PHASE_END", Phase::End),
            phase("PHASE_NONE", Phase::None),
        ]
        .into_iter()
        .flatten()
        .collect();
        Names {
            kinds,
            phases,
            errors: c
                .net_error
                .iter()
                .map(|(n, code)| (*code, n.clone()))
                .collect(),
            name_invalid: c.cert_status_flag.get("COMMON_NAME_INVALID").copied(),
            time_offset_ms: c.time_tick_offset.unwrap_or(0.0),
        }
    }
}

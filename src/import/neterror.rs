//! Chromium's `net_error` codes → what diagproxy calls the same failure. A file's codes are
//! named through its own `constants.netError` table (a HAR's `_error` carries the name):
//! the name decides; the number is the fallback for a file without the table. Pure data;
//! the "import" table of docs/import.md is this table.

use crate::failure::{FailureKind, Side};

/// What a `net_error` means in diagproxy's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meaning {
    /// A named failure kind, on this side.
    Failure(FailureKind, Side),
    /// The tunnel through the proxy failed (`-111`): `upstream_proxy_refused`, with the
    /// status of the proxy's answer to the CONNECT when the file has it.
    TunnelRefused,
    /// The proxy asked for credentials (`-127`, `-115`): `upstream_proxy_auth`.
    ProxyAuth,
    /// No proxy of the route could be reached (`-130`): `proxy_unreachable`.
    ProxyUnreachable,
    /// The PAC script could not be fetched or run: `pac_error`.
    PacError,
    /// The browser rejected the chain: `untrusted_certificate` (judged from the chain).
    Certificate { name_mismatch: bool },
    /// A TLS protocol error (`-107`): `non_tls_in_tunnel` when plaintext came back,
    /// `tls_failed` otherwise.
    TlsProtocol,
    /// Not a network failure: the browser cancelled or retried it, or blocked it itself.
    NotAFailure,
}

use FailureKind as F;
use Meaning as M;
use Side::{Upstream as Up, UpstreamProxy as Proxy};

/// Every code diagproxy names, as Chromium's `net_error_list.h` spells it.
pub const TABLE: &[(&str, i64, Meaning)] = &[
    ("ERR_ABORTED", -3, M::NotAFailure),
    ("ERR_BLOCKED_BY_CLIENT", -20, M::NotAFailure),
    ("ERR_BLOCKED_BY_RESPONSE", -27, M::NotAFailure),
    ("ERR_CACHE_MISS", -400, M::NotAFailure),
    ("ERR_TIMED_OUT", -7, M::Failure(F::Timeout, Up)),
    ("ERR_CONNECTION_CLOSED", -100, M::Failure(F::Reset, Up)),
    ("ERR_CONNECTION_RESET", -101, M::Failure(F::Reset, Up)),
    (
        "ERR_CONNECTION_REFUSED",
        -102,
        M::Failure(F::ConnectRefused, Up),
    ),
    ("ERR_CONNECTION_ABORTED", -103, M::Failure(F::Reset, Up)),
    (
        "ERR_CONNECTION_FAILED",
        -104,
        M::Failure(F::ConnectFailed, Up),
    ),
    ("ERR_NAME_NOT_RESOLVED", -105, M::Failure(F::DnsFailed, Up)),
    (
        "ERR_INTERNET_DISCONNECTED",
        -106,
        M::Failure(F::ConnectFailed, Up),
    ),
    ("ERR_SSL_PROTOCOL_ERROR", -107, M::TlsProtocol),
    (
        "ERR_ADDRESS_UNREACHABLE",
        -109,
        M::Failure(F::ConnectFailed, Up),
    ),
    ("ERR_TUNNEL_CONNECTION_FAILED", -111, M::TunnelRefused),
    (
        "ERR_SSL_VERSION_OR_CIPHER_MISMATCH",
        -113,
        M::Failure(F::TlsFailed, Up),
    ),
    ("ERR_PROXY_AUTH_UNSUPPORTED", -115, M::ProxyAuth),
    (
        "ERR_CONNECTION_TIMED_OUT",
        -118,
        M::Failure(F::ConnectTimeout, Up),
    ),
    ("ERR_PROXY_AUTH_REQUESTED", -127, M::ProxyAuth),
    ("ERR_PROXY_CONNECTION_FAILED", -130, M::ProxyUnreachable),
    (
        "ERR_MANDATORY_PROXY_CONFIGURATION_FAILED",
        -131,
        M::PacError,
    ),
    (
        "ERR_NAME_RESOLUTION_FAILED",
        -137,
        M::Failure(F::DnsFailed, Up),
    ),
    (
        "ERR_SOCKS_CONNECTION_FAILED",
        -120,
        M::Failure(F::SocksRefused, Proxy),
    ),
    (
        "ERR_SOCKS_CONNECTION_HOST_UNREACHABLE",
        -121,
        M::Failure(F::SocksRefused, Proxy),
    ),
    (
        "ERR_PROXY_CERTIFICATE_INVALID",
        -136,
        M::Failure(F::ProxyTlsFailed, Proxy),
    ),
    (
        "ERR_CERT_COMMON_NAME_INVALID",
        -200,
        M::Certificate {
            name_mismatch: true,
        },
    ),
    (
        "ERR_CERT_DATE_INVALID",
        -201,
        M::Certificate {
            name_mismatch: false,
        },
    ),
    (
        "ERR_CERT_AUTHORITY_INVALID",
        -202,
        M::Certificate {
            name_mismatch: false,
        },
    ),
    (
        "ERR_CERT_INVALID",
        -207,
        M::Certificate {
            name_mismatch: false,
        },
    ),
    (
        "ERR_CERT_REVOKED",
        -206,
        M::Certificate {
            name_mismatch: false,
        },
    ),
    ("ERR_EMPTY_RESPONSE", -324, M::Failure(F::HttpError, Up)),
    ("ERR_PAC_SCRIPT_FAILED", -327, M::PacError),
    (
        "ERR_HTTP2_PROTOCOL_ERROR",
        -337,
        M::Failure(F::HttpError, Up),
    ),
    (
        "ERR_CONTENT_LENGTH_MISMATCH",
        -354,
        M::Failure(F::HttpError, Up),
    ),
    (
        "ERR_INCOMPLETE_CHUNKED_ENCODING",
        -355,
        M::Failure(F::HttpError, Up),
    ),
    (
        "ERR_RESPONSE_HEADERS_TRUNCATED",
        -357,
        M::Failure(F::HttpError, Up),
    ),
    (
        "ERR_INVALID_HTTP_RESPONSE",
        -370,
        M::Failure(F::HttpError, Up),
    ),
];

/// Firefox's names for the same failures (its HAR `_error`), which have no number here.
pub const FIREFOX: &[(&str, Meaning)] = &[
    ("NS_BINDING_ABORTED", M::NotAFailure),
    ("NS_ERROR_UNKNOWN_HOST", M::Failure(F::DnsFailed, Up)),
    (
        "NS_ERROR_CONNECTION_REFUSED",
        M::Failure(F::ConnectRefused, Up),
    ),
    ("NS_ERROR_NET_RESET", M::Failure(F::Reset, Up)),
    ("NS_ERROR_NET_INTERRUPT", M::Failure(F::Reset, Up)),
    ("NS_ERROR_NET_TIMEOUT", M::Failure(F::Timeout, Up)),
    ("NS_ERROR_PROXY_CONNECTION_REFUSED", M::ProxyUnreachable),
    ("NS_ERROR_UNKNOWN_PROXY_HOST", M::ProxyUnreachable),
    ("NS_ERROR_PROXY_AUTHENTICATION_FAILED", M::ProxyAuth),
];

/// The meaning of a code named `name` (`ERR_…`, with or without `net::`), else of `code`.
pub fn meaning(name: Option<&str>, code: i64) -> Option<Meaning> {
    let by_name = name.map(|n| n.trim_start_matches("net::")).and_then(|n| {
        TABLE
            .iter()
            .find(|(known, _, _)| *known == n)
            .map(|(_, _, m)| *m)
            .or_else(|| {
                FIREFOX
                    .iter()
                    .find(|(known, _)| *known == n)
                    .map(|(_, m)| *m)
            })
    });
    by_name.or_else(|| {
        TABLE
            .iter()
            .find(|(_, known, _)| *known == code)
            .map(|(_, _, m)| *m)
    })
}

/// The name Chromium gives `code` when the file does not say (`net::ERR_… (-105)`).
pub fn describe(name: Option<&str>, code: i64) -> String {
    let name = name.map(str::to_string).or_else(|| {
        TABLE
            .iter()
            .find(|(_, known, _)| *known == code)
            .map(|(n, _, _)| n.to_string())
    });
    match name {
        Some(name) => format!("net::{} ({code})", name.trim_start_matches("net::")),
        None => format!("net error {code}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_decides_and_the_number_is_the_fallback() {
        // A file whose table renumbered a code: its name still means what it says.
        assert_eq!(
            meaning(Some("ERR_NAME_NOT_RESOLVED"), -9999),
            Some(M::Failure(F::DnsFailed, Up))
        );
        assert_eq!(
            meaning(Some("net::ERR_CONNECTION_RESET"), 0),
            Some(M::Failure(F::Reset, Up))
        );
        assert_eq!(meaning(None, -102), Some(M::Failure(F::ConnectRefused, Up)));
        assert_eq!(meaning(None, -12345), None);
        assert_eq!(meaning(Some("ERR_ABORTED"), -3), Some(M::NotAFailure));
        assert_eq!(describe(None, -105), "net::ERR_NAME_NOT_RESOLVED (-105)");
        assert_eq!(describe(Some("ERR_X"), -1), "net::ERR_X (-1)");
        assert_eq!(describe(None, -12345), "net error -12345");
    }

    #[test]
    fn names_and_numbers_are_unique() {
        for (i, (name, code, _)) in TABLE.iter().enumerate() {
            for (other, other_code, _) in &TABLE[i + 1..] {
                assert_ne!(name, other);
                assert_ne!(code, other_code, "{name} and {other}");
            }
        }
    }
}

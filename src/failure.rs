//! What went wrong, and on whose side.
//!
//! A diagnostic proxy's answer to "why did it fail?" is a [`Failure`]: a [`FailureKind`] that
//! names the failure in words an administrator can look up (`dns_failed`, `connect_refused`, …),
//! the [`Side`] that failed, and a human detail. The same value becomes the 502/504 answer to
//! the downstream, a field of the session event and a line of the live log.

use std::fmt;
use std::io;

use serde::{Deserialize, Serialize};

/// The named failure kinds. Their snake_case names are part of the `summary.json` contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The name did not resolve (or resolved to nothing).
    DnsFailed,
    /// The TCP connection was actively refused (RST to our SYN).
    ConnectRefused,
    /// The TCP connection attempt got no answer within `--connect-timeout`.
    ConnectTimeout,
    /// The TCP connection failed another way (no route, network unreachable).
    ConnectFailed,
    /// An established connection was reset.
    Reset,
    /// The corporate proxy answered our CONNECT or request with a refusal.
    UpstreamProxyRefused,
    /// The corporate proxy asked for credentials (407).
    UpstreamProxyAuth,
    /// The TLS handshake with the upstream failed.
    TlsFailed,
    /// The upstream broke the HTTP exchange (closed early, sent garbage).
    HttpError,
    /// The upstream accepted but did not answer within `--response-timeout`.
    Timeout,
    /// A SOCKS server refused the CONNECT (its reply code says why).
    SocksRefused,
    /// A SOCKS server did not let diagproxy in (no acceptable method, a refused password).
    SocksAuthFailed,
    /// The TLS to an HTTPS proxy failed, or its certificate is trusted by nobody here.
    ProxyTlsFailed,
    /// An intercepted client sent something that is not TLS (plaintext HTTP, garbage) after
    /// its CONNECT: the client's doing, recorded with its first bytes.
    ClientNotTls,
    /// An intercepted client's TLS handshake with diagproxy failed (not a certificate alert:
    /// those are `client_rejected_ca`).
    ClientHandshakeFailed,
    /// An intercepted client did not finish its TLS handshake within `--header-timeout`.
    ClientHandshakeTimeout,
}

impl FailureKind {
    /// Every kind, in declaration order.
    pub const ALL: [FailureKind; 16] = [
        FailureKind::DnsFailed,
        FailureKind::ConnectRefused,
        FailureKind::ConnectTimeout,
        FailureKind::ConnectFailed,
        FailureKind::Reset,
        FailureKind::UpstreamProxyRefused,
        FailureKind::UpstreamProxyAuth,
        FailureKind::TlsFailed,
        FailureKind::HttpError,
        FailureKind::Timeout,
        FailureKind::SocksRefused,
        FailureKind::SocksAuthFailed,
        FailureKind::ProxyTlsFailed,
        FailureKind::ClientNotTls,
        FailureKind::ClientHandshakeFailed,
        FailureKind::ClientHandshakeTimeout,
    ];

    /// The kind whose contract name is `name`.
    pub fn parse(name: &str) -> Option<FailureKind> {
        FailureKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The contract name, as in `summary.json` and `X-Diagproxy-Error`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::DnsFailed => "dns_failed",
            FailureKind::ConnectRefused => "connect_refused",
            FailureKind::ConnectTimeout => "connect_timeout",
            FailureKind::ConnectFailed => "connect_failed",
            FailureKind::Reset => "reset",
            FailureKind::UpstreamProxyRefused => "upstream_proxy_refused",
            FailureKind::UpstreamProxyAuth => "upstream_proxy_auth",
            FailureKind::TlsFailed => "tls_failed",
            FailureKind::HttpError => "http_error",
            FailureKind::Timeout => "timeout",
            FailureKind::SocksRefused => "socks_refused",
            FailureKind::SocksAuthFailed => "socks_auth_failed",
            FailureKind::ProxyTlsFailed => "proxy_tls_failed",
            FailureKind::ClientNotTls => "client_not_tls",
            FailureKind::ClientHandshakeFailed => "client_handshake_failed",
            FailureKind::ClientHandshakeTimeout => "client_handshake_timeout",
        }
    }

    /// Whether the kind is the client's own doing (never the network's: not "failing").
    pub fn is_client(self) -> bool {
        matches!(
            self,
            FailureKind::ClientNotTls
                | FailureKind::ClientHandshakeFailed
                | FailureKind::ClientHandshakeTimeout
        )
    }

    /// The status the downstream gets: 504 for the two time-outs, 502 for everything else.
    pub fn status(self) -> u16 {
        match self {
            FailureKind::ConnectTimeout | FailureKind::Timeout => 504,
            _ => 502,
        }
    }

    /// Classifies an error from `TcpStream::connect`.
    pub fn from_connect_error(err: &io::Error) -> FailureKind {
        match err.kind() {
            io::ErrorKind::ConnectionRefused => FailureKind::ConnectRefused,
            io::ErrorKind::TimedOut => FailureKind::ConnectTimeout,
            io::ErrorKind::ConnectionReset => FailureKind::Reset,
            _ => FailureKind::ConnectFailed,
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whose side failed: the words of the diagnosis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The browser, app or curl that talks to diagproxy.
    Downstream,
    /// The origin server (or the network path to it).
    Upstream,
    /// The corporate proxy given with `--upstream-proxy`.
    UpstreamProxy,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Downstream => "downstream",
            Side::Upstream => "upstream",
            Side::UpstreamProxy => "upstream proxy",
        })
    }
}

/// One failure, as recorded in the session and explained to the downstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// The named kind (the diagnosis).
    pub kind: FailureKind,
    /// Whose side failed.
    pub side: Side,
    /// What exactly happened, in words (the OS error, the address tried, the proxy's status).
    pub detail: String,
    /// The corporate proxy's status, when it refused us.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_status: Option<u16>,
    /// The first 4 KiB of the corporate proxy's refusal body: block pages live there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_body: Option<String>,
    /// The refusal's headers that say who refused (`Server`, `Via`, `Location`,
    /// `X-Squid-Error`, …; see `inspect::detect::EVIDENCE_HEADERS`), lower-case names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxy_headers: Vec<(String, String)>,
    /// The addresses DNS answered, when the failure came after a lookup (for sinkhole checks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_answer: Vec<std::net::IpAddr>,
}

impl Failure {
    /// Whether the other side was never reached (its name, its port, its route): then the
    /// next hop of a route may be tried, and a proxy that failed so is unreachable.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self.kind,
            FailureKind::DnsFailed
                | FailureKind::ConnectRefused
                | FailureKind::ConnectTimeout
                | FailureKind::ConnectFailed
                | FailureKind::Reset
        ) && self.proxy_status.is_none()
    }

    /// `side` sent no response head within `waited` (`--response-timeout`).
    pub fn no_response_head(side: Side, waited: std::time::Duration) -> Failure {
        let detail = format!("no response head within {waited:?}");
        Failure::new(FailureKind::Timeout, side, detail)
    }

    pub fn new(kind: FailureKind, side: Side, detail: impl Into<String>) -> Failure {
        Failure {
            kind,
            side,
            detail: detail.into(),
            proxy_status: None,
            proxy_body: None,
            proxy_headers: Vec::new(),
            dns_answer: Vec::new(),
        }
    }

    /// Classifies an error from an exchange over an already open connection.
    pub fn from_exchange_error(err: &(dyn std::error::Error + 'static), side: Side) -> Failure {
        if from_client_body(err) {
            // The request body diagproxy was relaying broke on the client's side (bad
            // chunked framing, the client left): not the upstream's fault.
            let detail = format!("the client's request body: {}", error_chain(err));
            return Failure::new(FailureKind::HttpError, Side::Downstream, detail);
        }
        let kind = match find_io_error(err).map(io::Error::kind) {
            Some(io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe) => FailureKind::Reset,
            Some(io::ErrorKind::TimedOut) => FailureKind::Timeout,
            _ => FailureKind::HttpError,
        };
        Failure::new(kind, side, error_chain(err))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} on the {} side: {}",
            self.kind, self.side, self.detail
        )
    }
}

/// Whether hyper failed because the request body it was sending (the client's, relayed)
/// failed: a user body error caused by reading the downstream connection.
fn from_client_body(err: &(dyn std::error::Error + 'static)) -> bool {
    let Some(outer) = err.downcast_ref::<hyper::Error>() else {
        return false;
    };
    outer.is_user()
        && std::error::Error::source(outer)
            .is_some_and(|inner| inner.downcast_ref::<hyper::Error>().is_some())
}

/// Finds the innermost `io::Error` in an error's source chain.
pub fn find_io_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a io::Error> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    let mut found = None;
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            found = Some(io);
        }
        current = e.source();
    }
    found
}

/// "outer: inner: innermost", the whole chain on one line.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut current = err.source();
    while let Some(e) = current {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        current = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_errors_are_classified() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(
            FailureKind::from_connect_error(&refused),
            FailureKind::ConnectRefused
        );
        let timed_out = io::Error::from(io::ErrorKind::TimedOut);
        assert_eq!(
            FailureKind::from_connect_error(&timed_out),
            FailureKind::ConnectTimeout
        );
        let other = io::Error::from(io::ErrorKind::AddrNotAvailable);
        assert_eq!(
            FailureKind::from_connect_error(&other),
            FailureKind::ConnectFailed
        );
    }

    #[test]
    fn timeouts_are_504_and_the_rest_502() {
        assert_eq!(FailureKind::ConnectTimeout.status(), 504);
        assert_eq!(FailureKind::Timeout.status(), 504);
        assert_eq!(FailureKind::DnsFailed.status(), 502);
        assert_eq!(FailureKind::UpstreamProxyAuth.status(), 502);
    }

    #[test]
    fn exchange_reset_is_found_through_the_chain() {
        #[derive(Debug)]
        struct Wrapper(io::Error);
        impl fmt::Display for Wrapper {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("connection error")
            }
        }
        impl std::error::Error for Wrapper {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let err = Wrapper(io::Error::from(io::ErrorKind::ConnectionReset));
        let failure = Failure::from_exchange_error(&err, Side::Upstream);
        assert_eq!(failure.kind, FailureKind::Reset);
        assert!(
            failure.detail.starts_with("connection error: "),
            "{}",
            failure.detail
        );
    }
}

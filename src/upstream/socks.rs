//! SOCKS routes: SOCKS5 (RFC 1928, with RFC 1929 username/password; the proxy resolves the
//! name, as browsers do for `SOCKS5`), SOCKS4 (the name resolved here, as Chromium does for
//! a PAC's `SOCKS` and `SOCKS4`) and SOCKS4a (the proxy resolves). The handshakes are
//! `tokio-socks`'s, on a TCP connection diagproxy dialled itself (its deadline, its
//! loopback guard); every reply is read at its fixed size by that crate, and the whole
//! handshake is bounded by `--connect-timeout`. Its refusals become named failures here.

use std::net::SocketAddr;

use super::resolve;
pub use super::route::{SocksProxy, Version};
use crate::config::Config;
use crate::failure::{Failure, FailureKind, Side};

/// The SOCKS handshake on `stream` (a TCP connection to `proxy`) for `host:port`, bounded
/// by `--connect-timeout`; the stream to the target once the server said yes.
pub async fn handshake(
    proxy: &SocksProxy,
    stream: tokio::net::TcpStream,
    host: &str,
    port: u16,
    config: &Config,
) -> Result<tokio::net::TcpStream, Failure> {
    let target = super::addr::join(host, port);
    let exchange = exchange(proxy, stream, host, port, config);
    match tokio::time::timeout(config.connect_timeout, exchange).await {
        Ok(result) => result,
        Err(_) => {
            let detail = format!(
                "the SOCKS proxy {} did not finish the handshake for {target} in {:?}",
                super::addr::join(&proxy.host, proxy.port),
                config.connect_timeout
            );
            Err(Failure::new(
                FailureKind::Timeout,
                Side::UpstreamProxy,
                detail,
            ))
        }
    }
}

async fn exchange(
    proxy: &SocksProxy,
    stream: tokio::net::TcpStream,
    host: &str,
    port: u16,
    config: &Config,
) -> Result<tokio::net::TcpStream, Failure> {
    use tokio_socks::tcp::{Socks4Stream, Socks5Stream};
    let name = super::addr::unbracket(host);
    let said = |e| refusal(e, proxy, &super::addr::join(host, port));
    match proxy.version {
        Version::V5 => {
            let done = match &credentials(proxy, config) {
                Some((user, pass)) => {
                    Socks5Stream::connect_with_password_and_socket(stream, (name, port), user, pass)
                        .await
                }
                None => Socks5Stream::connect_with_socket(stream, (name, port)).await,
            };
            done.map(Socks5Stream::into_inner).map_err(said)
        }
        Version::V4a => Socks4Stream::connect_with_socket(stream, (name, port))
            .await
            .map(Socks4Stream::into_inner)
            .map_err(said),
        Version::V4 => {
            // SOCKS4 carries an IPv4 address: resolved here, with the session's pins.
            let (addrs, _) = resolve::resolve(host, port, config, Side::Upstream).await?;
            let v4 = addrs.iter().find(|a| a.is_ipv4()).copied().ok_or_else(|| {
                Failure::new(
                    FailureKind::DnsFailed,
                    Side::Upstream,
                    format!("{host} has no IPv4 address, which SOCKS4 needs"),
                )
            })?;
            Socks4Stream::connect_with_socket(stream, SocketAddr::new(v4.ip(), port))
                .await
                .map(Socks4Stream::into_inner)
                .map_err(said)
        }
    }
}

/// The SOCKS5 username and password: the URL's, else `--upstream-user`'s when the user
/// named this server (or `--upstream-auth-proxies` lists it): a PAC's server never gets it.
fn credentials(proxy: &SocksProxy, config: &Config) -> Option<(String, String)> {
    if proxy.credentials.is_some() {
        return proxy.credentials.clone();
    }
    let settings = &config.upstream_auth;
    let user = settings.user.as_ref()?;
    settings
        .password_to(&proxy.host, proxy.port, proxy.chosen)
        .ok()?;
    let name = match &user.domain {
        Some(domain) => format!("{domain}\\{}", user.user),
        None => user.user.clone(),
    };
    Some((name, user.password.clone()))
}

/// A SOCKS reply code and what it means (RFC 1928 §6; SOCKS4's 0x5b), or `None` for an
/// error that is no reply.
pub fn reply_code(e: &tokio_socks::Error, version: Version) -> Option<(u8, &'static str)> {
    use tokio_socks::Error as E;
    Some(match e {
        E::GeneralSocksServerFailure if version != Version::V5 => {
            (0x5b, "request rejected or failed")
        }
        E::GeneralSocksServerFailure => (0x01, "general SOCKS server failure"),
        E::ConnectionNotAllowedByRuleset => (0x02, "connection not allowed by ruleset"),
        E::NetworkUnreachable => (0x03, "network unreachable"),
        E::HostUnreachable => (0x04, "host unreachable"),
        E::ConnectionRefused => (0x05, "connection refused"),
        E::TtlExpired => (0x06, "TTL expired"),
        E::CommandNotSupported => (0x07, "command not supported"),
        E::AddressTypeNotSupported => (0x08, "address type not supported"),
        E::IdentdAuthFailure => (0x5c, "the server cannot reach identd on the client"),
        E::InvalidUserIdAuthFailure => (0x5d, "identd reports another user id"),
        _ => return None,
    })
}

/// A SOCKS handshake's failure, named: `socks_auth_failed`, `socks_refused` with the reply
/// code and its meaning, or how the connection broke.
pub fn refusal(e: tokio_socks::Error, proxy: &SocksProxy, target: &str) -> Failure {
    use tokio_socks::Error as E;
    let server = format!(
        "the {} proxy {}",
        proxy.version.pac_name(),
        super::addr::join(&proxy.host, proxy.port)
    );
    if let Some((code, meaning)) = reply_code(&e, proxy.version) {
        let detail = format!("{server} refused CONNECT {target}: reply 0x{code:02x}, {meaning}");
        return Failure::new(FailureKind::SocksRefused, Side::UpstreamProxy, detail);
    }
    let auth = match &e {
        E::PasswordAuthFailure(_) => Some("the username and password were refused"),
        E::NoAcceptableAuthMethods => Some(if proxy.credentials.is_some() {
            "it accepts none of the offered methods (no auth, username/password)"
        } else {
            "it wants a username and password (socks5://user:pass@host:port)"
        }),
        E::AuthorizationRequired => Some("it wants a username and password"),
        E::InvalidAuthValues(why) => Some(*why),
        _ => None,
    };
    if let Some(why) = auth {
        let detail = format!("{server} did not let diagproxy in: {why}");
        return Failure::new(FailureKind::SocksAuthFailed, Side::UpstreamProxy, detail);
    }
    let detail = format!("{server} broke the handshake for {target}: {e}");
    let kind = match &e {
        E::Io(io) if io.kind() == std::io::ErrorKind::ConnectionReset => FailureKind::Reset,
        _ => FailureKind::ConnectFailed,
    };
    Failure::new(kind, Side::UpstreamProxy, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(version: Version) -> SocksProxy {
        SocksProxy {
            version,
            host: "socks.corp".into(),
            port: 1080,
            credentials: None,
            chosen: true,
        }
    }

    #[test]
    fn refusals_are_named_with_their_reply_code() {
        let p = proxy(Version::V5);
        let f = refusal(
            tokio_socks::Error::ConnectionNotAllowedByRuleset,
            &p,
            "chatgpt.com:443",
        );
        assert_eq!(
            (f.kind, f.side),
            (FailureKind::SocksRefused, Side::UpstreamProxy)
        );
        assert_eq!(
            f.detail,
            "the SOCKS5 proxy socks.corp:1080 refused CONNECT chatgpt.com:443: reply 0x02, connection not allowed by ruleset"
        );
        let v4 = refusal(
            tokio_socks::Error::GeneralSocksServerFailure,
            &proxy(Version::V4),
            "1.2.3.4:443",
        );
        assert!(
            v4.detail.contains("reply 0x5b, request rejected or failed"),
            "{}",
            v4.detail
        );
        let auth = refusal(tokio_socks::Error::PasswordAuthFailure(1), &p, "x:1");
        assert_eq!(auth.kind, FailureKind::SocksAuthFailed);
        let wants = refusal(tokio_socks::Error::NoAcceptableAuthMethods, &p, "x:1");
        assert!(
            wants.detail.contains("socks5://user:pass@host:port"),
            "{}",
            wants.detail
        );
        let other = refusal(tokio_socks::Error::InvalidResponseVersion, &p, "x:1");
        assert_eq!(other.kind, FailureKind::ConnectFailed);
    }

    #[test]
    fn a_password_is_never_shown() {
        let mut p = proxy(Version::V5);
        p.credentials = Some(("bob".into(), "s3cret".into()));
        assert_eq!(p.display(), "socks5://***@socks.corp:1080");
        assert!(!format!("{p:?}").contains("s3cret"));
    }
}

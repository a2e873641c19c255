//! Names to addresses: IP literals as they are, `--resolve` pins next, `.invalid` refused
//! (RFC 6761), then the system resolver with the connect deadline. And the one question
//! about an address that loops: is it diagproxy itself?

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::addr::unbracket;
use crate::config::Config;
use crate::failure::{Failure, FailureKind, Side};

/// The addresses for `host:port` and how long the lookup took (`None` when no lookup was
/// made: an IP literal or a pin). `side` says whose failure a failure is.
pub async fn resolve(
    host: &str,
    port: u16,
    config: &Config,
    side: Side,
) -> Result<(Vec<SocketAddr>, Option<Duration>), Failure> {
    let bare = unbracket(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok((vec![SocketAddr::new(ip, port)], None));
    }
    if let Some(ip) = config.resolve.get(&(bare.to_ascii_lowercase(), port)) {
        return Ok((vec![SocketAddr::new(*ip, port)], None));
    }
    let lower = bare.trim_end_matches('.').to_ascii_lowercase();
    if lower == "invalid" || lower.ends_with(".invalid") {
        // RFC 6761 §6.4: resolvers answer .invalid negatively without asking anyone.
        return Err(Failure::new(
            FailureKind::DnsFailed,
            side,
            format!("DNS lookup of {bare}: a reserved name that never resolves (RFC 6761)"),
        ));
    }
    let started = Instant::now();
    let looked_up = tokio::time::timeout(
        config.connect_timeout,
        tokio::net::lookup_host((bare, port)),
    )
    .await;
    let took = started.elapsed();
    match looked_up {
        Ok(Ok(addrs)) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            if addrs.is_empty() {
                return Err(Failure::new(
                    FailureKind::DnsFailed,
                    side,
                    format!("DNS lookup of {bare}: no addresses"),
                ));
            }
            Ok((addrs, Some(took)))
        }
        Ok(Err(e)) => Err(Failure::new(
            FailureKind::DnsFailed,
            side,
            format!("DNS lookup of {bare}: {e}"),
        )),
        Err(_) => Err(Failure::new(
            FailureKind::DnsFailed,
            side,
            format!(
                "DNS lookup of {bare}: no answer in {:?}",
                config.connect_timeout
            ),
        )),
    }
}

/// Whether `host:port` is the proxy itself (so forwarding there would loop).
pub fn targets(listen: SocketAddr, host: &str, port: u16) -> bool {
    if port != listen.port() {
        return false;
    }
    let host = unbracket(host);
    match host.parse::<IpAddr>() {
        Ok(ip) => {
            ip == listen.ip()
                || (ip.is_loopback() && (listen.ip().is_loopback() || listen.ip().is_unspecified()))
        }
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_targets() {
        let listen: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert!(targets(listen, "127.0.0.1", 8080));
        assert!(targets(listen, "localhost", 8080));
        assert!(targets(listen, "127.0.0.2", 8080));
        assert!(!targets(listen, "127.0.0.1", 8081));
        assert!(!targets(listen, "chatgpt.com", 8080));
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert!(targets(any, "[::1]", 8080));
    }
}

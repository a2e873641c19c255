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
    if let Some(ips) = config.dns_answers.get(&lower) {
        let addrs = ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect();
        return Ok((addrs, Some(Duration::ZERO)));
    }
    if config.loopback_only && lower != "localhost" && !lower.ends_with(".localhost") {
        // The test suite's guard: not even a DNS query leaves the machine.
        return Err(Failure::new(
            FailureKind::DnsFailed,
            side,
            format!("DNS lookup of {bare}: not looked up: DIAGPROXY_LOOPBACK_ONLY=1 allows pinned names and localhost only"),
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

/// A `--resolve` pin for `host` on any port (the lowest port first, so the answer does not
/// depend on the map's order): what a PAC script's `dnsResolve` sees.
pub fn pinned_any_port(config: &Config, host: &str) -> Option<IpAddr> {
    let host = unbracket(host).trim_end_matches('.').to_ascii_lowercase();
    config
        .resolve
        .iter()
        .filter(|((h, _), _)| *h == host)
        .min_by_key(|((_, port), _)| *port)
        .map(|(_, ip)| *ip)
}

/// Whether `host:port` is the proxy itself (so forwarding there would loop).
pub fn targets(listen: SocketAddr, host: &str, port: u16) -> bool {
    if port != listen.port() {
        return false;
    }
    let host = unbracket(host).trim_end_matches('.');
    let Some(ip) = canonical_ip(host) else {
        return host.eq_ignore_ascii_case("localhost")
            || host.to_ascii_lowercase().ends_with(".localhost");
    };
    let local = |ip: IpAddr| ip.is_loopback() || ip.is_unspecified();
    ip == listen.ip() || (local(ip) && local(listen.ip()))
}

/// An address in any spelling a client would connect to: IPv4 as `inet_aton` reads it
/// (`127.1`, `2130706433`, `0x7f.1`), IPv6, and an IPv4-mapped IPv6 address as its IPv4.
pub fn canonical_ip(host: &str) -> Option<IpAddr> {
    let ip = match host.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) => IpAddr::V4(inet_aton(host)?),
    };
    Some(match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    })
}

/// IPv4 as `inet_aton(3)` reads it: one to four parts, each decimal, octal (`0…`) or hex
/// (`0x…`), the last filling the remaining bytes.
fn inet_aton(text: &str) -> Option<std::net::Ipv4Addr> {
    let parts: Vec<u32> = text.split('.').map(aton_part).collect::<Option<_>>()?;
    let (last, head) = parts.split_last()?;
    if head.len() > 3 || head.iter().any(|&p| p > 255) {
        return None;
    }
    let room = 8 * (4 - head.len() as u32);
    if room < 32 && *last >> room != 0 {
        return None;
    }
    let high = head
        .iter()
        .enumerate()
        .fold(0u32, |acc, (i, &p)| acc | p << (24 - 8 * i as u32));
    Some(std::net::Ipv4Addr::from(high | last))
}

fn aton_part(part: &str) -> Option<u32> {
    if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
        return u32::from_str_radix(hex, 16).ok();
    }
    if part.len() > 1 && part.starts_with('0') {
        return u32::from_str_radix(&part[1..], 8).ok();
    }
    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    part.parse().ok()
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
        for spelling in [
            "127.1",
            "2130706433",
            "0x7f.1",
            "0177.0.0.1",
            "0.0.0.0",
            "[::ffff:127.0.0.1]",
            "[::]",
            "LOCALHOST.",
            "a.localhost",
        ] {
            assert!(targets(listen, spelling, 8080), "{spelling}");
        }
        for other in ["10.1", "256.0.0.1", "1.2.3.4.5", "0x", "chatgpt.com"] {
            assert!(!targets(listen, other, 8080), "{other}");
        }
        assert_eq!(inet_aton("10.1"), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(inet_aton("1.2.65535"), Some("1.2.255.255".parse().unwrap()));
        assert_eq!(inet_aton("1.2.65536"), None);
    }
}

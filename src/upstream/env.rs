//! Proxies named by settings rather than a PAC: the environment (`HTTPS_PROXY`,
//! `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`, either case, curl's rules) and a desktop's manual
//! settings (one proxy per scheme plus hosts to bypass), as one [`Manual`] value.

use std::net::IpAddr;
use std::sync::Arc;

use super::route::{parse_upstream_proxy, UpstreamProxy};

/// One proxy per scheme and the hosts that bypass them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manual {
    pub https: Option<Arc<UpstreamProxy>>,
    pub http: Option<Arc<UpstreamProxy>>,
    pub bypass: Bypass,
    /// What set them, for the route source (`HTTPS_PROXY`, `GNOME settings`).
    pub https_from: String,
    pub http_from: String,
}

impl Manual {
    /// The proxy for `host:port` (`None`: DIRECT) and why.
    pub fn route(&self, https: bool, host: &str, port: u16) -> (Option<&Arc<UpstreamProxy>>, &str) {
        if self.bypass.matches(host, port) {
            return (None, self.bypass.from.as_str());
        }
        if https {
            (self.https.as_ref(), self.https_from.as_str())
        } else {
            (self.http.as_ref(), self.http_from.as_str())
        }
    }

    pub fn is_empty(&self) -> bool {
        self.https.is_none() && self.http.is_none()
    }

    /// The proxies named, for the self-loop check and the banner.
    pub fn proxies(&self) -> impl Iterator<Item = &Arc<UpstreamProxy>> {
        self.https.iter().chain(self.http.iter())
    }
}

/// The environment's proxies: `https_proxy` before `HTTPS_PROXY` (curl's order), `ALL_PROXY`
/// for a scheme without its own. `None` when none is set. A value diagproxy cannot use
/// (`socks5://…`) is left out with a warning.
pub fn from_env(var: impl Fn(&str) -> Option<String>) -> (Option<Manual>, Vec<String>) {
    let mut warnings = Vec::new();
    let mut get = |name: &str| -> Option<(Arc<UpstreamProxy>, String)> {
        let upper = name.to_ascii_uppercase();
        let (value, from) = [name.to_string(), upper]
            .into_iter()
            .find_map(|n| var(&n).filter(|v| !v.trim().is_empty()).map(|v| (v, n)))?;
        let url = if value.contains("://") {
            value.trim().to_string()
        } else {
            format!("http://{}", value.trim())
        };
        match parse_upstream_proxy(&url) {
            Ok(proxy) => Some((Arc::new(proxy), from)),
            Err(e) => {
                warnings.push(format!("{from} ignored: {e}"));
                None
            }
        }
    };
    let all = get("all_proxy");
    let https = get("https_proxy").or_else(|| all.clone());
    let http = get("http_proxy").or_else(|| all.clone());
    if https.is_none() && http.is_none() {
        return (None, warnings);
    }
    let bypass = ["no_proxy", "NO_PROXY"]
        .iter()
        .find_map(|n| var(n).map(|v| Bypass::parse(&v, n)))
        .unwrap_or_default();
    let (https, https_from) = https.map_or((None, String::new()), |(p, f)| (Some(p), f));
    let (http, http_from) = http.map_or((None, String::new()), |(p, f)| (Some(p), f));
    let manual = Manual {
        https,
        http,
        bypass,
        https_from,
        http_from,
    };
    (Some(manual), warnings)
}

/// Hosts that go DIRECT (`NO_PROXY`, GNOME's `ignore-hosts`, KDE's `NoProxyFor`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bypass {
    entries: Vec<Skip>,
    /// Where the list came from, for the route source.
    pub from: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Skip {
    /// `*`: everything.
    All,
    /// `example.com` or `.example.com`: the name and every name under it (curl's rule);
    /// `*.example.com` likewise.
    Domain(String, Option<u16>),
    /// `10.0.0.0/8`, `::1`: addresses given as literals.
    Net(IpAddr, u8),
}

impl Bypass {
    /// Entries separated by commas or spaces.
    pub fn parse(list: &str, from: &str) -> Bypass {
        let entries = list
            .split([',', ' ', ';'])
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .filter_map(Skip::parse)
            .collect();
        Bypass {
            entries,
            from: from.to_string(),
        }
    }

    pub fn matches(&self, host: &str, port: u16) -> bool {
        let host = super::addr::unbracket(host)
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let ip = host.parse::<IpAddr>().ok();
        self.entries.iter().any(|e| match e {
            Skip::All => true,
            Skip::Domain(d, p) => {
                p.is_none_or(|p| p == port) && (host == *d || host.ends_with(&format!(".{d}")))
            }
            Skip::Net(net, bits) => ip.is_some_and(|ip| in_net(ip, *net, *bits)),
        })
    }
}

impl Skip {
    fn parse(entry: &str) -> Option<Skip> {
        if entry == "*" {
            return Some(Skip::All);
        }
        let entry = entry.to_ascii_lowercase();
        if let Some((net, bits)) = entry.split_once('/') {
            let net: IpAddr = net.parse().ok()?;
            let bits: u8 = bits.parse().ok()?;
            return Some(Skip::Net(net, bits));
        }
        if let Ok(ip) = super::addr::unbracket(&entry).parse::<IpAddr>() {
            return Some(Skip::Net(ip, if ip.is_ipv4() { 32 } else { 128 }));
        }
        let (name, port) = match super::HostPort::parse(&entry, 0) {
            Some(hp) if hp.port != 0 => (hp.host, Some(hp.port)),
            _ => (entry.clone(), None),
        };
        let name = name.trim_start_matches("*.").trim_start_matches('.');
        Some(Skip::Domain(name.trim_end_matches('.').to_string(), port))
    }
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => prefix(&a.octets(), &n.octets(), bits),
        (IpAddr::V6(a), IpAddr::V6(n)) => prefix(&a.octets(), &n.octets(), bits),
        _ => false,
    }
}

fn prefix(a: &[u8], n: &[u8], bits: u8) -> bool {
    let bits = usize::from(bits).min(a.len() * 8);
    let whole = bits / 8;
    if a[..whole] != n[..whole] {
        return false;
    }
    let rest = bits % 8;
    rest == 0 || (a[whole] ^ n[whole]) >> (8 - rest) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> (Option<Manual>, Vec<String>) {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        from_env(|name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn environment_proxies_by_scheme_with_all_proxy_as_fallback() {
        let (m, w) = env(&[
            ("HTTPS_PROXY", "http://secure.corp:8443"),
            ("ALL_PROXY", "every.corp:3128"),
        ]);
        let m = m.unwrap();
        assert!(w.is_empty(), "{w:?}");
        let (p, from) = m.route(true, "chatgpt.com", 443);
        assert_eq!(
            (p.unwrap().host.as_str(), p.unwrap().port, from),
            ("secure.corp", 8443, "HTTPS_PROXY")
        );
        let (p, from) = m.route(false, "chatgpt.com", 80);
        assert_eq!(
            (p.unwrap().host.as_str(), from),
            ("every.corp", "ALL_PROXY")
        );
        assert!(env(&[]).0.is_none());
        assert!(env(&[("NO_PROXY", "*")]).0.is_none());
    }

    #[test]
    fn lower_case_wins_and_unusable_values_are_warned_about() {
        let (m, _) = env(&[
            ("https_proxy", "http://low:1"),
            ("HTTPS_PROXY", "http://up:2"),
        ]);
        assert_eq!(m.unwrap().https.unwrap().host, "low");
        let (m, w) = env(&[("HTTPS_PROXY", "socks5://s:1080")]);
        assert!(m.is_none());
        assert!(w[0].starts_with("HTTPS_PROXY ignored"), "{w:?}");
    }

    #[test]
    fn no_proxy_follows_curl() {
        let b = Bypass::parse(
            "localhost, .corp.test,example.com:8080 10.0.0.0/8,::1,*.svc",
            "NO_PROXY",
        );
        assert!(b.matches("localhost", 443));
        assert!(b.matches("a.corp.test", 443) && b.matches("corp.test", 443));
        assert!(!b.matches("notcorp.test", 443));
        assert!(b.matches("example.com", 8080) && !b.matches("example.com", 443));
        assert!(b.matches("10.1.2.3", 443) && !b.matches("11.1.2.3", 443));
        assert!(b.matches("[::1]", 443) && b.matches("x.svc", 443));
        assert!(!b.matches("chatgpt.com", 443));
        assert!(Bypass::parse("*", "NO_PROXY").matches("anything", 1));
        let (m, _) = env(&[("HTTPS_PROXY", "p:1"), ("no_proxy", "chatgpt.com")]);
        let m = m.unwrap();
        assert_eq!(m.route(true, "ab.chatgpt.com", 443), (None, "no_proxy"));
        assert!(m.route(true, "openai.com", 443).0.is_some());
    }

    #[test]
    fn prefixes() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(in_net(ip("192.168.1.77"), ip("192.168.1.0"), 24));
        assert!(!in_net(ip("192.168.2.77"), ip("192.168.1.0"), 24));
        assert!(in_net(ip("192.168.1.77"), ip("192.168.1.64"), 26));
        assert!(!in_net(ip("192.168.1.77"), ip("192.168.1.0"), 26));
        assert!(
            in_net(ip("fd00::5"), ip("fd00::"), 8) && !in_net(ip("fd00::5"), ip("10.0.0.0"), 8)
        );
        assert!(in_net(ip("1.2.3.4"), ip("9.9.9.9"), 0));
    }
}

//! The route to a host: the ways out to try in order ([`Hop`]: DIRECT, a corporate proxy),
//! as one `--upstream-proxy` URL or a PAC result names them, and this diagproxy's `Via`.

use std::fmt;
use std::sync::Arc;

use base64::Engine;

use super::addr::HostPort;

/// This diagproxy's `Via` entry (RFC 9110 §7.6.3), added to every request it forwards and
/// every CONNECT it sends a corporate proxy. A request that already carries it has come
/// round in a loop (a proxy setting or a PAC that points back here) and is refused.
pub fn via() -> &'static str {
    static VIA: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VIA.get_or_init(|| format!("1.1 diagproxy-{}", std::process::id()))
}

/// Whether `headers` carry this diagproxy's own `Via` entry.
pub fn came_through_us(headers: &hyper::HeaderMap) -> bool {
    let ours = via().as_bytes();
    headers.get_all(hyper::header::VIA).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|entry| entry.trim_ascii() == ours)
    })
}

/// One way out, as a PAC result names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hop {
    /// A TCP connection straight to the host.
    Direct,
    /// CONNECT (or an absolute-form request) through this corporate proxy.
    Proxy(Arc<UpstreamProxy>),
    /// A connection through this SOCKS server (`SOCKS`, `SOCKS4`, `SOCKS5` in a PAC).
    Socks(Arc<SocksProxy>),
}

impl Hop {
    /// Whether `failure` means this hop could not be reached, so the next one is tried (and
    /// a proxy skipped for a while): for a proxy, only a failure on the proxy's side — a
    /// target a SOCKS4 hop could not resolve here is the target's, not the proxy's.
    pub fn unreachable(&self, failure: &crate::failure::Failure) -> bool {
        failure.is_unreachable()
            && (matches!(self, Hop::Direct) || failure.side == crate::failure::Side::UpstreamProxy)
    }

    /// The proxy's `host:port` when the hop is a proxy of any kind.
    pub fn endpoint(&self) -> Option<(&str, u16)> {
        match self {
            Hop::Proxy(p) => Some((&p.host, p.port)),
            Hop::Socks(p) => Some((&p.host, p.port)),
            Hop::Direct => None,
        }
    }
}

impl fmt::Display for Hop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hop::Direct => f.write_str("DIRECT"),
            Hop::Proxy(p) => {
                let kind = if p.tls { "HTTPS" } else { "PROXY" };
                write!(f, "{kind} {}", HostPort::new(p.host.as_str(), p.port))
            }
            Hop::Socks(p) => write!(
                f,
                "{} {}",
                p.version.pac_name(),
                HostPort::new(p.host.as_str(), p.port)
            ),
        }
    }
}

/// A proxy's kind as a recorded hop names it (`PROXY a:3128`, `SOCKS5 s:1080`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyKind {
    Http,
    Https,
    Socks5,
    Socks4,
    Socks4a,
}

impl ProxyKind {
    const ALL: [ProxyKind; 5] = [
        ProxyKind::Http,
        ProxyKind::Https,
        ProxyKind::Socks5,
        ProxyKind::Socks4,
        ProxyKind::Socks4a,
    ];

    /// The word a PAC and a recorded hop use.
    pub fn name(self) -> &'static str {
        match self {
            ProxyKind::Http => "PROXY",
            ProxyKind::Https => "HTTPS",
            ProxyKind::Socks5 => "SOCKS5",
            ProxyKind::Socks4 => "SOCKS4",
            ProxyKind::Socks4a => "SOCKS4A",
        }
    }

    /// The URL scheme curl takes for it.
    pub fn scheme(self) -> &'static str {
        match self {
            ProxyKind::Http => "http",
            ProxyKind::Https => "https",
            ProxyKind::Socks5 => "socks5h",
            ProxyKind::Socks4 => "socks4",
            ProxyKind::Socks4a => "socks4a",
        }
    }

    fn named(word: &str) -> Option<ProxyKind> {
        ProxyKind::ALL.into_iter().find(|k| k.name() == word)
    }
}

/// The hop a connection took, as its event records it: the kind and `host:port`, never
/// credentials. Written as the text it has always been (`DIRECT`, `PROXY a:3128`, `HTTPS
/// p:443`, `SOCKS5 s:1080`, so `summary.json` and `events.jsonl` readers see no change) and
/// parsed once where it is read; text of another shape (a newer diagproxy's) is kept as
/// `Other`, not refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TakenHop {
    Direct,
    Proxy { kind: ProxyKind, at: String },
    Other(String),
}

impl TakenHop {
    /// The proxy's `host:port`, or `None` for `DIRECT`.
    pub fn proxy(&self) -> Option<&str> {
        match self {
            TakenHop::Proxy { at, .. } => Some(at),
            _ => None,
        }
    }

    pub fn kind(&self) -> Option<ProxyKind> {
        match self {
            TakenHop::Proxy { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// The proxy as the URL curl takes (`http://a:3128`, `socks5h://s:1080`).
    pub fn url(&self) -> Option<String> {
        let TakenHop::Proxy { kind, at } = self else {
            return None;
        };
        Some(format!("{}://{at}", kind.scheme()))
    }
}

/// Built from the hop's parts, not its text: this runs for every request.
impl From<&Hop> for TakenHop {
    fn from(hop: &Hop) -> TakenHop {
        let (kind, host, port) = match hop {
            Hop::Direct => return TakenHop::Direct,
            Hop::Proxy(p) if p.tls => (ProxyKind::Https, &p.host, p.port),
            Hop::Proxy(p) => (ProxyKind::Http, &p.host, p.port),
            Hop::Socks(p) => (p.version.kind(), &p.host, p.port),
        };
        let at = HostPort::new(host.as_str(), port).to_string();
        TakenHop::Proxy { kind, at }
    }
}

impl From<&str> for TakenHop {
    fn from(text: &str) -> TakenHop {
        let Ok(hop) = text.parse();
        hop
    }
}

impl std::str::FromStr for TakenHop {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<TakenHop, Self::Err> {
        if text == "DIRECT" {
            return Ok(TakenHop::Direct);
        }
        let proxy = text.split_once(' ').and_then(|(word, at)| {
            let kind = ProxyKind::named(word)?;
            Some(TakenHop::Proxy {
                kind,
                at: at.to_string(),
            })
        });
        Ok(proxy.unwrap_or_else(|| TakenHop::Other(text.to_string())))
    }
}

impl fmt::Display for TakenHop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TakenHop::Direct => f.write_str("DIRECT"),
            TakenHop::Proxy { kind, at } => write!(f, "{} {at}", kind.name()),
            TakenHop::Other(text) => f.write_str(text),
        }
    }
}

impl serde::Serialize for TakenHop {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for TakenHop {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<TakenHop, D::Error> {
        let text = String::deserialize(d)?;
        let Ok(hop) = text.parse();
        Ok(hop)
    }
}

/// The proxy's `host:port` of a recorded route entry: a hop, or a `route_failed` entry
/// (`PROXY a:3128: connection refused`); `None` for `DIRECT` and what is no proxy.
pub fn hop_proxy(entry: &str) -> Option<&str> {
    let (kind, rest) = entry.split_once(' ')?;
    ProxyKind::named(kind).map(|_| rest.split_once(": ").map_or(rest, |(hp, _)| hp))
}

/// How diagproxy reaches one host: the ways to try, in order, and who said so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Never empty: the first that connects is taken (Chromium's fallback).
    pub hops: Vec<Hop>,
    /// Where the route came from: `--upstream-proxy`, `environment (HTTPS_PROXY)`,
    /// `PAC http://pac.corp/proxy.pac (GNOME settings)`.
    pub source: Arc<str>,
    /// Why the route source gave no answer for this host (a `pac_error`); the route is
    /// then DIRECT, as browsers do.
    pub error: Option<String>,
}

impl Route {
    pub fn direct(source: Arc<str>) -> Route {
        Route {
            hops: vec![Hop::Direct],
            source,
            error: None,
        }
    }

    pub fn via(proxy: Arc<UpstreamProxy>, source: Arc<str>) -> Route {
        Route {
            hops: vec![Hop::Proxy(proxy)],
            source,
            error: None,
        }
    }

    /// The hops as a PAC result spells them: `PROXY a:3128; DIRECT`.
    pub fn describe(&self) -> String {
        let hops: Vec<String> = self.hops.iter().map(Hop::to_string).collect();
        hops.join("; ")
    }
}

/// Which way one connection took, as its event records it: the hop, the route's source,
/// the hops that failed before it, and why a PAC gave no answer.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Taken {
    /// `DIRECT` or `PROXY host:port` (a [`TakenHop`], written as that text).
    #[serde(rename = "route", default, skip_serializing_if = "Option::is_none")]
    pub hop: Option<TakenHop>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_source: Option<String>,
    /// Hops tried first that could not be reached (`PROXY a:3128: connection refused`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route_failed: Vec<String>,
    /// The PAC script's failure for this host (the route is then DIRECT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pac_error: Option<String>,
    /// Signing in to the proxy after its `407`: schemes offered and used, the outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_auth: Option<super::auth::AuthRecord>,
    /// What the corporate proxy's `200` to the CONNECT said of itself (`via`, `server`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxy_headers: Vec<(String, String)>,
    /// An HTTPS proxy's own chain, judged (the TLS to the proxy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_tls: Option<crate::tls::chain::TlsVerdict>,
}

impl From<&Route> for Taken {
    fn from(route: &Route) -> Taken {
        Taken {
            hop: None,
            route_source: Some(route.source.to_string()),
            route_failed: Vec::new(),
            pac_error: route.error.clone(),
            proxy_auth: None,
            proxy_headers: Vec::new(),
            proxy_tls: None,
        }
    }
}

/// The most hops of one PAC answer that are kept (Chromium tries them in turn; no network
/// needs more): the rest are dropped.
pub const MAX_HOPS: usize = 32;

/// A PAC result (`PROXY a:3128; PROXY b:3128; DIRECT`) as hops, the first [`MAX_HOPS`]. `HTTP` is `PROXY`;
/// `SOCKS` and `SOCKS4` are SOCKS4 (Chromium reads a bare `SOCKS` so), `SOCKS5` is SOCKS5;
/// `HTTPS` is an HTTPS proxy (TLS to the proxy); an entry that is none of these, or a proxy without a port, is an error (Chromium skips such entries; we
/// say so). An empty result is DIRECT.
pub fn parse_pac_result(text: &str) -> Result<Vec<Hop>, String> {
    let mut hops = Vec::new();
    let entries = text.split(';').map(str::trim).filter(|e| !e.is_empty());
    for entry in entries.take(MAX_HOPS) {
        let mut words = entry.split_whitespace();
        let scheme = words.next().unwrap_or_default().to_ascii_uppercase();
        let target = words.next();
        if words.next().is_some() {
            return Err(format!("{entry:?}: one scheme and one host:port per entry"));
        }
        let hop = match (scheme.as_str(), target) {
            ("DIRECT", None) => Hop::Direct,
            ("PROXY" | "HTTP", Some(target)) => Hop::Proxy(Arc::new(pac_proxy(entry, target)?)),
            ("SOCKS" | "SOCKS4" | "SOCKS5", Some(target)) => {
                let p = pac_proxy(entry, target)?;
                let version = match scheme.as_str() {
                    "SOCKS5" => Version::V5,
                    _ => Version::V4,
                };
                Hop::Socks(Arc::new(SocksProxy {
                    version,
                    host: p.host,
                    port: p.port,
                    credentials: None,
                    chosen: false,
                }))
            }
            ("HTTPS", Some(target)) => Hop::Proxy(Arc::new(UpstreamProxy {
                tls: true,
                ..pac_proxy(entry, target)?
            })),
            _ => {
                return Err(format!(
                    "{entry:?}: not DIRECT, PROXY, HTTPS or SOCKS host:port"
                ))
            }
        };
        hops.push(hop);
    }
    if hops.is_empty() {
        hops.push(Hop::Direct);
    }
    Ok(hops)
}

fn pac_proxy(entry: &str, target: &str) -> Result<UpstreamProxy, String> {
    let HostPort { host, port } = HostPort::parse(target, 0)
        .filter(|hp| hp.port != 0)
        .ok_or_else(|| format!("{entry:?}: a proxy needs host:port"))?;
    Ok(UpstreamProxy {
        host,
        port,
        authorization: None,
        tls: false,
        chosen: false,
    })
}

/// Which SOCKS, and who resolves the target's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// SOCKS4: an IPv4 address resolved by diagproxy (PAC `SOCKS`, `SOCKS4`; `socks4://`).
    V4,
    /// SOCKS4a: the name sent to the proxy (`socks4a://`).
    V4a,
    /// SOCKS5 with the name sent to the proxy (PAC `SOCKS5`; `socks5://`).
    V5,
}

impl Version {
    /// As a PAC result spells it (`SOCKS4A` is no PAC keyword; it is shown so).
    pub fn pac_name(self) -> &'static str {
        self.kind().name()
    }

    /// The kind a recorded hop names.
    pub fn kind(self) -> ProxyKind {
        match self {
            Version::V4 => ProxyKind::Socks4,
            Version::V4a => ProxyKind::Socks4a,
            Version::V5 => ProxyKind::Socks5,
        }
    }

    /// The URL scheme (`--upstream-proxy`).
    pub fn scheme(self) -> &'static str {
        match self {
            Version::V4 => "socks4",
            Version::V4a => "socks4a",
            Version::V5 => "socks5",
        }
    }
}

/// A SOCKS server on the route.
#[derive(Clone, PartialEq, Eq)]
pub struct SocksProxy {
    pub version: Version,
    pub host: String,
    pub port: u16,
    /// SOCKS5 username/password (RFC 1929), from `socks5://user:pass@host:port`.
    pub credentials: Option<(String, String)>,
    /// Named by the user (`--upstream-proxy`), not by a PAC: `--upstream-user` may be sent
    /// to it (see `auth::Settings::password_to`).
    pub chosen: bool,
}

impl fmt::Debug for SocksProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display())
    }
}

impl SocksProxy {
    /// `socks5://host:port`, or `socks5://***@host:port`: safe to log and record.
    pub fn display(&self) -> String {
        let creds = if self.credentials.is_some() {
            "***@"
        } else {
            ""
        };
        format!(
            "{}://{creds}{}",
            self.version.scheme(),
            super::addr::join(&self.host, self.port)
        )
    }
}

/// `--upstream-proxy`: `auto`, `direct`, a proxy URL, or `pac:URL` / `pac:FILE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spec {
    Auto,
    Direct,
    Fixed(UpstreamProxy),
    /// `socks5://[user:pass@]host:port`, `socks4://host:port`, `socks4a://host:port`.
    Socks(SocksProxy),
    Pac(String),
}

impl Spec {
    pub fn parse(text: &str) -> Result<Spec, String> {
        let text = text.trim();
        Ok(match text {
            "auto" => Spec::Auto,
            "direct" => Spec::Direct,
            _ => match text.strip_prefix("pac:") {
                Some("") => return Err("--upstream-proxy pac: needs a URL or a file".into()),
                Some(location) => Spec::Pac(location.to_string()),
                None if text.starts_with("socks") => Spec::Socks(parse_socks_proxy(text)?),
                None => Spec::Fixed(
                    parse_upstream_proxy(text)
                        .map_err(|e| format!("{e} (or auto, direct, pac:URL, pac:FILE)"))?,
                ),
            },
        })
    }
}

/// The corporate proxy: where it is and what to tell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamProxy {
    pub host: String,
    pub port: u16,
    /// `Basic …`, sent as `Proxy-Authorization`.
    pub authorization: Option<String>,
    /// An HTTPS proxy (`https://`, PAC `HTTPS host:port`): TLS to the proxy first, its
    /// chain judged like any, then CONNECT inside.
    pub tls: bool,
    /// Named by the user (the command line, the environment, the desktop's manual
    /// settings), not by a PAC or WPAD file the network served: only such a proxy, or one
    /// `--upstream-auth-proxies` names, is sent `--upstream-user`'s password (Basic, NTLM).
    pub chosen: bool,
}

impl UpstreamProxy {
    /// `http://host:port`, or `http://user:***@host:port`: safe to log and record.
    pub fn display(&self) -> String {
        let creds = if self.authorization.is_some() {
            "***@"
        } else {
            ""
        };
        let scheme = if self.tls { "https" } else { "http" };
        format!(
            "{scheme}://{creds}{}",
            HostPort::new(self.host.as_str(), self.port)
        )
    }
}

pub fn basic(user_pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_pass)
    )
}

/// `http://[user:pass@]host[:port][/]`; user and password may be percent-encoded.
pub fn parse_upstream_proxy(url: &str) -> Result<UpstreamProxy, String> {
    // Never echo a password: the userinfo, if any, is shown as `***`.
    let shown = match url
        .split_once("://")
        .and_then(|(s, r)| Some((s, r.rsplit_once('@')?.1)))
    {
        Some((scheme, rest)) => format!("{scheme}://***@{rest}"),
        None => url.to_string(),
    };
    let err = |why: &str| {
        format!("--upstream-proxy {shown:?}: {why}; expected http://[user:pass@]host:port or https://[user:pass@]host:port")
    };
    let (rest, tls) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(rest), _) => (rest, false),
        (None, Some(rest)) => (rest, true),
        (None, None) => return Err(err("not an http:// or https:// proxy URL")),
    };
    let (userinfo, hostport) = userinfo_and_host(rest).map_err(err)?;
    let authorization = match userinfo {
        Some(u) => {
            let (user, pass) = u.split_once(':').unwrap_or((u, ""));
            Some(basic(&format!(
                "{}:{}",
                crate::text::percent_decode(user, false),
                crate::text::percent_decode(pass, false)
            )))
        }
        None => None,
    };
    let default_port = if tls { 443 } else { 80 };
    let HostPort { host, port } =
        HostPort::parse(hostport, default_port).ok_or_else(|| err("bad host or port"))?;
    Ok(UpstreamProxy {
        host,
        port,
        authorization,
        tls,
        chosen: true,
    })
}

/// `socks5://[user:pass@]host:port`, `socks4://host:port`, `socks4a://host:port` (the port
/// defaults to 1080; credentials only for SOCKS5, percent-decoded).
pub fn parse_socks_proxy(url: &str) -> Result<SocksProxy, String> {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let shown = match rest.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}"),
        None => url.to_string(),
    };
    let err = |why: &str| {
        format!("--upstream-proxy {shown:?}: {why}; expected socks5://[user:pass@]host:port, socks4://host:port or socks4a://host:port")
    };
    let version = match scheme.to_ascii_lowercase().as_str() {
        "socks5" | "socks5h" => Version::V5,
        "socks4" => Version::V4,
        "socks4a" => Version::V4a,
        _ => return Err(err("not a SOCKS scheme")),
    };
    let (userinfo, hostport) = userinfo_and_host(rest).map_err(err)?;
    if userinfo.is_some() && version != Version::V5 {
        return Err(err("only SOCKS5 takes a username and password"));
    }
    let credentials = userinfo.map(|u| {
        let (user, pass) = u.split_once(':').unwrap_or((u, ""));
        (
            crate::text::percent_decode(user, false),
            crate::text::percent_decode(pass, false),
        )
    });
    let HostPort { host, port } =
        HostPort::parse(hostport, 1080).ok_or_else(|| err("bad host or port"))?;
    Ok(SocksProxy {
        version,
        host,
        port,
        credentials,
        chosen: true,
    })
}

/// A proxy URL after its `scheme://`: the `user:pass` before an `@`, if any, and the
/// `host:port` (a trailing `/` allowed, no path).
fn userinfo_and_host(rest: &str) -> Result<(Option<&str>, &str), &'static str> {
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') {
        return Err("a proxy URL has no path");
    }
    Ok(match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(Spec::parse("auto"), Ok(Spec::Auto));
        assert_eq!(Spec::parse("direct"), Ok(Spec::Direct));
        assert_eq!(
            Spec::parse("pac:/etc/p.pac"),
            Ok(Spec::Pac("/etc/p.pac".into()))
        );
        assert_eq!(
            Spec::parse("pac:http://pac.corp/p.pac"),
            Ok(Spec::Pac("http://pac.corp/p.pac".into()))
        );
        assert!(matches!(Spec::parse("http://corp:3128"), Ok(Spec::Fixed(p)) if p.port == 3128));
        assert!(Spec::parse("pac:").is_err());
        let e = Spec::parse("corp:3128").unwrap_err();
        assert!(e.contains("auto, direct, pac:URL"), "{e}");
    }

    #[test]
    fn pac_results_become_hops_in_order() {
        let hops = parse_pac_result("PROXY a.corp:3128; proxy [::1]:8080 ;DIRECT").unwrap();
        let shown: Vec<String> = hops.iter().map(Hop::to_string).collect();
        assert_eq!(shown, ["PROXY a.corp:3128", "PROXY [::1]:8080", "DIRECT"]);
        assert_eq!(parse_pac_result("").unwrap(), [Hop::Direct]);
        assert_eq!(parse_pac_result(" ; ").unwrap(), [Hop::Direct]);
        let socks =
            parse_pac_result("SOCKS5 s:1080; SOCKS t:1081; HTTP h:80; HTTPS x:443").unwrap();
        let shown: Vec<String> = socks.iter().map(Hop::to_string).collect();
        // Chromium reads a bare SOCKS as SOCKS4.
        assert_eq!(
            shown,
            [
                "SOCKS5 s:1080",
                "SOCKS4 t:1081",
                "PROXY h:80",
                "HTTPS x:443"
            ]
        );
        assert_eq!(socks[0].endpoint(), Some(("s", 1080)));
        assert!(matches!(&socks[3], Hop::Proxy(p) if p.tls));
        for bad in [
            "PROXY corp",
            "PROXY",
            "DIRECT x:1",
            "FTP f:21",
            "PROXY a:1 b:2",
        ] {
            assert!(parse_pac_result(bad).is_err(), "{bad}");
        }
        let many = "PROXY a:1; ".repeat(10_000);
        assert_eq!(parse_pac_result(&many).unwrap().len(), MAX_HOPS);
        let e = parse_pac_result("DIRECT; PROXY corp").unwrap_err();
        assert!(e.contains("host:port"), "{e}");
    }

    #[test]
    fn only_the_proxys_own_failure_makes_its_hop_unreachable() {
        use crate::failure::{Failure, FailureKind, Side};
        let hops = parse_pac_result("SOCKS s:1; DIRECT").unwrap();
        let proxy_down = Failure::new(FailureKind::ConnectRefused, Side::UpstreamProxy, "x");
        let name_unknown = Failure::new(FailureKind::DnsFailed, Side::Upstream, "x");
        assert!(hops[0].unreachable(&proxy_down));
        assert!(
            !hops[0].unreachable(&name_unknown),
            "the target's, not the proxy's"
        );
        assert!(hops[1].unreachable(&name_unknown));
    }

    #[test]
    fn recorded_hops_read_back() {
        assert_eq!(hop_proxy("PROXY a:3128"), Some("a:3128"));
        assert_eq!(
            hop_proxy("SOCKS5 s:1080: connection refused"),
            Some("s:1080")
        );
        assert_eq!(hop_proxy("DIRECT"), None);
        assert_eq!(hop_proxy("HTTPS x:443"), Some("x:443"));
        assert_eq!(hop_proxy("QUIC x:443"), None);
        let url = |text: &str| TakenHop::from(text).url();
        assert_eq!(url("HTTPS x:443").as_deref(), Some("https://x:443"));
        assert_eq!(url("SOCKS4 s:1").as_deref(), Some("socks4://s:1"));
        assert_eq!(
            url("PROXY [::1]:8080").as_deref(),
            Some("http://[::1]:8080")
        );
        assert_eq!(url("DIRECT"), None);
    }

    #[test]
    fn a_taken_hop_is_typed_and_written_as_the_same_text() {
        for text in [
            "DIRECT",
            "PROXY a:3128",
            "HTTPS p:443",
            "SOCKS5 s:1080",
            "SOCKS4A s:1",
        ] {
            let hop = TakenHop::from(text);
            assert_eq!(hop.to_string(), text);
            assert_eq!(serde_json::to_string(&hop).unwrap(), format!("\"{text}\""));
            let back: TakenHop = serde_json::from_str(&format!("\"{text}\"")).unwrap();
            assert_eq!(back, hop);
        }
        assert_eq!(TakenHop::from("DIRECT"), TakenHop::Direct);
        assert_eq!(TakenHop::from("HTTPS p:443").kind(), Some(ProxyKind::Https));
        assert_eq!(TakenHop::from("SOCKS5 s:1080").proxy(), Some("s:1080"));
        // A newer diagproxy's word is kept, not refused.
        let other = TakenHop::from("QUIC q:443");
        assert_eq!(other, TakenHop::Other("QUIC q:443".into()));
        assert_eq!(other.proxy(), None);
        assert_eq!(other.to_string(), "QUIC q:443");
        // The hop of a route, without its credentials.
        let hop = Hop::Proxy(Arc::new(parse_upstream_proxy("http://u:p@a:3128").unwrap()));
        assert_eq!(TakenHop::from(&hop).to_string(), "PROXY a:3128");
    }

    #[test]
    fn socks_proxy_urls() {
        let p = parse_socks_proxy("socks5://u%40x:p%3Aw@127.0.0.1:1080").unwrap();
        assert_eq!(p.version, Version::V5);
        assert_eq!(p.credentials, Some(("u@x".into(), "p:w".into())));
        assert_eq!(p.display(), "socks5://***@127.0.0.1:1080");
        assert_eq!(parse_socks_proxy("socks4://s").unwrap().port, 1080);
        assert_eq!(
            parse_socks_proxy("socks4a://s:9").unwrap().version,
            Version::V4a
        );
        assert!(matches!(Spec::parse("socks5://s:1"), Ok(Spec::Socks(_))));
        let e = parse_socks_proxy("socks4://u:PW@s:1").unwrap_err();
        assert!(e.contains("only SOCKS5") && !e.contains("PW"), "{e}");
        assert!(parse_socks_proxy("socks9://s:1").is_err());
    }

    #[test]
    fn upstream_proxy_urls() {
        let p = parse_upstream_proxy("http://corp:3128").unwrap();
        assert_eq!(
            (p.host.as_str(), p.port, p.authorization),
            ("corp", 3128, None)
        );
        let p = parse_upstream_proxy("http://u%40x:p%3Aw@10.1.2.3:8080/").unwrap();
        let expected = basic("u@x:p:w");
        assert_eq!(p.authorization.as_deref(), Some(expected.as_str()));
        assert_eq!(p.display(), "http://***@10.1.2.3:8080");
        assert_eq!(
            parse_upstream_proxy("http://[::1]:3128").unwrap().host,
            "::1"
        );
        let tls = parse_upstream_proxy("https://corp").unwrap();
        assert_eq!(
            (tls.tls, tls.port, tls.display()),
            (true, 443, "https://corp:443".into())
        );
        assert!(parse_upstream_proxy("corp:3128").is_err());
        assert!(parse_upstream_proxy("http://corp:notaport").is_err());
        let e = parse_upstream_proxy("http://u:PW@corp:notaport").unwrap_err();
        assert!(!e.contains("PW") && e.contains("***@corp:notaport"), "{e}");
    }
}

//! [`Router`]: the route of every host for one session — from the route source that won
//! discovery (DIRECT, one proxy, manual settings, a PAC script) — with Chromium's two
//! memories: PAC answers cached per host, and proxies that failed to connect skipped for
//! five minutes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::env::Manual;
use super::pac::{Pac, PacError, PacFile};
use super::route::{parse_pac_result, Hop, Route, SocksProxy, UpstreamProxy};
use crate::lru::LruMap;

/// How long a proxy that did not connect is skipped (Chromium's default, five minutes).
pub const BAD_FOR: Duration = Duration::from_secs(300);
/// Proxies remembered as bad; a full list forgets the oldest.
const BAD_LIST: usize = 256;
/// How long the start-up banner's overview of the profile's routes may take.
pub const OVERVIEW_BUDGET: Duration = Duration::from_secs(5);
/// Hosts whose PAC answer is remembered for the session.
pub const PAC_CACHE: usize = 4096;
/// Different PAC error texts kept per session; later new ones are recorded as one line
/// saying so (a hostile script could make every host's error different).
pub const MAX_PAC_ERRORS: usize = 64;

/// Where routes come from.
#[derive(Debug)]
pub enum Way {
    Direct,
    Fixed(Arc<UpstreamProxy>),
    /// One SOCKS server for every host (`--upstream-proxy socks5://…`).
    Socks(Arc<SocksProxy>),
    Manual(Manual),
    /// A PAC script (in [`Router::pac`]), or why there is none (then every host goes
    /// DIRECT with a `pac_error`).
    Pac,
}

/// The PAC script a [`Router`] consults, replaced as a whole on reload.
type Loaded = Arc<Result<Pac, PacError>>;

/// The route of every host, and what discovery found on the way.
#[derive(Debug)]
pub struct Router {
    way: Way,
    /// The script, when `way` is [`Way::Pac`]; `SIGHUP` fetches it again.
    pac: RwLock<Option<Loaded>>,
    /// Where the script comes from (URL or file), for reloading.
    pac_location: Option<String>,
    /// Who chose the way: `--upstream-proxy`, `environment`, `GNOME settings`, `WPAD …`.
    pub origin: String,
    /// The PAC file's description, when one was fetched.
    pub pac_file: Option<PacFile>,
    /// What discovery skipped and why (a proxy that is diagproxy itself, a bad variable).
    pub warnings: Vec<String>,
    /// `--trust-pac-proxies`: the domain whose PAC proxies count as named by the user
    /// (`corp.example` for `http://pac.corp.example/…`; empty for a PAC file the user gave:
    /// all of them). `None`: a PAC's proxies never get `--upstream-user`'s password.
    pub pac_trust: Option<String>,
    cache: Mutex<LruMap<String, Arc<Route>>>,
    /// The PAC error texts seen, at most [`MAX_PAC_ERRORS`].
    errors: Mutex<std::collections::HashSet<String>>,
    bad: Mutex<HashMap<(String, u16), Instant>>,
    /// The one route of every host when the way never changes (DIRECT, one proxy), made
    /// once rather than for every connection.
    steady: Option<Arc<Route>>,
}

/// A route and, for a PAC, the helper calls the script made to choose it.
pub struct Traced {
    pub route: Arc<Route>,
    pub calls: Vec<String>,
    /// The script's own words (`PROXY a:3128; DIRECT`), before parsing.
    pub answer: Option<String>,
}

impl Router {
    pub fn new(way: Way, origin: impl Into<String>) -> Router {
        let mut router = Router {
            way,
            pac: RwLock::new(None),
            pac_location: None,
            origin: origin.into(),
            pac_file: None,
            warnings: Vec::new(),
            pac_trust: None,
            cache: Mutex::new(LruMap::new(PAC_CACHE)),
            errors: Mutex::new(std::collections::HashSet::new()),
            bad: Mutex::new(HashMap::new()),
            steady: None,
        };
        let source: Arc<str> = Arc::from(router.source());
        router.steady = match &router.way {
            Way::Direct => Some(Arc::new(Route::direct(source))),
            Way::Fixed(p) => Some(Arc::new(Route::via(p.clone(), source))),
            Way::Socks(p) => Some(Arc::new(Route {
                hops: vec![Hop::Socks(p.clone())],
                source,
                error: None,
            })),
            _ => None,
        };
        router
    }

    /// A router that asks the PAC script fetched from `location` (or says why it cannot).
    pub fn with_pac(
        loaded: Result<Pac, PacError>,
        location: &str,
        origin: impl Into<String>,
    ) -> Router {
        let mut router = Router::new(Way::Pac, origin);
        router.pac_file = loaded.as_ref().ok().map(|pac| pac.file.clone());
        router.pac = RwLock::new(Some(Arc::new(loaded)));
        router.pac_location = Some(location.to_string());
        router
    }

    fn loaded(&self) -> Option<Loaded> {
        self.pac.read().ok().and_then(|p| p.clone())
    }

    /// Where the PAC file comes from, when routes come from one (`SIGHUP` fetches it
    /// again).
    pub fn pac_location(&self) -> Option<&str> {
        self.pac_location.as_deref()
    }

    /// Starts over with a new script: cached answers and bad proxies are forgotten.
    pub fn replace_pac(&self, pac: Pac) {
        if let Ok(mut loaded) = self.pac.write() {
            *loaded = Some(Arc::new(Ok(pac)));
        }
        if let Ok(mut cache) = self.cache.lock() {
            *cache = LruMap::new(PAC_CACHE);
        }
        if let Ok(mut bad) = self.bad.lock() {
            bad.clear();
        }
    }

    pub fn direct() -> Router {
        Router::new(Way::Direct, "no proxy configured")
    }

    /// The route source in one phrase, for the banner, the session and each event.
    pub fn source(&self) -> String {
        match &self.way {
            Way::Direct => format!("DIRECT ({})", self.origin),
            Way::Fixed(p) => format!("{} ({})", p.display(), self.origin),
            Way::Socks(p) => format!("{} ({})", p.display(), self.origin),
            Way::Manual(_) => format!("proxy settings ({})", self.origin),
            Way::Pac => match self.loaded().as_deref() {
                Some(Ok(pac)) => format!("PAC {} ({})", pac.file.url, self.origin),
                Some(Err(e)) => format!("PAC failed, DIRECT ({}): {e}", self.origin),
                None => format!("DIRECT ({})", self.origin),
            },
        }
    }

    /// Whether every host goes DIRECT whatever it is (the lean forwarding path).
    pub fn always_direct(&self) -> bool {
        matches!(self.way, Way::Direct)
    }

    /// Whether this source names a proxy for any host (then a DIRECT that fails is
    /// `direct_blocked`: the network expects its proxy).
    pub fn names_proxies(&self) -> bool {
        match self.way {
            Way::Direct => false,
            Way::Pac => matches!(self.loaded().as_deref(), Some(Ok(_))),
            _ => true,
        }
    }

    /// Whether the proxy at `hostport` (as a hop names it) is given credentials.
    pub fn has_credentials(&self, hostport: &str) -> bool {
        let named = |p: &Arc<UpstreamProxy>| {
            p.authorization.is_some()
                && super::addr::join(&p.host, p.port).eq_ignore_ascii_case(hostport)
        };
        match &self.way {
            Way::Fixed(p) => named(p),
            Way::Manual(m) => m.proxies().any(named),
            Way::Socks(p) => {
                p.credentials.is_some()
                    && super::addr::join(&p.host, p.port).eq_ignore_ascii_case(hostport)
            }
            _ => false,
        }
    }

    /// The one fixed proxy, when there is exactly one for every host.
    pub fn fixed(&self) -> Option<&Arc<UpstreamProxy>> {
        match &self.way {
            Way::Fixed(p) => Some(p),
            _ => None,
        }
    }

    /// The route for `scheme://host:port` (`path` is what the script sees of an `http:`
    /// URL; `https:` URLs are cut to `https://host:port/`, as Chromium does).
    pub async fn route(&self, https: bool, host: &str, port: u16, path: &str) -> Arc<Route> {
        self.look_up(https, host, port, path, false).await.route
    }

    /// [`Router::route`] with the helper calls a PAC script made (`diagproxy pac`).
    pub async fn trace(&self, https: bool, host: &str, port: u16, path: &str) -> Traced {
        self.look_up(https, host, port, path, true).await
    }

    async fn look_up(&self, https: bool, host: &str, port: u16, path: &str, trace: bool) -> Traced {
        let source = || -> Arc<str> { Arc::from(self.source()) };
        let plain = |route: Route| Traced {
            route: Arc::new(route),
            calls: Vec::new(),
            answer: None,
        };
        match &self.way {
            // Made once in `new`.
            Way::Direct | Way::Fixed(_) | Way::Socks(_) => Traced {
                route: self
                    .steady
                    .clone()
                    .unwrap_or_else(|| Arc::new(Route::direct(source()))),
                calls: Vec::new(),
                answer: None,
            },
            Way::Manual(m) => {
                let (proxy, from) = m.route(https, host, port);
                let why: Arc<str> = Arc::from(format!("{from} ({})", self.origin));
                plain(match proxy {
                    Some(p) => Route::via(p.clone(), why),
                    None => Route::direct(why),
                })
            }
            Way::Pac => match self.loaded() {
                Some(loaded) => match &*loaded {
                    Ok(pac) => self.ask_pac(pac, (https, host, port, path), trace).await,
                    Err(e) => {
                        let mut route = Route::direct(source());
                        route.error = Some(e.to_string());
                        plain(route)
                    }
                },
                None => plain(Route::direct(source())),
            },
        }
    }

    async fn ask_pac(
        &self,
        pac: &Pac,
        (https, host, port, path): (bool, &str, u16, &str),
        trace: bool,
    ) -> Traced {
        let url = script_url(https, host, port, path);
        let key = format!(
            "{}://{}",
            if https { "https" } else { "http" },
            super::addr::join(host, port)
        );
        let cached = self.cache.lock().ok().and_then(|mut c| c.get(&key));
        if let Some(route) = cached.filter(|_| !trace) {
            return Traced {
                route,
                calls: Vec::new(),
                answer: None,
            };
        }
        let source: Arc<str> = Arc::from(format!("PAC {} ({})", pac.file.url, self.origin));
        let bare = super::addr::unbracket(host);
        let (mut route, calls, answer) = match pac.find(&url, bare, trace).await {
            Ok(answer) => match parse_pac_result(&answer.result) {
                Ok(hops) => {
                    let route = Route {
                        hops: hops.into_iter().map(|h| self.trusted(h)).collect(),
                        source,
                        error: None,
                    };
                    (route, answer.calls, Some(answer.result))
                }
                Err(e) => {
                    let mut route = Route::direct(source);
                    route.error = Some(format!("FindProxyForURL({url:?}) answered {e}"));
                    (route, answer.calls, Some(answer.result))
                }
            },
            Err(e) => {
                let mut route = Route::direct(source);
                route.error = Some(e.to_string());
                (route, Vec::new(), None)
            }
        };
        route.error = route.error.map(|e| self.bounded_error(e));
        tracing::debug!(
            "PAC {}: {url} → {}{}",
            pac.file.url,
            route.describe(),
            route
                .error
                .as_deref()
                .map_or(String::new(), |e| format!(" ({e})"))
        );
        let route = Arc::new(route);
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(key, route.clone());
        }
        Traced {
            route,
            calls,
            answer,
        }
    }

    /// `error` as recorded: itself while fewer than [`MAX_PAC_ERRORS`] different ones were
    /// seen, else one line that says the rest are not kept.
    fn bounded_error(&self, error: String) -> String {
        let Ok(mut seen) = self.errors.lock() else {
            return error;
        };
        if seen.contains(&error) {
            return error;
        }
        if seen.len() < MAX_PAC_ERRORS {
            seen.insert(error.clone());
            return error;
        }
        format!("the PAC failed again; more than {MAX_PAC_ERRORS} different PAC errors this session, the rest are not kept")
    }

    /// With `--trust-pac-proxies`, a PAC proxy in the PAC's own domain as if the user had
    /// named it.
    fn trusted(&self, hop: Hop) -> Hop {
        match (hop, self.pac_trust.as_deref()) {
            (Hop::Proxy(p), Some(domain)) if in_domain(&p.host, domain) => {
                let mut p = (*p).clone();
                p.chosen = true;
                Hop::Proxy(Arc::new(p))
            }
            (hop, _) => hop,
        }
    }

    /// Remembers that `proxy` did not connect: it is tried last for [`BAD_FOR`].
    pub fn mark_bad(&self, proxy: &UpstreamProxy) {
        self.mark_bad_at((&proxy.host, proxy.port));
    }

    /// [`Router::mark_bad`] for any proxy's `host:port` (a SOCKS server's too).
    pub fn mark_bad_at(&self, (host, port): (&str, u16)) {
        let Ok(mut bad) = self.bad.lock() else { return };
        if bad.len() >= BAD_LIST {
            let oldest = bad
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                bad.remove(&oldest);
            }
        }
        bad.insert((host.to_string(), port), Instant::now());
    }

    /// The hops in the order to try them: those not marked bad first (in the script's
    /// order), then the bad ones (Chromium retries a bad proxy when nothing else is left).
    pub fn in_order<'r>(&self, route: &'r Route) -> Vec<&'r Hop> {
        let bad = |hop: &&Hop| hop.endpoint().is_some_and(|at| self.is_bad_at(at));
        let (later, first): (Vec<&Hop>, Vec<&Hop>) = route.hops.iter().partition(bad);
        first.into_iter().chain(later).collect()
    }

    fn is_bad_at(&self, (host, port): (&str, u16)) -> bool {
        let Ok(bad) = self.bad.lock() else {
            return false;
        };
        if bad.is_empty() {
            return false;
        }
        bad.get(&(host.to_string(), port))
            .is_some_and(|at| at.elapsed() < BAD_FOR)
    }
}

/// Where the profile's hosts go: the banner's line and `diagproxy pac`'s first answer.
#[derive(Debug, Clone, Default)]
pub struct Overview {
    /// The route source ([`Router::source`]).
    pub source: String,
    /// Each distinct route (`PROXY a:3128; DIRECT`) with the hosts that take it, most
    /// hosts first.
    pub groups: Vec<(String, Vec<String>)>,
    /// PAC failures met on the way (`host: why`).
    pub errors: Vec<String>,
}

impl Overview {
    /// `34 profile hosts: 30 via PROXY proxy.corp:8080, 4 DIRECT — PAC … (GNOME settings)`.
    pub fn line(&self) -> String {
        let total: usize = self.groups.iter().map(|(_, hosts)| hosts.len()).sum();
        let parts: Vec<String> = self
            .groups
            .iter()
            .map(|(route, hosts)| match route.as_str() {
                "DIRECT" => format!("{} DIRECT", hosts.len()),
                _ if route.starts_with("not looked up") => format!("{} {route}", hosts.len()),
                _ => format!("{} via {route}", hosts.len()),
            })
            .collect();
        format!(
            "{total} profile hosts: {} — {}",
            parts.join(", "),
            self.source
        )
    }
}

impl Router {
    /// Where each of the profile's entries goes (HTTPS, port 443).
    pub async fn overview(&self, profile: &crate::profile::Profile) -> Overview {
        let mut overview = Overview {
            source: self.source(),
            ..Overview::default()
        };
        let mut names: Vec<&str> = profile
            .entries
            .iter()
            .flat_map(|e| e.probe_hosts())
            .collect();
        names.dedup();
        // The banner waits for this: a PAC that resolves every name on a slow network
        // must not hold the start. Hosts not looked up in time are said to be so.
        let deadline = tokio::time::Instant::now() + OVERVIEW_BUDGET;
        for host in names {
            let looked_up =
                tokio::time::timeout_at(deadline, self.route(true, host, 443, "")).await;
            let Ok(route) = looked_up else {
                let key = format!("not looked up within {OVERVIEW_BUDGET:?}");
                match overview.groups.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, hosts)) => hosts.push(host.to_string()),
                    None => overview.groups.push((key, vec![host.to_string()])),
                }
                continue;
            };
            if let Some(e) = &route.error {
                overview.errors.push(format!("{host}: {e}"));
            }
            let key = route.describe();
            match overview.groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, hosts)) => hosts.push(host.to_string()),
                None => overview.groups.push((key, vec![host.to_string()])),
            }
        }
        overview
            .groups
            .sort_by_key(|(_, hosts)| std::cmp::Reverse(hosts.len()));
        overview
    }
}

/// The URL a PAC script is given: `https://host:port/` for `https` (Chromium strips path
/// and query of secure URLs, so a PAC cannot see them), the whole URL for `http`.
pub fn script_url(https: bool, host: &str, port: u16, path: &str) -> String {
    let (scheme, default) = if https { ("https", 443) } else { ("http", 80) };
    let authority = if port == default {
        super::addr::bracket(host).into_owned()
    } else {
        super::addr::join(host, port)
    };
    let path = if https || path.is_empty() { "/" } else { path };
    format!("{scheme}://{authority}{path}")
}

/// The domain a PAC's proxies are trusted in under `--trust-pac-proxies`: the PAC
/// server's parent domain (`pac.corp.example` → `corp.example`; a name of two labels or an
/// IP stays itself), or empty (everything) for a file the user gave.
pub fn pac_domain(location: &str) -> String {
    let Some(rest) = location
        .strip_prefix("http://")
        .or_else(|| location.strip_prefix("https://"))
    else {
        return String::new();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = super::HostPort::parse(authority, 80)
        .map(|hp| hp.host.to_ascii_lowercase())
        .unwrap_or_else(|| authority.to_ascii_lowercase());
    if host.parse::<std::net::IpAddr>().is_ok() || host.matches('.').count() < 2 {
        return host;
    }
    host.split_once('.')
        .map_or(host.clone(), |(_, parent)| parent.to_string())
}

/// Whether `host` is `domain` or under it; an empty domain holds every host.
fn in_domain(host: &str, domain: &str) -> bool {
    let host = super::addr::unbracket(host).to_ascii_lowercase();
    domain.is_empty()
        || host == domain
        || host
            .strip_suffix(domain)
            .is_some_and(|rest| rest.ends_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_urls_hide_what_chromium_hides() {
        assert_eq!(
            script_url(true, "chatgpt.com", 443, "/c/secret?q=1"),
            "https://chatgpt.com/"
        );
        assert_eq!(
            script_url(true, "chatgpt.com", 8443, ""),
            "https://chatgpt.com:8443/"
        );
        assert_eq!(
            script_url(false, "example.com", 80, "/a?b"),
            "http://example.com/a?b"
        );
        assert_eq!(script_url(false, "::1", 8080, ""), "http://[::1]:8080/");
    }

    #[test]
    fn pac_domains_and_who_is_in_them() {
        assert_eq!(
            pac_domain("http://pac.corp.example/proxy.pac"),
            "corp.example"
        );
        assert_eq!(
            pac_domain("http://wpad.corp.example:8080/wpad.dat"),
            "corp.example"
        );
        assert_eq!(pac_domain("http://corp.example/p.pac"), "corp.example");
        assert_eq!(pac_domain("http://127.0.0.1:9/p.pac"), "127.0.0.1");
        assert_eq!(pac_domain("/etc/proxy.pac"), "");
        assert!(in_domain("proxy.corp.example", "corp.example"));
        assert!(in_domain("CORP.example", "corp.example"));
        assert!(!in_domain("evilcorp.example", "corp.example"));
        assert!(!in_domain("attacker.example", "corp.example"));
        assert!(in_domain("anything", ""));
        assert!(!in_domain("127.0.0.2", "127.0.0.1"));
    }

    #[test]
    fn bad_proxies_go_last_and_come_back() {
        let proxy = |h: &str| {
            Arc::new(UpstreamProxy {
                host: h.into(),
                port: 1,
                authorization: None,
                tls: false,
                chosen: false,
            })
        };
        let route = Route {
            hops: vec![Hop::Proxy(proxy("a")), Hop::Proxy(proxy("b")), Hop::Direct],
            source: Arc::from("test"),
            error: None,
        };
        let router = Router::direct();
        let names = |r: &Router| -> Vec<String> {
            r.in_order(&route).iter().map(|h| h.to_string()).collect()
        };
        assert_eq!(names(&router), ["PROXY a:1", "PROXY b:1", "DIRECT"]);
        router.mark_bad(&proxy("a"));
        assert_eq!(names(&router), ["PROXY b:1", "DIRECT", "PROXY a:1"]);
        if let Ok(mut bad) = router.bad.lock() {
            for at in bad.values_mut() {
                *at -= BAD_FOR;
            }
        }
        assert_eq!(names(&router), ["PROXY a:1", "PROXY b:1", "DIRECT"]);
    }
}

//! The state every connection task shares ([`State`], behind [`Shared`]): the session's
//! config and recorder, the minter and the caches, the limits and what is open; how it is
//! built when the proxy starts ([`start`]); and the guards that count a connection, a
//! tunnel or a request as open while it lives.

use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::clock;
use crate::config::{Config, Intercept};
use crate::inspect::{explain, reproduce};
use crate::session::event::{RequestEvent, SessionInfo};
use crate::session::livelog::Style;
use crate::session::recorder::SharedSummary;
use crate::session::Recorder;
use crate::shutdown::ShutdownController;
use crate::tls::chain::TlsVerdict;
use crate::tls::mint::Minter;
use crate::upstream::resolve::targets;
use crate::upstream::route::{Taken, TakenHop};
use crate::upstream::router::Overview;

use super::{body, connect, in_flight, limits, Interception, Ready, Reloader, RunError};

/// What every connection task shares.
#[derive(Debug)]
pub struct State {
    pub config: Config,
    /// The address actually bound (port 0 in tests becomes a real port).
    pub listen: SocketAddr,
    pub recorder: Recorder,
    /// The live summary, for the live page.
    pub summary: SharedSummary,
    /// Idle keep-alive connections to upstreams, for plain HTTP.
    pub pool: crate::upstream::pool::Pool<body::Body>,
    /// Tunnels and requests in flight, for the live page and the session end.
    pub open: AtomicUsize,
    /// The (name, port) pairs whose chain has been checked: once per session each, for at
    /// most [`MAX_CHECKED`] of them (see [`State::first_check`]).
    tls_checked: Mutex<HashSet<(String, u16)>>,
    /// The leaf minter, when `--intercept` is on.
    pub minter: Option<Arc<Minter>>,
    /// Whether clients refuse our certificate, per host:port, and which are tunnelled
    /// untouched since one did.
    pub trust: connect::trust::ClientTrust,
    /// The last verdict per (host, port), keyed by the leaf it judged, so a new upstream
    /// connection presenting the same leaf is not judged again.
    pub verdicts: Mutex<VerdictCache>,
    /// `--max-connections` and `--header-timeout`, and what they did.
    pub limits: limits::Limits,
    /// Requests waiting for their answer, recorded as unfinished if the session ends first.
    pub in_flight: in_flight::InFlight,
}

pub type Shared = Arc<State>;

/// (host, port) → (the leaf judged, its verdict), for the 1,000 most recently used.
pub type VerdictCache = crate::lru::LruMap<(String, u16), (Vec<u8>, TlsVerdict)>;

/// The most host:port chains checked (side handshakes started) in one session.
pub const MAX_CHECKED: usize = 2000;

pub(super) fn start(
    listen: SocketAddr,
    config: Config,
) -> Result<(Shared, ShutdownController), RunError> {
    let minter = minter(&config)?;
    let started = SystemTime::now();
    let info = SessionInfo {
        id: format!("{}-{}", clock::compact(started), std::process::id()),
        started_at: clock::rfc3339(started),
        listen: listen.to_string(),
        upstream_proxy: config.router.fixed().map(|p| p.display()),
        upstream_credentials: config
            .router
            .fixed()
            .is_some_and(|p| p.authorization.is_some()),
        route_source: Some(config.router.source()),
        pac: config.router.pac_file.clone(),
        profile: config.profile_name.clone(),
        diagproxy: env!("CARGO_PKG_VERSION").to_string(),
        os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
        max_hosts: config.max_hosts,
        resolve: pins(&config.resolve),
        include_secrets: config.include_secrets,
        keylog: config.keylog.as_ref().map(|p| p.display().to_string()),
        source: None,
    };
    let style = Style {
        format: config.log_format,
        color: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        quiet: config.verbosity < 0,
    };
    let (recorder, summary) =
        Recorder::start(&config.session_dir, info, config.profile.clone(), style).map_err(
            |source| RunError {
                what: format!(
                    "cannot create the session folder {}",
                    config.session_dir.display()
                ),
                source,
            },
        )?;
    crate::session::recorder::keep_pac(&config.session_dir, config.router.pac_file.as_ref());
    let config_max = config.max_connections;
    let state = Arc::new(State {
        config,
        listen,
        recorder,
        summary,
        pool: Default::default(),
        open: AtomicUsize::new(0),
        tls_checked: Mutex::default(),
        minter,
        trust: connect::trust::ClientTrust::default(),
        verdicts: Mutex::default(),
        limits: limits::Limits::new(config_max),
        in_flight: Default::default(),
    });
    Ok((state, ShutdownController::new()))
}

/// The leaf minter interception needs (none without `--intercept`): the local CA loaded.
fn minter(config: &Config) -> Result<Option<Arc<Minter>>, RunError> {
    Ok(match config.intercept {
        Intercept::None => None,
        _ => {
            let invalid = |what: String| RunError {
                what,
                source: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "--intercept needs the local CA",
                ),
            };
            let ca = crate::tls::ca::load(&config.ca_dir).map_err(invalid)?;
            if matches!(config.intercept, Intercept::All) && ca.permitted.is_some() {
                tracing::warn!(
                    "--intercept all with a name-constrained CA ({}): clients refuse its \
                     certificates for other hosts, so those are tunnelled, not intercepted. \
                     To intercept every host, create an unconstrained CA in its own folder \
                     (`diagproxy ca init --unconstrained --ca-dir DIR`) and pass --ca-dir DIR",
                    config.ca_dir.display()
                );
            }
            Some(Arc::new(Minter::new(ca).map_err(invalid)?))
        }
    })
}

/// The `--resolve` pins as `host:port:address`, sorted (IPv6 addresses in brackets).
fn pins(resolve: &std::collections::HashMap<(String, u16), std::net::IpAddr>) -> Vec<String> {
    let mut pins: Vec<String> = resolve
        .iter()
        .map(|((host, port), ip)| match ip {
            std::net::IpAddr::V6(v6) => format!("{host}:{port}:[{v6}]"),
            std::net::IpAddr::V4(v4) => format!("{host}:{port}:{v4}"),
        })
        .collect();
    pins.sort();
    pins
}

impl State {
    /// What the banner says about this session.
    pub(super) fn ready(&self) -> Ready {
        let config = &self.config;
        let interception = self.minter.as_ref().map(|minter| {
            let hosts = match &config.intercept {
                Intercept::All => "every host".to_string(),
                Intercept::Profile => format!(
                    "the profile's hosts ({} entries)",
                    config.profile.entries.len()
                ),
                Intercept::Globs(globs) => format!("hosts matching {}", globs.join(", ")),
                Intercept::None => "no host".to_string(),
            };
            Interception {
                hosts,
                ca_dir: config.ca_dir.clone(),
                fingerprint: crate::tls::ca::fingerprint(&minter.ca().cert_der),
                permitted: minter.ca().permitted.clone(),
            }
        });
        Ready {
            listen: self.listen,
            session_dir: config.session_dir.clone(),
            interception,
            routes: Overview::default(),
            route_warnings: Vec::new(),
            reloader: config.router.pac_location().is_some().then(|| Reloader {
                config: config.clone(),
            }),
            live_page: format!("http://{}/?token={}", self.listen, config.live_token),
            metrics: config
                .metrics
                .then(|| format!("http://{}/metrics", self.listen)),
        }
    }

    /// The command that shows what happened to `url` without diagproxy, the same way out
    /// (`hop`: the event's route) and with the same `--resolve` pin.
    pub fn reproduce(&self, url: &str, host: &str, port: u16, hop: Option<&TakenHop>) -> String {
        let proxy = self.proxy_url(hop);
        reproduce::command(url, &self.path(proxy.as_ref(), host, port))
    }

    /// The proxy a hop (`PROXY host:port`) names, as a URL without credentials, and
    /// whether it takes some.
    fn proxy_url(&self, hop: Option<&TakenHop>) -> Option<(String, bool)> {
        let hop = hop?;
        let url = hop.url()?;
        let hostport = hop.proxy()?;
        Some((url, self.config.router.has_credentials(hostport)))
    }

    /// The way out of this session for `host:port`, as a reproduce command takes it.
    fn path<'a>(
        &'a self,
        proxy: Option<&'a (String, bool)>,
        host: &'a str,
        port: u16,
    ) -> reproduce::Path<'a> {
        let pin = self.config.resolve.get(&(host.to_ascii_lowercase(), port));
        reproduce::Path {
            proxy: proxy.map(|(p, c)| (p.as_str(), *c)),
            pin: pin.map(|ip| (host, port, *ip)),
        }
    }

    /// Findings that a failure itself shows (see [`explain::failure_findings`]).
    pub fn failure_findings(
        &self,
        host: &str,
        failure: &crate::failure::Failure,
        url: &str,
        port: u16,
        taken: &Taken,
    ) -> Vec<crate::inspect::Finding> {
        let proxy = self.proxy_url(taken.hop.as_ref());
        let path = self.path(proxy.as_ref(), host, port);
        let mut found = explain::failure_findings(&self.config.profile, host, failure, url, &path);
        found.extend(self.route_findings(host, taken, Some(failure)));
        found
    }

    /// What a connection's route shows (see [`explain::route_findings`]).
    pub fn route_findings(
        &self,
        host: &str,
        taken: &Taken,
        failure: Option<&crate::failure::Failure>,
    ) -> Vec<crate::inspect::Finding> {
        let names_proxies = self.config.router.names_proxies();
        explain::route_findings(&self.config.profile, host, taken, failure, names_proxies)
    }

    /// Whether `name:port`'s chain should be checked now: the first time it is seen, while
    /// fewer than [`MAX_CHECKED`] have been.
    pub fn first_check(&self, name: &str, port: u16) -> bool {
        let Ok(mut seen) = self.tls_checked.lock() else {
            return false;
        };
        seen.len() < MAX_CHECKED && seen.insert((name.to_string(), port))
    }

    /// Whether a CONNECT to `host:port` is intercepted: asked for, not passed through
    /// after a client refused, and a name diagproxy's CA may sign (a name-constrained CA's
    /// leaf for another host would be refused by every client, so that host is tunnelled).
    pub fn intercepts(&self, host: &str, port: u16) -> bool {
        self.minter.as_ref().is_some_and(|m| m.ca().can_sign(host))
            && self.config.intercept.covers(host, &self.config.profile)
            && !self.trust.passes_through(host, port)
    }

    /// Whether forwarding to `host:port` would come back to this proxy (pins included).
    pub fn is_self(&self, host: &str, port: u16) -> bool {
        // Another port is never this proxy: the common case decided without allocating.
        if port != self.listen.port() {
            return false;
        }
        if targets(self.listen, host, port) {
            return true;
        }
        let pinned = self.config.resolve.get(&(host.to_ascii_lowercase(), port));
        pinned.is_some_and(|ip| targets(self.listen, &ip.to_string(), port))
    }
}

/// A downstream connection's place under `--max-connections`, given back when it ends.
pub(super) struct Slot(pub(super) Shared);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.limits.release();
    }
}

/// Counts a tunnel or request as open while it lives; a request's is also in flight until
/// its answer came (or it failed), so a session that ends first can record it.
pub struct OpenGuard {
    state: Shared,
    /// The request's place in `state.in_flight`, while it waits.
    waiting: Option<u64>,
}

impl OpenGuard {
    pub fn new(state: &Shared) -> OpenGuard {
        state.open.fetch_add(1, Ordering::Relaxed);
        OpenGuard {
            state: state.clone(),
            waiting: None,
        }
    }

    /// The guard of a request as it begins.
    pub fn request(state: &Shared, event: &RequestEvent) -> OpenGuard {
        let mut guard = OpenGuard::new(state);
        guard.waiting = Some(state.in_flight.add(event));
        guard
    }

    /// The answer came (or the request failed and is recorded): no longer in flight.
    pub fn answered(&mut self) {
        if let Some(id) = self.waiting.take() {
            self.state.in_flight.remove(id);
        }
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.answered();
        self.state.open.fetch_sub(1, Ordering::Relaxed);
    }
}

//! The proxy: the accept loop and the state every connection shares.
//!
//! ```text
//! accept ─► h1 (one task per downstream connection)
//!   ├─ simple plain-HTTP request ─────► forwarded by h1 itself ─► dial ─► origin
//!   └─ anything else ─► service (hyper, for the rest of the connection)
//!        ├─ request for the proxy itself ─► pages/ (live page, summary.json, proxy.pac)
//!        ├─ absolute-form request ───────► forward ─► pool ─► origin / corporate proxy
//!        └─ CONNECT ─────────────────────► connect/
//!             ├─ not intercepted ─► tunnel ─► dial ─► origin / corporate proxy
//!             │                       └─ relay (copy; splice(2) for bulk)
//!             └─ intercepted ────► intercept (TLS both ways) ─► h1 or hyper inside
//!                                    └─ origin (diagproxy's own TLS, chains judged)
//! every request ─► exchange (its answer streamed, kept, judged) ─► session::Event
//!   ─► the recorder (events.jsonl, summary, live log)
//! ```
//!
//! Folders by what a connection becomes: `h1/` (the lean HTTP/1.1 path), `connect/` (a
//! CONNECT: tunnel or interception, and the relays under them), `pages/` (the proxy's own
//! pages and the answers it gives in its own name). Beside them what every path shares:
//! `exchange`, `body`, `hop`, `limits`, `in_flight`, and this file's `State`.

mod body;
mod connect;
mod exchange;
mod forward;
mod h1;
mod hop;
mod in_flight;
mod limits;
mod pages;
mod service;

use std::collections::HashSet;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::net::TcpListener;

use crate::clock;
use crate::config::{Config, Intercept};
use crate::inspect::{explain, reproduce};
use crate::session::event::{Event, RequestEvent, SessionEnd, SessionInfo};
use crate::session::livelog::Style;
use crate::session::recorder::SharedSummary;
use crate::session::summary::Summary;
use crate::session::Recorder;
use crate::shutdown::ShutdownController;
use crate::tls::chain::TlsVerdict;
use crate::tls::mint::Minter;
use crate::upstream::discover::{self, Spec};
use crate::upstream::pac::{load, PacError, PacFile};
use crate::upstream::resolve::targets;
use crate::upstream::route::{Taken, TakenHop};
use crate::upstream::router::Overview;

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

/// What `run` hands back when the session is over.
#[derive(Debug)]
pub struct SessionOutcome {
    pub summary: Summary,
    pub dir: PathBuf,
    /// False when the grace period ran out with work still open.
    pub drained: bool,
}

/// Why `run` could not start or finish.
#[derive(Debug)]
pub struct RunError {
    pub what: String,
    pub source: io::Error,
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.what, self.source)
    }
}

impl std::error::Error for RunError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// What a session is about to serve with, once its start-up checks passed (the CA loaded,
/// the session folder created): what the banner tells the user.
#[derive(Debug, Clone)]
pub struct Ready {
    pub listen: SocketAddr,
    pub session_dir: std::path::PathBuf,
    /// `None` without `--intercept`.
    pub interception: Option<Interception>,
    /// Where the profile's hosts go, and what route discovery skipped.
    pub routes: Overview,
    pub route_warnings: Vec<String>,
    /// How to fetch the PAC again (`SIGHUP`), when the session follows one.
    pub reloader: Option<Reloader>,
    /// The live page with the session's token (`http://ADDR/?token=…`): the key to the
    /// session's pages, printed in the banner for the user alone.
    pub live_page: String,
    /// `http://ADDR/metrics` with `run --metrics`.
    pub metrics: Option<String>,
}

/// `run --check`: the check's events go into the session as if a client had made the same
/// connections (downstream `diagproxy-check/…`), so every profile host is judged; the live
/// log says when it is done. Open work until then, so a session ended early waits for it
/// within `--grace`.
async fn check_at_start(state: Shared) {
    let _open = OpenGuard::new(&state);
    let config = &state.config;
    let plan = crate::check::Plan {
        targets: crate::check::profile_targets(config),
        voice: crate::check::profile_voice(config),
        budget: crate::check::STAGE_BUDGET,
        total: crate::check::TOTAL_BUDGET,
    };
    let report = crate::check::run(config, &plan, |_, _, _| {}).await;
    let events = crate::check::record::events(&report, SessionInfo::default(), String::new());
    for event in events {
        if !matches!(event, Event::SessionStarted(_) | Event::SessionEnded(_)) {
            state.recorder.record(event);
        }
    }
    let text = format!(
        "check done: {} hosts in {:.1} s, {} failing. {}",
        report.hosts.len(),
        report.total_ms / 1e3,
        report.failing,
        report.verdict
    );
    let line = match config.log_format {
        crate::session::livelog::Format::Json => {
            format!(
                "{}\n",
                serde_json::json!({"type": "check_done", "message": text})
            )
        }
        crate::session::livelog::Format::Human => {
            format!("diagproxy: {}\n", crate::text::terminal(&text, false))
        }
    };
    crate::session::stderr::get().say(line);
}

/// Fetches the session's PAC file again.
#[derive(Clone, Debug)]
pub struct Reloader {
    config: Config,
}

impl Reloader {
    pub async fn reload(&self) -> Result<PacFile, PacError> {
        let router = &self.config.router;
        let Some(location) = router.pac_location() else {
            return Err(PacError("this session follows no PAC file".into()));
        };
        // A failed fetch keeps the script the session has.
        let pac = load::load(location, &self.config)
            .await
            .map_err(|(e, _)| e)?;
        let file = pac.file.clone();
        router.replace_pac(pac);
        Ok(file)
    }
}

/// The interception a session does.
#[derive(Debug, Clone)]
pub struct Interception {
    /// Which hosts, in words ("the profile's hosts", "every host", "hosts matching …").
    pub hosts: String,
    pub ca_dir: std::path::PathBuf,
    /// The CA certificate's SHA-256 fingerprint, to compare with what the device trusts.
    pub fingerprint: String,
    /// The names a name-constrained CA may sign for; `None` when unconstrained.
    pub permitted: Option<Vec<String>>,
}

/// Serves `listener` until `shutdown` resolves, then drains open work for the grace period
/// and writes the session's summary (the caller writes the reports from it).
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<SessionOutcome, RunError> {
    run_announced(listener, config, shutdown, |_| {}).await
}

/// [`run`], calling `ready` once the start-up checks passed and before the first connection
/// is accepted (the banner: nothing says "listening" before the CA and the session folder
/// are known to work).
pub async fn run_announced(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
    ready: impl FnOnce(&Ready),
) -> Result<SessionOutcome, RunError> {
    let listen = listener.local_addr().map_err(|source| RunError {
        what: "cannot read the listening address".into(),
        source,
    })?;
    if let Spec::Fixed(p) = &config.upstream {
        if targets(listen, &p.host, p.port) {
            let source = io::Error::new(io::ErrorKind::InvalidInput, "that would loop");
            return Err(RunError {
                what: format!("--upstream-proxy {} is this proxy itself", p.display()),
                source,
            });
        }
    }
    let router = discover::router(&config, listen).await;
    let config = config.with_router(router);
    let routes = config.router.overview(&config.profile).await;
    let warnings = config.router.warnings.clone();
    let (state, controller) = start(listen, config)?;
    let mut announced = state.ready();
    (announced.routes, announced.route_warnings) = (routes, warnings);
    ready(&announced);
    if state.config.check_at_start {
        tokio::spawn(check_at_start(state.clone()));
    }
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                // `admit` counts the connection in when it is under the limit.
                Ok((stream, _)) if !state.limits.admit() => state.limits.refuse(stream),
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve(stream, peer, state.clone(), controller.handle()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: say so, breathe, go on.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    let drained = controller.shutdown(state.config.grace).await;
    for event in state.in_flight.unfinished() {
        state.recorder.record(Event::Request(Box::new(event)));
    }
    let end = SessionEnd {
        ended_at: clock::rfc3339(SystemTime::now()),
        unfinished: state.open.load(Ordering::Relaxed),
        limits: state.limits.counts(),
    };
    let summary = state
        .recorder
        .finish(end)
        .await
        .map_err(|source| RunError {
            what: "cannot write the session summary".into(),
            source,
        })?;
    Ok(SessionOutcome {
        summary,
        dir: state.config.session_dir.clone(),
        drained,
    })
}

/// One downstream connection: the lean HTTP/1.1 path first, hyper for what it hands back.
async fn serve(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    state: Shared,
    mut shutdown: crate::shutdown::Shutdown,
) {
    let _slot = Slot(state.clone());
    match h1::serve(stream, state.clone(), peer, &mut shutdown).await {
        h1::Handoff::Done => {}
        h1::Handoff::Untouched(stream) => service::serve(stream, peer, state, shutdown).await,
        h1::Handoff::Rest(rest) => service::serve(rest, peer, state, shutdown).await,
    }
}

fn start(listen: SocketAddr, config: Config) -> Result<(Shared, ShutdownController), RunError> {
    let minter = match config.intercept {
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
    };
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
    fn ready(&self) -> Ready {
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

    /// Whether a CONNECT to `host:port` is intercepted rather than tunnelled.
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
        if targets(self.listen, host, port) {
            return true;
        }
        let pinned = self.config.resolve.get(&(host.to_ascii_lowercase(), port));
        pinned.is_some_and(|ip| targets(self.listen, &ip.to_string(), port))
    }
}

/// A downstream connection's place under `--max-connections`, given back when it ends.
struct Slot(Shared);

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

//! The proxy: the accept loop, what a session ends with, and the map of what a connection
//! becomes.
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
//! `exchange`, `body`, `hop`, `limits`, `in_flight`, and `state` (the `State` they share).

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
mod state;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use tokio::net::TcpListener;

use crate::clock;
use crate::config::Config;
use crate::session::event::{Event, SessionEnd, SessionInfo};
use crate::session::summary::Summary;
use crate::upstream::discover::{self, Spec};
use crate::upstream::pac::{load, PacError, PacFile};
use crate::upstream::resolve::targets;
use crate::upstream::router::Overview;

use state::{start, Slot};
pub use state::{OpenGuard, Shared, State, VerdictCache, MAX_CHECKED};

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

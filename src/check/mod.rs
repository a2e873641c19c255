//! `diagproxy check`: every host ChatGPT needs, probed stage by stage along the browser's
//! route, without reproducing anything — plus LiveKit's voice ports.
//!
//! - [`stage`]: the results as data (states, times, the verdict, the exit code), pure;
//! - [`probe`]: one host's stages (DNS, TCP, TLS, HTTP), I/O;
//! - [`http`]: the target, the connection and the answer's judgement the HTTP stages share;
//! - [`followups`]: the WebSocket and Cloudflare-trace stages after the GET;
//! - [`stun`]: STUN Binding requests (RFC 5389) for voice;
//! - [`record`]: the check as session events, so summaries, reports and `compare` work on it.

pub mod followups;
pub mod http;
pub mod probe;
pub mod record;
pub mod stage;
pub mod stun;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Semaphore;

use crate::config::Config;
use crate::failure::Side;
use crate::upstream::{dial, resolve};
use http::Target;
use stage::{CheckReport, HostCheck, Stage, State, Voice};

/// Each stage's budget unless `--stage-timeout` says otherwise.
pub const STAGE_BUDGET: Duration = Duration::from_secs(4);
/// The whole check's limit: a host still running when it passes gets its remaining stages
/// `not_run`, so a network that drops everything still gets its answer in time.
pub const TOTAL_BUDGET: Duration = Duration::from_secs(36);
/// Hosts probed at once.
pub const PARALLEL: usize = 8;
/// STUN Binding requests sent to the TURN server.
pub const STUN_REQUESTS: usize = 10;
/// A round trip slower than this makes the voice probe a warning.
const SLOW_RTT: Duration = Duration::from_millis(250);

/// What to check.
#[derive(Debug, Clone)]
pub struct Plan {
    pub targets: Vec<Target>,
    /// The TURN server for voice (`None`: voice not checked).
    pub voice: Option<VoiceTarget>,
    /// Each stage's budget.
    pub budget: Duration,
    /// The whole check's budget ([`TOTAL_BUDGET`] from the command line; the exporter's
    /// scrape timeout): hosts not done by then are `not_run`, never passed.
    pub total: Duration,
}

#[derive(Debug, Clone)]
pub struct VoiceTarget {
    pub host: String,
    pub stun_port: u16,
    pub tls_host: String,
    pub tcp_port: u16,
    pub media_udp: [u16; 2],
}

/// The profile's hosts (each wildcard entry by its `probe` names), GET `/`.
pub fn profile_targets(config: &Config) -> Vec<Target> {
    let mut names: Vec<&str> = config
        .profile
        .entries
        .iter()
        .flat_map(|e| e.probe_hosts())
        .collect();
    names.dedup();
    names
        .into_iter()
        .map(|host| target(config, host.to_string(), 443))
        .collect()
}

/// A target with what the profile says about it (`check.websocket`: `host` or
/// `host/path`; `check.cloudflare_trace`; `check.event_stream`: `host/path`).
pub fn target(config: &Config, host: String, port: u16) -> Target {
    let check = &config.profile.check;
    let websocket = check.websocket.iter().find_map(|entry| {
        let (name, path) = entry
            .split_once('/')
            .map_or((entry.as_str(), "/".to_string()), |(n, p)| {
                (n, format!("/{p}"))
            });
        name.eq_ignore_ascii_case(&host).then_some(path)
    });
    let event_stream = check.event_stream.iter().find_map(|entry| {
        let (name, path) = entry.split_once('/')?;
        name.eq_ignore_ascii_case(&host).then(|| format!("/{path}"))
    });
    Target {
        websocket,
        event_stream,
        trace: check
            .cloudflare_trace
            .iter()
            .any(|h| h.eq_ignore_ascii_case(&host)),
        host,
        port,
        path: "/".into(),
    }
}

/// The profile's voice probe.
pub fn profile_voice(config: &Config) -> Option<VoiceTarget> {
    config.profile.voice.as_ref().map(|v| VoiceTarget {
        host: v.host.clone(),
        stun_port: v.stun_port,
        tls_host: v.tls_host.clone(),
        tcp_port: v.tcp_port,
        media_udp: v.media_udp,
    })
}

/// Runs the plan: [`PARALLEL`] hosts at a time, voice beside them; `done` hears of each
/// host as it completes (the progress view).
pub async fn run(
    config: &Config,
    plan: &Plan,
    done: impl Fn(&HostCheck, usize, usize),
) -> CheckReport {
    let started = Instant::now();
    let started_at = crate::clock::rfc3339(SystemTime::now());
    let gate = Arc::new(Semaphore::new(PARALLEL));
    let deadline = tokio::time::Instant::now() + plan.total;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, target) in plan.targets.iter().cloned().enumerate() {
        let (gate, config, budget, total) = (gate.clone(), config.clone(), plan.budget, plan.total);
        tasks.spawn(async move {
            let _turn = gate.acquire_owned().await;
            let probed =
                tokio::time::timeout_at(deadline, probe::host(&target, &config, budget)).await;
            (
                i,
                probed.unwrap_or_else(|_| out_of_time(&target, &config, total)),
            )
        });
    }
    let voice = plan.voice.clone().map(|v| {
        let (config, budget) = (config.clone(), plan.budget);
        tokio::spawn(async move { voice(&v, &config, budget).await })
    });
    let mut hosts: Vec<Option<HostCheck>> = vec![None; plan.targets.len()];
    let mut finished = 0;
    while let Some(joined) = tasks.join_next().await {
        if let Ok((i, check)) = joined {
            finished += 1;
            done(&check, finished, plan.targets.len());
            hosts[i] = Some(check);
        }
    }
    let voice = match voice {
        Some(task) => task.await.ok(),
        None => None,
    };
    let mut report = CheckReport {
        version: 1,
        started_at,
        route_source: config.router.source(),
        total_ms: started.elapsed().as_secs_f64() * 1e3,
        hosts: hosts.into_iter().flatten().collect(),
        voice,
        verdict: String::new(),
        failing: 0,
    };
    report.conclude();
    report
}

/// A host the check's overall limit stopped: every stage `not_run`, never passed.
fn out_of_time(target: &Target, config: &Config, total: Duration) -> HostCheck {
    let why = || {
        Stage::new(
            State::NotRun,
            None,
            format!("the check's overall limit ({total:?}) ran out first"),
        )
    };
    let allowlist = config
        .profile
        .match_host(&target.host)
        .map(|e| e.pattern.clone());
    HostCheck::blank(&target.host, target.port, allowlist, |_| why())
}

/// The voice probes: STUN over UDP, TURN/TLS's TCP 443 along the route, ICE's TCP port
/// direct, and the media range stated as not testable.
async fn voice(v: &VoiceTarget, config: &Config, budget: Duration) -> Voice {
    let stun_target = crate::upstream::addr::join(&v.host, v.stun_port);
    let (stun, rtt_ms, loss, mapped) = stun_stage(v, config, budget).await;
    let tcp_443 = tcp_stage(config, budget, &v.tls_host, 443, true).await;
    let tcp_7881 = tcp_stage(config, budget, &v.host, v.tcp_port, false).await;
    let meaning = Voice::meaning(stun.state, tcp_443.state);
    let media_udp = Stage::new(
        State::NotRun,
        None,
        format!(
            "UDP {}–{}: not testable without a voice session",
            v.media_udp[0], v.media_udp[1]
        ),
    );
    Voice {
        stun_target,
        stun,
        rtt_ms,
        loss,
        mapped,
        tcp_443,
        tcp_7881,
        media_udp,
        meaning,
    }
}

async fn stun_stage(
    v: &VoiceTarget,
    config: &Config,
    budget: Duration,
) -> (Stage, Vec<f64>, f64, Option<String>) {
    let started = Instant::now();
    let addr = match resolve::resolve(&v.host, v.stun_port, config, Side::Upstream).await {
        Ok((addrs, _)) => addrs.into_iter().next(),
        Err(f) => {
            return (
                Stage::new(State::Fail, None, f.detail),
                Vec::new(),
                1.0,
                None,
            )
        }
    };
    let Some(addr) = addr.filter(|a| !config.loopback_only || a.ip().is_loopback()) else {
        let why = "not sent: DIAGPROXY_LOOPBACK_ONLY=1 allows loopback addresses only";
        return (Stage::new(State::Fail, None, why), Vec::new(), 1.0, None);
    };
    let wait = budget / STUN_REQUESTS as u32;
    let (rtts, mapped) = match stun::probe(addr, STUN_REQUESTS, wait).await {
        Ok(answered) => answered,
        Err(e) => {
            return (
                Stage::new(State::Fail, None, format!("UDP to {addr}: {e}")),
                Vec::new(),
                1.0,
                None,
            )
        }
    };
    let took = Some(started.elapsed().as_secs_f64() * 1e3);
    let rtt_ms: Vec<f64> = rtts.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    let loss = 1.0 - rtts.len() as f64 / STUN_REQUESTS as f64;
    let mapped = mapped.map(|a| a.to_string());
    if rtts.is_empty() {
        let detail = format!("no answer to {STUN_REQUESTS} STUN requests to {addr} (UDP blocked?)");
        return (Stage::new(State::Fail, took, detail), rtt_ms, loss, mapped);
    }
    let median = {
        let mut sorted = rtts.clone();
        sorted.sort_unstable();
        sorted[sorted.len() / 2]
    };
    let state = if loss > 0.2 || median > SLOW_RTT {
        State::Warn
    } else {
        State::Pass
    };
    let detail = format!(
        "{}/{STUN_REQUESTS} answered, median RTT {:.1} ms, public address {}",
        rtts.len(),
        median.as_secs_f64() * 1e3,
        mapped.as_deref().unwrap_or("not given")
    );
    (Stage::new(state, took, detail), rtt_ms, loss, mapped)
}

/// A TCP connection to `host:port`: along the route (`routed`) or direct.
async fn tcp_stage(
    config: &Config,
    budget: Duration,
    host: &str,
    port: u16,
    routed: bool,
) -> Stage {
    let started = Instant::now();
    let result = if routed {
        tokio::time::timeout(budget, async {
            dial::open_tunnel(host, port, config).await.1.map(|_| ())
        })
        .await
    } else {
        tokio::time::timeout(budget, async {
            dial::dial(host, port, config, Side::Upstream)
                .await
                .map(|_| ())
        })
        .await
    };
    let took = Some(started.elapsed().as_secs_f64() * 1e3);
    let at = crate::upstream::addr::join(host, port);
    match result {
        Ok(Ok(())) => Stage::new(State::Pass, took, format!("{at} accepts connections")),
        Ok(Err(f)) => Stage::new(State::Fail, took, f.to_string()),
        Err(_) => Stage::new(
            State::Fail,
            took,
            format!("{at}: no connection in {budget:?}"),
        ),
    }
}

//! `diagproxy exporter`: a blackbox_exporter-compatible prober. `GET /probe?target=HOST[:PORT]
//! [&module=NAME]` runs `check` for one profile host (or every one with `target=profile`)
//! within the scrape's own timeout and answers the Prometheus text exposition
//! (`metrics::check`); `/metrics` is the exporter's own counters. A target outside the
//! profile is refused (400): the exporter is never an open prober. `push` is `check
//! --push`'s client for a Pushgateway.
//!
//! Bounds: at most [`MAX_PROBES`] probes run at once (more wait for a turn within their
//! own timeout); a probe of a target already being probed with the same module waits for
//! that probe's answer instead of starting a second one (at most [`MAX_WAITING`] targets are
//! tracked); the time budget is `X-Prometheus-Scrape-Timeout-Seconds` minus [`MARGIN`]
//! (at least [`MIN_BUDGET`]; [`DEFAULT_BUDGET`] without the header) and each stage gets a
//! quarter of it at most, so a silent host is a failed stage with the time it ran out, not
//! a scrape that hangs. At most [`MAX_CONNECTIONS`] scraper connections are served at once,
//! each closed after [`HEADER_TIMEOUT`] without a whole request head.

pub mod push;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::{watch, Semaphore};

use crate::check::{Plan, VoiceTarget};
use crate::config::Config;
use crate::metrics::check::Hosts;
use crate::metrics::{self, Family, Kind};
use crate::upstream::HostPort;

/// Probes running at once.
pub const MAX_PROBES: usize = 4;
/// Targets whose probe others may wait for at once; past it a probe is answered 503.
pub const MAX_WAITING: usize = 64;
/// Taken off the scrape timeout, for the answer to travel back.
pub const MARGIN: Duration = Duration::from_millis(500);
/// The least time a probe is given.
pub const MIN_BUDGET: Duration = Duration::from_millis(500);
/// The budget when the scraper sends no timeout header.
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(10);
/// Scraper connections open at once; past it a connection waits in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 256;
/// A connection that has not sent a whole request head this long after opening (or after
/// its last answer) is closed.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// One module: the route, trust stores and probes a check runs with.
#[derive(Debug)]
pub struct Module {
    pub config: Config,
    pub stage_timeout: Duration,
    pub voice: Option<VoiceTarget>,
}

/// How a scraper proves it may probe (`--auth`, `--bearer-token-file`).
#[derive(Debug, Clone)]
pub enum Auth {
    /// The whole `Authorization` value expected (`Basic …` or `Bearer …`).
    Header(String),
}

/// Everything the exporter serves with.
#[derive(Debug)]
pub struct Exporter {
    /// `default` plus the `--config` file's modules.
    pub modules: HashMap<String, Module>,
    pub auth: Option<Auth>,
}

/// The exporter's own counters, for `/metrics`.
#[derive(Debug, Default)]
struct Stats {
    success: AtomicU64,
    failure: AtomicU64,
    refused: AtomicU64,
    shared: AtomicU64,
    running: AtomicU64,
}

/// A probe others wait for: its answer, once there.
type Pending = watch::Receiver<Option<String>>;

struct Server {
    exporter: Exporter,
    stats: Stats,
    turns: Semaphore,
    pending: Mutex<HashMap<String, Pending>>,
}

/// Serves until `stop` completes.
pub async fn run(
    listener: tokio::net::TcpListener,
    exporter: Exporter,
    stop: impl std::future::Future<Output = ()>,
) {
    let server = Arc::new(Server {
        exporter,
        stats: Stats::default(),
        turns: Semaphore::new(MAX_PROBES),
        pending: Mutex::new(HashMap::new()),
    });
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(stop);
    loop {
        let slot = tokio::select! {
            _ = &mut stop => return,
            slot = connections.clone().acquire_owned() => slot,
        };
        let Ok(slot) = slot else { return };
        let accepted = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else { continue };
        let server = server.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |req| {
                let server = server.clone();
                async move { Ok::<_, Infallible>(server.handle(req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

impl Server {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if !self.authorized(&req) {
            let mut response = text(
                StatusCode::UNAUTHORIZED,
                "diagproxy exporter: credentials needed\n",
            );
            response.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                hyper::header::HeaderValue::from_static("Basic realm=\"diagproxy\""),
            );
            return response;
        }
        match req.uri().path() {
            "/probe" => self.probe(&req).await,
            "/metrics" => exposition(self.own_metrics()),
            "/" => text(
                StatusCode::OK,
                "diagproxy exporter: /probe?target=HOST[:PORT]|profile[&module=NAME], /metrics\n",
            ),
            _ => text(
                StatusCode::NOT_FOUND,
                "diagproxy exporter: /probe or /metrics\n",
            ),
        }
    }

    fn authorized(&self, req: &Request<Incoming>) -> bool {
        let Some(Auth::Header(expected)) = &self.exporter.auth else {
            return true;
        };
        req.headers()
            .get(hyper::header::AUTHORIZATION)
            .is_some_and(|v| crate::text::same_secret(v.as_bytes(), expected.as_bytes()))
    }

    async fn probe(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        let query = req.uri().query().unwrap_or("");
        let asked = match Asked::parse(query, &self.exporter) {
            Ok(asked) => asked,
            Err(why) => {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                return text(
                    StatusCode::BAD_REQUEST,
                    &format!("diagproxy exporter: {why}\n"),
                );
            }
        };
        let budget = budget(req.headers().get("x-prometheus-scrape-timeout-seconds"));
        let key = format!("{}\n{}", asked.module, asked.target);
        let (tx, rx) = watch::channel(None);
        // Looked up and listed under one lock, so two probes of one target never both run.
        let waiting = match self.pending.lock() {
            Ok(mut pending) => match pending.get(&key) {
                Some(running) => Some(running.clone()),
                None if pending.len() < MAX_WAITING => {
                    pending.insert(key.clone(), rx);
                    None
                }
                None => {
                    return text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "diagproxy exporter: too many probes at once\n",
                    )
                }
            },
            Err(_) => {
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "diagproxy exporter: internal error\n",
                )
            }
        };
        if let Some(mut pending) = waiting {
            self.stats.shared.fetch_add(1, Ordering::Relaxed);
            let answered = tokio::time::timeout(budget, pending.wait_for(Option::is_some)).await;
            return match answered {
                Ok(Ok(body)) => exposition(body.clone().unwrap_or_default()),
                _ => text(StatusCode::SERVICE_UNAVAILABLE, "diagproxy exporter: the probe of this target already running did not finish in time\n"),
            };
        }
        // Removed however this ends, a scraper that hung up (the future dropped) included.
        let _listed = Listed {
            pending: &self.pending,
            key,
        };
        let body = self.run_probe(&asked, budget).await;
        let _ = tx.send(Some(body.clone()));
        exposition(body)
    }

    /// Waits for a turn, then checks; a probe that got no turn in time is `probe_success 0`.
    async fn run_probe(&self, asked: &Asked<'_>, budget: Duration) -> String {
        let started = tokio::time::Instant::now();
        let Ok(Ok(_turn)) = tokio::time::timeout(budget, self.turns.acquire()).await else {
            self.stats.failure.fetch_add(1, Ordering::Relaxed);
            return "# diagproxy: no probe slot came free within the scrape timeout\nprobe_success 0\n".into();
        };
        let left = budget.saturating_sub(started.elapsed()).max(MIN_BUDGET);
        self.stats.running.fetch_add(1, Ordering::Relaxed);
        let plan = Plan {
            targets: asked.targets.clone(),
            voice: asked
                .voice
                .then(|| asked.module_ref.voice.clone())
                .flatten(),
            budget: asked.module_ref.stage_timeout.min(left / 4),
            total: left,
        };
        let report = crate::check::run(&asked.module_ref.config, &plan, |_, _, _| {}).await;
        self.stats.running.fetch_sub(1, Ordering::Relaxed);
        let counter = if report.failing == 0 {
            &self.stats.success
        } else {
            &self.stats.failure
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let hosts = if asked.many { Hosts::Many } else { Hosts::One };
        metrics::check::exposition(&report, hosts)
    }

    fn own_metrics(&self) -> String {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
        let mut probes = Family::new(
            "diagproxy_exporter_probes_total",
            Kind::Counter,
            "Probes answered, by result (refused: a bad or outside target, an unknown module).",
        );
        probes.add(&[("result", "success")], load(&self.stats.success));
        probes.add(&[("result", "failure")], load(&self.stats.failure));
        probes.add(&[("result", "refused")], load(&self.stats.refused));
        let mut shared = Family::new(
            "diagproxy_exporter_probes_shared_total",
            Kind::Counter,
            "Probes answered with the result of the same probe already running.",
        );
        shared.add(&[], load(&self.stats.shared));
        let mut running = Family::new(
            "diagproxy_exporter_probes_running",
            Kind::Gauge,
            "Probes running now.",
        );
        running.add(&[], load(&self.stats.running));
        let mut info = Family::new(
            "diagproxy_exporter_build_info",
            Kind::Gauge,
            "diagproxy's version.",
        );
        info.add(&[("version", env!("CARGO_PKG_VERSION"))], 1.0);
        metrics::render(&[probes, shared, running, info])
    }
}

/// A probe's entry in the pending table, removed when the probe ends or is dropped.
struct Listed<'a> {
    pending: &'a Mutex<HashMap<String, Pending>>,
    key: String,
}

impl Drop for Listed<'_> {
    fn drop(&mut self) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.remove(&self.key);
        }
    }
}

/// What a `/probe` asks for, checked.
struct Asked<'a> {
    module: String,
    module_ref: &'a Module,
    target: String,
    targets: Vec<crate::check::http::Target>,
    /// `target=profile`: every series names its host, and voice is probed too.
    many: bool,
    voice: bool,
}

impl<'a> Asked<'a> {
    fn parse(query: &str, exporter: &'a Exporter) -> Result<Asked<'a>, String> {
        let param = |name: &str| {
            query
                .split('&')
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| *k == name)
                .map(|(_, v)| crate::text::percent_decode(v, true))
        };
        let module = param("module").unwrap_or_else(|| "default".into());
        let module_ref = exporter
            .modules
            .get(&module)
            .ok_or_else(|| format!("unknown module {module:?}"))?;
        let target =
            param("target").ok_or("missing target (target=HOST[:PORT] or target=profile)")?;
        let config = &module_ref.config;
        let many = target == "profile";
        let targets = if many {
            crate::check::profile_targets(config)
        } else {
            let hp = HostPort::parse(&target, 443)
                .ok_or_else(|| format!("{target:?} is not HOST[:PORT]"))?;
            if config.profile.match_host(&hp.host).is_none() {
                return Err(format!(
                    "{} is not a host of the profile: the exporter probes only the profile's hosts",
                    crate::text::terminal(&hp.host, false)
                ));
            }
            vec![crate::check::target(config, hp.host, hp.port)]
        };
        Ok(Asked {
            module,
            module_ref,
            target,
            targets,
            many,
            voice: many,
        })
    }
}

/// The probe's time: the scrape timeout less the margin.
fn budget(header: Option<&hyper::header::HeaderValue>) -> Duration {
    header
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0 && *s < 3600.0)
        .map_or(DEFAULT_BUDGET, |s| {
            Duration::from_secs_f64(s)
                .saturating_sub(MARGIN)
                .max(MIN_BUDGET)
        })
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn exposition(body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(metrics::CONTENT_TYPE),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_decoded() {
        assert_eq!(
            crate::text::percent_decode("chatgpt.com%3A443", true),
            "chatgpt.com:443"
        );
        assert_eq!(crate::text::percent_decode("a+b", true), "a b");
        assert_eq!(crate::text::percent_decode("100%", true), "100%");
        assert_eq!(crate::text::percent_decode("%zz", true), "%zz");
        assert_eq!(crate::text::percent_decode("%4", true), "%4");
    }

    #[test]
    fn the_budget_is_the_scrape_timeout_less_the_margin() {
        let header = |v: &'static str| hyper::header::HeaderValue::from_static(v);
        assert_eq!(budget(Some(&header("10"))), Duration::from_millis(9_500));
        assert_eq!(budget(Some(&header("0.2"))), MIN_BUDGET);
        assert_eq!(budget(Some(&header("nonsense"))), DEFAULT_BUDGET);
        assert_eq!(budget(None), DEFAULT_BUDGET);
    }
}

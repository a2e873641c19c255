//! `diagproxy bench`: measures diagproxy's own overhead on this machine. It starts loopback
//! origins in-process and the proxy as a child process (recording on, as in real use), then
//! measures every mode **direct and through the proxy in the same run** and prints the
//! ratio to direct and the µs added per request. `--proxy URL` measures another proxy
//! (mitmproxy, squid, …) through the same harness instead.

mod auth;
pub mod bundle;
mod check;
pub mod exporter;
pub mod import;
pub mod load;
pub mod pac;
pub mod pin;
mod report;
mod table;
pub mod world;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use load::{Protocol, Rate, Via};
use pin::Cores;
use world::{World, FRESH, HOST};

pub use table::{compare, table};

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long each measurement runs.
    pub duration: Duration,
    /// Concurrency of the "many clients" forward test.
    pub connections: usize,
    /// Idle tunnels opened for the memory test.
    pub tunnels: usize,
    /// Another proxy to measure instead of diagproxy.
    pub proxy: Option<SocketAddr>,
    /// The other proxy's CA (PEM), to measure its interception too.
    pub proxy_ca: Option<String>,
    /// `--origin-root`: the HTTPS origin's root kept in a file (created if absent), so
    /// another proxy can be told to trust it and its interception measured.
    pub origin_root: Option<std::path::PathBuf>,
    /// The other proxy's process: pinned, and its CPU time and memory read, as diagproxy's are.
    pub proxy_pid: Option<u32>,
    /// The groups of measurements to run (all of them unless `--only`).
    pub only: Vec<Group>,
    /// A configuration for the PAC lookups (`Group::Pac`; diagproxy's own only).
    pub route_config: Option<crate::config::Config>,
    /// `--auth-proxy`: a proxy that asks for sign-in (`Group::Auth`).
    pub auth_proxy: Option<crate::upstream::route::UpstreamProxy>,
    /// `--bundle-mib`: the size of the events file the bundle group bundles.
    pub bundle_bytes: u64,
    /// `--import-mib`: the size of the NetLog the import group imports.
    pub import_bytes: u64,
    pub json: bool,
}

/// A group of measurements `--only` can pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Idle RSS and memory per idle tunnel (another proxy's only with `--proxy-pid`).
    Memory,
    /// Plain HTTP/1.1 keep-alive at concurrency 1 and `--connections`.
    Forward,
    /// CONNECT bulk throughput and set-up time.
    Tunnel,
    /// HTTPS through interception: keep-alive, new connections, first request to a new host.
    Intercept,
    /// A PAC lookup: first for a host, then cached (in process).
    Pac,
    /// A whole `diagproxy check` against the bench's HTTPS origin (in process), and the
    /// exporter: a scrape round of `/probe` over the same hosts, and its idle memory.
    Check,
    /// New tunnels through a proxy that asks for sign-in (`--auth-proxy`; in process).
    Auth,
    /// `diagproxy report` on sessions of 20,000 and 200,000 events: time and peak memory.
    Report,
    /// `diagproxy bundle` of a session with 1 GiB of events: seconds per GiB, peak memory.
    Bundle,
    /// `diagproxy import` of a 200 MiB NetLog: MB/s, peak memory.
    Import,
}

impl Options {
    fn runs(&self, group: Group) -> bool {
        self.only.is_empty() || self.only.contains(&group)
    }
}

/// One line of the table.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Row {
    pub mode: String,
    pub unit: String,
    pub direct: Option<f64>,
    pub proxy: Option<f64>,
    /// Through the proxy relative to direct: 1.0 is as fast; below 1.0 is slower (for times
    /// it is direct ÷ proxy, so it reads the same way).
    pub ratio: Option<f64>,
    /// Mean µs the proxy adds to each request, where that is meaningful.
    pub added_us: Option<f64>,
    pub p50_us: Option<[f64; 2]>,
    pub p99_us: Option<[f64; 2]>,
    /// CPU time the proxy process used (user + system, all threads, the recorder's too) per
    /// unit of the row: per request (req/s rows), per MB (MB/s), per tunnel set up (µs). Steadier
    /// than the ratio on a shared machine, and what the proxy costs the computer it runs on.
    pub proxy_cpu_us: Option<f64>,
}

#[derive(Debug, Serialize, serde::Deserialize)]
pub struct Report {
    pub proxy: String,
    pub duration_s: f64,
    pub cores: usize,
    /// How the cores were shared out, e.g. "load generator on core 0, proxy on core 1".
    pub pinning: String,
    pub rows: Vec<Row>,
}

/// Pins this process to the load generator's cores, builds its runtime (one worker per
/// core it has) and runs the benchmark.
pub fn run(options: Options) -> Result<Report, String> {
    let usable = pin::usable();
    let cores = Cores::split(&usable);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(cores) = &cores {
        // Only this thread exists yet: the runtime's workers inherit its affinity.
        pin::pin_thread(0, &cores.load)?;
        runtime.worker_threads(cores.load.len());
    }
    let runtime = runtime.enable_all().build().map_err(|e| e.to_string())?;
    let mut report = runtime.block_on(run_pinned(options, cores))?;
    report.cores = usable.len().max(1);
    Ok(report)
}

/// The most a `--proxy` has to accept a first connection before the bench gives up on it.
const PROXY_ANSWERS_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether another proxy (`--proxy`) accepts connections, said as the user's flag, before
/// anything is measured (a bare "Connection refused" from the first measurement said
/// neither which address nor what to do).
async fn answers(addr: std::net::SocketAddr) -> Result<(), String> {
    let connect = tokio::net::TcpStream::connect(addr);
    match tokio::time::timeout(PROXY_ANSWERS_WITHIN, connect).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!(
            "--proxy http://{addr}: nothing answers there ({e}); start the other proxy first"
        )),
        Err(_) => Err(format!(
            "--proxy http://{addr}: no answer in {} s; start the other proxy first",
            PROXY_ANSWERS_WITHIN.as_secs()
        )),
    }
}

async fn run_pinned(options: Options, cores: Option<Cores>) -> Result<Report, String> {
    let world = World::start(options.origin_root.as_deref()).await?;
    let (mut child, proxy, name) = match options.proxy {
        Some(addr) => {
            answers(addr).await?;
            (None, addr, format!("http://{addr}"))
        }
        None => {
            let threads = cores.as_ref().map(|c| c.proxy.len());
            let (child, addr) = world.spawn_proxy(threads)?;
            (
                Some(child),
                addr,
                format!("diagproxy {}", env!("CARGO_PKG_VERSION")),
            )
        }
    };
    // Ours is our child; another proxy's process is known when the user gives --proxy-pid.
    let pid = child.as_ref().map(|c| c.id()).or(options.proxy_pid);
    let pinning = match (&cores, pid) {
        (None, _) => "not pinned (one usable core)".to_string(),
        (Some(cores), Some(pid)) => match pin::pin_process(pid, &cores.proxy) {
            Ok(()) => cores.describe(),
            Err(e) => format!("proxy not pinned ({e})"),
        },
        (Some(cores), None) => format!(
            "{}; the other proxy is not pinned (give --proxy-pid to pin it and read its CPU and memory)",
            cores.describe_load()
        ),
    };
    let result = measure(&world, Proxy { addr: proxy, pid }, &options).await;
    let dropped = match child.as_mut() {
        Some(child) => Some(end_session(child, &world.dir.path().join("session"))),
        None => None,
    };
    progress_done();
    let mut rows = result?;
    rows.extend(dropped.map(|d| memory_row("events dropped by the recorder", "events", d)));
    Ok(Report {
        proxy: name,
        duration_s: options.duration.as_secs_f64(),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        pinning,
        rows,
    })
}

/// The proxy under test: where to send the load, and (when known) its process, whose CPU
/// time and memory are read.
#[derive(Debug, Clone, Copy)]
struct Proxy {
    addr: SocketAddr,
    pid: Option<u32>,
}

async fn measure(world: &World, proxy: Proxy, o: &Options) -> Result<Vec<Row>, String> {
    let via = Via::Proxy(proxy.addr);
    let d = o.duration;
    let mut rows = Vec::new();
    let trust_proxy = match (&o.proxy, &o.proxy_ca) {
        (None, _) => Some(load::trusting(&world.ca_pem)?),
        (Some(_), Some(pem)) => Some(load::trusting(pem)?),
        (Some(_), None) => None,
    };
    let memory_pid = proxy.pid.filter(|_| o.runs(Group::Memory));
    let intercept = trust_proxy.filter(|_| o.runs(Group::Intercept));
    let mut progress = Progress::new(steps(o, memory_pid.is_some(), intercept.is_some()));
    // Memory first, while the proxy's heap holds nothing left over from the load tests
    // (freed memory stays in the heap and would hide what idle tunnels cost).
    let mut memory = Vec::new();
    if let Some(pid) = memory_pid {
        progress.step("memory");
        // Let the proxy finish starting (threads, first allocations) before reading it.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mib = |field| load::status_kib(pid, field).map(|k| k as f64 / 1024.0);
        memory.push(memory_row("idle memory (RSS)", "MiB", mib("VmRSS:")));
        memory.push(memory_row(
            "  of which private to the proxy (RssAnon)",
            "MiB",
            mib("RssAnon:"),
        ));
        memory.extend(resident_rows(crate::resident::Resident::of(pid)));
        progress.step(&format!("{} idle tunnels", o.tunnels));
        memory.push(tunnel_memory(world.http, via, pid, o.tunnels).await?);
    }
    if o.runs(Group::Forward) {
        forward(world, proxy, o, &mut progress, &mut rows).await?;
    }
    if o.runs(Group::Tunnel) {
        tunnel(world, proxy, d, &mut progress, &mut rows).await?;
        if o.proxy.is_none() {
            routes(world, o, &mut progress, &mut rows).await?;
        }
    }
    if let Some(trust) = intercept {
        intercept_rows(world, proxy, d, &trust, &mut progress, &mut rows).await?;
    }
    rows.extend(in_process(world, o, &mut progress).await?);
    rows.extend(memory);
    Ok(rows)
}

/// The groups measured inside this process or with children of their own (PAC, check and
/// exporter, sign-in, reports, bundle): diagproxy's own only, not another `--proxy`'s.
async fn in_process(
    world: &World,
    o: &Options,
    progress: &mut Progress,
) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    if let Some(config) = o
        .route_config
        .as_ref()
        .filter(|_| o.runs(Group::Pac) && o.proxy.is_none())
    {
        progress.step("PAC lookups");
        rows.extend(pac::rows(config).await?);
    }
    if let Some(config) = o
        .route_config
        .as_ref()
        .filter(|_| o.runs(Group::Check) && o.proxy.is_none())
    {
        progress.step("a whole check");
        rows.extend(check::rows(world, config).await?);
        progress.step("the exporter: a scrape round and its idle memory");
        rows.extend(exporter::rows(world, config).await?);
    }
    if let (Some(config), Some(proxy)) = (o.route_config.as_ref(), o.auth_proxy.as_ref()) {
        if o.runs(Group::Auth) {
            progress.step("sign-in through the --auth-proxy");
            rows.extend(auth::rows(world, config, proxy).await?);
        }
    }
    if o.runs(Group::Report) && o.proxy.is_none() {
        progress.step("reports of long sessions");
        rows.extend(
            tokio::task::spawn_blocking(report::rows)
                .await
                .map_err(|e| e.to_string())??,
        );
    }
    if o.runs(Group::Bundle) && o.proxy.is_none() {
        progress.step("a bundle of a long session");
        let bytes = o.bundle_bytes;
        rows.extend(
            tokio::task::spawn_blocking(move || bundle::rows(bytes))
                .await
                .map_err(|e| e.to_string())??,
        );
    }
    if o.runs(Group::Import) && o.proxy.is_none() {
        progress.step("an import of a large NetLog");
        let bytes = o.import_bytes;
        rows.extend(
            tokio::task::spawn_blocking(move || import::rows(bytes))
                .await
                .map_err(|e| e.to_string())??,
        );
    }
    Ok(rows)
}

/// How many steps the progress bar counts for the groups that will run.
fn steps(o: &Options, memory: bool, intercept: bool) -> usize {
    let own = o.proxy.is_none();
    2 * usize::from(memory)
        + 4 * usize::from(o.runs(Group::Forward))
        + usize::from(o.runs(Group::Forward) && own)
        + 2 * usize::from(o.runs(Group::Tunnel))
        + 2 * usize::from(o.runs(Group::Tunnel) && own)
        + 5 * usize::from(intercept)
        + usize::from(o.runs(Group::Pac) && own)
        + 2 * usize::from(o.runs(Group::Check) && own)
        + usize::from(o.runs(Group::Auth) && o.auth_proxy.is_some())
        + usize::from(o.runs(Group::Report) && own)
        + usize::from(o.runs(Group::Bundle) && own)
        + usize::from(o.runs(Group::Import) && own)
}

async fn forward(
    world: &World,
    proxy: Proxy,
    o: &Options,
    progress: &mut Progress,
    rows: &mut Vec<Row>,
) -> Result<(), String> {
    let d = o.duration;
    progress.step("forward c=1");
    let run = paired(proxy, d, |v, t| load::forward(world.http, v, 1, t)).await?;
    rows.push(rate_row("forward HTTP/1.1 keep-alive c=1", run));
    progress.step(&format!("forward c={}", o.connections));
    let c = o.connections;
    let run = paired(proxy, d, |v, t| load::forward(world.http, v, c, t)).await?;
    rows.push(rate_row(&format!("forward HTTP/1.1 keep-alive c={c}"), run));
    if o.proxy.is_none() {
        // The same load with and without a live page that reads its event stream slowly,
        // in alternating slices (so the VM's drift falls on both): the stream must cost the
        // proxy nothing (the page loses events, the proxy never waits).
        progress.step(&format!("forward c={c}, slow live page"));
        let run = with_and_without_page(world, proxy, d, c).await?;
        rows.push(rate_row(
            &format!("forward c={c}: with a slow live page (vs. without)"),
            run,
        ));
    }
    progress.step("forward bulk");
    let mode = "forward bulk throughput (plain HTTP, chunked)";
    rows.push(bulk_row(world, proxy, d, mode, Some("/endless")).await?);
    progress.step("forward bulk, Content-Length");
    let mode = "forward bulk throughput (plain HTTP, Content-Length)";
    rows.push(bulk_row(world, proxy, d, mode, Some("/endless-length")).await?);
    Ok(())
}

async fn tunnel(
    world: &World,
    proxy: Proxy,
    d: Duration,
    progress: &mut Progress,
    rows: &mut Vec<Row>,
) -> Result<(), String> {
    progress.step("tunnel throughput");
    rows.push(bulk_row(world, proxy, d, "tunnel bulk throughput", None).await?);
    progress.step("tunnel setup");
    let run = paired(proxy, d, |v, t| load::tunnel_setup(world.http, v, t)).await?;
    rows.push(time_row("tunnel setup (CONNECT → 200)", run));
    Ok(())
}

/// A tunnel along a SOCKS5 route against one along an HTTP proxy route: two more diagproxy
/// processes, one with each `--upstream-proxy`, to loopback peers; set-up time and µs of
/// the SOCKS one's CPU per MB, side by side (the HTTP route in the `direct` column).
async fn routes(
    world: &World,
    o: &Options,
    progress: &mut Progress,
    rows: &mut Vec<Row>,
) -> Result<(), String> {
    let (http, socks) = world::route_peers().await?;
    let (mut a, a_addr) = world.spawn_routed(None, "session-http", &format!("http://{http}"))?;
    let (mut b, b_addr) =
        world.spawn_routed(None, "session-socks", &format!("socks5://{socks}"))?;
    let routed = (
        Proxy {
            addr: a_addr,
            pid: Some(a.id()),
        },
        Proxy {
            addr: b_addr,
            pid: Some(b.id()),
        },
    );
    let measured = route_rows(world, routed, o.duration, progress).await;
    for child in [&mut a, &mut b] {
        let _ = child.kill();
        let _ = child.wait();
    }
    rows.extend(measured?);
    Ok(())
}

async fn route_rows(
    world: &World,
    (http, socks): (Proxy, Proxy),
    d: Duration,
    progress: &mut Progress,
) -> Result<Vec<Row>, String> {
    let slice = d / ROUNDS as u32;
    progress.step("tunnel setup, SOCKS5 route");
    let (mut via_http, mut via_socks) = (Rate::default(), Rate::default());
    let mut cpu = CpuMeter::new(socks.pid);
    for _ in 0..ROUNDS {
        via_http =
            via_http.merge(load::tunnel_setup(world.http, Via::Proxy(http.addr), slice).await?);
        cpu.start();
        via_socks =
            via_socks.merge(load::tunnel_setup(world.http, Via::Proxy(socks.addr), slice).await?);
        cpu.stop();
    }
    let setup = time_row(
        "tunnel setup: SOCKS5 route (vs. HTTP proxy route)",
        Paired {
            direct: via_http,
            through: via_socks,
            cpu,
        },
    );
    progress.step("tunnel bulk, SOCKS5 route");
    let (mut bulk_http, mut bulk_socks) = (Bulk::default(), Bulk::default());
    let mut cpu = CpuMeter::new(socks.pid);
    for _ in 0..ROUNDS {
        bulk_http.add(load::bulk_throughput(world.http, Via::Proxy(http.addr), None, slice).await?);
        cpu.start();
        bulk_socks
            .add(load::bulk_throughput(world.http, Via::Proxy(socks.addr), None, slice).await?);
        cpu.stop();
    }
    let mb = bulk_socks.bytes as f64 / 1e6;
    let bulk = Row {
        mode: "tunnel bulk: SOCKS5 route (vs. HTTP proxy route)".into(),
        unit: "MB/s".into(),
        direct: Some(bulk_http.per_sec() / 1e6),
        proxy: Some(bulk_socks.per_sec() / 1e6),
        ratio: Some(bulk_socks.per_sec() / bulk_http.per_sec().max(f64::MIN_POSITIVE)),
        added_us: None,
        p50_us: None,
        p99_us: None,
        proxy_cpu_us: cpu.per(mb),
    };
    Ok(vec![setup, bulk])
}

/// An endless body read for `d`, directly and through the proxy: in a tunnel, or as a plain
/// HTTP request the proxy forwards (`plain`).
async fn bulk_row(
    world: &World,
    proxy: Proxy,
    d: Duration,
    mode: &str,
    plain: Option<&str>,
) -> Result<Row, String> {
    let via = Via::Proxy(proxy.addr);
    let (mut direct, mut through) = (Bulk::default(), Bulk::default());
    let mut cpu = CpuMeter::new(proxy.pid);
    for _ in 0..ROUNDS {
        let slice = d / ROUNDS as u32;
        direct.add(load::bulk_throughput(world.http, Via::Direct, plain, slice).await?);
        cpu.start();
        through.add(load::bulk_throughput(world.http, via, plain, slice).await?);
        cpu.stop();
    }
    let mb = through.bytes as f64 / 1e6;
    Ok(Row {
        mode: mode.into(),
        unit: "MB/s".into(),
        direct: Some(direct.per_sec() / 1e6),
        proxy: Some(through.per_sec() / 1e6),
        ratio: Some(through.per_sec() / direct.per_sec().max(f64::MIN_POSITIVE)),
        added_us: None,
        p50_us: None,
        p99_us: None,
        proxy_cpu_us: cpu.per(mb),
    })
}

/// Bytes moved and the time they took, over the slices of a throughput measurement.
#[derive(Debug, Default)]
struct Bulk {
    bytes: u64,
    secs: f64,
}

impl Bulk {
    fn add(&mut self, (bytes, secs): (u64, f64)) {
        self.bytes += bytes;
        self.secs += secs;
    }

    fn per_sec(&self) -> f64 {
        self.bytes as f64 / self.secs.max(f64::MIN_POSITIVE)
    }
}

async fn intercept_rows(
    world: &World,
    proxy: Proxy,
    d: Duration,
    trust: &Arc<rustls::ClientConfig>,
    progress: &mut Progress,
    rows: &mut Vec<Row>,
) -> Result<(), String> {
    let trust_direct = load::trusting(&world.origin_root)?;
    // Direct, the client trusts the origin's root; through the proxy, the proxy's CA.
    let trust_for = |v: Via| match v {
        Via::Direct => trust_direct.clone(),
        Via::Proxy(_) => trust.clone(),
    };
    for c in [1, 16] {
        progress.step(&format!("intercept c={c}"));
        let run = paired(proxy, d, |v, t| {
            load::https(world.https, HOST, trust_for(v), v, Protocol::Http1, c, t)
        })
        .await?;
        rows.push(rate_row(&format!("intercept HTTPS keep-alive c={c}"), run));
    }
    progress.step("intercept HTTP/2");
    rows.push(h2_row(world, proxy, d, trust, &trust_for).await?);
    progress.step("new TLS connection per request");
    let run = paired(proxy, d, |v, t| {
        load::new_connections(world.https, HOST, trust_for(v), v, 4, t)
    })
    .await?;
    rows.push(rate_row(
        "intercept new TLS connection per request c=4",
        run,
    ));
    progress.step("first request to a new host");
    let via = Via::Proxy(proxy.addr);
    rows.push(first_request(world, via, trust, &trust_direct).await?);
    Ok(())
}

/// HTTP/2 as a browser speaks it to an intercepted origin: 16 streams at a time on one
/// connection. An empty row for a proxy that does not agree to HTTP/2.
async fn h2_row(
    world: &World,
    proxy: Proxy,
    d: Duration,
    trust: &Arc<rustls::ClientConfig>,
    trust_for: &impl Fn(Via) -> Arc<rustls::ClientConfig>,
) -> Result<Row, String> {
    const MODE: &str = "intercept HTTP/2 keep-alive c=16 (one connection)";
    let via = Via::Proxy(proxy.addr);
    if !load::speaks_h2(world.https, HOST, trust, via).await? {
        let mode = "intercept HTTP/2 c=16: the proxy does not offer HTTP/2";
        return Ok(memory_row(mode, "req/s", None));
    }
    let run = paired(proxy, d, |v, t| {
        load::https(world.https, HOST, trust_for(v), v, Protocol::Http2, 16, t)
    })
    .await?;
    Ok(rate_row(MODE, run))
}

/// Each measurement runs direct and through the proxy in alternating slices, so a machine
/// that speeds up or slows down during the run (a shared VM does) affects both alike.
const ROUNDS: usize = 4;

/// Forward load at concurrency `c` through the proxy, alternately without (as `direct`)
/// and with (as `through`) a slow live page connected; the CPU is the with-page slices'.
async fn with_and_without_page(
    world: &World,
    proxy: Proxy,
    d: Duration,
    c: usize,
) -> Result<Paired, String> {
    let slice = d / ROUNDS as u32;
    let via = Via::Proxy(proxy.addr);
    let (mut without, mut with) = (Rate::default(), Rate::default());
    let mut cpu = CpuMeter::new(proxy.pid);
    for _ in 0..ROUNDS {
        without = without.merge(load::forward(world.http, via, c, slice).await?);
        let page = load::slow_event_reader(proxy.addr, &world.live_token).await?;
        cpu.start();
        with = with.merge(load::forward(world.http, via, c, slice).await?);
        cpu.stop();
        page.abort();
    }
    Ok(Paired {
        direct: without,
        through: with,
        cpu,
    })
}

async fn paired<F, Fut>(proxy: Proxy, d: Duration, run: F) -> Result<Paired, String>
where
    F: Fn(Via, Duration) -> Fut,
    Fut: std::future::Future<Output = Result<Rate, String>>,
{
    let slice = d / ROUNDS as u32;
    let (mut direct, mut through) = (Rate::default(), Rate::default());
    let mut cpu = CpuMeter::new(proxy.pid);
    for _ in 0..ROUNDS {
        direct = direct.merge(run(Via::Direct, slice).await?);
        cpu.start();
        through = through.merge(run(Via::Proxy(proxy.addr), slice).await?);
        cpu.stop();
    }
    Ok(Paired {
        direct,
        through,
        cpu,
    })
}

/// One measurement, direct and through the proxy, and the proxy's CPU time in its share.
struct Paired {
    direct: Rate,
    through: Rate,
    cpu: CpuMeter,
}

/// The proxy process's CPU time, added up over the slices that go through it (it idles
/// while the direct slices run, but is not charged for them either way).
struct CpuMeter {
    pid: Option<u32>,
    started: Option<Duration>,
    spent: Option<Duration>,
}

impl CpuMeter {
    fn new(pid: Option<u32>) -> CpuMeter {
        CpuMeter {
            pid,
            started: None,
            spent: Some(Duration::ZERO),
        }
    }

    fn start(&mut self) {
        self.started = self.pid.and_then(load::cpu_time);
    }

    fn stop(&mut self) {
        let now = self.pid.and_then(load::cpu_time);
        self.spent = match (self.spent, self.started.take(), now) {
            (Some(spent), Some(started), Some(now)) => Some(spent + now.saturating_sub(started)),
            _ => None,
        };
    }

    /// µs of CPU per unit of work (`units` requests, MB, tunnels) done in the metered slices.
    fn per(&self, units: f64) -> Option<f64> {
        let spent = self.spent?;
        (units > 0.0).then(|| spent.as_secs_f64() * 1e6 / units)
    }
}

/// The first request to a host never seen (a leaf is minted) against a new connection to a
/// host already seen (the config is cached): what minting adds.
async fn first_request(
    world: &World,
    via: Via,
    trust: &Arc<rustls::ClientConfig>,
    trust_direct: &Arc<rustls::ClientConfig>,
) -> Result<Row, String> {
    let (mut first, mut again, mut direct) = (0.0, 0.0, 0.0);
    for i in 0..FRESH {
        let name = world::fresh_name(i);
        first += f64::from(load::one_request(world.https, &name, trust, via).await?);
        again += f64::from(load::one_request(world.https, &name, trust, via).await?);
        direct +=
            f64::from(load::one_request(world.https, &name, trust_direct, Via::Direct).await?);
    }
    let n = FRESH as f64;
    let (first, again, direct) = (first / n, again / n, direct / n);
    Ok(Row {
        mode: "first request to a new host (mint) vs. a known host".into(),
        unit: "µs".into(),
        direct: Some(direct),
        proxy: Some(first),
        ratio: Some(direct / first),
        added_us: Some(first - again),
        p50_us: None,
        p99_us: None,
        proxy_cpu_us: None,
    })
}

/// RSS per idle tunnel: open `n` tunnels, let them settle, read the proxy's RSS.
async fn tunnel_memory(origin: SocketAddr, via: Via, pid: u32, n: usize) -> Result<Row, String> {
    // The caller has already let the proxy settle (the idle reading).
    let before = load::status_kib(pid, "VmRSS:").unwrap_or(0);
    let mut open = Vec::with_capacity(n);
    for _ in 0..n {
        open.push(load::open_tunnel(origin, via).await?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = load::status_kib(pid, "VmRSS:").unwrap_or(before);
    drop(open);
    let per = after.saturating_sub(before) as f64 / n as f64;
    let mode = format!("memory per idle tunnel ({n} open)");
    Ok(memory_row(&mode, "KiB", Some(per)))
}

/// How long our proxy may take to write its summary after the bench's Ctrl-C (its `--grace`
/// is 1 s); past it, it is killed and the dropped events are not known.
const SESSION_END: Duration = Duration::from_secs(10);

/// Ends our proxy's session as Ctrl-C does and reads from its `summary.json` how many
/// events its recorder dropped over the whole bench (`None` when that cannot be read): a
/// rate bought by losing events would show here.
fn end_session(child: &mut std::process::Child, session: &std::path::Path) -> Option<f64> {
    let pid = libc::pid_t::try_from(child.id()).ok()?;
    // SAFETY: signals our own child, which has not been waited for, so the pid is still its.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let deadline = std::time::Instant::now() + SESSION_END;
    while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if matches!(child.try_wait(), Ok(None)) {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    }
    let text = std::fs::read_to_string(session.join("summary.json")).ok()?;
    let summary: serde_json::Value = serde_json::from_str(&text).ok()?;
    summary["session"]["events_dropped"].as_f64()
}

/// Idle RSS by mapping (`/proc/PID/smaps`): which MiB are the program's, the libraries',
/// the heap's.
fn resident_rows(resident: Option<crate::resident::Resident>) -> Vec<Row> {
    let mib = |pick: fn(&crate::resident::Resident) -> u64| {
        resident.as_ref().map(|r| pick(r) as f64 / 1024.0)
    };
    vec![
        memory_row(
            "  by mapping: the program's code",
            "MiB",
            mib(|r| r.own_code),
        ),
        memory_row(
            "  by mapping: the program's constants and data",
            "MiB",
            mib(|r| r.own_data),
        ),
        memory_row(
            "  by mapping: shared libraries",
            "MiB",
            mib(|r| r.libraries),
        ),
        memory_row(
            "  by mapping: heap, stacks, anonymous",
            "MiB",
            mib(|r| r.anonymous),
        ),
    ]
}

fn memory_row(mode: &str, unit: &str, proxy: Option<f64>) -> Row {
    Row {
        mode: mode.into(),
        unit: unit.into(),
        direct: None,
        proxy,
        ratio: None,
        added_us: None,
        p50_us: None,
        p99_us: None,
        proxy_cpu_us: None,
    }
}

fn rate_row(mode: &str, run: Paired) -> Row {
    let Paired {
        direct,
        through,
        cpu,
    } = run;
    Row {
        mode: mode.into(),
        unit: "req/s".into(),
        direct: Some(direct.per_sec()),
        proxy: Some(through.per_sec()),
        ratio: Some(through.per_sec() / direct.per_sec().max(f64::MIN_POSITIVE)),
        added_us: Some(through.mean_us - direct.mean_us),
        p50_us: Some([direct.p50_us, through.p50_us]),
        p99_us: Some([direct.p99_us, through.p99_us]),
        proxy_cpu_us: cpu.per(through.requests as f64),
    }
}

fn time_row(mode: &str, run: Paired) -> Row {
    let Paired {
        direct,
        through,
        cpu,
    } = run;
    Row {
        mode: mode.into(),
        unit: "µs".into(),
        direct: Some(direct.mean_us),
        proxy: Some(through.mean_us),
        ratio: Some(direct.mean_us / through.mean_us.max(f64::MIN_POSITIVE)),
        added_us: Some(through.mean_us - direct.mean_us),
        p50_us: Some([direct.p50_us, through.p50_us]),
        p99_us: Some([direct.p99_us, through.p99_us]),
        proxy_cpu_us: cpu.per(through.requests as f64),
    }
}

/// The progress bar on stderr: one step per measurement.
struct Progress {
    done: usize,
    total: usize,
}

impl Progress {
    fn new(total: usize) -> Progress {
        Progress { done: 0, total }
    }

    fn step(&mut self, what: &str) {
        self.done += 1;
        let (i, total) = (self.done, self.total.max(1));
        let filled = "#".repeat(i * 20 / total);
        eprint!("\r[{filled:<20}] {i:>2}/{total} {what:<40}");
        let _ = std::io::stderr().flush();
    }
}

fn progress_done() {
    eprint!("\r{:<80}\r", "");
}

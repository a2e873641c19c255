//! CONNECT: dial the upstream first (so a failure is a 502 that names it), answer 200, then
//! relay bytes unchanged both ways, half-close honoured. The downstream's first bytes are
//! read as they pass to record the ClientHello's SNI and ALPN; nothing is held back.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant, SystemTime};

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::body::{empty, Body};
use super::dial::{self, Io};
use super::{answer, OpenGuard, Shared};
use crate::clock::{self, ms};
use crate::failure::{Failure, FailureKind, Side};
use crate::inspect::findings::{self, TunnelSight};
use crate::session::event::{Downstream, Event, Timings, TlsCheckEvent, TunnelEnd, TunnelEvent};
use crate::shutdown::Shutdown;
use crate::sniff::{self, Sniff};
use crate::tls::{chain, probe};
use rustls::pki_types::UnixTime;

pub async fn connect(
    req: Request<Incoming>,
    downstream: Downstream,
    state: Shared,
    shutdown: Shutdown,
) -> Response<Body> {
    let started = Instant::now();
    let target = req.uri().to_string();
    let parsed = req.uri().authority().and_then(|a| {
        Some((
            a.host()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            a.port_u16()?,
        ))
    });
    let Some((host, port)) = parsed else {
        let reason = format!(
            "CONNECT needs a host:port target, e.g. CONNECT chatgpt.com:443 (got {target:?})"
        );
        return answer::refuse(
            &state,
            downstream,
            "CONNECT",
            &target,
            StatusCode::BAD_REQUEST,
            &reason,
        );
    };
    if state.is_self(&host, port) {
        let reason = format!("{target} is this proxy itself; refusing to loop");
        return answer::refuse(
            &state,
            downstream,
            "CONNECT",
            &target,
            StatusCode::LOOP_DETECTED,
            &reason,
        );
    }
    if state.intercepts(&host) {
        return super::intercept::connect(req, downstream, host, port, state, shutdown).await;
    }
    let guard = OpenGuard::new(&state);
    let mut record = TunnelEvent {
        ts: clock::rfc3339(SystemTime::now()),
        mode: "tunnel".into(),
        allowlist: state
            .config
            .profile
            .match_host(&host)
            .map(|e| e.pattern.clone()),
        host,
        port,
        sni: None,
        alpn: Vec::new(),
        payload: "none".into(),
        first_bytes: None,
        server_ip: None,
        downstream,
        timings: Timings::default(),
        bytes_up: 0,
        bytes_down: 0,
        end: TunnelEnd::Failed,
        failure: None,
        findings: Vec::new(),
    };
    let upstream = match dial::open_tunnel(&record.host, port, &state.config).await {
        Ok(upstream) => upstream,
        Err(failure) => {
            let response = answer::failure(&failure, &record.host, port, &state.config.profile);
            let url = format!("https://{}/", crate::config::host_port(&record.host, port));
            record.findings = state.failure_findings(&record.host, &failure, &url, port);
            record.failure = Some(failure);
            record.timings.total_ms = ms(started.elapsed());
            state.recorder.record(Event::Tunnel(Box::new(record)));
            return response;
        }
    };
    record.server_ip = Some(upstream.addr.ip().to_string());
    record
        .findings
        .extend(crate::inspect::findings::dns_sinkhole(
            &record.host,
            &upstream.dns_answer,
            &state.config.profile,
        ));
    record.timings.dns_ms = upstream.dns.map(ms);
    record.timings.connect_ms = Some(ms(upstream.connect));
    record.timings.proxy_connect_ms = upstream.proxy_connect.map(ms);
    tokio::spawn(async move {
        let _open = (guard, shutdown); // open work until the tunnel closes
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                let (host, port) = (record.host.clone(), record.port);
                let on_hello = |sni: Option<&str>| check_chain(&state, &host, port, sni);
                relay(
                    TokioIo::new(upgraded),
                    upstream.io,
                    &mut record,
                    &state,
                    on_hello,
                )
                .await
            }
            Err(e) => {
                record.failure = Some(Failure::new(
                    FailureKind::HttpError,
                    Side::Downstream,
                    format!("the client did not take up the tunnel: {e}"),
                ));
            }
        }
        record.timings.total_ms = ms(started.elapsed());
        state.recorder.record(Event::Tunnel(Box::new(record)));
    });
    Response::new(empty())
}

/// Starts the side handshake for the name the client asked for (its SNI, else the CONNECT
/// host when that is a name), once per name and port per session. Runs beside the tunnel.
fn check_chain(state: &Shared, host: &str, port: u16, sni: Option<&str>) {
    let Some(name) = sni.or_else(|| host.parse::<std::net::IpAddr>().is_err().then_some(host))
    else {
        return;
    };
    let name = name.to_ascii_lowercase();
    let first_time = state
        .tls_checked
        .lock()
        .map(|mut seen| seen.insert((name.clone(), port)))
        .unwrap_or(false);
    if !first_time {
        return;
    }
    let (state, host) = (state.clone(), host.to_string());
    tokio::spawn(async move {
        let chain = probe::presented_chain(&host, port, &name, &state.config).await;
        let (tls, error) = match chain.and_then(|c| {
            chain::judge(
                &c,
                &name,
                &state.config.roots,
                &state.config.profile,
                UnixTime::now(),
            )
        }) {
            Ok(verdict) => (Some(verdict), None),
            Err(e) => (None, Some(e)),
        };
        let ts = clock::rfc3339(SystemTime::now());
        let check = TlsCheckEvent {
            ts,
            host: name,
            port,
            via: "side_handshake".into(),
            tls,
            error,
        };
        state.recorder.record(Event::TlsCheck(Box::new(check)));
    });
}

/// Byte counts and clocks both directions of a tunnel update.
struct Meter {
    start: Instant,
    up: AtomicU64,
    down: AtomicU64,
    /// Milliseconds from `start` to the last byte moved either way.
    last_activity_ms: AtomicU64,
    /// Microseconds from `start` to the first upstream byte, plus one (0: none yet).
    first_down_us: AtomicU64,
    /// Which side closed first (a `Closer` code), 0 while both are open.
    first_close: AtomicU8,
}

const CLOSED_BY_DOWNSTREAM: u8 = 1;
const CLOSED_BY_UPSTREAM: u8 = 2;

/// Relays until both sides are done, one resets, or nothing moves for `idle`.
async fn relay(
    downstream: impl Io,
    upstream: Box<dyn Io>,
    record: &mut TunnelEvent,
    state: &Shared,
    on_hello: impl FnOnce(Option<&str>),
) {
    let mut sniffer = Sniffer::default();
    let mut on_hello = Some(on_hello);
    let mut first_upstream = Vec::new();
    let on_up = |chunk: &[u8]| {
        if let Some(Sniff::Hello(hello)) = sniffer.feed(chunk) {
            if let Some(callback) = on_hello.take() {
                callback(hello.sni.as_deref());
            }
        }
    };
    let on_down = |chunk: &[u8]| {
        if first_upstream.len() < FIRST_UPSTREAM_KEPT {
            let take = chunk.len().min(FIRST_UPSTREAM_KEPT - first_upstream.len());
            first_upstream.extend_from_slice(&chunk[..take]);
        }
    };
    let outcome = splice(
        downstream,
        upstream,
        state.config.idle_timeout,
        on_up,
        on_down,
    )
    .await;
    if let Some(e) = &outcome.upstream_error {
        record.failure = Some(Failure::new(
            FailureKind::Reset,
            Side::Upstream,
            format!("the upstream broke the tunnel: {e}"),
        ));
    }
    record.end = outcome.end;
    record.bytes_up = outcome.bytes_up;
    record.bytes_down = outcome.bytes_down;
    record.timings.wait_ms = outcome.first_down.map(ms);
    sniffer.finish(record);
    let sight = TunnelSight {
        host: record.host_name(),
        client_hello: record.payload == "tls",
        first_upstream: &first_upstream,
        bytes_down: record.bytes_down,
        upstream_died: record.end == TunnelEnd::UpstreamReset
            || (record.end == TunnelEnd::UpstreamClosed && record.bytes_down == 0),
    };
    let found = findings::tunnel_findings(&sight, &state.config.profile);
    if found.is_empty() {
        return;
    }
    let url = format!(
        "https://{}/",
        crate::config::host_port(record.host_name(), record.port)
    );
    let reproduce = state.reproduce(&url, record.host_name(), record.port);
    record.findings.extend(
        found
            .into_iter()
            .map(|f| f.with_reproduce(Some(reproduce.clone()))),
    );
}

/// A tunnel direction's first read buffer, and what it grows to under bulk transfer.
const SMALL_BUFFER: usize = 4 * 1024;
const LARGE_BUFFER: usize = 64 * 1024;

/// How much of the upstream's first bytes a tunnel keeps for the detectors.
const FIRST_UPSTREAM_KEPT: usize = 4096;

/// What a spliced pair of streams did.
pub struct Spliced {
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// From the start to the first upstream byte.
    pub first_down: Option<Duration>,
    pub end: TunnelEnd,
    /// The upstream's error, when it broke the connection.
    pub upstream_error: Option<std::io::Error>,
}

/// Copies bytes both ways until both sides are done (half-close honoured), one side
/// fails, or nothing moves for `idle`. `on_up_chunk` sees every downstream chunk as it
/// passes. Used by tunnels and by intercepted WebSocket upgrades.
pub async fn splice(
    downstream: impl Io,
    upstream: impl Io,
    idle: Duration,
    on_up_chunk: impl FnMut(&[u8]),
    on_down_chunk: impl FnMut(&[u8]),
) -> Spliced {
    let meter = Meter {
        start: Instant::now(),
        up: AtomicU64::new(0),
        down: AtomicU64::new(0),
        last_activity_ms: AtomicU64::new(0),
        first_down_us: AtomicU64::new(0),
        first_close: AtomicU8::new(0),
    };
    let (mut down_read, mut down_write) = tokio::io::split(downstream);
    let (mut up_read, mut up_write) = tokio::io::split(upstream);
    let upward = pump(
        &mut down_read,
        &mut up_write,
        Side::Downstream,
        &meter,
        on_up_chunk,
    );
    let downward = pump(
        &mut up_read,
        &mut down_write,
        Side::Upstream,
        &meter,
        on_down_chunk,
    );
    let mut upstream_error = None;
    let end = tokio::select! {
        result = async { tokio::try_join!(upward, downward) } => match result {
            Ok(_) if meter.first_close.load(Ordering::Relaxed) == CLOSED_BY_UPSTREAM => TunnelEnd::UpstreamClosed,
            Ok(_) => TunnelEnd::DownstreamClosed,
            Err((Side::Downstream, _)) => TunnelEnd::DownstreamReset,
            Err((_, e)) => {
                upstream_error = Some(e);
                TunnelEnd::UpstreamReset
            }
        },
        () = idle_deadline(&meter, idle) => TunnelEnd::IdleTimeout,
    };
    let first = meter.first_down_us.load(Ordering::Relaxed);
    Spliced {
        bytes_up: meter.up.load(Ordering::Relaxed),
        bytes_down: meter.down.load(Ordering::Relaxed),
        first_down: (first > 0).then(|| Duration::from_micros(first - 1)),
        end,
        upstream_error,
    }
}

/// Copies one direction. `from` is the side whose read errors are its own; write errors
/// belong to the other side. EOF is passed on as a half-close.
async fn pump<R, W>(
    reader: &mut R,
    writer: &mut W,
    from: Side,
    meter: &Meter,
    mut on_chunk: impl FnMut(&[u8]),
) -> Result<(), (Side, std::io::Error)>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let to = if from == Side::Downstream {
        Side::Upstream
    } else {
        Side::Downstream
    };
    let (count, closed_code) = if from == Side::Downstream {
        (&meter.up, CLOSED_BY_DOWNSTREAM)
    } else {
        (&meter.down, CLOSED_BY_UPSTREAM)
    };
    // Idle tunnels are the common case (browsers keep many open), so start small and grow
    // only when a read fills the buffer: bulk transfers get 64 KiB reads after a few rounds.
    let mut buf = vec![0u8; SMALL_BUFFER];
    loop {
        let n = reader.read(&mut buf).await.map_err(|e| (from, e))?;
        if n == buf.len() && buf.len() < LARGE_BUFFER {
            buf.resize(LARGE_BUFFER, 0);
        }
        if n == 0 {
            let _ = meter.first_close.compare_exchange(
                0,
                closed_code,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            let _ = writer.shutdown().await;
            return Ok(());
        }
        if from == Side::Upstream && meter.first_down_us.load(Ordering::Relaxed) == 0 {
            meter.first_down_us.store(
                meter.start.elapsed().as_micros() as u64 + 1,
                Ordering::Relaxed,
            );
        }
        on_chunk(&buf[..n]);
        writer.write_all(&buf[..n]).await.map_err(|e| (to, e))?;
        count.fetch_add(n as u64, Ordering::Relaxed);
        meter
            .last_activity_ms
            .store(meter.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

async fn idle_deadline(meter: &Meter, idle: Duration) {
    loop {
        let last = Duration::from_millis(meter.last_activity_ms.load(Ordering::Relaxed));
        let deadline = meter.start + last + idle;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline.into()).await;
    }
}

/// Watches the first bytes of the downstream's stream until it can say what they are.
#[derive(Default)]
struct Sniffer {
    buf: Vec<u8>,
    verdict: Option<Sniff>,
}

impl Sniffer {
    /// Takes the next chunk; returns the verdict when this chunk decided it.
    fn feed(&mut self, chunk: &[u8]) -> Option<&Sniff> {
        if self.verdict.is_some() {
            return None;
        }
        let take = chunk
            .len()
            .min(sniff::MAX_HELLO.saturating_sub(self.buf.len()));
        self.buf.extend_from_slice(&chunk[..take]);
        match sniff::client_hello(&self.buf) {
            Sniff::NeedMore if self.buf.len() < sniff::MAX_HELLO => None,
            Sniff::NeedMore => Some(&*self.verdict.insert(Sniff::Malformed)),
            other => Some(&*self.verdict.insert(other)),
        }
    }

    fn finish(self, record: &mut TunnelEvent) {
        record.payload = match self.verdict {
            Some(Sniff::Hello(hello)) => {
                record.sni = hello.sni;
                record.alpn = hello.alpn;
                "tls"
            }
            Some(Sniff::NotTls) => {
                let shown = &self.buf[..self.buf.len().min(64)];
                record.first_bytes = Some(String::from_utf8_lossy(shown).into_owned());
                "not_tls"
            }
            Some(Sniff::Malformed) => "malformed",
            Some(Sniff::NeedMore) | None if self.buf.is_empty() => "none",
            Some(Sniff::NeedMore) | None => "partial",
        }
        .to_string();
    }
}

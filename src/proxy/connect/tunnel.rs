//! A byte tunnel for a CONNECT: dial the upstream first (so a failure is a 502 that names it), answer 200, then
//! relay bytes unchanged both ways, half-close honoured. The downstream's first bytes are
//! read as they pass to record the ClientHello's SNI and ALPN; nothing is held back.

use std::time::{Instant, SystemTime};

use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::relay;
use crate::clock::{self, ms};
use crate::failure::{Failure, FailureKind, Side};
use crate::inspect::detect::{self, TunnelSight};
use crate::proxy::body::{empty, Body};
use crate::proxy::pages::answer;
use crate::proxy::{OpenGuard, Shared};
use crate::session::event::{
    ChainSource, Downstream, Event, Payload, Timings, TlsCheckEvent, TunnelEnd, TunnelEvent,
    TunnelMode,
};
use crate::shutdown::Shutdown;
use crate::tls::sniff::{self, Sniff};
use crate::tls::{chain, probe};
use crate::upstream::dial::{self, Stream};
use crate::upstream::route::Taken;
use rustls::pki_types::UnixTime;

/// Dials the upstream, answers 200 and relays the tunnel in its own task; a dial failure
/// is the 502/504 that names it.
pub async fn open(
    req: Request<Incoming>,
    downstream: Downstream,
    host: String,
    port: u16,
    state: Shared,
    shutdown: Shutdown,
) -> Response<Body> {
    let started = Instant::now();
    let guard = OpenGuard::new(&state);
    let mut record = new_record(&state, downstream, host, port);
    let (taken, opened) = dial::open_tunnel(&record.host, port, &state.config).await;
    record.route = taken;
    let upstream = match opened {
        Ok(upstream) => upstream,
        Err(failure) => return dial_failed(&state, record, failure, started),
    };
    let on_route = state.route_findings(&record.host, &record.route, None);
    record.findings.extend(on_route);
    record.server_ip = Some(upstream.addr.ip().to_string());
    record.findings.extend(crate::inspect::detect::dns_sinkhole(
        &record.host,
        &upstream.dns_answer,
        &state.config.profile,
    ));
    record.timings.dns_ms = upstream.dns.map(ms);
    record.timings.connect_ms = Some(ms(upstream.connect));
    record.timings.proxy_connect_ms = upstream.proxy_connect.map(ms);
    tokio::spawn(async move {
        let _open = guard; // open work until the tunnel closes
        let mut shutdown = shutdown;
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                let (host, port) = (record.host.clone(), record.port);
                // The side handshake holds its own handle: its event, too, is recorded
                // before the session's files close.
                let held = shutdown.clone();
                let on_hello = |sni: Option<&str>| check_chain(&state, &host, port, sni, held);
                let ends = (upgraded, upstream.io);
                // At shutdown the tunnel keeps relaying for most of the grace period, then
                // is recorded as still open, before the session's files close.
                let grace = state.config.grace * 3 / 4;
                // Borrowed, not moved: the handle must outlive the relay until the event is
                // recorded below, or the session could end (and drop the event) in between.
                let stop = async {
                    shutdown.recv().await;
                    tokio::time::sleep(grace).await;
                };
                relay(ends, &mut record, &state, on_hello, stop).await
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
        // Only now is this tunnel's work over for the shutdown's wait.
        drop(shutdown);
    });
    Response::new(empty())
}

/// The tunnel's event as it starts: nothing relayed yet, `Failed` until it is established.
fn new_record(state: &Shared, downstream: Downstream, host: String, port: u16) -> TunnelEvent {
    TunnelEvent {
        ts: clock::rfc3339(SystemTime::now()),
        mode: TunnelMode::Tunnel,
        allowlist: state
            .config
            .profile
            .match_host(&host)
            .map(|e| e.pattern.clone()),
        host,
        port,
        sni: None,
        alpn: Vec::new(),
        payload: Payload::None,
        first_bytes: None,
        server_ip: None,
        route: Taken::default(),
        downstream,
        timings: Timings::default(),
        bytes_up: 0,
        bytes_down: 0,
        end: TunnelEnd::Failed,
        failure: None,
        findings: Vec::new(),
    }
}

/// Records a tunnel that could not be dialled and answers with the failure.
fn dial_failed(
    state: &Shared,
    mut record: TunnelEvent,
    failure: Failure,
    started: Instant,
) -> Response<Body> {
    let port = record.port;
    let response = answer::failure(&failure, &record.host, port, &state.config.profile);
    // No ClientHello yet, so no SNI: the URL names the CONNECT's host.
    let url = record.url();
    record.findings = state.failure_findings(&record.host, &failure, &url, port, &record.route);
    record.failure = Some(failure);
    record.timings.total_ms = ms(started.elapsed());
    state.recorder.record(Event::Tunnel(Box::new(record)));
    response
}

/// Starts the side handshake for the name the client asked for (its SNI, else the CONNECT
/// host when that is a name), once per name and port per session. Runs beside the tunnel,
/// holding `shutdown` until its event is recorded.
fn check_chain(state: &Shared, host: &str, port: u16, sni: Option<&str>, shutdown: Shutdown) {
    let Some(name) = sni.or_else(|| host.parse::<std::net::IpAddr>().is_err().then_some(host))
    else {
        return;
    };
    let name = name.to_ascii_lowercase();
    if !state.first_check(&name, port) {
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
            via: ChainSource::SideHandshake,
            tls,
            error,
        };
        state.recorder.record(Event::TlsCheck(Box::new(check)));
        drop(shutdown);
    });
}

/// Relays until both sides are done, one resets, nothing moves for `idle`, or the session
/// ends (`stop`: the tunnel is then recorded as still open); watches the start of each
/// direction for the sniffer and the detectors. Two TCP sockets (the usual case) are relayed
/// with splice(2) once the start has been seen.
async fn relay(
    (downstream, upstream): (Upgraded, Stream),
    record: &mut TunnelEvent,
    state: &Shared,
    on_hello: impl FnOnce(Option<&str>),
    stop: impl std::future::Future<Output = ()>,
) {
    let mut sniffer = Sniffer::default();
    let mut on_hello = Some(on_hello);
    let mut first_upstream = Vec::new();
    let mut hello_at = None;
    let watch_up = |chunk: &[u8]| {
        if let Some(Sniff::Hello(hello)) = sniffer.feed(chunk) {
            hello_at = Some(Instant::now());
            if let Some(callback) = on_hello.take() {
                let sni = hello.sni.as_deref().filter(|s| crate::text::is_dns_name(s));
                callback(sni);
            }
        }
        !sniffer.decided()
    };
    let watch_down = |chunk: &[u8]| {
        let take = chunk
            .len()
            .min(FIRST_UPSTREAM_KEPT.saturating_sub(first_upstream.len()));
        first_upstream.extend_from_slice(&chunk[..take]);
        first_upstream.len() < FIRST_UPSTREAM_KEPT
    };
    let idle = state.config.idle_timeout;
    let outcome = match upstream {
        Stream::Tcp { stream, early } => match downstream.downcast::<TokioIo<TcpStream>>() {
            Ok(down) => {
                let ends = relay::Ends {
                    downstream: down.io.into_inner(),
                    early_up: down.read_buf,
                    upstream: stream,
                    early_down: early,
                };
                relay::tcp(ends, idle, watch_up, watch_down, stop).await
            }
            Err(down) => {
                let up = Stream::Tcp { stream, early }.into_io();
                relay::streams(TokioIo::new(down), up, idle, watch_up, watch_down, stop).await
            }
        },
        Stream::Other(up) => {
            relay::streams(
                TokioIo::new(downstream),
                up,
                idle,
                watch_up,
                watch_down,
                stop,
            )
            .await
        }
    };
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
    if let Some(sni) = record.sni.as_deref() {
        // A CONNECT by IP address is filed under the name the client asked for.
        let profile = &state.config.profile;
        record.allowlist = profile.match_host(sni).map(|e| e.pattern.clone());
    }
    let silent_for = hello_at.map(|at| at.elapsed());
    judge(record, &first_upstream, silent_for, state);
}

/// The detectors on a finished tunnel (what came back, how it ended), each finding with the
/// command that reproduces it.
fn judge(
    record: &mut TunnelEvent,
    first_upstream: &[u8],
    silent_for: Option<std::time::Duration>,
    state: &Shared,
) {
    let sight = TunnelSight {
        host: record.host_name(),
        client_hello: record.payload == Payload::Tls,
        first_upstream,
        bytes_down: record.bytes_down,
        upstream_died: record.end == TunnelEnd::UpstreamReset
            || (record.end == TunnelEnd::UpstreamClosed && record.bytes_down == 0),
        silent_for: silent_for.filter(|_| record.bytes_down == 0),
    };
    let found = detect::tunnel_findings(&sight, &state.config.profile);
    if found.is_empty() {
        return;
    }
    let url = record.url();
    let reproduce = state.reproduce(
        &url,
        record.host_name(),
        record.port,
        record.route.hop.as_ref(),
    );
    record.findings.extend(
        found
            .into_iter()
            .map(|f| f.with_reproduce(Some(reproduce.clone()))),
    );
}

/// How much of the upstream's first bytes a tunnel keeps for the detectors: enough for a
/// plaintext block page whose marker sits past its CSS.
const FIRST_UPSTREAM_KEPT: usize = detect::FIRST_UPSTREAM_KEPT;

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

    /// Whether it has said what the stream is (and needs no more bytes).
    fn decided(&self) -> bool {
        self.verdict.is_some()
    }

    fn finish(self, record: &mut TunnelEvent) {
        record.payload = match self.verdict {
            Some(Sniff::Hello(hello)) => {
                // Recorded (and the tunnel filed under it) only when it is a DNS name.
                record.sni = hello.sni.filter(|sni| crate::text::is_dns_name(sni));
                record.alpn = hello.alpn;
                Payload::Tls
            }
            Some(Sniff::NotTls) => {
                let shown = &self.buf[..self.buf.len().min(64)];
                record.first_bytes = Some(String::from_utf8_lossy(shown).into_owned());
                Payload::NotTls
            }
            Some(Sniff::Malformed) => Payload::Malformed,
            Some(Sniff::NeedMore) | None if self.buf.is_empty() => Payload::None,
            Some(Sniff::NeedMore) | None => Payload::Partial,
        };
    }
}

//! NetLog events → session events. Chromium logs a request across several sources — the
//! `URL_REQUEST` (URL, headers, the final `net_error`), the stream job controller (the
//! proxy list and the proxies tried), the connect job (its destination), the socket (the
//! proxy's answer to CONNECT, the presented chain, a plaintext answer) and the certificate
//! verifier job (the browser's decision) — linked by `source_dependency`. The assembler
//! keeps what each open source said, small and bounded; when a request ends `emit` turns it
//! into a `RequestEvent` with its failure and findings; when a verifier job ends, the chain
//! becomes a `TlsCheckEvent` judged like `run` judges one. Pure: no I/O.

use std::collections::HashMap;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};

use super::fields::{decode, header_pairs, status_of, target_of_group, timestamp, Target};
use super::names::{Kind, Names, Phase};
use super::neterror::{self, Meaning};
use super::raw::{Constants, Params, RawEvent};
use super::{Context, Source};
use crate::session::event::{ChainSource, Event, TlsCheckEvent};
use crate::tls::chain::{self, Accepted};

/// Open sources of each kind tracked at once (requests, controllers, connect jobs, sockets,
/// verifier jobs); past it a new one is not followed (counted in `untracked`).
pub const MAX_OPEN: usize = 65_536;
/// Destinations whose proxy answers, chains and plaintext answers are remembered.
pub const MAX_TARGETS: usize = 10_000;
/// Bytes of a response body kept for the block-page detectors (Everything mode only).
pub const MAX_BODY: usize = 64 * 1024;
/// Bytes of a proxy's refusal kept (as `run` keeps its first 4 KiB).
pub(super) const MAX_PROXY_BODY: usize = 4096;
/// Proxies tried for one request that are remembered.
const MAX_TRIED: usize = 16;

/// One `URL_REQUEST` while it is open.
#[derive(Debug, Default)]
pub(super) struct Request {
    pub(super) start_ms: f64,
    pub(super) url: String,
    pub(super) method: String,
    pub(super) status: Option<u16>,
    pub(super) response: Vec<(String, String)>,
    pub(super) request: Vec<(String, String)>,
    /// The PAC's (or settings') answer: `PROXY a:3128;DIRECT`.
    pub(super) proxy_list: Option<String>,
    /// The proxy chains tried, in order (`[a:3128]`, `[direct://]`).
    pub(super) tried: Vec<String>,
    /// Why the PAC gave no answer (`net::ERR_PAC_SCRIPT_FAILED (-327): Uncaught Error: …`),
    /// when the browser then went on without it.
    pub(super) pac_failed: Option<String>,
    pub(super) net_error: Option<i64>,
    pub(super) body: Vec<u8>,
    pub(super) bytes_down: u64,
}

/// A stream job controller: the route facts it found, and the request it serves.
#[derive(Debug, Default)]
pub(super) struct Controller {
    request: Option<i64>,
    proxy_list: Option<String>,
    tried: Vec<String>,
    pac_failed: Option<String>,
    /// The PAC script's exception, until the resolution's result says it failed.
    pac_exception: Option<String>,
}

/// What one destination showed below the request: the proxy's answer to CONNECT, a
/// plaintext answer where TLS was expected, whether its chain was already judged.
#[derive(Debug, Default)]
pub(super) struct TargetFacts {
    pub(super) tunnel: Option<(u16, Vec<(String, String)>)>,
    /// The first bytes of the first HTTP answer read on a socket (Everything mode only).
    pub(super) first_http: Option<Vec<u8>>,
    /// How the last TLS handshake with it failed (`SSL_CONNECT`'s `net_error`).
    pub(super) handshake_error: Option<i64>,
    pub(super) judged: bool,
}

impl TargetFacts {
    /// The body of the first HTTP answer (a proxy's refusal page), as text.
    pub(super) fn body(&self) -> Option<String> {
        let bytes = self.first_http.as_deref()?;
        let at = memchr::memmem::find(bytes, b"\r\n\r\n")? + 4;
        Some(String::from_utf8_lossy(&bytes[at..]).into_owned())
    }

    /// The status line of a plaintext answer where TLS was expected (no CONNECT answer).
    pub(super) fn plaintext(&self) -> Option<String> {
        if self.tunnel.is_some() {
            return None;
        }
        let bytes = self.first_http.as_deref()?;
        let line = bytes.split(|b| *b == b'\n').next().unwrap_or(bytes);
        let line = String::from_utf8_lossy(line);
        Some(crate::text::terminal(line.trim_end(), false).into_owned())
    }
}

/// A certificate verifier job: the chain presented for `host`.
#[derive(Debug, Default)]
pub(super) struct CertJob {
    pub(super) host: String,
    pub(super) port: Option<u16>,
    pub(super) certificates: Vec<String>,
}

pub struct Assembler<'a> {
    pub(super) ctx: &'a Context,
    pub(super) sink: &'a mut dyn FnMut(Event),
    pub(super) names: Option<Names>,
    pub(super) capture_mode: Option<String>,
    pub(super) browser: Option<String>,
    pub(super) requests: HashMap<i64, Request>,
    pub(super) controllers: HashMap<i64, Controller>,
    pub(super) jobs: HashMap<i64, Target>,
    pub(super) sockets: HashMap<i64, Target>,
    pub(super) cert_jobs: HashMap<i64, CertJob>,
    pub(super) targets: HashMap<Target, TargetFacts>,
    /// The PAC URL the browser used, if any.
    pub(super) pac: Option<String>,
    /// Whether any route named a proxy (DIRECT failing then says `direct_blocked`).
    pub(super) names_proxies: bool,
    /// Events read.
    pub records: u64,
    pub(super) aborted: u64,
    pub(super) untracked: u64,
}

impl<'a> Assembler<'a> {
    pub fn new(ctx: &'a Context, sink: &'a mut dyn FnMut(Event)) -> Assembler<'a> {
        Assembler {
            ctx,
            sink,
            names: None,
            capture_mode: None,
            browser: None,
            requests: HashMap::new(),
            controllers: HashMap::new(),
            jobs: HashMap::new(),
            sockets: HashMap::new(),
            cert_jobs: HashMap::new(),
            targets: HashMap::new(),
            pac: None,
            names_proxies: false,
            records: 0,
            aborted: 0,
            untracked: 0,
        }
    }

    pub fn has_constants(&self) -> bool {
        self.names.is_some()
    }

    pub fn constants(&mut self, c: Constants) {
        self.names = Some(Names::from(&c));
        self.capture_mode = c.log_capture_mode.clone();
        self.browser = c.client_info.as_ref().map(|i| {
            format!(
                "{} {}",
                i.name.as_deref().unwrap_or("Chromium"),
                i.version.as_deref().unwrap_or("")
            )
            .trim()
            .to_string()
        });
    }

    /// One event; what it says is kept on its source until the source ends.
    pub fn event(&mut self, e: RawEvent) {
        self.records += 1;
        let Some(names) = &self.names else { return };
        let (Some(kind), Some(source)) = (e.kind.and_then(|k| names.kinds.get(&k)), &e.source)
        else {
            return;
        };
        let phase = e
            .phase
            .and_then(|p| names.phases.get(&p))
            .copied()
            .unwrap_or(Phase::None);
        let time_ms = names.time_offset_ms + e.time.unwrap_or(0.0);
        let (kind, id, p) = (*kind, source.id, e.params);
        match kind {
            Kind::RequestAlive | Kind::StartJob => self.on_request(kind, phase, id, time_ms, p),
            Kind::ControllerBound => self.on_bound(id, &p),
            Kind::ResolvedProxyList
            | Kind::ProxyServerResolved
            | Kind::ControllerAlive
            | Kind::PacScriptError => self.on_controller(kind, phase, id, p),
            Kind::ResponseHeaders | Kind::SendRequestHeaders | Kind::BodyBytesRead => {
                self.on_exchange(kind, id, p)
            }
            Kind::ConnectJobCreated | Kind::ConnectJob | Kind::SocketAlive => {
                self.on_connection(kind, phase, id, &p)
            }
            Kind::TunnelResponseHeaders | Kind::SocketBytesReceived | Kind::SslConnect => {
                self.on_socket(kind, phase, id, p)
            }
            Kind::CertVerifierJob | Kind::CertVerifierBound => {
                self.on_cert(kind, phase, id, time_ms, p)
            }
            Kind::ProxyConfigChanged | Kind::PacFetch => self.on_config(kind, p),
        }
    }

    /// Requests still open at the end are emitted as they are; the source is filled in.
    pub fn finish(&mut self, source: &mut Source) {
        // A chain whose verification the file does not hold (cut off mid-handshake) is
        // judged against this machine's roots, as `run` judges one.
        let jobs: Vec<CertJob> = self.cert_jobs.drain().map(|(_, job)| job).collect();
        for job in jobs {
            self.judge(job, None, 0.0);
        }
        let open: Vec<i64> = self.requests.keys().copied().collect();
        for id in open {
            if let Some(request) = self.requests.remove(&id) {
                self.emit_request(request);
            }
        }
        source.records = self.records;
        source.aborted = self.aborted;
        source.capture_mode = self.capture_mode.clone();
        source.browser = self.browser.clone();
        let mode = self.capture_mode.as_deref().unwrap_or("");
        source.insufficient_detail = mode.eq_ignore_ascii_case("HeavilyRedacted");
        if !mode.eq_ignore_ascii_case("Everything") {
            source.cannot_tell.push(format!(
                "block pages in answers: the NetLog was captured in {} mode, without bodies (capture with \"Include raw bytes\" to see them)",
                if mode.is_empty() { "an unknown" } else { mode }
            ));
        }
        if self.untracked > 0 {
            source.cannot_tell.push(format!(
                "{} sources past the limit of {MAX_OPEN} open at once were not followed",
                self.untracked
            ));
        }
    }

    fn on_request(&mut self, kind: Kind, phase: Phase, id: i64, time_ms: f64, p: Params) {
        match (kind, phase) {
            (Kind::RequestAlive, Phase::Begin) => {
                if self.requests.len() >= MAX_OPEN {
                    self.untracked += 1;
                    return;
                }
                self.requests.insert(
                    id,
                    Request {
                        start_ms: time_ms,
                        url: p.url.unwrap_or_default(),
                        method: "GET".into(),
                        ..Request::default()
                    },
                );
            }
            (Kind::StartJob, Phase::Begin) => {
                // A redirect starts a new job on the same request: the hop before it is
                // one exchange of its own.
                let Some(request) = self.requests.get_mut(&id) else {
                    return;
                };
                if request.status.is_some() {
                    let mut next = Request {
                        start_ms: time_ms,
                        ..Request::default()
                    };
                    std::mem::swap(request, &mut next);
                    self.emit_request(next);
                }
                let Some(request) = self.requests.get_mut(&id) else {
                    return;
                };
                if let Some(url) = p.url {
                    request.url = url;
                }
                if let Some(method) = p.method {
                    request.method = method;
                }
            }
            (_, Phase::End) => {
                let Some(request) = self.requests.get_mut(&id) else {
                    return;
                };
                if let Some(code) = p.net_error.filter(|c| *c != 0) {
                    request.net_error = Some(code);
                }
                if kind == Kind::RequestAlive {
                    if let Some(request) = self.requests.remove(&id) {
                        self.emit_request(request);
                    }
                }
            }
            _ => {}
        }
    }

    fn on_bound(&mut self, request: i64, p: &Params) {
        let Some(dep) = p.source_dependency else {
            return;
        };
        if !self.requests.contains_key(&request) {
            return;
        }
        let controller = self.controllers.entry(dep.id).or_default();
        controller.request = Some(request);
        let (list, tried, pac_failed) = (
            controller.proxy_list.take(),
            std::mem::take(&mut controller.tried),
            controller.pac_failed.take(),
        );
        if let Some(r) = self.requests.get_mut(&request) {
            r.proxy_list = list.or(r.proxy_list.take());
            r.tried.extend(tried);
            r.pac_failed = pac_failed.or(r.pac_failed.take());
        }
    }

    fn on_controller(&mut self, kind: Kind, phase: Phase, id: i64, p: Params) {
        if kind == Kind::ControllerAlive {
            if phase == Phase::End {
                self.controllers.remove(&id);
            }
            return;
        }
        if !self.controllers.contains_key(&id) && self.controllers.len() >= MAX_OPEN {
            self.untracked += 1;
            return;
        }
        let controller = self.controllers.entry(id).or_default();
        if kind == Kind::PacScriptError {
            let line = p
                .line_number
                .map_or(String::new(), |n| format!(" (line {n})"));
            let message = p.message.unwrap_or_default();
            let text = crate::text::terminal(&format!("{message}{line}"), false).into_owned();
            controller.pac_exception.get_or_insert(text);
            return;
        }
        let pac_failed = p.net_error.filter(|c| *c < 0).map(|code| {
            let name = self.names.as_ref().and_then(|n| n.errors.get(&code));
            let described = neterror::describe(name.map(String::as_str), code);
            match controller.pac_exception.take() {
                Some(exception) => format!("{described}: {exception}"),
                None => described,
            }
        });
        let request = controller.request.and_then(|r| self.requests.get_mut(&r));
        let (list, tried, failed) = match request {
            Some(r) => (&mut r.proxy_list, &mut r.tried, &mut r.pac_failed),
            None => (
                &mut controller.proxy_list,
                &mut controller.tried,
                &mut controller.pac_failed,
            ),
        };
        if pac_failed.is_some() {
            *failed = pac_failed;
        }
        if let Some(info) = p.proxy_info {
            *list = Some(info);
        }
        if let Some(chain) = p.proxy_chain.or(p.proxy_server) {
            if tried.last() != Some(&chain) && tried.len() < MAX_TRIED {
                tried.push(chain);
            }
        }
    }

    fn on_exchange(&mut self, kind: Kind, id: i64, p: Params) {
        let Some(request) = self.requests.get_mut(&id) else {
            return;
        };
        match kind {
            Kind::ResponseHeaders => {
                let lines = p.headers.unwrap_or_default();
                request.status = lines.first().and_then(|l| status_of(l));
                request.response = header_pairs(lines.iter().skip(1));
            }
            Kind::SendRequestHeaders => {
                request.request = header_pairs(p.headers.unwrap_or_default().iter());
            }
            _ => {
                let bytes = p.bytes.as_deref().map(decode).unwrap_or_default();
                request.bytes_down += bytes.len() as u64;
                let room = MAX_BODY.saturating_sub(request.body.len());
                request.body.extend(bytes.iter().take(room));
            }
        }
    }

    fn on_connection(&mut self, kind: Kind, phase: Phase, id: i64, p: &Params) {
        match kind {
            Kind::ConnectJobCreated => {
                if let Some(target) = p.group_id.as_deref().and_then(target_of_group) {
                    if self.jobs.len() < MAX_OPEN {
                        self.jobs.insert(id, target);
                    } else {
                        self.untracked += 1;
                    }
                }
            }
            Kind::ConnectJob if phase == Phase::End => {
                self.jobs.remove(&id);
            }
            Kind::SocketAlive if phase == Phase::Begin => {
                let job = p.source_dependency.and_then(|d| self.jobs.get(&d.id));
                if let Some(target) = job.cloned() {
                    if self.sockets.len() < MAX_OPEN {
                        self.sockets.insert(id, target);
                    }
                }
            }
            Kind::SocketAlive if phase == Phase::End => {
                self.sockets.remove(&id);
            }
            _ => {}
        }
    }

    fn on_socket(&mut self, kind: Kind, phase: Phase, id: i64, p: Params) {
        let Some(target) = self.sockets.get(&id).cloned() else {
            return;
        };
        if !self.targets.contains_key(&target) && self.targets.len() >= MAX_TARGETS {
            return;
        }
        let facts = self.targets.entry(target).or_default();
        match kind {
            Kind::TunnelResponseHeaders => {
                let lines = p.headers.unwrap_or_default();
                if let Some(status) = lines.first().and_then(|l| status_of(l)) {
                    facts.tunnel = Some((status, header_pairs(lines.iter().skip(1))));
                }
            }
            Kind::SslConnect if phase == Phase::End => {
                facts.handshake_error = p.net_error.filter(|c| *c != 0);
            }
            Kind::SocketBytesReceived if facts.first_http.is_none() => {
                // The first HTTP answer on the socket: a proxy's refusal of the CONNECT
                // (its body is the block page), or plaintext where TLS was expected.
                let mut bytes = p.bytes.as_deref().map(decode).unwrap_or_default();
                if bytes.starts_with(b"HTTP/") {
                    bytes.truncate(MAX_PROXY_BODY);
                    facts.first_http = Some(bytes);
                }
            }
            _ => {}
        }
    }

    fn on_cert(&mut self, kind: Kind, phase: Phase, id: i64, time_ms: f64, p: Params) {
        match (kind, phase) {
            (Kind::CertVerifierBound, _) => {
                // On the socket: the job it waits for verifies the socket's destination.
                let port = self.sockets.get(&id).map(|t| t.1);
                if let (Some(dep), Some(port)) = (p.source_dependency, port) {
                    if let Some(job) = self.cert_jobs.get_mut(&dep.id) {
                        job.port = Some(port);
                    }
                }
            }
            (_, Phase::Begin) => {
                if self.cert_jobs.len() >= MAX_OPEN {
                    self.untracked += 1;
                    return;
                }
                let job = CertJob {
                    host: p.host.unwrap_or_default().to_ascii_lowercase(),
                    port: None,
                    certificates: p.certificates.unwrap_or_default(),
                };
                self.cert_jobs.insert(id, job);
            }
            (_, Phase::End) => {
                if let Some(job) = self.cert_jobs.remove(&id) {
                    let accepted = self.accepted(&p);
                    self.judge(job, Some(accepted), time_ms);
                }
            }
            _ => {}
        }
    }

    fn on_config(&mut self, kind: Kind, p: Params) {
        let url = match kind {
            Kind::ProxyConfigChanged => p.new_config.and_then(|c| c.pac_url),
            _ => None,
        };
        if let Some(url) = url {
            self.pac = Some(url);
        }
    }

    /// A verifier job's end: the chain judged once per destination, as `run` judges one,
    /// with the browser's decision standing in for this machine's trust store.
    fn judge(&mut self, job: CertJob, accepted: Option<Accepted>, time_ms: f64) {
        let target = (job.host.clone(), job.port.unwrap_or(443));
        if job.host.is_empty() || job.certificates.is_empty() {
            return;
        }
        if !self.targets.contains_key(&target) && self.targets.len() >= MAX_TARGETS {
            return;
        }
        let facts = self.targets.entry(target.clone()).or_default();
        if facts.judged {
            return;
        }
        facts.judged = true;
        let chain: Vec<CertificateDer<'static>> = job
            .certificates
            .iter()
            .filter_map(|pem| CertificateDer::from_pem_slice(pem.as_bytes()).ok())
            .collect();
        let now = if time_ms > 0.0 {
            UnixTime::since_unix_epoch(Duration::from_millis(time_ms as u64))
        } else {
            UnixTime::now()
        };
        let ctx = self.ctx;
        let verdict = match accepted {
            Some(accepted) => chain::judge_accepted(
                &chain,
                &job.host,
                &ctx.public_roots,
                accepted,
                &ctx.profile,
                now,
            ),
            None => {
                let roots = crate::tls::roots::TrustRoots {
                    public: ctx.public_roots.clone(),
                    system: ctx.system_roots.clone(),
                };
                chain::judge(&chain, &job.host, &roots, &ctx.profile, now)
            }
        };
        let (tls, error) = match verdict {
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(e)),
        };
        (self.sink)(Event::TlsCheck(Box::new(TlsCheckEvent {
            ts: timestamp(time_ms),
            host: target.0,
            port: target.1,
            via: ChainSource::Browser,
            tls,
            error,
        })));
    }

    /// The browser's decision on a chain, from its verifier job's end.
    fn accepted(&self, end: &Params) -> Accepted {
        let names = self.names.as_ref();
        let name_bit = names.and_then(|n| n.name_invalid);
        let mismatch_status =
            matches!((end.cert_status, name_bit), (Some(s), Some(b)) if s & b != 0);
        match end.net_error.filter(|c| *c != 0) {
            None => Accepted::Yes,
            Some(code) => {
                let name = names.and_then(|n| n.errors.get(&code)).map(String::as_str);
                match neterror::meaning(name, code) {
                    Some(Meaning::Certificate {
                        name_mismatch: true,
                    }) => Accepted::NameMismatch,
                    _ if mismatch_status => Accepted::NameMismatch,
                    _ => Accepted::No,
                }
            }
        }
    }
}

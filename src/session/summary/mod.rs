//! Folds events into the per-host summary (`summary.json`, the live page, the exit table).
//! Pure: no I/O, so every rule here is unit-tested (`tests.rs`); `doc.rs` writes the fold out
//! as the `summary.json` document and its one-sentence verdict.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;

use super::event::{Event, LimitCounts, SessionInfo, TunnelEnd};
use crate::failure::{Failure, FailureKind};
use crate::inspect::explain::{self, finding_for, tls_finding};
use crate::inspect::{reproduce, Finding, FindingKind};
use crate::profile::Profile;
use crate::text::displays_as;
use crate::tls::chain::TlsVerdict;
use crate::upstream::route::TakenHop;

mod doc;

pub use doc::{AllowlistDoc, OtherHostsDoc, SessionDoc, SummaryDoc};

/// The running aggregate of one session.
#[derive(Debug, Clone)]
pub struct Summary {
    session: SessionInfo,
    ended_at: Option<String>,
    /// The distinct host:port pairs folded into the [`OTHER_HOSTS`] row (at most
    /// [`MAX_FOLDED_TRACKED`] remembered; past that only counted).
    folded: Folded,
    /// What the limits did, from the session's last line.
    limits: LimitCounts,
    profile: Arc<Profile>,
    /// What happened at each host:port, in the order first seen; `rows` finds them.
    hosts: Vec<HostStats>,
    /// (host, port) → its place in `hosts`. A BTreeMap keeps the output in name order.
    rows: BTreeMap<(String, u16), usize>,
    /// A scratch key the event's host is lower-cased into for the lookup, so folding an
    /// event into a row that exists allocates nothing (it runs for every request).
    key: (String, u16),
    /// Requests diagproxy refused itself (400, 407, 508).
    refused: u64,
    /// The first profile host a route was seen for, and that route: another profile host
    /// that goes another way is a `split_route`.
    first_route: Option<(String, String)>,
    /// Sign-ins per corporate proxy (at most [`MAX_SIGN_IN_PROXIES`]).
    sign_ins: BTreeMap<String, SignIns>,
}

/// Whether an event's own findings already name its failure as seriously (a block page in
/// a proxy's refusal, a reset right after the ClientHello): one observation, one finding.
fn already_named(named: &[Finding], failure: &Failure) -> bool {
    let as_finding = FindingKind::Failure(failure.kind);
    named.iter().any(|f| {
        !matches!(f.kind, FindingKind::Failure(_)) && f.kind.severity() <= as_finding.severity()
    })
}

/// Proxies whose sign-ins are summarised (a PAC naming more is unusual; later ones are
/// not summarised, their events keep every record).
pub const MAX_SIGN_IN_PROXIES: usize = 64;

/// What signing in to one corporate proxy came to over the session (`summary.json`
/// `proxy_sign_in`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct SignIns {
    pub proxy: String,
    /// Schemes its `407`s offered.
    pub offered: BTreeSet<String>,
    /// The service principal asked for, or the NTLM/Basic account (the last seen).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// Sign-ins that worked, per scheme.
    pub ok: BTreeMap<String, u64>,
    /// Sign-ins that failed, per finding name.
    pub failed: BTreeMap<String, u64>,
    /// The slowest sign-in, in ms.
    pub max_ms: f64,
}

impl SignIns {
    /// `proxy.corp:3128 (offers Negotiate, NTLM): Negotiate as HTTP@proxy.corp ok ×12, proxy_auth_no_ticket ×1`.
    pub fn line(&self) -> String {
        let offered: Vec<&str> = self.offered.iter().map(String::as_str).collect();
        let mut parts: Vec<String> = self
            .ok
            .iter()
            .map(|(scheme, n)| format!("{scheme} ok ×{n}"))
            .collect();
        parts.extend(self.failed.iter().map(|(name, n)| format!("{name} ×{n}")));
        let whom = self
            .principal
            .as_deref()
            .map_or(String::new(), |p| format!(" as {p}"));
        format!(
            "{} (offers {}){whom}: {}",
            self.proxy,
            offered.join(", "),
            parts.join(", ")
        )
    }
}

/// One host:port of `summary.json`.
#[derive(Debug, Clone, Serialize)]
pub struct HostStats {
    pub host: String,
    pub port: u16,
    pub allowlist: Option<String>,
    pub connections: u64,
    /// CONNECT tunnels that opened (intercepted or not), for `run --metrics`; not in
    /// summary.json, whose `connections` also counts plain HTTP's upstream connections.
    #[serde(skip)]
    pub tunnels: u64,
    pub requests: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub failures: BTreeMap<FailureKind, u64>,
    pub findings: Vec<Finding>,
    /// The User-Agents seen, so a browser and an app can be told apart.
    pub user_agents: BTreeSet<String>,
    /// The slowest connect seen, in ms (a hint of a slow or filtering path).
    pub max_connect_ms: Option<f64>,
    /// The verdict on the chain this host presented, once checked.
    pub tls: Option<TlsVerdict>,
    /// Why the chain could not be checked, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_error: Option<String>,
    /// The ways out its connections took (`DIRECT`, `PROXY proxy.corp:8080`; at most
    /// [`MAX_ROUTES`]).
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub routes: BTreeSet<String>,
    /// The last corporate proxy its connections went through and what that proxy's `200`
    /// said of itself: a re-signed chain here is named after it.
    #[serde(skip)]
    pub via_proxy: Option<(String, Vec<(String, String)>)>,
}

/// Routes remembered per host (a PAC that alternates more than this is still seen as
/// split).
pub const MAX_ROUTES: usize = 8;

/// The row that hosts outside the profile share past `--max-hosts`.
pub const OTHER_HOSTS: &str = "other hosts";
/// How many folded host:port pairs are remembered to count them once each.
pub const MAX_FOLDED_TRACKED: usize = 100_000;

/// The host:port pairs folded into [`OTHER_HOSTS`], counted once each.
#[derive(Debug, Clone, Default)]
struct Folded {
    seen: std::collections::HashSet<(String, u16)>,
    /// Folded after `seen` was full (counted, possibly twice).
    beyond: u64,
}

impl Folded {
    fn insert(&mut self, key: (String, u16)) {
        if self.seen.len() < MAX_FOLDED_TRACKED {
            self.seen.insert(key);
        } else if !self.seen.contains(&key) {
            self.beyond += 1;
        }
    }

    fn count(&self) -> u64 {
        self.seen.len() as u64 + self.beyond
    }
}

impl Summary {
    pub fn new(session: SessionInfo, profile: Arc<Profile>) -> Summary {
        Summary {
            session,
            ended_at: None,
            folded: Folded::default(),
            limits: LimitCounts::default(),
            profile,
            hosts: Vec::new(),
            rows: BTreeMap::new(),
            key: (String::new(), 0),
            refused: 0,
            first_route: None,
            sign_ins: BTreeMap::new(),
        }
    }

    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::SessionStarted(info) => self.session = (**info).clone(),
            Event::SessionEnded(end) => {
                self.ended_at = Some(end.ended_at.clone());
                self.limits = end.limits;
            }
            Event::Refused(_) => self.refused += 1,
            Event::ClientRejectedCa(r) => {
                let agent = r.downstream.user_agent.as_deref();
                let finding = explain::client_rejected(&self.profile, &r.host, agent, &r.detail);
                self.host(&r.host, r.port).add_finding(finding);
            }
            Event::TlsCheck(check) => {
                let finding = check
                    .tls
                    .as_ref()
                    .and_then(|v| tls_finding(&self.profile, &check.host, check.port, v));
                let stats = self.host(&check.host, check.port);
                stats.tls = check.tls.clone();
                stats.tls_error = check.error.clone();
                if let Some(finding) = finding {
                    stats.add_finding(finding);
                }
                let profile = self.profile.clone();
                self.host(&check.host, check.port).name_proxy(&profile);
            }
            Event::Tunnel(t) => {
                let stats = self.host(t.host_name(), t.port);
                if t.end != TunnelEnd::Failed {
                    stats.connections += 1;
                    stats.tunnels += 1;
                }
                stats.bytes_up += t.bytes_up;
                stats.bytes_down += t.bytes_down;
                stats.note(t.downstream.user_agent.as_deref(), t.timings.connect_ms);
                for finding in &t.findings {
                    stats.add_finding(finding.clone());
                }
                let failure = t.failure.clone();
                self.note_route(t.host_name(), t.port, &t.route);
                self.note_sign_in(t.route.proxy_auth.as_ref());
                let url = t.url();
                let hop = t.route.hop.as_ref();
                self.record_failure(
                    (t.host_name(), t.port, &url),
                    failure.as_ref(),
                    &t.findings,
                    hop,
                );
            }
            Event::Request(r) => {
                let stats = self.host(&r.host, r.port);
                stats.requests += 1;
                if r.timings.connect_ms.is_some() {
                    stats.connections += 1;
                }
                stats.bytes_up += r.bytes_up;
                stats.bytes_down += r.bytes_down;
                stats.note(r.downstream.user_agent.as_deref(), r.timings.connect_ms);
                for finding in &r.findings {
                    stats.add_finding(finding.clone());
                }
                self.note_route(&r.host, r.port, &r.route);
                self.note_sign_in(r.route.proxy_auth.as_ref());
                let hop = r.route.hop.as_ref();
                self.record_failure(
                    (&r.host, r.port, &r.url),
                    r.failure.as_ref(),
                    &r.findings,
                    hop,
                );
            }
        }
    }

    fn host(&mut self, host: &str, port: u16) -> &mut HostStats {
        self.key.0.clear();
        self.key.0.push_str(host);
        self.key.0.make_ascii_lowercase();
        self.key.1 = port;
        let row = match self.rows.get(&self.key) {
            Some(&row) => row,
            None => self.add_row(),
        };
        &mut self.hosts[row]
    }

    /// A row for the host:port in `key`, or past `--max-hosts` for a host outside the
    /// profile the [`OTHER_HOSTS`] row; its place in `hosts`.
    fn add_row(&mut self) -> usize {
        let (mut host, mut port) = self.key.clone();
        if self.hosts.len() >= self.max_hosts() && self.profile.match_host(&host).is_none() {
            // Past --max-hosts, hosts outside the profile share one row.
            self.folded.insert((host, port));
            (host, port) = (OTHER_HOSTS.to_string(), 0);
            if let Some(&row) = self.rows.get(&(host.clone(), port)) {
                return row;
            }
        }
        let row = self.hosts.len();
        self.rows.insert((host.clone(), port), row);
        self.hosts.push(HostStats {
            allowlist: self.profile.match_host(&host).map(|e| e.pattern.clone()),
            host,
            port,
            connections: 0,
            tunnels: 0,
            requests: 0,
            bytes_up: 0,
            bytes_down: 0,
            failures: BTreeMap::new(),
            findings: Vec::new(),
            user_agents: BTreeSet::new(),
            max_connect_ms: None,
            tls: None,
            tls_error: None,
            routes: BTreeSet::new(),
            via_proxy: None,
        });
        row
    }

    /// `--max-hosts`, as the session recorded it.
    fn max_hosts(&self) -> usize {
        self.session.max_hosts
    }

    /// Counts a failure, and makes it a finding unless the event's own findings already
    /// name the same observation as seriously (a block page in a proxy's refusal, a reset
    /// right after the ClientHello): one observation is one finding.
    fn record_failure(
        &mut self,
        (host, port, url): (&str, u16, &str),
        failure: Option<&Failure>,
        named: &[Finding],
        hop: Option<&TakenHop>,
    ) {
        let Some(failure) = failure else { return };
        if already_named(named, failure) {
            *self
                .host(host, port)
                .failures
                .entry(failure.kind)
                .or_insert(0) += 1;
            return;
        }
        let finding = self.failure_finding((host, port, url), failure, hop);
        let stats = self.host(host, port);
        *stats.failures.entry(failure.kind).or_insert(0) += 1;
        stats.add_finding(finding);
    }

    /// A failure as a finding: the remedy, and the command that reproduces it along the way
    /// the event took.
    fn failure_finding(
        &self,
        (host, port, url): (&str, u16, &str),
        failure: &Failure,
        hop: Option<&TakenHop>,
    ) -> Finding {
        // The event knows its way out; the session whether the proxy takes credentials
        // (masked as `***@`) and the --resolve pins.
        let with_credentials = self.session.upstream_takes_credentials();
        let proxy = hop
            .and_then(TakenHop::url)
            .map(|url| (url, with_credentials));
        let pin = self.session.pin(host, port);
        let path = reproduce::Path {
            proxy: proxy.as_ref().map(|(p, c)| (p.as_str(), *c)),
            pin: pin.map(|ip| (host, port, ip)),
        };
        let reproduce = reproduce::command(url, &path);
        finding_for(&self.profile, host, failure).with_reproduce(Some(reproduce))
    }

    /// Everything one event shows, as the summary judges it: its own findings, its failure
    /// as a finding (unless one of those already names it), a client's refusal, a chain's
    /// verdict. The live page's detail pane shows these.
    pub fn findings_of(&self, event: &Event) -> Vec<Finding> {
        let (mut found, failure, at) = match event {
            Event::Tunnel(t) => {
                let at = (
                    t.host_name().to_string(),
                    t.port,
                    t.url(),
                    t.route.hop.clone(),
                );
                (t.findings.clone(), t.failure.as_ref(), at)
            }
            Event::Request(r) => {
                let at = (r.host.clone(), r.port, r.url.clone(), r.route.hop.clone());
                (r.findings.clone(), r.failure.as_ref(), at)
            }
            Event::ClientRejectedCa(r) => {
                let agent = r.downstream.user_agent.as_deref();
                return vec![explain::client_rejected(
                    &self.profile,
                    &r.host,
                    agent,
                    &r.detail,
                )];
            }
            Event::TlsCheck(c) => {
                let found = c
                    .tls
                    .as_ref()
                    .and_then(|v| tls_finding(&self.profile, &c.host, c.port, v));
                return found.into_iter().collect();
            }
            _ => return Vec::new(),
        };
        if let Some(failure) = failure.filter(|f| !already_named(&found, f)) {
            let (host, port, url, hop) = &at;
            found.push(self.failure_finding((host, *port, url), failure, hop.as_ref()));
        }
        found
    }

    /// The chain verdict recorded for `host:port`, if any.
    pub fn tls_of(&self, host: &str, port: u16) -> Option<&TlsVerdict> {
        let row = self.rows.get(&(host.to_ascii_lowercase(), port))?;
        self.hosts[*row].tls.as_ref()
    }

    /// Remembers the way `host:port`'s connection took; a profile host that goes another
    /// way than the first one seen is a `split_route` (ChatGPT then works only partly).
    fn note_sign_in(&mut self, record: Option<&crate::upstream::auth::AuthRecord>) {
        let Some(record) = record else { return };
        if !self.sign_ins.contains_key(&record.proxy) && self.sign_ins.len() >= MAX_SIGN_IN_PROXIES
        {
            return;
        }
        let stats = self
            .sign_ins
            .entry(record.proxy.clone())
            .or_insert_with(|| SignIns {
                proxy: record.proxy.clone(),
                ..SignIns::default()
            });
        stats.offered.extend(record.offered.iter().cloned());
        if let Some(p) = record.spn.as_ref().or(record.user.as_ref()) {
            stats.principal = Some(p.clone());
        }
        let scheme = record.scheme.clone().unwrap_or_default();
        match record.failure {
            None => *stats.ok.entry(scheme).or_default() += 1,
            Some(f) => *stats.failed.entry(f.as_str().to_string()).or_default() += 1,
        }
        stats.max_ms = stats.max_ms.max(record.ms);
    }

    /// An HTTPS proxy's own chain on the proxy's row (other traffic): re-signed on the way to
    /// the proxy is a `tls_inspection` there, never part of the verdict on ChatGPT.
    fn note_proxy_chain(&mut self, hop: &TakenHop, verdict: &TlsVerdict) {
        let Some(hp) = hop
            .proxy()
            .and_then(|hp| crate::upstream::HostPort::parse(hp, 443))
        else {
            return;
        };
        let finding = tls_finding(&self.profile, &hp.host, hp.port, verdict);
        let stats = self.host(&hp.host, hp.port);
        stats.tls = Some(verdict.clone());
        if let Some(finding) = finding {
            stats.add_finding(finding);
        }
    }

    /// Sign-ins per corporate proxy.
    pub fn sign_ins(&self) -> impl Iterator<Item = &SignIns> {
        self.sign_ins.values()
    }

    fn note_route(&mut self, host: &str, port: u16, taken: &crate::upstream::route::Taken) {
        let Some(hop) = taken.hop.as_ref() else {
            return;
        };
        // Runs for every request: nothing is allocated unless the route is news.
        let profile = self.profile.clone();
        let stats = self.host(host, port);
        let known = stats.routes.iter().any(|r| displays_as(hop, r));
        if !known && stats.routes.len() < MAX_ROUTES {
            stats.routes.insert(hop.to_string());
        }
        if hop.proxy().is_some() {
            let same = stats.via_proxy.as_ref().is_some_and(|(seen, headers)| {
                displays_as(hop, seen) && *headers == taken.proxy_headers
            });
            if !same {
                stats.via_proxy = Some((hop.to_string(), taken.proxy_headers.clone()));
            }
            stats.name_proxy(&profile);
        }
        let ours = stats.allowlist.is_some();
        if let Some(verdict) = &taken.proxy_tls {
            self.note_proxy_chain(hop, verdict);
        }
        if !ours {
            return;
        }
        let Some((first_host, first_hop)) = &self.first_route else {
            let name = self.host(host, port).host.clone();
            self.first_route = Some((name, hop.to_string()));
            return;
        };
        if displays_as(hop, first_hop) {
            return;
        }
        let (first_host, first_hop) = (first_host.clone(), first_hop.clone());
        let name = self.host(host, port).host.clone();
        let evidence = format!("{first_host} goes {first_hop}, {name} goes {hop}");
        let detail = format!("{name} takes another way out than {first_host}");
        let finding = Finding::new(
            &self.profile,
            FindingKind::SplitRoute,
            &name,
            None,
            evidence,
            detail,
        );
        self.host(host, port).add_finding(finding);
    }

    pub fn hosts(&self) -> impl Iterator<Item = &HostStats> {
        self.rows.values().map(|&row| &self.hosts[row])
    }

    /// The profile the summary judges by.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    pub fn session(&self) -> &SessionInfo {
        &self.session
    }
}

impl HostStats {
    /// The most serious finding on this host, for the tables' finding column.
    pub fn worst(&self) -> Option<&Finding> {
        crate::inspect::finding::worst(&self.findings)
    }

    /// Whether ChatGPT fails here: a failure, or a finding that is an error (a block page,
    /// inspection, a reset, a silent drop), not only a warning.
    pub fn is_failing(&self) -> bool {
        self.failures.keys().any(|k| !k.is_client())
            || self.findings.iter().any(|f| f.kind.is_error())
    }

    /// A re-signed chain on a proxy route names the proxy (see
    /// [`explain::resigned_by_proxy`]).
    fn name_proxy(&mut self, profile: &Profile) {
        let Some((hop, headers)) = &self.via_proxy else {
            return;
        };
        for finding in &mut self.findings {
            explain::resigned_by_proxy(finding, hop, headers, profile);
        }
    }

    /// Keeps one finding per kind and vendor: the first one seen, with its evidence.
    fn add_finding(&mut self, finding: Finding) {
        if !self
            .findings
            .iter()
            .any(|f| f.kind == finding.kind && f.vendor == finding.vendor)
        {
            self.findings.push(finding);
        }
    }

    fn note(&mut self, user_agent: Option<&str>, connect_ms: Option<f64>) {
        if let Some(ua) = user_agent {
            if self.user_agents.len() < 16 && !self.user_agents.contains(ua) {
                self.user_agents.insert(ua.to_string());
            }
        }
        if let Some(ms) = connect_ms {
            self.max_connect_ms = Some(self.max_connect_ms.map_or(ms, |m: f64| m.max(ms)));
        }
    }
}

#[cfg(test)]
mod tests;

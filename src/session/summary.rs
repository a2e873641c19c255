//! Folds events into the per-host summary (`summary.json`, the live page, the exit table).
//! Pure: no I/O, so every rule here is unit-tested.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;

use super::event::{Event, LimitCounts, SessionInfo, TunnelEnd};
use crate::failure::{Failure, FailureKind};
use crate::inspect::explain::{self, finding_for, tls_finding};
use crate::inspect::{reproduce, verdict, Finding, FindingKind};
use crate::profile::Profile;
use crate::tls::chain::TlsVerdict;
use crate::upstream::route::TakenHop;

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
    /// (host, port) → what happened there. BTreeMap keeps the output stable.
    hosts: BTreeMap<(String, u16), HostStats>,
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

/// The `summary.json` document (version 1).
#[derive(Debug, Serialize)]
pub struct SummaryDoc<'a> {
    pub version: u32,
    /// The answer in one sentence: the most serious finding, or why there is none.
    pub verdict: String,
    pub session: SessionDoc<'a>,
    pub hosts: Vec<&'a HostStats>,
    pub allowlist: AllowlistDoc,
    /// Traffic outside the profile (a browser's own update and sign-in hosts), counted
    /// apart: never in the verdict, the capability cards or an exit status.
    pub other_hosts: OtherHostsDoc,
    pub refused: u64,
    /// Sign-ins per corporate proxy, when a proxy asked for one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub proxy_sign_in: Vec<&'a SignIns>,
    /// The file the session was imported from (`diagproxy import`); absent for `run`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<&'a crate::session::source::Source>,
    /// What the imported file could not show (its format or capture mode hides it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cannot_tell: Option<&'a [String]>,
    /// An imported capture too redacted to judge: never read as "all clear".
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub insufficient_detail: bool,
}

#[derive(Debug, Serialize)]
pub struct SessionDoc<'a> {
    pub id: &'a str,
    pub started_at: &'a str,
    pub ended_at: Option<&'a str>,
    pub listen: &'a str,
    pub upstream_proxy: Option<&'a str>,
    /// Where routes came from (`PAC http://pac.corp/proxy.pac (--upstream-proxy)`).
    pub route_source: Option<&'a str>,
    /// The PAC file the session followed: url, status, size, sha256.
    pub pac: Option<&'a crate::upstream::pac::PacFile>,
    pub profile: &'a str,
    /// Host:port pairs outside the profile folded into the `other hosts` row (`--max-hosts`).
    pub hosts_folded: u64,
    /// Connections closed or refused by a limit (see `LimitCounts`).
    pub header_timeouts: u64,
    pub connections_refused: u64,
    pub events_dropped: u64,
    pub live_log_dropped: u64,
    /// Whether credentials were recorded (`--include-secrets`): a bundle asks before taking them.
    pub include_secrets: bool,
    /// Where the TLS key log went (`--keylog`): a bundle leaves it out unless asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keylog: Option<&'a str>,
}

/// Hosts outside the profile, in numbers.
#[derive(Debug, Default, Serialize)]
pub struct OtherHostsDoc {
    /// Host:port pairs (those folded past `--max-hosts` included).
    pub hosts: u64,
    /// Of them, those with a failure or an error finding (not ChatGPT's problem).
    pub with_problems: u64,
    pub connections: u64,
    pub requests: u64,
}

/// Profile entries by what the session saw of them.
#[derive(Debug, Default, Serialize)]
pub struct AllowlistDoc {
    pub touched: Vec<String>,
    pub failing: Vec<String>,
    pub untouched: Vec<String>,
}

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
            hosts: BTreeMap::new(),
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
        let mut host = host.to_ascii_lowercase();
        let mut port = port;
        // Only at the limit is it worth asking whether this is a new row.
        if self.hosts.len() >= self.max_hosts()
            && !self.hosts.contains_key(&(host.clone(), port))
            && self.profile.match_host(&host).is_none()
        {
            // Past --max-hosts, hosts outside the profile share one row.
            self.folded.insert((host, port));
            (host, port) = (OTHER_HOSTS.to_string(), 0);
        }
        let profile = &self.profile;
        self.hosts
            .entry((host.clone(), port))
            .or_insert_with(|| HostStats {
                allowlist: profile.match_host(&host).map(|e| e.pattern.clone()),
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
            })
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
        self.hosts
            .get(&(host.to_ascii_lowercase(), port))
            .and_then(|h| h.tls.as_ref())
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
        let profile = self.profile.clone();
        let stats = self.host(host, port);
        if stats.routes.len() < MAX_ROUTES {
            stats.routes.insert(hop.to_string());
        }
        if hop.proxy().is_some() {
            stats.via_proxy = Some((hop.to_string(), taken.proxy_headers.clone()));
            stats.name_proxy(&profile);
        }
        let ours = stats.allowlist.is_some();
        let name = stats.host.clone();
        if let Some(verdict) = &taken.proxy_tls {
            self.note_proxy_chain(hop, verdict);
        }
        if !ours {
            return;
        }
        let Some((first_host, first_hop)) = self.first_route.clone() else {
            self.first_route = Some((name, hop.to_string()));
            return;
        };
        if first_hop == hop.to_string() {
            return;
        }
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
        self.hosts.values()
    }

    /// The profile the summary judges by.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    pub fn session(&self) -> &SessionInfo {
        &self.session
    }

    pub fn doc(&self) -> SummaryDoc<'_> {
        let mut allowlist = AllowlistDoc::default();
        for entry in &self.profile.entries {
            let mut matching = self
                .hosts
                .values()
                .filter(|h| h.allowlist.as_deref() == Some(&entry.pattern));
            let mut touched = false;
            let mut failing = false;
            for h in matching.by_ref() {
                touched = true;
                failing |= h.is_failing();
            }
            let list = if !touched {
                &mut allowlist.untouched
            } else {
                &mut allowlist.touched
            };
            list.push(entry.pattern.clone());
            if failing {
                allowlist.failing.push(entry.pattern.clone());
            }
        }
        SummaryDoc {
            version: 1,
            verdict: self.verdict(),
            session: SessionDoc {
                id: &self.session.id,
                started_at: &self.session.started_at,
                ended_at: self.ended_at.as_deref(),
                hosts_folded: self.folded.count(),
                header_timeouts: self.limits.header_timeouts,
                connections_refused: self.limits.connections_refused,
                events_dropped: self.limits.events_dropped,
                live_log_dropped: self.limits.live_log_dropped,
                listen: &self.session.listen,
                upstream_proxy: self.session.upstream_proxy.as_deref(),
                route_source: self.session.route_source.as_deref(),
                pac: self.session.pac.as_ref(),
                profile: &self.session.profile,
                include_secrets: self.session.include_secrets,
                keylog: self.session.keylog.as_deref(),
            },
            hosts: self.hosts.values().collect(),
            allowlist,
            other_hosts: self.other_hosts(),
            refused: self.refused,
            proxy_sign_in: self.sign_ins.values().collect(),
            source: self.session.source.as_deref(),
            cannot_tell: self.session.source.as_deref().map(|s| &s.cannot_tell[..]),
            insufficient_detail: self
                .session
                .source
                .as_ref()
                .is_some_and(|s| s.insufficient_detail),
        }
    }

    /// The hosts outside the profile, counted apart.
    fn other_hosts(&self) -> OtherHostsDoc {
        let mut doc = OtherHostsDoc::default();
        for h in self.hosts.values().filter(|h| h.allowlist.is_none()) {
            doc.hosts += u64::from(h.host != OTHER_HOSTS);
            doc.with_problems += u64::from(h.is_failing());
            doc.connections += h.connections;
            doc.requests += h.requests;
        }
        doc.hosts += self.folded.count();
        doc
    }

    /// One sentence that answers "is the network the cause?" (see [`verdict::sentence`]).
    pub fn verdict(&self) -> String {
        if let Some(source) = self
            .session
            .source
            .as_deref()
            .filter(|s| s.insufficient_detail)
        {
            return source.insufficient_sentence();
        }
        verdict::sentence(self.hosts.values().map(|h| verdict::HostView {
            host: &h.host,
            allowlisted: h.allowlist.is_some(),
            findings: &h.findings,
        }))
    }

    pub fn to_json(&self) -> String {
        // Serialising plain structs of strings and numbers cannot fail.
        serde_json::to_string_pretty(&self.doc())
            .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
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
mod tests {
    use super::*;
    use crate::failure::Side;
    use crate::session::event::{Downstream, RequestEvent, Timings, TunnelEvent};
    use crate::session::event::{Payload, TunnelMode};

    fn info() -> SessionInfo {
        SessionInfo {
            id: "s1".into(),
            started_at: "2026-11-27T00:00:00.000Z".into(),
            listen: "127.0.0.1:8080".into(),
            upstream_proxy: None,
            upstream_credentials: false,
            route_source: None,
            pac: None,
            profile: "built-in:chatgpt".into(),
            diagproxy: "0".into(),
            os: String::new(),
            max_hosts: 100,
            resolve: vec![
                "chatgpt.com:8443:127.0.0.1".into(),
                "x.test:443:[::1]".into(),
            ],
            include_secrets: false,
            keylog: None,
            source: None,
        }
    }

    #[test]
    fn pins_are_read_back_for_reproduce_commands() {
        let info = info();
        assert_eq!(
            info.pin("ChatGPT.com", 8443),
            Some("127.0.0.1".parse().unwrap())
        );
        assert_eq!(info.pin("x.test", 443), Some("::1".parse().unwrap()));
        assert_eq!(info.pin("chatgpt.com", 443), None);
        let mut s = Summary::new(info, Arc::new(Profile::builtin()));
        let f = Failure::new(FailureKind::ConnectRefused, Side::Upstream, "refused");
        match tunnel("chatgpt.com", Some(f)) {
            Event::Tunnel(mut t) => {
                t.port = 8443;
                s.apply(&Event::Tunnel(t));
            }
            _ => unreachable!(),
        }
        let doc = s.doc();
        assert_eq!(
            doc.hosts[0].findings[0].reproduce.as_deref(),
            Some("curl -sv -o /dev/null --resolve chatgpt.com:8443:127.0.0.1 'https://chatgpt.com:8443/'")
        );
    }

    #[test]
    fn hosts_past_the_limit_share_one_row_and_profile_hosts_never_do() {
        let mut s = Summary::new(info(), Arc::new(Profile::builtin()));
        let failed = || Some(Failure::new(FailureKind::DnsFailed, Side::Upstream, "x"));
        for i in 0..3000 {
            s.apply(&tunnel(&format!("h{i}.invalid"), failed()));
        }
        s.apply(&tunnel("h2999.invalid", failed())); // folded again: counted once
        s.apply(&tunnel("chatgpt.com", None));
        let doc = s.doc();
        assert_eq!(doc.session.hosts_folded, 2900);
        assert_eq!(doc.hosts.len(), 102, "100 rows, `other hosts`, chatgpt.com");
        let other = doc.hosts.iter().find(|h| h.host == OTHER_HOSTS).unwrap();
        assert_eq!(other.failures.get(&FailureKind::DnsFailed), Some(&2901));
        assert!(doc.hosts.iter().any(|h| h.host == "chatgpt.com"));
        assert!(s.to_json().len() < 200_000, "{}", s.to_json().len());
    }

    #[test]
    fn folded_pairs_past_the_tracked_ones_are_counted_and_seen_ones_are_not() {
        let mut folded = Folded::default();
        for i in 0..MAX_FOLDED_TRACKED {
            folded.insert((format!("h{i}"), 443));
        }
        assert_eq!(folded.count(), MAX_FOLDED_TRACKED as u64);
        folded.insert(("h7".into(), 443)); // already seen: not again
        assert_eq!(folded.count(), MAX_FOLDED_TRACKED as u64);
        folded.insert(("new".into(), 443));
        folded.insert(("new2".into(), 443));
        assert_eq!(folded.count(), MAX_FOLDED_TRACKED as u64 + 2);
        assert_eq!(folded.beyond, 2);
    }

    #[test]
    fn user_agents_are_kept_once_each_up_to_sixteen_and_the_slowest_connect() {
        let mut s = Summary::new(info(), Arc::new(Profile::builtin()));
        for i in 0..20 {
            let Event::Tunnel(mut t) = tunnel("chatgpt.com", None) else {
                unreachable!()
            };
            t.downstream.user_agent = Some(format!("agent/{}", i % 18));
            t.timings.connect_ms = Some(f64::from(i));
            s.apply(&Event::Tunnel(t));
        }
        let doc = s.doc();
        let host = &doc.hosts[0];
        assert_eq!(host.user_agents.len(), 16);
        assert!(host.user_agents.contains("agent/0") && !host.user_agents.contains("agent/16"));
        assert_eq!(host.max_connect_ms, Some(19.0));
    }

    fn with_route(event: Event, hop: &str) -> Event {
        match event {
            Event::Tunnel(mut t) => {
                t.route.hop = Some(hop.into());
                Event::Tunnel(t)
            }
            other => other,
        }
    }

    #[test]
    fn sign_ins_are_counted_per_proxy_by_scheme_and_failure() {
        use crate::upstream::auth::{AuthFailure, AuthRecord, Outcome};
        let mut s = Summary::new(info(), Arc::new(Profile::builtin()));
        let signed = |failure: Option<AuthFailure>, ms: f64| {
            let mut event = tunnel("chatgpt.com", None);
            if let Event::Tunnel(t) = &mut event {
                t.route.proxy_auth = Some(AuthRecord {
                    proxy: "proxy.corp:3128".into(),
                    offered: vec!["Negotiate".into(), "NTLM".into()],
                    scheme: Some("Negotiate".into()),
                    spn: Some("HTTP@proxy.corp".into()),
                    outcome: if failure.is_some() {
                        Outcome::Failed
                    } else {
                        Outcome::Ok
                    },
                    failure,
                    ms,
                    ..AuthRecord::default()
                });
            }
            event
        };
        s.apply(&signed(None, 2.0));
        s.apply(&signed(None, 5.0));
        s.apply(&signed(Some(AuthFailure::NoTicket), 1.0));
        s.apply(&tunnel("chatgpt.com", None));
        let doc = s.doc();
        assert_eq!(doc.proxy_sign_in.len(), 1);
        let p = doc.proxy_sign_in[0];
        assert_eq!(
            (
                p.ok["Negotiate"],
                p.failed["proxy_auth_no_ticket"],
                p.max_ms
            ),
            (2, 1, 5.0)
        );
        assert_eq!(
            p.line(),
            "proxy.corp:3128 (offers NTLM, Negotiate) as HTTP@proxy.corp: Negotiate ok ×2, proxy_auth_no_ticket ×1"
        );
        let json = serde_json::to_value(&doc).unwrap();
        assert_eq!(json["proxy_sign_in"][0]["ok"]["Negotiate"], 2);
    }

    #[test]
    fn routes_are_kept_per_host_and_a_profile_host_going_another_way_is_split() {
        let mut s = Summary::new(info(), Arc::new(Profile::builtin()));
        s.apply(&with_route(tunnel("chatgpt.com", None), "PROXY p:1"));
        s.apply(&with_route(tunnel("chatgpt.com", None), "PROXY p:1"));
        s.apply(&with_route(tunnel("ab.chatgpt.com", None), "PROXY p:1"));
        s.apply(&with_route(tunnel("example.invalid", None), "DIRECT"));
        let doc = s.doc();
        let host = |name: &str| doc.hosts.iter().find(|h| h.host == name).unwrap();
        assert_eq!(host("chatgpt.com").routes.len(), 1);
        assert_eq!(host("chatgpt.com").connections, 2);
        assert!(
            doc.hosts.iter().all(|h| h.findings.is_empty()),
            "same way out, or not a profile host: no split"
        );
        s.apply(&with_route(tunnel("cdn.oaistatic.com", None), "DIRECT"));
        let doc = s.doc();
        let cdn = doc
            .hosts
            .iter()
            .find(|h| h.host == "cdn.oaistatic.com")
            .unwrap();
        assert_eq!(cdn.findings[0].kind, FindingKind::SplitRoute);
        assert_eq!(
            cdn.findings[0].evidence,
            "chatgpt.com goes PROXY p:1, cdn.oaistatic.com goes DIRECT"
        );
        for i in 0..20 {
            s.apply(&with_route(
                tunnel("chatgpt.com", None),
                &format!("PROXY p:{i}"),
            ));
        }
        let doc = s.doc();
        let chatgpt = doc.hosts.iter().find(|h| h.host == "chatgpt.com").unwrap();
        assert_eq!(
            chatgpt.routes.len(),
            MAX_ROUTES,
            "at most {MAX_ROUTES} routes per host"
        );
    }

    #[test]
    fn a_failure_its_event_explains_is_counted_once_and_not_listed() {
        let mut s = Summary::new(info(), Arc::new(Profile::builtin()));
        let reset = || Some(Failure::new(FailureKind::Reset, Side::Upstream, "reset"));
        let named = |kind| {
            crate::inspect::Finding::new(
                &Profile::builtin(),
                kind,
                "chatgpt.com",
                None,
                "e".into(),
                "d".into(),
            )
        };
        for _ in 0..2 {
            let Event::Tunnel(mut t) = tunnel("chatgpt.com", reset()) else {
                unreachable!()
            };
            t.findings = vec![named(FindingKind::ResetAfterClientHello)];
            s.apply(&Event::Tunnel(t));
        }
        // A weaker finding does not explain the failure: the failure is listed too.
        let Event::Tunnel(mut t) = tunnel("cdn.oaistatic.com", reset()) else {
            unreachable!()
        };
        t.findings = vec![named(FindingKind::ProxyHeader)];
        s.apply(&Event::Tunnel(t));
        let doc = s.doc();
        let chatgpt = doc.hosts.iter().find(|h| h.host == "chatgpt.com").unwrap();
        assert_eq!(chatgpt.failures.get(&FailureKind::Reset), Some(&2));
        let kinds: Vec<FindingKind> = chatgpt.findings.iter().map(|f| f.kind).collect();
        assert_eq!(kinds, [FindingKind::ResetAfterClientHello]);
        let cdn = doc
            .hosts
            .iter()
            .find(|h| h.host == "cdn.oaistatic.com")
            .unwrap();
        let kinds: Vec<FindingKind> = cdn.findings.iter().map(|f| f.kind).collect();
        assert_eq!(
            kinds,
            [
                FindingKind::ProxyHeader,
                FindingKind::Failure(FailureKind::Reset)
            ]
        );
        assert_eq!(cdn.failures.get(&FailureKind::Reset), Some(&1));
    }

    fn tunnel(host: &str, failure: Option<Failure>) -> Event {
        Event::Tunnel(Box::new(TunnelEvent {
            mode: TunnelMode::Tunnel,
            ts: "t".into(),
            host: host.into(),
            port: 443,
            sni: None,
            alpn: vec![],
            payload: Payload::Tls,
            first_bytes: None,
            allowlist: None,
            server_ip: None,
            route: Default::default(),
            downstream: Downstream {
                addr: "127.0.0.1:1".into(),
                user_agent: Some("curl/8".into()),
            },
            timings: Timings {
                connect_ms: Some(2.0),
                ..Timings::default()
            },
            bytes_up: 10,
            bytes_down: 20,
            end: if failure.is_some() {
                TunnelEnd::Failed
            } else {
                TunnelEnd::DownstreamClosed
            },
            failure,
            findings: Vec::new(),
        }))
    }

    #[test]
    fn the_live_pages_detail_gets_a_failure_as_a_finding_with_its_remedy_and_command() {
        let s = Summary::new(info(), Arc::new(Profile::builtin()));
        let failure = Failure::new(FailureKind::Reset, Side::Upstream, "reset");
        let found = s.findings_of(&tunnel("chatgpt.com", Some(failure.clone())));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].kind, FindingKind::Failure(FailureKind::Reset));
        assert!(!found[0].remedy.is_empty());
        assert!(found[0]
            .reproduce
            .as_deref()
            .is_some_and(|r| r.starts_with("curl") && r.contains("chatgpt.com")));
        // The same as the summary's own fold makes of it.
        let mut folded = Summary::new(info(), Arc::new(Profile::builtin()));
        folded.apply(&tunnel("chatgpt.com", Some(failure)));
        assert_eq!(
            folded.hosts().next().map(|h| h.findings.clone()),
            Some(found)
        );
        assert!(s.findings_of(&tunnel("chatgpt.com", None)).is_empty());
    }

    #[test]
    fn hosts_are_counted_and_matched() {
        let mut s = Summary::new(info(), Arc::new(Profile::builtin()));
        s.apply(&tunnel("chatgpt.com", None));
        s.apply(&tunnel("ChatGPT.com", None));
        s.apply(&tunnel("example.org", None));
        let doc = s.doc();
        assert_eq!(doc.hosts.len(), 2);
        let chatgpt = doc.hosts.iter().find(|h| h.host == "chatgpt.com").unwrap();
        assert_eq!(
            (chatgpt.connections, chatgpt.bytes_up, chatgpt.bytes_down),
            (2, 20, 40)
        );
        assert_eq!(chatgpt.allowlist.as_deref(), Some("*.chatgpt.com"));
        let other = doc.hosts.iter().find(|h| h.host == "example.org").unwrap();
        assert_eq!(other.allowlist, None);
        assert_eq!(doc.allowlist.touched, vec!["*.chatgpt.com".to_string()]);
        assert!(doc.allowlist.failing.is_empty());
        assert_eq!(
            doc.allowlist.untouched.len(),
            Profile::builtin().entries.len() - 1
        );
    }

    #[test]
    fn findings_that_are_errors_make_a_host_failing_and_lead_the_exit_table() {
        let profile = Arc::new(Profile::builtin());
        let mut s = Summary::new(info(), profile.clone());
        let finding = |kind, host: &str, vendor: &str| {
            Finding::new(
                &profile,
                kind,
                host,
                Some(vendor.into()),
                "e".into(),
                "d".into(),
            )
        };
        let with = |host: &str, found: Vec<Finding>| match tunnel(host, None) {
            Event::Tunnel(mut t) => {
                t.findings = found;
                Event::Tunnel(t)
            }
            other => other,
        };
        s.apply(&with(
            "chatgpt.com",
            vec![
                finding(FindingKind::ProxyHeader, "chatgpt.com", "Zscaler"),
                finding(FindingKind::TlsInspection, "chatgpt.com", "Zscaler"),
            ],
        ));
        s.apply(&with(
            "cdn.oaistatic.com",
            vec![finding(
                FindingKind::ProxyHeader,
                "cdn.oaistatic.com",
                "Zscaler",
            )],
        ));
        let doc = s.doc();
        // No transport failure anywhere, yet inspection is an error and a header is not.
        assert_eq!(doc.allowlist.failing, vec!["*.chatgpt.com".to_string()]);
        let table = crate::session::livelog::exit_table(&s, false);
        let row = |host: &str| {
            table
                .lines()
                .find(|l| l.starts_with(host))
                .unwrap_or_else(|| panic!("{table}"))
                .to_string()
        };
        assert!(
            row("chatgpt.com:443").contains("tls_inspection (Zscaler)"),
            "{table}"
        );
        assert!(
            row("cdn.oaistatic.com:443").contains("proxy_header (Zscaler)"),
            "{table}"
        );
        assert!(
            table.lines().nth(4).unwrap_or("").contains("finding"),
            "{table}"
        );
        let colored = crate::session::livelog::exit_table(&s, true);
        assert!(colored.contains("\x1b[1;31mchatgpt.com:443"), "{colored}");
        assert!(
            colored.contains("\x1b[33mcdn.oaistatic.com:443"),
            "{colored}"
        );
    }

    #[test]
    fn failures_count_and_become_one_finding_per_kind() {
        let mut s = Summary::new(info(), Arc::new(Profile::builtin()));
        let f = Failure::new(FailureKind::DnsFailed, Side::Upstream, "no such host");
        s.apply(&tunnel("files.oaiusercontent.com", Some(f.clone())));
        s.apply(&tunnel("files.oaiusercontent.com", Some(f)));
        let doc = s.doc();
        let h = doc.hosts[0];
        assert_eq!(h.connections, 0, "failed tunnels are not connections");
        assert_eq!(h.failures.get(&FailureKind::DnsFailed), Some(&2));
        assert_eq!(h.findings.len(), 1);
        assert_eq!(h.findings[0].kind, "dns_failed");
        assert!(
            h.findings[0]
                .remedy
                .contains("nslookup files.oaiusercontent.com"),
            "{}",
            h.findings[0].remedy
        );
        assert!(
            h.findings[0].remedy.contains("Uploads fail"),
            "{}",
            h.findings[0].remedy
        );
        assert_eq!(
            doc.allowlist.failing,
            vec!["files.oaiusercontent.com".to_string()]
        );
        assert_eq!(
            h.findings[0].reproduce.as_deref(),
            Some("curl -sv -o /dev/null 'https://files.oaiusercontent.com:443/'")
        );
        assert!(
            doc.verdict.starts_with(
                "The network fails (dns_failed) for files.oaiusercontent.com: Uploads fail"
            ),
            "{}",
            doc.verdict
        );
        let json: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(json["hosts"][0]["failures"]["dns_failed"], 2);
        assert_eq!(json["version"], 1);
        assert!(json["session"]["ended_at"].is_null());
    }

    #[test]
    fn requests_count_new_connections_only() {
        let mut s = Summary::new(info(), Arc::new(Profile::builtin()));
        let req = |connect_ms: Option<f64>| {
            Event::Request(Box::new(RequestEvent {
                ts: "t".into(),
                method: "GET".into(),
                url: "http://chat.openai.com/".into(),
                host: "chat.openai.com".into(),
                port: 80,
                allowlist: None,
                server_ip: None,
                route: Default::default(),
                downstream: Downstream::default(),
                status: Some(200),
                content_type: None,
                reused: connect_ms.is_none(),
                timings: Timings {
                    connect_ms,
                    ..Timings::default()
                },
                bytes_up: 3,
                bytes_down: 5,
                complete: true,
                intercepted: false,
                upstream_protocol: None,
                headers: None,
                failure: None,
                block_page_body: None,
                body: None,
                unfinished: None,
                findings: Vec::new(),
            }))
        };
        s.apply(&req(Some(1.0)));
        s.apply(&req(None));
        let h = s.doc().hosts[0].clone();
        assert_eq!(
            (h.requests, h.connections, h.bytes_up, h.bytes_down),
            (2, 1, 6, 10)
        );
        assert_eq!(h.allowlist.as_deref(), Some("chat.openai.com"));
        for _ in 0..2 {
            s.apply(&Event::Refused(Box::new(
                crate::session::event::RefusedEvent {
                    ts: "t".into(),
                    downstream: Downstream::default(),
                    method: "GET".into(),
                    target: "/".into(),
                    status: 400,
                    reason: "r".into(),
                },
            )));
        }
        assert_eq!(s.doc().refused, 2);
    }
}

//! The `summary.json` document: the fold written out (version 1), the allowlist's coverage,
//! the hosts outside the profile counted apart, and the one-sentence verdict.

use serde::Serialize;

use super::{HostStats, SignIns, Summary, OTHER_HOSTS};
use crate::inspect::verdict;

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

impl Summary {
    pub fn doc(&self) -> SummaryDoc<'_> {
        let mut allowlist = AllowlistDoc::default();
        for entry in &self.profile.entries {
            let mut matching = self
                .hosts()
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
            hosts: self.hosts().collect(),
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
        for h in self.hosts().filter(|h| h.allowlist.is_none()) {
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
        verdict::sentence(self.hosts().map(|h| verdict::HostView {
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

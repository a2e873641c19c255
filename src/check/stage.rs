//! What `diagproxy check` found, as data: each stage of each host with its state and time,
//! the voice probes, and the verdict and exit code they lead to. No I/O.

use serde::Serialize;

use crate::inspect::finding::Finding;
use crate::inspect::verdict;
use crate::tls::chain::TlsVerdict;

/// A stage's outcome. A stage that did not run is never shown as passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Pass,
    /// Works, with something worth a look (inspection, a proxy header, a challenge).
    Warn,
    Fail,
    /// Not run because an earlier stage failed.
    Skipped,
    /// Not run at all (not applicable, or not testable here).
    NotRun,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pass => "pass",
            State::Warn => "warn",
            State::Fail => "fail",
            State::Skipped => "skipped",
            State::NotRun => "not_run",
        }
    }
}

/// One stage of one host.
#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    pub state: State,
    /// How long it took, measured (none when it did not run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ms: Option<f64>,
    /// What happened, in words (the answer, the error).
    pub detail: String,
}

impl Stage {
    pub fn new(state: State, ms: Option<f64>, detail: impl Into<String>) -> Stage {
        Stage {
            state,
            ms,
            detail: detail.into(),
        }
    }

    pub fn skipped(why: &str) -> Stage {
        Stage::new(State::Skipped, None, why)
    }
}

/// Every stage of one host.
#[derive(Debug, Clone, Serialize)]
pub struct HostCheck {
    pub host: String,
    pub port: u16,
    /// The profile entry that covers the host.
    pub allowlist: Option<String>,
    /// The way out taken (`DIRECT`, `PROXY host:port`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<crate::upstream::route::TakenHop>,
    /// Signing in to the route's proxy, when it asked (`407`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_auth: Option<crate::upstream::auth::AuthRecord>,
    pub dns: Stage,
    pub tcp: Stage,
    pub tls: Stage,
    pub http: Stage,
    /// A WebSocket upgrade on the same connection (hosts that stream answers).
    pub websocket: Stage,
    /// Cloudflare's view of the connection (`/cdn-cgi/trace`): egress address, WARP or
    /// Gateway, the TLS version its edge saw.
    pub egress: Stage,
    /// Whether an event stream arrives as it is sent (a test endpoint's).
    pub stream: Stage,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_verdict: Option<TlsVerdict>,
    /// The TLS version negotiated (`TLSv1_3`), when the handshake completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_version: Option<String>,
    /// The address connected to (the proxy's, through one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_ip: Option<String>,
    /// The GET's status and type, when it was answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    pub findings: Vec<Finding>,
    /// The failure that ended the host's stages, for the session's events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<crate::failure::Failure>,
}

impl HostCheck {
    /// A host before its stages ran: each stage as `stage(name)` gives it.
    pub fn blank(
        host: &str,
        port: u16,
        allowlist: Option<String>,
        stage: impl Fn(&str) -> Stage,
    ) -> HostCheck {
        HostCheck {
            host: host.to_string(),
            port,
            allowlist,
            route: None,
            proxy_auth: None,
            dns: stage("dns"),
            tcp: stage("tcp"),
            tls: stage("tls"),
            http: stage("http"),
            websocket: stage("websocket"),
            egress: stage("egress"),
            stream: stage("stream"),
            tls_verdict: None,
            tls_version: None,
            server_ip: None,
            status: None,
            content_type: None,
            findings: Vec::new(),
            failure: None,
        }
    }

    pub fn stages(&self) -> [(&'static str, &Stage); 7] {
        [
            ("dns", &self.dns),
            ("tcp", &self.tcp),
            ("tls", &self.tls),
            ("http", &self.http),
            ("websocket", &self.websocket),
            ("egress", &self.egress),
            ("stream", &self.stream),
        ]
    }

    pub fn fails(&self) -> bool {
        self.stages().iter().any(|(_, s)| s.state == State::Fail)
    }

    pub fn warns(&self) -> bool {
        self.stages().iter().any(|(_, s)| s.state == State::Warn)
    }
}

/// LiveKit's ports for voice: STUN/TURN over UDP, TURN/TLS on TCP 443, ICE over TCP 7881,
/// and the UDP media range that cannot be tested without a session.
#[derive(Debug, Clone, Serialize)]
pub struct Voice {
    /// `host:port` the STUN requests went to.
    pub stun_target: String,
    pub stun: Stage,
    /// Round-trip times of the answered requests, ms.
    pub rtt_ms: Vec<f64>,
    /// Share of requests unanswered, 0 to 1.
    pub loss: f64,
    /// The public address the TURN server saw (XOR-MAPPED-ADDRESS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mapped: Option<String>,
    pub tcp_443: Stage,
    pub tcp_7881: Stage,
    pub media_udp: Stage,
    /// What the results mean for voice, in one sentence.
    pub meaning: String,
}

impl Voice {
    /// LiveKit's rule: UDP works → full quality; only TCP 443 → voice falls back to
    /// TURN/TLS (slower); neither → no voice.
    pub fn meaning(stun: State, tcp_443: State) -> String {
        match (stun, tcp_443) {
            (State::Pass | State::Warn, _) => {
                "UDP to the TURN server works: voice can use its normal path".into()
            }
            (_, State::Pass | State::Warn) => {
                "UDP is blocked but TCP 443 works: voice falls back to TURN over TLS (slower, more latency)".into()
            }
            _ => "neither UDP 3478 nor TCP 443 to the TURN server works: voice will not connect".into(),
        }
    }

    pub fn fails(&self) -> bool {
        self.stun.state == State::Fail && self.tcp_443.state == State::Fail
    }
}

/// The whole check, as `check.json` holds it (version 1).
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub version: u32,
    pub started_at: String,
    /// Where routes came from.
    pub route_source: String,
    /// Wall time of the whole check, ms.
    pub total_ms: f64,
    pub hosts: Vec<HostCheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voice: Option<Voice>,
    pub verdict: String,
    /// Hosts with a failed stage (plus 1 when voice cannot connect at all).
    pub failing: usize,
}

/// Exit code when something fails (documented for device-management scripts).
pub const EXIT_FAILING: u8 = 2;

impl CheckReport {
    /// Fills in the verdict and the failing count from the hosts and voice.
    pub fn conclude(&mut self) {
        self.failing = self.hosts.iter().filter(|h| h.fails()).count()
            + usize::from(self.voice.as_ref().is_some_and(Voice::fails));
        let sentence = verdict::sentence(self.hosts.iter().map(|h| verdict::HostView {
            host: &h.host,
            allowlisted: h.allowlist.is_some(),
            findings: &h.findings,
        }));
        // One consistent line: a check that exits 2 never says "No problem seen".
        let calm = sentence.starts_with("No problem") || sentence.starts_with("Nothing that stops");
        self.verdict = match (self.failing, calm) {
            (0, _) | (_, false) => sentence,
            (_, true) => self.failed_stages(),
        };
    }

    /// `2 check(s) failed (exit 2): chatgpt.com stream (…); voice cannot connect.`
    fn failed_stages(&self) -> String {
        let mut failed: Vec<String> = self
            .hosts
            .iter()
            .filter_map(|h| {
                let (stage, s) = h
                    .stages()
                    .into_iter()
                    .find(|(_, s)| s.state == State::Fail)?;
                Some(format!("{} {stage} ({})", h.host, s.detail))
            })
            .collect();
        if self.voice.as_ref().is_some_and(Voice::fails) {
            failed.push("voice cannot connect (STUN and TCP 443)".into());
        }
        format!(
            "{} check(s) failed (exit {EXIT_FAILING}): {}.",
            failed.len(),
            failed.join("; ")
        )
    }

    pub fn exit_code(&self) -> u8 {
        if self.failing > 0 {
            EXIT_FAILING
        } else {
            0
        }
    }

    /// The table for people: one row per host, then voice, then the verdict.
    pub fn table(&self) -> String {
        let width = self
            .hosts
            .iter()
            .map(|h| h.host.len() + 6)
            .max()
            .unwrap_or(4)
            .max(4);
        let mut out = format!(
            "{:width$}  {:<22} {:<8} {:<8} {:<10} {:<10} {}\n",
            "HOST", "ROUTE", "DNS", "TCP", "TLS", "HTTP", "FINDINGS"
        );
        for h in &self.hosts {
            let name = if h.port == 443 {
                h.host.clone()
            } else {
                format!("{}:{}", h.host, h.port)
            };
            let verdict = h
                .tls_verdict
                .as_ref()
                .map_or(h.tls.state.as_str().to_string(), |v| {
                    format!("{} {}", h.tls.state.as_str(), v.verdict.as_str())
                });
            let findings: Vec<String> = h.findings.iter().map(Finding::label).collect();
            out.push_str(&format!(
                "{name:width$}  {:<22} {:<8} {:<8} {:<10} {:<10} {}\n",
                h.route
                    .as_ref()
                    .map_or("-".to_string(), ToString::to_string),
                cell(&h.dns),
                cell(&h.tcp),
                verdict,
                cell(&h.http),
                findings.join(", ")
            ));
        }
        if let Some(v) = &self.voice {
            out.push_str(&format!(
                "\nvoice ({}): STUN {} ({}), TCP 443 {}, TCP 7881 {}, UDP media {}\n  {}\n",
                v.stun_target,
                v.stun.state.as_str(),
                v.stun.detail,
                v.tcp_443.state.as_str(),
                v.tcp_7881.state.as_str(),
                v.media_udp.state.as_str(),
                v.meaning
            ));
        }
        for h in self.hosts.iter().filter(|h| h.fails() || h.warns()) {
            for (name, stage) in h.stages() {
                if matches!(stage.state, State::Fail | State::Warn) {
                    out.push_str(&format!("\n{} {name}: {}", h.host, stage.detail));
                }
            }
        }
        let hosts_failing = self.hosts.iter().filter(|h| h.fails()).count();
        let voice = match &self.voice {
            Some(v) if v.fails() => ", voice cannot connect",
            _ => "",
        };
        out.push_str(&format!(
            "\n\n{} hosts checked in {:.2} s, {hosts_failing} failing{voice}. {}\n",
            self.hosts.len(),
            self.total_ms / 1e3,
            self.verdict
        ));
        out
    }
}

/// `pass 12ms`, `fail`, `skipped`.
fn cell(stage: &Stage) -> String {
    match (stage.state, stage.ms) {
        (State::Pass | State::Warn, Some(ms)) => format!("{} {ms:.0}ms", stage.state.as_str()),
        (state, _) => state.as_str().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, tcp: State) -> HostCheck {
        let mut h = HostCheck::blank(
            name,
            443,
            Some("*.chatgpt.com".into()),
            |stage| match stage {
                "websocket" | "egress" | "stream" => Stage::new(State::NotRun, None, ""),
                _ => Stage::new(State::Pass, Some(1.0), "ok"),
            },
        );
        h.route = Some("DIRECT".into());
        h.tcp = Stage::new(tcp, Some(2.0), "tcp");
        if tcp == State::Fail {
            (h.tls, h.http) = (Stage::skipped("no TCP"), Stage::skipped("no TCP"));
        }
        h
    }

    #[test]
    fn a_failed_stage_fails_the_host_and_the_exit_code() {
        let mut report = CheckReport {
            version: 1,
            started_at: String::new(),
            route_source: "DIRECT".into(),
            total_ms: 1500.0,
            hosts: vec![
                host("chatgpt.com", State::Pass),
                host("cdn.oaistatic.com", State::Fail),
            ],
            voice: None,
            verdict: String::new(),
            failing: 0,
        };
        report.conclude();
        assert_eq!((report.failing, report.exit_code()), (1, EXIT_FAILING));
        // No finding explains the failed stage: the verdict names it, never "No problem".
        assert_eq!(
            report.verdict,
            "1 check(s) failed (exit 2): cdn.oaistatic.com tcp (tcp)."
        );
        let table = report.table();
        assert!(table.contains("cdn.oaistatic.com tcp: tcp"), "{table}");
        assert!(
            table.contains("2 hosts checked in 1.50 s, 1 failing."),
            "{table}"
        );
        report.hosts.pop();
        report.conclude();
        assert_eq!(report.exit_code(), 0);
        assert!(
            report.verdict.starts_with("No problem seen"),
            "{}",
            report.verdict
        );
    }

    #[test]
    fn skipped_and_not_run_stages_never_read_as_passed() {
        let h = host("a", State::Fail);
        assert_eq!(cell(&h.tls), "skipped");
        assert_eq!(cell(&Stage::new(State::NotRun, Some(3.0), "")), "not_run");
        assert_eq!(cell(&Stage::new(State::Pass, Some(3.4), "")), "pass 3ms");
    }

    #[test]
    fn voice_follows_livekits_rule() {
        assert!(Voice::meaning(State::Pass, State::Fail).contains("normal path"));
        assert!(Voice::meaning(State::Fail, State::Pass).contains("falls back to TURN over TLS"));
        assert!(Voice::meaning(State::Fail, State::Fail).contains("will not connect"));
    }
}

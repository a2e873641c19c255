//! A check as Prometheus metrics: blackbox_exporter's families (`probe_success`,
//! `probe_duration_seconds`, `probe_http_status_code`, `probe_ssl_earliest_cert_expiry`,
//! `probe_tls_version_info`, `probe_ssl_last_chain_info`) so existing dashboards and alerts
//! keep working, and diagproxy's own (stages, failure and finding kinds, interception, the
//! route, voice). Labels are bounded: hosts are the profile's, kinds are enums, names from
//! certificates are cut to `MAX_LABEL`. Pure.

use super::{render, Family, Kind};
use crate::check::stage::{CheckReport, HostCheck, State};
use crate::failure::Side;
use crate::tls::chain::Verdict;

/// Whether every series carries a `host` label (a multi-host exposition: `target=profile`,
/// `--push`, `--format prometheus`) or the target is implied (a one-host `/probe`, as
/// blackbox_exporter writes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hosts {
    One,
    Many,
}

/// The exposition of a check.
pub fn exposition(report: &CheckReport, hosts: Hosts) -> String {
    let mut f = Families::new();
    for host in &report.hosts {
        f.host(host, hosts, &report.route_source);
    }
    if let Some(voice) = &report.voice {
        let host = voice
            .stun_target
            .rsplit_once(':')
            .map_or(voice.stun_target.as_str(), |(h, _)| h);
        let labels: &[(&'static str, &str)] = &[("host", host)];
        if voice.stun.state != State::NotRun {
            if let Some(rtt) = median(&voice.rtt_ms) {
                f.stun_rtt.add(labels, rtt / 1e3);
            }
            f.stun_loss.add(labels, voice.loss);
        }
    }
    render(&f.all())
}

/// The families, filled host by host.
struct Families {
    success: Family,
    duration: Family,
    status: Family,
    expiry: Family,
    version: Family,
    chain: Family,
    stage_success: Family,
    stage_duration: Family,
    failure: Family,
    finding: Family,
    interception: Family,
    route: Family,
    stun_rtt: Family,
    stun_loss: Family,
}

impl Families {
    fn new() -> Families {
        use Kind::Gauge;
        Families {
            success: Family::new("probe_success", Gauge, "Whether every stage of the host worked (a re-signed chain this machine trusts counts as working; see diagproxy_tls_interception_info)."),
            duration: Family::new("probe_duration_seconds", Gauge, "How long the host's stages took, in all."),
            status: Family::new("probe_http_status_code", Gauge, "The HTTP status of GET /, 0 when no answer came."),
            expiry: Family::new("probe_ssl_earliest_cert_expiry", Gauge, "The earliest notAfter of the presented chain, in seconds since 1970 (emitted even when the chain is not trusted)."),
            version: Family::new("probe_tls_version_info", Gauge, "The TLS version negotiated."),
            chain: Family::new("probe_ssl_last_chain_info", Gauge, "The presented leaf certificate (emitted even when verification fails)."),
            stage_success: Family::new("diagproxy_stage_success", Gauge, "Whether a stage worked (1) or failed or could not run after an earlier failure (0); stages that do not apply are left out."),
            stage_duration: Family::new("diagproxy_stage_duration_seconds", Gauge, "How long a stage took."),
            failure: Family::new("diagproxy_failure_info", Gauge, "The named failure of the host, and whose side failed."),
            finding: Family::new("diagproxy_finding_info", Gauge, "A finding on the host (block_page, tls_inspection, ...)."),
            interception: Family::new("diagproxy_tls_interception_info", Gauge, "The chain was re-signed on the way: by whom."),
            route: Family::new("diagproxy_route_info", Gauge, "The way out the host's connection took, and where that route came from."),
            stun_rtt: Family::new("diagproxy_stun_rtt_seconds", Gauge, "The median round trip of the STUN Binding requests to the voice server."),
            stun_loss: Family::new("diagproxy_stun_loss_ratio", Gauge, "The share of STUN Binding requests that got no answer."),
        }
    }

    fn all(self) -> Vec<Family> {
        vec![
            self.success,
            self.duration,
            self.status,
            self.expiry,
            self.version,
            self.chain,
            self.stage_success,
            self.stage_duration,
            self.failure,
            self.finding,
            self.interception,
            self.route,
            self.stun_rtt,
            self.stun_loss,
        ]
    }

    fn host(&mut self, h: &HostCheck, hosts: Hosts, source: &str) {
        let name = h.host.as_str();
        let base: Vec<(&'static str, &str)> = match hosts {
            Hosts::One => Vec::new(),
            Hosts::Many => vec![("host", name)],
        };
        self.success.add(&base, if h.fails() { 0.0 } else { 1.0 });
        let total: f64 = h.stages().iter().filter_map(|(_, s)| s.ms).sum();
        self.duration.add(&base, total / 1e3);
        self.status.add(&base, h.status.map_or(0.0, f64::from));
        for (stage, s) in h.stages() {
            let worked = match s.state {
                State::Pass | State::Warn => 1.0,
                State::Fail | State::Skipped => 0.0,
                State::NotRun => continue,
            };
            let labels = [("host", name), ("stage", stage)];
            self.stage_success.add(&labels, worked);
            if let Some(ms) = s.ms {
                self.stage_duration.add(&labels, ms / 1e3);
            }
        }
        if let Some(version) = &h.tls_version {
            let version = tls_version(version);
            self.version
                .add(&joined(&base, &[("version", &version)]), 1.0);
        }
        if let Some(failure) = &h.failure {
            let labels = [
                ("host", name),
                ("kind", failure.kind.as_str()),
                ("side", side(failure.side)),
            ];
            self.failure.add(&labels, 1.0);
        }
        for finding in &h.findings {
            self.finding
                .add(&[("host", name), ("kind", finding.kind.as_str())], 1.0);
        }
        if let Some(route) = &h.route {
            let route = route.to_string();
            self.route.add(
                &[("host", name), ("route", &route), ("source", source)],
                1.0,
            );
        }
        self.chain_families(h, &base);
    }

    fn chain_families(&mut self, h: &HostCheck, base: &[(&'static str, &str)]) {
        let Some(tls) = &h.tls_verdict else { return };
        if let Some(expiry) = tls
            .chain
            .iter()
            .map(|c| c.not_after_unix)
            .filter(|t| *t > 0)
            .min()
        {
            self.expiry.add(base, expiry as f64);
        }
        let Some(leaf) = tls.chain.first() else {
            return;
        };
        self.chain.add(
            &joined(
                base,
                &[
                    ("fingerprint_sha256", &leaf.fingerprint_sha256),
                    ("subject", &leaf.subject),
                    ("issuer", &leaf.issuer),
                ],
            ),
            1.0,
        );
        let resigned = match tls.verdict {
            Verdict::Inspected => true,
            Verdict::Untrusted => tls.vendor.is_some(),
            Verdict::Public => false,
        };
        if resigned {
            let vendor = tls.vendor.as_deref().unwrap_or("unknown");
            self.interception.add(
                &[
                    ("host", h.host.as_str()),
                    ("issuer", &tls.issuer),
                    ("vendor", vendor),
                    ("fingerprint_sha256", &leaf.fingerprint_sha256),
                ],
                1.0,
            );
        }
    }
}

fn joined<'a>(
    base: &[(&'static str, &'a str)],
    extra: &[(&'static str, &'a str)],
) -> Vec<(&'static str, &'a str)> {
    base.iter().chain(extra).copied().collect()
}

/// `TLSv1_3` → `TLS 1.3`, as blackbox_exporter labels it.
fn tls_version(rustls: &str) -> String {
    rustls
        .strip_prefix("TLSv")
        .map(|v| format!("TLS {}", v.replace('_', ".")))
        .unwrap_or_else(|| rustls.to_string())
}

fn side(side: Side) -> &'static str {
    match side {
        Side::Downstream => "downstream",
        Side::Upstream => "upstream",
        Side::UpstreamProxy => "upstream_proxy",
    }
}

fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(|a, b| a.total_cmp(b));
    Some(sorted[sorted.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::stage::Stage;

    fn host(name: &str, tcp: State) -> HostCheck {
        let mut h = HostCheck::blank(name, 443, Some("chatgpt.com".into()), |_| {
            Stage::new(State::Pass, Some(2.0), "ok")
        });
        h.tcp = Stage::new(tcp, Some(1.0), "tcp");
        h.websocket = Stage::new(State::NotRun, None, "n/a");
        h.status = Some(200);
        h.tls_version = Some("TLSv1_3".into());
        h.route = Some("DIRECT".into());
        h
    }

    fn report(hosts: Vec<HostCheck>) -> CheckReport {
        CheckReport {
            version: 1,
            started_at: String::new(),
            route_source: "DIRECT (test)".into(),
            total_ms: 0.0,
            hosts,
            voice: None,
            verdict: String::new(),
            failing: 0,
        }
    }

    #[test]
    fn one_host_as_blackbox_writes_it_and_many_with_a_host_label() {
        let one = exposition(&report(vec![host("chatgpt.com", State::Pass)]), Hosts::One);
        assert!(one.contains("\nprobe_success 1\n"), "{one}");
        assert!(one.contains("\nprobe_http_status_code 200\n"), "{one}");
        assert!(
            one.contains("probe_tls_version_info{version=\"TLS 1.3\"} 1"),
            "{one}"
        );
        assert!(one.contains("diagproxy_stage_success{host=\"chatgpt.com\",stage=\"tcp\"} 1"));
        assert!(
            !one.contains("stage=\"websocket\""),
            "a stage that does not apply: {one}"
        );
        assert!(one.contains("diagproxy_route_info{host=\"chatgpt.com\",route=\"DIRECT\",source=\"DIRECT (test)\"} 1"));
        let many = exposition(
            &report(vec![
                host("chatgpt.com", State::Pass),
                host("ab.chatgpt.com", State::Fail),
            ]),
            Hosts::Many,
        );
        assert!(
            many.contains("probe_success{host=\"chatgpt.com\"} 1"),
            "{many}"
        );
        assert!(
            many.contains("probe_success{host=\"ab.chatgpt.com\"} 0"),
            "{many}"
        );
        // Every sample line of a multi-host exposition names its host.
        for line in many.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.contains("host=\""), "{line}");
        }
        assert_eq!(many.matches("# TYPE probe_success gauge").count(), 1);
    }

    #[test]
    fn a_resigned_chain_is_interception_info_and_still_success() {
        let mut h = host("chatgpt.com", State::Pass);
        h.tls = Stage::new(State::Warn, Some(3.0), "inspected");
        h.tls_verdict = Some(crate::tls::chain::TlsVerdict {
            verdict: Verdict::Inspected,
            reason: None,
            issuer: "CN=Zscaler Intermediate".into(),
            root: "CN=Zscaler Root CA".into(),
            vendor: Some("Zscaler".into()),
            chain: vec![crate::tls::chain::CertInfo {
                subject: "CN=chatgpt.com".into(),
                issuer: "CN=Zscaler Intermediate".into(),
                not_before: String::new(),
                not_after: String::new(),
                spki_sha256: String::new(),
                fingerprint_sha256: "ab".repeat(32),
                not_after_unix: 1_800_000_000,
            }],
            scts: false,
        });
        let text = exposition(&report(vec![h]), Hosts::Many);
        assert!(
            text.contains("probe_success{host=\"chatgpt.com\"} 1"),
            "{text}"
        );
        assert!(text.contains("vendor=\"Zscaler\""), "{text}");
        assert!(text.contains("probe_ssl_earliest_cert_expiry{host=\"chatgpt.com\"} 1800000000"));
        assert!(
            text.contains("probe_ssl_last_chain_info{host=\"chatgpt.com\",fingerprint_sha256=\"")
        );
    }

    #[test]
    fn versions_and_medians() {
        assert_eq!(tls_version("TLSv1_2"), "TLS 1.2");
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[]), None);
    }
}

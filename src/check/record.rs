//! A check as session events: what `run` would have recorded had a client made the same
//! connections — a tunnel per host (its route, timings, failure and findings), the chain's
//! verdict, the GET — so `summary.json`, the HAR, the reports and `compare` work on a check
//! folder as on a session. Pure.

use super::stage::{CheckReport, HostCheck, State};
use crate::session::event::{
    ChainSource, Downstream, Event, Payload, RequestEvent, SessionEnd, SessionInfo, Timings,
    TlsCheckEvent, TunnelEnd, TunnelEvent, TunnelMode,
};
use crate::upstream::route::Taken;

/// The downstream every check event names: a report tells the check's rows by it.
pub const CHECK_AGENT: &str = concat!("diagproxy-check/", env!("CARGO_PKG_VERSION"));

/// The events of `report`, framed by `info` and a session end.
pub fn events(report: &CheckReport, info: SessionInfo, ended_at: String) -> Vec<Event> {
    let mut out = vec![Event::SessionStarted(Box::new(info))];
    for host in &report.hosts {
        out.push(Event::Tunnel(Box::new(tunnel(report, host))));
        if let Some(verdict) = &host.tls_verdict {
            out.push(Event::TlsCheck(Box::new(TlsCheckEvent {
                ts: report.started_at.clone(),
                host: host.host.clone(),
                port: host.port,
                via: ChainSource::Check,
                tls: Some(verdict.clone()),
                error: None,
            })));
        }
        if let Some(request) = request(report, host) {
            out.push(Event::Request(Box::new(request)));
        }
    }
    out.push(Event::SessionEnded(Box::new(SessionEnd {
        ended_at,
        unfinished: 0,
        limits: Default::default(),
    })));
    out
}

fn downstream() -> Downstream {
    Downstream {
        addr: "diagproxy check".into(),
        user_agent: Some(CHECK_AGENT.into()),
    }
}

fn route(report: &CheckReport, host: &HostCheck) -> Taken {
    Taken {
        hop: host.route.clone(),
        route_source: Some(report.route_source.clone()),
        route_failed: Vec::new(),
        pac_error: None,
        proxy_auth: host.proxy_auth.clone(),
        proxy_headers: Vec::new(),
        proxy_tls: None,
    }
}

/// The connection: established unless TCP failed; the findings of every stage but HTTP's
/// (those go with the request).
fn tunnel(report: &CheckReport, host: &HostCheck) -> TunnelEvent {
    let established = matches!(host.tcp.state, State::Pass | State::Warn);
    TunnelEvent {
        ts: report.started_at.clone(),
        mode: TunnelMode::Tunnel,
        host: host.host.clone(),
        port: host.port,
        sni: Some(host.host.clone()),
        alpn: vec!["http/1.1".into()],
        payload: Payload::Tls,
        first_bytes: None,
        allowlist: host.allowlist.clone(),
        server_ip: host.server_ip.clone(),
        route: route(report, host),
        downstream: downstream(),
        timings: Timings {
            dns_ms: host.dns.ms,
            connect_ms: host.tcp.ms,
            ssl_ms: host.tls.ms,
            total_ms: [host.dns.ms, host.tcp.ms, host.tls.ms]
                .iter()
                .flatten()
                .sum(),
            ..Timings::default()
        },
        bytes_up: 0,
        bytes_down: 0,
        end: if established {
            TunnelEnd::DownstreamClosed
        } else {
            TunnelEnd::Failed
        },
        failure: host.failure.clone(),
        findings: host
            .findings
            .iter()
            .filter(|f| host.status.is_none() || !answer_kind(f))
            .cloned()
            .collect(),
    }
}

/// Whether a finding is about an answer (it goes with the request event).
fn answer_kind(f: &crate::inspect::Finding) -> bool {
    use crate::inspect::finding::FindingKind as K;
    matches!(
        f.kind,
        K::BlockPage
            | K::RedirectOffAllowlist
            | K::UnexpectedContent
            | K::ProxyHeader
            | K::CloudflareChallenge
            | K::UpstreamError
    )
}

/// The GET, when it was answered.
fn request(report: &CheckReport, host: &HostCheck) -> Option<RequestEvent> {
    let status = host.status?;
    let authority = if host.port == 443 {
        host.host.clone()
    } else {
        crate::upstream::addr::join(&host.host, host.port)
    };
    Some(RequestEvent {
        ts: report.started_at.clone(),
        method: "GET".into(),
        url: format!("https://{authority}/"),
        host: host.host.clone(),
        port: host.port,
        allowlist: host.allowlist.clone(),
        server_ip: host.server_ip.clone(),
        route: route(report, host),
        downstream: downstream(),
        status: Some(status),
        content_type: host.content_type.clone(),
        reused: true,
        timings: Timings {
            wait_ms: host.http.ms,
            total_ms: host.http.ms.unwrap_or(0.0),
            ..Timings::default()
        },
        bytes_up: 0,
        bytes_down: 0,
        complete: true,
        intercepted: true,
        upstream_protocol: Some("http/1.1".into()),
        headers: None,
        findings: host
            .findings
            .iter()
            .filter(|f| answer_kind(f))
            .cloned()
            .collect(),
        failure: None,
        block_page_body: None,
        body: None,
        unfinished: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::stage::Stage;

    #[test]
    fn a_host_becomes_a_tunnel_a_verdict_and_a_request() {
        let ms = |name: &str| match name {
            "dns" => 1.0,
            "tcp" => 2.0,
            "tls" => 3.0,
            _ => 4.0,
        };
        let mut host = HostCheck::blank("chatgpt.com", 443, Some("*.chatgpt.com".into()), |n| {
            Stage::new(State::Pass, Some(ms(n)), "ok")
        });
        host.route = Some("PROXY p:1".into());
        host.server_ip = Some("10.0.0.1".into());
        (host.status, host.content_type) = (Some(403), Some("text/html".into()));
        let report = CheckReport {
            version: 1,
            started_at: "t".into(),
            route_source: "PAC x".into(),
            total_ms: 10.0,
            hosts: vec![host],
            voice: None,
            verdict: String::new(),
            failing: 0,
        };
        let events = events(&report, SessionInfo::default(), "end".into());
        assert_eq!(events.len(), 4);
        let Event::Tunnel(t) = &events[1] else {
            panic!("tunnel")
        };
        assert_eq!(
            (
                t.route.hop.as_ref().map(ToString::to_string),
                t.timings.total_ms
            ),
            (Some("PROXY p:1".to_string()), 6.0)
        );
        assert_eq!(t.end, TunnelEnd::DownstreamClosed);
        let Event::Request(r) = &events[2] else {
            panic!("request")
        };
        assert_eq!(
            (r.status, r.url.as_str()),
            (Some(403), "https://chatgpt.com/")
        );
        assert_eq!(r.downstream.user_agent.as_deref(), Some(CHECK_AGENT));
    }
}

//! A finished request as a session event: its route (the proxies tried, the one taken),
//! the failure its `net_error` names with what the file showed of it (the proxy's answer to
//! CONNECT, a plaintext answer), and the findings `run`'s own detectors make of it. Pure.

use super::assemble::{Assembler, Request, TargetFacts};
use super::fields::{
    header_map, hop_of_chain, lower_names, request_event, target_of_url, timestamp, Exchange,
    Target,
};
use super::neterror::{self, Meaning};
use crate::failure::{Failure, FailureKind, Side};
use crate::inspect::detect::{self, Answer};
use crate::inspect::{explain, Finding};
use crate::session::event::Event;
use crate::upstream::route::{Taken, TakenHop};

impl Assembler<'_> {
    /// A finished request (or one redirect hop of it) as a session event.
    pub(super) fn emit_request(&mut self, request: Request) {
        let Some((host, port)) = target_of_url(&request.url) else {
            return;
        };
        let code = request.net_error;
        let names = self.names.as_ref();
        let error_name = code.and_then(|c| names.and_then(|n| n.errors.get(&c)).cloned());
        let meaning = code.and_then(|c| neterror::meaning(error_name.as_deref(), c));
        if meaning == Some(Meaning::NotAFailure) && request.status.is_none() {
            self.aborted += 1;
            return;
        }
        let route = self.route(&request, meaning, code, error_name.as_deref());
        let failure = code.and_then(|c| {
            let described = neterror::describe(error_name.as_deref(), c);
            self.failure(meaning, &described, &(host.clone(), port))
        });
        let findings = self.findings(&request, (&host, port), &route, failure.as_ref());
        let exchange = Exchange {
            ts: timestamp(request.start_ms),
            method: request.method.clone(),
            url: request.url.clone(),
            target: (host, port),
            recorded_by: "browser (NetLog)",
            request: &request.request,
            response: &request.response,
            status: request.status,
            bytes_down: request.bytes_down,
            server_ip: None,
        };
        let event = request_event(exchange, &self.ctx.profile, route, failure, findings);
        (self.sink)(Event::Request(Box::new(event)));
    }

    /// The way the request went: the proxies tried in order, the last one taken.
    fn route(
        &mut self,
        request: &Request,
        meaning: Option<Meaning>,
        code: Option<i64>,
        error_name: Option<&str>,
    ) -> Taken {
        let hops: Vec<String> = request.tried.iter().map(|c| hop_of_chain(c)).collect();
        self.names_proxies |= hops.iter().any(|h| h != "DIRECT")
            || request
                .proxy_list
                .as_deref()
                .is_some_and(|l| l.contains("PROXY") || l.contains("HTTPS") || l.contains("SOCKS"));
        let (failed, hop) = match hops.split_last() {
            Some((last, before)) => (before.to_vec(), Some(last.clone())),
            None => (Vec::new(), None),
        };
        let route_failed = failed
            .into_iter()
            .map(|h| format!("{h}: could not be reached (the browser fell back)"))
            .collect();
        let source = match (&self.pac, &request.proxy_list) {
            (Some(pac), Some(list)) => Some(format!("PAC {pac} (the browser's NetLog) → {list}")),
            (None, Some(list)) => Some(format!("the browser's proxy settings (NetLog) → {list}")),
            _ => None,
        };
        // The request failed on the PAC, or the PAC failed and the browser went on without it
        // (Chromium goes DIRECT unless a policy makes the PAC mandatory).
        let pac_error = (meaning == Some(Meaning::PacError))
            .then(|| neterror::describe(error_name, code.unwrap_or(0)))
            .or_else(|| {
                let went = hop.as_deref().unwrap_or("DIRECT");
                let failed = request.pac_failed.as_deref()?;
                Some(format!("{failed}; the browser went on with {went}"))
            });
        Taken {
            hop: hop.as_deref().map(TakenHop::from),
            route_source: source.map(|s| crate::text::terminal(&s, false).into_owned()),
            route_failed,
            pac_error,
            ..Taken::default()
        }
    }

    /// The failure a `net_error` names, with what the file showed of it.
    fn failure(
        &self,
        meaning: Option<Meaning>,
        described: &str,
        target: &Target,
    ) -> Option<Failure> {
        let facts = self.targets.get(target);
        let tunnel = facts.and_then(|f| f.tunnel.as_ref());
        let Some(meaning) = meaning else {
            let detail = format!("{described}: a code diagproxy does not name");
            return Some(Failure::new(FailureKind::HttpError, Side::Upstream, detail));
        };
        let failure = match meaning {
            Meaning::Failure(kind, side) => Failure::new(kind, side, described),
            Meaning::TunnelRefused | Meaning::ProxyAuth => {
                let status = tunnel.map(|t| t.0);
                let kind = match (meaning, status) {
                    (Meaning::ProxyAuth, _) | (_, Some(407)) => FailureKind::UpstreamProxyAuth,
                    _ => FailureKind::UpstreamProxyRefused,
                };
                let said = status.map_or(String::new(), |s| format!(": the proxy answered {s}"));
                let mut f = Failure::new(kind, Side::UpstreamProxy, format!("{described}{said}"));
                f.proxy_status = status;
                f.proxy_headers = tunnel.map(|t| lower_names(&t.1)).unwrap_or_default();
                f.proxy_body = facts.and_then(TargetFacts::body);
                f
            }
            Meaning::ProxyUnreachable => Failure::new(
                FailureKind::ConnectFailed,
                Side::UpstreamProxy,
                format!("{described}: no proxy of the route could be reached"),
            ),
            // Plaintext where TLS was due is `non_tls_in_tunnel` (a finding, as `run` records
            // it: the tunnel itself carried bytes); otherwise the handshake failed.
            Meaning::TlsProtocol if facts.and_then(TargetFacts::plaintext).is_some() => {
                return None
            }
            Meaning::TlsProtocol => Failure::new(FailureKind::TlsFailed, Side::Upstream, described),
            Meaning::PacError | Meaning::Certificate { .. } | Meaning::NotAFailure => return None,
        };
        Some(failure)
    }

    /// The findings the request shows: its route, a proxy's refusal, plaintext in the
    /// tunnel, and what the answer itself shows (block pages need a body: Everything mode).
    fn findings(
        &self,
        request: &Request,
        (host, port): (&str, u16),
        route: &Taken,
        failure: Option<&Failure>,
    ) -> Vec<Finding> {
        let profile = &self.ctx.profile;
        let mut found = explain::route_findings(profile, host, route, failure, self.names_proxies);
        if let Some(f) = failure {
            let path = crate::inspect::reproduce::Path::default();
            found.extend(explain::failure_findings(
                profile,
                host,
                f,
                &request.url,
                &path,
            ));
        }
        if let Some(facts) = self.targets.get(&(host.to_string(), port)) {
            found.extend(self.handshake_findings(host, facts));
        }
        if let Some(status) = request.status {
            let map = header_map(&request.response);
            let path = hyper::Uri::try_from(request.url.as_str())
                .ok()
                .map(|u| u.path().to_string())
                .unwrap_or_default();
            let answer = Answer::page(host, &path, status, &map, &request.body);
            found.extend(detect::answer_findings(&answer, profile));
        }
        found
    }
}

impl Assembler<'_> {
    /// What a failed TLS handshake shows, judged by `run`'s own tunnel detector: plaintext
    /// where TLS was expected, or a reset right after the ClientHello named the host.
    fn handshake_findings(&self, host: &str, facts: &TargetFacts) -> Vec<Finding> {
        let Some(code) = facts.handshake_error else {
            return Vec::new();
        };
        let name = self.names.as_ref().and_then(|n| n.errors.get(&code));
        let reset = matches!(
            neterror::meaning(name.map(String::as_str), code),
            Some(Meaning::Failure(FailureKind::Reset, _))
        );
        let plaintext = match (&facts.first_http, &facts.tunnel) {
            (Some(bytes), None) => bytes.as_slice(),
            _ => &[],
        };
        let sight = detect::TunnelSight {
            host,
            client_hello: true,
            first_upstream: plaintext,
            bytes_down: plaintext.len() as u64,
            upstream_died: reset && plaintext.is_empty(),
            silent_for: None,
        };
        detect::tunnel_findings(&sight, &self.ctx.profile)
    }
}

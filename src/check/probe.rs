//! The stages of one host, in order, each under its own time budget: DNS, TCP (along the
//! host's route: a corporate proxy's CONNECT answer is judged as in `run`), TLS with SNI
//! (the chain verdict, protocol, ALPN; a reset, plaintext or silence named as in a tunnel),
//! and a GET of a harmless path judged by the detectors. A stage that cannot run because an
//! earlier one failed is `skipped`.

use std::time::{Duration, Instant};

use rustls::pki_types::{ServerName, UnixTime};

use super::followups;
use super::http::{judge_answer, open, send, state_of, Sender, Target, Tls};
use super::stage::{HostCheck, Stage, State};
use crate::config::Config;
use crate::failure::{Failure, FailureKind, Side};
use crate::inspect::detect::{self, Answer, TunnelSight};
use crate::inspect::explain;
use crate::inspect::finding::{Finding, FindingKind};
use crate::tls::chain::{self, Verdict};
use crate::tls::probe::look_only_config;
use crate::upstream::dial::{self, Io, Upstream};
use crate::upstream::resolve;
use crate::upstream::route::TakenHop;
use crate::upstream::sighted::Watch;

fn ms(d: Duration) -> Option<f64> {
    Some(d.as_secs_f64() * 1e3)
}

/// Every stage of `target`, each within `budget`.
pub async fn host(target: &Target, config: &Config, budget: Duration) -> HostCheck {
    let profile = &config.profile;
    let allowlist = profile.match_host(&target.host).map(|e| e.pattern.clone());
    let mut check = HostCheck::blank(&target.host, target.port, allowlist, |stage| match stage {
        "websocket" => Stage::new(State::NotRun, None, "not a WebSocket host"),
        "egress" => Stage::new(State::NotRun, None, "not a Cloudflare-fronted host"),
        "stream" => Stage::new(State::NotRun, None, "no event-stream test endpoint"),
        _ => Stage::skipped(""),
    });
    check.dns = dns(target, config, budget, &mut check.findings).await;
    if check.dns.state == State::Fail {
        // Failed only when the route is DIRECT: nothing could connect.
        check.tcp = Stage::skipped("dns failed");
        skip_after(&mut check, "dns");
        return check;
    }
    let Some(upstream) = tcp(target, config, budget, &mut check).await else {
        return check;
    };
    let Some(tls) = tls(target, config, budget, upstream, &mut check).await else {
        return check;
    };
    let (stage, sender) = http(target, config, budget, tls, &mut check).await;
    check.http = stage;
    let Some(mut sender) = sender else {
        return check;
    };
    if let Some(path) = &target.websocket {
        check.websocket = followups::websocket(
            target,
            path,
            config,
            budget,
            &mut sender,
            &mut check.findings,
        )
        .await;
    }
    if target.trace {
        let tls_seen = check
            .tls_verdict
            .as_ref()
            .map(|_| check.tls.detail.clone())
            .unwrap_or_default();
        check.egress = followups::egress(target, budget, &mut sender, &tls_seen).await;
    }
    if let Some(path) = &target.event_stream {
        check.stream = followups::event_stream(target, path, config, budget).await;
    }
    check
}

/// The local DNS answer. When the host's route starts with a proxy a failure is only a
/// warning: the proxy resolves.
async fn dns(
    target: &Target,
    config: &Config,
    budget: Duration,
    findings: &mut Vec<Finding>,
) -> Stage {
    let started = Instant::now();
    let looked_up = tokio::time::timeout(
        budget,
        resolve::resolve(&target.host, target.port, config, Side::Upstream),
    )
    .await;
    let took = ms(started.elapsed());
    // Behind a proxy the proxy resolves: a local failure is then only a warning.
    let route = config
        .route(target.port != 80, &target.host, target.port, "")
        .await;
    let proxied = !matches!(
        route.hops.first(),
        Some(crate::upstream::route::Hop::Direct)
    );
    let (addrs, how) = match looked_up {
        Ok(Ok((addrs, None))) => (addrs, "pinned (--resolve) or a literal"),
        Ok(Ok((addrs, Some(_)))) => (addrs, "the system resolver"),
        Ok(Err(failure)) => {
            let state = if proxied { State::Warn } else { State::Fail };
            if !proxied {
                findings.push(explain::finding_for(
                    &config.profile,
                    &target.host,
                    &failure,
                ));
            }
            return Stage::new(state, took, failure.detail);
        }
        Err(_) => {
            let state = if proxied { State::Warn } else { State::Fail };
            return Stage::new(state, took, format!("no DNS answer in {budget:?}"));
        }
    };
    let ips: Vec<std::net::IpAddr> = addrs.iter().map(|a| a.ip()).collect();
    let shown: Vec<String> = ips.iter().map(ToString::to_string).collect();
    let detail = format!("{} ({how})", shown.join(", "));
    if how == "the system resolver" {
        if let Some(sinkhole) = detect::dns_sinkhole(&target.host, &ips, &config.profile) {
            findings.push(sinkhole);
            return Stage::new(
                State::Fail,
                took,
                format!("{detail}: a filter's block address"),
            );
        }
    }
    Stage::new(State::Pass, took, detail)
}

/// What the TCP stage passed through on its way: the proxy's kind and its answer.
fn along(hop: Option<&TakenHop>, auth: Option<&crate::upstream::auth::AuthRecord>) -> String {
    use crate::upstream::route::ProxyKind as K;
    let signed = auth.map_or(String::new(), |a| format!("; {}", a.line()));
    let Some(TakenHop::Proxy { kind, at: proxy }) = hop else {
        return String::new();
    };
    match kind {
        K::Http if signed.is_empty() => " (CONNECT through the proxy answered 200)".into(),
        K::Http => format!(" (CONNECT answered 200{signed})"),
        K::Https => {
            format!(" (TLS to the HTTPS proxy {proxy} verified, then CONNECT answered 200{signed})")
        }
        K::Socks5 | K::Socks4 | K::Socks4a => {
            format!(
                " ({} handshake with {proxy} done, the target granted)",
                kind.name()
            )
        }
    }
}

/// TCP along the route (and the proxy's CONNECT answer). `None` when it failed.
async fn tcp(
    target: &Target,
    config: &Config,
    budget: Duration,
    check: &mut HostCheck,
) -> Option<Upstream> {
    let started = Instant::now();
    let opened =
        tokio::time::timeout(budget, dial::open_tunnel(&target.host, target.port, config)).await;
    let took = ms(started.elapsed());
    let names_proxies = config.router.names_proxies();
    let (taken, result) = match opened {
        Ok(opened) => opened,
        Err(_) => {
            let detail = format!("no connection in {budget:?}");
            check.failure = Some(Failure::new(
                FailureKind::ConnectTimeout,
                Side::Upstream,
                detail.clone(),
            ));
            check.tcp = Stage::new(State::Fail, took, detail);
            skip_after(check, "tcp");
            return None;
        }
    };
    check.route = taken.hop.clone();
    check.proxy_auth = taken.proxy_auth.clone();
    let profile = &config.profile;
    match result {
        Ok(upstream) => {
            check.findings.extend(explain::route_findings(
                profile,
                &target.host,
                &taken,
                None,
                names_proxies,
            ));
            let via = along(taken.hop.as_ref(), taken.proxy_auth.as_ref());
            check.tcp = Stage::new(
                State::Pass,
                took,
                format!("connected to {}{via}", upstream.addr),
            );
            Some(upstream)
        }
        Err(failure) => {
            check
                .findings
                .push(explain::finding_for(profile, &target.host, &failure));
            check.findings.extend(explain::route_findings(
                profile,
                &target.host,
                &taken,
                Some(&failure),
                names_proxies,
            ));
            if let Some(body) = failure.proxy_body.as_deref() {
                check
                    .findings
                    .extend(proxy_block_page(target, config, &failure, body));
            }
            check.tcp = Stage::new(State::Fail, took, failure.to_string());
            check.failure = Some(failure);
            skip_after(check, "tcp");
            None
        }
    }
}

/// A block page in a corporate proxy's refusal of the CONNECT.
fn proxy_block_page(
    target: &Target,
    config: &Config,
    failure: &Failure,
    body: &str,
) -> Option<Finding> {
    let headers = hyper::HeaderMap::new();
    let status = failure.proxy_status.unwrap_or(403);
    let answer = Answer::page(&target.host, "/", status, &headers, body.as_bytes());
    detect::answer_findings(&answer, &config.profile)
        .into_iter()
        .find(|f| f.kind == FindingKind::BlockPage)
}

fn skip_after(check: &mut HostCheck, failed: &str) {
    let why = format!("{failed} failed");
    if failed == "dns" || failed == "tcp" {
        check.tls = Stage::skipped(&why);
    }
    check.http = Stage::skipped(&why);
}

/// The TLS handshake with SNI and the chain's verdict. `None` when it failed.
async fn tls(
    target: &Target,
    config: &Config,
    budget: Duration,
    upstream: Upstream,
    check: &mut HostCheck,
) -> Option<Tls> {
    let Ok(name) = ServerName::try_from(target.host.clone()) else {
        check.tls = Stage::new(
            State::Fail,
            None,
            format!("{:?} is not a server name", target.host),
        );
        skip_after(check, "tls");
        return None;
    };
    let watch = Watch::default();
    let io: Box<dyn Io> = Box::new(watch.wrap(upstream.io.into_io()));
    let connector = tokio_rustls::TlsConnector::from(look_only_config(false));
    let started = Instant::now();
    let handshake = tokio::time::timeout(budget, connector.connect(name, io)).await;
    let took = ms(started.elapsed());
    let tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return tls_failed(target, config, &watch, Some(e), took, check),
        Err(_) => return tls_failed(target, config, &watch, None, took, check),
    };
    watch.finish();
    if judge(target, config, &tls, took, check) {
        Some(tls)
    } else {
        skip_after(check, "tls");
        None
    }
}

/// The chain's verdict, protocol and ALPN into the TLS stage; false when the chain is not
/// trusted (or cannot be read).
fn judge(
    target: &Target,
    config: &Config,
    tls: &Tls,
    took: Option<f64>,
    check: &mut HostCheck,
) -> bool {
    let (_, session) = tls.get_ref();
    let version = session
        .protocol_version()
        .map_or("?".to_string(), |v| format!("{v:?}"));
    check.tls_version = session.protocol_version().map(|v| format!("{v:?}"));
    let alpn = session.alpn_protocol().map_or("no ALPN".to_string(), |p| {
        String::from_utf8_lossy(p).into_owned()
    });
    let chain_der: Vec<_> = session
        .peer_certificates()
        .unwrap_or_default()
        .iter()
        .map(|c| c.clone().into_owned())
        .collect();
    let verdict = match chain::judge(
        &chain_der,
        &target.host,
        &config.roots,
        &config.profile,
        UnixTime::now(),
    ) {
        Ok(v) => v,
        Err(e) => {
            check.tls = Stage::new(State::Fail, took, e);
            return false;
        }
    };
    let state = match verdict.verdict {
        Verdict::Public => State::Pass,
        Verdict::Inspected => State::Warn,
        Verdict::Untrusted => State::Fail,
    };
    let vendor = verdict
        .vendor
        .as_deref()
        .map_or(String::new(), |v| format!(" ({v})"));
    let detail = format!(
        "{version}, {alpn}, {} chain issued by {}{vendor}",
        verdict.verdict.as_str(),
        verdict.issuer
    );
    check.findings.extend(explain::tls_finding(
        &config.profile,
        &target.host,
        target.port,
        &verdict,
    ));
    if state == State::Fail {
        check.failure = Some(Failure::new(
            FailureKind::TlsFailed,
            Side::Upstream,
            detail.clone(),
        ));
    }
    check.tls = Stage::new(state, took, detail);
    check.tls_verdict = Some(verdict);
    state != State::Fail
}

fn tls_failed(
    target: &Target,
    config: &Config,
    watch: &Watch,
    error: Option<std::io::Error>,
    took: Option<f64>,
    check: &mut HostCheck,
) -> Option<Tls> {
    let (first, died) = watch.seen();
    let sight = TunnelSight {
        host: &target.host,
        client_hello: true,
        first_upstream: &first,
        bytes_down: first.len() as u64,
        upstream_died: died && first.is_empty(),
        silent_for: (error.is_none() && first.is_empty()).then_some(detect::NO_SERVER_HELLO),
    };
    check
        .findings
        .extend(detect::tunnel_findings(&sight, &config.profile));
    let at = crate::upstream::addr::join(&target.host, target.port);
    let failure = explain::handshake_failure(&at, &first, died, error.as_ref());
    if !check
        .findings
        .iter()
        .any(|f| !matches!(f.kind, FindingKind::Failure(_)))
    {
        check.findings.push(explain::finding_for(
            &config.profile,
            &target.host,
            &failure,
        ));
    }
    check.tls = Stage::new(State::Fail, took, failure.detail.clone());
    check.failure = Some(failure);
    skip_after(check, "tls");
    None
}

/// A GET of the harmless path, judged by the detectors as `run` judges answers; the
/// connection, for the stages that follow on it.
async fn http(
    target: &Target,
    config: &Config,
    budget: Duration,
    tls: Tls,
    check: &mut HostCheck,
) -> (Stage, Option<Sender>) {
    let started = Instant::now();
    let exchange = tokio::time::timeout(budget, async {
        let mut sender = open(tls).await?;
        let answer = send(&mut sender, target, &target.path, &[]).await?;
        Ok::<_, String>((sender, answer))
    })
    .await;
    let took = ms(started.elapsed());
    let (sender, (status, headers, body)) = match exchange {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => {
            let detail = format!("GET {}: {e}", target.path);
            return (
                http_failed(check, FailureKind::HttpError, detail, took),
                None,
            );
        }
        Err(_) => {
            let detail = format!("no answer to GET {} in {budget:?}", target.path);
            return (http_failed(check, FailureKind::Timeout, detail, took), None);
        }
    };
    let found = judge_answer(target, config, status, &headers, &body);
    let kind = headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|t| crate::text::terminal(t, false).into_owned());
    let shown = kind.as_deref().unwrap_or("no type");
    let mut detail = format!("GET {} → {status} {shown}", target.path);
    (check.status, check.content_type) = (Some(status), kind.clone());
    let state = state_of(&found);
    for f in &found {
        detail.push_str(&format!("; {}", f.in_words()));
    }
    check.findings.extend(found);
    (Stage::new(state, took, detail), Some(sender))
}

fn http_failed(
    check: &mut HostCheck,
    kind: FailureKind,
    detail: String,
    took: Option<f64>,
) -> Stage {
    check.failure = Some(Failure::new(kind, Side::Upstream, detail.clone()));
    Stage::new(State::Fail, took, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tcp_stage_says_which_kind_of_proxy_it_passed() {
        assert_eq!(along(Some(&"DIRECT".into()), None), "");
        assert_eq!(along(None, None), "");
        assert_eq!(
            along(Some(&"PROXY p:3128".into()), None),
            " (CONNECT through the proxy answered 200)"
        );
        assert_eq!(
            along(Some(&"SOCKS5 s:1080".into()), None),
            " (SOCKS5 handshake with s:1080 done, the target granted)"
        );
        assert!(along(Some(&"HTTPS h:443".into()), None)
            .starts_with(" (TLS to the HTTPS proxy h:443 verified"));
    }
}

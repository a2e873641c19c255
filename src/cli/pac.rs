//! `diagproxy pac`: where each profile host (or each HOST given) goes and why — the route
//! source, the PAC's answer and the helper calls it made — whether each proxy named
//! answers, and what is wrong (`inspect::routes::judge`). Exit 1 when a host would fail.

use std::time::Instant;

use serde::Serialize;

use super::{Failed, PacArgs, RouteArgs};
use crate::config::Config;
use crate::failure::Side;
use crate::inspect::routes::{judge, HostRoute, Lint};
use crate::upstream::router::Router;
use crate::upstream::{dial, discover, HostPort};

/// The whole answer, as `--json` prints it.
#[derive(Debug, Serialize)]
struct Answer {
    source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pac: Option<crate::upstream::pac::PacFile>,
    warnings: Vec<String>,
    hosts: Vec<HostRoute>,
    proxies: Vec<ProxyCheck>,
    problems: Vec<Lint>,
    /// Hosts that would fail.
    failing: usize,
}

/// Whether one proxy the routes name accepts a TCP connection.
#[derive(Debug, Serialize)]
struct ProxyCheck {
    proxy: String,
    answers: bool,
    detail: String,
}

pub fn pac(args: &PacArgs) -> Result<(), Failed> {
    let config = config(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failed::error(&e))?;
    let answer = runtime.block_on(look_up(args, &config));
    if args.json {
        let text = serde_json::to_string_pretty(&answer).map_err(|e| Failed::error(&e))?;
        println!("{text}");
    } else {
        print!("{}", crate::text::terminal(&table(&answer), true));
    }
    if answer.failing > 0 {
        return Err(Failed::Error(format!(
            "{} host(s) would fail on this route",
            answer.failing
        )));
    }
    Ok(())
}

fn config(args: &PacArgs) -> Result<Config, Failed> {
    route_config(&args.route, &args.connect_timeout, [None, None])
}

/// The same checks as `run`'s ([`super::config::route_config`]), with `connect_timeout`
/// and the trust stores (`--public-roots`, `--system-roots`).
pub(super) fn route_config(
    flags: &RouteArgs,
    connect_timeout: &str,
    roots: [Option<&std::path::Path>; 2],
) -> Result<Config, Failed> {
    super::config::route_config(flags, Some(connect_timeout), roots)
        .map_err(|e| Failed::Usage(e.to_string()))
}

async fn look_up(args: &PacArgs, config: &Config) -> Answer {
    let router = discover::router(config, config.listen).await;
    let names: Vec<String> = if args.hosts.is_empty() {
        let entries = &config.profile.entries;
        let mut names: Vec<String> = entries
            .iter()
            .flat_map(|e| e.probe_hosts())
            .map(str::to_string)
            .collect();
        names.dedup();
        names
    } else {
        args.hosts.iter().map(|h| h.to_ascii_lowercase()).collect()
    };
    let mut hosts = Vec::new();
    for name in names {
        hosts.push(trace(&router, &name).await);
    }
    let proxies = check_proxies(&hosts, config).await;
    let unreachable: Vec<(String, String)> = proxies
        .iter()
        .filter(|p| !p.answers)
        .map(|p| (p.proxy.clone(), p.detail.clone()))
        .collect();
    let problems = judge(&mut hosts, &unreachable);
    Answer {
        source: router.source(),
        pac: router.pac_file.clone(),
        warnings: router.warnings.clone(),
        failing: hosts.iter().filter(|h| h.fails).count(),
        hosts,
        proxies,
        problems,
    }
}

async fn trace(router: &Router, name: &str) -> HostRoute {
    let (host, port) = match HostPort::parse(name, 443) {
        Some(hp) => (hp.host, hp.port),
        None => (name.to_string(), 443),
    };
    let traced = router.trace(port != 80, &host, port, "").await;
    HostRoute {
        host: name.to_string(),
        route: traced.route.describe(),
        answer: traced.answer,
        calls: traced.calls,
        error: traced.route.error.clone(),
        fails: false,
    }
}

/// Connects once to every proxy the routes name.
async fn check_proxies(hosts: &[HostRoute], config: &Config) -> Vec<ProxyCheck> {
    let mut named: Vec<&str> = hosts
        .iter()
        .flat_map(|h| h.route.split("; "))
        .filter(|hop| crate::upstream::route::hop_proxy(hop).is_some())
        .collect();
    named.sort_unstable();
    named.dedup();
    let mut checks = Vec::new();
    for proxy in named {
        let target = crate::upstream::route::hop_proxy(proxy).unwrap_or_default();
        let Some(hp) = HostPort::parse(target, 0) else {
            continue;
        };
        let started = Instant::now();
        let (answers, detail) =
            match dial::dial(&hp.host, hp.port, config, Side::UpstreamProxy).await {
                Ok(_) => (
                    true,
                    format!(
                        "connects in {:.1} ms",
                        started.elapsed().as_secs_f64() * 1e3
                    ),
                ),
                Err(f) => (false, f.detail),
            };
        checks.push(ProxyCheck {
            proxy: proxy.to_string(),
            answers,
            detail,
        });
    }
    checks
}

fn table(answer: &Answer) -> String {
    let mut out = format!("route source: {}\n", answer.source);
    if let Some(pac) = &answer.pac {
        let status = pac.status.map_or(String::new(), |s| format!("HTTP {s}, "));
        let kind = pac
            .content_type
            .as_deref()
            .map_or(String::new(), |t| format!("{t}, "));
        out.push_str(&format!(
            "PAC file: {} ({status}{kind}{} bytes, SHA-256 {})\n",
            pac.url, pac.size, pac.sha256
        ));
    }
    for warning in &answer.warnings {
        out.push_str(&format!("warning: {warning}\n"));
    }
    let width = answer
        .hosts
        .iter()
        .map(|h| h.host.len())
        .max()
        .unwrap_or(4)
        .max(4);
    out.push_str(&format!("\n{:width$}  ROUTE\n", "HOST"));
    for host in &answer.hosts {
        let mark = if host.fails { "  ✗ would fail" } else { "" };
        out.push_str(&format!("{:width$}  {}{mark}\n", host.host, host.route));
        if let Some(e) = &host.error {
            out.push_str(&format!("{:width$}    PAC error: {e}\n", ""));
        }
        for call in &host.calls {
            out.push_str(&format!("{:width$}    {call}\n", ""));
        }
    }
    if !answer.proxies.is_empty() {
        out.push_str("\nproxies:\n");
        for p in &answer.proxies {
            let state = if p.answers {
                "answers"
            } else {
                "does not answer"
            };
            out.push_str(&format!("  {} {state}: {}\n", p.proxy, p.detail));
        }
    }
    if !answer.problems.is_empty() {
        out.push_str("\nproblems:\n");
        for lint in &answer.problems {
            out.push_str(&format!("  {}: {}\n", lint.kind, lint.text));
        }
    }
    let verdict = match answer.failing {
        0 => "every host has a way out".to_string(),
        n => format!("{n} of {} hosts would fail", answer.hosts.len()),
    };
    out.push_str(&format!("\n{verdict}\n"));
    out
}

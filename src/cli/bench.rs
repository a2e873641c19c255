//! `diagproxy bench`: its flags checked, then the measurements run.

use super::{BenchArgs, BenchGroup, Failed};
use crate::bench::Group;

pub fn bench(args: &BenchArgs) -> Result<(), Failed> {
    if !(0.1..=60.0).contains(&args.duration)
        || args.connections == 0
        || args.connections > 1024
        || args.tunnels > 5000
    {
        return Err(
            "bench: --duration is 0.1 to 60 s, --connections 1 to 1024, --tunnels at most 5000"
                .into(),
        );
    }
    let proxy = match &args.proxy {
        Some(url) => {
            let p = crate::upstream::route::parse_upstream_proxy(url)?;
            let addr = format!("{}:{}", p.host, p.port).parse().map_err(|_| {
                format!("--proxy {url}: give an IP address and port, e.g. http://127.0.0.1:8081")
            })?;
            Some(addr)
        }
        None => None,
    };
    let proxy_ca = match &args.proxy_ca {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| format!("--proxy-ca {}: {e}", path.display()))?,
        ),
        None => None,
    };
    if let Some(pid) = args.proxy_pid {
        if crate::bench::load::cpu_time(pid).is_none() {
            return Err(Failed::Error(format!(
                "--proxy-pid {pid}: cannot read that process's CPU time (/proc/{pid}/stat); is it running, and is this Linux?"
            )));
        }
    }
    if let (Some(_), Some(path)) = (&args.proxy, &args.origin_root) {
        if !path.exists() {
            // The other proxy must trust the root before it starts: make it, and stop.
            crate::bench::world::OriginRoot::load_or_create(path)?;
            eprintln!(
                "wrote the bench origin's root to {}: start the other proxy trusting it for upstream TLS, then run this again",
                path.display()
            );
            return Ok(());
        }
    }
    let before = args.compare.as_deref().map(saved_report).transpose()?;
    let options = crate::bench::Options {
        duration: std::time::Duration::from_secs_f64(args.duration),
        connections: args.connections,
        tunnels: args.tunnels,
        proxy,
        proxy_ca,
        origin_root: args.origin_root.clone(),
        proxy_pid: args.proxy_pid,
        only: args.only.iter().map(|g| bench_group(*g)).collect(),
        route_config: Some(route_config(&args.resolve)?),
        auth_proxy: match &args.auth_proxy {
            Some(url) => Some(crate::upstream::route::parse_upstream_proxy(url)?),
            None => None,
        },
        bundle_bytes: args.bundle_mib << 20,
        import_bytes: args.import_mib << 20,
        json: args.json,
    };
    let report = crate::bench::run(options)?;
    show(&report, before.as_ref(), args.json)
}

/// `--compare FILE`: an earlier run's `--json`.
fn saved_report(path: &std::path::Path) -> Result<crate::bench::Report, Failed> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failed::Usage(format!("--compare {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| {
        Failed::Usage(format!(
            "--compare {}: not a `diagproxy bench --json` report: {e}",
            path.display()
        ))
    })
}

/// The table (or the JSON), then the comparison with `before` (on stderr under --json,
/// where the report owns stdout).
fn show(
    report: &crate::bench::Report,
    before: Option<&crate::bench::Report>,
    json: bool,
) -> Result<(), Failed> {
    if json {
        let text = serde_json::to_string_pretty(report).map_err(|e| e.to_string())?;
        println!("{text}");
    } else {
        print!("{}", crate::bench::table(report));
    }
    if let Some(before) = before {
        let text = crate::bench::compare(report, before);
        if json {
            eprint!("{text}");
        } else {
            print!("{text}");
        }
    }
    Ok(())
}

fn bench_group(group: BenchGroup) -> Group {
    match group {
        BenchGroup::Memory => Group::Memory,
        BenchGroup::Forward => Group::Forward,
        BenchGroup::Tunnel => Group::Tunnel,
        BenchGroup::Intercept => Group::Intercept,
        BenchGroup::Pac => Group::Pac,
        BenchGroup::Check => Group::Check,
        BenchGroup::Auth => Group::Auth,
        BenchGroup::Report => Group::Report,
        BenchGroup::Bundle => Group::Bundle,
        BenchGroup::Import => Group::Import,
    }
}

/// The configuration `diagproxy run` would have with no flags but DIRECT: what the PAC
/// lookups need (the resolver and its limits).
fn route_config(resolve: &[String]) -> Result<crate::config::Config, Failed> {
    let usage = |e: crate::config::ConfigError| Failed::Usage(e.to_string());
    let defaults = super::RunArgs::defaults().map_err(usage)?.route;
    let route = super::RouteArgs {
        upstream_proxy: "direct".into(),
        resolve: resolve.to_vec(),
        ..defaults
    };
    super::config::route_config(&route, None, [None, None]).map_err(usage)
}

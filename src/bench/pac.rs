//! What a PAC lookup costs diagproxy: a script of [`RULES`] rules (a `shExpMatch` and a
//! `dnsDomainIs` each, as corporate PAC files are written) asked for hosts that match none
//! of them (the slowest case: every rule runs), first for new hosts, then again from the
//! per-host cache. In process: no proxy, no network.

use std::time::{Duration, Instant};

use super::Row;
use crate::config::Config;
use crate::upstream::pac::{load, PacFile};
use crate::upstream::route::Hop;
use crate::upstream::router::Router;

/// Rules in the benchmark's script.
pub const RULES: usize = 200;
/// Distinct hosts looked up.
const HOSTS: usize = 200;
/// Times each host is looked up again from the cache.
const REPEATS: usize = 50;

/// A PAC of `rules` rules, each naming its own proxy.
pub fn script(rules: usize) -> String {
    let mut text = String::from("function FindProxyForURL(url, host) {\n");
    for i in 0..rules {
        text.push_str(&format!(
            "  if (shExpMatch(host, \"*.site{i}.example\") || dnsDomainIs(host, \".corp{i}.test\")) return \"PROXY proxy{i}.corp.test:3128\";\n"
        ));
    }
    text.push_str("  return \"DIRECT\";\n}\n");
    text
}

pub async fn rows(config: &Config) -> Result<Vec<Row>, String> {
    let source = script(RULES);
    let file = PacFile {
        url: format!("(benchmark: {RULES} rules)"),
        status: None,
        content_type: None,
        size: source.len(),
        sha256: String::new(),
        text: None,
    };
    let pac = load::start(source, file, config)
        .await
        .map_err(|(e, _)| e.to_string())?;
    let router = Router::with_pac(Ok(pac), "(benchmark)", "diagproxy bench");
    let host = |i: usize| format!("h{i}.unmatched.test");
    let mut first = Vec::with_capacity(HOSTS);
    for i in 0..HOSTS {
        first.push(timed(&router, &host(i)).await?);
    }
    let mut cached = Vec::with_capacity(HOSTS * REPEATS);
    for _ in 0..REPEATS {
        for i in 0..HOSTS {
            cached.push(timed(&router, &host(i)).await?);
        }
    }
    Ok(vec![
        row(
            &format!("PAC ({RULES} rules): first lookup of a host"),
            first,
        ),
        row(&format!("PAC ({RULES} rules): cached lookup"), cached),
    ])
}

/// One lookup's time; the answer must be DIRECT (no rule matches).
async fn timed(router: &Router, host: &str) -> Result<Duration, String> {
    let started = Instant::now();
    let route = router.route(true, host, 443, "").await;
    let took = started.elapsed();
    if route.hops != [Hop::Direct] || route.error.is_some() {
        return Err(format!(
            "PAC benchmark: {host} got {}: {:?}",
            route.describe(),
            route.error
        ));
    }
    Ok(took)
}

/// A row of times in µs: the mean, the median and the 99th percentile.
pub(super) fn row(mode: &str, mut times: Vec<Duration>) -> Row {
    times.sort_unstable();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let mean = times.iter().map(|d| us(*d)).sum::<f64>() / times.len().max(1) as f64;
    let p = |q: f64| {
        times
            .get(((times.len() as f64 * q) as usize).min(times.len().saturating_sub(1)))
            .map_or(0.0, |d| us(*d))
    };
    Row {
        mode: mode.into(),
        unit: "µs".into(),
        direct: None,
        proxy: Some(mean),
        ratio: None,
        added_us: None,
        p50_us: Some([0.0, p(0.5)]),
        p99_us: Some([0.0, p(0.99)]),
        proxy_cpu_us: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn the_benchmark_script_routes_its_own_hosts_and_not_others() {
        let config = crate::cli::config::for_tests(&[]).unwrap();
        let pac = load::start(
            script(3),
            PacFile {
                url: "t".into(),
                status: None,
                content_type: None,
                size: 0,
                sha256: String::new(),
                text: None,
            },
            &config,
        )
        .await
        .unwrap();
        let router = Router::with_pac(Ok(pac), "t", "t");
        let hit = router.route(true, "a.site2.example", 443, "").await;
        assert_eq!(hit.describe(), "PROXY proxy2.corp.test:3128");
        assert!(timed(&router, "h1.unmatched.test").await.is_ok());
        assert!(timed(&router, "x.corp0.test").await.is_err());
    }
}

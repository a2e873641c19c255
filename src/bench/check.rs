//! What a whole `diagproxy check` takes: [`HOSTS`] names of the bench's HTTPS origin (its
//! certificate covers `*.chatgpt.com`), each pinned to loopback, every stage run (DNS from
//! the pin, TCP, TLS with the chain verdict, the GET), [`RUNS`] times; the mean wall time.

use std::sync::Arc;
use std::time::Instant;

use super::world::World;
use super::Row;
use crate::check::{self, Plan};
use crate::config::Config;
use crate::tls::roots::TrustRoots;

/// Hosts in one check (the profile has about 40; 8 run at a time).
pub const HOSTS: usize = 40;
const RUNS: usize = 3;

pub async fn rows(world: &World, config: &Config) -> Result<Vec<Row>, String> {
    let (config, targets) = pinned(world, config)?;
    let config = Arc::new(config);
    let plan = Plan {
        targets,
        voice: None,
        budget: check::STAGE_BUDGET,
        total: crate::check::TOTAL_BUDGET,
    };
    let mut total = 0.0;
    for _ in 0..RUNS {
        let started = Instant::now();
        let report = check::run(&config, &plan, |_, _, _| {}).await;
        total += started.elapsed().as_secs_f64() * 1e3;
        if report.failing > 0 {
            return Err(format!(
                "check benchmark: {} hosts failed: {}",
                report.failing, report.verdict
            ));
        }
    }
    Ok(vec![Row {
        mode: format!("check: {HOSTS} hosts, every stage (loopback)"),
        unit: "ms".into(),
        direct: None,
        proxy: Some(total / RUNS as f64),
        ratio: None,
        added_us: None,
        p50_us: None,
        p99_us: None,
        proxy_cpu_us: None,
    }])
}

/// `config` trusting the bench origin's root, with [`HOSTS`] names under `chatgpt.com`
/// pinned to it; the targets (`hN.chatgpt.com:PORT`).
pub fn pinned(
    world: &World,
    config: &Config,
) -> Result<(Config, Vec<check::http::Target>), String> {
    let root = world.dir.path().join("origin-root.pem");
    std::fs::write(&root, &world.origin_root).map_err(|e| e.to_string())?;
    let port = world.https.port();
    let names: Vec<String> = (0..HOSTS).map(|i| format!("h{i}.chatgpt.com")).collect();
    let mut resolve = config.resolve.clone();
    resolve.extend(names.iter().map(|h| ((h.clone(), port), world.https.ip())));
    let config = Config {
        roots: TrustRoots::load(Some(&root), Some(&root))?,
        resolve,
        ..config.clone()
    };
    let targets = names
        .into_iter()
        .map(|host| check::target(&config, host, port))
        .collect();
    Ok((config, targets))
}

//! What the exporter costs: one Prometheus round over the whole bench profile — a `/probe`
//! per host ([`check::HOSTS`](super::check::HOSTS) names of the bench's HTTPS origin, all
//! scraped at once as Prometheus scrapes a job's targets, [`MAX_PROBES`] checked at a time)
//! — against an exporter served in this process; and the idle memory of a `diagproxy
//! exporter` started as a child, read from `/proc/PID/status` once it listens.

use std::collections::HashMap;
use std::io::BufRead;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::world::World;
use super::Row;
use crate::config::Config;
use crate::exporter::{Exporter, Module, MAX_PROBES};

const ROUNDS: usize = 3;

pub async fn rows(world: &World, config: &Config) -> Result<Vec<Row>, String> {
    let (config, targets) = super::check::pinned(world, config)?;
    let module = Module {
        config,
        stage_timeout: crate::check::STAGE_BUDGET,
        voice: None,
    };
    let exporter = Exporter {
        modules: HashMap::from([("default".to_string(), module)]),
        auth: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::exporter::run(listener, exporter, async {
        let _ = stopped.await;
    }));
    let mut total = 0.0;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let scrapes = targets
            .iter()
            .map(|t| tokio::spawn(scrape(addr, format!("{}:{}", t.host, t.port))));
        for scrape in scrapes.collect::<Vec<_>>() {
            scrape.await.map_err(|e| e.to_string())??;
        }
        total += started.elapsed().as_secs_f64() * 1e3;
    }
    let _ = stop.send(());
    let _ = server.await;
    Ok(vec![
        super::report::row(
            &format!(
                "exporter: {} /probe scrapes at once ({MAX_PROBES} checked at a time)",
                targets.len()
            ),
            "ms",
            total / ROUNDS as f64,
        ),
        super::report::row("exporter: idle memory (RSS)", "MiB", idle_rss_mib()?),
    ])
}

/// One `/probe`, which must answer `probe_success 1`.
async fn scrape(addr: std::net::SocketAddr, target: String) -> Result<(), String> {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let request =
        format!("GET /probe?target={target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .await
        .map_err(|e| e.to_string())?;
    if !answer.contains("\nprobe_success 1\n") {
        return Err(format!(
            "exporter benchmark: /probe?target={target}: {answer}"
        ));
    }
    Ok(())
}

/// `diagproxy exporter` started, its RSS read once its banner says it listens, stopped.
fn idle_rss_mib() -> Result<f64, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = std::process::Command::new(exe)
        .args([
            "exporter",
            "--listen",
            "127.0.0.1:0",
            "--upstream-proxy",
            "direct",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting diagproxy exporter: {e}"))?;
    let listening = child.stderr.take().is_some_and(|stderr| {
        std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.contains("listening on"))
    });
    let kib = super::load::status_kib(child.id(), "VmRSS:");
    let _ = child.kill();
    let _ = child.wait();
    match (listening, kib) {
        (true, Some(kib)) => Ok(kib as f64 / 1024.0),
        _ => Err("exporter benchmark: the exporter did not start".into()),
    }
}

//! What rebuilding the reports costs as a session grows: sessions of [`SIZES`] request
//! events written to a temporary folder, then `diagproxy report` run on each as a child
//! process (HAR, HTML and Markdown, as at the end of `run`): its wall time and its peak
//! memory (`ru_maxrss` of that child alone). Time should grow with the events, memory not.

use std::io::Write;
use std::time::Instant;

use super::Row;

/// Events per session measured (ten times apart, so linear time reads at a glance).
pub const SIZES: [usize; 2] = [20_000, 200_000];
/// Hosts the requests are spread over.
const HOSTS: usize = 50;

pub fn rows() -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for n in SIZES {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        write_session(dir.path(), n).map_err(|e| format!("writing a {n}-event session: {e}"))?;
        let (secs, peak_mib) = report(dir.path())?;
        rows.push(row(&format!("report of {n} events: time"), "s", secs));
        rows.push(row(
            &format!("report of {n} events: peak memory"),
            "MiB",
            peak_mib,
        ));
    }
    Ok(rows)
}

pub(super) fn row(mode: &str, unit: &str, value: f64) -> Row {
    Row {
        mode: mode.into(),
        unit: unit.into(),
        direct: None,
        proxy: Some(value),
        ratio: None,
        added_us: None,
        p50_us: None,
        p99_us: None,
        proxy_cpu_us: None,
    }
}

/// `events.jsonl` of `n` requests to [`HOSTS`] hosts, every 100th refused, each URL its own.
fn write_session(dir: &std::path::Path, n: usize) -> std::io::Result<()> {
    let file = std::fs::File::create(dir.join("events.jsonl"))?;
    let mut out = std::io::BufWriter::new(file);
    writeln!(
        out,
        r#"{{"type":"session_started","id":"bench","started_at":"2026-12-02T09:00:00.000Z","listen":"127.0.0.1:8080","upstream_proxy":null,"profile":"built-in:chatgpt","diagproxy":"bench","os":"linux","max_hosts":2000,"resolve":[],"include_secrets":false}}"#
    )?;
    for i in 0..n {
        let host = format!("h{}.chatgpt.com", i % HOSTS);
        let (status, failure) = if i % 100 == 99 {
            (
                "null",
                r#"{"kind":"connect_refused","side":"upstream","detail":"TCP connect refused"}"#,
            )
        } else {
            ("200", "null")
        };
        let (s, ms) = (i / 1000, i % 1000);
        writeln!(
            out,
            r#"{{"type":"request","ts":"2026-12-02T09:{:02}:{:02}.{ms:03}Z","method":"GET","url":"http://{host}/item/{i}?q=1","host":"{host}","port":80,"allowlist":"*.chatgpt.com","server_ip":"127.0.0.1","downstream":{{"addr":"127.0.0.1:40000","user_agent":"bench/1"}},"status":{status},"content_type":"application/json","reused":true,"timings":{{"dns_ms":null,"connect_ms":null,"wait_ms":0.4,"receive_ms":0.1,"total_ms":0.6}},"bytes_up":0,"bytes_down":512,"complete":true,"headers":{{"request":[["host","{host}"],["accept","*/*"]],"response":[["content-type","application/json"]]}},"findings":[],"failure":{failure}}}"#,
            (s / 60) % 60,
            s % 60
        )?;
    }
    writeln!(
        out,
        r#"{{"type":"session_ended","ended_at":"2026-12-02T10:00:00.000Z","unfinished":0}}"#
    )?;
    out.flush()
}

/// Runs `diagproxy report DIR`: its wall time in s and its peak RSS in MiB.
fn report(dir: &std::path::Path) -> Result<(f64, f64), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let child = std::process::Command::new(exe)
        .arg("report")
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting diagproxy report: {e}"))?;
    let (status, peak_kib) = super::load::wait_with_rss(child).map_err(|e| e.to_string())?;
    let secs = started.elapsed().as_secs_f64();
    if !status.success() {
        return Err(format!(
            "diagproxy report {} failed ({status})",
            dir.display()
        ));
    }
    Ok((secs, peak_kib as f64 / 1024.0))
}

//! What bundling costs as a session grows: a session folder with `--bundle-mib` (1 GiB by
//! default, [`SIZE`]) of
//! `events.jsonl` written to a temporary folder, then `diagproxy bundle --yes` run on it as a
//! child process: seconds per GiB and its peak memory (`ru_maxrss` of that child alone),
//! which must not grow with the file.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use super::Row;

/// Bytes of events the benchmark bundles by default.
pub const SIZE: u64 = 1 << 30;

pub fn rows(bytes: u64) -> Result<Vec<Row>, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let session = dir.path().join("session");
    std::fs::create_dir(&session).map_err(|e| e.to_string())?;
    let size = synthetic_session(&session, bytes).map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let child = std::process::Command::new(exe)
        .args(["bundle", "--yes", "-o"])
        .arg(dir.path().join("bundle.zip"))
        .arg(&session)
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("starting diagproxy bundle: {e}"))?;
    let (status, peak_kib) = super::load::wait_with_rss(child).map_err(|e| e.to_string())?;
    let secs = started.elapsed().as_secs_f64();
    if !status.success() {
        return Err(format!("diagproxy bundle failed ({status})"));
    }
    let gib = size as f64 / (1u64 << 30) as f64;
    Ok(vec![
        super::report::row("bundle of a long session: time", "s/GiB", secs / gib),
        super::report::row(
            "bundle of a long session: peak memory",
            "MiB",
            peak_kib as f64 / 1024.0,
        ),
    ])
}

/// A session folder whose `events.jsonl` holds about `bytes` of request events (each with a
/// redacted cookie), and a small `summary.json`; returns the events' size.
pub fn synthetic_session(dir: &Path, bytes: u64) -> std::io::Result<u64> {
    let file = crate::files::create_private(&dir.join("events.jsonl"))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut written = 0u64;
    let mut i = 0u64;
    while written < bytes {
        let host = format!("h{}.chatgpt.com", i % 50);
        let line = format!(
            r#"{{"type":"request","ts":"2026-12-02T09:00:00.000Z","method":"GET","url":"http://{host}/item/{i}?q=1","host":"{host}","port":80,"status":200,"timings":{{"total_ms":0.6}},"bytes_down":512,"complete":true,"headers":{{"request":[["host","{host}"],["cookie","REDACTED"]],"response":[["content-type","application/json"]]}},"findings":[]}}"#
        );
        writeln!(out, "{line}")?;
        written += line.len() as u64 + 1;
        i += 1;
    }
    out.flush()?;
    std::fs::write(
        dir.join("summary.json"),
        r#"{"version":1,"verdict":"ok","session":{"include_secrets":false},"hosts":[]}"#,
    )?;
    Ok(written)
}

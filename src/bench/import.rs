//! What importing a browser's NetLog costs as the file grows: a synthetic NetLog of
//! `--import-mib` (200 MiB by default, [`SIZE`]) written as Chromium writes one — the
//! constants, then one event per line: page loads with their request and response headers
//! and body bytes (Everything mode), sockets with the bytes they read, and the resolver and
//! socket events an import skips, in about the proportions of a real capture — then
//! `diagproxy import` run on it as a child process: MB/s end to end (reading, assembling,
//! writing the session folder and reports) and its peak memory (`ru_maxrss` of that child
//! alone), which must not grow with the file. Goals: ≥ 100 MB/s, ≤ 64 MiB.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use super::Row;

/// Bytes of NetLog imported by default.
pub const SIZE: u64 = 200 << 20;

/// The event types the synthetic file uses, numbered as the file's own constants say.
const TYPES: &[&str] = &[
    "REQUEST_ALIVE",
    "URL_REQUEST_START_JOB",
    "HTTP_TRANSACTION_SEND_REQUEST_HEADERS",
    "HTTP_TRANSACTION_READ_RESPONSE_HEADERS",
    "URL_REQUEST_JOB_FILTERED_BYTES_READ",
    "SOCKET_ALIVE",
    "SOCKET_BYTES_RECEIVED",
    "DNS_TRANSACTION",
    "UDP_CONNECT",
    "HOST_RESOLVER_MANAGER_REQUEST",
];

pub fn rows(bytes: u64) -> Result<Vec<Row>, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let file = dir.path().join("netlog.json");
    let size = synthetic_netlog(&file, bytes).map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let child = std::process::Command::new(exe)
        .arg("import")
        .arg(&file)
        .arg("--session-dir")
        .arg(dir.path().join("session"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("starting diagproxy import: {e}"))?;
    let (status, peak_kib) = super::load::wait_with_rss(child).map_err(|e| e.to_string())?;
    let secs = started.elapsed().as_secs_f64();
    // 0: nothing failed; 2: the synthetic file's failed requests were named. Both are reads.
    if !matches!(status.code(), Some(0 | 2)) {
        return Err(format!("diagproxy import failed ({status})"));
    }
    let mib = size as f64 / (1u64 << 20) as f64;
    Ok(vec![
        super::report::row(
            &format!("import of a {mib:.0} MiB NetLog: speed"),
            "MB/s",
            size as f64 / 1e6 / secs,
        ),
        super::report::row(
            &format!("import of a {mib:.0} MiB NetLog: peak memory"),
            "MiB",
            peak_kib as f64 / 1024.0,
        ),
    ])
}

/// Writes a NetLog of about `bytes` to `path`; returns its size.
pub fn synthetic_netlog(path: &Path, bytes: u64) -> std::io::Result<u64> {
    let file = crate::files::create_private(path)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let types: String = TYPES
        .iter()
        .enumerate()
        .map(|(i, name)| format!("\"{name}\":{}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    writeln!(
        out,
        r#"{{"constants":{{"clientInfo":{{"name":"Chromium","version":"156.0.0.0"}},"logCaptureMode":"Everything","logEventPhase":{{"PHASE_BEGIN":1,"PHASE_END":2,"PHASE_NONE":0}},"logEventTypes":{{{types}}},"netError":{{"ERR_CONNECTION_RESET":-101,"ERR_ABORTED":-3}},"timeTickOffset":"1765000000000"}},"#
    )?;
    writeln!(out, "\"events\": [")?;
    let body = "PGh0bWw+PGJvZHk+aGVsbG88L2JvZHk+PC9odG1sPg==".repeat(16);
    let mut written = 0u64;
    let mut visit = 0u64;
    while written < bytes {
        for line in visit_events(visit, &body) {
            out.write_all(line.as_bytes())?;
            out.write_all(b",\n")?;
            written += line.len() as u64 + 2;
        }
        visit += 1;
    }
    // The last event, then the closing of the list and the object (a finished capture).
    writeln!(
        out,
        r#"{{"phase":0,"source":{{"id":1,"type":0}},"time":"1","type":8}}]}}"#
    )?;
    out.flush()?;
    Ok(written)
}

/// One page load: the events Chromium writes for it, an import reads some, skips most (a real
/// capture, the tests' Chromium visit, has one request in about 80 events; this one in 45).
/// One in 50 is reset.
fn visit_events(visit: u64, body: &str) -> Vec<String> {
    let all = request_events(visit, body);
    let (resolver, request) = all.split_at(3);
    let mut events = Vec::with_capacity(resolver.len() * 12 + request.len());
    for _ in 0..12 {
        events.extend_from_slice(resolver);
    }
    events.extend_from_slice(request);
    events
}

/// The resolver's three events (skipped by an import), then the request's.
fn request_events(visit: u64, body: &str) -> Vec<String> {
    let (request, socket, dns) = (visit * 3 + 10, visit * 3 + 11, visit * 3 + 12);
    let host = format!("h{}.chatgpt.com", visit % 50);
    let t = visit;
    let source = |id: u64, kind: u32| {
        format!(r#""source":{{"id":{id},"start_time":"{t}","type":{kind}}},"time":"{t}""#)
    };
    let end = if visit % 50 == 3 {
        r#"{"net_error":-101}"#
    } else {
        "{}"
    };
    vec![
        format!(
            r#"{{"params":{{"allow_dns_over_https_upgrade":true,"append_to_multi_label_name":true,"attempts":2,"hostname":"{host}","query_type":"A","secure":false}},"phase":1,{},"type":8}}"#,
            source(dns, 17)
        ),
        format!(
            r#"{{"params":{{"address":"127.0.0.1:53","bound_network":-1}},"phase":0,{},"type":9}}"#,
            source(dns, 17)
        ),
        format!(
            r#"{{"params":{{"allowed_bad_certs":[],"host":"{host}","network_anonymization_key":"https://chatgpt.com same_site"}},"phase":1,{},"type":10}}"#,
            source(dns, 17)
        ),
        format!(
            r#"{{"params":{{}},"phase":1,{},"type":1}}"#,
            source(request, 1)
        ),
        format!(
            r#"{{"params":{{"initiator":"not an origin","load_flags":0,"method":"GET","network_isolation_key":"https://chatgpt.com https://chatgpt.com","priority":"HIGHEST","site_for_cookies":"SiteForCookies: {{site=https://chatgpt.com; schemefully_same=true}}","traffic_annotation":63171670,"url":"https://{host}/backend-api/item/{visit}?q=1"}},"phase":1,{},"type":2}}"#,
            source(request, 1)
        ),
        format!(
            r#"{{"params":{{"source_dependency":{{"id":{request},"type":1}}}},"phase":1,{},"type":6}}"#,
            source(socket, 8)
        ),
        format!(
            r#"{{"params":{{"headers":["Host: {host}","Connection: keep-alive","User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36","Accept: */*","Accept-Encoding: gzip, deflate, br, zstd","Accept-Language: en-US,en;q=0.9","Cookie: [1024 bytes were stripped]"],"line":"GET /backend-api/item/{visit}?q=1 HTTP/1.1\r\n"}},"phase":0,{},"type":3}}"#,
            source(request, 1)
        ),
        format!(
            r#"{{"params":{{"byte_count":1024,"bytes":"{body}"}},"phase":0,{},"type":7}}"#,
            source(socket, 8)
        ),
        format!(
            r#"{{"params":{{"headers":["HTTP/1.1 200 OK","content-type: application/json","content-length: 704","cache-control: no-store","cf-ray: 8f2b1c3d4e5f6a7b-FRA","server: cloudflare","date: Sun, 06 Dec 2026 10:00:00 GMT"]}},"phase":0,{},"type":4}}"#,
            source(request, 1)
        ),
        format!(
            r#"{{"params":{{"byte_count":704,"bytes":"{body}"}},"phase":0,{},"type":5}}"#,
            source(request, 1)
        ),
        format!(
            r#"{{"params":{end},"phase":2,{},"type":1}}"#,
            source(request, 1)
        ),
        format!(r#"{{"phase":2,{},"type":6}}"#, source(socket, 8)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_synthetic_netlog_imports_as_requests_on_chatgpt_hosts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.json");
        let size = synthetic_netlog(&path, 256 << 10).unwrap();
        assert!(size >= 256 << 10);
        let ctx = crate::import::Context {
            profile: std::sync::Arc::new(crate::profile::Profile::builtin()),
            public_roots: std::sync::Arc::new(rustls::RootCertStore::empty()),
            system_roots: std::sync::Arc::new(rustls::RootCertStore::empty()),
        };
        let mut requests = 0;
        let mut failed = 0;
        let source = crate::import::read(&path, &ctx, &mut |e| {
            if let crate::session::Event::Request(r) = e {
                requests += 1;
                failed += usize::from(r.failure.is_some());
                assert!(r.host.ends_with(".chatgpt.com"), "{}", r.host);
            }
        })
        .unwrap();
        assert!(source.stopped.is_none(), "{:?}", source.stopped);
        assert!(requests > 10, "{requests}");
        assert!(failed >= 1, "one visit in 50 is reset");
    }
}

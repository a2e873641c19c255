//! The soak run: minutes of mixed load against the built binary — plain HTTP forwarded,
//! CONNECT tunnels carrying bytes, intercepted HTTPS requests — with 1,000 idle tunnels held
//! open throughout, the proxy's RSS sampled every second. It passes when memory stops
//! growing after the warm-up and every request and tunnel the load made is in `events.jsonl`.
//!
//! Not part of `cargo test` (it is `#[ignore]`d): run it with
//! `DIAGPROXY_SOAK_SECS=300 cargo test --release --test soak -- --ignored --nocapture`
//! (default 60 s).

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// One forwarded GET on a new connection; true when answered 200.
async fn forward(proxy: String, origin: std::net::SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect(&proxy).await else {
        return false;
    };
    let request = format!("GET http://{origin}/hello HTTP/1.1\r\nConnection: close\r\n\r\n");
    let mut answer = Vec::new();
    s.write_all(request.as_bytes()).await.is_ok()
        && s.read_to_end(&mut answer).await.is_ok()
        && answer.starts_with(b"HTTP/1.1 200")
}

/// One tunnel to the echo server carrying 16 KiB each way; true when it all came back.
async fn tunnel(proxy: &str, echo: std::net::SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect(proxy).await else {
        return false;
    };
    let head = format!("CONNECT {echo} HTTP/1.1\r\nHost: {echo}\r\n\r\n");
    if s.write_all(head.as_bytes()).await.is_err() {
        return false;
    }
    let answer = read_head(&mut s).await;
    if !answer.starts_with("HTTP/1.1 200") {
        return false;
    }
    let data = vec![7u8; 16 * 1024];
    let mut back = vec![0u8; data.len()];
    s.write_all(&data).await.is_ok() && s.read_exact(&mut back).await.is_ok() && back == data
}

#[test]
#[ignore = "minutes long: run by hand (see the file's doc)"]
fn soak() {
    let secs: u64 = std::env::var("DIAGPROXY_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let origin = runtime.block_on(origin());
    let echo = runtime.block_on(echo_server());
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("session");
    // Interception of chatgpt.com, pinned to a loopback HTTPS origin.
    let (ca_dir, ca_pem) = local_ca(dir.path());
    let public = TestCa::root("Soak Public Root", "Public CA Inc.");
    let (leaf, key) = public.leaf(&["chatgpt.com"]);
    let tls = runtime.block_on(https_origin(vec![leaf], key));
    let roots = write_file(dir.path(), "public.pem", &public.pem());
    let pin = format!("chatgpt.com:{}:127.0.0.1", tls.port());
    let args: Vec<&std::ffi::OsStr> = vec![
        "--session-dir".as_ref(),
        session.as_os_str(),
        "-q".as_ref(),
        "--intercept".as_ref(),
        "profile".as_ref(),
        "--ca-dir".as_ref(),
        ca_dir.as_os_str(),
        "--public-roots".as_ref(),
        roots.as_ref(),
        "--system-roots".as_ref(),
        roots.as_ref(),
        "--resolve".as_ref(),
        pin.as_ref(),
    ];
    let Running {
        child, addr: proxy, ..
    } = run_binary(&args);
    let pid = child.id();
    let mut child = KillOnDrop(child);

    let (sent, samples) = runtime.block_on(async {
        // 1,000 idle tunnels, held to the end.
        let mut idle = Vec::new();
        for _ in 0..1000 {
            let mut s = TcpStream::connect(&proxy).await.unwrap();
            let head = format!("CONNECT {echo} HTTP/1.1\r\nHost: {echo}\r\n\r\n");
            s.write_all(head.as_bytes()).await.unwrap();
            assert!(read_head(&mut s).await.starts_with("HTTP/1.1 200"));
            idle.push(s);
        }
        let started = Instant::now();
        let mut samples = Vec::new();
        let (mut requests, mut tunnels, mut intercepted) = (0u64, 0u64, 0u64);
        let mut next_sample = Instant::now();
        while started.elapsed() < Duration::from_secs(secs) {
            let batch: Vec<_> = (0..16).map(|_| forward(proxy.clone(), origin)).collect();
            for ok in futures_join(batch).await {
                assert!(ok, "a forwarded request failed under load");
                requests += 1;
            }
            assert!(tunnel(&proxy, echo).await, "a tunnel failed under load");
            tunnels += 1;
            let addr: std::net::SocketAddr = proxy.parse().unwrap();
            let answer = https_through(addr, "chatgpt.com", tls.port(), &ca_pem).await;
            assert!(
                answer.starts_with("HTTP/1.1 "),
                "an intercepted request failed: {answer}"
            );
            intercepted += 1;
            if Instant::now() >= next_sample {
                samples.push((started.elapsed().as_secs(), rss_kib(pid)));
                next_sample += Duration::from_secs(1);
            }
        }
        drop(idle);
        // An intercepted request is a request event and its connection a tunnel event.
        (
            (requests + intercepted, tunnels + intercepted + 1000),
            samples,
        )
    });
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    assert!(child.0.wait().unwrap().success());

    let events = std::fs::read_to_string(session.join("events.jsonl")).unwrap();
    let recorded_requests = events.matches("\"type\":\"request\"").count() as u64;
    let recorded_tunnels = events.matches("\"type\":\"tunnel\"").count() as u64;
    println!(
        "soak {secs}s: {} requests, {} tunnels; recorded {recorded_requests} and {recorded_tunnels}",
        sent.0, sent.1
    );
    println!("RSS KiB by second: {samples:?}");
    assert_eq!(
        recorded_requests, sent.0,
        "every request is in events.jsonl"
    );
    assert_eq!(recorded_tunnels, sent.1, "every tunnel is in events.jsonl");
    // After the first fifth (warm-up: 1,000 tunnels, pools, caches), RSS stays within 15 %.
    let warm: Vec<u64> = samples
        .iter()
        .filter(|(t, _)| *t >= secs / 5)
        .map(|(_, r)| *r)
        .collect();
    if let (Some(first), Some(max)) = (warm.first(), warm.iter().max()) {
        assert!(
            *max as f64 <= *first as f64 * 1.15,
            "RSS grew after warm-up: {first} → {max} KiB"
        );
    }
}

/// The proxy, killed if the test fails before it is stopped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
    }
}

/// Awaits every future of `batch`, concurrently.
async fn futures_join<F: std::future::Future<Output = bool> + Send + 'static>(
    batch: Vec<F>,
) -> Vec<bool> {
    let handles: Vec<_> = batch.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap_or(false));
    }
    out
}

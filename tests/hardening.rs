//! A hostile network and a careless user: what reaches a shell, a terminal or an origin is
//! made safe, whatever the request, certificate or ClientHello carried.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn a_reproduce_command_pasted_into_a_shell_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("pwned");
    // A corporate proxy that answers with a block page: the finding carries the request's
    // own URL in its reproduce command.
    let (corp, _) = corporate_proxy(CorpMode::Block).await;
    let proxy = Proxy::start(&["--upstream-proxy", &format!("http://{corp}")]).await;
    let url = format!(
        "http://chatgpt.com/x'$(touch${{IFS}}{})'err",
        marker.display()
    );
    let request = format!("GET {url} HTTP/1.1\r\nHost: chatgpt.com\r\nConnection: close\r\n\r\n");
    let answer = raw_exchange(proxy.addr, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    let session = proxy.stop().await;

    let request = &session.events_of("request")[0];
    let command = request["findings"][0]["reproduce"]
        .as_str()
        .expect("a reproduce command for the block page")
        .to_string();
    assert!(command.starts_with("curl "), "{command}");
    // Run it as pasted, with `curl` a shell function that prints its last argument.
    let script = format!("curl() {{ for a; do last=$a; done; printf %s \"$last\"; }}; {command}");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("sh");
    assert!(!marker.exists(), "the command ran `touch`: {command}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), url, "{command}");
}

#[tokio::test]
async fn a_host_that_is_neither_a_name_nor_an_address_is_refused_with_400() {
    let proxy = Proxy::start(&[]).await;
    let (_, head) = raw_connect(proxy.addr, "x$(id)'y.invalid:443", "").await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert!(
        head.contains("neither a DNS name nor an IP address"),
        "{head}"
    );
    let plain = raw_exchange(
        proxy.addr,
        b"GET http://x$(id)y.invalid/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(plain.starts_with("HTTP/1.1 400"), "{plain}");
    let session = proxy.stop().await;
    let refused = session.events_of("refused");
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(session.events_of("tunnel").is_empty());
}

#[tokio::test]
async fn userinfo_is_neither_forwarded_nor_recorded_and_the_url_names_the_host() {
    let origin = origin().await;
    let proxy = Proxy::start(&[]).await;
    // Lean path (simple GET) and hyper path (HTTP/1.0 goes there): the same rules.
    for version in ["HTTP/1.1", "HTTP/1.0"] {
        let request = format!(
            "GET http://user:s3cret@{origin}/headers {version}\r\nHost: elsewhere.example\r\nConnection: close\r\n\r\n"
        );
        let answer = raw_exchange(proxy.addr, request.as_bytes()).await;
        assert!(answer.contains(" 200 "), "{answer}");
        let lower = answer.to_ascii_lowercase();
        assert!(
            lower.contains(&format!("host: {origin}")),
            "the origin must get the URL's authority as Host ({version}): {answer}"
        );
        assert!(!lower.contains("elsewhere.example"), "{answer}");
        assert!(!answer.contains("s3cret"), "{answer}");
    }
    let session = proxy.stop().await;
    let requests = session.events_of("request");
    assert_eq!(requests.len(), 2);
    for r in requests {
        let url = r["url"].as_str().unwrap();
        assert_eq!(url, format!("http://{origin}/headers"));
    }
    let files = std::fs::read_to_string(session.folder.path().join("session/events.jsonl"))
        .unwrap()
        + &std::fs::read_to_string(session.folder.path().join("session/session.har")).unwrap();
    assert!(!files.contains("s3cret"));
}

#[tokio::test]
async fn an_sni_that_is_not_a_dns_name_is_not_recorded_as_one() {
    let echo = echo_server().await;
    let proxy = Proxy::start(&[]).await;
    let (mut stream, head) = raw_connect(proxy.addr, &echo.to_string(), "").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let evil = "evil\x1b]0;PWNED\x07.com";
    let hello = diagproxy::tls::sniff::example_hello(Some(evil), &["h2"]);
    stream.write_all(&hello).await.unwrap();
    let _ = stream.shutdown().await;
    let tunnels = proxy.wait_events("tunnel", 1).await;
    assert_eq!(tunnels[0]["payload"], "tls", "{:?}", tunnels[0]);
    assert!(tunnels[0]["sni"].is_null(), "{:?}", tunnels[0]);
    drop(stream);
    tokio::time::sleep(Duration::from_millis(10)).await;
    let session = proxy.stop().await;
    assert!(session.events_of("tls_check").is_empty());
}

#[test]
fn usage_errors_never_echo_a_password_and_bad_days_exit_64() {
    let out = diagproxy()
        .args([
            "run",
            "--upstream-proxy",
            "http://u:PW-s3cret@corp:notaport",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("bad host or port"), "{stderr}");
    assert!(!stderr.contains("PW-s3cret"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    for days in ["3000000", "0"] {
        let out = diagproxy()
            .args(["ca", "init", "--days", days, "--ca-dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "--days {days}: {stderr}");
        assert!(stderr.contains("3650"), "{stderr}");
    }
    assert!(!dir.path().join("ca.pem").exists());
}

#[test]
fn sighup_ends_the_session_like_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("session");
    let Running {
        mut child,
        addr,
        lines,
        ..
    } = run_binary(&["--session-dir".as_ref(), session.as_os_str()]);
    failing_requests(&addr, 1);
    let status = std::process::Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    let summary = std::fs::read_to_string(session.join("summary.json")).unwrap();
    assert!(summary.contains("\"ended_at\": \""), "{summary}");
    assert!(session.join("report.html").exists());
    // stderr is a pipe here, not a terminal: no colour codes in the live log or the table.
    let log: Vec<String> = lines.iter().collect();
    let log = log.join("\n");
    assert!(
        log.contains("FAILED dns_failed") && log.contains("hosts seen"),
        "{log}"
    );
    assert!(!log.contains('\x1b'), "{log:?}");
}

#[tokio::test]
async fn the_proxys_pages_refuse_a_rebinding_host() {
    let proxy = Proxy::start(&[]).await;
    for (host, expected) in [
        ("rebind.attacker.test".to_string(), "HTTP/1.1 421"),
        (proxy.addr.to_string(), "HTTP/1.1 200"),
        (format!("localhost:{}", proxy.addr.port()), "HTTP/1.1 200"),
    ] {
        for path in ["/", "/summary.json"] {
            let request = format!(
                "GET {path} HTTP/1.1\r\nHost: {host}\r\nX-Diagproxy-Token: {LIVE_TOKEN}\r\nConnection: close\r\n\r\n"
            );
            let answer = raw_exchange(proxy.addr, request.as_bytes()).await;
            assert!(answer.starts_with(expected), "{host} {path}: {answer}");
        }
    }
    proxy.stop().await;
}

#[tokio::test]
async fn proxy_credentials_take_the_scheme_in_any_case() {
    let origin = origin().await;
    let proxy = Proxy::start(&["--proxy-auth", "user:pass"]).await;
    for (auth, expected) in [
        ("basic dXNlcjpwYXNz", "HTTP/1.1 200"),
        ("BASIC dXNlcjpwYXNz", "HTTP/1.1 200"),
        ("Basic dXNlcjpwYXNa", "HTTP/1.1 407"),
    ] {
        let request = format!(
            "GET http://{origin}/hello HTTP/1.1\r\nProxy-Authorization: {auth}\r\nConnection: close\r\n\r\n"
        );
        let answer = raw_exchange(proxy.addr, request.as_bytes()).await;
        assert!(answer.starts_with(expected), "{auth}: {answer}");
    }
    proxy.stop().await;
}

/// Waits (at most 10 s) for the proxy to close `stream`.
async fn closed_by_proxy(stream: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 256];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue, // an answer to an earlier request: read on
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn slow_heads_and_idle_connections_are_closed_after_the_header_timeout() {
    let origin = origin().await;
    let proxy = Proxy::start(&["--header-timeout", "300ms"]).await;
    // Lean path: half a head, then nothing (slowloris).
    let mut slow = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    slow.write_all(b"GET http://127.0.0.1/ HTTP/1.1\r\nX-Slow: ")
        .await
        .unwrap();
    // hyper path (a connection that starts with C): half a CONNECT.
    let mut connect = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    connect
        .write_all(b"CONNECT chatgpt.com:443 HTTP/1.1\r\n")
        .await
        .unwrap();
    // Keep-alive: one whole request answered, then idle.
    let mut idle = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let request = format!("GET http://{origin}/hello HTTP/1.1\r\nHost: {origin}\r\n\r\n");
    idle.write_all(request.as_bytes()).await.unwrap();
    for (name, stream) in [
        ("slow", &mut slow),
        ("connect", &mut connect),
        ("idle", &mut idle),
    ] {
        assert!(closed_by_proxy(stream).await, "{name} connection left open");
    }
    let session = proxy.stop().await;
    assert_eq!(session.summary["session"]["header_timeouts"], 3);
    assert_eq!(session.events_of("request").len(), 1);
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused_with_503_and_counted() {
    let proxy = Proxy::start(&["--max-connections", "2"]).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        held.push(stream);
    }
    // The accept loop admits connections in the order they arrive, so the third is the
    // one refused. It reads without writing: a request the proxy never reads would turn
    // its close into a reset that can swallow the 503.
    let mut third = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read_to_end(&mut third, &mut answer),
    )
    .await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("X-Diagproxy-Error: overloaded"), "{answer}");
    drop(held);
    // Room again once they are gone.
    let mut served = String::new();
    for _ in 0..100 {
        served = raw_exchange(
            proxy.addr,
            b"GET /summary.json HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Diagproxy-Token: test-live-token-0000\r\nConnection: close\r\n\r\n",
        )
        .await;
        if served.starts_with("HTTP/1.1 200") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
    let session = proxy.stop().await;
    assert!(session.summary["session"]["connections_refused"].as_u64() >= Some(1));
}

/// Starts the binary with stderr on a pipe this test controls; returns it and the address
/// from the banner.
fn spawn_with_stderr(
    session: &std::path::Path,
) -> (std::process::Child, std::process::ChildStderr, String) {
    use std::io::Read;
    let mut child = diagproxy()
        .args([
            "run",
            "--listen",
            "127.0.0.1:0",
            "--grace",
            "1s",
            "--session-dir",
        ])
        .arg(session)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    // The banner comes after the session's first log line; read line by line up to it.
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    let addr = loop {
        line.clear();
        while !line.ends_with(b"\n") && stderr.read(&mut byte).unwrap_or(0) == 1 {
            line.push(byte[0]);
        }
        let text = String::from_utf8_lossy(&line).into_owned();
        assert!(!text.is_empty(), "stderr ended before the banner");
        if text.contains("diagproxy listening on http://") {
            break banner_addr(&text);
        }
    };
    (child, stderr, addr)
}

/// Sends `n` requests that fail (each one a live-log line and a finding) through `addr`.
fn failing_requests(addr: &str, n: usize) {
    use std::io::{Read, Write};
    for _ in 0..n {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"GET http://files.oaiusercontent.invalid/upload HTTP/1.1\r\nHost: files.oaiusercontent.invalid\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
}

fn sigterm_and_wait(child: &mut std::process::Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    child.wait().unwrap()
}

#[test]
fn a_closed_stderr_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("session");
    let (mut child, stderr, addr) = spawn_with_stderr(&session);
    drop(stderr); // `diagproxy run 2>&1 | head -1`: the reader is gone
    failing_requests(&addr, 20);
    let exit = sigterm_and_wait(&mut child);
    assert!(exit.success(), "{exit:?}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(session.join("summary.json")).unwrap())
            .unwrap();
    assert!(summary["session"]["ended_at"].is_string());
    let events = std::fs::read_to_string(session.join("events.jsonl")).unwrap();
    assert_eq!(events.matches("\"type\":\"request\"").count(), 20);
    assert!(session.join("report.html").exists());
}

#[test]
fn a_stalled_stderr_neither_freezes_the_events_nor_hangs_the_exit() {
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("session");
    // Never read: the pipe fills (64 KiB) and every write to it would block.
    let (mut child, _stderr, addr) = spawn_with_stderr(&session);
    // About 400 bytes of live log each: several times what the pipe and the live log's
    // queue (1 MiB) hold together.
    failing_requests(&addr, 4000);
    // events.jsonl keeps up although the live log cannot.
    let events = session.join("events.jsonl");
    let mut written = 0;
    for _ in 0..500 {
        written = std::fs::read_to_string(&events)
            .unwrap_or_default()
            .matches("\"type\":\"request\"")
            .count();
        if written == 4000 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(written, 4000, "events.jsonl froze with stderr");
    let exit = sigterm_and_wait(&mut child);
    assert!(exit.success(), "{exit:?}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(session.join("summary.json")).unwrap())
            .unwrap();
    assert!(
        summary["session"]["live_log_dropped"].as_u64() > Some(0),
        "{}",
        summary["session"]
    );
}

#[test]
fn a_used_session_folder_is_refused_unless_forced_and_a_new_one_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let used = dir.path().join("used");
    std::fs::create_dir(&used).unwrap();
    std::fs::write(used.join("events.jsonl"), "keep me\n").unwrap();
    let out = diagproxy()
        .args(["run", "--listen", "127.0.0.1:0", "--session-dir"])
        .arg(&used)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(used.join("events.jsonl")).unwrap(),
        "keep me\n"
    );

    let session = dir.path().join("new");
    let Running { mut child, .. } = run_binary(&["--session-dir".as_ref(), session.as_os_str()]);
    assert!(sigterm_and_wait(&mut child).success());
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&session), 0o700);
    for file in [
        "events.jsonl",
        "summary.json",
        "session.har",
        "report.html",
        "report.md",
    ] {
        assert_eq!(mode(&session.join(file)), 0o600, "{file}");
    }

    let Running { mut child, .. } = run_binary(&[
        "--session-dir".as_ref(),
        used.as_os_str(),
        "--force".as_ref(),
    ]);
    assert!(sigterm_and_wait(&mut child).success());
    assert!(std::fs::read_to_string(used.join("events.jsonl"))
        .unwrap()
        .contains("session_started"));
}

#[tokio::test]
async fn a_request_that_already_went_through_this_proxy_is_a_loop() {
    let origin = origin().await;
    let proxy = Proxy::start(&[]).await;
    // The proxy runs in this process, so its Via entry is this process's.
    let via = diagproxy::upstream::route::via();
    for version in ["HTTP/1.1", "HTTP/1.0"] {
        let request = format!(
            "GET http://{origin}/hello {version}\r\nVia: 1.0 other, {via}\r\nConnection: close\r\n\r\n"
        );
        let answer = raw_exchange(proxy.addr, request.as_bytes()).await;
        assert!(answer.contains(" 508 Loop Detected"), "{version}: {answer}");
    }
    let (_, head) = raw_connect(proxy.addr, &origin.to_string(), &format!("Via: {via}\r\n")).await;
    assert!(head.starts_with("HTTP/1.1 508"), "{head}");
    // Every other spelling of the proxy's own address is a loop too.
    let port = proxy.addr.port();
    for spelling in ["127.1", "2130706433", "[::ffff:127.0.0.1]", "0.0.0.0"] {
        let request =
            format!("GET http://{spelling}:{port}/ HTTP/1.1\r\nConnection: close\r\n\r\n");
        let answer = raw_exchange(proxy.addr, request.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 508"), "{spelling}: {answer}");
    }
    // A forwarded request carries the Via entry on to the origin.
    let request = format!("GET http://{origin}/headers HTTP/1.1\r\nConnection: close\r\n\r\n");
    let answer = raw_exchange(proxy.addr, request.as_bytes()).await;
    assert!(
        answer.to_ascii_lowercase().contains(&format!("via: {via}")),
        "{answer}"
    );
    proxy.stop().await;
}

#[test]
fn an_upstream_proxy_that_is_this_proxy_in_another_spelling_is_refused() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let out = diagproxy()
        .args(["run", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--upstream-proxy", &format!("http://2130706433:{port}")])
        .arg("--session-dir")
        .arg(dir.path().join("s"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // A bad flag value: a usage error, as every other.
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("is this proxy itself"), "{stderr}");
}

#[tokio::test]
async fn the_ca_certificate_is_served_without_proxy_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_dir, ca_pem) = local_ca(dir.path());
    let ca_arg = ca_dir.to_str().unwrap();
    let proxy = Proxy::start(&["--proxy-auth", "user:pass", "--ca-dir", ca_arg]).await;
    let get = |path: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Diagproxy-Token: test-live-token-0000\r\nConnection: close\r\n\r\n")
    };
    let pem = raw_exchange(proxy.addr, get("/ca.pem").as_bytes()).await;
    assert!(pem.starts_with("HTTP/1.1 200"), "{pem}");
    assert!(pem.contains(ca_pem.trim()), "{pem}");
    let page = raw_exchange(proxy.addr, get("/summary.json").as_bytes()).await;
    assert!(
        page.starts_with("HTTP/1.1 401"),
        "the other pages still want credentials: {page}"
    );
    proxy.stop().await;
}

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
    let hello = diagproxy::sniff::example_hello(Some(evil), &["h2"]);
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
    let bin = env!("CARGO_BIN_EXE_diagproxy");
    let out = std::process::Command::new(bin)
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
        let out = std::process::Command::new(bin)
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
    let Running { mut child, .. } = run_binary(&["--session-dir".as_ref(), session.as_os_str()]);
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
            let request =
                format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
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

//! README behaviours that had no test: `--profile`, `-v`, `--no-auto-passthrough`,
//! `--include-secrets` on `run`, a second Ctrl-C (exit 130), a busy port (exit 1), `[::1]`
//! pins, `/proxy.pac` open under `--proxy-auth`, `report --har/--html/--markdown FILE`,
//! `ca show`, `ca export --out`, `ca init --days/--profile`.

mod common;

use common::*;

#[tokio::test]
async fn a_profile_file_replaces_the_built_in_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut profile: serde_json::Value =
        serde_json::from_str(include_str!("../src/profile/chatgpt.json")).unwrap();
    profile["name"] = "intranet".into();
    profile["entries"] = serde_json::json!([{
        "pattern": "*.intranet.test",
        "purpose": "The company's own app",
        "breaks": "The intranet does not load",
        "remedy": "Allowlist *.intranet.test",
        "source": "test"
    }]);
    profile["capabilities"] = serde_json::json!([]);
    let path = write_file(dir.path(), "profile.json", &profile.to_string());
    let origin = origin().await;
    let pin = format!("app.intranet.test:{}:127.0.0.1", origin.port());
    let proxy = Proxy::start(&["--profile", &path, "--resolve", &pin]).await;
    let reply = get(
        proxy.addr,
        &format!("http://app.intranet.test:{}/hello", origin.port()),
    )
    .await;
    assert_eq!(reply.status, 200);
    let session = proxy.stop().await;
    assert_eq!(
        session.host("app.intranet.test", origin.port())["allowlist"],
        "*.intranet.test"
    );
    assert_eq!(session.summary["session"]["profile"], path.as_str());
}

#[tokio::test]
async fn without_auto_passthrough_a_refusing_client_does_not_switch_interception_off() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_dir, _) = local_ca(dir.path());
    let (origin, origin_pem) = tls_origin(&["chatgpt.com"]).await;
    let pin = format!("chatgpt.com:{}:127.0.0.1", origin.port());
    let proxy = Proxy::start(&[
        "--intercept",
        "profile",
        "--ca-dir",
        ca_dir.to_str().unwrap(),
        "--no-auto-passthrough",
        "--resolve",
        &pin,
    ])
    .await;
    // A client that trusts only the origin's certificate refuses diagproxy's.
    let target = format!("chatgpt.com:{}", origin.port());
    let (stream, head) = raw_connect(proxy.addr, &target, "").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // Its handshake fails (the helper panics on that, inside its own task).
    let pem = origin_pem.clone();
    let _ = tokio::spawn(async move { tls_client(stream, "chatgpt.com", &pem, &[]).await }).await;
    let rejected = proxy.wait_events("client_rejected_ca", 1).await;
    assert_eq!(rejected[0]["passthrough"], false, "{:#}", rejected[0]);
    let status = raw_exchange(
        proxy.addr,
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Diagproxy-Token: test-live-token-0000\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(!status.contains("Tunnelled untouched"), "{status}");
    proxy.stop().await;
}

#[tokio::test]
async fn include_secrets_on_run_records_credentials_and_the_report_keeps_them() {
    let origin = origin().await;
    let proxy = Proxy::start(&["--include-secrets"]).await;
    let mut client = Client::connect(proxy.addr).await;
    let request = hyper::Request::get(format!("http://{origin}/hello?access_token=tok-123"))
        .header("authorization", "Bearer sk-kept-on-purpose")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    assert_eq!(client.send(request).await.status, 200);
    proxy.wait_events("request", 1).await;
    let session = proxy.stop().await;
    assert_eq!(
        session.events_of("session_started")[0]["include_secrets"],
        true
    );
    let request = &session.events_of("request")[0];
    assert!(request["url"]
        .as_str()
        .unwrap()
        .ends_with("access_token=tok-123"));
    let dir = session.folder.path().join("session");
    let out = diagproxy()
        .args(["report", "--include-secrets", "--har"])
        .arg(dir.join("kept.har"))
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("cannot be restored"));
    let har = std::fs::read_to_string(dir.join("kept.har")).unwrap();
    assert!(
        har.contains("sk-kept-on-purpose") && har.contains("tok-123"),
        "{har}"
    );
}

#[test]
fn report_writes_each_artefact_where_it_is_told() {
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("session");
    let Running {
        mut child, addr, ..
    } = run_binary(&["--session-dir".as_ref(), session.as_os_str()]);
    let _ = std::net::TcpStream::connect(&addr);
    assert!(diagproxy_kill(&mut child, "TERM").success());
    let (har, html, md) = (
        dir.path().join("a.har"),
        dir.path().join("b.html"),
        dir.path().join("c.md"),
    );
    let out = diagproxy()
        .arg("report")
        .arg(&session)
        .arg("--har")
        .arg(&har)
        .arg("--html")
        .arg(&html)
        .arg("--markdown")
        .arg(&md)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    for path in [&har, &html, &md] {
        assert!(
            said.contains(&format!("wrote {}", path.display())),
            "{said}"
        );
        assert!(
            std::fs::metadata(path).unwrap().len() > 100,
            "{}",
            path.display()
        );
    }
    let har: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&har).unwrap()).unwrap();
    assert_eq!(har["log"]["version"], "1.2");
}

/// Sends a signal to the child and waits for it.
fn diagproxy_kill(child: &mut std::process::Child, signal: &str) -> std::process::ExitStatus {
    let sent = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    child.wait().unwrap()
}

#[test]
fn a_second_ctrl_c_stops_at_once_with_exit_130() {
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("session");
    // A request held open keeps the first Ctrl-C's grace period busy.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let Running {
        mut child,
        addr,
        lines,
        ..
    } = run_binary(&[
        "--grace".as_ref(),
        "30s".as_ref(),
        "--session-dir".as_ref(),
        session.as_os_str(),
    ]);
    let mut held = std::net::TcpStream::connect(&addr).unwrap();
    std::io::Write::write_all(
        &mut held,
        format!("GET http://{silent_addr}/ HTTP/1.1\r\nHost: {silent_addr}\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let (_accepted, _) = silent.accept().unwrap();
    let pid = child.id().to_string();
    let int = || {
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
    };
    assert!(int().success());
    // The first one is acknowledged before the second is sent.
    let finishing = lines
        .iter()
        .find(|l| l.contains("finishing open work"))
        .is_some();
    assert!(finishing);
    assert!(int().success());
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(130), "{exit:?}");
    drop(held);
}

#[test]
fn a_busy_port_is_exit_1_with_the_reason() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = diagproxy()
        .args(["run", "--listen", &port, "--session-dir"])
        .arg(dir.path().join("s"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("cannot listen on {port}")), "{err}");
}

#[tokio::test]
async fn an_ipv6_loopback_pin_is_dialled_there() {
    let Ok(listener) = tokio::net::TcpListener::bind("[::1]:0").await else {
        eprintln!("SKIPPED: this machine has no IPv6 loopback");
        return;
    };
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf).await;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nsix!")
                .await;
        }
    });
    let pin = format!("chatgpt.com:{port}:[::1]");
    let proxy = Proxy::start(&["--resolve", &pin]).await;
    let reply = get(proxy.addr, &format!("http://chatgpt.com:{port}/")).await;
    assert_eq!((reply.status, reply.text().as_str()), (200, "six!"));
    let requests = proxy.wait_events("request", 1).await;
    proxy.stop().await;
    assert_eq!(requests[0]["server_ip"], "::1");
}

#[tokio::test]
async fn the_pac_file_is_open_under_proxy_auth_and_the_status_page_is_not() {
    let proxy = Proxy::start(&["--proxy-auth", "me:secret"]).await;
    let get = |path: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Diagproxy-Token: test-live-token-0000\r\nConnection: close\r\n\r\n")
    };
    let pac = raw_exchange(proxy.addr, get("/proxy.pac").as_bytes()).await;
    assert!(
        pac.starts_with("HTTP/1.1 200") && pac.contains("FindProxyForURL"),
        "{pac}"
    );
    let page = raw_exchange(proxy.addr, get("/").as_bytes()).await;
    assert!(page.starts_with("HTTP/1.1 401"), "{page}");
    proxy.stop().await;
}

#[test]
fn ca_init_days_and_profile_then_show_and_export() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    let mut profile: serde_json::Value =
        serde_json::from_str(include_str!("../src/profile/chatgpt.json")).unwrap();
    profile["entries"] = serde_json::json!([{
        "pattern": "*.intranet.test", "purpose": "p", "breaks": "b", "remedy": "r", "source": "test"
    }]);
    profile["capabilities"] = serde_json::json!([]);
    let path = write_file(dir.path(), "profile.json", &profile.to_string());
    let init = diagproxy()
        .args(["ca", "init", "--days", "7", "--profile", &path, "--ca-dir"])
        .arg(&ca_dir)
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let show = diagproxy()
        .args(["ca", "show", "--ca-dir"])
        .arg(&ca_dir)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&show.stdout);
    assert!(show.status.success());
    // Constrained to the profile given, valid for the days asked.
    let constraints = shown
        .lines()
        .find(|l| l.starts_with("constraints:"))
        .unwrap();
    assert!(
        constraints.contains("permitted DNS intranet.test;"),
        "{constraints}"
    );
    assert!(!constraints.contains("chatgpt.com"), "{constraints}");
    let der = dir.path().join("ca.der");
    let export = diagproxy()
        .args(["ca", "export", "--format", "der", "--out"])
        .arg(&der)
        .arg("--ca-dir")
        .arg(&ca_dir)
        .output()
        .unwrap();
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let bytes = std::fs::read(&der).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&bytes).unwrap();
    let validity = cert.validity();
    let days = (validity.not_after.timestamp() - validity.not_before.timestamp()) / 86_400;
    assert!((7..=8).contains(&days), "valid for {days} days");
}

/// `-v` turns on diagproxy's debug lines (here: each answer of the PAC script); without it
/// they stay off.
#[test]
fn verbose_shows_debug_lines_and_the_default_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let pac = write_file(
        dir.path(),
        "p.pac",
        "function FindProxyForURL(u, h) { return 'DIRECT'; }",
    );
    let source = format!("pac:{pac}");
    let debug_lines = |extra: &[&str]| -> Vec<String> {
        let session = dir.path().join(format!("s{}", extra.len()));
        let mut args: Vec<&std::ffi::OsStr> = vec!["--session-dir".as_ref(), session.as_os_str()];
        args.extend([std::ffi::OsStr::new("--upstream-proxy"), source.as_ref()]);
        args.extend(extra.iter().map(|a| std::ffi::OsStr::new(*a)));
        let Running {
            mut child,
            before,
            lines,
            ..
        } = run_binary(&args);
        assert!(diagproxy_kill(&mut child, "TERM").success());
        before
            .into_iter()
            .chain(lines.iter())
            .filter(|l| l.contains("DEBUG"))
            .collect()
    };
    let verbose = debug_lines(&["-v"]);
    assert!(
        verbose
            .iter()
            .any(|l| l.contains("PAC ") && l.contains("https://chatgpt.com/ → DIRECT")),
        "{verbose:?}"
    );
    assert!(debug_lines(&[]).is_empty());
}

//! The browser's way out: PAC files (served and from a file), per-host routes through two
//! corporate proxies and DIRECT, fallback when a proxy is dead, the bad-proxy memory,
//! `dnsResolve`/`isInNet` against `--resolve` pins, a script that loops, a PAC that cannot
//! be fetched, and discovery (`auto`: environment, GNOME and KDE settings, WPAD, a system
//! proxy that is diagproxy itself). Every proxy, PAC server and origin is on loopback.

mod common;

use std::ffi::OsStr;
use std::time::Duration;

use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A port nothing listens on.
fn dead_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// The PAC the routing tests share: the CDN DIRECT, openai.com through a dead proxy then
/// proxy B, every name that resolves to loopback (through the pins) via proxy A.
fn corp_pac(a: u16, b: u16, dead: u16) -> String {
    format!(
        r#"function FindProxyForURL(url, host) {{
  if (dnsDomainIs(host, ".oaistatic.com")) return "DIRECT";
  if (host == "openai.com") return "PROXY 127.0.0.1:{dead}; PROXY 127.0.0.1:{b}";
  if (isInNet(dnsResolve(host), "127.0.0.0", "255.0.0.0")) return "PROXY 127.0.0.1:{a}";
  return "DIRECT";
}}"#
    )
}

/// A CONNECT through the proxy that echoes a byte back: the tunnel works end to end.
async fn tunnel_works(proxy: std::net::SocketAddr, target: &str) {
    let (mut stream, head) = raw_connect(proxy, target, "").await;
    assert!(head.starts_with("HTTP/1.1 200"), "CONNECT {target}: {head}");
    stream.write_all(b"x").await.unwrap();
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte).await.unwrap();
    assert_eq!(&byte, b"x");
}

fn tunnel_of<'a>(events: &'a [Value], host: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["type"] == "tunnel" && e["host"] == host)
        .collect()
}

fn logged(log: &CorpLog) -> Vec<String> {
    log.lock().unwrap().clone()
}

#[tokio::test]
async fn a_pac_sends_each_host_its_own_way_and_falls_back_past_a_dead_proxy() {
    let echo = echo_server().await;
    let port = echo.port();
    let (a, log_a) = corporate_proxy(CorpMode::Allow).await;
    let (b, log_b) = corporate_proxy(CorpMode::Allow).await;
    let dead = dead_port();
    let pac = pac_server(corp_pac(a.port(), b.port(), dead)).await;
    let source = format!("pac:http://{pac}/proxy.pac");
    let pins: Vec<String> = ["chatgpt.com", "cdn.oaistatic.com", "openai.com"]
        .iter()
        .map(|h| format!("{h}:{port}:127.0.0.1"))
        .collect();
    let mut args = vec!["--upstream-proxy", source.as_str()];
    for pin in &pins {
        args.extend(["--resolve", pin.as_str()]);
    }
    let proxy = Proxy::start(&args).await;
    tunnel_works(proxy.addr, &format!("chatgpt.com:{port}")).await;
    tunnel_works(proxy.addr, &format!("cdn.oaistatic.com:{port}")).await;
    tunnel_works(proxy.addr, &format!("openai.com:{port}")).await;
    // The dead proxy is now skipped: the second CONNECT goes to B at once.
    tunnel_works(proxy.addr, &format!("openai.com:{port}")).await;
    proxy.wait_events("tunnel", 4).await;

    assert_eq!(
        logged(&log_a),
        [format!("CONNECT chatgpt.com:{port} auth=-")]
    );
    let to_b = format!("CONNECT openai.com:{port} auth=-");
    assert_eq!(logged(&log_b), [to_b.clone(), to_b]);

    let session = proxy.stop().await;
    let started = session.events_of("session_started")[0];
    assert_eq!(started["pac"]["url"], format!("http://{pac}/proxy.pac"));
    assert_eq!(started["pac"]["status"], 200);
    assert_eq!(
        started["pac"]["content_type"],
        "application/x-ns-proxy-autoconfig"
    );
    assert_eq!(started["pac"]["sha256"].as_str().unwrap().len(), 64);
    assert!(
        started["route_source"]
            .as_str()
            .unwrap()
            .starts_with("PAC http://"),
        "{started}"
    );

    let chatgpt = tunnel_of(&session.events, "chatgpt.com");
    assert_eq!(chatgpt[0]["route"], format!("PROXY 127.0.0.1:{}", a.port()));
    assert_eq!(
        tunnel_of(&session.events, "cdn.oaistatic.com")[0]["route"],
        "DIRECT"
    );
    let openai = tunnel_of(&session.events, "openai.com");
    assert_eq!(openai[0]["route"], format!("PROXY 127.0.0.1:{}", b.port()));
    let failed = openai[0]["route_failed"][0].as_str().unwrap();
    assert!(
        failed.starts_with(&format!("PROXY 127.0.0.1:{dead}: ")),
        "{failed}"
    );
    assert!(openai[1]["route_failed"].is_null(), "{}", openai[1]);

    let host = session.host("openai.com", port);
    let kinds: Vec<&str> = host["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"proxy_unreachable"), "{host:#}");
    let routes = &session.host("chatgpt.com", port)["routes"];
    assert_eq!(routes[0], format!("PROXY 127.0.0.1:{}", a.port()));
    let split = session.host("cdn.oaistatic.com", port)["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "split_route")
        .cloned()
        .expect("split_route on the host that went DIRECT");
    assert!(
        split["evidence"].as_str().unwrap().contains("goes DIRECT"),
        "{split}"
    );

    let folder = session.folder.path().join("session");
    let har: Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("session.har")).unwrap())
            .unwrap();
    let routes: Vec<&Value> = har["log"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e.get("_route"))
        .collect();
    assert!(
        routes.iter().any(|r| r["route_failed"][0]
            .as_str()
            .is_some_and(|f| f.contains(&dead.to_string()))),
        "{routes:?}"
    );
    let html = std::fs::read_to_string(folder.join("report.html")).unwrap();
    assert!(
        html.contains(&format!(
            "route PAC http://{pac}/proxy.pac (--upstream-proxy) (PAC "
        )),
        "route source in the report"
    );
    assert!(
        html.contains(&format!(
            "<td class=\"host\">PROXY 127.0.0.1:{}</td>",
            a.port()
        )),
        "route column"
    );
    let md = std::fs::read_to_string(folder.join("report.md")).unwrap();
    assert!(md.contains("- PAC file: http://"), "{md}");
}

#[tokio::test]
async fn plain_http_takes_the_route_too() {
    let origin = origin().await;
    let port = origin.port();
    let (a, log_a) = corporate_proxy(CorpMode::Allow).await;
    let pac = pac_server(corp_pac(a.port(), a.port(), dead_port())).await;
    let source = format!("pac:http://{pac}/proxy.pac");
    let pin_proxied = format!("chatgpt.com:{port}:127.0.0.1");
    let pin_direct = format!("cdn.oaistatic.com:{port}:127.0.0.1");
    let proxy = Proxy::start(&[
        "--upstream-proxy",
        &source,
        "--resolve",
        &pin_proxied,
        "--resolve",
        &pin_direct,
    ])
    .await;
    let via = get(proxy.addr, &format!("http://chatgpt.com:{port}/x")).await;
    assert_eq!(
        via.text(),
        format!("corp proxy forwarded http://chatgpt.com:{port}/x")
    );
    assert_eq!(
        logged(&log_a),
        [format!("GET http://chatgpt.com:{port}/x auth=-")]
    );
    let direct = get(
        proxy.addr,
        &format!("http://cdn.oaistatic.com:{port}/hello"),
    )
    .await;
    assert_eq!(direct.status, 200);
    assert_eq!(
        logged(&log_a).len(),
        1,
        "the DIRECT request did not pass proxy A"
    );
    let session = proxy.stop().await;
    let requests = session.events_of("request");
    assert_eq!(
        requests[0]["route"],
        format!("PROXY 127.0.0.1:{}", a.port())
    );
    assert_eq!(requests[1]["route"], "DIRECT");
}

#[tokio::test]
async fn a_pac_that_loops_is_stopped_and_the_host_goes_direct_with_a_pac_error() {
    let dir = tempfile::tempdir().unwrap();
    let script = "function FindProxyForURL(url, host) {\n  if (host == 'chatgpt.com') { while (true) {} }\n  return 'DIRECT';\n}\n";
    let path = write_file(dir.path(), "loop.pac", script);
    let echo = echo_server().await;
    let port = echo.port();
    let pin = format!("chatgpt.com:{port}:127.0.0.1");
    let source = format!("pac:{path}");
    let proxy = Proxy::start(&["--upstream-proxy", &source, "--resolve", &pin]).await;
    tunnel_works(proxy.addr, &format!("chatgpt.com:{port}")).await;
    let session = proxy.stop().await;
    let tunnel = tunnel_of(&session.events, "chatgpt.com")[0];
    assert_eq!(tunnel["route"], "DIRECT");
    let error = tunnel["pac_error"].as_str().unwrap();
    assert!(error.contains("ran longer than 5s"), "{error}");
    let finding = &tunnel["findings"][0];
    assert_eq!(finding["kind"], "pac_error");
    assert!(
        finding["remedy"]
            .as_str()
            .unwrap()
            .contains("diagproxy pac"),
        "{finding}"
    );
}

#[tokio::test]
async fn a_pac_that_cannot_be_fetched_is_a_pac_error_and_everything_goes_direct() {
    let missing = canned_origin(vec![]).await;
    let echo = echo_server().await;
    let port = echo.port();
    let pin = format!("chatgpt.com:{port}:127.0.0.1");
    let source = format!("pac:http://{missing}/proxy.pac");
    let proxy = Proxy::start(&["--upstream-proxy", &source, "--resolve", &pin]).await;
    tunnel_works(proxy.addr, &format!("chatgpt.com:{port}")).await;
    let session = proxy.stop().await;
    let started = session.events_of("session_started")[0];
    assert_eq!(started["pac"]["status"], 404, "{started}");
    let tunnel = tunnel_of(&session.events, "chatgpt.com")[0];
    assert_eq!(tunnel["route"], "DIRECT");
    assert!(
        tunnel["pac_error"]
            .as_str()
            .unwrap()
            .contains("answered 404"),
        "{tunnel}"
    );
    assert_eq!(tunnel["findings"][0]["kind"], "pac_error");
}

#[tokio::test]
async fn direct_failing_where_the_network_names_a_proxy_is_direct_blocked() {
    let (a, _) = corporate_proxy(CorpMode::Allow).await;
    let dead = dead_port();
    let pac = pac_server(corp_pac(a.port(), a.port(), dead)).await;
    let source = format!("pac:http://{pac}/proxy.pac");
    let pin = format!("cdn.oaistatic.com:{dead}:127.0.0.1");
    let proxy = Proxy::start(&["--upstream-proxy", &source, "--resolve", &pin]).await;
    let (_, head) = raw_connect(proxy.addr, &format!("cdn.oaistatic.com:{dead}"), "").await;
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    let session = proxy.stop().await;
    let host = session.host("cdn.oaistatic.com", dead);
    let blocked = host["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "direct_blocked")
        .unwrap_or_else(|| panic!("{host:#}"));
    assert!(
        blocked["remedy"]
            .as_str()
            .unwrap()
            .contains("route HOST".replace("HOST", "cdn.oaistatic.com").as_str()),
        "{blocked}"
    );
}

/// Reads the banner's `route:` lines (and the lines before it) of a running binary.
fn route_lines(running: &Running) -> Vec<String> {
    let mut lines: Vec<String> = running.before.clone();
    while let Ok(line) = running.lines.recv_timeout(Duration::from_millis(300)) {
        lines.push(line);
    }
    lines
        .into_iter()
        .filter(|l| l.starts_with("route: "))
        .collect()
}

fn stop(mut running: Running) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &running.child.id().to_string()])
        .status();
    let _ = running.child.wait();
}

#[test]
fn the_environment_names_the_proxy_and_no_proxy_the_exceptions() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (a, _log) = rt.block_on(corporate_proxy(CorpMode::Allow));
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("s");
    let https_proxy = format!("http://127.0.0.1:{}", a.port());
    let running = run_binary_with(
        &[OsStr::new("--session-dir"), session.as_os_str()],
        &[
            ("DIAGPROXY_UPSTREAM_PROXY", "auto"),
            ("HTTPS_PROXY", &https_proxy),
            ("NO_PROXY", ".oaistatic.com,localhost"),
        ],
    );
    let lines = route_lines(&running);
    stop(running);
    let line = &lines[0];
    assert!(
        line.contains(&format!("via PROXY 127.0.0.1:{}", a.port())),
        "{lines:?}"
    );
    assert!(
        line.contains("DIRECT") && line.contains("(environment)"),
        "{line}"
    );
}

#[test]
fn a_system_proxy_that_is_diagproxy_itself_is_skipped_with_a_warning() {
    let port = dead_port();
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("s");
    let ourselves = format!("http://127.0.0.1:{port}");
    let listen = format!("127.0.0.1:{port}");
    let mut command = diagproxy();
    command
        .env("DIAGPROXY_UPSTREAM_PROXY", "auto")
        .env("HTTPS_PROXY", &ourselves)
        .env("PATH", "")
        .env("HOME", dir.path());
    let out = command
        .args(["run", "--listen", &listen, "--session-dir"])
        .arg(&session)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let running = attach(out);
    let lines = route_lines(&running);
    stop(running);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("the environment points at diagproxy itself")
                && l.contains("--upstream-proxy pac:")),
        "{lines:?}"
    );
    assert!(
        lines[0].contains("DIRECT") && !lines[0].contains("via PROXY"),
        "{lines:?}"
    );
}

/// A `gsettings` that answers from a table, first on PATH: no test reads the real desktop.
fn fake_gsettings(dir: &std::path::Path, answers: &[(&str, &str)]) -> std::ffi::OsString {
    let mut script = String::from("#!/bin/sh\ncase \"$2 $3\" in\n");
    for (key, value) in answers {
        script.push_str(&format!("  \"{key}\") echo \"{value}\" ;;\n"));
    }
    script.push_str("  *) echo \"''\" ;;\nesac\n");
    let path = dir.join("gsettings");
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir.as_os_str().to_owned()
}

fn run_isolated(dir: &std::path::Path, env: &[(&str, &std::ffi::OsStr)]) -> Vec<String> {
    let session = dir.join("s");
    let mut command = diagproxy();
    command
        .env("DIAGPROXY_UPSTREAM_PROXY", "auto")
        .env("PATH", dir)
        .env("HOME", dir)
        .env("XDG_CONFIG_HOME", dir);
    for (k, v) in env {
        command.env(k, v);
    }
    let child = command
        .args(["run", "--listen", "127.0.0.1:0", "--session-dir"])
        .arg(&session)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let running = attach(child);
    let lines = route_lines(&running);
    stop(running);
    lines
}

#[test]
fn gnome_settings_name_the_pac() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (a, _log) = rt.block_on(corporate_proxy(CorpMode::Allow));
    let pac = rt.block_on(pac_server(format!(
        "function FindProxyForURL(u, h) {{ return 'PROXY 127.0.0.1:{}'; }}",
        a.port()
    )));
    let dir = tempfile::tempdir().unwrap();
    let url = format!("'http://{pac}/proxy.pac'");
    fake_gsettings(
        dir.path(),
        &[
            ("org.gnome.system.proxy mode", "'auto'"),
            ("org.gnome.system.proxy autoconfig-url", &url),
        ],
    );
    let lines = run_isolated(dir.path(), &[]);
    let line = &lines[0];
    assert!(
        line.contains(&format!("via PROXY 127.0.0.1:{}", a.port())),
        "{lines:?}"
    );
    assert!(
        line.contains(&format!("PAC http://{pac}/proxy.pac (GNOME settings)")),
        "{line}"
    );
}

#[test]
fn gnome_manual_settings_and_their_ignore_hosts() {
    let dir = tempfile::tempdir().unwrap();
    fake_gsettings(
        dir.path(),
        &[
            ("org.gnome.system.proxy mode", "'manual'"),
            ("org.gnome.system.proxy.https host", "'127.0.0.1'"),
            ("org.gnome.system.proxy.https port", "3128"),
            (
                "org.gnome.system.proxy ignore-hosts",
                "['localhost', '*.oaistatic.com']",
            ),
        ],
    );
    let lines = run_isolated(dir.path(), &[]);
    let line = &lines[0];
    assert!(
        line.contains("via PROXY 127.0.0.1:3128") && line.contains("DIRECT"),
        "{lines:?}"
    );
    assert!(line.contains("(GNOME settings)"), "{line}");
}

#[test]
fn kde_settings_name_the_pac_when_gnome_has_none() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pac = rt.block_on(pac_server(
        "function FindProxyForURL(u, h) { return 'PROXY 127.0.0.1:3129'; }".into(),
    ));
    let dir = tempfile::tempdir().unwrap();
    fake_gsettings(dir.path(), &[("org.gnome.system.proxy mode", "'none'")]);
    let rc = format!("[Proxy Settings]\nProxyType=2\nProxy Config Script=http://{pac}/proxy.pac\n");
    std::fs::write(dir.path().join("kioslaverc"), rc).unwrap();
    let lines = run_isolated(dir.path(), &[]);
    assert!(lines[0].contains("via PROXY 127.0.0.1:3129"), "{lines:?}");
    assert!(lines[0].contains("(KDE settings)"), "{lines:?}");
}

#[test]
fn nothing_found_goes_direct_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let lines = run_isolated(dir.path(), &[]);
    assert!(
        lines[0].contains("DIRECT (auto: no proxy in the environment, desktop settings or WPAD)"),
        "{lines:?}"
    );
}

#[test]
fn wpad_finds_the_pac_in_the_given_domain() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    // WPAD's URL has no port: the PAC must be served on port 80 (root here; CI runs as root).
    let listener = match std::net::TcpListener::bind("127.0.0.1:80") {
        Ok(l) => l,
        Err(e) => {
            let required = std::env::var("DIAGPROXY_REQUIRE_TOOLS").is_ok_and(|v| v == "1");
            assert!(!required, "WPAD test needs 127.0.0.1:80: {e}");
            eprintln!("SKIPPED: WPAD test needs 127.0.0.1:80 ({e})");
            return;
        }
    };
    drop(listener);
    let script = "function FindProxyForURL(u, h) { return 'PROXY 127.0.0.1:3130'; }";
    let headers = &[("content-type", "application/x-ns-proxy-autoconfig")];
    let addr = rt.block_on(canned_origin_at(
        "127.0.0.1:80",
        vec![canned("/wpad.dat", 200, headers, script)],
    ));
    assert_eq!(addr.port(), 80);
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("s");
    let running = run_binary_with(
        &[
            OsStr::new("--session-dir"),
            session.as_os_str(),
            OsStr::new("--wpad-domain"),
            OsStr::new("corp.test"),
            OsStr::new("--resolve"),
            OsStr::new("wpad.corp.test:80:127.0.0.1"),
        ],
        &[("DIAGPROXY_UPSTREAM_PROXY", "auto"), ("PATH", "")],
    );
    let lines = route_lines(&running);
    stop(running);
    assert!(lines[0].contains("via PROXY 127.0.0.1:3130"), "{lines:?}");
    assert!(
        lines[0].contains("PAC http://wpad.corp.test/wpad.dat (WPAD wpad.corp.test)"),
        "{lines:?}"
    );
}

#[test]
fn diagproxy_pac_shows_routes_and_helper_calls_and_fails_on_a_dead_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let dead = dead_port();
    let live = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let live_port = live.local_addr().unwrap().port();
    let path = write_file(
        dir.path(),
        "corp.pac",
        &corp_pac(live_port, live_port, dead),
    );
    let source = format!("pac:{path}");
    let run = |hosts: &[&str], json: bool| {
        let mut command = diagproxy();
        command.args([
            "pac",
            "--upstream-proxy",
            &source,
            "--resolve",
            "chatgpt.com:443:127.0.0.1",
        ]);
        if json {
            command.arg("--json");
        }
        command.args(hosts).output().unwrap()
    };
    let out = run(&["chatgpt.com", "cdn.oaistatic.com"], false);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("chatgpt.com        PROXY 127.0.0.1:{live_port}")),
        "{text}"
    );
    assert!(
        text.contains(r#"dnsResolve("chatgpt.com") = "127.0.0.1""#),
        "{text}"
    );
    assert!(
        text.contains(r#"isInNet("127.0.0.1", "127.0.0.0", "255.0.0.0") = true"#),
        "{text}"
    );
    assert!(
        text.contains("split_route: ChatGPT's hosts take different ways out"),
        "{text}"
    );
    assert!(text.contains(&format!("PAC file: {path} (")), "{text}");

    drop(live);
    let out = run(&["chatgpt.com", "openai.com"], true);
    assert_eq!(out.status.code(), Some(1));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["failing"], 2, "{doc:#}");
    let proxies = doc["proxies"].as_array().unwrap();
    assert!(proxies.iter().all(|p| p["answers"] == false), "{doc:#}");
    assert_eq!(
        doc["hosts"][1]["route"],
        format!("PROXY 127.0.0.1:{dead}; PROXY 127.0.0.1:{live_port}")
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 host(s) would fail"));
}

#[test]
fn sighup_fetches_the_pac_again_and_the_new_routes_apply() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let echo = rt.block_on(echo_server());
    let port = echo.port();
    let dir = tempfile::tempdir().unwrap();
    let dead = dead_port();
    let v1 = format!("function FindProxyForURL(u, h) {{ return 'PROXY 127.0.0.1:{dead}'; }}");
    let path = write_file(dir.path(), "corp.pac", &v1);
    let session = dir.path().join("s");
    let source = format!("pac:{path}");
    let pin = format!("chatgpt.com:{port}:127.0.0.1");
    let running = run_binary(&[
        OsStr::new("--session-dir"),
        session.as_os_str(),
        OsStr::new("--upstream-proxy"),
        OsStr::new(&source),
        OsStr::new("--resolve"),
        OsStr::new(&pin),
    ]);
    let addr: std::net::SocketAddr = running.addr.parse().unwrap();
    let (_, head) = rt.block_on(raw_connect(addr, &format!("chatgpt.com:{port}"), ""));
    assert!(
        head.starts_with("HTTP/1.1 502"),
        "v1 names a dead proxy: {head}"
    );

    std::fs::write(&path, "function FindProxyForURL(u, h) { return 'DIRECT'; }").unwrap();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &running.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let reloaded = (0..50)
        .find_map(|_| {
            let line = running
                .lines
                .recv_timeout(Duration::from_millis(200))
                .ok()?;
            line.contains("PAC reloaded").then_some(line)
        })
        .expect("a 'PAC reloaded' line");
    assert!(
        reloaded.contains(&path) && reloaded.contains("SHA-256"),
        "{reloaded}"
    );
    rt.block_on(tunnel_works(addr, &format!("chatgpt.com:{port}")));
    stop(running);
}

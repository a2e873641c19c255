//! The built `diagproxy` binary driven as a user would: exit codes for bad usage, and real
//! `curl -x` through it, ended by SIGTERM with a complete summary. Needs curl (CI installs
//! it); skips without it unless DIAGPROXY_REQUIRE_TOOLS=1.

mod common;

use std::process::Command;

#[test]
fn bad_usage_exits_64_with_a_clear_message() {
    let out = common::diagproxy()
        .args(["run", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a loopback address") && err.contains("--allow-remote"),
        "{err}"
    );

    let out = common::diagproxy()
        .args(["run", "--listen", "0.0.0.0:0", "--allow-remote"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("requires --proxy-auth"));

    let out = common::diagproxy()
        .args(["run", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));

    let out = common::diagproxy()
        .args(["run", "--upstream-proxy", "ftp://corp:8443"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an http:// or https:// proxy URL"));

    let out = common::diagproxy().arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn curl_through_the_binary_then_sigterm_leaves_a_complete_session() {
    if !common::require_tool("curl") {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let origin = runtime.block_on(common::origin());
    let (tls, cert) = runtime.block_on(common::tls_origin(&["chatgpt.com"]));
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("origin.pem");
    std::fs::write(&cert_path, &cert).unwrap();
    let session = dir.path().join("session");
    let pin = format!("chatgpt.com:{}:127.0.0.1", tls.port());

    let common::Running {
        mut child,
        addr: proxy,
        lines,
        ..
    } = common::run_binary(&[
        "--resolve".as_ref(),
        pin.as_ref(),
        "--session-dir".as_ref(),
        session.as_os_str(),
    ]);
    let proxy_url = format!("http://{proxy}");

    let curl = |args: &[&str]| {
        let out = common::curl()
            .args(["-sS", "--max-time", "20", "-x", &proxy_url])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(curl(&[&format!("http://{origin}/hello")]), "hello");
    let cacert = cert_path.to_str().unwrap();
    let https = format!("https://chatgpt.com:{}/", tls.port());
    assert_eq!(curl(&["--cacert", cacert, &https]), "hello over tls");
    let failed = curl(&["-i", "https://files.oaiusercontent.invalid/upload"]);
    assert!(failed.is_empty() || !failed.contains("200"), "{failed}");
    let failed_plain = curl(&["-i", "http://files.oaiusercontent.invalid/upload"]);
    assert!(failed_plain.starts_with("HTTP/1.1 502"), "{failed_plain}");
    assert!(
        failed_plain.contains("x-diagproxy-error: dns_failed"),
        "{failed_plain}"
    );

    common::wait_for_events(&session, "tunnel", 2); // the two CONNECTs, recorded as they closed
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "exit status {exit:?}");
    // The reader thread ends at the child's EOF: every line, the exit table included.
    let log: Vec<String> = lines.iter().collect();
    let log = log.join("\n");
    assert!(log.contains("CONNECT chatgpt.com:"), "{log}");
    assert!(log.contains("FAILED dns_failed"), "{log}");
    assert!(log.contains("hosts seen"), "exit table missing: {log}");
    let summary_text = std::fs::read_to_string(session.join("summary.json")).unwrap();
    let verdict = serde_json::from_str::<serde_json::Value>(&summary_text).unwrap()["verdict"]
        .as_str()
        .unwrap()
        .to_string();
    // The test origin's certificate is self-signed, so against the real public roots the
    // side handshake rightly calls chatgpt.com untrusted: that leads the verdict.
    let expected = "The network presents an untrusted certificate for chatgpt.com";
    assert!(verdict.starts_with(expected), "{verdict}");
    assert!(
        log.contains(&verdict),
        "the exit summary leads with the verdict: {log}"
    );

    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(session.join("summary.json")).unwrap())
            .unwrap();
    assert!(summary["session"]["ended_at"].is_string());
    let hosts = summary["hosts"].as_array().unwrap();
    let chatgpt = hosts
        .iter()
        .find(|h| h["host"] == "chatgpt.com")
        .expect("chatgpt.com recorded");
    assert_eq!(chatgpt["connections"], 1);
    assert_eq!(chatgpt["allowlist"], "*.chatgpt.com");
    assert!(chatgpt["user_agents"][0]
        .as_str()
        .unwrap()
        .starts_with("curl/"));
    let invalid = hosts
        .iter()
        .find(|h| h["host"] == "files.oaiusercontent.invalid" && h["port"] == 443)
        .expect("failed host");
    assert_eq!(invalid["failures"]["dns_failed"], 1);
    let events = common::read_events(&session);
    assert_eq!(events.last().unwrap()["type"], "session_ended");
}

#[test]
fn ca_init_writes_a_name_constrained_ca_openssl_can_read() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("certs");
    let out = common::diagproxy()
        .args(["ca", "init", "--ca-dir"])
        .arg(&ca_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("SHA-256:") && shown.contains("macOS:") && shown.contains("iOS:"),
        "{shown}"
    );
    let again = common::diagproxy()
        .args(["ca", "init", "--ca-dir"])
        .arg(&ca_dir)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    let der = common::diagproxy()
        .args(["ca", "export", "--format", "der", "--ca-dir"])
        .arg(&ca_dir)
        .output()
        .unwrap();
    assert_eq!(
        der.stdout.first(),
        Some(&0x30),
        "DER starts with a SEQUENCE"
    );
    if !common::require_tool("openssl") {
        return;
    }
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(ca_dir.join("diagproxy-ca.pem"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("X509v3 Name Constraints: critical"), "{text}");
    assert!(
        text.contains("DNS:chatgpt.com") && text.contains("DNS:openai.com"),
        "{text}"
    );
    assert!(
        text.contains("Excluded:") && text.contains("IP:0.0.0.0/0.0.0.0"),
        "{text}"
    );
    assert!(text.contains("CA:TRUE, pathlen:0"), "{text}");
    assert!(text.contains("ASN1 OID: prime256v1"), "{text}");
}

/// The shape of `diagproxy bench --json`, never its speed (speed lives in the benchmarks).
#[test]
fn bench_json_has_every_mode_direct_and_through_the_proxy() {
    let report = bench_json(&[
        "--duration",
        "1",
        "--connections",
        "8",
        "--tunnels",
        "100",
        "--bundle-mib",
        "16",
        "--import-mib",
        "8",
    ]);
    assert!(report["proxy"].as_str().unwrap().starts_with("diagproxy "));
    assert_eq!(report["duration_s"], 1.0);
    assert!(report["cores"].as_u64().unwrap() >= 1);
    // Either how the cores were shared out, or why they were not.
    let pinning = report["pinning"].as_str().unwrap();
    assert!(
        pinning.contains("proxy on core") || pinning.contains("not pinned"),
        "{pinning}"
    );
    let rows = report["rows"].as_array().unwrap();
    let modes: Vec<&str> = rows.iter().map(|r| r["mode"].as_str().unwrap()).collect();
    for expected in [
        "forward HTTP/1.1 keep-alive c=1",
        "forward HTTP/1.1 keep-alive c=8",
        "forward c=8: with a slow live page (vs. without)",
        "forward bulk throughput (plain HTTP, chunked)",
        "forward bulk throughput (plain HTTP, Content-Length)",
        "tunnel bulk throughput",
        "tunnel setup",
        "tunnel setup: SOCKS5 route (vs. HTTP proxy route)",
        "tunnel bulk: SOCKS5 route (vs. HTTP proxy route)",
        "intercept HTTPS keep-alive c=1",
        "intercept HTTPS keep-alive c=16",
        "intercept HTTP/2 keep-alive c=16 (one connection)",
        "intercept new TLS connection per request",
        "first request to a new host",
        "idle memory (RSS)",
        "  of which private to the proxy (RssAnon)",
        "  by mapping: the program's code",
        "  by mapping: heap, stacks, anonymous",
        "memory per idle tunnel (100 open)",
        "bundle of a long session: time",
        "bundle of a long session: peak memory",
        "check: 40 hosts, every stage",
        "exporter: 40 /probe scrapes at once",
        "exporter: idle memory (RSS)",
        "import of a 8 MiB NetLog: speed",
        "import of a 8 MiB NetLog: peak memory",
        "events dropped by the recorder",
    ] {
        assert!(
            modes.iter().any(|m| m.starts_with(expected)),
            "{expected} missing from {modes:?}"
        );
    }
    // Every request the bench made was recorded: the rates were not bought by losing events.
    let dropped = rows
        .iter()
        .find(|r| r["mode"] == "events dropped by the recorder")
        .and_then(|r| r["proxy"].as_f64());
    assert_eq!(dropped, Some(0.0), "{report}");
    for row in rows {
        let proxy = row["proxy"]
            .as_f64()
            .unwrap_or_else(|| panic!("no proxy figure in {row}"));
        assert!(proxy >= 0.0, "{row}");
        // The proxy's CPU time per request is read for every rate row (Linux /proc).
        if cfg!(target_os = "linux") && row["unit"] == "req/s" {
            assert!(row["proxy_cpu_us"].as_f64().unwrap() > 0.0, "{row}");
        }
        // Load rows are measured direct and through the proxy; a file import has no direct.
        let file = row["mode"].as_str().unwrap().starts_with("import of");
        if (row["unit"] == "req/s" || row["unit"] == "MB/s") && !file {
            assert!(
                row["direct"].as_f64().unwrap() > 0.0 && proxy > 0.0,
                "{row}"
            );
            assert!(row["ratio"].as_f64().unwrap() > 0.0, "{row}");
        }
    }
}

/// `--only` runs the groups asked for and no other.
#[test]
fn bench_only_runs_the_groups_asked_for() {
    let report = bench_json(&[
        "--duration",
        "0.4",
        "--only",
        "tunnel,memory",
        "--tunnels",
        "10",
    ]);
    let modes: Vec<&str> = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["mode"].as_str().unwrap())
        .collect();
    assert_eq!(
        modes,
        [
            "tunnel bulk throughput",
            "tunnel setup (CONNECT → 200)",
            "tunnel setup: SOCKS5 route (vs. HTTP proxy route)",
            "tunnel bulk: SOCKS5 route (vs. HTTP proxy route)",
            "idle memory (RSS)",
            "  of which private to the proxy (RssAnon)",
            "  by mapping: the program's code",
            "  by mapping: the program's constants and data",
            "  by mapping: shared libraries",
            "  by mapping: heap, stacks, anonymous",
            "memory per idle tunnel (10 open)",
            "events dropped by the recorder",
        ]
    );

    // The mappings add up to the RSS read a moment earlier, and the program's code is there.
    let figure = |mode: &str| {
        report["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["mode"] == mode)
            .and_then(|r| r["proxy"].as_f64())
            .unwrap()
    };
    let by_mapping: f64 = modes
        .iter()
        .filter(|m| m.starts_with("  by mapping"))
        .map(|m| figure(m))
        .sum();
    let rss = figure("idle memory (RSS)");
    assert!(figure("  by mapping: the program's code") > 0.5, "{report}");
    assert!(
        (by_mapping - rss).abs() < rss * 0.2,
        "{by_mapping} vs {rss}"
    );

    let wrong = common::diagproxy()
        .args(["bench", "--only", "everything"])
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(stderr.contains("forward"), "{stderr}");
}

/// `--proxy` with `--proxy-pid`: another proxy (here a second diagproxy, as a user would run
/// squid or mitmproxy) gets its CPU time per request and its memory read like ours.
#[cfg(target_os = "linux")]
#[test]
fn bench_reads_another_proxys_cpu_and_memory_with_proxy_pid() {
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("session");
    let common::Running {
        mut child, addr, ..
    } = common::run_binary(&["--session-dir".as_ref(), session.as_os_str()]);
    let pid = child.id().to_string();
    let url = format!("http://{addr}");
    let bench = |extra: &[&str]| {
        let mut args = vec![
            "--duration",
            "0.4",
            "--tunnels",
            "10",
            "--only",
            "forward,memory",
        ];
        args.extend(["--connections", "4", "--proxy", &url]);
        args.extend(extra);
        let report = bench_json(&args);
        assert_eq!(report["proxy"], url.as_str());
        report["rows"].as_array().unwrap().clone()
    };
    let rows = bench(&["--proxy-pid", &pid]);
    let row = |mode: &str| {
        rows.iter()
            .find(|r| r["mode"].as_str().unwrap().starts_with(mode))
            .unwrap_or_else(|| panic!("{mode} missing from {rows:?}"))
    };
    for mode in [
        "forward HTTP/1.1 keep-alive c=1",
        "forward HTTP/1.1 keep-alive c=4",
        "forward bulk throughput (plain HTTP, chunked)",
        "forward bulk throughput (plain HTTP, Content-Length)",
    ] {
        assert!(
            row(mode)["proxy_cpu_us"].as_f64().unwrap() > 0.0,
            "{rows:?}"
        );
    }
    assert!(row("idle memory (RSS)")["proxy"].as_f64().unwrap() > 1.0);
    assert!(row("memory per idle tunnel (10 open)")["proxy"]
        .as_f64()
        .is_some());

    // Without --proxy-pid the other proxy's process is unknown: no CPU figure, no memory.
    let rows = bench(&[]);
    // (Two bulk rows, chunked and Content-Length; the live-page row is diagproxy's own.)
    assert_eq!(rows.len(), 4, "the forward rows only: {rows:?}");
    assert!(rows.iter().all(|r| r["proxy_cpu_us"].is_null()), "{rows:?}");
    let _ = child.kill();
    let _ = child.wait();

    let wrong = common::diagproxy()
        .args(["bench", "--proxy", &url, "--proxy-pid", "4000000000"])
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(stderr.contains("--proxy-pid 4000000000"), "{stderr}");
    let alone = common::diagproxy()
        .args(["bench", "--proxy-pid", &pid])
        .output()
        .unwrap();
    assert!(!alone.status.success());
    assert!(String::from_utf8_lossy(&alone.stderr).contains("--proxy"));
}

/// docs/performance.md's first step against another proxy: `bench --proxy URL --origin-root
/// FILE` with no FILE makes the bench origin's root (certificate and key, `0600`), says what
/// to do next and measures nothing; run again with the file it keeps it byte for byte (the
/// other proxy trusts it), and a `--proxy` where nothing listens is said as that flag.
#[test]
fn bench_origin_root_is_made_once_for_another_proxy_to_trust() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("origin-root.pem");
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let bench = |extra: &[&str]| {
        common::diagproxy()
            .args(["bench", "--proxy", &url, "--origin-root"])
            .arg(&root)
            .args(extra)
            .output()
            .unwrap()
    };
    let first = bench(&[]);
    assert!(first.status.success(), "{first:?}");
    let said = String::from_utf8_lossy(&first.stderr);
    let expected = format!(
        "wrote the bench origin's root to {}: start the other proxy trusting it for upstream TLS, then run this again",
        root.display()
    );
    assert_eq!(said.trim(), expected);
    assert!(first.stdout.is_empty(), "nothing measured");
    let text = std::fs::read_to_string(&root).unwrap();
    assert!(
        text.contains("BEGIN CERTIFICATE") && text.contains("PRIVATE KEY"),
        "{text}"
    );
    let mode = std::fs::metadata(&root).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let again = bench(&["--only", "forward", "--duration", "0.2"]);
    assert_eq!(again.status.code(), Some(1));
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(
        said.contains(&format!("--proxy {url}: nothing answers there")),
        "{said}"
    );
    assert_eq!(
        std::fs::read_to_string(&root).unwrap(),
        text,
        "the root is kept"
    );
}

/// Runs `diagproxy bench --json` with `args`, checks it succeeded and returns its report.
#[test]
fn bench_compare_prints_the_difference_against_a_saved_run() {
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("before.json");
    let args = ["--duration", "0.2", "--only", "tunnel"];
    let before = bench_json(&args);
    std::fs::write(&saved, before.to_string()).unwrap();
    let out = common::diagproxy()
        .arg("bench")
        .args(args)
        .arg("--compare")
        .arg(&saved)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("compared with an earlier run"), "{stdout}");
    let line = stdout
        .lines()
        .filter(|l| l.starts_with("tunnel setup (CONNECT → 200)"))
        .nth(1)
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.contains('%'), "a change in percent: {line}");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{}").unwrap();
    let out = common::diagproxy()
        .args(["bench", "--compare"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a `diagproxy bench --json` report"));
}

/// The documents' side-by-side steps (docs/performance.md) against another intercepting
/// proxy: a real squid that bumps TLS with its own CA (Debian's `squid-openssl`; the
/// documents use hudsucker, which is not packaged), its names pinned to loopback by its
/// hosts file. First the origin's root is made, then the other proxy is measured.
#[test]
fn bench_measures_another_intercepting_proxy_side_by_side() {
    if !common::require_tool("squid") || !common::kerberos::require_file(common::squid::CERTGEN) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let squid_ca = common::TestCa::root("Squid Bump CA", "Example Corp");
    let names: Vec<String> = std::iter::once("bench.chatgpt.com".to_string())
        .chain((0..8).map(|i| format!("new{i}.chatgpt.com")))
        .collect();
    let squid = common::squid::FilterSquid::bumping(
        &format!("{}{}", squid_ca.pem(), squid_ca.key.serialize_pem()),
        &format!("127.0.0.1 {}\n", names.join(" ")),
        "http_access allow all",
    );
    let proxy_ca = dir.path().join("squid-ca.pem");
    std::fs::write(&proxy_ca, squid_ca.pem()).unwrap();
    let root = dir.path().join("origin-root.pem");
    let first = common::diagproxy()
        .args(["bench", "--proxy", &squid.url(), "--origin-root"])
        .arg(&root)
        .output()
        .unwrap();
    assert!(first.status.success(), "{first:?}");
    assert!(root.exists());
    let pid = squid.pid().to_string();
    let out = common::diagproxy()
        .args(["bench", "--json", "--only", "memory,forward,intercept"])
        .args(["--proxy", &squid.url(), "--proxy-ca"])
        .arg(&proxy_ca)
        .args(["--proxy-pid", &pid, "--origin-root"])
        .arg(&root)
        .args(["--duration", "0.3", "--connections", "4", "--tunnels", "10"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}\n{}", squid.logs());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["proxy"], squid.url(), "{report:#}");
    let pinning = report["pinning"].as_str().unwrap();
    assert!(pinning.contains("proxy on core"), "{pinning}");
    let rows = report["rows"].as_array().unwrap();
    let row = |prefix: &str| {
        rows.iter()
            .find(|r| r["mode"].as_str().unwrap().starts_with(prefix))
            .unwrap_or_else(|| panic!("no row {prefix}: {report:#}"))
    };
    // squid's own figures: its memory read from /proc/PID, and requests answered by the
    // bench origin through it, in the clear and through its interception.
    let rss = row("idle memory (RSS)")["proxy"].as_f64().unwrap();
    assert!(rss > 1.0, "squid's RSS {rss} MiB");
    for mode in [
        "forward HTTP/1.1 keep-alive c=1",
        "intercept HTTPS keep-alive c=1",
        "intercept new TLS connection per request",
        "first request to a new host",
    ] {
        let r = row(mode);
        assert!(r["proxy"].as_f64().unwrap() > 0.0, "{r:#}");
        assert!(r["direct"].as_f64().unwrap() > 0.0, "{r:#}");
    }
    // Diagproxy's own groups (exporter, sign-in, …) are not the other proxy's.
    assert!(!rows
        .iter()
        .any(|r| r["mode"].as_str().unwrap().starts_with("tunnel")));
}

fn bench_json(args: &[&str]) -> serde_json::Value {
    let out = common::diagproxy()
        .args(["bench", "--json"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn json_log_format_puts_only_json_on_stderr_and_the_banner_names_the_ca() {
    if !common::require_tool("kill") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    let init = common::diagproxy()
        .args(["ca", "init", "--ca-dir"])
        .arg(&ca_dir)
        .output()
        .unwrap();
    assert!(init.status.success());
    let shown = String::from_utf8_lossy(&init.stdout).into_owned();
    let fingerprint = shown
        .lines()
        .find_map(|l| l.strip_prefix("SHA-256:"))
        .unwrap()
        .trim()
        .to_string();
    let session = dir.path().join("session");
    let common::Running {
        mut child,
        before,
        lines,
        ..
    } = common::run_binary(&[
        "--log-format".as_ref(),
        "json".as_ref(),
        "--intercept".as_ref(),
        "all".as_ref(),
        "--ca-dir".as_ref(),
        ca_dir.as_os_str(),
        "--session-dir".as_ref(),
        session.as_os_str(),
    ]);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success());
    let all: Vec<String> = before.into_iter().chain(lines.iter()).collect();
    let parsed: Vec<serde_json::Value> = all
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l:?}")))
        .collect();
    let of = |kind: &str| parsed.iter().find(|v| v["type"] == kind);
    let banner = of("listening").expect("a JSON banner");
    assert_eq!(banner["interception"]["hosts"], "every host");
    assert_eq!(banner["interception"]["sha256"], fingerprint.as_str());
    assert_eq!(banner["interception"]["ca_dir"], ca_dir.to_str().unwrap());
    assert!(
        banner["interception"]["permitted"]
            .as_array()
            .unwrap()
            .len()
            > 10
    );
    // The warning that --intercept all cannot reach past the CA's constraints, as JSON.
    assert!(
        parsed.iter().any(|v| v["level"] == "WARN"
            && v["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("name-constrained CA"))),
        "{all:#?}"
    );
    let exit = of("exit_summary").expect("the exit summary as JSON");
    assert!(
        exit["verdict"]
            .as_str()
            .unwrap()
            .starts_with("No ChatGPT host"),
        "{exit}"
    );
    assert!(exit["hosts"].as_array().unwrap().is_empty());
}

#[test]
fn the_human_banner_says_what_is_intercepted_with_which_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    assert!(common::diagproxy()
        .args(["ca", "init", "--ca-dir"])
        .arg(&ca_dir)
        .output()
        .unwrap()
        .status
        .success());
    let session = dir.path().join("session");
    let common::Running {
        mut child,
        before,
        lines,
        ..
    } = common::run_binary(&[
        "--intercept".as_ref(),
        "profile".as_ref(),
        "--ca-dir".as_ref(),
        ca_dir.as_os_str(),
        "--session-dir".as_ref(),
        session.as_os_str(),
    ]);
    let banner = before.last().unwrap().clone();
    let next = || {
        lines
            .recv_timeout(std::time::Duration::from_secs(10))
            .unwrap()
    };
    let live = next();
    assert!(
        live.starts_with("live page: http://127.0.0.1:") && live.contains("/?token="),
        "{live}"
    );
    let interception = next();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        banner.contains("diagproxy listening on http://127.0.0.1:"),
        "{banner}"
    );
    let expected = format!(
        "interception: the profile's hosts ({} entries) with the CA in {} (SHA-256 ",
        diagproxy::profile::Profile::builtin().entries.len(),
        ca_dir.display()
    );
    assert!(interception.starts_with(&expected), "{interception}");
    assert!(
        interception.contains("the CA may sign for"),
        "{interception}"
    );
    // The folder exists when the banner is printed: the start-up checks ran first.
    assert!(session.is_dir());
}

#[test]
fn no_banner_when_a_start_up_check_fails() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::diagproxy()
        .args([
            "run",
            "--listen",
            "127.0.0.1:0",
            "--intercept",
            "profile",
            "--ca-dir",
        ])
        .arg(dir.path().join("no-ca"))
        .arg("--session-dir")
        .arg(dir.path().join("session"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("diagproxy ca init"), "{err}");
    assert!(!err.contains("listening on http://"), "{err}");
}

#[test]
fn the_nss_steps_work_on_a_fresh_profile() {
    if !common::require_tool("certutil") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    let out = common::diagproxy()
        .args(["ca", "init", "--ca-dir"])
        .arg(&ca_dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    // The two indented lines under the NSS item, pasted as printed into a shell whose HOME
    // has never run a browser.
    let steps: Vec<&str> = shown
        .lines()
        .skip_while(|l| !l.contains("(NSS"))
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .collect();
    assert_eq!(steps.len(), 2, "{shown}");
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let script = steps.join("\n");
    let run = Command::new("sh")
        .args(["-c", &script])
        .env("HOME", &home)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{script}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let list = Command::new("certutil")
        .args(["-L", "-d"])
        .arg(format!("sql:{}", home.join(".pki/nssdb").display()))
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(
        listed.contains("diagproxy") && listed.contains("C,,"),
        "{listed}"
    );
}

//! Hand-off: the TLS key log read by a real Wireshark (`tcpdump` captures the loopback
//! traffic, `tshark` decrypts it with the key log: without it nothing decrypts), and the
//! support bundle (`diagproxy bundle`): what it holds, what it never holds, `--verify`.

mod common;

use common::capture::{tshark, Capture};
use common::*;

fn capture_tools_present() -> bool {
    // Every probe runs, so a missing second tool is reported too.
    let tools = ["curl", "tcpdump", "tshark"].map(require_tool);
    tools.iter().all(|found| *found)
}

/// The request paths and status codes tshark can read in a capture: HTTP/1.1 and HTTP/2.
fn decrypted(file: &std::path::Path, keylog: Option<&std::path::Path>, ports: &[u16]) -> String {
    let mut args: Vec<String> = Vec::new();
    if let Some(keys) = keylog {
        args.extend(["-o".into(), format!("tls.keylog_file:{}", keys.display())]);
    }
    // The origin's and the proxy's ports are not TLS's or HTTP's usual ones: say what they
    // carry (a CONNECT to the origin's port is dissected as TLS inside the proxy's stream).
    args.extend(["-d".into(), format!("tcp.port=={},tls", ports[0])]);
    if let Some(proxy) = ports.get(1) {
        args.extend(["-d".into(), format!("tcp.port=={proxy},http")]);
    }
    for field in [
        "http.request.uri",
        "http.response.code",
        "http2.headers.path",
        "http2.headers.status",
    ] {
        args.extend(["-e".into(), field.into()]);
    }
    args.extend(["-T".into(), "fields".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    tshark(file, &args)
}

#[test]
fn wireshark_decrypts_both_legs_of_interception_with_the_key_log_and_nothing_without() {
    if !capture_tools_present() {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (ca_dir, ca_pem) = local_ca(dir.path());
    let public = TestCa::root("Test Public Root", "Public CA Inc.");
    let (leaf, key) = public.leaf(&["chatgpt.com"]);
    let origin = runtime.block_on(https_origin(vec![leaf], key));
    let roots = write_file(dir.path(), "public.pem", &public.pem());
    let ca = write_file(dir.path(), "diagproxy-ca.pem", &ca_pem);
    let pin = format!("chatgpt.com:{}:127.0.0.1", origin.port());
    let keys = dir.path().join("keys.log");
    let session = dir.path().join("session");
    let Running {
        mut child,
        addr,
        lines,
        ..
    } = run_binary(&[
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
        "--keylog".as_ref(),
        keys.as_os_str(),
        "--session-dir".as_ref(),
        session.as_os_str(),
    ]);
    // The banner's lines after the first, up to the route's.
    let banner: Vec<String> =
        std::iter::from_fn(|| lines.recv_timeout(std::time::Duration::from_secs(10)).ok())
            .take_while(|l| !l.starts_with("route:"))
            .collect();
    let banner = banner.join("\n");
    assert!(
        banner.contains("keylog: TLS session keys are being written to")
            && banner.contains(keys.to_str().unwrap()),
        "{banner}"
    );
    let proxy_port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    let capture = Capture::start(dir.path(), "session.pcap", &[origin.port(), proxy_port]);
    let base = format!("https://chatgpt.com:{}", origin.port());
    for (flag, path) in [
        ("--http1.1", "/hello?leg=h1"),
        ("--http2", "/hello?leg=h2"),
        ("--http2", "/missing-h2"),
    ] {
        let out = curl()
            .args(["-sS", "--max-time", "20", "--cacert", &ca, "-x"])
            .arg(format!("http://{addr}"))
            .arg(flag)
            .arg(format!("{base}{path}"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let pcap = capture.stop();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success());

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&keys).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let log = std::fs::read_to_string(&keys).unwrap();
    assert!(log.lines().all(|l| l.split(' ').count() == 3), "{log}");
    assert!(log.contains("CLIENT_TRAFFIC_SECRET_0 "), "{log}");
    // The session records where the keys went, and the key log is not in the folder.
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(session.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["session"]["keylog"], keys.to_str().unwrap());

    let ports = [origin.port(), proxy_port];
    let plain = decrypted(&pcap, Some(&keys), &ports);
    // Each path twice: the browser's leg (inside the CONNECT) and diagproxy's to the origin.
    for expected in ["/hello?leg=h1", "/hello?leg=h2", "/missing-h2"] {
        let seen = plain.matches(expected).count();
        assert!(seen >= 2, "{expected} seen {seen} times in:\n{plain}");
    }
    assert!(plain.contains("200") && plain.contains("404"), "{plain}");
    let sealed = decrypted(&pcap, None, &ports);
    assert!(
        !sealed.contains("/hello") && !sealed.contains("404"),
        "decrypted without keys:\n{sealed}"
    );
}

#[test]
fn check_writes_the_keys_of_its_own_tls_stages() {
    if !capture_tools_present() {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let public = TestCa::root("Test Public Root", "Public CA Inc.");
    let (leaf, key) = public.leaf(&["chatgpt.com"]);
    let origin = runtime.block_on(https_origin(vec![leaf], key));
    let roots = write_file(dir.path(), "public.pem", &public.pem());
    let pin = format!("chatgpt.com:{}:127.0.0.1", origin.port());
    let keys = dir.path().join("check-keys.log");
    let capture = Capture::start(dir.path(), "check.pcap", &[origin.port()]);
    let out = diagproxy()
        .args(["check", &format!("chatgpt.com:{}", origin.port())])
        .args(["--voice", "none", "--resolve", &pin])
        .args(["--public-roots", &roots, "--system-roots", &roots])
        .arg("--session-dir")
        .arg(dir.path().join("check"))
        .arg("--keylog")
        .arg(&keys)
        .output()
        .unwrap();
    let pcap = capture.stop();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("keylog: TLS session keys"), "{stderr}");
    let plain = decrypted(&pcap, Some(&keys), &[origin.port()]);
    // The HTTP stage's requests and the origin's answers (404: the fixture has no `/`).
    for expected in ["/\t", "/cdn-cgi/trace", "404"] {
        assert!(
            plain.contains(expected),
            "{expected:?} not decrypted:\n{plain}"
        );
    }
    let sealed = decrypted(&pcap, None, &[origin.port()]);
    assert!(
        sealed.trim().is_empty(),
        "decrypted without keys:\n{sealed}"
    );
}

#[test]
fn a_key_log_is_never_on_by_accident() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("env-keys.log");
    // SSLKEYLOGFILE alone does nothing: `check` writes no key log and says nothing of one.
    let out = diagproxy()
        .env("SSLKEYLOGFILE", &keys)
        .args([
            "check",
            "127.0.0.1:9",
            "--voice",
            "none",
            "--stage-timeout",
            "1s",
        ])
        .arg("--session-dir")
        .arg(dir.path().join("a"))
        .output()
        .unwrap();
    assert!(!keys.exists());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("keylog:"));
    // With --keylog-from-env it is honoured.
    let out = diagproxy()
        .env("SSLKEYLOGFILE", &keys)
        .args([
            "check",
            "127.0.0.1:9",
            "--voice",
            "none",
            "--stage-timeout",
            "1s",
        ])
        .arg("--keylog-from-env")
        .arg("--session-dir")
        .arg(dir.path().join("b"))
        .output()
        .unwrap();
    assert!(keys.exists(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("keylog:"));
    // A key log others can read is refused (64), and nothing else happens.
    let open = dir.path().join("open.log");
    std::fs::write(&open, "").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = diagproxy()
            .args(["check", "127.0.0.1:9", "--voice", "none"])
            .arg("--keylog")
            .arg(&open)
            .arg("--session-dir")
            .arg(dir.path().join("c"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64));
        assert!(String::from_utf8_lossy(&out.stderr).contains("can be read by other users"));
        assert!(!dir.path().join("c").exists());
    }
}

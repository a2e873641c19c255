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

// ---------------------------------------------------------------- the support bundle

/// Secrets a session was shown; none may appear in any file of a bundle.
const PLANTED: [&str; 6] = [
    "PLANTED-COOKIE-7f3a",
    "PLANTED-BEARER-91c2",
    "PLANTED-QUERY-55d0",
    "PLANTED-PROXY-PASS-0b1e",
    "PLANTED-UPSTREAM-PASS-c4d2",
    "PLANTED-ENV-PASS-e8a9",
];
/// The body of a 2xx answer (personal data: left out unless asked).
const PRIVATE_BODY: &str = "PRIVATE-CONVERSATION-BODY-2c81";

/// A finished `run` session: plain HTTP through diagproxy with cookies, a bearer token, a
/// token in the URL and downstream proxy credentials; a 403 block page and a 200 answer,
/// both bodies kept (`--bodies all`).
fn session_with_secrets(
    dir: &std::path::Path,
    runtime: &tokio::runtime::Runtime,
) -> std::path::PathBuf {
    let origin = runtime.block_on(canned_origin(vec![
        canned(
            "/blocked",
            403,
            &[("content-type", "text/html")],
            BLOCK_PAGE,
        ),
        canned(
            "/private",
            200,
            &[("content-type", "text/plain")],
            PRIVATE_BODY,
        ),
    ]));
    let session = dir.join("office");
    let Running {
        mut child, addr, ..
    } = run_binary(&[
        "--session-dir".as_ref(),
        session.as_os_str(),
        "--bodies".as_ref(),
        "all".as_ref(),
        "--proxy-auth".as_ref(),
        format!("alice:{}", PLANTED[3]).as_ref(),
    ]);
    for path in ["/blocked", "/private"] {
        let out = curl()
            .args(["-sS", "--max-time", "20", "-x"])
            .arg(format!("http://{addr}"))
            .arg("--proxy-user")
            .arg(format!("alice:{}", PLANTED[3]))
            .args(["-H", &format!("Cookie: session={}", PLANTED[0])])
            .args(["-H", &format!("Authorization: Bearer {}", PLANTED[1])])
            .arg(format!("http://{origin}{path}?access_token={}", PLANTED[2]))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success());
    session
}

/// A `check` session through a corporate proxy named with a password, with a key log.
fn check_through_proxy(
    dir: &std::path::Path,
    runtime: &tokio::runtime::Runtime,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let public = TestCa::root("Test Public Root", "Public CA Inc.");
    let (leaf, key) = public.leaf(&["chatgpt.com"]);
    let origin = runtime.block_on(https_origin(vec![leaf], key));
    let (corp, _log) = runtime.block_on(corporate_proxy(CorpMode::Allow));
    let roots = write_file(dir, "public.pem", &public.pem());
    let session = dir.join("office-check");
    let keys = dir.join("keys.log");
    let out = diagproxy()
        .args([
            "check",
            &format!("chatgpt.com:{}", origin.port()),
            "--voice",
            "none",
        ])
        .arg("--upstream-proxy")
        .arg(format!("http://bob:{}@{corp}", PLANTED[4]))
        .args(["--public-roots", &roots, "--system-roots", &roots])
        .arg("--session-dir")
        .arg(&session)
        .arg("--keylog")
        .arg(&keys)
        .output()
        .unwrap();
    assert!(
        session.join("check.json").exists(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (session, keys)
}

/// Every file of a zip: name → bytes.
fn unzip(path: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    use std::io::Read;
    let mut zip = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut files = std::collections::BTreeMap::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).unwrap();
        let name = entry.name().unwrap().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        files.insert(name, bytes);
    }
    files
}

fn bundle_command(args: &[&std::ffi::OsStr]) -> std::process::Output {
    diagproxy()
        .arg("bundle")
        .args(args)
        .env(
            "https_proxy",
            format!("http://eve:{}@127.0.0.1:1", PLANTED[5]),
        )
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn a_bundle_holds_what_its_manifest_says_and_no_secret() {
    if !require_tool("curl") {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let office = session_with_secrets(dir.path(), &runtime);
    let (check, keys) = check_through_proxy(dir.path(), &runtime);
    // The session itself holds the 2xx body (--bodies all): the bundle must leave it out.
    let har = std::fs::read_to_string(office.join("session.har")).unwrap();
    assert!(har.contains(PRIVATE_BODY));
    let zip = dir.path().join("bundle.zip");
    let args = [
        office.as_os_str(),
        check.as_os_str(),
        "-o".as_ref(),
        zip.as_os_str(),
    ];

    // No terminal and no --yes: the review is printed, nothing is written (64).
    let out = bundle_command(&args);
    assert_eq!(
        out.status.code(),
        Some(64),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let review = String::from_utf8_lossy(&out.stdout);
    assert!(
        review.contains("office/events.jsonl") && review.contains("REDACTED"),
        "{review}"
    );
    assert!(review.contains("the TLS key log"), "{review}");
    assert!(!zip.exists());

    let mut with_yes = args.to_vec();
    with_yes.push("--yes".as_ref());
    let out = bundle_command(&with_yes);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&zip).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let files = unzip(&zip);
    let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();

    // Every file listed with its real size and hash, and nothing unlisted.
    let listed = manifest["files"].as_array().unwrap();
    assert_eq!(listed.len() + 1, files.len());
    for entry in listed {
        let bytes = &files[entry["path"].as_str().unwrap()];
        assert_eq!(entry["size"], bytes.len());
        assert_eq!(entry["sha256"], diagproxy::text::sha256_hex(bytes));
    }
    for name in [
        "office/summary.json",
        "office/report.html",
        "office/report.md",
        "office/session.har",
        "office/events.jsonl",
        "office/route.json",
        "office-check/check.json",
        "office-check/summary.json",
        "environment.json",
    ] {
        assert!(
            files.contains_key(name),
            "{name} missing: {:?}",
            files.keys()
        );
    }
    // No planted secret, no 2xx body, no key log line, anywhere.
    let key_secrets: Vec<String> = std::fs::read_to_string(&keys)
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(2).map(str::to_string))
        .collect();
    assert!(!key_secrets.is_empty());
    for (name, bytes) in &files {
        let text = String::from_utf8_lossy(bytes);
        for secret in PLANTED.iter().chain([&PRIVATE_BODY]) {
            assert!(!text.contains(secret), "{secret} in {name}");
        }
        for secret in &key_secrets {
            assert!(
                !text.contains(secret.as_str()),
                "a key log secret in {name}"
            );
        }
    }
    // The block page's body is there; the 2xx body is counted as left out, and the HAR says so.
    let bodies: Vec<_> = files
        .keys()
        .filter(|n| n.starts_with("office/bodies/"))
        .collect();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert!(String::from_utf8_lossy(&files[bodies[0]]).contains("FortiGuard"));
    assert!(String::from_utf8_lossy(&files["office/session.har"]).contains("_diagproxy_left_out"));
    let left_out = manifest["left_out"].to_string();
    assert!(left_out.contains("1 body of a 2xx answer"), "{left_out}");
    assert!(left_out.contains(keys.to_str().unwrap()), "{left_out}");
    assert!(left_out.contains("private key"), "{left_out}");
    assert!(
        manifest["redactions_total"].as_u64().unwrap() >= 4,
        "{manifest}"
    );
    assert!(
        manifest["redactions"]["office/events.jsonl"]
            .as_u64()
            .unwrap()
            >= 4
    );
    assert_eq!(manifest["consent"]["how"], "--yes");
    // The environment names variables, never their values.
    let env: serde_json::Value = serde_json::from_slice(&files["environment.json"]).unwrap();
    let https = env["variables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "https_proxy")
        .unwrap();
    assert_eq!(https["set"], true);

    // --verify: 0 on the bundle, never overwritten, 2 on a tampered copy naming the file.
    let out = diagproxy()
        .args(["bundle", "--verify"])
        .arg(&zip)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = bundle_command(&with_yes);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("never overwritten"));
    let tampered = dir.path().join("tampered.zip");
    rewrite_zip(&zip, &tampered, "office/report.md", b"# All clear\n");
    let out = diagproxy()
        .args(["bundle", "--verify"])
        .arg(&tampered)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("office/report.md: changed"));
    let missing = dir.path().join("missing.zip");
    let out = diagproxy()
        .args(["bundle", "--verify"])
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(66));
    let out = diagproxy()
        .args(["bundle", "--verify"])
        .arg(&keys)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(65));
}

/// A copy of `from` with `name`'s contents replaced.
fn rewrite_zip(from: &std::path::Path, to: &std::path::Path, name: &str, contents: &[u8]) {
    use std::io::Write;
    let files = unzip(from);
    let mut zip = zip::ZipWriter::new(std::fs::File::create(to).unwrap());
    for (path, bytes) in files {
        zip.start_file(path.as_str(), zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(if path == name { contents } else { &bytes })
            .unwrap();
    }
    zip.finish().unwrap();
}

#[test]
fn a_damaged_session_bundles_what_is_there_and_lists_the_gaps() {
    if !require_tool("curl") {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let office = session_with_secrets(dir.path(), &runtime);
    std::fs::remove_file(office.join("report.html")).unwrap();
    let events = std::fs::read(office.join("events.jsonl")).unwrap();
    std::fs::write(office.join("events.jsonl"), &events[..events.len() - 40]).unwrap();
    std::fs::write(office.join("notes.txt"), "mine").unwrap();
    let zip = dir.path().join("damaged.zip");
    let out = bundle_command(&[
        office.as_os_str(),
        "-o".as_ref(),
        zip.as_os_str(),
        "--yes".as_ref(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files = unzip(&zip);
    let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let gaps = manifest["gaps"].to_string();
    assert!(
        gaps.contains("office/report.html") && gaps.contains("missing"),
        "{gaps}"
    );
    assert!(
        gaps.contains("office/events.jsonl") && gaps.contains("incomplete"),
        "{gaps}"
    );
    assert!(manifest["left_out"]
        .to_string()
        .contains("office/notes.txt"));
    assert_eq!(files["office/events.jsonl"].len(), events.len() - 40);
    assert!(!files.contains_key("office/notes.txt"));
    // Not a session, and no such folder.
    let out = bundle_command(&[dir.path().as_os_str(), "--yes".as_ref()]);
    assert_eq!(out.status.code(), Some(65));
    let out = bundle_command(&[dir.path().join("nope").as_os_str(), "--yes".as_ref()]);
    assert_eq!(out.status.code(), Some(66));
}

#[test]
fn a_session_with_credentials_is_bundled_only_when_named() {
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("secret");
    std::fs::create_dir(&session).unwrap();
    std::fs::write(session.join("events.jsonl"), "").unwrap();
    std::fs::write(
        session.join("summary.json"),
        r#"{"session":{"include_secrets":true},"hosts":[]}"#,
    )
    .unwrap();
    let zip = dir.path().join("s.zip");
    let out = bundle_command(&[
        session.as_os_str(),
        "-o".as_ref(),
        zip.as_os_str(),
        "--yes".as_ref(),
    ]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--include-sensitive secrets"));
    assert!(!zip.exists());
    let out = bundle_command(&[
        session.as_os_str(),
        "-o".as_ref(),
        zip.as_os_str(),
        "--yes".as_ref(),
        "--include-sensitive".as_ref(),
        "secrets".as_ref(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_gigabyte_scale_session_bundles_in_bounded_memory() {
    // 256 MiB of events (the benchmark, `diagproxy bench --only bundle`, measures 1 GiB).
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("long");
    std::fs::create_dir(&session).unwrap();
    let size = diagproxy::bench::bundle::synthetic_session(&session, 256 << 20).unwrap();
    let zip = dir.path().join("long.zip");
    let child = diagproxy()
        .args(["bundle", "--yes", "-o"])
        .arg(&zip)
        .arg(&session)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (status, max_rss_kib) = diagproxy::bench::load::wait_with_rss(child).unwrap();
    assert!(status.success());
    assert!(
        max_rss_kib < 64 * 1024,
        "peak RSS {max_rss_kib} KiB for {size} bytes of events"
    );
    let out = diagproxy()
        .args(["bundle", "--verify"])
        .arg(&zip)
        .output()
        .unwrap();
    assert!(out.status.success());
}

#[test]
fn the_live_page_downloads_the_running_sessions_bundle() {
    if !require_tool("curl") {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let origin = runtime.block_on(canned_origin(vec![canned(
        "/blocked",
        403,
        &[("content-type", "text/html")],
        BLOCK_PAGE,
    )]));
    let session = dir.path().join("live");
    let Running {
        mut child, addr, ..
    } = run_binary(&["--session-dir".as_ref(), session.as_os_str()]);
    let out = curl()
        .args(["-sS", "--max-time", "20", "-x"])
        .arg(format!("http://{addr}"))
        .arg(format!("http://{origin}/blocked"))
        .output()
        .unwrap();
    assert!(out.status.success());
    wait_for_events(&session, "request", 1);
    let page = curl()
        .args(["-sS", "-H", &format!("X-Diagproxy-Token: {LIVE_TOKEN}")])
        .arg(format!("http://{addr}/"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&page.stdout).contains("Download bundle"));
    let zip = dir.path().join("live.zip");
    let refused = curl()
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://{addr}/bundle.zip"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&refused.stdout), "403");
    let got = curl()
        .args([
            "-sS",
            "-f",
            "-H",
            &format!("X-Diagproxy-Token: {LIVE_TOKEN}"),
            "-o",
        ])
        .arg(&zip)
        .arg(format!("http://{addr}/bundle.zip"))
        .output()
        .unwrap();
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    let files = unzip(&zip);
    let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    assert_eq!(manifest["consent"]["how"], "live_page");
    assert_eq!(manifest["sessions"][0], session.to_str().unwrap());
    for name in [
        "live/summary.json",
        "live/report.html",
        "live/session.har",
        "live/events.jsonl",
    ] {
        assert!(files.contains_key(name), "{name}: {:?}", files.keys());
    }
    let summary = String::from_utf8_lossy(&files["live/summary.json"]);
    assert!(summary.contains("block_page"), "{summary}");
    let out = diagproxy()
        .args(["bundle", "--verify"])
        .arg(&zip)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success());
}

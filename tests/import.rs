//! `diagproxy import`: NetLogs written by a real headless Chromium in the project's loopback
//! world (a TLS origin under a test root, NSS databases made with `certutil`, a corporate
//! proxy that refuses, a resetting host, a PAC whose first proxy is dead), imported, and
//! judged as `diagproxy run` judged the same scenario with the same browser through it; the
//! HAR DevTools records in the same runs is imported and compared too.
//! Then the same files damaged: cut anywhere, invalid UTF-8, a 100 MB value, unknown event
//! names — never a panic, memory bounded. Needs `chromium` and `certutil` (libnss3-tools).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{chromium, Proxy, TestCa};
use serde_json::Value;

fn tools() -> bool {
    common::require_tool("chromium") && common::require_tool("certutil")
}

fn diagproxy() -> Command {
    Command::new(env!("CARGO_BIN_EXE_diagproxy"))
}

/// A HOME whose NSS database trusts `roots` (what Chromium on Linux reads).
fn home_trusting(roots: &[&TestCa]) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let db = home.path().join(".pki/nssdb");
    std::fs::create_dir_all(&db).unwrap();
    let db_arg = format!("sql:{}", db.display());
    let ok = Command::new("certutil")
        .args(["-d", &db_arg, "-N", "--empty-password"])
        .status()
        .unwrap();
    assert!(ok.success());
    for (i, root) in roots.iter().enumerate() {
        let pem = home.path().join(format!("root{i}.pem"));
        std::fs::write(&pem, root.pem()).unwrap();
        let ok = Command::new("certutil")
            .args(["-d", &db_arg, "-A", "-t", "C,,", "-n", &format!("root{i}")])
            .arg("-i")
            .arg(&pem)
            .status()
            .unwrap();
        assert!(ok.success());
    }
    home
}

/// Chromium visits `url` once with `flags`, driven over DevTools, and is closed when the
/// page has loaded or failed (a clean exit: a `--log-net-log` file is finished). Not
/// `--dump-dom`: with the DevTools port every test browser has, Chromium does not exit after
/// it and would be killed mid-capture.
fn visit(home: &Path, url: &str, flags: &[String]) {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut browser = chromium::Browser::open_in("about:blank", &flags, Some(home));
    browser.navigate_recorded(url, Duration::from_millis(500));
    browser.close();
}

/// A NetLog of one visit, in `mode`.
fn netlog(dir: &Path, name: &str, mode: &str, home: &Path, url: &str, flags: &[String]) -> PathBuf {
    let path = dir.join(format!("{name}.json"));
    let mut flags = flags.to_vec();
    flags.push(format!("--log-net-log={}", path.display()));
    flags.push(format!("--net-log-capture-mode={mode}"));
    visit(home, url, &flags);
    assert!(path.exists(), "chromium wrote no NetLog for {name}");
    path
}

/// `diagproxy import FILE --session-dir DIR --public-roots PEM`: exit code and summary.json.
fn import(file: &Path, dir: &Path, public: &Path) -> (i32, Value) {
    let out = diagproxy()
        .arg("import")
        .arg(file)
        .arg("--session-dir")
        .arg(dir)
        .arg("--public-roots")
        .arg(public)
        .output()
        .unwrap();
    let code = out.status.code().unwrap_or(-1);
    assert_ne!(code, 101, "panic: {}", String::from_utf8_lossy(&out.stderr));
    let summary = std::fs::read_to_string(dir.join("summary.json"))
        .map(|s| serde_json::from_str(&s).unwrap())
        .unwrap_or(Value::Null);
    (code, summary)
}

fn row<'a>(summary: &'a Value, host: &str, port: u16) -> &'a Value {
    summary["hosts"]
        .as_array()
        .and_then(|h| h.iter().find(|h| h["host"] == host && h["port"] == port))
        .unwrap_or_else(|| panic!("{host}:{port} not in {summary:#}"))
}

/// A host row's finding kinds (with vendor) and failure kinds, sorted: what must agree.
fn kinds(row: &Value) -> (Vec<String>, Vec<String>) {
    let mut findings: Vec<String> = row["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            format!(
                "{} {}",
                f["kind"].as_str().unwrap(),
                f["vendor"].as_str().unwrap_or("")
            )
        })
        .collect();
    findings.sort();
    findings.dedup();
    let mut failures: Vec<String> = row["failures"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    failures.sort();
    (findings, failures)
}

/// The loopback world of one scenario: the public root (trusted by the browser and passed
/// as --public-roots) and an origin for chatgpt.com presenting `chain_ca`'s leaf.
struct World {
    dir: tempfile::TempDir,
    public: TestCa,
    public_pem: PathBuf,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let public = TestCa::root("Public Test Root", "Public Test CA Inc.");
        let public_pem = dir.path().join("public.pem");
        std::fs::write(&public_pem, public.pem()).unwrap();
        World {
            dir,
            public,
            public_pem,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

async fn origin_signed_by(ca: &TestCa) -> u16 {
    let (leaf, key) = ca.leaf(&["chatgpt.com"]);
    common::tls_origin_with(vec![leaf], key).await.port()
}

/// The same scenario through `diagproxy run` with the same browser pointed at it: the
/// session's summary.
async fn through_run(run_args: Vec<String>, home: PathBuf, url: String) -> Value {
    let args: Vec<&str> = run_args.iter().map(String::as_str).collect();
    let proxy = Proxy::start(&args).await;
    let flags = [format!("--proxy-server=http://{}", proxy.addr)];
    tokio::task::spawn_blocking(move || visit(&home, &url, &flags))
        .await
        .unwrap();
    proxy.stop().await.summary
}

/// What a file names differently from `run` in a scenario, stated instead: for the NetLog
/// its findings, for the HAR its findings and failures.
#[derive(Clone, Copy)]
struct Differs<'a> {
    netlog: Option<&'a [&'a str]>,
    har: Option<(&'a [&'a str], &'a [&'a str])>,
}

impl<'a> Differs<'a> {
    const NONE: Differs<'static> = Differs {
        netlog: None,
        har: None,
    };

    /// Only the HAR differs: it cannot hold what run saw (a proxy's CONNECT answer, the
    /// moment of a reset, the bytes that came back).
    fn har(findings: &'a [&'a str], failures: &'a [&'a str]) -> Differs<'a> {
        Differs {
            netlog: None,
            har: Some((findings, failures)),
        }
    }
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// One visit of `url` by a DevTools-driven Chromium with `flags` that writes both files a
/// user could send: a NetLog (`--log-net-log`, Everything mode) and the HAR DevTools exports
/// from the same run (failed requests kept). Returns (NetLog, HAR).
fn netlog_and_har(
    dir: &Path,
    name: &str,
    home: &Path,
    url: &str,
    flags: &[String],
) -> (PathBuf, PathBuf) {
    let netlog = dir.join(format!("{name}.json"));
    let mut flags = flags.to_vec();
    flags.push(format!("--log-net-log={}", netlog.display()));
    flags.push("--net-log-capture-mode=Everything".into());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut browser = chromium::Browser::open_in("about:blank", &flags, Some(home));
    browser.navigate_recorded(url, Duration::from_millis(500));
    let har = dir.join(format!("{name}.har"));
    std::fs::write(&har, browser.har().to_string()).unwrap();
    browser.close();
    assert!(netlog.exists(), "chromium wrote no NetLog for {name}");
    (netlog, har)
}

/// Imports the NetLog and the HAR of one visit of `url` (Chromium with `flags`, names mapped
/// to loopback) and runs the same visit through diagproxy. The NetLog must name the same
/// finding and failure kinds on chatgpt.com:PORT as `run`, the HAR too and the same exit
/// code, unless `differs` states what a file names instead and why. Returns the NetLog
/// import's exit code and summary.
async fn both(
    world: &World,
    name: &str,
    home: &Path,
    port: u16,
    flags: Vec<String>,
    run_args: Vec<String>,
    differs: Differs<'_>,
) -> (i32, Value) {
    let url = format!("https://chatgpt.com:{port}/");
    let mut import_flags = flags.clone();
    import_flags.push("--host-resolver-rules=MAP chatgpt.com 127.0.0.1".into());
    let (dir, h, u) = (
        world.dir.path().to_path_buf(),
        home.to_path_buf(),
        url.clone(),
    );
    let n = name.to_string();
    let (file, har) =
        tokio::task::spawn_blocking(move || netlog_and_har(&dir, &n, &h, &u, &import_flags))
            .await
            .unwrap();
    let (code, imported) = import(
        &file,
        &world.path(&format!("{name}-import")),
        &world.public_pem,
    );
    let (har_code, from_har) = import(&har, &world.path(&format!("{name}-har")), &world.public_pem);
    let mut run_args = run_args;
    run_args.extend([
        "--resolve".into(),
        format!("chatgpt.com:{port}:127.0.0.1"),
        "--public-roots".into(),
        world.public_pem.display().to_string(),
    ]);
    let ran = through_run(run_args, home.to_path_buf(), url).await;
    let expected = kinds(row(&ran, "chatgpt.com", port));
    assert_eq!(
        kinds(row(&imported, "chatgpt.com", port)),
        differs
            .netlog
            .map_or(expected.clone(), |f| (strings(f), expected.1.clone())),
        "{name}: import and run disagree\nimport: {imported:#}\nrun: {ran:#}"
    );
    assert_eq!(imported["source"]["format"], "netlog");
    assert_eq!(
        kinds(row(&from_har, "chatgpt.com", port)),
        differs
            .har
            .map_or(expected, |(f, x)| (strings(f), strings(x))),
        "{name}: the HAR and run disagree\nHAR: {from_har:#}\nrun: {ran:#}"
    );
    assert_eq!(from_har["source"]["format"], "har");
    assert!(from_har["cannot_tell"]
        .to_string()
        .contains("TLS inspection: cannot tell"));
    assert_eq!(har_code, code, "{name}: the HAR and the NetLog exit alike");
    (code, imported)
}

/// A HOME whose NSS database trusts `roots`, and run's arguments trusting the same
/// (`--system-roots`): the browser and diagproxy see one trust store.
fn trusting(world: &World, roots: &[&TestCa]) -> (tempfile::TempDir, Vec<String>) {
    let home = home_trusting(roots);
    let system = system_pem(world, roots);
    (home, vec!["--system-roots".into(), system])
}

fn system_pem(world: &World, roots: &[&TestCa]) -> String {
    let path = world.path("system.pem");
    let pem: String = roots.iter().map(|r| r.pem()).collect();
    std::fs::write(&path, pem).unwrap();
    path.display().to_string()
}

/// An origin under the public root behind a fake corporate proxy in `mode`: its port, a
/// HOME trusting the root, the browser's flags (`--proxy-server`) and run's arguments
/// (`--system-roots`, `--upstream-proxy`).
async fn behind_corporate_proxy(
    world: &World,
    mode: common::CorpMode,
) -> (u16, tempfile::TempDir, Vec<String>, Vec<String>) {
    let port = origin_signed_by(&world.public).await;
    let (corp, _) = common::corporate_proxy(mode).await;
    let home = home_trusting(&[&world.public]);
    let system = system_pem(world, &[&world.public]);
    let flags = vec![format!("--proxy-server=http://{corp}")];
    let run = vec![
        "--system-roots".into(),
        system,
        "--upstream-proxy".into(),
        format!("http://{corp}"),
    ];
    (port, home, flags, run)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clean_page_is_public_and_exits_0() {
    if !tools() {
        return;
    }
    let world = World::new();
    let port = origin_signed_by(&world.public).await;
    let (home, run) = trusting(&world, &[&world.public]);
    let (code, summary) = both(
        &world,
        "clean",
        home.path(),
        port,
        vec![],
        run,
        Differs::NONE,
    )
    .await;
    assert_eq!(code, 0, "{summary:#}");
    let host = row(&summary, "chatgpt.com", port);
    assert_eq!(host["tls"]["verdict"], "public");
    assert_eq!(host["allowlist"], "*.chatgpt.com");
    assert!(summary["verdict"]
        .as_str()
        .unwrap()
        .starts_with("No problem seen"));
    assert_eq!(summary["source"]["capture_mode"], "Everything");
    assert!(summary["source"]["browser"]
        .as_str()
        .unwrap()
        .contains("Chrom"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resigned_chain_the_browser_trusts_is_inspection_with_its_vendor_and_exits_0() {
    if !tools() {
        return;
    }
    let world = World::new();
    let zscaler = TestCa::root("Zscaler Root CA", "Zscaler Inc.");
    let port = origin_signed_by(&zscaler).await;
    let (home, run) = trusting(&world, &[&world.public, &zscaler]);
    let (code, summary) = both(
        &world,
        "inspected",
        home.path(),
        port,
        vec![],
        run,
        Differs::NONE,
    )
    .await;
    let host = row(&summary, "chatgpt.com", port);
    assert_eq!(host["tls"]["verdict"], "inspected", "{host:#}");
    assert_eq!(host["tls"]["vendor"], "Zscaler");
    assert_eq!(
        code, 0,
        "inspection the browser accepted is a warning: {summary:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_untrusted_ca_is_untrusted_certificate_and_exits_2() {
    if !tools() {
        return;
    }
    let world = World::new();
    let stranger = TestCa::root("Unknown Gateway CA", "Nobody");
    let port = origin_signed_by(&stranger).await;
    let (home, run) = trusting(&world, &[&world.public]);
    let (code, summary) = both(
        &world,
        "untrusted",
        home.path(),
        port,
        vec![],
        run,
        Differs::NONE,
    )
    .await;
    let host = row(&summary, "chatgpt.com", port);
    assert_eq!(host["tls"]["verdict"], "untrusted", "{host:#}");
    assert_eq!(code, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proxy_that_refuses_connect_with_a_block_page_is_named() {
    if !tools() {
        return;
    }
    let world = World::new();
    let (port, home, flags, run) = behind_corporate_proxy(&world, common::CorpMode::Block).await;
    // Chromium never shows a proxy's answer to CONNECT to a page: a HAR has no block page,
    // only the refusal.
    let har = Differs::har(&["upstream_proxy_refused "], &["upstream_proxy_refused"]);
    let (code, summary) = both(&world, "blocked", home.path(), port, flags, run, har).await;
    let host = row(&summary, "chatgpt.com", port);
    let (findings, failures) = kinds(host);
    assert!(
        findings.iter().any(|f| f.starts_with("block_page")),
        "{host:#}"
    );
    assert_eq!(failures, ["upstream_proxy_refused"]);
    assert_eq!(code, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resetting_host_is_reset() {
    if !tools() {
        return;
    }
    let world = World::new();
    let port = common::resetting_server().await.port();
    let home = home_trusting(&[&world.public]);
    // A HAR says the connection was reset, not that it was right after the ClientHello.
    let har = Differs::har(&["reset "], &["reset"]);
    let (code, summary) = both(&world, "reset", home.path(), port, vec![], vec![], har).await;
    let (_, failures) = kinds(row(&summary, "chatgpt.com", port));
    assert_eq!(failures, ["reset"]);
    assert_eq!(code, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_for_another_name_is_untrusted_with_name_mismatch() {
    if !tools() {
        return;
    }
    let world = World::new();
    let (leaf, key) = world.public.leaf(&["other.example"]);
    let port = common::tls_origin_with(vec![leaf], key).await.port();
    let (home, run) = trusting(&world, &[&world.public]);
    let (code, summary) = both(
        &world,
        "mismatch",
        home.path(),
        port,
        vec![],
        run,
        Differs::NONE,
    )
    .await;
    let host = row(&summary, "chatgpt.com", port);
    assert_eq!(host["tls"]["verdict"], "untrusted", "{host:#}");
    let untrusted = host["findings"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["kind"] == "untrusted_certificate"))
        .expect("untrusted_certificate");
    assert!(
        untrusted["evidence"]
            .as_str()
            .unwrap()
            .contains("name mismatch"),
        "{untrusted:#}"
    );
    assert_eq!(code, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn plaintext_where_tls_was_expected_is_named() {
    if !tools() {
        return;
    }
    let world = World::new();
    let port = common::origin().await.port();
    let home = home_trusting(&[&world.public]);
    // A HAR has the browser's -107 (a failed handshake), not the bytes that came back.
    let har = Differs::har(&["tls_failed "], &["tls_failed"]);
    let (code, summary) = both(&world, "plaintext", home.path(), port, vec![], vec![], har).await;
    let host = row(&summary, "chatgpt.com", port);
    let (findings, failures) = kinds(host);
    assert!(
        findings.iter().any(|f| f.starts_with("non_tls")),
        "{host:#}"
    );
    // As run records it: the finding is the diagnosis, the tunnel itself carried bytes.
    assert!(failures.is_empty(), "{host:#}");
    assert_eq!(code, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proxy_asking_for_credentials_is_upstream_proxy_auth() {
    if !tools() {
        return;
    }
    let world = World::new();
    let (port, home, flags, run) =
        behind_corporate_proxy(&world, common::CorpMode::RequireAuth).await;
    // run tried to sign in itself and names why it could not (no --upstream-user for Basic);
    // the files show a browser that was asked for credentials.
    let differs = Differs {
        netlog: Some(&["upstream_proxy_auth "]),
        har: Some((&["upstream_proxy_auth "], &["upstream_proxy_auth"])),
    };
    let (code, summary) = both(&world, "auth", home.path(), port, flags, run, differs).await;
    let (_, failures) = kinds(row(&summary, "chatgpt.com", port));
    assert_eq!(failures, ["upstream_proxy_auth"]);
    assert_eq!(code, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_first_proxy_with_a_working_fallback_is_a_warning() {
    if !tools() {
        return;
    }
    let world = World::new();
    let port = origin_signed_by(&world.public).await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let pac = format!(
        "function FindProxyForURL(u, h) {{ return \"PROXY 127.0.0.1:{dead_port}; DIRECT\"; }}"
    );
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(pac);
    let flags = vec![
        format!("--proxy-pac-url=data:application/x-javascript-config;base64,{b64}"),
        "--host-resolver-rules=MAP chatgpt.com 127.0.0.1".into(),
    ];
    let home = home_trusting(&[&world.public]);
    let url = format!("https://chatgpt.com:{port}/");
    let (dir, h) = (world.dir.path().to_path_buf(), home.path().to_path_buf());
    let file =
        tokio::task::spawn_blocking(move || netlog(&dir, "pac", "Default", &h, &url, &flags))
            .await
            .unwrap();
    let (code, summary) = import(&file, &world.path("pac-import"), &world.public_pem);
    let host = row(&summary, "chatgpt.com", port);
    let (findings, failures) = kinds(host);
    assert!(
        findings.contains(&"proxy_unreachable ".to_string()),
        "{host:#}"
    );
    assert!(failures.is_empty(), "{host:#}");
    assert_eq!(host["tls"]["verdict"], "public");
    assert_eq!(code, 0, "{summary:#}");
    let routes = host["routes"].to_string();
    assert!(routes.contains("DIRECT"), "{routes}");
    // Default mode holds no bodies: the file says what it cannot show.
    assert!(summary["cannot_tell"].to_string().contains("block pages"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pac_that_throws_is_pac_error_and_the_way_without_it_is_shown() {
    if !tools() {
        return;
    }
    let world = World::new();
    let port = origin_signed_by(&world.public).await;
    let home = home_trusting(&[&world.public]);
    let system = system_pem(&world, &[&world.public]);
    let pac = "function FindProxyForURL(u, h) { throw new Error(\"broken rule\"); }";
    let pac_file = world.path("broken.pac");
    std::fs::write(&pac_file, pac).unwrap();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(pac);
    let flags = vec![format!(
        "--proxy-pac-url=data:application/x-javascript-config;base64,{b64}"
    )];
    let run = vec![
        "--system-roots".into(),
        system,
        "--upstream-proxy".into(),
        format!("pac:{}", pac_file.display()),
    ];
    // A HAR holds no route: the PAC's failure is not in it.
    let har = Differs::har(&[], &[]);
    let (code, summary) = both(&world, "pacthrows", home.path(), port, flags, run, har).await;
    let host = row(&summary, "chatgpt.com", port);
    let pac_error = host["findings"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["kind"] == "pac_error"))
        .unwrap_or_else(|| panic!("no pac_error: {host:#}"));
    let evidence = pac_error["evidence"].as_str().unwrap();
    assert!(evidence.contains("ERR_PAC_SCRIPT_FAILED"), "{evidence}");
    assert!(evidence.contains("broken rule"), "{evidence}");
    assert!(evidence.contains("DIRECT"), "{evidence}");
    assert_eq!(host["tls"]["verdict"], "public");
    assert_eq!(code, 0, "the page loaded DIRECT: a warning, {summary:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_heavily_redacted_capture_is_insufficient_never_all_clear() {
    if !tools() {
        return;
    }
    let world = World::new();
    let port = origin_signed_by(&world.public).await;
    let home = home_trusting(&[&world.public]);
    let url = format!("https://chatgpt.com:{port}/");
    let flags = vec!["--host-resolver-rules=MAP chatgpt.com 127.0.0.1".to_string()];
    let (dir, h) = (world.dir.path().to_path_buf(), home.path().to_path_buf());
    let file = tokio::task::spawn_blocking(move || {
        netlog(&dir, "redacted", "HeavilyRedacted", &h, &url, &flags)
    })
    .await
    .unwrap();
    let out_dir = world.path("redacted-import");
    let (code, summary) = import(&file, &out_dir, &world.public_pem);
    assert_eq!(code, 65);
    assert_eq!(summary["insufficient_detail"], true);
    let verdict = summary["verdict"].as_str().unwrap();
    assert!(
        verdict.contains("Insufficient detail: capture again in Default mode"),
        "{verdict}"
    );
    let report = std::fs::read_to_string(out_dir.join("report.md")).unwrap();
    assert!(report.contains("Insufficient detail"), "{report}");
}

/// A real NetLog (a clean visit in Everything mode) to damage.
async fn real_netlog(world: &World) -> PathBuf {
    let port = origin_signed_by(&world.public).await;
    let home = home_trusting(&[&world.public]);
    let url = format!("https://chatgpt.com:{port}/");
    let flags = vec!["--host-resolver-rules=MAP chatgpt.com 127.0.0.1".to_string()];
    let dir = world.dir.path().to_path_buf();
    let home = home.path().to_path_buf();
    tokio::task::spawn_blocking(move || netlog(&dir, "real", "Everything", &home, &url, &flags))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn damaged_files_never_panic_and_a_cut_file_is_recovered() {
    if !tools() {
        return;
    }
    let world = World::new();
    let file = real_netlog(&world).await;
    let bytes = std::fs::read(&file).unwrap();
    let events_at = bytes
        .windows(9)
        .position(|w| w == b"\"events\":")
        .expect("an events key");
    // Cut anywhere: 0 (after constants and an event: recovered and said so) or 65.
    let mut seed = 0x9e37_79b9_u64;
    for i in 0..24 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let cut = if i == 0 {
            bytes.len() - 3
        } else {
            (seed >> 33) as usize % bytes.len()
        };
        let damaged = world.path(&format!("cut{i}.json"));
        std::fs::write(&damaged, &bytes[..cut]).unwrap();
        let (code, summary) = import(&damaged, &world.path(&format!("cut{i}")), &world.public_pem);
        assert!(
            code == 0 || code == 65 || code == 2,
            "cut at {cut}: exit {code}"
        );
        if code != 65 {
            assert!(
                cut > events_at,
                "cut at {cut} before the events was accepted"
            );
            let stopped = summary["source"]["stopped"].as_str().unwrap_or_default();
            assert!(
                stopped.contains("read up to the last complete event"),
                "cut {cut}: {stopped}"
            );
        }
    }
    // Invalid UTF-8 in the middle of the events: recovered up to there. The middle event,
    // not the middle of the file: what follows the events (`polledData`) is skipped unread,
    // and a capture with a long one put the file's middle there (a CI run, 2026-12-07).
    let mut broken = bytes.clone();
    let events_end = bytes
        .windows(14)
        .rposition(|w| w == b"\"polledData\":")
        .filter(|&end| end > events_at)
        .unwrap_or(bytes.len());
    let starts: Vec<usize> = (events_at..events_end)
        .filter(|&i| bytes[i] == b'\n' && bytes.get(i + 1) == Some(&b'{'))
        .collect();
    assert!(starts.len() > 2, "a real capture has events");
    let at = starts[starts.len() / 2] + 2;
    broken[at] = 0xff;
    broken[at + 1] = 0xfe;
    let damaged = world.path("utf8.json");
    std::fs::write(&damaged, &broken).unwrap();
    let (code, summary) = import(&damaged, &world.path("utf8"), &world.public_pem);
    assert!(code == 0 || code == 2, "exit {code}");
    assert!(summary["source"]["stopped"]
        .as_str()
        .unwrap()
        .contains("byte"));
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_events_are_skipped_and_a_100_mb_value_stays_in_bounded_memory() {
    if !tools() {
        return;
    }
    let world = World::new();
    let file = real_netlog(&world).await;
    let text = std::fs::read_to_string(&file).unwrap();
    let events_at = text
        .find("\"events\": [")
        .or_else(|| text.find("\"events\":["))
        .unwrap();
    let open = text[events_at..].find('[').unwrap() + events_at + 1;
    // An event of a type no constant names, one of another shape, and one 100 MB value.
    let mut edited = String::with_capacity(text.len() + 256);
    edited.push_str(&text[..open]);
    edited.push_str(
        "{\"phase\":0,\"source\":{\"id\":1,\"type\":0},\"time\":\"1\",\"type\":999999},\n",
    );
    edited.push_str("{\"phase\":\"odd\",\"source\":7,\"type\":\"x\",\"params\":{\"url\":5}},\n");
    edited.push_str(&text[open..]);
    let unknown = world.path("unknown.json");
    std::fs::write(&unknown, &edited).unwrap();
    let (code, summary) = import(&unknown, &world.path("unknown"), &world.public_pem);
    assert_eq!(code, 0, "{summary:#}");
    assert!(summary["source"]["stopped"].is_null(), "{summary:#}");
    let chatgpt = summary["hosts"]
        .as_array()
        .and_then(|h| h.iter().find(|h| h["host"] == "chatgpt.com"))
        .expect("chatgpt.com");
    assert_eq!(chatgpt["tls"]["verdict"], "public", "{chatgpt:#}");

    // Written in pieces, so this process never holds 100 MB (a forked child would count it).
    let big = world.path("huge.json");
    {
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::fs::File::create(&big).unwrap());
        out.write_all(&text.as_bytes()[..open]).unwrap();
        out.write_all(b"{\"params\":{\"url\":\"").unwrap();
        let chunk = vec![b'a'; 1 << 20];
        for _ in 0..100 {
            out.write_all(&chunk).unwrap();
        }
        out.write_all(
            b"\"},\"phase\":0,\"source\":{\"id\":1,\"type\":0},\"time\":\"1\",\"type\":1},\n",
        )
        .unwrap();
        out.write_all(&text.as_bytes()[open..]).unwrap();
        out.flush().unwrap();
    }
    drop((text, edited));
    let child = diagproxy()
        .arg("import")
        .arg(&big)
        .arg("--session-dir")
        .arg(world.path("huge"))
        .arg("--public-roots")
        .arg(&world.public_pem)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (status, max_rss_kib) = own_peak_rss(child);
    assert_ne!(status.code(), Some(101), "panic");
    assert!(max_rss_kib < 64 * 1024, "peak RSS {max_rss_kib} KiB");
}

/// The child's own peak RSS in KiB: `VmHWM` of its address space, read from /proc while it
/// runs. (wait4's `ru_maxrss` would also count this test process's peak, which a spawned
/// child inherits at exec, and this process drives browsers.)
fn own_peak_rss(mut child: std::process::Child) -> (std::process::ExitStatus, u64) {
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        let hwm = std::fs::read_to_string(&status_file).ok().and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        });
        peak = peak.max(hwm.unwrap_or(0));
        if let Some(status) = child.try_wait().unwrap() {
            return (status, peak);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_missing_file_exits_66_and_garbage_exits_65_with_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let out = diagproxy()
        .arg("import")
        .arg(dir.path().join("nope.json"))
        .arg("--session-dir")
        .arg(dir.path().join("s1"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(66));
    let garbage = dir.path().join("garbage.json");
    std::fs::write(&garbage, "{\"constants\": {\"logEventTypes\": [1,2").unwrap();
    let out = diagproxy()
        .arg("import")
        .arg(&garbage)
        .arg("--session-dir")
        .arg(dir.path().join("s2"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(65));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at byte"), "{err}");
    assert!(
        !dir.path().join("s2").exists(),
        "nothing written for an unreadable file"
    );
}

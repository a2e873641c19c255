//! Fleet (#32) against the real engine: a real Prometheus scrapes `diagproxy exporter`'s
//! `/probe` for loopback fixtures (clean, re-signed by a Zscaler-named CA, a block page, a
//! reset, a silent host) and the tests ask Prometheus's HTTP API what it stored; `check
//! --push` fills a real Pushgateway that Prometheus scrapes with `honor_labels`; `promtool
//! check metrics` judges every exposition; the exporter refuses what it must and never
//! hangs; `run --metrics` counts a session's requests. Prometheus, promtool, the Pushgateway
//! and curl are outside programs: missing, the test skips (fails under
//! DIAGPROXY_REQUIRE_TOOLS=1).

mod common;

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const BLOCK_403: &str = "<html><head><title>Access Denied</title></head><body><h1>Internet Security by Zscaler</h1><p>Your organization's security policy has blocked access to this site.</p></body></html>";

/// How long a test waits for Prometheus to have scraped what it asserts.
const DEADLINE: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------- the loopback world

/// The fixture hosts, each a profile host pinned to a loopback port, and the trust stores:
/// `public.pem` (the only public root) and `system.pem` (that root plus the Zscaler-named
/// one, as on a machine the corporate CA was pushed to).
struct World {
    dir: tempfile::TempDir,
    public_pem: String,
    system_pem: String,
    /// (name, port): clean, re-signed, blocked, reset, silent.
    hosts: Vec<(&'static str, u16)>,
    _rt: tokio::runtime::Runtime,
}

const CLEAN: usize = 0;
const RESIGNED: usize = 1;
const BLOCKED: usize = 2;
const RESET: usize = 3;
const SILENT: usize = 4;

impl World {
    fn new() -> World {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let public = TestCa::root("Test Public Root", "Public CA Inc.");
        let zscaler = TestCa::root("Zscaler Root CA", "Zscaler Inc.");
        let public_pem = write_file(dir.path(), "public.pem", &public.pem());
        let system_pem = write_file(dir.path(), "system.pem", &(public.pem() + &zscaler.pem()));
        let page = canned(
            "/",
            200,
            &[("content-type", "text/html")],
            "<html>ok</html>",
        );
        let (leaf, key) = public.leaf(&["chatgpt.com"]);
        let clean = rt.block_on(canned_https_origin(vec![leaf], key, vec![page]));
        let (leaf, key) = zscaler.leaf(&["cdn.oaistatic.com"]);
        let ok = canned("/", 200, &[], "ok");
        let resigned = rt.block_on(canned_https_origin(vec![leaf], key, vec![ok]));
        let (leaf, key) = public.leaf(&["ab.chatgpt.com"]);
        let denied = canned("/", 403, &[("content-type", "text/html")], BLOCK_403);
        let blocked = rt.block_on(canned_https_origin(vec![leaf], key, vec![denied]));
        let reset = rt.block_on(resetting_server());
        let silent = rt.block_on(silent_server());
        World {
            dir,
            public_pem,
            system_pem,
            hosts: vec![
                ("chatgpt.com", clean.port()),
                ("cdn.oaistatic.com", resigned.port()),
                ("ab.chatgpt.com", blocked.port()),
                ("ws.chatgpt.com", reset.port()),
                ("auth.openai.com", silent.port()),
            ],
            _rt: rt,
        }
    }

    fn target(&self, i: usize) -> String {
        let (name, port) = self.hosts[i];
        format!("{name}:{port}")
    }

    /// `check`'s flags for this world: direct, the trust stores, every name pinned.
    fn flags(&self, stage_timeout: &str) -> Vec<String> {
        let mut args: Vec<String> = [
            "--upstream-proxy",
            "direct",
            "--stage-timeout",
            stage_timeout,
            "--voice",
            "none",
            "--public-roots",
            &self.public_pem,
            "--system-roots",
            &self.system_pem,
        ]
        .map(String::from)
        .to_vec();
        for (name, port) in &self.hosts {
            args.extend(["--resolve".into(), format!("{name}:{port}:127.0.0.1")]);
        }
        args
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A child process killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `diagproxy exporter --listen 127.0.0.1:0 ARGS`: the child and the address its banner
/// names.
fn exporter(args: &[String]) -> (Killed, String) {
    let mut child = diagproxy()
        .args(["exporter", "--listen", "127.0.0.1:0"])
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn diagproxy exporter");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = std::io::BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    let addr = loop {
        let Some(Ok(line)) = lines.next() else {
            panic!("the exporter ended before its banner: {seen:?}");
        };
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split('/').next().unwrap().to_string();
        }
        seen.push(line);
    };
    std::thread::spawn(move || lines.for_each(drop));
    (Killed(child), addr)
}

/// `curl` of `url` with extra arguments: (status, body). A curl that gets no answer within
/// 30 s fails the test (the exporter must never hang).
fn fetch(url: &str, extra: &[&str]) -> (u16, String) {
    let out = curl()
        .args(["-s", "-m", "30", "-w", "\n%{http_code}"])
        .args(extra)
        .arg(url)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    let code = code.trim().parse().unwrap_or(0);
    assert!(
        code != 0,
        "no answer from {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (code, body.to_string())
}

/// `promtool check metrics` on an exposition: clean, or the test fails with its complaint.
fn promtool_clean(exposition: &str, what: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics on {what}: {said}\n{exposition}"
    );
}

/// The exposition's value of the series whose line starts with `series` (name and labels
/// as written).
fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn tools(names: &[&str]) -> bool {
    names.iter().all(|n| require_tool(n))
}

// ---------------------------------------------------------------- a real Prometheus

/// Prometheus on a loopback port with this scrape configuration, its storage in `dir`.
struct Prometheus {
    _child: Killed,
    port: u16,
}

impl Prometheus {
    fn start(dir: &Path, scrape_configs: &str) -> Prometheus {
        let config = format!(
            "global:\n  scrape_interval: 2s\n  evaluation_interval: 2s\nscrape_configs:\n{scrape_configs}"
        );
        let file = write_file(dir, "prometheus.yml", &config);
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={file}"))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("prometheus");
        let prometheus = Prometheus {
            _child: Killed(child),
            port,
        };
        let started = Instant::now();
        while fetch_quietly(&format!("http://127.0.0.1:{port}/-/ready")) != 200 {
            assert!(
                started.elapsed() < DEADLINE,
                "Prometheus never became ready: {}",
                std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        prometheus
    }

    /// `/api/v1/query`: each series' labels and value.
    fn query(&self, promql: &str) -> Vec<(Value, f64)> {
        let url = format!("http://127.0.0.1:{}/api/v1/query", self.port);
        let encoded = format!("query={promql}");
        let (code, body) = fetch(&url, &["-G", "--data-urlencode", &encoded]);
        assert_eq!(code, 200, "{promql}: {body}");
        let doc: Value = serde_json::from_str(&body).unwrap();
        doc["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let value = r["value"][1].as_str().unwrap().parse().unwrap();
                (r["metric"].clone(), value)
            })
            .collect()
    }

    /// Polls `promql` until `done` holds for its answer, or fails at the deadline.
    fn wait(&self, promql: &str, done: impl Fn(&[(Value, f64)]) -> bool) -> Vec<(Value, f64)> {
        let started = Instant::now();
        loop {
            let answer = self.query(promql);
            if done(&answer) {
                return answer;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "{promql}: still {answer:?}; targets: {}",
                fetch(
                    &format!("http://127.0.0.1:{}/api/v1/targets", self.port),
                    &[]
                )
                .1
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The one value of `promql` once Prometheus has it.
    fn value(&self, promql: &str) -> f64 {
        self.wait(promql, |a| a.len() == 1)[0].1
    }
}

fn fetch_quietly(url: &str) -> u16 {
    let out = curl()
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-m",
            "5",
            "-w",
            "%{http_code}",
            url,
        ])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0)
}

/// A scrape job for `/probe` as blackbox_exporter users write it: the target list becomes
/// `__param_target`, the target stays the `instance`, and the exporter is the address.
fn probe_job(exporter: &str, targets: &[String]) -> String {
    let list = targets
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "  - job_name: diagproxy\n    metrics_path: /probe\n    scrape_interval: 3s\n    scrape_timeout: 3s\n    static_configs:\n      - targets: [{list}]\n    relabel_configs:\n      - source_labels: [__address__]\n        target_label: __param_target\n      - source_labels: [__param_target]\n        target_label: instance\n      - target_label: __address__\n        replacement: {exporter}\n"
    )
}

// ---------------------------------------------------------------- the tests

#[test]
fn prometheus_scrapes_the_exporters_probe_of_every_fixture() {
    if !tools(&["curl", "prometheus", "promtool"]) {
        return;
    }
    let world = World::new();
    let (_exporter, addr) = exporter(&world.flags("1s"));
    let targets: Vec<String> = (0..world.hosts.len()).map(|i| world.target(i)).collect();
    for target in targets.iter().chain([&"profile".to_string()]) {
        let (code, body) = fetch(&format!("http://{addr}/probe?target={target}"), &[]);
        assert_eq!(code, 200, "{target}: {body}");
        promtool_clean(&body, &format!("/probe?target={target}"));
    }
    let prometheus = Prometheus::start(world.dir.path(), &probe_job(&addr, &targets));
    let success = |i: usize| {
        prometheus.value(&format!(
            "probe_success{{instance=\"{}\"}}",
            world.target(i)
        ))
    };
    assert_eq!(success(CLEAN), 1.0, "a clean host works");
    assert_eq!(
        success(RESIGNED),
        1.0,
        "a chain re-signed by a CA this machine trusts works: the interception is its own series"
    );
    for i in [BLOCKED, RESET, SILENT] {
        assert_eq!(success(i), 0.0, "{} fails", world.target(i));
    }

    let intercepted = prometheus.wait("diagproxy_tls_interception_info{vendor=\"Zscaler\"}", |a| {
        !a.is_empty()
    });
    assert_eq!(intercepted.len(), 1, "{intercepted:?}");
    assert_eq!(intercepted[0].0["instance"], world.target(RESIGNED));
    assert_eq!(intercepted[0].0["host"], "cdn.oaistatic.com");
    assert!(intercepted[0].0["issuer"]
        .as_str()
        .unwrap()
        .contains("Zscaler"));
    assert_eq!(
        intercepted[0].0["fingerprint_sha256"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    let chain = prometheus.value(&format!(
        "probe_ssl_earliest_cert_expiry{{instance=\"{}\"}}",
        world.target(RESIGNED)
    ));
    assert!(chain > 1.7e9, "a real notAfter: {chain}");

    let status = prometheus.value(&format!(
        "probe_http_status_code{{instance=\"{}\"}}",
        world.target(BLOCKED)
    ));
    assert_eq!(status, 403.0);
    let kinds = |i: usize, family: &str| -> Vec<String> {
        let promql = format!("{family}{{instance=\"{}\"}}", world.target(i));
        prometheus
            .wait(&promql, |a| !a.is_empty())
            .iter()
            .map(|(m, _)| m["kind"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(kinds(BLOCKED, "diagproxy_finding_info").contains(&"block_page".to_string()));
    let reset = prometheus.wait(
        &format!(
            "diagproxy_failure_info{{instance=\"{}\"}}",
            world.target(RESET)
        ),
        |a| !a.is_empty(),
    );
    assert_eq!(reset[0].0["kind"], "reset", "{reset:?}");
    assert!(
        kinds(RESET, "diagproxy_finding_info").contains(&"reset_after_client_hello".to_string())
    );
    assert_eq!(reset[0].0["side"], "upstream", "{reset:?}");
    let silent_tls = prometheus.value(&format!(
        "diagproxy_stage_success{{instance=\"{}\",stage=\"tls\"}}",
        world.target(SILENT)
    ));
    assert_eq!(silent_tls, 0.0, "the silent host's TLS stage ran out");
    assert!(!kinds(SILENT, "diagproxy_failure_info").is_empty());
    let route = prometheus.value(&format!(
        "diagproxy_route_info{{instance=\"{}\",route=\"DIRECT\"}}",
        world.target(CLEAN)
    ));
    assert_eq!(route, 1.0);
}

#[test]
fn check_push_fills_the_pushgateway_and_a_rerun_replaces_the_group() {
    if !tools(&["curl", "prometheus", "promtool", "prometheus-pushgateway"]) {
        return;
    }
    let world = World::new();
    let gateway_port = free_port();
    let gateway = Command::new("prometheus-pushgateway")
        .arg(format!("--web.listen-address=127.0.0.1:{gateway_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus-pushgateway");
    let _gateway = Killed(gateway);
    let gateway = format!("http://127.0.0.1:{gateway_port}");
    let started = Instant::now();
    while fetch_quietly(&format!("{gateway}/-/ready")) != 200 {
        assert!(
            started.elapsed() < DEADLINE,
            "the Pushgateway never became ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let push = |targets: &[usize], site: &str| {
        let out = diagproxy()
            .arg("check")
            .args(world.flags("1s"))
            .args([
                "--format",
                "prometheus",
                "--push",
                &gateway,
                "--job",
                "diagproxy",
            ])
            .args(["--grouping", &format!("site={site}")])
            .args([
                "--session-dir",
                &world
                    .dir
                    .path()
                    .join(format!("s-{site}-{}", targets.len()))
                    .display()
                    .to_string(),
            ])
            .args(targets.iter().map(|&i| world.target(i)))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(stderr.contains("pushed to"), "{stderr}");
        promtool_clean(&stdout, "check --format prometheus");
        (out.status.code(), stdout)
    };
    let (code, printed) = push(&[CLEAN, BLOCKED], "office 1");
    assert_eq!(code, Some(2), "the block page fails the check");
    assert_eq!(
        sample(&printed, "probe_success{host=\"chatgpt.com\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&printed, "probe_success{host=\"ab.chatgpt.com\"}"),
        Some(0.0)
    );
    let held = fetch(&format!("{gateway}/metrics"), &[]).1;
    assert!(held.contains("host=\"ab.chatgpt.com\""), "{held}");

    let (code, _) = push(&[CLEAN], "office 1");
    assert_eq!(code, Some(0));
    let held = fetch(&format!("{gateway}/metrics"), &[]).1;
    assert!(
        !held.contains("host=\"ab.chatgpt.com\""),
        "a re-run replaces the group's last result (PUT): {held}"
    );
    let (code, _) = push(&[BLOCKED], "office-2");
    assert_eq!(code, Some(2));

    let job = format!(
        "  - job_name: pushgateway\n    honor_labels: true\n    static_configs:\n      - targets: ['127.0.0.1:{gateway_port}']\n"
    );
    let prometheus = Prometheus::start(world.dir.path(), &job);
    let office1 = prometheus.wait("probe_success{job=\"diagproxy\",site=\"office 1\"}", |a| {
        !a.is_empty()
    });
    assert_eq!(office1.len(), 1, "only the re-run's host: {office1:?}");
    assert_eq!(office1[0].0["host"], "chatgpt.com");
    assert_eq!(office1[0].1, 1.0);
    let blocked = prometheus
        .value("probe_success{job=\"diagproxy\",site=\"office-2\",host=\"ab.chatgpt.com\"}");
    assert_eq!(blocked, 0.0);

    let refused = diagproxy()
        .args([
            "check",
            "--push",
            &gateway,
            "--grouping",
            "host=x",
            "chatgpt.com",
        ])
        .output()
        .unwrap();
    assert_eq!(
        refused.status.code(),
        Some(64),
        "a bad --grouping is refused before probing"
    );
}

#[test]
fn the_exporter_refuses_what_it_must_and_never_hangs() {
    if !tools(&["curl", "promtool"]) {
        return;
    }
    let world = World::new();
    let strict = format!(
        "[modules.strict]\nsystem_roots = {:?}\nstage_timeout = \"1s\"\n",
        world.public_pem
    );
    let config = write_file(world.dir.path(), "exporter.toml", &strict);
    let mut flags = world.flags("30s");
    flags.extend(["--config".into(), config]);
    let (_exporter, addr) = exporter(&flags);
    let probe = |query: &str, extra: &[&str]| fetch(&format!("http://{addr}/probe?{query}"), extra);

    let (code, body) = probe("target=chatgpt.com&module=nope", &[]);
    assert_eq!(
        (code, body.contains("unknown module")),
        (400, true),
        "{body}"
    );
    let (code, body) = probe("module=strict", &[]);
    assert_eq!(
        (code, body.contains("missing target")),
        (400, true),
        "{body}"
    );
    let (code, body) = probe("target=example.org:443", &[]);
    assert_eq!(
        (code, body.contains("not a host of the profile")),
        (400, true),
        "{body}"
    );

    // A module overrides the flags: without the Zscaler root the re-signed chain fails,
    // and its certificate is still described.
    let resigned = world.target(RESIGNED);
    let (code, body) = probe(&format!("target={resigned}&module=strict"), &[]);
    assert_eq!(code, 200);
    promtool_clean(&body, "the strict module's probe");
    assert_eq!(sample(&body, "probe_success"), Some(0.0), "{body}");
    let chain = body
        .lines()
        .find(|l| l.starts_with("probe_ssl_last_chain_info{"))
        .unwrap_or_else(|| panic!("no chain series when verification fails: {body}"));
    assert!(chain.contains("Zscaler"), "{chain}");
    let (_, body) = probe(&format!("target={resigned}"), &[]);
    assert_eq!(sample(&body, "probe_success"), Some(1.0), "{body}");

    // A scrape timeout shorter than a stage (30 s): a partial answer, the stage that ran out
    // failed, within the scrape's own time (curl gives up at 30 s, which would fail the test).
    let silent = world.target(SILENT);
    let short = ["-H", "X-Prometheus-Scrape-Timeout-Seconds: 2"];
    let (code, body) = probe(&format!("target={silent}"), &short);
    assert_eq!(code, 200);
    assert_eq!(sample(&body, "probe_success"), Some(0.0), "{body}");
    let stage = "diagproxy_stage_success{host=\"auth.openai.com\",stage=\"tls\"}";
    assert_eq!(sample(&body, stage), Some(0.0), "{body}");

    // Two probes of one target at once: one check runs, both get its answer.
    let both: Vec<(u16, String)> = std::thread::scope(|s| {
        let a = s.spawn(|| probe(&format!("target={silent}"), &short));
        std::thread::sleep(Duration::from_millis(200));
        let b = s.spawn(|| probe(&format!("target={silent}"), &short));
        vec![a.join().unwrap(), b.join().unwrap()]
    });
    assert_eq!(both[0], both[1], "the second shares the first's answer");
    let (code, own) = fetch(&format!("http://{addr}/metrics"), &[]);
    assert_eq!(code, 200);
    promtool_clean(&own, "the exporter's /metrics");
    assert_eq!(
        sample(&own, "diagproxy_exporter_probes_shared_total"),
        Some(1.0),
        "{own}"
    );
    assert_eq!(
        sample(&own, "diagproxy_exporter_probes_total{result=\"refused\"}"),
        Some(3.0),
        "{own}"
    );

    let bad = write_file(
        world.dir.path(),
        "bad.toml",
        "[modules.x]\nupstream_proxi = \"direct\"\n",
    );
    let out = diagproxy()
        .args(["exporter", "--listen", "127.0.0.1:0", "--config", &bad])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("upstream_proxi"));
    let out = diagproxy()
        .args(["exporter", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(64),
        "no remote listener without credentials"
    );
}

#[test]
fn the_exporter_wants_its_bearer_token() {
    if !tools(&["curl"]) {
        return;
    }
    let world = World::new();
    let token = write_file(world.dir.path(), "token", "s3cret-scraper-token\n");
    let mut flags = world.flags("1s");
    flags.extend(["--bearer-token-file".into(), token]);
    let (_exporter, addr) = exporter(&flags);
    let url = format!("http://{addr}/probe?target={}", world.target(CLEAN));
    assert_eq!(fetch(&url, &[]).0, 401);
    assert_eq!(fetch(&url, &["-H", "Authorization: Bearer wrong"]).0, 401);
    let (code, body) = fetch(&url, &["-H", "Authorization: Bearer s3cret-scraper-token"]);
    assert_eq!(code, 200);
    assert_eq!(sample(&body, "probe_success"), Some(1.0), "{body}");
}

#[test]
fn run_metrics_counts_requests_per_profile_host_and_folds_the_rest() {
    if !tools(&["curl", "promtool"]) {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let origin = rt.block_on(canned_origin(vec![canned("/", 200, &[], "hello")]));
    let port = origin.port();
    let dir = tempfile::tempdir().unwrap();
    let pins = [
        format!("chatgpt.com:{port}:127.0.0.1"),
        format!("intranet.example:{port}:127.0.0.1"),
        format!("wiki.example:{port}:127.0.0.1"),
    ];
    let session = dir.path().join("s");
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "--metrics".as_ref(),
        "--session-dir".as_ref(),
        session.as_os_str(),
    ];
    for pin in &pins {
        args.extend([std::ffi::OsStr::new("--resolve"), std::ffi::OsStr::new(pin)]);
    }
    let running = run_binary(&args);
    let _child = Killed(running.child);
    let proxy = format!("http://{}", running.addr);
    for host in [
        "chatgpt.com",
        "chatgpt.com",
        "intranet.example",
        "wiki.example",
    ] {
        let (code, _) = fetch(&format!("http://{host}:{port}/"), &["-x", &proxy]);
        assert_eq!(code, 200);
    }
    // One tunnel (CONNECT) to a profile host, the request inside it unseen by the proxy.
    let (code, _) = fetch(
        &format!("http://chatgpt.com:{port}/"),
        &["-x", &proxy, "--proxytunnel"],
    );
    assert_eq!(code, 200);
    let metrics = format!("{proxy}/metrics");
    assert_eq!(
        fetch(&metrics, &[]).0,
        403,
        "the counters are behind the session's token"
    );
    let bearer = format!("Authorization: Bearer {LIVE_TOKEN}");
    let started = Instant::now();
    let body = loop {
        let (code, body) = fetch(&metrics, &["-H", &bearer]);
        assert_eq!(code, 200, "{body}");
        let tunnel = "diagproxy_tunnels_total{host=\"chatgpt.com\"}";
        if sample(&body, "diagproxy_requests_total{host=\"other\"}") == Some(2.0)
            && sample(&body, tunnel) == Some(1.0)
        {
            break body;
        }
        assert!(started.elapsed() < DEADLINE, "{body}");
        std::thread::sleep(Duration::from_millis(100));
    };
    promtool_clean(&body, "run --metrics");
    assert_eq!(
        sample(&body, "diagproxy_requests_total{host=\"chatgpt.com\"}"),
        Some(2.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "diagproxy_tunnels_total{host=\"chatgpt.com\"}"),
        Some(1.0),
        "{body}"
    );
    assert!(
        !body.contains("intranet.example"),
        "hosts outside the profile are folded: {body}"
    );
    assert_eq!(sample(&body, "diagproxy_events_dropped_total"), Some(0.0));
    assert!(
        body.contains("diagproxy_bytes_total{host=\"chatgpt.com\",direction=\"down\"}"),
        "{body}"
    );

    let plain = run_binary(&[]);
    let _plain = Killed(plain.child);
    let (code, _) = fetch(&format!("http://{}/metrics", plain.addr), &["-H", &bearer]);
    assert_eq!(code, 404, "without --metrics there is no /metrics");
}

#[test]
fn the_readmes_prometheus_examples_are_valid_and_the_alerts_fire() {
    if !tools(&["promtool"]) {
        return;
    }
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/prometheus");
    for args in [
        vec!["check", "config", "prometheus.yml"],
        vec!["check", "rules", "diagproxy-alerts.yml"],
        vec!["test", "rules", "diagproxy-alerts.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(&args)
            .current_dir(&examples)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dashboard = std::fs::read_to_string(examples.join("../grafana-dashboard.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&dashboard).unwrap();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            assert!(
                expr.contains("probe_") || expr.contains("diagproxy_"),
                "{expr}"
            );
        }
    }
}

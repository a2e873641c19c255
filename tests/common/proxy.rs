//! The diagproxy under test: in this process ([`Proxy`], its [`Session`] folder read back)
//! or as the built binary ([`diagproxy`], [`run_binary`], its banner read).

#![allow(dead_code)]

use super::*;

/// A diagproxy running in this process.
pub struct Proxy {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<SessionOutcome, diagproxy::proxy::RunError>>,
}

/// What a finished session left in its folder.
pub struct Session {
    /// Keeps the session folder alive as long as the session is looked at.
    pub folder: tempfile::TempDir,
    pub outcome: SessionOutcome,
    pub summary: Value,
    pub events: Vec<Value>,
}

impl Session {
    pub fn host(&self, host: &str, port: u16) -> &Value {
        self.summary["hosts"]
            .as_array()
            .and_then(|hosts| {
                hosts
                    .iter()
                    .find(|h| h["host"] == host && h["port"] == port)
            })
            .unwrap_or_else(|| panic!("{host}:{port} not in summary: {:#}", self.summary))
    }

    pub fn events_of(&self, kind: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["type"] == kind).collect()
    }
}

impl Proxy {
    pub async fn start(args: &[&str]) -> Proxy {
        Proxy::start_with(args, |_| {}).await
    }

    /// [`Proxy::start`], with `configure` changing the configuration first (a test
    /// resolver's answers, say).
    pub async fn start_with(args: &[&str], configure: impl FnOnce(&mut Config)) -> Proxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let session = dir.path().join("session");
        let session = session.to_str().expect("utf-8 path");
        let mut argv = vec!["diagproxy", "run", "--session-dir", session, "-q"];
        argv.extend_from_slice(args);
        let Command::Run(run) = Cli::try_parse_from(argv).expect("args").command else {
            panic!("not a run command")
        };
        let mut config = Config::from_run_args(&run).expect("config");
        // Every in-process proxy of the suite dials loopback only, and goes DIRECT unless
        // the test names a route: no test follows this machine's proxy settings.
        config.loopback_only = true;
        config.live_token = std::sync::Arc::from(LIVE_TOKEN);
        if !args.iter().any(|a| a.starts_with("--upstream-proxy")) {
            config.upstream = diagproxy::upstream::discover::Spec::Direct;
        }
        configure(&mut config);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(diagproxy::run(listener, config, async move {
            let _ = stopped.await;
        }));
        Proxy {
            addr,
            dir,
            stop: Some(stop),
            task,
        }
    }

    pub fn session_dir(&self) -> PathBuf {
        self.dir.path().join("session")
    }

    /// Stops the proxy as Ctrl-C would and reads the session files.
    pub async fn stop(self) -> Session {
        let Proxy {
            dir: folder,
            stop,
            task,
            ..
        } = self;
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        let dir = folder.path().join("session");
        let outcome = task.await.expect("join").expect("run");
        // What `diagproxy run` does after the session: the reports from its events.
        diagproxy::report::write_in_folder(&dir).expect("reports");
        let summary: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("summary.json")).expect("summary.json"),
        )
        .expect("json");
        let events = read_events(&dir);
        Session {
            folder,
            outcome,
            summary,
            events,
        }
    }

    /// The recorder writes asynchronously; wait until `n` events of `kind` are in the file.
    pub async fn wait_events(&self, kind: &str, n: usize) -> Vec<Value> {
        for _ in 0..200 {
            let events: Vec<Value> = read_events(&self.session_dir())
                .into_iter()
                .filter(|e| e["type"] == kind)
                .collect();
            if events.len() >= n {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("fewer than {n} {kind} events were recorded");
    }
}

/// The events written so far. Only whole lines count: the writer may be in the middle of
/// the last one while a test polls.
pub fn read_events(dir: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("events.jsonl")).unwrap_or_default();
    let whole = text.rfind('\n').map_or("", |end| &text[..end]);
    whole
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

/// Polls `dir/events.jsonl` (whole lines only) until `n` events of `kind` are written, for
/// tests that run the binary; panics after 10 s.
pub fn wait_for_events(dir: &std::path::Path, kind: &str, n: usize) -> Vec<Value> {
    for _ in 0..500 {
        let found: Vec<Value> = read_events(dir)
            .into_iter()
            .filter(|e| e["type"] == kind)
            .collect();
        if found.len() >= n {
            return found;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("fewer than {n} {kind} events in {}", dir.display());
}

/// The built binary, under the loopback-only guard (`DIAGPROXY_LOOPBACK_ONLY=1`): whatever a
/// test makes it do, it dials nothing outside 127.0.0.0/8 and ::1.
/// The built binary, loopback only, and DIRECT unless a test passes `--upstream-proxy`
/// (`DIAGPROXY_UPSTREAM_PROXY=direct`, no proxy variables): no test follows this machine's
/// proxy settings.
pub fn diagproxy() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_diagproxy"));
    command.env("DIAGPROXY_LOOPBACK_ONLY", "1");
    command.env("DIAGPROXY_UPSTREAM_PROXY", "direct");
    command.env("DIAGPROXY_LIVE_TOKEN", LIVE_TOKEN);
    for var in PROXY_VARS {
        command.env_remove(var);
    }
    command
}

pub fn run_binary(args: &[&std::ffi::OsStr]) -> Running {
    run_binary_with(args, &[])
}

/// [`run_binary`] with environment variables set (after the suite's defaults).
pub fn run_binary_with(args: &[&std::ffi::OsStr], env: &[(&str, &str)]) -> Running {
    let mut command = diagproxy();
    for (name, value) in env {
        command.env(name, value);
    }
    let child = command
        .args(["run", "--listen", "127.0.0.1:0"])
        .args(args)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn diagproxy");
    attach(child)
}

/// A spawned `diagproxy run` (stderr piped) as a [`Running`]: its stderr read on a thread
/// to the end, its banner waited for.
pub fn attach(mut child: std::process::Child) -> Running {
    use std::io::BufRead;
    let (tx, lines) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut before = Vec::new();
    let addr = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no banner line after {before:?}"));
        let addr = banner_addr_in(&line);
        before.push(line);
        if let Some(addr) = addr {
            break addr;
        }
    };
    Running {
        child,
        addr,
        before,
        lines,
    }
}

/// The address in the "diagproxy listening on http://ADDR …" banner.
pub fn banner_addr(banner: &str) -> String {
    banner_addr_in(banner).unwrap_or_else(|| panic!("no address in {banner:?}"))
}

/// The address in a human banner, or in the JSON one (`{"type":"listening","listen":…}`).
pub(super) fn banner_addr_in(line: &str) -> Option<String> {
    if let Ok(value) = serde_json::from_str::<Value>(line) {
        return (value["type"] == "listening")
            .then(|| value["listen"].as_str().map(str::to_string))
            .flatten();
    }
    line.split("diagproxy listening on http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_string)
}

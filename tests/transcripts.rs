//! Every command a document shows after `$ ` (README.md and `docs/`) is run by a test, so the
//! documents cannot drift from the binary:
//! - the ones that need only files run here ([`HERE`]), in the loopback world the document
//!   describes, and their output must be the output shown, line for line (`…` in a shown
//!   line stands for any text; a few named lines vary from run to run and only their label
//!   is compared; a time `N ms` is compared without its number);
//! - the ones that need a world (a corporate proxy, a KDC, Chromium, Prometheus, another
//!   proxy) are run by the test named for them in [`ELSEWHERE`], in a file that uses every
//!   flag the document shows.
//!
//! A new `$ diagproxy` line in a document fails here until a test runs it. Commands not yet
//! run by any test are listed in [`NOT_YET`] with why; the list must be exactly those, so
//! covering one means taking it off.

mod common;

use std::path::Path;

/// A command a document shows, with the output shown under it.
#[derive(Debug)]
struct Shown {
    /// `docs/pac.md:12`.
    place: String,
    /// The command after `$ `, continuation lines joined.
    command: String,
    /// The lines under it, up to the next `$ ` or the end of the block.
    output: Vec<String>,
    /// The exit status a following `$ echo $?` shows, if any.
    status: Option<i32>,
}

/// Commands this file runs, each with the world it needs.
const HERE: &[&str] = &[
    "diagproxy ca init",
    "diagproxy pac --upstream-proxy pac:examples/corp.pac --resolve intranet.corp.test:443:10.1.2.3 chatgpt.com cdn.oaistatic.com intranet.corp.test",
];

/// Commands another test runs: the start of the command as shown, the test file and the test.
const ELSEWHERE: &[(&str, &str, &str)] = &[
    (
        "cargo run --release -- run --resolve",
        "tests/binary.rs",
        "curl_through_the_binary_then_sigterm_leaves_a_complete_session",
    ),
    (
        "diagproxy check --upstream-proxy direct --public-roots ca.pem --system-roots system.pem --voice",
        "tests/check.rs",
        "voice_measures_stun_and_names_a_dead_udp_path",
    ),
    (
        "diagproxy run --upstream-proxy pac:",
        "tests/routes.rs",
        "a_pac_sends_each_host_its_own_way_and_falls_back_past_a_dead_proxy",
    ),
    (
        "diagproxy run --upstream-proxy http://proxy.diagproxy.test:18889",
        "tests/proxy_auth.rs",
        "negotiate_through_squid_with_the_users_ticket_for_tunnels_and_plain_http",
    ),
    (
        "diagproxy auth-test",
        "tests/proxy_auth.rs",
        "auth_test_tries_each_offered_scheme_and_says_which_works",
    ),
    (
        "diagproxy exporter --upstream-proxy auto --config",
        "tests/fleet.rs",
        "prometheus_scrapes_the_exporters_probe_of_every_fixture",
    ),
    (
        "diagproxy check --push",
        "tests/fleet.rs",
        "check_push_fills_the_pushgateway_and_a_rerun_replaces_the_group",
    ),
    (
        "diagproxy bundle office -o",
        "tests/handoff.rs",
        "a_bundle_holds_what_its_manifest_says_and_no_secret",
    ),
    (
        "diagproxy bundle --verify",
        "tests/handoff.rs",
        "a_bundle_holds_what_its_manifest_says_and_no_secret",
    ),
    (
        "diagproxy check chatgpt.com:18443 --resolve chatgpt.com:18443:127.0.0.1 --keylog",
        "tests/handoff.rs",
        "check_writes_the_keys_of_its_own_tls_stages",
    ),
    (
        "diagproxy import proxyrefused.json --session-dir",
        "tests/import.rs",
        "a_proxy_that_refuses_connect_with_a_block_page_is_named",
    ),
    (
        "diagproxy bench --only memory,forward,intercept",
        "tests/binary.rs",
        "bench_only_runs_the_groups_asked_for",
    ),
    (
        "diagproxy bench --only memory,forward,intercept --proxy",
        "tests/binary.rs",
        "bench_measures_another_intercepting_proxy_side_by_side",
    ),
    (
        "diagproxy bench --proxy http://127.0.0.1:18095 --origin-root",
        "tests/binary.rs",
        "bench_origin_root_is_made_once_for_another_proxy_to_trust",
    ),
    (
        "diagproxy bench --only auth --auth-proxy",
        "tests/proxy_auth.rs",
        "bench_auth_opens_tunnels_that_sign_in_with_negotiate",
    ),
    (
        "diagproxy compare sessions/company sessions/hotspot",
        "tests/reports.rs",
        "compare_tells_the_company_network_from_the_hotspot",
    ),
    (
        "diagproxy browser",
        "tests/transcripts.rs",
        "browser_alone_starts_a_run_and_opens_chatgpt_and_the_live_page",
    ),
    (
        "diagproxy browser https://chatgpt.com/ --proxy 127.0.0.1:8080 --browser",
        "tests/transcripts.rs",
        "browser_uses_the_run_listening_at_proxy_once_it_proves_its_ca",
    ),
    (
        "diagproxy browser --headless --no-live-page",
        "tests/live.rs",
        "the_live_page_shows_requests_as_they_come_filters_them_and_shows_a_block_page",
    ),
];

/// Commands shown that no test runs yet, and why.
const NOT_YET: &[(&str, &str)] = &[];

#[test]
fn every_command_the_documents_show_is_run_by_a_test() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shown = documents(root);
    assert!(shown.len() >= 20, "only {} commands found", shown.len());
    let (mut unrun, mut not_yet) = (Vec::new(), Vec::new());
    for s in &shown {
        if HERE.contains(&s.command.as_str()) {
            continue;
        }
        let elsewhere = longest(ELSEWHERE, |e| e.0, &s.command);
        let pending = longest(NOT_YET, |n| n.0, &s.command);
        let pending_is_closer = |p: &(&str, &str)| elsewhere.is_none_or(|e| e.0.len() < p.0.len());
        match (elsewhere, pending) {
            (_, Some(p)) if pending_is_closer(p) => not_yet.push(p.0),
            (Some(e), _) => run_elsewhere(root, s, e),
            _ => unrun.push(format!("{}: {}", s.place, s.command)),
        }
    }
    assert!(
        unrun.is_empty(),
        "commands the documents show that no test runs (add them to HERE or ELSEWHERE):\n{}",
        unrun.join("\n")
    );
    let stale: Vec<&str> = NOT_YET
        .iter()
        .map(|n| n.0)
        .filter(|n| !not_yet.contains(n))
        .collect();
    assert!(
        stale.is_empty(),
        "NOT_YET names what no document shows: {stale:?}"
    );
}

/// Checks that `test` exists in `file` and that the file uses every flag `s` shows.
fn run_elsewhere(root: &Path, s: &Shown, &(start, file, test): &(&str, &str, &str)) {
    let source = std::fs::read_to_string(root.join(file)).unwrap();
    assert!(
        source.contains(&format!("fn {test}(")),
        "{}: {file} has no test {test}",
        s.place
    );
    let missing: Vec<String> = flags(&s.command)
        .into_iter()
        .filter(|flag| !source.contains(&format!("\"{flag}")))
        .collect();
    assert!(
        missing.is_empty(),
        "{}: `{start}…` is run by {file}, which never uses {missing:?}",
        s.place
    );
}

#[test]
fn the_commands_run_here_print_what_the_documents_show() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shown = documents(root);
    for command in HERE {
        let s = shown
            .iter()
            .find(|s| s.command == *command)
            .unwrap_or_else(|| panic!("no document shows `{command}` any more"));
        let (status, output) = run_here(root, s);
        assert_eq!(
            status,
            s.status.unwrap_or(0),
            "{}: {command}\n{output}",
            s.place
        );
        compare(s, &output);
    }
}

/// Runs one of [`HERE`] in its world: its exit status and what it printed.
fn run_here(root: &Path, s: &Shown) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    // `pac`'s document has a proxy listening on 127.0.0.1:3128 (the PAC's first choice) and
    // none on 3129. Something already listening on 3128 (a squid of another test) serves.
    let _proxy = std::net::TcpListener::bind("127.0.0.1:3128");
    let words: Vec<&str> = s.command.split_whitespace().skip(1).collect();
    let cwd = if s.command.contains("examples/") {
        root
    } else {
        dir.path()
    };
    let out = common::diagproxy()
        .args(&words)
        .current_dir(cwd)
        .env("HOME", dir.path())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// Lines whose value changes from run to run: only their label is compared.
const VARYING: &[&str] = &["SHA-256:", "valid:"];

/// The output shown, line for line, against the output printed.
fn compare(s: &Shown, printed: &str) {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let printed: Vec<String> = printed
        .lines()
        .map(|l| {
            mask(
                &l.replace(&format!("({})", host.trim()), "(vm)")
                    .replace(&format!("on {};", host.trim()), "on vm;"),
            )
        })
        .collect();
    let shown: Vec<String> = s.output.iter().map(|l| mask(l)).collect();
    let diff: Vec<String> = shown
        .iter()
        .zip(printed.iter().chain(std::iter::repeat(&String::new())))
        .enumerate()
        .filter(|(_, (want, got))| !matches(want, got))
        .map(|(i, (want, got))| format!("line {}:\n  shown:   {want}\n  printed: {got}", i + 1))
        .collect();
    assert!(
        diff.is_empty() && shown.len() == printed.len(),
        "{}: `{}` no longer prints what the document shows ({} lines shown, {} printed):\n{}",
        s.place,
        s.command,
        shown.len(),
        printed.len(),
        diff.join("\n")
    );
}

/// A line with its varying parts replaced: the value of a [`VARYING`] line, the number of a
/// time in ms.
fn mask(line: &str) -> String {
    if let Some(label) = VARYING.iter().find(|v| line.starts_with(*v)) {
        return label.to_string();
    }
    let words: Vec<&str> = line.split(' ').collect();
    let masked: Vec<&str> = words
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let is_time = words.get(i + 1) == Some(&"ms") && w.parse::<f64>().is_ok();
            if is_time {
                "N"
            } else {
                w
            }
        })
        .collect();
    masked.join(" ")
}

/// Whether a printed line is the shown one, `…` standing for any text.
fn matches(shown: &str, printed: &str) -> bool {
    let parts: Vec<&str> = shown.split('…').collect();
    if parts.len() == 1 {
        return shown == printed;
    }
    let mut rest = printed;
    for (i, part) in parts.iter().enumerate() {
        let found = if i == 0 {
            rest.starts_with(part).then_some(0)
        } else {
            rest.find(part)
        };
        match found {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    parts
        .last()
        .is_some_and(|last| last.is_empty() || printed.ends_with(last))
}

/// The entry whose start is the longest that begins `command` (at a word's end).
fn longest<'a, T>(table: &'a [T], start: fn(&T) -> &str, command: &str) -> Option<&'a T> {
    table
        .iter()
        .filter(|e| {
            let start = start(e);
            command == start
                || command.starts_with(start)
                    && (start.ends_with([' ', ':', '=', '/'])
                        || command[start.len()..].starts_with(' '))
        })
        .max_by_key(|e| start(e).len())
}

/// The `--flags` of a command (`--flag=value` as `--flag`; cargo's own before `--` left out).
fn flags(command: &str) -> Vec<String> {
    let ours = command.split_once(" -- ").map_or(command, |(_, ours)| ours);
    ours.split_whitespace()
        .filter(|w| w.starts_with("--"))
        .map(|w| w.split('=').next().unwrap_or(w).to_string())
        .collect()
}

/// Every `$ diagproxy` / `$ cargo run` in README.md and `docs/` (the generated reference left
/// out), with its output.
fn documents(root: &Path) -> Vec<Shown> {
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<_> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .filter(|p| p.file_name().is_some_and(|n| n != "reference.md"))
        .collect();
    docs.sort();
    files.extend(docs);
    let mut shown = Vec::new();
    for file in files {
        let name = file.strip_prefix(root).unwrap().display().to_string();
        let text = std::fs::read_to_string(&file).unwrap();
        transcripts(&name, &text, &mut shown);
    }
    shown
}

/// The transcripts in one document's fenced blocks.
fn transcripts(name: &str, text: &str, out: &mut Vec<Shown>) {
    let mut fenced = false;
    let mut current: Option<Shown> = None;
    let mut lines = text.lines().enumerate();
    while let Some((i, line)) = lines.next() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            out.extend(current.take());
            continue;
        }
        if !fenced {
            continue;
        }
        let Some(command) = line.strip_prefix("$ ") else {
            if let Some(s) = current.as_mut() {
                s.output.push(line.to_string());
            }
            continue;
        };
        if command == "echo $?" {
            let status = lines.next().and_then(|(_, l)| l.trim().parse().ok());
            if let Some(s) = current.as_mut() {
                s.status = status;
            }
            continue;
        }
        out.extend(current.take());
        let mut command = command.to_string();
        while command.ends_with('\\') {
            command.pop();
            match lines.next() {
                Some((_, more)) => command.push_str(more.trim_start()),
                None => break,
            }
        }
        let is_ours = command.starts_with("diagproxy ") || command.starts_with("cargo run");
        current = is_ours.then(|| Shown {
            place: format!("{name}:{}", i + 1),
            command: command
                .split(" #")
                .next()
                .unwrap_or(&command)
                .trim_end()
                .to_string(),
            output: Vec::new(),
            status: None,
        });
    }
}

/// A stand-in for Chromium: writes the flags it was started with to `$FAKE_BROWSER_ARGS`, one a
/// line, and copies the live page file it was given next to them (the profile it is in is
/// removed when it exits). It opens nothing: the documents' `https://chatgpt.com/` stays
/// unvisited on a loopback machine.
fn fake_chromium(dir: &Path) -> std::path::PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let program = bin.join("chromium");
    let script = "#!/bin/sh\n\
        printf '%s\\n' \"$@\" > \"$FAKE_BROWSER_ARGS\"\n\
        for a in \"$@\"; do case \"$a\" in file://*) cat \"${a#file://}\" > \"$FAKE_BROWSER_ARGS.html\";; esac; done\n";
    std::fs::write(&program, script).unwrap();
    std::fs::set_permissions(
        &program,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    program
}

/// A loopback port nothing listens on (bound, read and let go).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The flags the fake browser was started with.
fn started_with(args_file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(args_file).expect("the browser was not started");
    text.lines().map(str::to_string).collect()
}

/// The flag that names a value, e.g. `--user-data-dir=`.
fn flag_value<'a>(flags: &'a [String], name: &str) -> &'a str {
    flags
        .iter()
        .find_map(|f| f.strip_prefix(name))
        .unwrap_or_else(|| panic!("no {name} in {flags:?}"))
}

#[test]
fn browser_alone_starts_a_run_and_opens_chatgpt_and_the_live_page() {
    // `diagproxy browser` as the documents show it, with the first Chromium on PATH (the fake)
    // and, as the only change, a free port instead of 8080.
    let dir = tempfile::tempdir().unwrap();
    let program = fake_chromium(dir.path());
    let args_file = dir.path().join("args");
    let port = free_port();
    let proxy = format!("127.0.0.1:{port}");
    let path = format!("{}:/usr/bin:/bin", program.parent().unwrap().display());
    let out = common::diagproxy()
        .args(["browser", "--proxy", &proxy])
        .current_dir(dir.path())
        .env("PATH", &path)
        .env("HOME", dir.path())
        .env_remove("DIAGPROXY_LIVE_TOKEN")
        .env("FAKE_BROWSER_ARGS", &args_file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The run it started: listening on the port, intercepting the profile's hosts with a CA
    // made in ./certs, stopped as Ctrl-C would when the browser exited (its reports written).
    assert!(
        stderr.contains(&format!("diagproxy listening on http://{proxy}")),
        "{stderr}"
    );
    let pem = std::fs::read_to_string(dir.path().join("certs/diagproxy-ca.pem")).unwrap();
    let spki = diagproxy::cli::browser::spki_sha256_base64(&pem).unwrap();
    assert!(
        stderr.contains(&format!(
            "diagproxy: starting {} with its own profile, proxy {proxy}, trusting diagproxy's CA (SPKI {spki}) in that browser only",
            program.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("diagproxy: the browser exited (exit status: 0); its profile is removed"),
        "{stderr}"
    );
    let reports: Vec<_> = walk(dir.path())
        .into_iter()
        .filter(|p| p.ends_with("summary.json"))
        .collect();
    assert_eq!(reports.len(), 1, "the run's reports: {reports:?}\n{stderr}");

    let flags = started_with(&args_file);
    let profile = flag_value(&flags, "--user-data-dir=");
    assert!(
        !Path::new(profile).exists(),
        "the profile {profile} is left"
    );
    for expected in [
        format!("--proxy-pac-url=http://{proxy}/proxy.pac"),
        format!("--ignore-certificate-errors-spki-list={spki}"),
        "--no-first-run".into(),
        "--disable-quic".into(),
        "--disable-background-networking".into(),
    ] {
        assert!(flags.contains(&expected), "{expected} not in {flags:?}");
    }
    assert!(
        !flags.iter().any(|f| f.starts_with("--proxy-server")),
        "{flags:?}"
    );
    assert!(!flags.contains(&"--headless".to_string()), "{flags:?}");
    // The URL, then the live page: a file in the profile that forwards to the run's page
    // with the token the run was given, which is on no command line.
    let n = flags.len();
    assert_eq!(flags[n - 2], "https://chatgpt.com/", "{flags:?}");
    assert_eq!(
        flags[n - 1],
        format!("file://{profile}/diagproxy-live.html")
    );
    let live = std::fs::read_to_string(dir.path().join("args.html")).unwrap();
    let token = live
        .split(&format!("url=http://{proxy}/?token="))
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no live page URL in {live}"));
    assert!(token.len() >= 16, "{live}");
    assert!(!flags.iter().any(|f| f.contains(token)), "{flags:?}");
}

#[test]
fn browser_uses_the_run_listening_at_proxy_once_it_proves_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_dir, pem) = common::local_ca(dir.path());
    let mut running = common::run_binary(&[
        "--intercept".as_ref(),
        "profile".as_ref(),
        "--ca-dir".as_ref(),
        ca_dir.as_os_str(),
        "--session-dir".as_ref(),
        dir.path().join("session").as_os_str(),
    ]);
    let program = fake_chromium(dir.path());
    let args_file = dir.path().join("args");
    let out = common::diagproxy()
        .args(["browser", "https://chatgpt.com/", "--proxy", &running.addr])
        .arg("--browser")
        .arg(&program)
        .arg("--ca-dir")
        .arg(&ca_dir)
        .env("FAKE_BROWSER_ARGS", &args_file)
        .env_remove("DIAGPROXY_LIVE_TOKEN")
        .output()
        .unwrap();
    let _ = running.child.kill();
    let _ = running.child.wait();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // No second run: the one listening proved it holds the CA's key, and its live page
    // is left to its banner (its token is not ours to know).
    assert!(!stderr.contains("diagproxy listening on"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "open the live page from the run's banner (http://{}/?token=…)",
            running.addr
        )),
        "{stderr}"
    );
    let spki = diagproxy::cli::browser::spki_sha256_base64(&pem).unwrap();
    let flags = started_with(&args_file);
    assert!(
        flags.contains(&format!("--ignore-certificate-errors-spki-list={spki}")),
        "{flags:?}"
    );
    assert!(
        flags.contains(&format!(
            "--proxy-pac-url=http://{}/proxy.pac",
            running.addr
        )),
        "{flags:?}"
    );
    assert_eq!(
        flags.last().map(String::as_str),
        Some("https://chatgpt.com/")
    );
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

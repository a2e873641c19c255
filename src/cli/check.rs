//! `diagproxy check`: the flags checked, the route discovered, every host probed with a
//! line per host as it completes, then the table (or `--json`) and `check.json`. Exit 2 when
//! something fails.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::SystemTime;

use super::pac::route_config;
use super::{CheckArgs, CheckFormat, Failed};
use crate::check::http::Target;
use crate::check::stage::{HostCheck, State};
use crate::check::{self, Plan, VoiceTarget};
use crate::config::{parse_duration, Config};
use crate::upstream::{discover, HostPort};

pub fn check(args: &CheckArgs) -> Result<(), Failed> {
    let probe = &args.probe;
    let roots = [probe.public_roots.as_deref(), probe.system_roots.as_deref()];
    let config = Config {
        keylog: args.keylog.chosen(),
        ..route_config(&probe.route, &probe.stage_timeout, roots)?
    };
    super::run::install_keylog(config.keylog.as_deref())?;
    if let Some(path) = &config.keylog {
        eprintln!(
            "{}",
            crate::text::terminal(&crate::tls::keylog::banner_line(path), false)
        );
    }
    let budget = parse_duration("--stage-timeout", &probe.stage_timeout)
        .map_err(|e| Failed::Usage(e.to_string()))?;
    let targets = targets(args, &config)?;
    let voice = voice(args, &config)?;
    // A bad --push or --grouping fails before anything is probed.
    let push_to = args
        .push
        .as_deref()
        .map(|b| push_url(args, b))
        .transpose()?;
    let dir = folder(args);
    let holds_files = std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some());
    if holds_files && !args.force {
        return Err(Failed::Usage(format!(
            "--session-dir {}: the folder exists and is not empty; pick another or add --force to replace its files",
            dir.display()
        )));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failed::error(&e))?;
    let config = runtime.block_on(async {
        let router = discover::router(&config, config.listen).await;
        config.with_router(router)
    });
    let report = runtime.block_on(async {
        let plan = Plan {
            targets,
            voice,
            budget,
            total: crate::check::TOTAL_BUDGET,
        };
        let machine = args.json || args.format != CheckFormat::Table;
        let show = !machine || std::io::stderr().is_terminal();
        check::run(&config, &plan, |host, done, total| {
            if show {
                eprintln!(
                    "{}",
                    crate::text::terminal(&progress(host, done, total), false)
                );
            }
        })
        .await
    });
    let json = serde_json::to_string_pretty(&report).map_err(|e| Failed::error(&e))?;
    write(&dir, "check.json", &json)?;
    record(&dir, &report, &config)?;
    if let Some(url) = &push_to {
        push(url, &report, &config, &runtime)?;
    }
    print(args, &report, &json, &dir);
    match report.exit_code() {
        0 => Ok(()),
        code => Err(Failed::Found(
            code,
            format!(
                "check: {} failing (hosts, and voice when it cannot connect)",
                report.failing
            ),
        )),
    }
}

/// `[#####     ] 12/41 chatgpt.com  pass` — one line per host as it completes.
fn progress(host: &HostCheck, done: usize, total: usize) -> String {
    let filled = "#".repeat(done * 20 / total.max(1));
    let state = if host.fails() {
        "FAIL"
    } else if host.warns() {
        "warn"
    } else {
        "pass"
    };
    let first_bad = host
        .stages()
        .into_iter()
        .find(|(_, s)| matches!(s.state, State::Fail | State::Warn))
        .map_or(String::new(), |(name, s)| {
            format!(" ({name}: {})", s.detail)
        });
    format!(
        "[{filled:<20}] {done:>3}/{total} {} {state}{first_bad}",
        host.host
    )
}

fn targets(args: &CheckArgs, config: &crate::config::Config) -> Result<Vec<Target>, Failed> {
    if args.hosts.is_empty() {
        return Ok(check::profile_targets(config));
    }
    args.hosts
        .iter()
        .map(|h| {
            let hp = HostPort::parse(h, 443)
                .ok_or_else(|| Failed::Usage(format!("{h:?}: expected HOST or HOST:PORT")))?;
            Ok(check::target(config, hp.host.to_ascii_lowercase(), hp.port))
        })
        .collect()
}

fn voice(args: &CheckArgs, config: &crate::config::Config) -> Result<Option<VoiceTarget>, Failed> {
    voice_from(args.probe.voice.as_deref(), config)
}

/// `--voice HOST:PORT|none` (the profile's voice server when absent).
pub(super) fn voice_from(
    text: Option<&str>,
    config: &crate::config::Config,
) -> Result<Option<VoiceTarget>, Failed> {
    let profile = check::profile_voice(config);
    match text {
        None => Ok(profile),
        Some("none") => Ok(None),
        Some(text) => {
            let hp = HostPort::parse(text, 3478).ok_or_else(|| {
                Failed::Usage(format!("--voice {text:?}: expected HOST:PORT or none"))
            })?;
            let mut v = profile
                .ok_or_else(|| Failed::Usage("--voice: the profile has no voice section".into()))?;
            v.host = hp.host.clone();
            v.stun_port = hp.port;
            v.tls_host = hp.host;
            Ok(Some(v))
        }
    }
}

fn folder(args: &CheckArgs) -> PathBuf {
    args.session_dir.clone().unwrap_or_else(|| {
        PathBuf::from("sessions").join(format!(
            "{}-{}-check",
            crate::clock::compact(SystemTime::now()),
            std::process::id()
        ))
    })
}

/// A file of the check's folder, private to its owner like every session file.
fn write(dir: &std::path::Path, name: &str, text: &str) -> Result<(), Failed> {
    crate::files::create_private_dir(dir)
        .map_err(|e| Failed::Error(format!("{}: {e}", dir.display())))?;
    let path = dir.join(name);
    let mut file = crate::files::create_private(&path)
        .map_err(|e| Failed::Error(format!("{}: {e}", path.display())))?;
    file.write_all(text.as_bytes())
        .map_err(|e| Failed::Error(format!("{}: {e}", path.display())))
}

/// The table, `check.json`'s contents or the Prometheus exposition, on stdout.
fn print(
    args: &CheckArgs,
    report: &crate::check::stage::CheckReport,
    json: &str,
    dir: &std::path::Path,
) {
    let mut stdout = std::io::stdout();
    let _ = match (args.json, args.format) {
        (true, _) | (_, CheckFormat::Json) => writeln!(stdout, "{json}"),
        (_, CheckFormat::Prometheus) => write!(
            stdout,
            "{}",
            crate::metrics::check::exposition(report, crate::metrics::check::Hosts::Many)
        ),
        (_, CheckFormat::Table) => writeln!(
            stdout,
            "{}check.json: {}",
            crate::text::terminal(&report.table(), true),
            dir.join("check.json").display()
        ),
    };
}

/// `--push`: the exposition to the Pushgateway; a failed push fails the command (exit 1).
fn push(
    url: &str,
    report: &crate::check::stage::CheckReport,
    config: &crate::config::Config,
    runtime: &tokio::runtime::Runtime,
) -> Result<(), Failed> {
    use crate::exporter::push;
    let body = crate::metrics::check::exposition(report, crate::metrics::check::Hosts::Many);
    runtime
        .block_on(push::put(url, body, config.loopback_only))
        .map_err(|e| Failed::Error(format!("--push: {e}")))?;
    eprintln!("pushed to {}", crate::text::terminal(url, false));
    Ok(())
}

/// `--push URL --job NAME --grouping KEY=VALUE...` as the group's URL.
fn push_url(args: &CheckArgs, base: &str) -> Result<String, Failed> {
    use crate::exporter::push;
    let grouping = push::parse_grouping(&args.grouping).map_err(Failed::Usage)?;
    push::url(base, &args.job, &grouping).map_err(Failed::Usage)
}

/// The check as a session: `events.jsonl`, then `summary.json`, the HAR and the reports
/// built from it as `diagproxy report` builds them.
fn record(
    dir: &std::path::Path,
    report: &crate::check::stage::CheckReport,
    config: &crate::config::Config,
) -> Result<(), Failed> {
    let info = crate::session::event::SessionInfo {
        id: format!(
            "{}-{}-check",
            crate::clock::compact(SystemTime::now()),
            std::process::id()
        ),
        started_at: report.started_at.clone(),
        listen: "diagproxy check".into(),
        upstream_proxy: config.router.fixed().map(|p| p.display()),
        upstream_credentials: config
            .router
            .fixed()
            .is_some_and(|p| p.authorization.is_some()),
        route_source: Some(report.route_source.clone()),
        pac: config.router.pac_file.clone(),
        profile: config.profile_name.clone(),
        diagproxy: env!("CARGO_PKG_VERSION").into(),
        os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
        max_hosts: config.max_hosts,
        resolve: config
            .resolve
            .iter()
            .map(|((h, p), ip)| format!("{h}:{p}:{ip}"))
            .collect(),
        include_secrets: false,
        keylog: config.keylog.as_ref().map(|p| p.display().to_string()),
        source: None,
    };
    let ended = crate::clock::rfc3339(SystemTime::now());
    let mut lines = String::new();
    for event in crate::check::record::events(report, info, ended) {
        lines.push_str(&serde_json::to_string(&event).map_err(|e| Failed::error(&e))?);
        lines.push('\n');
    }
    write(dir, "events.jsonl", &lines)?;
    crate::session::recorder::keep_pac(dir, config.router.pac_file.as_ref());
    let session = crate::report::Session::load(dir)?;
    write(dir, "summary.json", &session.summary.to_json())?;
    crate::report::write(&session, &crate::report::Outputs::in_folder(dir))?;
    Ok(())
}

//! `diagproxy run`: the configuration checked, the listener bound, the session served until
//! a signal, then the exit table and the reports.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::{Failed, RunArgs};
use crate::config::Config;
use crate::proxy::Reloader;
use crate::session::livelog::Format;
use crate::session::stderr;

/// How long the exit waits for stderr to take the exit table (a paused terminal cannot
/// hold the process past it).
const EXIT_FLUSH: Duration = Duration::from_secs(2);

pub fn run(args: &RunArgs) -> Result<(), Failed> {
    let config = Config::from_run_args(args).map_err(|e| Failed::Usage(e.to_string()))?;
    init_tracing(&config);
    install_keylog(config.keylog.as_deref())?;
    if let Some(warning) = config.intercept.unmatched_warning(&config.profile) {
        tracing::warn!("{warning}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failed::error(&e))?;
    // The accept loop runs on a worker, not on this thread: a new connection's task then
    // starts on the thread that accepted it, without waking another.
    let result = match runtime.block_on(async { tokio::spawn(serve(config)).await }) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Failed::error(&*e)),
        Err(e) => Err(Failed::error(&e)),
    };
    stderr::get().flush(EXIT_FLUSH);
    result
}

/// Starts the key log before any TLS config exists (they are built once and read it then).
pub(super) fn install_keylog(path: Option<&std::path::Path>) -> Result<(), Failed> {
    let Some(path) = path else { return Ok(()) };
    crate::tls::keylog::install(path).map_err(|e| Failed::Usage(format!("--keylog: {e}")))
}

async fn serve(config: Config) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let json = config.log_format == Format::Json;
    // Handlers first: a signal sent as soon as the banner is read ends the session cleanly.
    let reloader = Arc::new(OnceLock::new());
    let signals = shutdown_signals(json, reloader.clone())?;
    let color = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let banner = |ready: &crate::proxy::Ready| {
        let _ = reloader.set(ready.reloader.clone());
        stderr::get().say(banner(ready, json));
        // Start-up is over: its code need not stay mapped (see `resident`).
        let released = crate::resident::release_startup_pages();
        tracing::debug!("gave back {} KiB of start-up pages", released >> 10);
    };
    let outcome = crate::proxy::run_announced(listener, config, signals, banner).await?;
    write_reports(outcome.dir.clone()).await;
    let text = if json {
        exit_json(&outcome)
    } else {
        let mut text = crate::session::livelog::exit_table(&outcome.summary, color);
        if !outcome.drained {
            text.push_str("(some requests were still open when the grace period ended; they are recorded as far as they got)\n");
        }
        let (files, size) = crate::files::folder_size(&outcome.dir);
        text.push_str(&format!(
            "session files: {} ({files} files, {})\n",
            outcome.dir.display(),
            crate::session::livelog::bytes(size)
        ));
        text
    };
    stderr::get().say(text);
    Ok(())
}

/// Fetches the PAC again and says what came.
async fn reload(reloader: &Reloader, json: bool) {
    let text = match reloader.reload().await {
        Ok(file) => format!(
            "PAC reloaded: {} ({} bytes, SHA-256 {})",
            file.url, file.size, file.sha256
        ),
        Err(e) => format!("PAC reload failed, the previous script stays: {e}"),
    };
    let line = if json {
        format!(
            "{}\n",
            serde_json::json!({"type": "pac_reloaded", "message": text})
        )
    } else {
        format!("diagproxy: {}\n", crate::text::terminal(&text, false))
    };
    stderr::get().say(line);
}

/// Whether the SIGHUP was not a hang-up of our terminal: stderr is no terminal at all, or
/// one that still answers (a hung-up terminal fails every request with EIO).
fn terminal_still_there() -> bool {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return true;
    }
    // SAFETY: tcgetpgrp only reads the terminal's foreground process group.
    unsafe { libc::tcgetpgrp(libc::STDERR_FILENO) >= 0 }
}

/// The line that says the session is ready: where to point clients, where the files go, and
/// what is intercepted with which CA (its fingerprint, to compare with what a device trusts).
fn banner(ready: &crate::proxy::Ready, json: bool) -> String {
    let addr = ready.listen;
    if json {
        let value = serde_json::json!({
            "type": "listening",
            "listen": addr.to_string(),
            "pac": format!("http://{addr}/proxy.pac"),
            "live_page": ready.live_page,
            "metrics": ready.metrics,
            "session_dir": ready.session_dir,
            "keylog": crate::tls::keylog::path(),
            "interception": ready.interception.as_ref().map(|i| serde_json::json!({
                "hosts": i.hosts,
                "ca_dir": i.ca_dir,
                "sha256": i.fingerprint,
                "permitted": i.permitted,
            })),
            "route": {
                "source": ready.routes.source,
                "groups": ready.routes.groups.iter().map(|(route, hosts)| serde_json::json!({
                    "route": route, "hosts": hosts,
                })).collect::<Vec<_>>(),
                "errors": ready.routes.errors,
                "warnings": ready.route_warnings,
            },
        });
        return format!("{value}\n");
    }
    let mut text = format!(
        "diagproxy listening on http://{addr} (session folder {}); point your proxy settings here, \
         or use the PAC file http://{addr}/proxy.pac. Ctrl-C ends the session.\n",
        ready.session_dir.display()
    );
    text.push_str(&format!(
        "live page: {} (the token is the key to this session's pages: do not share it)\n",
        ready.live_page
    ));
    if let Some(metrics) = &ready.metrics {
        text.push_str(&format!(
            "metrics: {metrics} (Prometheus text; send the live page's token as Authorization: Bearer)\n"
        ));
    }
    match &ready.interception {
        None => text.push_str("interception: off (tunnels only; --intercept profile to see inside the profile's hosts)\n"),
        Some(i) => {
            text.push_str(&format!(
                "interception: {} with the CA in {} (SHA-256 {})",
                i.hosts,
                i.ca_dir.display(),
                i.fingerprint
            ));
            if let Some(names) = &i.permitted {
                text.push_str(&format!(
                    "; the CA may sign for {} names only, other hosts are tunnelled",
                    names.len()
                ));
            }
            text.push('\n');
        }
    }
    if let Some(path) = crate::tls::keylog::path() {
        text.push_str(&crate::tls::keylog::banner_line(path));
        text.push('\n');
    }
    text.push_str(&format!("route: {}\n", ready.routes.line()));
    for error in ready.routes.errors.iter().take(1) {
        text.push_str(&format!(
            "route: PAC error, these hosts go DIRECT: {error}\n"
        ));
    }
    for warning in &ready.route_warnings {
        text.push_str(&format!("route: {warning}\n"));
    }
    crate::text::terminal(&text, true).into_owned()
}

/// The exit summary as one JSON object: the verdict, each host with its most serious
/// finding, and where the files are.
fn exit_json(outcome: &crate::proxy::SessionOutcome) -> String {
    let summary = &outcome.summary;
    let hosts: Vec<_> = summary
        .hosts()
        .map(|h| {
            serde_json::json!({
                "host": h.host,
                "port": h.port,
                "allowlist": h.allowlist,
                "connections": h.connections,
                "requests": h.requests,
                "bytes_up": h.bytes_up,
                "bytes_down": h.bytes_down,
                "finding": h.worst().map(|f| f.label()),
                "failing": h.is_failing(),
                "failures": h.failures,
            })
        })
        .collect();
    let value = serde_json::json!({
        "type": "exit_summary",
        "verdict": summary.verdict(),
        "hosts": hosts,
        "drained": outcome.drained,
        "session_dir": outcome.dir,
    });
    format!("{value}\n")
}

/// Resolves at the first SIGINT, SIGTERM or SIGHUP; a second one exits at once (the event log is
/// flushed after every batch, so it is complete up to that moment). A SIGHUP while the
/// session follows a PAC and its terminal is still there fetches the PAC again instead.
fn shutdown_signals(
    json: bool,
    reloader: Arc<OnceLock<Option<Reloader>>>,
) -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    // A closed terminal (SIGHUP) ends the session cleanly too, reports and all.
    let mut hangup = signal(SignalKind::hangup())?;
    Ok(async move {
        loop {
            tokio::select! {
                _ = interrupt.recv() => break,
                _ = terminate.recv() => break,
                _ = hangup.recv() => match reloader.get().and_then(Option::as_ref) {
                    Some(reloader) if terminal_still_there() => reload(reloader, json).await,
                    _ => break,
                },
            }
        }
        stderr::get().say(if json {
            "{\"type\":\"stopping\",\"message\":\"finishing open work (press Ctrl-C again to stop now)\"}\n".into()
        } else {
            "diagproxy: finishing open work (press Ctrl-C again to stop now)\n".into()
        });
        tokio::spawn(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            stderr::get().say(if json {
                "{\"type\":\"stopped\",\"message\":\"stopped at once; events.jsonl is complete up to now, summary.json was not written\"}\n".into()
            } else {
                "diagproxy: stopped at once; events.jsonl is complete up to now, summary.json was not written\n".into()
            });
            stderr::get().flush(EXIT_FLUSH);
            std::process::exit(130);
        });
    })
}

fn init_tracing(config: &Config) {
    let level = match config.verbosity {
        i8::MIN..=-1 => "error",
        0 => "warn",
        1 => "diagproxy=debug,warn",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(stderr::get().clone())
        .with_target(false);
    // With --log-format json every stderr line is a JSON object, warnings included.
    if config.log_format == Format::Json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// `session.har`, `report.html` and `report.md` from the finished session's events. A
/// failure here is reported but loses nothing: `diagproxy report` can rebuild them.
async fn write_reports(dir: std::path::PathBuf) {
    let written = tokio::task::spawn_blocking(move || crate::report::write_in_folder(&dir)).await;
    let error = match written {
        Ok(Ok(_)) => return,
        Ok(Err(e)) => e,
        Err(e) => e.to_string(),
    };
    tracing::warn!("could not write the reports ({error}); `diagproxy report` can rebuild them");
}

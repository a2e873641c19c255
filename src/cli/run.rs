//! `diagproxy run`: the configuration checked, the listener bound, the session served until
//! a signal, then the exit table and the reports.

use std::time::Duration;

use super::{Failed, RunArgs};
use crate::config::Config;
use crate::session::stderr;

/// How long the exit waits for stderr to take the exit table (a paused terminal cannot
/// hold the process past it).
const EXIT_FLUSH: Duration = Duration::from_secs(2);

pub fn run(args: &RunArgs) -> Result<(), Failed> {
    let config = Config::from_run_args(args).map_err(|e| Failed::Usage(e.to_string()))?;
    init_tracing(&config);
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

async fn serve(config: Config) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr()?;
    // Handlers first: a signal sent as soon as the banner is read ends the session cleanly.
    let signals = shutdown_signals()?;
    stderr::get().say(format!(
        "diagproxy listening on http://{addr} (session folder {}); point your proxy settings here, \
         or use the PAC file http://{addr}/proxy.pac. Ctrl-C ends the session.\n",
        config.session_dir.display()
    ));
    let color = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let outcome = crate::run(listener, config, signals).await?;
    write_reports(outcome.dir.clone()).await;
    let mut text = crate::session::livelog::exit_table(&outcome.summary, color);
    if !outcome.drained {
        text.push_str("(some tunnels were still open when the grace period ended; they are recorded as far as they got)\n");
    }
    text.push_str(&format!("session files: {}\n", outcome.dir.display()));
    stderr::get().say(text);
    Ok(())
}

/// Resolves at the first SIGINT, SIGTERM or SIGHUP; a second one exits at once (the event log is
/// flushed after every batch, so it is complete up to that moment).
fn shutdown_signals() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    // A closed terminal (SIGHUP) ends the session cleanly too, reports and all.
    let mut hangup = signal(SignalKind::hangup())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
            _ = hangup.recv() => {}
        }
        stderr::get()
            .say("diagproxy: finishing open work (press Ctrl-C again to stop now)\n".into());
        tokio::spawn(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            stderr::get().say("diagproxy: stopped at once; events.jsonl is complete up to now, summary.json was not written\n".into());
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
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(stderr::get().clone())
        .with_target(false)
        .init();
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

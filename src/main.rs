//! `diagproxy`: parse the command line, set up logging, run, and map errors to exit codes
//! (64 for bad usage, 1 for anything else), printing the whole error chain.

use std::process::ExitCode;

use clap::Parser;
use diagproxy::cli::{
    BenchArgs, BenchGroup, CaCommand, CertFormat, Cli, Command, CompareArgs, ReportArgs, RunArgs,
};
use diagproxy::config::Config;
use diagproxy::profile::Profile;
use diagproxy::session::livelog;

const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Run(args) => run(&args),
        Command::Report(args) => done(report(&args)),
        Command::Compare(args) => done(compare(&args)),
        Command::Bench(args) => done(bench(&args)),
        Command::Ca(command) => match ca(command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("diagproxy: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn done(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("diagproxy: {e}");
            ExitCode::FAILURE
        }
    }
}

fn report(args: &ReportArgs) -> Result<(), String> {
    use diagproxy::report::{self, Outputs, Session};
    let session = Session::load(&args.session_dir)?;
    let mut outputs = Outputs {
        har: args.har.clone(),
        html: args.html.clone(),
        markdown: args.markdown.clone(),
        include_secrets: args.include_secrets,
    };
    if outputs.har.is_none() && outputs.html.is_none() && outputs.markdown.is_none() {
        outputs = Outputs {
            include_secrets: args.include_secrets,
            ..Outputs::in_folder(&args.session_dir)
        };
    }
    for path in report::write(&session, &outputs)? {
        println!("wrote {}", path.display());
    }
    if session.skipped > 0 {
        eprintln!("note: {} unreadable line(s) of events.jsonl were skipped (a session cut off mid-write)", session.skipped);
    }
    println!("{}", session.summary.verdict());
    Ok(())
}

fn bench(args: &BenchArgs) -> Result<(), String> {
    if !(0.1..=60.0).contains(&args.duration)
        || args.connections == 0
        || args.connections > 1024
        || args.tunnels > 5000
    {
        return Err(
            "bench: --duration is 0.1 to 60 s, --connections 1 to 1024, --tunnels at most 5000"
                .into(),
        );
    }
    let proxy = match &args.proxy {
        Some(url) => {
            let p = diagproxy::upstream::route::parse_upstream_proxy(url)?;
            let addr = format!("{}:{}", p.host, p.port).parse().map_err(|_| {
                format!("--proxy {url}: give an IP address and port, e.g. http://127.0.0.1:8081")
            })?;
            Some(addr)
        }
        None => None,
    };
    let proxy_ca = match &args.proxy_ca {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| format!("--proxy-ca {}: {e}", path.display()))?,
        ),
        None => None,
    };
    if let Some(pid) = args.proxy_pid {
        if diagproxy::bench::load::cpu_time(pid).is_none() {
            return Err(format!(
                "--proxy-pid {pid}: cannot read that process's CPU time (/proc/{pid}/stat); is it running, and is this Linux?"
            ));
        }
    }
    let options = diagproxy::bench::Options {
        duration: std::time::Duration::from_secs_f64(args.duration),
        connections: args.connections,
        tunnels: args.tunnels,
        proxy,
        proxy_ca,
        proxy_pid: args.proxy_pid,
        only: args.only.iter().map(|g| bench_group(*g)).collect(),
        json: args.json,
    };
    let report = diagproxy::bench::run(options)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", diagproxy::bench::table(&report));
    }
    Ok(())
}

fn bench_group(group: BenchGroup) -> diagproxy::bench::Group {
    use diagproxy::bench::Group;
    match group {
        BenchGroup::Memory => Group::Memory,
        BenchGroup::Forward => Group::Forward,
        BenchGroup::Tunnel => Group::Tunnel,
        BenchGroup::Intercept => Group::Intercept,
    }
}

fn compare(args: &CompareArgs) -> Result<(), String> {
    use diagproxy::report::{compare, Session};
    let (a, b) = (Session::load(&args.a)?, Session::load(&args.b)?);
    let comparison = compare::compare(&a, &b);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&comparison).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", compare::text(&comparison));
    }
    if let Some(path) = &args.html {
        std::fs::write(path, compare::html(&comparison))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

fn ca(command: CaCommand) -> Result<(), String> {
    use diagproxy::tls::ca;
    match command {
        CaCommand::Init(args) => {
            let profile = match &args.profile {
                Some(path) => {
                    Profile::load(path).map_err(|e| format!("--profile {}: {e}", path.display()))?
                }
                None => Profile::builtin(),
            };
            let options = ca::InitOptions {
                dir: args.dir.ca_dir.clone(),
                days: args.days,
                unconstrained: args.unconstrained,
                force: args.force,
            };
            let path = ca::init(&options, &profile)?;
            let loaded = ca::load(&args.dir.ca_dir)?;
            println!(
                "created {} (key: {}, mode 0600)\n",
                path.display(),
                args.dir.ca_dir.join(ca::KEY_FILE).display()
            );
            print!(
                "{}\n{}",
                ca::describe(&loaded.cert_der)?,
                ca::trust_instructions(&path)
            );
        }
        CaCommand::Show(args) => {
            let loaded = ca::load(&args.ca_dir)?;
            let path = args.ca_dir.join(ca::CERT_FILE);
            print!("{}\n{}", path.display(), ca::describe(&loaded.cert_der)?);
            print!("\n{}", ca::trust_instructions(&path));
        }
        CaCommand::Export(args) => {
            let loaded = ca::load(&args.dir.ca_dir)?;
            let bytes = match args.format {
                CertFormat::Pem => loaded.cert_pem.into_bytes(),
                CertFormat::Der => loaded.cert_der.to_vec(),
            };
            match &args.out {
                Some(path) => std::fs::write(path, bytes)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?,
                None => std::io::Write::write_all(&mut std::io::stdout(), &bytes)
                    .map_err(|e| e.to_string())?,
            }
        }
    }
    Ok(())
}

fn run(args: &RunArgs) -> ExitCode {
    let config = match Config::from_run_args(args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("diagproxy: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    init_tracing(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&e),
    };
    // The accept loop runs on a worker, not on this thread: a new connection's task then
    // starts on the thread that accepted it, without waking another.
    match runtime.block_on(async { tokio::spawn(serve(config)).await }) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => fail(&*e),
        Err(e) => fail(&e),
    }
}

async fn serve(config: Config) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr()?;
    eprintln!(
        "diagproxy listening on http://{addr} (session folder {}); point your proxy settings here, \
         or use the PAC file http://{addr}/proxy.pac. Ctrl-C ends the session.",
        config.session_dir.display()
    );
    let signals = shutdown_signals()?;
    let color = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let outcome = diagproxy::run(listener, config, signals).await?;
    eprint!("{}", livelog::exit_table(&outcome.summary, color));
    if !outcome.drained {
        eprintln!("(some tunnels were still open when the grace period ended; they are recorded as far as they got)");
    }
    eprintln!("session files: {}", outcome.dir.display());
    Ok(())
}

/// Resolves at the first SIGINT or SIGTERM; a second one exits at once (the event log is
/// flushed after every batch, so it is complete up to that moment).
fn shutdown_signals() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        eprintln!("diagproxy: finishing open work (press Ctrl-C again to stop now)");
        tokio::spawn(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            eprintln!("diagproxy: stopped at once; events.jsonl is complete up to now, summary.json was not written");
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
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

fn fail(e: &(dyn std::error::Error + 'static)) -> ExitCode {
    eprintln!("diagproxy: {}", diagproxy::failure::error_chain(e));
    ExitCode::FAILURE
}

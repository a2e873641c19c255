//! `diagproxy`: parse the command line, run one command, map its error to an exit code
//! (64 for bad usage, 1 for anything else). Each command lives in `cli/`.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use diagproxy::cli::{self, Cli, Command};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(64)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let result = match cli.command {
        Command::Run(args) => cli::run::run(&args),
        Command::Report(args) => cli::report::report(&args),
        Command::Import(args) => cli::import::import(&args),
        Command::Compare(args) => cli::report::compare(&args),
        Command::Bundle(args) => cli::bundle::bundle(&args),
        Command::Bench(args) => cli::bench::bench(&args),
        Command::Pac(args) => cli::pac::pac(&args),
        Command::Check(args) => cli::check::check(&args),
        Command::AuthTest(args) => cli::auth_test::auth_test(&args),
        Command::Exporter(args) => cli::exporter::exporter(&args),
        Command::Browser(args) => cli::browser::browser(&args),
        Command::Ca(command) => cli::ca::ca(command),
        Command::Completions(args) => cli::docs::completions(&args),
        Command::Man(args) => cli::docs::man(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Not eprintln!: with stderr closed (`2>&1 | head`) it would panic.
            let _ = writeln!(std::io::stderr(), "diagproxy: {e}");
            ExitCode::from(e.code())
        }
    }
}

//! `diagproxy completions SHELL` and `diagproxy man`: the shell completions and manual pages,
//! generated from the same clap types that parse the command line (`clap_complete`,
//! `clap_mangen`), so they cannot drift from it. The .deb ships both.

use std::io::Write;

use clap::CommandFactory;

use super::{Cli, CompletionsArgs, Failed, ManArgs};

pub fn completions(args: &CompletionsArgs) -> Result<(), Failed> {
    let mut command = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut command, "diagproxy", &mut out);
    write_stdout(&out)
}

pub fn man(args: &ManArgs) -> Result<(), Failed> {
    let command = Cli::command();
    match &args.out_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| Failed::error(&e))?;
            clap_mangen::generate_to(command, dir).map_err(|e| Failed::error(&e))
        }
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(command)
                .render(&mut out)
                .map_err(|e| Failed::error(&e))?;
            write_stdout(&out)
        }
    }
}

/// Writes to stdout; a closed pipe (`| head`) is not an error worth a message.
fn write_stdout(bytes: &[u8]) -> Result<(), Failed> {
    match std::io::stdout().write_all(bytes) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Failed::error(&e)),
        _ => Ok(()),
    }
}

//! `docs/reference.md` is every command's `--help` as the binary prints it. This test renders
//! them all from the binary and fails when the file differs, naming the commands and flags
//! the reference lacks — so a flag cannot be added, renamed or dropped without the reference
//! following. `DIAGPROXY_BLESS=1 cargo test --test docs` rewrites the file.

use std::path::Path;
use std::process::Command;

use clap::CommandFactory;

/// Every command path (`run`, `ca init`, …), in the order `--help` lists them.
fn commands(command: &clap::Command, prefix: &[String], out: &mut Vec<Vec<String>>) {
    for sub in command.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        let mut path = prefix.to_vec();
        path.push(sub.get_name().to_string());
        out.push(path.clone());
        commands(sub, &path, out);
    }
}

/// `diagproxy PATH --help` with no environment (an `env`-backed default would otherwise show
/// this machine's value).
fn help(path: &[String]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_diagproxy"))
        .args(path)
        .arg("--help")
        .env_clear()
        .output()
        .unwrap();
    assert!(out.status.success(), "{path:?} --help");
    String::from_utf8(out.stdout).unwrap()
}

/// A command's path and its long flags.
type Flags = Vec<(Vec<String>, Vec<String>)>;

fn reference() -> (String, Flags) {
    let cli = diagproxy::cli::Cli::command();
    let mut paths = Vec::new();
    commands(&cli, &[], &mut paths);
    let mut text = String::from(
        "# Command reference\n\n[← README](../README.md)\n\nEvery command's `--help`, as \
         `diagproxy` prints it (generated: `tests/docs.rs` renders them from the binary and \
         fails when this file differs; `DIAGPROXY_BLESS=1 cargo test --test docs` rewrites \
         it). The guides in this folder say what each flag is for.\n\n## `diagproxy`\n\n```text\n",
    );
    text.push_str(help(&[]).trim_end());
    text.push_str("\n```\n");
    let mut flags = Vec::new();
    for path in paths {
        let mut command = &cli;
        for name in &path {
            command = command.find_subcommand(name).unwrap();
        }
        let longs = command
            .get_arguments()
            .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
            .collect();
        text.push_str(&format!("\n## `diagproxy {}`\n\n```text\n", path.join(" ")));
        text.push_str(help(&path).trim_end());
        text.push_str("\n```\n");
        flags.push((path, longs));
    }
    (text, flags)
}

#[test]
fn the_reference_is_every_commands_help() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/reference.md");
    let (expected, flags) = reference();
    if std::env::var("DIAGPROXY_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(&file, &expected).unwrap();
        return;
    }
    let written = std::fs::read_to_string(&file).unwrap_or_default();
    let mut missing = Vec::new();
    for (path, longs) in &flags {
        let heading = format!("## `diagproxy {}`", path.join(" "));
        let Some(at) = written.find(&heading) else {
            missing.push(heading);
            continue;
        };
        let section = &written[at..];
        let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
        for long in longs {
            if !section.contains(long.as_str()) {
                missing.push(format!("{} {long}", path.join(" ")));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/reference.md lacks {missing:?}; run DIAGPROXY_BLESS=1 cargo test --test docs"
    );
    assert!(
        written == expected,
        "docs/reference.md differs from the binary's --help; run DIAGPROXY_BLESS=1 cargo test --test docs"
    );
}

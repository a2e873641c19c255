//! `docs/reference.md` is every command's `--help` as the binary prints it. This test renders
//! them all from the binary and fails when the file differs, naming the commands and flags
//! the reference lacks — so a flag cannot be added, renamed or dropped without the reference
//! following. `DIAGPROXY_BLESS=1 cargo test --test docs` rewrites the file.

use std::path::Path;
use std::process::Command;

use clap::{CommandFactory, Parser};

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

/// Every `diagproxy` command line the user's documents show — `$ diagproxy …` lines (with
/// their `\` continuations), `cargo run --release -- …` lines, and inline `` `diagproxy …` ``
/// spans — parses with the binary's own command-line parser, so a renamed or dropped flag
/// fails here, naming the file and line. Synopses are read as a user would fill them in:
/// `[optional parts]` and `…` left out, the first of `a|b` alternatives taken, placeholders
/// (`FILE`, `SESSION_DIR`) kept as values, shell substitutions (`$(hostname)`) as a word.
/// Running them is the other integration tests' job (`check`, `run`, `import`, `bundle`, …
/// against the loopback world); this test keeps the documents from drifting from the parser.
#[test]
fn every_command_the_documents_show_parses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        let is_reference = path.file_name().is_some_and(|n| n == "reference.md");
        if path.extension().is_some_and(|e| e == "md") && !is_reference {
            files.push(path);
        }
    }
    let (mut checked, mut failures) = (0, Vec::new());
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (line, command) in shown_commands(&text) {
            checked += 1;
            let args = words(&command);
            let parsed = diagproxy::cli::Cli::try_parse_from(&args);
            if let Err(e) = parsed {
                use clap::error::ErrorKind::{
                    DisplayHelp, DisplayVersion, MissingRequiredArgument,
                };
                // A command named in prose (`diagproxy report`) is a mention: it must exist.
                let mention = e.kind() == MissingRequiredArgument && names_a_command(&args[1..]);
                if !mention && !matches!(e.kind(), DisplayHelp | DisplayVersion) {
                    let name = file.strip_prefix(root).unwrap().display();
                    failures.push(format!("{name}:{line}: {command}\n    {}", e.kind()));
                }
            }
        }
    }
    assert!(
        checked > 60,
        "only {checked} commands found: is the scan still right?"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Whether `words` are a path of subcommands (`ca init`) and nothing else.
fn names_a_command(words: &[String]) -> bool {
    let mut command = diagproxy::cli::Cli::command();
    for word in words {
        match command.find_subcommand(word) {
            Some(sub) => command = sub.clone(),
            None => return false,
        }
    }
    !words.is_empty()
}

/// The command lines a document shows, with the line each starts on: `$ diagproxy` and
/// `cargo run --release --` lines in code blocks, and inline spans (which may wrap a line).
fn shown_commands(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    // Prose with the fenced blocks blanked (lines kept), for the inline spans.
    let mut prose = String::new();
    let mut fenced = false;
    let mut i = 0;
    while i < lines.len() {
        let start = i;
        let trimmed = lines[i].trim_start();
        if trimmed.starts_with("```") {
            fenced = !fenced;
        }
        prose.push_str(if fenced || trimmed.starts_with("```") {
            ""
        } else {
            lines[i]
        });
        prose.push('\n');
        let block = trimmed
            .strip_prefix("$ diagproxy ")
            .or_else(|| trimmed.strip_prefix("cargo run --release -- "));
        if let Some(rest) = block {
            let mut command = rest.trim_end().to_string();
            while command.ends_with('\\') && i + 1 < lines.len() {
                command.pop();
                i += 1;
                command.push(' ');
                command.push_str(lines[i].trim());
                prose.push('\n');
            }
            let command = shell_cut(&command);
            let elided: Vec<&str> = command.split(' ').filter(|w| *w != "…").collect();
            found.push((start + 1, elided.join(" ")));
        }
        i += 1;
    }
    for (n, span) in prose.split('`').enumerate().skip(1).step_by(2) {
        if let Some(rest) = span.strip_prefix("diagproxy ") {
            let before: usize = prose
                .split('`')
                .take(n)
                .map(|p| p.matches('\n').count())
                .sum();
            found.push((before + 1, synopsis(&shell_cut(rest))));
        }
    }
    found
}

/// The command before any shell plumbing (`# comment`, `| next`, `> file`, `&& next`, `&`).
fn shell_cut(command: &str) -> String {
    let mut out = Vec::new();
    for word in command.split_whitespace() {
        if ["#", "|", ">", "&&", "&", "2>&1"].contains(&word) {
            break;
        }
        out.push(word);
    }
    out.join(" ")
}

/// A synopsis filled in: `[…]` groups and `…`/`...` left out, `a|b` as `a`.
fn synopsis(command: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    let mut previous = ' ';
    for c in command.chars() {
        match c {
            '[' if depth > 0 || previous == ' ' => depth += 1,
            ']' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
        previous = c;
    }
    out.split_whitespace()
        .filter(|w| !["…", "..."].contains(w))
        .map(|w| {
            w.split(['|', '\\'])
                .next()
                .unwrap_or(w)
                .trim_end_matches("...")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `diagproxy` and the words of `command` as a POSIX shell splits them (single and double
/// quotes; `$(…)` and `$NAME` stand for one word).
fn words(command: &str) -> Vec<String> {
    let mut words = vec!["diagproxy".to_string()];
    let (mut word, mut quote, mut any) = (String::new(), None, false);
    let mut nested = 0;
    for c in command.chars() {
        // `$(…)`: a value the shell fills in; a number stands for it (a PID, a port).
        if nested > 0 || (c == '(' && word.ends_with('$')) {
            nested += i32::from(c == '(') - i32::from(c == ')');
            if nested == 0 {
                word.truncate(word.len() - 1);
                word.push('1');
            }
            continue;
        }
        match (quote, c) {
            (None, ' ') => {
                if any {
                    words.push(std::mem::take(&mut word));
                }
                any = false;
            }
            (None, '\'' | '"') => (quote, any) = (Some(c), true),
            (Some(q), c) if c == q => quote = None,
            (_, c) => {
                word.push(c);
                any = true;
            }
        }
    }
    if any {
        words.push(word);
    }
    words
}

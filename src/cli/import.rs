//! `diagproxy import FILE...`: each file read into a session folder as `run` writes one
//! (`events.jsonl`, `summary.json`, `session.har`, `report.html`, `report.md`), the exit
//! table printed, the exit code as `check`'s: 2 when a profile host fails, 65 for content
//! that cannot be read, 66 for a file that does not exist.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use super::{Failed, ImportArgs};
use crate::import::{self, Context, ImportError};
use crate::inspect::FindingKind;
use crate::session::event::{Event, SessionEnd, SessionInfo};
use crate::session::summary::Summary;

/// EX_DATAERR: the content is neither format, or breaks before anything usable.
pub const EXIT_UNREADABLE: u8 = 65;
/// EX_NOINPUT: the file does not exist or cannot be opened.
pub const EXIT_MISSING: u8 = 66;
/// Something fails on a profile host (as `check`).
pub const EXIT_FAILING: u8 = 2;

pub fn import(args: &ImportArgs) -> Result<(), Failed> {
    let (profile, profile_name) = profile(args)?;
    let roots = crate::tls::roots::TrustRoots::load(
        args.public_roots.as_deref(),
        args.system_roots.as_deref(),
    )
    .map_err(Failed::Usage)?;
    let ctx = Context {
        profile: Arc::new(profile),
        public_roots: roots.public.clone(),
        system_roots: roots.system.clone(),
    };
    let mut code = 0;
    let mut errors = Vec::new();
    for (file, dir) in args.files.iter().zip(folders(args)) {
        match one(file, &dir, &ctx, &profile_name, args.json) {
            Ok(Outcome::Clean) => {}
            Ok(Outcome::Failing) => code = code.max(EXIT_FAILING),
            Ok(Outcome::Insufficient) => {
                code = code.max(EXIT_UNREADABLE);
                errors.push(format!(
                    "{}: insufficient detail: capture again in Default mode (the session folder {} says what was read)",
                    file.display(),
                    dir.display()
                ));
            }
            Err(e) => {
                let exit = match &e {
                    ImportError::Missing(_) => EXIT_MISSING,
                    ImportError::Unreadable { .. } => EXIT_UNREADABLE,
                    ImportError::Io(_) => 1,
                };
                code = code.max(exit);
                errors.push(e.to_string());
            }
        }
    }
    match code {
        0 => Ok(()),
        EXIT_FAILING if errors.is_empty() => Err(Failed::Found(
            code,
            "import: something fails on a profile host (see the table)".into(),
        )),
        _ => Err(Failed::Found(code, errors.join("; "))),
    }
}

/// `--profile FILE` or the built-in one, and how the summary names it.
fn profile(args: &ImportArgs) -> Result<(crate::profile::Profile, String), Failed> {
    super::config::chosen_profile(args.profile.as_deref()).map_err(Failed::Usage)
}

/// One folder per file: `--session-dir` itself for one file, a folder per file in it for
/// several.
fn folders(args: &ImportArgs) -> Vec<PathBuf> {
    let base = args.session_dir.clone().unwrap_or_else(|| {
        PathBuf::from("sessions").join(format!(
            "{}-{}-import",
            crate::clock::compact(SystemTime::now()),
            std::process::id()
        ))
    });
    if args.files.len() == 1 {
        return vec![base];
    }
    args.files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let stem = f
                .file_name()
                .map(|n| {
                    n.to_string_lossy().replace(
                        |c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '.',
                        "_",
                    )
                })
                .unwrap_or_default();
            base.join(format!("{}-{stem}", i + 1))
        })
        .collect()
}

/// Imports `file` into `dir`; prints the table (or summary.json); says whether a profile
/// host fails.
fn one(
    file: &Path,
    dir: &Path,
    ctx: &Context,
    profile_name: &str,
    json: bool,
) -> Result<Outcome, ImportError> {
    if !file.exists() {
        return Err(ImportError::Missing(format!(
            "{}: no such file",
            file.display()
        )));
    }
    let io = |e: std::io::Error| ImportError::Io(format!("{}: {e}", dir.display()));
    crate::files::create_private_dir(dir).map_err(io)?;
    let started = crate::clock::rfc3339(SystemTime::now());
    // Events go to a scratch file first: the session's first line carries what the whole
    // file showed (its `source`), known only at the end.
    let scratch = dir.join("events.partial");
    let mut out = BufWriter::new(crate::files::create_private(&scratch).map_err(io)?);
    let mut write_error = None;
    let source = import::read(file, ctx, &mut |event: Event| {
        if write_error.is_none() {
            if let Err(e) = serde_json::to_writer(&mut out, &event)
                .map_err(std::io::Error::other)
                .and_then(|()| out.write_all(b"\n"))
            {
                write_error = Some(e);
            }
        }
    });
    let source = match source {
        Ok(source) => source,
        Err(e) => {
            drop(out);
            let _ = std::fs::remove_file(&scratch);
            let _ = std::fs::remove_dir(dir);
            return Err(e);
        }
    };
    out.flush().map_err(io)?;
    drop(out);
    if let Some(e) = write_error {
        return Err(io(e));
    }
    let info = SessionInfo {
        id: dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        started_at: started.clone(),
        listen: format!("diagproxy import {}", source.file),
        profile: profile_name.to_string(),
        diagproxy: env!("CARGO_PKG_VERSION").into(),
        os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
        source: Some(Box::new(source)),
        ..SessionInfo::default()
    };
    frame(dir, &scratch, info).map_err(io)?;
    let session = crate::report::Session::load(dir).map_err(ImportError::Io)?;
    let summary_json = session.summary.to_json();
    crate::files::replace(&dir.join("summary.json"), 0o600, |f| {
        f.write_all(summary_json.as_bytes())
    })
    .map_err(io)?;
    crate::report::write(&session, &crate::report::Outputs::in_folder(dir))
        .map_err(ImportError::Io)?;
    print(&session.summary, dir, json);
    Ok(outcome(&session.summary))
}

/// `events.jsonl`: the session's first line, the scratch file's events, its last line.
fn frame(dir: &Path, scratch: &Path, info: SessionInfo) -> std::io::Result<()> {
    let path = dir.join("events.jsonl");
    let ended = crate::clock::rfc3339(SystemTime::now());
    crate::files::replace(&path, 0o600, |file| {
        let mut out = BufWriter::new(file);
        let line = |e: &Event| serde_json::to_string(e).map_err(std::io::Error::other);
        writeln!(out, "{}", line(&Event::SessionStarted(Box::new(info)))?)?;
        std::io::copy(&mut std::fs::File::open(scratch)?, &mut out)?;
        let end = SessionEnd {
            ended_at: ended,
            unfinished: 0,
            limits: Default::default(),
        };
        writeln!(out, "{}", line(&Event::SessionEnded(Box::new(end)))?)?;
        out.flush()
    })?;
    std::fs::remove_file(scratch)
}

/// The exit table (or summary.json), then what the file could not show.
fn print(summary: &Summary, dir: &Path, json: bool) {
    let mut stdout = std::io::stdout();
    if json {
        let _ = writeln!(stdout, "{}", summary.to_json());
        return;
    }
    let color = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut text = crate::session::livelog::exit_table(summary, color);
    if let Some(source) = summary.session().source.as_deref() {
        if let Some(stopped) = &source.stopped {
            text.push_str(&format!("note: {stopped}\n"));
        }
        for line in &source.cannot_tell {
            text.push_str(&format!("cannot tell: {line}\n"));
        }
    }
    text.push_str(&format!("session files: {}\n", dir.display()));
    let _ = write!(stdout, "{}", crate::text::terminal(&text, true));
}

/// What an imported file came to, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing fails on a profile host (warnings may: inspection the browser accepted, a
    /// dead first proxy whose fallback worked, a PAC that failed while the browser's way
    /// without it worked).
    Clean,
    /// Something fails on a profile host.
    Failing,
    /// The capture is too redacted to judge: never "all clear".
    Insufficient,
}

pub fn outcome(summary: &Summary) -> Outcome {
    if summary
        .session()
        .source
        .as_deref()
        .is_some_and(|s| s.insufficient_detail)
    {
        return Outcome::Insufficient;
    }
    let failing = summary.hosts().filter(|h| h.allowlist.is_some()).any(|h| {
        h.failures.keys().any(|k| !k.is_client())
            || h.findings.iter().any(|f| {
                f.kind.is_error()
                    && !matches!(
                        f.kind,
                        FindingKind::TlsInspection
                            | FindingKind::ProxyUnreachable
                            | FindingKind::PacError
                    )
            })
    });
    if failing {
        Outcome::Failing
    } else {
        Outcome::Clean
    }
}

//! `diagproxy bundle`: the plan shown, the person asked (or `--yes`), the zip written; and
//! `--verify`. Exit 66 for a folder or zip that does not exist, 65 for one that is not a
//! session or a bundle, 64 when refused (no terminal to ask on, an existing zip, a session
//! with credentials), 2 when `--verify` finds a difference.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use super::{BundleArgs, Failed, SensitiveArg};
use crate::bundle::manifest::{human_size, Consent, Sensitive};
use crate::bundle::{self, BundleError, Options};

pub fn bundle(args: &BundleArgs) -> Result<(), Failed> {
    if let Some(zip) = &args.verify {
        return verify(zip);
    }
    let options = Options {
        include: args
            .include_sensitive
            .iter()
            .map(|s| sensitive(*s))
            .collect(),
        ca_dir: Some(args.ca_dir.clone()),
    };
    let out = args.output.clone().unwrap_or_else(default_name);
    if out.exists() {
        return Err(Failed::Usage(format!(
            "{}: the file exists; bundles are never overwritten (name another with -o)",
            out.display()
        )));
    }
    let mut plan = bundle::plan(&args.sessions, &options).map_err(failed)?;
    plan.generated.insert(0, environment(args)?);
    let mut stdout = std::io::stdout();
    let _ = write!(stdout, "{}", plan.review());
    let _ = writeln!(stdout, "To be written to {}", out.display());
    let consent = consent(args.yes, &out)?;
    let manifest = bundle::write(&plan, &out, consent).map_err(failed)?;
    let bytes = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    let _ = writeln!(
        stdout,
        "bundle: {} ({} files, {}, {} values REDACTED); `diagproxy bundle --verify {}` rechecks it",
        out.display(),
        manifest.files.len() + 1,
        human_size(bytes),
        manifest.redactions_total,
        crate::text::shell(&out.display().to_string()),
    );
    Ok(())
}

fn sensitive(arg: SensitiveArg) -> Sensitive {
    match arg {
        SensitiveArg::Keylog => Sensitive::Keylog,
        SensitiveArg::Bodies => Sensitive::Bodies,
        SensitiveArg::CaKey => Sensitive::CaKey,
        SensitiveArg::Secrets => Sensitive::Secrets,
    }
}

fn failed(e: BundleError) -> Failed {
    match e {
        BundleError::NotFound(e) => Failed::Found(66, e),
        BundleError::Unreadable(e) => Failed::Found(65, e),
        BundleError::Refused(e) => Failed::Usage(e),
        BundleError::Io(e) => Failed::Error(e),
    }
}

fn default_name() -> PathBuf {
    PathBuf::from(format!(
        "diagproxy-bundle-{}.zip",
        crate::clock::compact(std::time::SystemTime::now())
    ))
}

/// `environment.json`, as a generated file of the bundle.
fn environment(args: &BundleArgs) -> Result<(String, String, String), Failed> {
    let (name, text) = match &args.profile {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Failed::Usage(format!("--profile {}: {e}", path.display())))?;
            (path.display().to_string(), text)
        }
        None => {
            let name = format!("built-in:{}", crate::profile::Profile::builtin().name);
            (name, crate::profile::BUILTIN.to_string())
        }
    };
    let roots = crate::tls::roots::TrustRoots::load(
        args.public_roots.as_deref(),
        args.system_roots.as_deref(),
    )
    .map_err(Failed::Usage)?;
    Ok(crate::bundle::environment::file((&name, &text), &roots))
}

/// Who agrees: `--yes`, or a person answering on the terminal.
fn consent(yes: bool, out: &std::path::Path) -> Result<Consent, Failed> {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| {
            // SAFETY: geteuid has no preconditions.
            format!("uid {}", unsafe { libc::geteuid() })
        });
    let at = crate::clock::rfc3339(std::time::SystemTime::now());
    if yes {
        return Ok(Consent {
            how: "--yes".into(),
            reviewed_by: user,
            at,
        });
    }
    if !std::io::stdin().is_terminal() {
        return Err(Failed::Usage(
            "no terminal to ask on: review the list above, then run again with --yes".into(),
        ));
    }
    eprint!("Write {} with these files? [y/N] ", out.display());
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        return Err(Failed::Error("nothing written".into()));
    }
    Ok(Consent {
        how: "terminal".into(),
        reviewed_by: user,
        at,
    })
}

fn verify(zip: &std::path::Path) -> Result<(), Failed> {
    let (manifest, problems) = bundle::verify(zip).map_err(failed)?;
    if problems.is_empty() {
        println!(
            "{}: {} files match manifest.json (diagproxy {}, {}; consent: {} by {})",
            zip.display(),
            manifest.files.len(),
            crate::text::terminal(&manifest.diagproxy, false),
            crate::text::terminal(&manifest.created_at, false),
            crate::text::terminal(&manifest.consent.how, false),
            crate::text::terminal(&manifest.consent.reviewed_by, false),
        );
        return Ok(());
    }
    for problem in &problems {
        println!("{}", crate::text::terminal(&problem.to_string(), false));
    }
    Err(Failed::Found(
        2,
        format!(
            "{}: {} of its files differ from manifest.json",
            zip.display(),
            problems.len()
        ),
    ))
}

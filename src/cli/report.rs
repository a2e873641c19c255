//! `diagproxy report` and `diagproxy compare`: the reports of a finished session, rebuilt
//! from its folder, and two sessions side by side.

use super::{CompareArgs, Failed, ReportArgs};
use crate::report::{self, compare, Outputs, Session};

pub fn report(args: &ReportArgs) -> Result<(), Failed> {
    let session = Session::load(&args.session_dir)?;
    if args.include_secrets && !session.info().include_secrets {
        eprintln!(
            "note: this session was recorded without --include-secrets: its credentials were \
             redacted before anything was written and cannot be restored; the reports show REDACTED"
        );
    }
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

pub fn compare(args: &CompareArgs) -> Result<(), Failed> {
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

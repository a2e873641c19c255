//! Reports, rebuilt from a session's `events.jsonl` alone — never the network — so they are
//! fast, reproducible and unit-testable: a HAR file for OpenAI support (`har`), an HTML
//! report people read (`html`), Markdown for a ticket (`markdown`), and the isolation test
//! between two sessions (`compare`).

pub mod compare;
pub mod har;
pub mod html;
pub mod markdown;
pub mod overview;
pub mod waterfall;

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::profile::Profile;
use crate::session::event::{Event, SessionInfo};
use crate::session::summary::Summary;

/// A session read back from its folder.
pub struct Session {
    pub dir: PathBuf,
    pub events: Vec<Event>,
    pub summary: Summary,
    pub profile: Arc<Profile>,
    /// Lines of `events.jsonl` that could not be read (a kill mid-line leaves one).
    pub skipped: usize,
}

impl Session {
    /// Reads `DIR/events.jsonl`; a session cut off by a kill still loads.
    pub fn load(dir: &Path) -> Result<Session, String> {
        let path = dir.join("events.jsonl");
        let text = fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut events = Vec::new();
        let mut skipped = 0;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match serde_json::from_str::<Event>(line) {
                Ok(event) => events.push(event),
                Err(_) => skipped += 1,
            }
        }
        let info = events.iter().find_map(|e| match e {
            Event::SessionStarted(info) => Some((**info).clone()),
            _ => None,
        });
        let info = info.ok_or_else(|| {
            format!(
                "{} has no session_started line: not a diagproxy session",
                path.display()
            )
        })?;
        let profile = Arc::new(profile_of(&info));
        let mut summary = Summary::new(info, profile.clone());
        for event in &events {
            summary.apply(event);
        }
        Ok(Session {
            dir: dir.to_path_buf(),
            events,
            summary,
            profile,
            skipped,
        })
    }

    pub fn info(&self) -> &SessionInfo {
        self.summary.session()
    }

    /// When the session started, in ms since the epoch, for time axes.
    pub fn start_ms(&self) -> f64 {
        parse_ts(&self.info().started_at).unwrap_or(0.0)
    }
}

/// The profile the session was recorded with, when it can still be found.
fn profile_of(info: &SessionInfo) -> Profile {
    if info.profile.starts_with("built-in:") {
        return Profile::builtin();
    }
    Profile::load(Path::new(&info.profile)).unwrap_or_else(|_| Profile::builtin())
}

/// Which artefacts to write where.
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    pub har: Option<PathBuf>,
    pub html: Option<PathBuf>,
    pub markdown: Option<PathBuf>,
    pub include_secrets: bool,
}

impl Outputs {
    /// All three, into the session folder (what `run` does at shutdown).
    pub fn in_folder(dir: &Path) -> Outputs {
        Outputs {
            har: Some(dir.join("session.har")),
            html: Some(dir.join("report.html")),
            markdown: Some(dir.join("report.md")),
            include_secrets: false,
        }
    }
}

/// `session.har`, `report.html` and `report.md` of a finished session, into its folder
/// (what `run` does at shutdown; `diagproxy report` rebuilds them the same way).
pub fn write_in_folder(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let session = Session::load(dir)?;
    write(&session, &Outputs::in_folder(dir))
}

/// Writes the requested artefacts; returns the paths written.
pub fn write(session: &Session, outputs: &Outputs) -> Result<Vec<PathBuf>, String> {
    let mut written = Vec::new();
    let mut put = |path: &Option<PathBuf>,
                   fill: &dyn Fn(&mut BufWriter<&mut File>) -> io::Result<()>|
     -> Result<(), String> {
        if let Some(path) = path {
            write_streamed(path, fill)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            written.push(path.clone());
        }
        Ok(())
    };
    put(&outputs.har, &|out| {
        har::write(session, outputs.include_secrets, out)
    })?;
    put(&outputs.html, &|out| {
        out.write_all(html::render(session).as_bytes())
    })?;
    put(&outputs.markdown, &|out| {
        out.write_all(markdown::render(session).as_bytes())
    })?;
    Ok(written)
}

/// Writes `path` (0600) through a large buffer, replacing it whole (see `files::replace`).
fn write_streamed(
    path: &Path,
    fill: &dyn Fn(&mut BufWriter<&mut File>) -> io::Result<()>,
) -> io::Result<()> {
    crate::files::replace(path, 0o600, |file| {
        let mut out = BufWriter::with_capacity(256 * 1024, file);
        fill(&mut out)?;
        out.flush()
    })
}

/// `2026-11-27T18:30:01.123Z` → ms since the epoch.
pub fn parse_ts(ts: &str) -> Option<f64> {
    let (date, time) = ts.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':');
    let (h, min) = (
        t.next()?.parse::<f64>().ok()?,
        t.next()?.parse::<f64>().ok()?,
    );
    let s = t.next()?.parse::<f64>().ok()?;
    let days = days_from_civil(y, m, day);
    Some(((days as f64 * 86_400.0) + h * 3600.0 + min * 60.0 + s) * 1000.0)
}

/// Howard Hinnant's days-from-civil (the inverse of `clock`'s).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// HTML-escapes text.
pub fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
pub(crate) mod fixtures;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_with_the_clock() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_795_804_201_123);
        let text = crate::clock::rfc3339(t);
        assert_eq!(parse_ts(&text), Some(1_795_804_201_123.0));
        assert_eq!(parse_ts("nonsense"), None);
    }

    #[test]
    fn a_cut_off_session_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = fixtures::events_jsonl();
        text.push_str("{\"type\":\"request\",\"ts\":\"2026-11-"); // killed mid-line
        fs::write(dir.path().join("events.jsonl"), text).unwrap();
        let session = Session::load(dir.path()).unwrap();
        assert_eq!(session.skipped, 1);
        assert!(session.events.len() >= 4);
        let written = write(&session, &Outputs::in_folder(dir.path())).unwrap();
        assert_eq!(written.len(), 3);
        assert!(dir.path().join("report.html").exists());
    }
}

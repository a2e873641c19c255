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

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::profile::Profile;
use crate::session::event::{Event, SessionInfo};
use crate::session::summary::Summary;
use crate::tls::chain::TlsVerdict;

/// A session read back from its folder, in one pass over `events.jsonl` that keeps what the
/// reports need and never the events themselves: memory is bounded by the number of hosts
/// (the summary's limits), [`waterfall::WATERFALL_ROWS`] and [`compare::MAX_COMPARED`], not
/// by the session's length. The HAR, which has an entry per event, reads the file again
/// ([`Session::events`]).
pub struct Session {
    pub dir: PathBuf,
    pub summary: Summary,
    pub profile: Arc<Profile>,
    /// Lines of `events.jsonl` that could not be read (a kill mid-line leaves one).
    pub skipped: usize,
    /// Tunnels and plain-HTTP requests recorded.
    pub tunnels: u64,
    pub requests: u64,
    /// When the session ended cleanly (its `session_ended` line).
    pub ended_at: Option<String>,
    /// Each host's chain verdict (the HAR's `_tls`), for at most [`MAX_TLS_HOSTS`] hosts.
    pub tls: HashMap<(String, u16), Option<TlsVerdict>>,
    /// The waterfall's rows.
    pub waterfall: waterfall::Rows,
    /// What `compare` needs.
    pub digest: compare::Digest,
    /// Kept bodies of answers that went wrong, each content once, at most
    /// [`MAX_REPORT_BODIES`] (the HTML report shows them).
    pub problem_bodies: Vec<ProblemBody>,
    /// A temporary folder that holds the files, removed with the session (fixtures).
    _owned: Option<tempfile::TempDir>,
}

/// A kept body the HTML report shows: the first request that got it, and how many did.
#[derive(Debug, Clone)]
pub struct ProblemBody {
    /// `GET http://host/path → 403 (block_page)`.
    pub line: String,
    pub body: crate::session::event::KeptBody,
    pub times: u64,
}

/// Distinct problem bodies the HTML report shows (each at most 64 KiB).
pub const MAX_REPORT_BODIES: usize = 20;

/// Hosts whose chain verdict the HAR carries.
pub const MAX_TLS_HOSTS: usize = 10_000;
/// Events read before `session_started` at most (it is the first line of every session).
const BEFORE_START: usize = 1000;

impl Session {
    /// Reads `DIR/events.jsonl` once; a session cut off by a kill still loads.
    pub fn load(dir: &Path) -> Result<Session, String> {
        let path = dir.join("events.jsonl");
        let cannot = |e: io::Error| format!("cannot read {}: {e}", path.display());
        let file = File::open(&path).map_err(cannot)?;
        let mut lines = Lines::new(BufReader::with_capacity(256 * 1024, file));
        let mut early = Vec::new();
        let info = loop {
            let Some(event) = lines.next_event().map_err(cannot)? else {
                return Err(format!(
                    "{} has no session_started line: not a diagproxy session",
                    path.display()
                ));
            };
            match event {
                Event::SessionStarted(info) => break *info,
                _ if early.len() < BEFORE_START => early.push(event),
                _ => {}
            }
        };
        let profile = Arc::new(profile_of(&info));
        let mut session = Session::empty(dir, Summary::new(info, profile.clone()), profile);
        for event in early {
            session.fold(&event);
        }
        while let Some(event) = lines.next_event().map_err(cannot)? {
            session.fold(&event);
        }
        session.skipped = lines.skipped;
        Ok(session)
    }

    fn empty(dir: &Path, summary: Summary, profile: Arc<Profile>) -> Session {
        Session {
            dir: dir.to_path_buf(),
            summary,
            profile,
            skipped: 0,
            tunnels: 0,
            requests: 0,
            ended_at: None,
            tls: HashMap::new(),
            waterfall: waterfall::Rows::default(),
            digest: compare::Digest::default(),
            problem_bodies: Vec::new(),
            _owned: None,
        }
    }

    /// One event into everything the reports keep.
    fn fold(&mut self, event: &Event) {
        self.summary.apply(event);
        self.waterfall.add(event);
        self.digest.add(event);
        match event {
            Event::Tunnel(_) => self.tunnels += 1,
            Event::Request(r) => {
                self.requests += 1;
                self.note_body(r);
            }
            Event::SessionEnded(end) => self.ended_at = Some(end.ended_at.clone()),
            Event::TlsCheck(check) => {
                let key = (check.host.clone(), check.port);
                if self.tls.len() < MAX_TLS_HOSTS || self.tls.contains_key(&key) {
                    self.tls.insert(key, check.tls.clone());
                }
            }
            _ => {}
        }
    }

    /// Remembers a request's kept body if its answer went wrong (once per content).
    fn note_body(&mut self, r: &crate::session::event::RequestEvent) {
        let Some(body) = &r.body else { return };
        let problem = !r.findings.is_empty() || r.failure.is_some() || r.status >= Some(400);
        if !problem {
            return;
        }
        if let Some(seen) = self
            .problem_bodies
            .iter_mut()
            .find(|b| b.body.sha256 == body.sha256)
        {
            seen.times += 1;
            return;
        }
        if self.problem_bodies.len() < MAX_REPORT_BODIES {
            let status = r.status.map_or("no answer".to_string(), |s| s.to_string());
            let named = r.findings.first().map(|f| f.kind.as_str().to_string());
            let named = named.or_else(|| r.failure.as_ref().map(|f| f.kind.as_str().to_string()));
            let line = format!(
                "{} {} → {status}{}",
                r.method,
                r.url,
                named.map_or(String::new(), |n| format!(" ({n})"))
            );
            self.problem_bodies.push(ProblemBody {
                line,
                body: body.clone(),
                times: 1,
            });
        }
    }

    /// A kept body's text (binary ones and missing files: `None`).
    pub fn body_text(&self, body: &crate::session::event::KeptBody) -> Option<String> {
        if body.encoding != crate::session::event::BodyEncoding::Text {
            return None;
        }
        std::fs::read_to_string(body.path_in(&self.dir)?).ok()
    }

    /// The session's events, read from the file again, in order (unreadable lines skipped).
    pub fn events(&self) -> io::Result<impl Iterator<Item = Event>> {
        let file = File::open(self.dir.join("events.jsonl"))?;
        let mut lines = Lines::new(BufReader::with_capacity(256 * 1024, file));
        Ok(std::iter::from_fn(move || {
            lines.next_event().ok().flatten()
        }))
    }

    /// A session whose files live in `owned` (fixtures), kept as long as the session is.
    #[cfg(test)]
    pub(crate) fn load_owned(owned: tempfile::TempDir) -> Result<Session, String> {
        let mut session = Session::load(owned.path())?;
        session._owned = Some(owned);
        Ok(session)
    }

    pub fn info(&self) -> &SessionInfo {
        self.summary.session()
    }

    /// When the session started, in ms since the epoch, for time axes.
    pub fn start_ms(&self) -> f64 {
        parse_ts(&self.info().started_at).unwrap_or(0.0)
    }
}

/// `events.jsonl` line by line (one line's buffer reused), counting lines that are not an
/// event.
struct Lines<R> {
    reader: R,
    line: Vec<u8>,
    skipped: usize,
}

impl<R: BufRead> Lines<R> {
    fn new(reader: R) -> Lines<R> {
        Lines {
            reader,
            line: Vec::new(),
            skipped: 0,
        }
    }

    fn next_event(&mut self) -> io::Result<Option<Event>> {
        loop {
            self.line.clear();
            if self.reader.read_until(b'\n', &mut self.line)? == 0 {
                return Ok(None);
            }
            if self.line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            // A line that is not UTF-8 or not an event is counted, never fatal.
            match serde_json::from_slice::<Event>(&self.line) {
                Ok(event) => return Ok(Some(event)),
                Err(_) => self.skipped += 1,
            }
        }
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

/// HTML-escapes text ([`crate::text::html`]: control bytes from certificate names and
/// headers are shown escaped, never written raw).
pub fn esc(text: &str) -> String {
    crate::text::html(text)
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
        std::fs::write(dir.path().join("events.jsonl"), text).unwrap();
        let session = Session::load(dir.path()).unwrap();
        assert_eq!(session.skipped, 1);
        assert!(session.events().unwrap().count() >= 4);
        assert!(session.tunnels + session.requests >= 2);
        let written = write(&session, &Outputs::in_folder(dir.path())).unwrap();
        assert_eq!(written.len(), 3);
        assert!(dir.path().join("report.html").exists());
    }
}

//! The session folder's writing. The thread that records an event folds it into the shared
//! [`Summary`], turns it into its JSON line and its live-log line, and appends them itself,
//! under one lock, to `events.jsonl`'s buffer, the live feed and the live log, so every
//! reader sees events in the order they were recorded. A writer thread flushes what
//! gathered [`BATCH_WINDOW`] after the first line of a batch (so a kill loses at most that
//! much), stores kept bodies (file I/O, off the proxy's tasks) and writes `summary.json` at
//! the end.
//!
//! Why the work is split so: on a loaded core every piece of recording the writer thread did
//! per event arrived as one burst per batch and preempted a request mid-flight. When the
//! writer serialised every event itself, the interception p99 at c=16 was 1.2 ms against
//! 0.46 ms for a proxy that records nothing; when it still copied each line into the file
//! and the feed, a batch of about 400 lines held the core for 0.13 ms at the median and 2.6
//! ms at the worst, and the p99 stayed 1.4–1.6× hudsucker's (docs/performance.md,
//! "2026-12-07, fifth"). Appended by the thread that made it, a line costs the same CPU,
//! spread over the requests, and the writer wakes once per batch to hand the kernel one
//! buffer. The cost: a recording thread may wait for the lock while another appends (a
//! copy of about a kilobyte) or writes the full buffer ([`BUFFER`], one `write(2)` to the
//! page cache); a disk that blocks writes blocks recording with it.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{mpsc, oneshot};

use super::event::{Event, KeptBody, SessionEnd, SessionInfo};
use super::feed::Feed;
use super::livelog::{self, Style};
use super::summary::Summary;
use crate::profile::Profile;

/// How long lines gather after the first of a batch before the writer flushes them: what
/// the live log and `events.jsonl` may lag behind the traffic, and why a busy proxy wakes
/// the writer about a hundred times a second, not once per request (a wake-up is a futex
/// call and a context switch on the core the proxy needs).
const BATCH_WINDOW: std::time::Duration = std::time::Duration::from_millis(10);
/// Bytes of event lines buffered before the recording thread that fills the buffer writes it
/// out itself (between two of the writer's flushes, at more than about 40 events a window).
const BUFFER: usize = 64 * 1024;
/// The most messages (bodies to store, flush requests) that may wait for the writer. A body
/// past it (a writer that cannot keep up for seconds) is not stored: its event is written
/// without it and counted in `summary.session.bodies_not_kept`.
pub const QUEUE: usize = 1 << 12;
/// The most bytes of kept bodies (`bodies/`) one session stores; past it bodies are not
/// stored, and counted (`summary.session.bodies_not_kept`).
pub const MAX_BODY_STORE: u64 = 256 << 20;

/// The file the session's PAC script is kept in (route evidence for a bundle).
pub const PAC_FILE: &str = "proxy.pac";

/// Keeps the PAC script the session follows as `proxy.pac` (`0600`) in its folder; a file
/// that cannot be written is said in the log and loses nothing else.
pub fn keep_pac(dir: &Path, pac: Option<&crate::upstream::pac::PacFile>) {
    let Some(text) = pac.and_then(|p| p.text.as_deref()) else {
        return;
    };
    let path = dir.join(PAC_FILE);
    let written =
        crate::files::create_private(&path).and_then(|mut file| file.write_all(text.as_bytes()));
    if let Err(e) = written {
        tracing::warn!("cannot keep the PAC file as {}: {e}", path.display());
    }
}

/// The summary as the recorder keeps it, readable by the live page.
pub type SharedSummary = Arc<Mutex<Summary>>;

enum Msg {
    /// Flush `events.jsonl` and the live log after [`BATCH_WINDOW`]; sent by the first line
    /// after a flush.
    Flush,
    /// A kept body to store as `bodies/SHA256` (its event already names it).
    Body(Box<(String, bytes::Bytes)>),
    /// Write the last event and `summary.json`, then answer with the final summary.
    Finish(Box<SessionEnd>, oneshot::Sender<io::Result<Summary>>),
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

/// Where events go, in the order they are recorded: one lock for the file's buffer, the feed
/// and the live log, so the three agree.
#[derive(Debug)]
struct Out {
    /// `events.jsonl`, flushed by the writer after each batch.
    events: BufWriter<File>,
    /// The live page's ring: the same shared line as the file gets (its ids in file order).
    feed: Arc<Feed>,
    /// The batch's live-log lines, written to stderr at once (one write per batch, not one
    /// or two per request on the proxy's core).
    live: String,
    /// A flush was asked of the writer and has not happened yet: later lines join it.
    flush_asked: bool,
    /// The session's last event is written: anything recorded after it is not.
    closed: bool,
}

impl Out {
    /// Appends one event's line (and its live-log line), and gives it to the feed.
    fn append(&mut self, json: Arc<str>, live: Option<String>) -> io::Result<()> {
        let written = self
            .events
            .write_all(json.as_bytes())
            .and_then(|()| self.events.write_all(b"\n"));
        if let Some(live) = live {
            self.live.push_str(&live);
            self.live.push('\n');
        }
        self.feed.publish_shared(json);
        written
    }
}

/// Locks `out`; a poisoned lock still writes (a panic elsewhere must not stop recording).
fn lock(out: &Mutex<Out>) -> MutexGuard<'_, Out> {
    out.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The session's kept bodies as the recording threads see them: what is reserved of
/// [`MAX_BODY_STORE`] and what was not kept.
#[derive(Debug)]
struct Bodies {
    /// `bodies/`, where a body already stored (the same block page again) is found.
    dir: PathBuf,
    /// Bytes reserved by bodies sent to the writer (two copies of one body sent within a
    /// batch window both count: the bound errs towards storing less).
    reserved: AtomicU64,
    /// Bodies not stored: over the bound, the queue full, or the file could not be written.
    not_kept: AtomicU64,
}

/// The cheap, cloneable handle every connection task records through.
#[derive(Clone, Debug)]
pub struct Recorder {
    /// To the writer thread: flush requests, bodies, the end.
    tx: mpsc::Sender<Msg>,
    /// What recording threads append to.
    out: Arc<Mutex<Out>>,
    /// Folded into by whoever records.
    summary: SharedSummary,
    /// For the live-log lines, made where the event is recorded.
    profile: Arc<Profile>,
    /// How those lines look (`-q`: failures only, so most events make none).
    style: Style,
    /// Events not written because `events.jsonl` could not be (a full disk).
    dropped: Arc<AtomicU64>,
    /// The kept bodies' bound and count.
    bodies: Arc<Bodies>,
    /// What was written, for the live page's `/events`.
    feed: Arc<Feed>,
}

impl Recorder {
    /// Creates the session folder, writes the first event and starts the writer thread.
    pub fn start(
        dir: &Path,
        info: SessionInfo,
        profile: Arc<Profile>,
        style: Style,
    ) -> io::Result<(Recorder, SharedSummary)> {
        Recorder::start_with_queue(dir, info, profile, style, QUEUE)
    }

    /// [`Recorder::start`] with another queue length (tests make it small).
    fn start_with_queue(
        dir: &Path,
        info: SessionInfo,
        profile: Arc<Profile>,
        style: Style,
        queue: usize,
    ) -> io::Result<(Recorder, SharedSummary)> {
        crate::files::create_private_dir(dir)?;
        let file = crate::files::create_private(&dir.join("events.jsonl"))?;
        let feed = Arc::new(Feed::new());
        let out = Arc::new(Mutex::new(Out {
            events: BufWriter::with_capacity(BUFFER, file),
            feed: feed.clone(),
            live: String::new(),
            flush_asked: false,
            closed: false,
        }));
        let summary = Arc::new(Mutex::new(Summary::new(info.clone(), profile.clone())));
        let bodies = Arc::new(Bodies {
            dir: dir.join("bodies"),
            reserved: AtomicU64::new(0),
            not_kept: AtomicU64::new(0),
        });
        let (tx, rx) = mpsc::channel(queue);
        let recorder = Recorder {
            tx,
            out,
            summary: summary.clone(),
            profile,
            style,
            dropped: Arc::default(),
            bodies,
            feed,
        };
        recorder.record(Event::SessionStarted(Box::new(info)));
        let writer = Writer {
            out: recorder.out.clone(),
            dir: dir.to_path_buf(),
            bodies: recorder.bodies.clone(),
            summary: summary.clone(),
            profile: recorder.profile.clone(),
            style,
        };
        writer.flush()?;
        std::thread::Builder::new()
            .name("diagproxy-recorder".into())
            .spawn(move || writer.run(rx))?;
        Ok((recorder, summary))
    }

    /// Folds an event into the summary and appends its line; never waits for the writer.
    /// A body to keep is named in the line and stored by the writer, or left out and
    /// counted. After `finish`, events are not written.
    pub fn record(&self, mut event: Event) {
        // Folded first, in the order events happen (the live page's first block page is
        // the first one seen), whatever happens to the line.
        fold(&self.summary, &event);
        if let Event::Request(request) = &mut event {
            if request.body.as_mut().is_some_and(|body| !self.keep(body)) {
                request.body = None;
            }
        }
        let json = match encode(&event) {
            Ok(json) => json,
            Err(e) => return tracing::error!("cannot write an event as JSON: {e}"),
        };
        let live = livelog::line(&event, &self.profile, self.style);
        let mut out = lock(&self.out);
        if out.closed {
            return;
        }
        if let Err(e) = out.append(json, live) {
            if self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::error!("cannot write events.jsonl (events are being lost, counted in summary.json as events_dropped): {e}");
            }
        }
        if !out.flush_asked {
            // A full queue (bodies waiting) asks again with the next line.
            out.flush_asked = self.tx.try_send(Msg::Flush).is_ok();
        }
    }

    /// Names a body to keep by its SHA-256 and sends it to the writer, unless the file
    /// exists already (the same body again); false when it cannot be kept (counted).
    fn keep(&self, body: &mut KeptBody) -> bool {
        let Some(data) = body.data.take() else {
            return true;
        };
        body.sha256 = crate::text::sha256_hex(&data);
        let bodies = &self.bodies;
        if bodies.dir.join(&body.sha256).exists() {
            return true;
        }
        let size = data.len() as u64;
        let reserved = bodies
            .reserved
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| {
                (r + size <= MAX_BODY_STORE).then_some(r + size)
            });
        let sent = reserved.is_ok()
            && self
                .tx
                .try_send(Msg::Body(Box::new((body.sha256.clone(), data))))
                .is_ok();
        if !sent {
            if bodies.not_kept.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!("a body is not kept (and later ones may not be): the session's bodies reached their limit or the writer is behind");
            }
            if reserved.is_ok() {
                bodies.reserved.fetch_sub(size, Ordering::Relaxed);
            }
        }
        sent
    }

    /// The events written so far and from now on, for the live page.
    pub fn feed(&self) -> &Arc<Feed> {
        &self.feed
    }

    /// Events lost so far because `events.jsonl` could not be written.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Writes the end of the session and `summary.json`; returns the final summary.
    pub async fn finish(&self, mut end: SessionEnd) -> io::Result<Summary> {
        let (tx, rx) = oneshot::channel();
        end.limits.events_dropped = self.dropped();
        end.limits.live_log_dropped = super::stderr::get().dropped();
        self.tx
            .send(Msg::Finish(Box::new(end), tx))
            .await
            .map_err(|_| io::Error::other("the session recorder stopped early"))?;
        rx.await
            .map_err(|_| io::Error::other("the session recorder stopped early"))?
    }
}

/// The writer thread: flushes batches, stores bodies, ends the session.
struct Writer {
    /// What the recording threads append to.
    out: Arc<Mutex<Out>>,
    /// The session folder (`summary.json`).
    dir: PathBuf,
    /// Where bodies go, and their count for the last event.
    bodies: Arc<Bodies>,
    /// For the last event, which no recorder folds.
    summary: SharedSummary,
    /// For the last event's live-log line.
    profile: Arc<Profile>,
    style: Style,
}

impl Writer {
    fn run(self, mut rx: mpsc::Receiver<Msg>) {
        while let Some(msg) = rx.blocking_recv() {
            let done = match msg {
                Msg::Flush => {
                    std::thread::sleep(BATCH_WINDOW);
                    self.flush()
                }
                Msg::Body(body) => {
                    let (sha256, data) = *body;
                    self.store_body(&sha256, &data);
                    Ok(())
                }
                Msg::Finish(end, reply) => {
                    let _ = reply.send(self.finish(end));
                    return;
                }
            };
            if let Err(e) = done {
                tracing::error!("cannot write events.jsonl: {e}");
            }
        }
    }

    /// Ends a batch: the events file, then the live log's lines (outside the lock: the
    /// terminal never holds up recording).
    fn flush(&self) -> io::Result<()> {
        let (flushed, live) = {
            let mut out = lock(&self.out);
            out.flush_asked = false;
            (out.events.flush(), std::mem::take(&mut out.live))
        };
        if !live.is_empty() {
            // Never waits: a paused terminal drops live-log lines, not events.
            super::stderr::get().say(live);
        }
        flushed
    }

    /// Stores a kept body as `bodies/SHA256` (once per content); one that cannot be
    /// stored is counted (its event names it already).
    fn store_body(&self, sha256: &str, data: &[u8]) {
        let path = self.bodies.dir.join(sha256);
        if path.exists() {
            return;
        }
        let stored = crate::files::create_private_dir(&self.bodies.dir)
            .and_then(|()| crate::files::create_private(&path))
            .and_then(|mut file| file.write_all(data));
        if let Err(e) = stored {
            if self.bodies.not_kept.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!("a body is not kept (and later ones may not be): {e}");
            }
        }
    }

    /// Writes the last event (anything recorded after it is not), syncs the events file
    /// and writes `summary.json`.
    fn finish(&self, mut end: Box<SessionEnd>) -> io::Result<Summary> {
        end.limits.bodies_not_kept = self.bodies.not_kept.load(Ordering::Relaxed);
        let event = Event::SessionEnded(end);
        fold(&self.summary, &event);
        let json = encode(&event)?;
        let live = livelog::line(&event, &self.profile, self.style);
        {
            let mut out = lock(&self.out);
            out.append(json, live)?;
            out.closed = true;
        }
        self.flush()?;
        lock(&self.out).events.get_ref().sync_data()?;
        let summary = match self.summary.lock() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let json = summary.to_json();
        crate::files::replace(&self.dir.join("summary.json"), 0o600, |file| {
            file.write_all(json.as_bytes())
        })?;
        Ok(summary)
    }
}

/// The most bytes a recording thread's JSON buffer keeps between events; one grown past it
/// by a large event is given back.
const LINE_KEPT: usize = 64 * 1024;

thread_local! {
    /// Each recording thread's JSON buffer, reused from event to event.
    static LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// An event's JSON line (without its newline), in the one allocation the feed shares.
fn encode(event: &Event) -> serde_json::Result<Arc<str>> {
    LINE.with_borrow_mut(|line| {
        line.clear();
        // The request event, one per request, by hand (see `request_line`); the rest by serde.
        let written = match event {
            Event::Request(request) => super::request_line::write(line, request),
            other => serde_json::to_writer(&mut *line, other),
        };
        let json = written.and_then(|()| {
            // serde_json writes UTF-8 only; checking it is a fast ASCII scan.
            std::str::from_utf8(line)
                .map(Arc::from)
                .map_err(serde::ser::Error::custom)
        });
        if line.capacity() > LINE_KEPT {
            *line = Vec::new();
        }
        json
    })
}

/// Folds an event into the summary (a poisoned lock still folds: the summary is counts).
fn fold(summary: &SharedSummary, event: &Event) {
    let mut summary = match summary.lock() {
        Ok(summary) => summary,
        Err(poisoned) => poisoned.into_inner(),
    };
    summary.apply(event);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The channel allocates its blocks 32 messages at a time: with messages of three words
    /// a block stays under 1 KiB, a size glibc serves from its per-thread cache (at 176
    /// bytes a message, when events went through it, every block was a "large" request that
    /// made malloc consolidate its free lists on the proxy's hot path).
    #[test]
    fn messages_are_three_words_at_most() {
        assert!(std::mem::size_of::<Event>() <= 16);
        assert!(std::mem::size_of::<Msg>() <= 24);
    }

    fn request(path: &str, body: Option<&'static [u8]>) -> Event {
        use super::super::event::{BodyEncoding, KeptBody, RequestEvent};
        Event::Request(Box::new(RequestEvent {
            body: body.map(|data| KeptBody {
                sha256: String::new(),
                size: data.len(),
                truncated: false,
                encoding: BodyEncoding::Text,
                mime: None,
                data: Some(bytes::Bytes::from_static(data)),
            }),
            ..RequestEvent::get("chatgpt.com", path)
        }))
    }

    fn style(quiet: bool) -> Style {
        let format = super::super::livelog::Format::Human;
        Style {
            format,
            color: false,
            quiet,
        }
    }

    /// A recorder on a new session folder (quiet live log) whose writer takes `queue`
    /// messages.
    fn started(queue: usize) -> (tempfile::TempDir, Recorder, SharedSummary) {
        let dir = tempfile::tempdir().unwrap();
        let profile = Arc::new(Profile::builtin());
        let info = SessionInfo::default();
        let (recorder, summary) =
            Recorder::start_with_queue(dir.path(), info, profile, style(true), queue).unwrap();
        (dir, recorder, summary)
    }

    /// Ends the session as `run` does and returns the final summary.
    fn finish(recorder: &Recorder) -> Summary {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let end = SessionEnd {
            ended_at: "x".into(),
            unfinished: 0,
            limits: Default::default(),
        };
        runtime.block_on(recorder.finish(end)).unwrap()
    }

    /// Lines serialised by the recording threads and events the writer serialises itself
    /// (one with a body to store) reach `events.jsonl` and the live feed in the order they
    /// were recorded, each once, and the summary counts every one.
    #[test]
    fn every_event_is_written_fed_and_counted_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let style = style(false);
        let profile = Arc::new(Profile::builtin());
        let (recorder, _) =
            Recorder::start(dir.path(), SessionInfo::default(), profile, style).unwrap();
        let paths = ["/a", "/b", "/kept", "/c"];
        for path in paths {
            let body = (path == "/kept").then_some(&b"kept body"[..]);
            recorder.record(request(path, body));
        }
        let summary = finish(&recorder);
        let text = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let urls: Vec<&str> = lines.iter().filter_map(|l| l["url"].as_str()).collect();
        let expected: Vec<String> = paths
            .iter()
            .map(|p| format!("http://chatgpt.com{p}"))
            .collect();
        assert_eq!(urls, expected);
        assert_eq!(lines.first().unwrap()["type"], "session_started");
        assert_eq!(lines.last().unwrap()["type"], "session_ended");
        let sha = lines[3]["body"]["sha256"].as_str().unwrap();
        let stored = std::fs::read(dir.path().join("bodies").join(sha)).unwrap();
        assert_eq!(stored, b"kept body");
        let fed: Vec<String> = (1..=lines.len() as u64)
            .map(|id| recorder.feed().get(id).unwrap().json.to_string())
            .collect();
        assert_eq!(fed, text.lines().collect::<Vec<_>>());
        let doc = summary.doc();
        assert_eq!(doc.hosts.iter().map(|h| h.requests).sum::<u64>(), 4);
        assert_eq!(recorder.dropped(), 0);
    }

    /// Whether `path` holds `lines` lines, read until it does or 5 s have passed.
    fn holds_lines_within(path: &Path, lines: usize) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let now = std::fs::read_to_string(path).unwrap_or_default();
            if now.lines().count() >= lines || std::time::Instant::now() > deadline {
                return now.lines().count() == lines;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// A line reaches the file a batch window after it was recorded, with no finish and no
    /// other line after it (the writer flushes what gathered).
    #[test]
    fn lines_reach_the_file_without_waiting_for_more() {
        let (dir, recorder, _) = started(QUEUE);
        let events = dir.path().join("events.jsonl");
        assert!(holds_lines_within(&events, 1), "the first event at start");
        recorder.record(request("/a", None));
        recorder.record(request("/b", None));
        assert!(holds_lines_within(&events, 3));
        recorder.record(request("/c", None));
        assert!(holds_lines_within(&events, 4));
    }

    /// Bodies the writer's queue cannot take are left out of their events and counted; every
    /// event is written all the same, and each body it names is stored.
    #[test]
    fn a_body_the_queue_cannot_take_is_left_out_and_counted_and_its_event_written() {
        let (dir, recorder, _) = started(4);
        let sent = 2000;
        for i in 0..sent {
            let mut event = request("/kept", Some(&b"kept body"[..]));
            if let Event::Request(r) = &mut event {
                let body = r.body.as_mut().unwrap();
                body.data = Some(bytes::Bytes::from(format!("kept body {i}")));
            }
            recorder.record(event);
        }
        let summary = finish(&recorder);
        let text = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap();
        let requests: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|l| l["type"] == "request")
            .collect();
        assert_eq!(requests.len() as u64, sent);
        let named: Vec<&str> = requests
            .iter()
            .filter_map(|r| r["body"]["sha256"].as_str())
            .collect();
        let not_kept = sent - named.len() as u64;
        assert!(not_kept > 0, "a queue of 4 cannot take 2000 at once");
        for sha in &named {
            assert!(dir.path().join("bodies").join(sha).exists(), "{sha}");
        }
        let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(last["limits"]["bodies_not_kept"], not_kept);
        assert_eq!(last["limits"]["events_dropped"], 0);
        let doc = summary.doc();
        assert_eq!(doc.hosts.iter().map(|h| h.requests).sum::<u64>(), sent);
    }

    /// The same body twice is stored once and named by both events.
    #[test]
    fn the_same_body_is_stored_once() {
        let (dir, recorder, _) = started(QUEUE);
        recorder.record(request("/one", Some(&b"block page"[..])));
        recorder.record(request("/two", Some(&b"block page"[..])));
        finish(&recorder);
        let text = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap();
        let sha = crate::text::sha256_hex(b"block page");
        assert_eq!(text.matches(&sha).count(), 2);
        let files = std::fs::read_dir(dir.path().join("bodies"))
            .unwrap()
            .count();
        assert_eq!(files, 1);
    }

    /// Bodies past [`MAX_BODY_STORE`] are left out of their events and counted; one that
    /// fits is kept, and a refused one gives back no room it did not take.
    #[test]
    fn bodies_past_the_session_limit_are_left_out_and_counted() {
        let (dir, recorder, _) = started(QUEUE);
        recorder
            .bodies
            .reserved
            .store(MAX_BODY_STORE - 10, Ordering::Relaxed);
        recorder.record(request("/fits", Some(&b"nine byte"[..])));
        recorder.record(request("/over", Some(&b"two"[..])));
        assert_eq!(recorder.bodies.not_kept.load(Ordering::Relaxed), 1);
        assert_eq!(
            recorder.bodies.reserved.load(Ordering::Relaxed),
            MAX_BODY_STORE - 1
        );
        finish(&recorder);
        let text = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines[1]["body"]["sha256"],
            crate::text::sha256_hex(b"nine byte")
        );
        assert!(lines[2]["body"].is_null(), "{}", lines[2]);
        assert_eq!(lines[3]["limits"]["bodies_not_kept"], 1);
    }

    /// An event that cannot be written (a full disk) is counted as dropped, and the summary
    /// still counts it.
    #[test]
    fn an_event_the_file_cannot_take_is_counted_dropped() {
        let (_dir, recorder, summary) = started(QUEUE);
        let full = File::options().write(true).open("/dev/full").unwrap();
        lock(&recorder.out).events = BufWriter::with_capacity(16, full);
        for path in ["/a", "/b", "/c"] {
            recorder.record(request(path, None));
        }
        assert_eq!(recorder.dropped(), 3);
        let requests: u64 = summary
            .lock()
            .unwrap()
            .doc()
            .hosts
            .iter()
            .map(|h| h.requests)
            .sum();
        assert_eq!(requests, 3);
    }

    /// What is recorded after the last event is not written.
    #[test]
    fn nothing_is_written_after_the_last_event() {
        let (dir, recorder, _) = started(QUEUE);
        recorder.record(request("/before", None));
        finish(&recorder);
        recorder.record(request("/after", None));
        std::thread::sleep(BATCH_WINDOW * 3);
        let text = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(text.lines().last().unwrap().contains("session_ended"));
        assert!(!text.contains("/after"));
    }
}

//! The single writer of the session folder. The thread that records an event turns it into
//! its JSON line, folds it into the shared [`Summary`] and formats its live-log line, then
//! sends those on a channel; one thread appends the lines to `events.jsonl` (flushed after
//! every batch, so a kill loses nothing already written), hands them to the live feed and
//! prints the live log. At the end it writes `summary.json`. An event carrying a body to
//! keep goes to the writer whole: storing the body is file I/O, which stays off the
//! proxy's tasks.
//!
//! Why the work is split so: the writer shares the proxy's core. When it serialised every
//! event itself, a batch of them held the core for milliseconds at a time (the
//! interception p99 at c=16 was 1.2 ms against 0.46 ms for a proxy that records nothing),
//! and every event's strings were freed on another thread than the one that made them.
//! Serialised where it is made, an event costs the same CPU, spread over the requests.
//!
//! The writer batches: after writing what it found it waits [`BATCH_WINDOW`] before looking
//! again, so a busy proxy wakes it about a hundred times a second, not once per request (a
//! wake-up is a futex call and a context switch on the core the proxy needs).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use super::event::{Event, SessionEnd, SessionInfo};
use super::feed::Feed;
use super::livelog::{self, Style};
use super::summary::Summary;
use crate::profile::Profile;

/// How long the writer lets events gather after each batch: what the live log and
/// `events.jsonl` may lag behind the traffic.
const BATCH_WINDOW: std::time::Duration = std::time::Duration::from_millis(10);
/// Events written between two `sched_yield`s: a batch is written in short bursts (about
/// 30 µs each), so a worker that shares the core and has a request ready runs between them
/// instead of waiting for the whole batch (on Linux's EEVDF scheduler a thread that has the
/// core otherwise keeps it for its whole slice, milliseconds: that was the interception
/// p99 at c=16, 2.2 ms). The writer runs at normal priority, so under a saturating load it
/// gets its fair share and keeps up (at nice 10, its earlier setting, it got a tenth of
/// the core and dropped 4,760 of 277,000 events at 85,000 requests/s). While the writer
/// serialised every event, 30 µs were 8 events; now that it appends lines serialised by
/// their senders, they are about 64 (each yield that finds a worker ready is two context
/// switches, so fewer bursts cost less). Measured since (`perf sched timehist`, interception
/// at c=16, docs/performance.md "fourth"): a yield often keeps the core all the same — a
/// thread that slept through the batch window has the earliest deadline — and the writer
/// then preempts the worker for 0.13 ms at the median, 2.6 ms at the worst; a 50 µs sleep
/// instead of the yield shortened those runs to 0.12 ms at the worst but did not lower the
/// bench's p99, so the yield stays.
const YIELD_EVERY: usize = 64;
/// The most events taken off the channel at once.
const BATCH_MAX: usize = 1024;
/// Events still waiting after a batch was taken from which the writer is behind: it then
/// yields every [`YIELD_EVERY_BEHIND`] events instead and does not sleep until the queue is
/// short again. Without
/// this, a proxy saturated by keep-alive load (50,000 requests/s on one core) gave the
/// writer a worker's whole time slice at every yield and dropped a third of the events
/// (257,538 in `diagproxy bench --only forward`, 2026-12-06).
const BEHIND: usize = BATCH_MAX;
/// Events written between two `sched_yield`s while behind: fewer yields, so the writer
/// catches up, but still some, so requests ready meanwhile do not wait for a whole batch.
const YIELD_EVERY_BEHIND: usize = 512;
/// The most events that may wait for the writer. Beyond it (a writer that cannot keep up
/// for seconds) events are dropped and counted (`summary.session.events_dropped`) instead
/// of growing memory without bound.
pub const QUEUE: usize = 1 << 16;
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
    /// An event with a body to store (folded by its sender): the writer stores the body,
    /// then writes the event.
    Event(Event),
    /// An event's JSON line (folded into the summary by its sender).
    Line(Arc<str>),
    /// An event's JSON line and its live-log line (boxed: most events have none under
    /// `-q`, and a message stays three words).
    LineAndLive(Box<(Arc<str>, String)>),
    /// Write the last event and `summary.json`, then answer with the final summary.
    Finish(Box<SessionEnd>, oneshot::Sender<io::Result<Summary>>),
}

/// The cheap, cloneable handle every connection task records through.
#[derive(Clone, Debug)]
pub struct Recorder {
    tx: mpsc::Sender<Msg>,
    /// Folded into by whoever records (the writer folds only what it serialises itself).
    summary: SharedSummary,
    /// For the live-log lines, made where the event is recorded.
    profile: Arc<Profile>,
    /// How those lines look (`-q`: failures only, so most events make none).
    style: Style,
    /// Events dropped because the queue was full.
    dropped: Arc<AtomicU64>,
    /// What the writer wrote, for the live page's `/events`.
    feed: Arc<Feed>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
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
        let writer = Writer::open(dir, info, profile.clone(), style)?;
        let (summary, feed) = (writer.summary.clone(), writer.feed.clone());
        let (tx, rx) = mpsc::channel(queue);
        std::thread::Builder::new()
            .name("diagproxy-recorder".into())
            .spawn(move || writer.run(rx, &mut ThreadPace))?;
        let dropped = Arc::default();
        let recorder = Recorder {
            tx,
            summary: summary.clone(),
            profile,
            style,
            dropped,
            feed,
        };
        Ok((recorder, summary))
    }

    /// Queues an event; never blocks. Dropped from `events.jsonl` (and counted) when the
    /// queue is full; after `finish`, dropped. The summary folds it first, so it counts
    /// every event written, and a dropped one too.
    pub fn record(&self, event: Event) {
        // Folded here, with a body or without, not when the writer gets to it: the summary
        // takes events in the order they happened (the live page's first block page is the
        // first one seen).
        fold(&self.summary, &event);
        if carries_body(&event) {
            self.send(Msg::Event(event));
            return;
        }
        let json = match encode(&event) {
            Ok(json) => json,
            Err(e) => return tracing::error!("cannot write an event as JSON: {e}"),
        };
        let msg = match livelog::line(&event, &self.profile, self.style) {
            Some(live) => Msg::LineAndLive(Box::new((json, live))),
            None => Msg::Line(json),
        };
        self.send(msg);
    }

    /// Queues a message; counts it dropped when the queue is full.
    fn send(&self, msg: Msg) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(msg) {
            if self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!("the session writer is behind: events are being dropped (counted in summary.json as events_dropped)");
            }
        }
    }

    /// The events written so far and from now on, for the live page.
    pub fn feed(&self) -> &Arc<Feed> {
        &self.feed
    }

    /// Events dropped so far because the writer fell behind.
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

struct Writer {
    /// `events.jsonl`, flushed after every batch.
    events: BufWriter<File>,
    /// The live page's ring: the same shared line as the file gets.
    feed: Arc<Feed>,
    /// The session folder (`bodies/`, `summary.json`).
    dir: PathBuf,
    /// Folded into for the events the writer serialises itself.
    summary: SharedSummary,
    /// For those events' live-log lines.
    profile: Arc<Profile>,
    style: Style,
    /// The batch's live-log lines, written to stderr at once (one write per batch, not
    /// one or two per request on the proxy's core).
    live: String,
    /// Bytes written under `bodies/`, for [`MAX_BODY_STORE`].
    bodies_stored: u64,
    /// Bodies not stored: over [`MAX_BODY_STORE`], or the file could not be written.
    bodies_not_kept: u64,
}

/// How the writer lets the proxy's tasks have the core: the thread's own sleep and yield
/// ([`ThreadPace`]); counted instead by the tests of the pacing rules.
trait Pace {
    /// Waits [`BATCH_WINDOW`] for the next batch to gather.
    fn sleep(&mut self);
    /// Lets a worker with a request ready run (`sched_yield`).
    fn yield_now(&mut self);
}

struct ThreadPace;

impl Pace for ThreadPace {
    fn sleep(&mut self) {
        std::thread::sleep(BATCH_WINDOW);
    }

    fn yield_now(&mut self) {
        std::thread::yield_now();
    }
}

impl Writer {
    /// Creates the session folder and `events.jsonl` (both private), and writes the first
    /// event.
    fn open(
        dir: &Path,
        info: SessionInfo,
        profile: Arc<Profile>,
        style: Style,
    ) -> io::Result<Writer> {
        crate::files::create_private_dir(dir)?;
        let file = crate::files::create_private(&dir.join("events.jsonl"))?;
        let summary = Arc::new(Mutex::new(Summary::new(info.clone(), profile.clone())));
        let mut writer = Writer {
            feed: Arc::new(Feed::new()),
            events: BufWriter::with_capacity(64 * 1024, file),
            dir: dir.to_path_buf(),
            summary,
            profile,
            style,
            live: String::new(),
            bodies_stored: 0,
            bodies_not_kept: 0,
        };
        writer.fold_and_write(&Event::SessionStarted(Box::new(info)))?;
        writer.flush()?;
        Ok(writer)
    }

    fn run(mut self, mut rx: mpsc::Receiver<Msg>, pace: &mut impl Pace) {
        let mut batch = Vec::with_capacity(BATCH_MAX);
        while rx.blocking_recv_many(&mut batch, BATCH_MAX) > 0 {
            // More than a batch still waiting: the traffic outruns the writer, which then
            // yields less and does not sleep until it has caught up ([`BEHIND`]).
            let behind = rx.len() >= BEHIND;
            let every = if behind {
                YIELD_EVERY_BEHIND
            } else {
                YIELD_EVERY
            };
            for (i, msg) in batch.drain(..).enumerate() {
                if i % every == every - 1 {
                    pace.yield_now();
                }
                let written = match msg {
                    Msg::Event(mut event) => {
                        self.store_body(&mut event);
                        self.write(&event)
                    }
                    Msg::Line(json) => self.append(json),
                    Msg::LineAndLive(both) => {
                        let (json, live) = *both;
                        self.say(&live);
                        self.append(json)
                    }
                    Msg::Finish(end, reply) => {
                        let _ = reply.send(self.finish(end));
                        return;
                    }
                };
                if let Err(e) = written {
                    tracing::error!("cannot write events.jsonl: {e}");
                }
            }
            if let Err(e) = self.flush() {
                tracing::error!("cannot write events.jsonl: {e}");
            }
            if !behind {
                pace.sleep();
            }
        }
    }

    /// Writes an event the writer serialises itself (one with a body, the first, the last):
    /// what [`Recorder::record`] does on the recording thread but the fold, then
    /// [`Writer::append`].
    fn write(&mut self, event: &Event) -> io::Result<()> {
        self.append(encode(event)?)?;
        if let Some(line) = livelog::line(event, &self.profile, self.style) {
            self.say(&line);
        }
        Ok(())
    }

    /// The first and the last event, which no recorder folded: folded, then written.
    fn fold_and_write(&mut self, event: &Event) -> io::Result<()> {
        fold(&self.summary, event);
        self.write(event)
    }

    /// Adds a live-log line to the batch's.
    fn say(&mut self, line: &str) {
        self.live.push_str(line);
        self.live.push('\n');
    }

    /// Writes a line a recording thread serialised.
    fn append(&mut self, json: Arc<str>) -> io::Result<()> {
        self.events.write_all(json.as_bytes())?;
        self.events.write_all(b"\n")?;
        self.feed.publish_shared(json);
        Ok(())
    }

    /// Stores a request's kept body as `bodies/SHA256` (once per content) and names it in
    /// the event; a body that cannot be stored is left out of the event and counted.
    fn store_body(&mut self, event: &mut Event) {
        let Event::Request(request) = event else {
            return;
        };
        let Some(body) = request.body.as_mut() else {
            return;
        };
        let Some(data) = body.data.take() else { return };
        body.sha256 = crate::text::sha256_hex(&data);
        let dir = self.dir.join("bodies");
        let path = dir.join(&body.sha256);
        if path.exists() {
            return;
        }
        let stored = if self.bodies_stored + data.len() as u64 > MAX_BODY_STORE {
            Err(io::Error::other("the session's bodies reached their limit"))
        } else {
            crate::files::create_private_dir(&dir)
                .and_then(|()| crate::files::create_private(&path))
                .and_then(|mut file| file.write_all(&data))
        };
        match stored {
            Ok(()) => self.bodies_stored += data.len() as u64,
            Err(e) => {
                if self.bodies_not_kept == 0 {
                    tracing::warn!("a body is not kept (and later ones may not be): {e}");
                }
                self.bodies_not_kept += 1;
                request.body = None;
            }
        }
    }

    /// Ends a batch: the live log's lines, then the events file.
    fn flush(&mut self) -> io::Result<()> {
        if !self.live.is_empty() {
            // Never waits: a paused terminal drops live-log lines, not events.
            super::stderr::get().say(std::mem::take(&mut self.live));
        }
        self.events.flush()
    }

    fn finish(&mut self, mut end: Box<SessionEnd>) -> io::Result<Summary> {
        end.limits.bodies_not_kept = self.bodies_not_kept;
        self.fold_and_write(&Event::SessionEnded(end))?;
        self.flush()?;
        self.events.get_ref().sync_data()?;
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

/// Whether `event` brings a body for the writer to store.
fn carries_body(event: &Event) -> bool {
    matches!(event, Event::Request(r) if r.body.as_ref().is_some_and(|b| b.data.is_some()))
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
    /// a block stays under 1 KiB, a size glibc serves from its per-thread cache; at 176 bytes
    /// a message (before the events were boxed) every block was a "large" request that made
    /// malloc consolidate its free lists on the proxy's hot path.
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

    /// The writer's pauses, counted.
    #[derive(Default)]
    struct Counted {
        sleeps: usize,
        yields: usize,
    }

    impl Pace for Counted {
        fn sleep(&mut self) {
            self.sleeps += 1;
        }

        fn yield_now(&mut self) {
            self.yields += 1;
        }
    }

    /// A writer more than a batch behind neither sleeps nor yields every [`YIELD_EVERY`]
    /// until it has caught up ([`BEHIND`]): 3 batches and 100 lines waiting are written with
    /// one sleep (after the third, the first taken with less than a batch left) and yields
    /// every 512 in the first two batches, every 64 after.
    #[test]
    fn a_writer_behind_by_more_than_a_batch_does_not_sleep_until_it_caught_up() {
        let dir = tempfile::tempdir().unwrap();
        let profile = Arc::new(Profile::builtin());
        let writer = Writer::open(dir.path(), SessionInfo::default(), profile, style(true));
        let writer = writer.unwrap();
        let lines = 3 * BATCH_MAX + 100;
        let (tx, rx) = mpsc::channel(QUEUE);
        for i in 0..lines {
            let json = format!("{{\"type\":\"refused\",\"n\":{i}}}");
            tx.try_send(Msg::Line(Arc::from(json))).unwrap();
        }
        let end = SessionEnd {
            ended_at: "x".into(),
            unfinished: 0,
            limits: Default::default(),
        };
        let (reply, _summary) = oneshot::channel();
        tx.try_send(Msg::Finish(Box::new(end), reply)).unwrap();
        let mut pace = Counted::default();
        writer.run(rx, &mut pace);
        let per_batch = BATCH_MAX / YIELD_EVERY_BEHIND;
        assert_eq!(pace.sleeps, 1);
        assert_eq!(
            pace.yields,
            2 * per_batch + BATCH_MAX / YIELD_EVERY + 100 / YIELD_EVERY
        );
        let text = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap();
        // The first event, every line in order, the last.
        assert_eq!(text.lines().count(), lines + 2);
        assert!(text
            .lines()
            .nth(lines)
            .unwrap()
            .ends_with(&format!("\"n\":{}}}", lines - 1)));
    }

    #[test]
    fn a_writer_that_falls_behind_drops_and_counts_and_loses_count_of_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let style = style(true);
        let profile = Arc::new(Profile::builtin());
        let (recorder, _) =
            Recorder::start_with_queue(dir.path(), SessionInfo::default(), profile, style, 4)
                .unwrap();
        let sent = 2000;
        for _ in 0..sent {
            recorder.record(Event::Refused(Box::default()));
        }
        let summary = finish(&recorder);
        let dropped = recorder.dropped();
        assert!(dropped > 0, "a queue of 4 cannot take 2000 at once");
        let text = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap();
        let written = text.matches("\"type\":\"refused\"").count() as u64;
        assert_eq!(written + dropped, sent, "every event is written or counted");
        assert!(summary
            .to_json()
            .contains(&format!("\"events_dropped\": {dropped}")));
    }

    /// An event with a body is folded as it is recorded, like every other: the summary
    /// takes events in the order they happened (the writer used to fold these when it got
    /// to them, after later events without a body), and counts one the queue dropped.
    #[test]
    fn an_event_with_a_body_is_folded_when_recorded_even_if_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let profile = Arc::new(Profile::builtin());
        let info = SessionInfo::default();
        let (recorder, _) =
            Recorder::start_with_queue(dir.path(), info, profile, style(true), 4).unwrap();
        let sent = 2000;
        for _ in 0..sent {
            recorder.record(request("/kept", Some(&b"kept body"[..])));
        }
        let summary = finish(&recorder);
        assert!(
            recorder.dropped() > 0,
            "a queue of 4 cannot take 2000 at once"
        );
        let doc = summary.doc();
        assert_eq!(doc.hosts.iter().map(|h| h.requests).sum::<u64>(), sent);
    }
}

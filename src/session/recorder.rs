//! The single writer of the session folder. The hot path only sends small events on a
//! channel; one thread appends them to `events.jsonl` (flushed after every batch, so a kill
//! loses nothing already written), folds them into the shared [`Summary`] and prints the live
//! log. At the end it writes `summary.json`.
//!
//! The writer batches: after writing what it found it waits [`BATCH_WINDOW`] before looking
//! again, so a busy proxy wakes it about a hundred times a second, not once per request (a
//! wake-up is a futex call and a context switch on the core the proxy needs).

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use super::event::{Event, SessionEnd, SessionInfo};
use super::livelog::{self, Style};
use super::summary::Summary;
use crate::profile::Profile;

/// How long the writer lets events gather after each batch: what the live log and
/// `events.jsonl` may lag behind the traffic.
const BATCH_WINDOW: std::time::Duration = std::time::Duration::from_millis(10);
/// The most events taken off the channel at once.
const BATCH_MAX: usize = 1024;

/// The summary as the recorder keeps it, readable by the status page.
pub type SharedSummary = Arc<Mutex<Summary>>;

enum Msg {
    Event(Event),
    /// Write the last event and `summary.json`, then answer with the final summary.
    Finish(Box<SessionEnd>, oneshot::Sender<io::Result<Summary>>),
}

/// The cheap, cloneable handle every connection task records through.
#[derive(Clone, Debug)]
pub struct Recorder {
    tx: mpsc::UnboundedSender<Msg>,
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
        fs::create_dir_all(dir)?;
        let file = File::create(dir.join("events.jsonl"))?;
        let summary = Arc::new(Mutex::new(Summary::new(info.clone(), profile.clone())));
        let (tx, rx) = mpsc::unbounded_channel();
        let mut writer = Writer {
            events: BufWriter::with_capacity(64 * 1024, file),
            dir: dir.to_path_buf(),
            summary: summary.clone(),
            profile,
            style,
            live: String::new(),
        };
        writer.write(&Event::SessionStarted(Box::new(info)))?;
        writer.flush()?;
        std::thread::Builder::new()
            .name("diagproxy-recorder".into())
            .spawn(move || {
                yield_to_traffic();
                writer.run(rx)
            })?;
        Ok((Recorder { tx }, summary))
    }

    /// Queues an event; never blocks. After `finish` events are dropped.
    pub fn record(&self, event: Event) {
        let _ = self.tx.send(Msg::Event(event));
    }

    /// Writes the end of the session and `summary.json`; returns the final summary.
    pub async fn finish(&self, end: SessionEnd) -> io::Result<Summary> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Msg::Finish(Box::new(end), tx))
            .map_err(|_| io::Error::other("the session recorder stopped early"))?;
        rx.await
            .map_err(|_| io::Error::other("the session recorder stopped early"))?
    }
}

struct Writer {
    events: BufWriter<File>,
    dir: PathBuf,
    summary: SharedSummary,
    profile: Arc<Profile>,
    style: Style,
    /// The batch's live-log lines, written to stderr at once (one write per batch, not
    /// one or two per request on the proxy's core).
    live: String,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        let mut batch = Vec::with_capacity(BATCH_MAX);
        while rx.blocking_recv_many(&mut batch, BATCH_MAX) > 0 {
            for msg in batch.drain(..) {
                match msg {
                    Msg::Event(event) => {
                        if let Err(e) = self.write(&event) {
                            tracing::error!("cannot write events.jsonl: {e}");
                        }
                    }
                    Msg::Finish(end, reply) => {
                        let _ = reply.send(self.finish(end));
                        return;
                    }
                }
            }
            if let Err(e) = self.flush() {
                tracing::error!("cannot write events.jsonl: {e}");
            }
            std::thread::sleep(BATCH_WINDOW);
        }
    }

    fn write(&mut self, event: &Event) -> io::Result<()> {
        serde_json::to_writer(&mut self.events, event)?;
        self.events.write_all(b"\n")?;
        if let Ok(mut summary) = self.summary.lock() {
            summary.apply(event);
        }
        if let Some(line) = livelog::line(event, &self.profile, self.style) {
            self.live.push_str(&line);
            self.live.push('\n');
        }
        Ok(())
    }

    /// Ends a batch: the live log's lines, then the events file.
    fn flush(&mut self) -> io::Result<()> {
        if !self.live.is_empty() {
            let _ = io::stderr().lock().write_all(self.live.as_bytes());
            self.live.clear();
        }
        self.events.flush()
    }

    fn finish(&mut self, end: Box<SessionEnd>) -> io::Result<Summary> {
        self.write(&Event::SessionEnded(end))?;
        self.flush()?;
        self.events.get_ref().sync_data()?;
        let summary = match self.summary.lock() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        write_atomically(&self.dir.join("summary.json"), summary.to_json().as_bytes())?;
        Ok(summary)
    }
}

/// Lowers this thread's priority (nice 10, Linux): when it shares a core with the proxy's
/// workers, a batch being written waits for traffic instead of delaying it. It still gets
/// its share of the core, so the event log keeps up under load.
fn yield_to_traffic() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority takes plain integers; `who` 0 is the calling thread on Linux.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
}

/// Writes to a temporary file and renames it, so a reader never sees half a file.
pub fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, contents)?;
    fs::rename(&tmp, path)
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
}

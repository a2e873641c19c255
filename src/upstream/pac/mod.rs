//! PAC files: fetched once per session from a URL or a file ([`load`]), described for the
//! session record (URL, status, type, size, SHA-256), and evaluated by [`engine`] — QuickJS
//! through the `rquickjs` crate, on a thread of its own. This file holds what the rest of
//! diagproxy sees: the running script ([`Pac`]) and its answers.

pub mod engine;
pub mod load;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

/// Why a PAC file gave no answer: not fetched, not JavaScript, no `FindProxyForURL`, an
/// exception, the time limit. Becomes a `pac_error` finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacError(pub String);

impl std::fmt::Display for PacError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How long a lookup waits for its answer, queue included.
pub const QUEUE_WAIT: Duration = Duration::from_secs(10);

/// One lookup for the script's thread.
pub struct Job {
    pub url: String,
    pub host: String,
    /// Record the helper calls (`diagproxy pac`); lookups for traffic do not.
    pub trace: bool,
    pub reply: oneshot::Sender<Result<Answer, PacError>>,
}

/// What the script answered, and the helper calls it made (the first 64).
#[derive(Debug, Clone)]
pub struct Answer {
    pub result: String,
    pub calls: Vec<String>,
}

/// Where a PAC file came from and what it was, for `session_started` and `diagproxy pac`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PacFile {
    /// The URL or the file's path.
    pub url: String,
    /// The HTTP status (none for a file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    pub size: usize,
    /// Of the bytes as fetched: which version of the file a session saw.
    pub sha256: String,
    /// The script itself (at most the fetch limit), written to the session folder as
    /// `proxy.pac` so a bundle carries the route evidence; not part of the JSON.
    #[serde(skip)]
    pub text: Option<std::sync::Arc<str>>,
}

/// A running PAC script (started by [`load`]).
pub struct Pac {
    jobs: mpsc::Sender<Job>,
    pub file: PacFile,
}

impl std::fmt::Debug for Pac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pac({})", self.file.url)
    }
}

impl Pac {
    pub fn new(jobs: mpsc::Sender<Job>, file: PacFile) -> Pac {
        Pac { jobs, file }
    }

    /// What the script answers for `url` (as the script sees it) and `host`, with the
    /// helper calls it made when `trace`.
    pub async fn find(&self, url: &str, host: &str, trace: bool) -> Result<Answer, PacError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            url: url.to_string(),
            host: host.to_string(),
            trace,
            reply,
        };
        let asked = async {
            self.jobs
                .send(job)
                .await
                .map_err(|_| PacError("the PAC thread has stopped".into()))?;
            answer
                .await
                .map_err(|_| PacError("the PAC thread has stopped".into()))?
        };
        match tokio::time::timeout(QUEUE_WAIT, asked).await {
            Ok(result) => result,
            Err(_) => Err(PacError(format!(
                "no answer from the PAC script in {:?} (lookups queued behind a slow script)",
                QUEUE_WAIT
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error is shown as its sentence (it becomes a `pac_error` finding's detail), and a
    /// running script as where it came from (never its text, which may be long).
    #[test]
    fn errors_read_as_their_sentence_and_a_script_as_its_source() {
        assert_eq!(
            PacError("no FindProxyForURL".into()).to_string(),
            "no FindProxyForURL"
        );
        let (jobs, _queue) = mpsc::channel(1);
        let file = PacFile {
            url: "http://wpad/wpad.dat".into(),
            status: Some(200),
            content_type: None,
            size: 3,
            sha256: String::new(),
            text: Some("x;\n".into()),
        };
        assert_eq!(
            format!("{:?}", Pac::new(jobs, file)),
            "Pac(http://wpad/wpad.dat)"
        );
    }
}

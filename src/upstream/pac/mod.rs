//! PAC files: fetched once per session (from a URL or a file), described for the session
//! record (URL, status, type, size, SHA-256), and evaluated by [`engine`] — QuickJS through
//! the `rquickjs` crate, on a thread of its own.

pub mod engine;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::config::Config;
use crate::failure::Side;
use crate::upstream::addr::HostPort;
use crate::upstream::dial;

pub use engine::Answer;

/// Why a PAC file gave no answer: not fetched, not JavaScript, no `FindProxyForURL`, an
/// exception, the time limit. Becomes a `pac_error` finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacError(pub String);

impl std::fmt::Display for PacError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The largest PAC file read: real ones are a few KiB, the biggest seen some hundred.
pub const MAX_SIZE: usize = 1 << 20;
/// How long fetching the PAC file may take, connection included.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

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
}

/// A running PAC script.
pub struct Pac {
    jobs: mpsc::Sender<engine::Job>,
    pub file: PacFile,
}

impl std::fmt::Debug for Pac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pac({})", self.file.url)
    }
}

impl Pac {
    /// Fetches (or reads) the PAC file at `location` and starts its script.
    pub async fn load(location: &str, config: &Config) -> Result<Pac, (PacError, Option<PacFile>)> {
        let (script, file) = fetch(location, config).await?;
        Pac::start(script, file, config).await
    }

    /// Starts a script already in hand.
    pub async fn start(
        script: String,
        file: PacFile,
        config: &Config,
    ) -> Result<Pac, (PacError, Option<PacFile>)> {
        match engine::start(script, config.clone()).await {
            Ok(jobs) => Ok(Pac { jobs, file }),
            Err(e) => Err((e, Some(file))),
        }
    }

    /// What the script answers for `url` (as the script sees it) and `host`, with the
    /// helper calls it made when `trace`.
    pub async fn find(&self, url: &str, host: &str, trace: bool) -> Result<Answer, PacError> {
        let (reply, answer) = oneshot::channel();
        let job = engine::Job {
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
        match tokio::time::timeout(engine::QUEUE_WAIT, asked).await {
            Ok(result) => result,
            Err(_) => Err(PacError(format!(
                "no answer from the PAC script in {:?} (lookups queued behind a slow script)",
                engine::QUEUE_WAIT
            ))),
        }
    }
}

/// The script at `location` (`http://` URL, `file://` URL or a path) and its description.
pub async fn fetch(
    location: &str,
    config: &Config,
) -> Result<(String, PacFile), (PacError, Option<PacFile>)> {
    let (bytes, status, content_type) = if let Some(rest) = location.strip_prefix("http://") {
        let got = tokio::time::timeout(FETCH_TIMEOUT, get(rest, config)).await;
        match got {
            Ok(Ok(got)) => got,
            Ok(Err(why)) => return Err((PacError(format!("PAC {location}: {why}")), None)),
            Err(_) => {
                let why = format!("PAC {location}: no answer in {FETCH_TIMEOUT:?}");
                return Err((PacError(why), None));
            }
        }
    } else if location.starts_with("https://") {
        let why = format!(
            "PAC {location}: https:// PAC URLs are not fetched yet; download the file and give pac:FILE"
        );
        return Err((PacError(why), None));
    } else {
        let path = location.strip_prefix("file://").unwrap_or(location);
        let bytes =
            read_file(path).map_err(|why| (PacError(format!("PAC {path}: {why}")), None))?;
        (bytes, None, None)
    };
    let file = PacFile {
        url: location.to_string(),
        status,
        content_type,
        size: bytes.len(),
        sha256: hex(ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref()),
    };
    if let Some(code) = status.filter(|s| *s != 200) {
        let why = format!("PAC {location}: the server answered {code}");
        return Err((PacError(why), Some(file)));
    }
    Ok((String::from_utf8_lossy(&bytes).into_owned(), file))
}

fn read_file(path: &str) -> Result<Bytes, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_SIZE as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() > MAX_SIZE {
        return Err(format!("larger than {} KiB", MAX_SIZE >> 10));
    }
    Ok(Bytes::from(bytes))
}

/// GET `http://{rest}` directly (as browsers fetch PAC files), at most [`MAX_SIZE`] bytes.
async fn get(rest: &str, config: &Config) -> Result<(Bytes, Option<u16>, Option<String>), String> {
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let HostPort { host, port } = HostPort::parse(authority, 80).ok_or("bad host or port")?;
    let dialed = dial::dial(&host, port, config, Side::Upstream)
        .await
        .map_err(|f| f.detail)?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(dialed.stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let request = Request::get(path)
        .header(HOST, authority)
        .header(
            "user-agent",
            concat!("diagproxy/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| crate::text::bounded(crate::text::terminal(v, false).into_owned()));
    let body = Limited::new(response.into_body(), MAX_SIZE)
        .collect()
        .await
        .map_err(|e| format!("reading the body: {e} (at most {} KiB)", MAX_SIZE >> 10))?;
    Ok((body.to_bytes(), Some(status), content_type))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

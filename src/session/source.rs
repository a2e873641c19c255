//! Where an imported session came from (`diagproxy import`): the file, its format and
//! capture mode, where reading stopped, and what the file cannot show. It rides on the
//! session's first event, so `summary.json` and every report rebuilt from the folder say it.

use serde::{Deserialize, Serialize};

/// The two formats read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Chromium's NetLog JSON: `constants`, then `events`.
    Netlog,
    /// HAR 1.2: `log.entries`.
    Har,
}

/// Where an imported session came from (`summary.json` `source`), and what it cannot show.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Source {
    pub format: Option<Format>,
    /// The file as given on the command line.
    pub file: String,
    /// Bytes read (after gzip, when it was compressed).
    pub bytes: u64,
    pub gzip: bool,
    /// The NetLog's capture mode (`Default`, `IncludeSensitive`, `Everything`,
    /// `HeavilyRedacted`); a HAR has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture_mode: Option<String>,
    /// What wrote the file (`Chromium 156.0.8078.129`, `Firefox 128.0`, `Playwright 1.64`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser: Option<String>,
    /// Events (NetLog) or entries (HAR) read.
    pub records: u64,
    /// Requests Chromium cancelled or retried itself (`net::ERR_ABORTED`): not failures.
    #[serde(default)]
    pub aborted: u64,
    /// Set when the file ended early or broke off (a browser that crashed): what was read
    /// up to the last complete record stands, and this says where it stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    /// What this file cannot show (a HAR has no chain, route or DNS).
    #[serde(default)]
    pub cannot_tell: Vec<String>,
    /// A capture too redacted to judge (`HeavilyRedacted`).
    #[serde(default)]
    pub insufficient_detail: bool,
}

impl Source {
    /// The verdict of a capture too redacted to judge: never "all clear".
    pub fn insufficient_sentence(&self) -> String {
        let mode = self.capture_mode.as_deref().unwrap_or("this mode");
        format!(
            "Insufficient detail: capture again in Default mode (this NetLog was captured in {mode}, which hides the URLs, hosts and errors a diagnosis needs)."
        )
    }
}

//! `diagproxy import`: the diagnosis of a session read from a browser's own file — a NetLog
//! (`chrome://net-export`, `--log-net-log`) or a HAR — instead of a proxy in its path.
//!
//! The file is read as a stream (`stream`: gzip or not, a byte count for error offsets, a
//! bound on one value), then its format's reader turns it into the same [`Event`]s `run`
//! records: `netlog` (constants, then events folded per request by `assemble`) or `har`
//! (entries). From there the session folder, the summary, the reports and `compare` are
//! `run`'s own. What the file could not show goes into [`Source::cannot_tell`].

mod assemble;
mod emit;
mod fields;
pub mod har;
mod lines;
mod names;
pub mod neterror;
pub mod netlog;
mod raw;
mod stream;

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;

use crate::profile::Profile;
pub use crate::session::source::{Format, Source};
use crate::session::Event;

/// What an import needs besides the file.
pub struct Context {
    pub profile: Arc<Profile>,
    /// The roots a chain must verify against to be public (`--public-roots`, else the
    /// built-in set); the browser's own decision stands in for this machine's store.
    pub public_roots: Arc<RootCertStore>,
    /// Stands in for the browser's trust store when the file has a chain but not the
    /// browser's decision on it (`--system-roots`, else the system's).
    pub system_roots: Arc<RootCertStore>,
}

/// Why a file could not be imported, and so the exit code.
#[derive(Debug)]
pub enum ImportError {
    /// The file does not exist or cannot be opened: exit 66 (EX_NOINPUT).
    Missing(String),
    /// The content is neither format, or breaks before anything usable: exit 65 (EX_DATAERR).
    Unreadable { reason: String, offset: u64 },
    /// Writing the session failed: exit 1.
    Io(String),
}

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImportError::Missing(e) | ImportError::Io(e) => f.write_str(e),
            ImportError::Unreadable { reason, offset } => {
                write!(f, "{reason} (at byte {offset})")
            }
        }
    }
}

/// Reads `path` (either format, gzip or not) and hands its events to `sink` as they are
/// made; returns where they came from. Memory is bounded by [`stream::MAX_VALUE_BYTES`] per
/// record and the assembler's limits, not by the file's size.
pub fn read(
    path: &Path,
    ctx: &Context,
    sink: &mut dyn FnMut(Event),
) -> Result<Source, ImportError> {
    let file = std::fs::File::open(path)
        .map_err(|e| ImportError::Missing(format!("cannot open {}: {e}", path.display())))?;
    let mut input = stream::Input::open(file)
        .map_err(|e| ImportError::Missing(format!("cannot read {}: {e}", path.display())))?;
    let format = input.format().map_err(|reason| ImportError::Unreadable {
        reason: format!("{}: {reason}", path.display()),
        offset: input.offset(),
    })?;
    let mut source = Source {
        format: Some(format),
        file: path.display().to_string(),
        gzip: input.gzip,
        ..Source::default()
    };
    let outcome = match format {
        Format::Netlog => netlog::read(&mut input, ctx, &mut source, sink),
        Format::Har => har::read(&mut input, ctx, &mut source, sink),
    };
    source.bytes = input.offset();
    outcome.map_err(|reason| ImportError::Unreadable {
        reason: format!("{}: {reason}", path.display()),
        offset: input.offset(),
    })?;
    Ok(source)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::FailureKind;
    use crate::inspect::FindingKind;
    use crate::session::event::SessionInfo;
    use crate::session::summary::Summary;

    fn context() -> Context {
        Context {
            profile: Arc::new(Profile::builtin()),
            public_roots: Arc::new(RootCertStore::empty()),
            system_roots: Arc::new(RootCertStore::empty()),
        }
    }

    /// Imports `text` (written to a file) and folds its events as the session would.
    fn import(text: &[u8]) -> (Source, Summary) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.har");
        std::fs::write(&path, text).unwrap();
        let ctx = context();
        let mut summary = Summary::new(SessionInfo::default(), ctx.profile.clone());
        let source = read(&path, &ctx, &mut |e| summary.apply(&e)).unwrap();
        (source, summary)
    }

    fn host<'a>(s: &'a Summary, name: &str) -> &'a crate::session::summary::HostStats {
        s.hosts().find(|h| h.host == name).expect(name)
    }

    const BLOCK: &str = "<html><head><title>Web Filter Violation</title></head><body><h1>FortiGuard Intrusion Prevention - Access Blocked</h1><p>You have tried to access a web page that is in violation of your Internet usage policy.</p></body></html>";

    #[test]
    fn a_chrome_har_names_failures_and_block_pages_and_says_what_it_cannot_tell() {
        let har = serde_json::json!({"log": {"version": "1.2",
        "creator": {"name": "WebInspector", "version": "537.36"},
        "entries": [
            {"startedDateTime": "2026-12-06T10:00:00.000Z",
             "request": {"method": "GET", "url": "https://chatgpt.com/", "headers": [{"name": "Cookie", "value": "secret=1"}]},
             "response": {"status": 0, "headers": [], "_error": "net::ERR_CONNECTION_RESET"}},
            {"startedDateTime": "2026-12-06T10:00:01.000Z",
             "request": {"method": "GET", "url": "https://cdn.oaistatic.com/x.js", "headers": []},
             "response": {"status": 403, "headers": [{"name": "Content-Type", "value": "text/html"}],
                          "content": {"mimeType": "text/html", "text": BLOCK}}},
            {"startedDateTime": "2026-12-06T10:00:02.000Z",
             "request": {"method": "GET", "url": "https://ab.chatgpt.com/v1", "headers": []},
             "response": {"status": 0, "headers": [], "_error": "net::ERR_ABORTED"}},
            {"request": {"method": "GET", "url": "data:text/plain,hi"}, "response": {"status": 200}}
        ]}});
        let (source, summary) = import(har.to_string().as_bytes());
        assert_eq!(source.format, Some(Format::Har));
        assert_eq!(source.records, 4);
        assert_eq!(source.browser.as_deref(), Some("WebInspector 537.36"));
        assert!(source.cannot_tell[0].contains("TLS inspection: cannot tell"));
        let reset = host(&summary, "chatgpt.com");
        assert_eq!(reset.failures.get(&FailureKind::Reset), Some(&1));
        let blocked = host(&summary, "cdn.oaistatic.com");
        let block = blocked
            .findings
            .iter()
            .find(|f| f.kind == FindingKind::BlockPage);
        assert_eq!(
            block.and_then(|f| f.vendor.as_deref()),
            Some("Fortinet FortiGuard")
        );
        // A request the browser cancelled itself is not a failure.
        assert!(host(&summary, "ab.chatgpt.com").failures.is_empty());
        assert!(
            summary.to_json().contains("\"cannot_tell\"") || summary.session().source.is_none()
        );
    }

    #[test]
    fn playwright_names_a_suspected_vendor_and_firefox_errors_are_read() {
        let har = serde_json::json!({"log": {"creator": {"name": "Playwright", "version": "1.64"},
        "entries": [
            {"request": {"method": "GET", "url": "https://chatgpt.com/"},
             "response": {"status": 200, "headers": []},
             "_securityDetails": {"issuer": "Zscaler Intermediate Root CA (zscaler.net)"}},
            {"request": {"method": "GET", "url": "https://auth.openai.com/"},
             "response": {"status": 0, "_failureText": "net::ERR_NAME_NOT_RESOLVED"}},
            {"request": {"method": "GET", "url": "https://api.openai.com/"},
             "response": {"status": 0, "_error": "NS_ERROR_CONNECTION_REFUSED"}}
        ]}});
        let (_, summary) = import(har.to_string().as_bytes());
        let chatgpt = host(&summary, "chatgpt.com");
        let suspected = &chatgpt.findings[0];
        assert_eq!(suspected.kind, FindingKind::TlsInspection);
        assert_eq!(suspected.vendor.as_deref(), Some("Zscaler"));
        assert!(suspected.evidence.contains("not in the file"));
        let dns = &host(&summary, "auth.openai.com").failures;
        assert_eq!(dns.get(&FailureKind::DnsFailed), Some(&1));
        let refused = &host(&summary, "api.openai.com").failures;
        assert_eq!(refused.get(&FailureKind::ConnectRefused), Some(&1));
    }

    #[test]
    fn a_rejected_certificate_is_untrusted_certificate_and_a_407_is_proxy_auth() {
        let har = serde_json::json!({"log": {"entries": [
            {"request": {"method": "GET", "url": "https://chatgpt.com/"},
             "response": {"status": 0, "_error": "net::ERR_CERT_AUTHORITY_INVALID"}},
            {"request": {"method": "GET", "url": "https://auth.openai.com/"},
             "response": {"status": 0, "_error": "net::ERR_CERT_COMMON_NAME_INVALID"}},
            {"request": {"method": "GET", "url": "https://api.openai.com/"},
             "response": {"status": 407, "_error": "net::ERR_HTTP_RESPONSE_CODE_FAILURE",
                          "headers": [{"name": "Proxy-Authenticate", "value": "Negotiate"}]}}
        ]}});
        let (_, summary) = import(har.to_string().as_bytes());
        for (name, mismatch) in [("chatgpt.com", false), ("auth.openai.com", true)] {
            let row = host(&summary, name);
            assert!(row.failures.is_empty(), "{name}: {:?}", row.failures);
            let finding = &row.findings[0];
            assert_eq!(finding.kind, FindingKind::UntrustedCertificate);
            assert_eq!(finding.evidence.contains("name mismatch"), mismatch);
            assert!(finding.evidence.contains("not in a HAR"));
        }
        // A 407 is a proxy asking for credentials, whatever the browser called it.
        let auth = &host(&summary, "api.openai.com").failures;
        assert_eq!(auth.get(&FailureKind::UpstreamProxyAuth), Some(&1));
    }

    #[test]
    fn a_netlog_names_codes_through_its_own_constants_and_keeps_a_cut_file() {
        // A renumbered table: the names decide. Cut before the closing `]}`.
        let text = r#"{"constants":{"logEventTypes":{"REQUEST_ALIVE":7,"URL_REQUEST_START_JOB":8},
            "logSourceType":{"URL_REQUEST":1},"logEventPhase":{"PHASE_BEGIN":10,"PHASE_END":20,"PHASE_NONE":0},
            "netError":{"ERR_NAME_NOT_RESOLVED":-777},"logCaptureMode":"Default","timeTickOffset":1796528586370,
            "clientInfo":{"name":"Chromium","version":"156"}},
          "events":[
            {"params":{"url":"https://chatgpt.com/"},"phase":10,"source":{"id":5,"type":1},"time":"100","type":7},
            {"params":{"method":"POST","url":"https://chatgpt.com/"},"phase":10,"source":{"id":5,"type":1},"time":"101","type":8},
            {"params":{"net_error":-777},"phase":20,"source":{"id":5,"type":1},"time":"150","type":7},
            {"params":{"url":"https://ab.chatgpt.com/"},"phase":10,"source":{"id":6,"type":1},"time":"160","type":7},
            {"params":{"url":"#;
        let (source, summary) = import(text.as_bytes());
        assert_eq!(source.format, Some(Format::Netlog));
        assert_eq!(source.records, 4);
        assert!(source
            .stopped
            .as_deref()
            .unwrap()
            .contains("read up to the last complete event"));
        assert_eq!(source.browser.as_deref(), Some("Chromium 156"));
        let chatgpt = host(&summary, "chatgpt.com");
        assert_eq!(chatgpt.failures.get(&FailureKind::DnsFailed), Some(&1));
        // The request open when the file broke off is kept, with no failure invented.
        assert!(host(&summary, "ab.chatgpt.com").failures.is_empty());
    }
}

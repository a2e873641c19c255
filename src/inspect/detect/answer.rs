//! A response as every detector sees it, and what the app expected of it.

use hyper::header::HeaderMap;

/// A response as the detectors see it. Header names are lower case.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    pub host: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub headers: &'a HeaderMap,
    /// The first bytes of the body (up to 64 KiB), when they were kept.
    pub body: &'a [u8],
    /// The request's Accept header.
    pub accept: Option<&'a str>,
    /// The declared Content-Length and what actually arrived, when the body ended.
    pub declared_length: Option<u64>,
    pub received: Option<u64>,
    /// Whether diagproxy intercepted the host (its own TLS fingerprint went upstream).
    pub intercepted: bool,
}

impl<'a> Answer<'a> {
    /// A page read outside an exchange (a gateway's plaintext answer, a proxy's refusal, a
    /// check's GET): nothing asked of it, no length to check, not intercepted.
    pub fn page(
        host: &'a str,
        path: &'a str,
        status: u16,
        headers: &'a HeaderMap,
        body: &'a [u8],
    ) -> Answer<'a> {
        Answer {
            host,
            path,
            status,
            headers,
            body,
            accept: None,
            declared_length: None,
            received: None,
            intercepted: false,
        }
    }

    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Whether the app expects JSON or an event stream here (by path, or by Accept).
pub(super) fn expects_api(a: &Answer<'_>) -> bool {
    a.path.starts_with("/backend-api/")
        || a.path.starts_with("/api/")
        || a.path.starts_with("/v1/")
        || a.accept.is_some_and(|acc| {
            let acc = acc.to_ascii_lowercase();
            (acc.contains("application/json") || acc.contains("text/event-stream"))
                && !acc.contains("text/html")
        })
}

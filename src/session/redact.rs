//! Credentials never reach the session files unless the user opts in: header values that
//! carry them become `REDACTED`. Pure, and shared by every writer of headers.

/// Headers whose whole value is a credential.
const SECRET_HEADERS: [&str; 7] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
    "openai-api-key",
];

pub const REDACTED: &str = "REDACTED";

/// Whether a header's value is a credential (by name).
pub fn is_secret_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_HEADERS.contains(&name.as_str())
        || name.contains("token")
        || name.contains("secret")
        || name.contains("session")
}

/// The header list as recorded: `[name, value]` pairs, credentials redacted.
pub fn headers(map: &hyper::HeaderMap, include_secrets: bool) -> Vec<(String, String)> {
    map.iter()
        .map(|(name, value)| {
            let value = if !include_secrets && is_secret_header(name.as_str()) {
                REDACTED.to_string()
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            (name.as_str().to_string(), value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn credentials_are_redacted_unless_asked() {
        let mut map = hyper::HeaderMap::new();
        map.insert(
            "authorization",
            HeaderValue::from_static("Bearer sk-live-123"),
        );
        map.insert(
            "cookie",
            HeaderValue::from_static("__Secure-next-auth.session-token=abc"),
        );
        map.insert("x-csrf-token", HeaderValue::from_static("t0k"));
        map.insert("content-type", HeaderValue::from_static("application/json"));
        let shown = headers(&map, false);
        assert!(
            shown
                .iter()
                .all(|(n, v)| n == "content-type" || v == REDACTED),
            "{shown:?}"
        );
        assert!(!format!("{shown:?}").contains("sk-live"));
        let all = headers(&map, true);
        assert!(all.iter().any(|(_, v)| v == "Bearer sk-live-123"));
    }
}

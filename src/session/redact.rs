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
    let name = crate::profile::ascii_lowercase(name);
    let name = name.as_ref();
    SECRET_HEADERS.contains(&name)
        || name.contains("token")
        || name.contains("secret")
        || name.contains("session")
}

/// One header as recorded: its value, or `REDACTED` for a credential.
pub fn value<'a>(
    name: &str,
    value: &'a hyper::header::HeaderValue,
    include_secrets: bool,
) -> std::borrow::Cow<'a, str> {
    if !include_secrets && is_secret_header(name) {
        std::borrow::Cow::Borrowed(REDACTED)
    } else {
        String::from_utf8_lossy(value.as_bytes())
    }
}

/// `url` without the `user:pass@` of its authority (a credential, never recorded).
pub fn strip_userinfo(url: &str) -> std::borrow::Cow<'_, str> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return std::borrow::Cow::Borrowed(url);
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => std::borrow::Cow::Owned(format!("{scheme}://{}", &rest[at + 1..])),
        None => std::borrow::Cow::Borrowed(url),
    }
}

/// Query parameters whose values are credentials (by name, case-insensitive substring).
const SECRET_PARAMS: [&str; 12] = [
    "token",
    "key",
    "secret",
    "password",
    "passwd",
    "auth",
    "code",
    "session",
    "sig",
    "jwt",
    "credential",
    "otp",
];

/// `url` with the values of credential-like query parameters replaced by `REDACTED`.
pub fn url(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let (query, fragment) = match query.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (query, None),
    };
    let params: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_secret_param(name) => format!("{name}={REDACTED}"),
            _ => pair.to_string(),
        })
        .collect();
    let mut out = format!("{base}?{}", params.join("&"));
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

pub fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_PARAMS.iter().any(|s| name.contains(s))
}

/// Redacts an already recorded header list (reports re-apply it; it is idempotent).
pub fn pairs(list: &[(String, String)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| {
            (
                n.clone(),
                if is_secret_header(n) {
                    REDACTED.to_string()
                } else {
                    v.clone()
                },
            )
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
        // As the writer thread records them: serialised straight from the wire headers.
        let recorded = |include_secrets| {
            let list = crate::session::event::HeaderList::wire(map.clone(), include_secrets);
            let json = serde_json::to_string(&list).expect("headers serialise");
            let pairs: Vec<(String, String)> = serde_json::from_str(&json).expect("pairs");
            assert_eq!(pairs, list.to_pairs());
            (json, pairs)
        };
        let (json, shown) = recorded(false);
        assert!(
            shown
                .iter()
                .all(|(n, v)| n == "content-type" || v == REDACTED),
            "{shown:?}"
        );
        assert!(!json.contains("sk-live") && !json.contains("t0k"), "{json}");
        let (_, all) = recorded(true);
        assert!(all.iter().any(|(_, v)| v == "Bearer sk-live-123"));
    }

    #[test]
    fn urls_and_json_lose_their_secrets() {
        assert_eq!(
            url("https://x/cb?code=abc&state=1&access_token=sk-1#f"),
            "https://x/cb?code=REDACTED&state=1&access_token=REDACTED#f"
        );
        assert_eq!(url("https://x/plain"), "https://x/plain");
    }
}

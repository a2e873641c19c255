//! Credentials never reach the session files unless the user opts in: header values that
//! carry them become `REDACTED`. Pure, and shared by every writer of headers.

pub const REDACTED: &str = "REDACTED";

/// Stems that make a header name a credential wherever they stand in it
/// (`Authorization`, `Cookie`, `Set-Cookie`, `X-Auth-Token`, `X-Goog-Api-Key`, `Apikey`,
/// `OpenAI-Api-Key`, `X-Session-Id`, `Proxy-Authorization`). None holds a `-` or `_`, so
/// a stem inside the name is inside one of its words.
const SECRET_WORDS: [&str; 9] = [
    "auth",
    "key",
    "token",
    "secret",
    "passw",
    "credential",
    "session",
    "cookie",
    "jwt",
];

/// The headers nearly every request and answer carries, none a credential by the rule
/// below (a test holds them to it): matched as a whole first, they skip the scan, which
/// costs more than the rest of writing the header.
const PLAIN_HEADERS: [&str; 16] = [
    "accept",
    "accept-encoding",
    "accept-language",
    "cache-control",
    "connection",
    "content-encoding",
    "content-length",
    "content-type",
    "date",
    "etag",
    "host",
    "last-modified",
    "server",
    "transfer-encoding",
    "user-agent",
    "vary",
];

/// Headers whose value is a URL: their query tokens and userinfo are redacted as a URL's.
const URL_HEADERS: [&str; 4] = ["referer", "location", "content-location", "origin"];

/// Whether a header's value is a credential, by its name: a [`SECRET_WORDS`] stem in it,
/// in any case. Runs for every header of every event, so it scans the name once instead
/// of searching it for each stem.
pub fn is_secret_header(name: &str) -> bool {
    !PLAIN_HEADERS.contains(&name) && holds_secret_stem(name.as_bytes())
}

/// Whether a [`SECRET_WORDS`] stem stands anywhere in `name`, in any case.
fn holds_secret_stem(name: &[u8]) -> bool {
    (0..name.len()).any(|at| {
        let rest = &name[at..];
        SECRET_WORDS.iter().any(|stem| {
            rest.get(..stem.len())
                .is_some_and(|start| start.eq_ignore_ascii_case(stem.as_bytes()))
        })
    })
}

/// One header as recorded: its value, or `REDACTED` for a credential.
pub fn value<'a>(
    name: &str,
    value: &'a hyper::header::HeaderValue,
    include_secrets: bool,
) -> std::borrow::Cow<'a, str> {
    if include_secrets {
        return String::from_utf8_lossy(value.as_bytes());
    }
    if is_secret_header(name) {
        return std::borrow::Cow::Borrowed(REDACTED);
    }
    // Nearly every value is visible ASCII, which `to_str` checks faster than a UTF-8 scan.
    let text = match value.to_str() {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(value.as_bytes()),
    };
    if is_url_header(name) {
        return std::borrow::Cow::Owned(url(&text));
    }
    if is_secret_value(&text) {
        return std::borrow::Cow::Borrowed(REDACTED);
    }
    text
}

/// Whether a header's value is a credential by its shape, whatever the header's name: an
/// `Authorization`-style value (`Bearer …`, `Basic …`, `Negotiate …`, `NTLM …`, `Digest …`)
/// or a JWT (`eyJ….….…`).
pub fn is_secret_value(value: &str) -> bool {
    let value = value.trim_start();
    // The longest scheme is 9 letters: a first space further in cannot end one (and the
    // search stays off the rest of a long value).
    let scheme = value
        .as_bytes()
        .iter()
        .take(10)
        .position(|&b| b == b' ')
        .map_or("", |space| &value[..space]);
    let is_scheme = ["bearer", "basic", "negotiate", "ntlm", "digest"]
        .iter()
        .any(|s| s.eq_ignore_ascii_case(scheme));
    is_scheme || is_jwt(value)
}

/// `eyJ…` (base64url of `{"`) with three dot-separated base64url parts.
fn is_jwt(value: &str) -> bool {
    let base64url = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
    };
    value.starts_with("eyJ")
        && value.trim().split('.').count() == 3
        && value.trim().split('.').all(base64url)
}

fn is_url_header(name: &str) -> bool {
    URL_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// `url` without the `user:pass@` of its authority (a credential, never recorded).
pub fn strip_userinfo(url: &str) -> std::borrow::Cow<'_, str> {
    match without_userinfo_changed(url) {
        Some(bare) => std::borrow::Cow::Owned(bare),
        None => std::borrow::Cow::Borrowed(url),
    }
}

/// `url` without its authority's userinfo, or `None` when it has none (nothing to copy).
pub fn without_userinfo_changed(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let hostport = crate::upstream::addr::without_userinfo(authority);
    (hostport.len() != authority.len()).then(|| format!("{scheme}://{hostport}{tail}"))
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

/// `url` without userinfo, and with the values of credential-like query parameters
/// replaced by `REDACTED`.
pub fn url(url: &str) -> String {
    // Most URLs have neither userinfo nor a query: nothing to take out.
    if memchr::memchr2(b'@', b'?', url.as_bytes()).is_none() {
        return url.to_string();
    }
    let url = strip_userinfo(url);
    let Some((base, query)) = url.split_once('?') else {
        return url.into_owned();
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
            let value = if is_secret_header(n) || is_secret_value(v) {
                REDACTED.to_string()
            } else if is_url_header(n) {
                url(v)
            } else {
                v.clone()
            };
            (n.clone(), value)
        })
        .collect()
}

/// JSON keys whose string values are credentials (lower case, substring): what a kept JSON
/// body loses unless `--include-secrets`. Narrower than [`SECRET_PARAMS`] on purpose: an
/// error body's `code` is the diagnosis.
const SECRET_JSON_KEYS: [&str; 10] = [
    "token",
    "secret",
    "passw",
    "apikey",
    "api_key",
    "authorization",
    "cookie",
    "session",
    "jwt",
    "credential",
];

/// A JSON text (whole or cut off at 64 KiB) with the string values of credential keys, and
/// any string that is a JWT or a bearer token, replaced by `REDACTED`. Works on the text, not
/// a parse, so a truncated body is redacted too.
pub fn json_body(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let (mut at, mut copied) = (0, 0);
    let mut key_is_secret = false;
    while at < bytes.len() {
        if bytes[at] != b'"' {
            at += 1;
            continue;
        }
        // At or past `at + 1` (where the search starts), never past the text.
        let end = string_end(bytes, at + 1);
        let inner = &text[at + 1..end];
        let after = skip_space(bytes, end + 1);
        let is_key = bytes.get(after) == Some(&b':');
        if is_key {
            let lower = inner.to_ascii_lowercase();
            key_is_secret = SECRET_JSON_KEYS.iter().any(|k| lower.contains(k));
        } else {
            if key_is_secret || looks_like_token(inner) {
                out.push_str(&text[copied..at + 1]);
                out.push_str(REDACTED);
                copied = end;
            }
            key_is_secret = false;
        }
        at = end + 1;
    }
    out.push_str(&text[copied.min(text.len())..]);
    out
}

/// Where the JSON string whose content starts at `from` ends (its closing quote, or the end
/// of a cut-off text).
fn string_end(bytes: &[u8], mut from: usize) -> usize {
    while from < bytes.len() {
        match bytes[from] {
            b'\\' => from += 2,
            b'"' => return from,
            _ => from += 1,
        }
    }
    bytes.len()
}

fn skip_space(bytes: &[u8], mut from: usize) -> usize {
    while bytes.get(from).is_some_and(|b| b.is_ascii_whitespace()) {
        from += 1;
    }
    from
}

/// A JWT (`eyJ…` in three dotted parts) or a bearer credential, whatever its key.
fn looks_like_token(value: &str) -> bool {
    let jwt = value.starts_with("eyJ") && value.matches('.').count() >= 2;
    // `get`: the seventh byte may be inside a character (a panic on a body before).
    let bearer = value.len() > 7
        && value
            .get(..7)
            .is_some_and(|p| p.eq_ignore_ascii_case("bearer "));
    jwt || bearer
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    /// A string whose seventh byte is inside a character (the bearer check sliced it there
    /// and panicked: a body could end the recording).
    #[test]
    fn a_string_with_wide_characters_is_read_not_sliced() {
        let body = "{\"note\": \"ab\u{e9}\u{e9}\u{e9}x\", \"access_token\": \"t0k\"}";
        assert_eq!(
            json_body(body),
            "{\"note\": \"ab\u{e9}\u{e9}\u{e9}x\", \"access_token\": \"REDACTED\"}"
        );
    }

    /// A key is a key with space before its colon too; a token needs its whole shape: a
    /// version with two dots, an `eyJ` alone or a `Bearer ` with nothing after it stays.
    #[test]
    fn json_keys_may_be_spaced_and_tokens_need_their_whole_shape() {
        let spaced = "{\"access_token\" \n\t: \"s3cret\"}";
        assert_eq!(json_body(spaced), "{\"access_token\" \n\t: \"REDACTED\"}");
        let plain = r#"{"version":"1.2.3","tag":"eyJ","scheme":"Bearer ","n":"eyJa.b"}"#;
        assert_eq!(json_body(plain), plain);
        let tokens = r#"{"a":"eyJa.b.c","b":"Bearer x"}"#;
        assert_eq!(json_body(tokens), r#"{"a":"REDACTED","b":"REDACTED"}"#);
    }

    #[test]
    fn a_jwt_is_three_nonempty_base64url_parts() {
        // base64url uses `-` and `_`, and some encoders pad with `=`.
        for jwt in [
            "eyJhbGci-Oi.eyJzdWIi.c2ln",
            "eyJhbGci_Oi.eyJzdWIi.c2ln",
            "eyJhbGciOi.eyJzdWIi.c2ln==",
            "eyJhbGciOi.eyJzdWIi.c2ln \n",
        ] {
            assert!(is_jwt(jwt), "{jwt}");
        }
        for not in [
            "eyJhbGciOi..c2ln",
            "eyJhbGciOi.eyJzdWIi.",
            "eyJhbGciOi.eyJ!dWIi.c2ln",
            "eyJhbGciOi.eyJ dWIi.c2ln",
            "eyJhbGciOi.eyJzdWIi",
            "eyJhbGciOi.eyJzdWIi.c2ln.more",
            "xeyJhbGciOi.eyJzdWIi.c2ln",
        ] {
            assert!(!is_jwt(not), "{not}");
        }
    }

    #[test]
    fn credentials_are_known_by_their_shape_under_any_name() {
        for secret in [
            "Bearer abc.def",
            "basic dXNlcjpwYXNz",
            "NTLM TlRMTVNTUAAB",
            "Negotiate YIIG",
            "eyJhbGciOi.eyJzdWIi.c2ln",
        ] {
            assert!(is_secret_value(secret), "{secret}");
            let header = hyper::header::HeaderValue::from_str(secret).unwrap();
            assert_eq!(value("x-forwarded-thing", &header, false), REDACTED);
            assert_eq!(value("x-forwarded-thing", &header, true), secret);
        }
        for plain in ["text/html", "Bearer", "eyJ not a jwt", "a.b.c", "gzip, br"] {
            assert!(!is_secret_value(plain), "{plain}");
        }
        let listed = pairs(&[("x-upstream".into(), "Bearer zzz".into())]);
        assert_eq!(listed[0].1, REDACTED);
    }

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
    fn only_url_headers_are_read_as_urls() {
        let with_token = HeaderValue::from_static("https://x/cb?code=abc");
        assert_eq!(
            value("Referer", &with_token, false),
            "https://x/cb?code=REDACTED"
        );
        assert_eq!(
            value("Location", &with_token, false),
            "https://x/cb?code=REDACTED"
        );
        // Any other header keeps its text: a value that merely looks like a URL is data.
        assert_eq!(
            value("X-Trace", &with_token, false),
            "https://x/cb?code=abc"
        );
        assert_eq!(value("Referer", &with_token, true), "https://x/cb?code=abc");
    }

    #[test]
    fn a_value_that_is_not_ascii_is_kept_as_text_and_still_checked() {
        let latin1 = HeaderValue::from_bytes(b"caf\xe9 ok").unwrap();
        assert_eq!(value("X-Note", &latin1, false), "caf\u{fffd} ok");
        let bearer = HeaderValue::from_bytes(b"Bearer \xe9abc").unwrap();
        assert_eq!(value("X-Forward", &bearer, false), REDACTED);
        let plain = HeaderValue::from_static("text/html");
        assert!(matches!(
            value("Content-Type", &plain, false),
            std::borrow::Cow::Borrowed("text/html")
        ));
    }

    #[test]
    fn urls_and_json_lose_their_secrets() {
        assert_eq!(
            url("https://x/cb?code=abc&state=1&access_token=sk-1#f"),
            "https://x/cb?code=REDACTED&state=1&access_token=REDACTED#f"
        );
        assert_eq!(url("https://x/plain"), "https://x/plain");
    }

    #[test]
    fn header_names_are_read_word_by_word() {
        for secret in [
            "X-Goog-Api-Key",
            "Apikey",
            "X-Auth-Token",
            "X-Session-Id",
            "X-Client-Secret",
            "X-Password",
            "X-Amz-Credential",
            "Set-Cookie",
            "Proxy-Authorization",
            "authorization",
            "cookie",
            "x-api-key",
            "OpenAI-Api-Key",
            "X_JWT",
            "jwt",
        ] {
            assert!(is_secret_header(secret), "{secret}");
        }
        for plain in [
            "",
            "ke",
            "X-Jw",
            "Content-Type",
            "Keep-Alive",
            "Cache-Control",
            "User-Agent",
            "Accept",
        ] {
            assert!(!is_secret_header(plain), "{plain}");
        }
    }

    /// The names that skip the scan are plain by the scan too: the shortcut changes no
    /// verdict.
    #[test]
    fn the_plain_headers_shortcut_agrees_with_the_scan() {
        assert!(holds_secret_stem(b"x-api-key"));
        for name in PLAIN_HEADERS {
            assert!(
                !holds_secret_stem(name.as_bytes()),
                "{name} holds a secret stem"
            );
            assert_eq!(
                name,
                name.to_ascii_lowercase(),
                "hyper's names are lower case"
            );
        }
    }

    #[test]
    fn url_valued_headers_lose_tokens_and_userinfo() {
        let cases = [
            (
                "Location",
                "https://u:p@chatgpt.com/cb?code=abc&x=1",
                "https://chatgpt.com/cb?code=REDACTED&x=1",
            ),
            (
                "Referer",
                "https://chatgpt.com/?access_token=sk-1",
                "https://chatgpt.com/?access_token=REDACTED",
            ),
            ("Content-Location", "/a?session=s", "/a?session=REDACTED"),
        ];
        for (name, raw, shown) in cases {
            let v = HeaderValue::from_str(raw).unwrap();
            assert_eq!(value(name, &v, false), shown, "{name}");
            assert_eq!(value(name, &v, true), raw, "{name} with --include-secrets");
            let listed = pairs(&[(name.to_string(), raw.to_string())]);
            assert_eq!(listed[0].1, shown);
        }
        assert_eq!(url("http://user:pass@h/x?y=1"), "http://h/x?y=1");
        // Userinfo without a query, a query without userinfo: each alone is still seen.
        assert_eq!(url("http://user:pass@h/x"), "http://h/x");
        assert_eq!(url("http://h/x?token=t"), "http://h/x?token=REDACTED");
    }

    #[test]
    fn json_bodies_lose_credentials_keep_the_diagnosis_and_survive_being_cut() {
        let body = r#"{"error":{"code":"unsupported_country","message":"Not here"},"access_token":"abc\"def","user":{"sessionToken":"s1","name":"Ann"},"list":["eyJhbGciOi.eyJzdWIi.sig"],"auth":"Bearer xyz","n":3}"#;
        let out = json_body(body);
        assert_eq!(
            out,
            r#"{"error":{"code":"unsupported_country","message":"Not here"},"access_token":"REDACTED","user":{"sessionToken":"REDACTED","name":"Ann"},"list":["REDACTED"],"auth":"REDACTED","n":3}"#
        );
        // Cut off inside a secret: the rest of it goes.
        assert_eq!(
            json_body(r#"{"refresh_token":"abcd"#),
            r#"{"refresh_token":"REDACTED"#
        );
        assert_eq!(json_body(r#"{"a":"b\"#), r#"{"a":"b\"#);
        assert_eq!(json_body("not json at all"), "not json at all");
        assert_eq!(json_body(""), "");
    }
}

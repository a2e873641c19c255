//! The request event's line of `events.jsonl`, written field by field instead of through
//! serde's derive. There is one request event per request, and serde_json's generic path
//! was a quarter of an intercepted request's instructions (13,830 of 52,870 in
//! `tests/allocations.rs` under callgrind): a map for the flattened route, every key
//! escaped byte by byte, every string escaped byte by byte through a table. Here the keys
//! are constants, strings are escaped eight bytes at a time, numbers go through
//! serde_json's own formatter, and the rare nested parts (findings, a failure, a kept body,
//! sign-in records, a proxy's chain) through `serde_json::to_writer`.
//!
//! serde stays the definition: the output is byte for byte what `serde_json::to_writer`
//! makes of `Event::Request` (the tests below hold it to that for every field, and for any
//! string), so every reader of the file is unchanged. A field added to [`RequestEvent`]
//! must be added here too; the test with every field set fails until it is.

use std::fmt::Write;

use serde_json::ser::{CompactFormatter, Formatter};

use super::event::{Downstream, HeaderList, Headers, RequestEvent, Timings};
use crate::upstream::route::Taken;

/// `,"name":` as one constant (every key but the first of an object; the names are plain
/// ASCII, so nothing in them is escaped).
macro_rules! key {
    ($name:literal) => {
        concat!(",\"", $name, "\":").as_bytes()
    };
}

/// Appends the request event `r`'s JSON line (without its newline) to `out`, as serde_json
/// writes `Event::Request(r)`.
pub fn write(out: &mut Vec<u8>, r: &RequestEvent) -> serde_json::Result<()> {
    out.extend_from_slice(b"{\"type\":\"request\",\"ts\":");
    string(out, &r.ts);
    out.extend_from_slice(key!("method"));
    string(out, &r.method);
    out.extend_from_slice(key!("url"));
    string(out, &r.url);
    out.extend_from_slice(key!("host"));
    string(out, &r.host);
    out.extend_from_slice(key!("port"));
    number(out, u64::from(r.port));
    out.extend_from_slice(key!("allowlist"));
    optional_string(out, r.allowlist.as_deref());
    out.extend_from_slice(key!("server_ip"));
    optional_string(out, r.server_ip.as_deref());
    route(out, &r.route)?;
    out.extend_from_slice(key!("downstream"));
    downstream(out, &r.downstream);
    out.extend_from_slice(key!("status"));
    match r.status {
        Some(status) => number(out, u64::from(status)),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(key!("content_type"));
    optional_string(out, r.content_type.as_deref());
    out.extend_from_slice(key!("reused"));
    boolean(out, r.reused);
    out.extend_from_slice(key!("timings"));
    timings(out, &r.timings);
    out.extend_from_slice(key!("bytes_up"));
    number(out, r.bytes_up);
    out.extend_from_slice(key!("bytes_down"));
    number(out, r.bytes_down);
    out.extend_from_slice(key!("complete"));
    boolean(out, r.complete);
    out.extend_from_slice(key!("intercepted"));
    boolean(out, r.intercepted);
    answer(out, r)
}

/// The fields after `intercepted`: what was answered and what was made of it.
fn answer(out: &mut Vec<u8>, r: &RequestEvent) -> serde_json::Result<()> {
    if let Some(protocol) = &r.upstream_protocol {
        out.extend_from_slice(key!("upstream_protocol"));
        string(out, protocol);
    }
    if let Some(headers) = &r.headers {
        out.extend_from_slice(key!("headers"));
        header_lists(out, headers);
    }
    out.extend_from_slice(key!("findings"));
    if r.findings.is_empty() {
        out.extend_from_slice(b"[]");
    } else {
        serde_json::to_writer(&mut *out, &r.findings)?;
    }
    out.extend_from_slice(key!("failure"));
    match &r.failure {
        Some(failure) => serde_json::to_writer(&mut *out, failure)?,
        None => out.extend_from_slice(b"null"),
    }
    if let Some(body) = &r.block_page_body {
        out.extend_from_slice(key!("block_page_body"));
        string(out, body);
    }
    if let Some(body) = &r.body {
        out.extend_from_slice(key!("body"));
        serde_json::to_writer(&mut *out, body)?;
    }
    if let Some(unfinished) = &r.unfinished {
        out.extend_from_slice(key!("unfinished"));
        string(out, unfinished);
    }
    out.push(b'}');
    Ok(())
}

/// The flattened [`Taken`]: each field only when it has something, as its serde
/// attributes say.
fn route(out: &mut Vec<u8>, taken: &Taken) -> serde_json::Result<()> {
    if let Some(hop) = &taken.hop {
        out.extend_from_slice(key!("route"));
        out.push(b'"');
        // `Display`, escaped as it is written: serde's `collect_str`.
        let _ = write!(Escaping(out), "{hop}");
        out.push(b'"');
    }
    if let Some(source) = &taken.route_source {
        out.extend_from_slice(key!("route_source"));
        string(out, source);
    }
    if !taken.route_failed.is_empty() {
        out.extend_from_slice(key!("route_failed"));
        serde_json::to_writer(&mut *out, &taken.route_failed)?;
    }
    if let Some(error) = &taken.pac_error {
        out.extend_from_slice(key!("pac_error"));
        string(out, error);
    }
    if let Some(auth) = &taken.proxy_auth {
        out.extend_from_slice(key!("proxy_auth"));
        serde_json::to_writer(&mut *out, auth)?;
    }
    if !taken.proxy_headers.is_empty() {
        out.extend_from_slice(key!("proxy_headers"));
        serde_json::to_writer(&mut *out, &taken.proxy_headers)?;
    }
    if let Some(tls) = &taken.proxy_tls {
        out.extend_from_slice(key!("proxy_tls"));
        serde_json::to_writer(&mut *out, tls)?;
    }
    Ok(())
}

fn downstream(out: &mut Vec<u8>, d: &Downstream) {
    out.extend_from_slice(b"{\"addr\":");
    string(out, &d.addr);
    out.extend_from_slice(key!("user_agent"));
    optional_string(out, d.user_agent.as_deref());
    out.push(b'}');
}

fn timings(out: &mut Vec<u8>, t: &Timings) {
    out.extend_from_slice(b"{\"dns_ms\":");
    float(out, t.dns_ms);
    out.extend_from_slice(key!("connect_ms"));
    float(out, t.connect_ms);
    skippable_float(out, key!("proxy_connect_ms"), t.proxy_connect_ms);
    skippable_float(out, key!("ssl_ms"), t.ssl_ms);
    out.extend_from_slice(key!("wait_ms"));
    float(out, t.wait_ms);
    skippable_float(out, key!("receive_ms"), t.receive_ms);
    skippable_float(out, key!("first_byte_ms"), t.first_byte_ms);
    out.extend_from_slice(key!("total_ms"));
    float(out, Some(t.total_ms));
    out.push(b'}');
}

/// A timing serde leaves out when it is `None` (`skip_serializing_if`): its key and value,
/// or nothing.
fn skippable_float(out: &mut Vec<u8>, key: &[u8], value: Option<f64>) {
    if value.is_some() {
        out.extend_from_slice(key);
        float(out, value);
    }
}

fn header_lists(out: &mut Vec<u8>, h: &Headers) {
    out.extend_from_slice(b"{\"request\":");
    header_list(out, &h.request);
    out.extend_from_slice(key!("response"));
    header_list(out, &h.response);
    out.push(b'}');
}

/// `[["name","value"],…]`; headers still as they came off the wire are redacted here, as
/// [`HeaderList`]'s `Serialize` does.
fn header_list(out: &mut Vec<u8>, list: &HeaderList) {
    out.push(b'[');
    match list {
        HeaderList::Pairs(pairs) => {
            for (i, (name, value)) in pairs.iter().enumerate() {
                pair(out, i, name, value);
            }
        }
        HeaderList::Wire {
            map,
            include_secrets,
        } => {
            for (i, (name, value)) in map.iter().enumerate() {
                let value = super::redact::value(name.as_str(), value, *include_secrets);
                pair(out, i, name.as_str(), &value);
            }
        }
    }
    out.push(b']');
}

/// One `["name","value"]`, after a comma unless it is the first (`i`).
fn pair(out: &mut Vec<u8>, i: usize, name: &str, value: &str) {
    if i > 0 {
        out.push(b',');
    }
    out.push(b'[');
    string(out, name);
    out.push(b',');
    string(out, value);
    out.push(b']');
}

fn boolean(out: &mut Vec<u8>, value: bool) {
    out.extend_from_slice(if value { b"true" } else { b"false" });
}

/// An integer, by serde_json's formatter (writing to a `Vec` cannot fail).
fn number(out: &mut Vec<u8>, value: u64) {
    let _ = CompactFormatter.write_u64(out, value);
}

/// A float as serde_json writes one: `null` for none, NaN or an infinity.
fn float(out: &mut Vec<u8>, value: Option<f64>) {
    match value {
        Some(v) if v.is_finite() => {
            let _ = CompactFormatter.write_f64(out, v);
        }
        _ => out.extend_from_slice(b"null"),
    }
}

fn optional_string(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(s) => string(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// `s` as a JSON string, escaped as serde_json escapes: `"` and `\` with a backslash,
/// backspace, form feed, newline, return and tab by their short escapes, other bytes below
/// 0x20 as `\u00xx`; everything else (DEL and all of UTF-8 above ASCII) as it is.
fn string(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    escaped(out, s);
    out.push(b'"');
}

/// The inside of [`string`]: most strings (names, addresses, most header values) hold
/// nothing to escape and are copied at once.
fn escaped(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    if !any_special(bytes) {
        return out.extend_from_slice(bytes);
    }
    let mut start = 0;
    while start < bytes.len() {
        let at = next_special(bytes, start);
        out.extend_from_slice(&bytes[start..at]);
        let Some(&byte) = bytes.get(at) else { return };
        escape(out, byte);
        start = at + 1;
    }
}

/// Whether `bytes` hold a byte to escape: eight at a time, the last eight overlapping the
/// ones before (a string under eight bytes byte by byte).
fn any_special(bytes: &[u8]) -> bool {
    let Some(last) = bytes.len().checked_sub(8) else {
        return bytes.iter().any(|&b| is_special(b));
    };
    let word = |at: usize| {
        bytes
            .get(at..at + 8)
            .and_then(|w| <[u8; 8]>::try_from(w).ok())
            .is_none_or(|w| has_special(u64::from_le_bytes(w)))
    };
    (0..last).step_by(8).any(word) || word(last)
}

/// The index of the first byte at or after `from` that must be escaped, or `bytes.len()`.
/// Eight bytes are tested at once; the word test is exact, so a word that passes holds no
/// such byte and a word that fails holds one.
fn next_special(bytes: &[u8], from: usize) -> usize {
    let mut at = from;
    for chunk in bytes[from..].chunks_exact(8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        if has_special(u64::from_le_bytes(word)) {
            break;
        }
        at += 8;
    }
    while at < bytes.len() && !is_special(bytes[at]) {
        at += 1;
    }
    at
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Whether any byte of `word` is below 0x20, `"` or `\` (the classic "has a zero byte" and
/// "has a byte less than n" tests, both exact for n ≤ 128; bytes of 0x80 and above never
/// count, so UTF-8 passes through).
fn has_special(word: u64) -> bool {
    let below_space = word.wrapping_sub(ONES * 0x20) & !word;
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    let zero_in = |v: u64| v.wrapping_sub(ONES) & !v;
    (below_space | zero_in(quote) | zero_in(backslash)) & HIGHS != 0
}

fn is_special(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

fn escape(out: &mut Vec<u8>, byte: u8) {
    let short: &[u8] = match byte {
        b'"' => b"\\\"",
        b'\\' => b"\\\\",
        0x08 => b"\\b",
        0x0c => b"\\f",
        b'\n' => b"\\n",
        b'\r' => b"\\r",
        b'\t' => b"\\t",
        _ => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            let code = [
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ];
            return out.extend_from_slice(&code);
        }
    };
    out.extend_from_slice(short);
}

/// Escapes what `Display` writes, as serde's `collect_str` does.
struct Escaping<'a>(&'a mut Vec<u8>);

impl Write for Escaping<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        escaped(self.0, s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::event::{BodyEncoding, Event, KeptBody};

    /// What serde makes of the same event: the definition this writer is held to.
    fn by_serde(event: &RequestEvent) -> String {
        serde_json::to_string(&Event::Request(Box::new(event.clone()))).unwrap()
    }

    fn by_hand(event: &RequestEvent) -> String {
        let mut out = Vec::new();
        write(&mut out, event).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn an_event_with_nothing_optional_is_written_as_serde_writes_it() {
        let event = RequestEvent::get("chatgpt.com", "/");
        assert_eq!(by_hand(&event), by_serde(&event));
    }

    /// Every field set, every optional part present: a field added to [`RequestEvent`]
    /// and not to [`write`] fails here.
    #[test]
    fn an_event_with_every_field_set_is_written_as_serde_writes_it() {
        let event = every_field();
        assert_eq!(by_hand(&event), by_serde(&event));
        // The wire headers are redacted as serde's path redacts them.
        assert!(by_hand(&event).contains(r#"["authorization","REDACTED"]"#));
        assert!(!by_hand(&event).contains("secret-token-value"));
    }

    #[test]
    fn credentials_kept_on_request_are_written_as_serde_writes_them() {
        let mut event = every_field();
        let mut map = hyper::HeaderMap::new();
        map.insert(
            "authorization",
            "Bearer secret-token-value".parse().unwrap(),
        );
        event.headers = Some(Headers {
            request: HeaderList::wire(map, true),
            response: HeaderList::Pairs(Vec::new()),
        });
        assert_eq!(by_hand(&event), by_serde(&event));
        assert!(by_hand(&event).contains("secret-token-value"));
    }

    #[test]
    fn floats_that_json_cannot_hold_are_null_as_serde_writes_them() {
        for v in [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            1e300,
            5e-324,
            0.1,
        ] {
            let mut event = RequestEvent::get("h", "/");
            event.timings.total_ms = v;
            event.timings.wait_ms = Some(v);
            event.timings.receive_ms = Some(v);
            assert_eq!(by_hand(&event), by_serde(&event), "{v}");
        }
    }

    #[test]
    fn every_hop_kind_is_written_as_its_text() {
        for text in [
            "DIRECT",
            "PROXY p:3128",
            "HTTPS p:443",
            "SOCKS5 s:1080",
            "odd \"hop\"",
        ] {
            let mut event = RequestEvent::get("h", "/");
            event.route.hop = Some(text.into());
            assert_eq!(by_hand(&event), by_serde(&event), "{text}");
        }
    }

    #[test]
    fn each_byte_that_needs_escaping_is_escaped_as_serde_escapes_it() {
        for byte in 0u8..=0x7f {
            let s = format!("ab{}cdefghij{}", byte as char, byte as char);
            let mut out = Vec::new();
            string(&mut out, &s);
            assert_eq!(out, serde_json::to_vec(&s).unwrap(), "byte {byte:#x}");
        }
    }

    /// A byte to escape in every place of strings of every length up to three words (the
    /// overlapping last word, strings under one word).
    #[test]
    fn a_byte_to_escape_is_found_wherever_it_is() {
        for len in 1..24 {
            for place in 0..len {
                for special in ['"', '\\', '\n', '\u{1f}'] {
                    let s: String = (0..len)
                        .map(|i| if i == place { special } else { 'x' })
                        .collect();
                    let mut out = Vec::new();
                    string(&mut out, &s);
                    assert_eq!(out, serde_json::to_vec(&s).unwrap(), "{s:?}");
                }
            }
        }
    }

    /// The fast path's test itself: a clean string of any length is seen as clean (it is
    /// copied at once), one with a byte to escape anywhere is not. The output alone cannot
    /// tell, since the slow path writes the same.
    #[test]
    fn a_clean_string_of_any_length_takes_the_fast_path() {
        for len in 0..40 {
            let clean: String = "abcé/ -_:.😀".chars().cycle().take(len).collect();
            assert!(!any_special(clean.as_bytes()), "{clean:?}");
            for place in 0..len {
                let mut marked = clean.clone().into_bytes();
                if marked[place].is_ascii() {
                    marked[place] = b'"';
                    assert!(any_special(&marked), "{len} {place}");
                }
            }
        }
    }

    /// The word test against the byte test, for each byte in each of the eight places.
    #[test]
    fn the_word_test_finds_exactly_the_bytes_the_byte_test_finds() {
        for byte in 0u8..=0xff {
            for place in 0..8 {
                let mut word = [b'a'; 8];
                word[place] = byte;
                assert_eq!(
                    has_special(u64::from_le_bytes(word)),
                    is_special(byte),
                    "byte {byte:#x} at {place}"
                );
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn any_string_is_escaped_as_serde_escapes_it(s in "\\PC*|[\\x00-\\x7f]{0,40}|[\"\\\\\\x00-\\x1f a-z\u{e9}\u{1f600}]{0,40}") {
            let mut out = Vec::new();
            string(&mut out, &s);
            proptest::prop_assert_eq!(out, serde_json::to_vec(&s).unwrap());
        }
    }

    fn every_field() -> RequestEvent {
        use crate::failure::{Failure, FailureKind, Side};
        let nasty = "tab\there \"quoted\" back\\slash ctl\u{1}\u{1f} é 😀 \u{7f}";
        let mut wire = hyper::HeaderMap::new();
        wire.insert(
            "authorization",
            "Bearer secret-token-value".parse().unwrap(),
        );
        wire.append("accept", "*/*".parse().unwrap());
        wire.append("accept", "text/html".parse().unwrap());
        let mut failure = Failure::new(FailureKind::ConnectRefused, Side::UpstreamProxy, nasty);
        failure.proxy_status = Some(403);
        failure.proxy_body = Some(nasty.into());
        RequestEvent {
            ts: "2026-12-07T14:21:55.051Z".into(),
            method: "POST".into(),
            url: format!("https://chatgpt.com:443/backend-api/{nasty}"),
            host: "chatgpt.com".into(),
            port: 443,
            allowlist: Some("*.chatgpt.com".into()),
            server_ip: Some("127.0.0.1".into()),
            route: Taken {
                hop: Some("PROXY proxy.corp:3128".into()),
                route_source: Some(nasty.into()),
                route_failed: vec!["PROXY a:1: refused".into(), nasty.into()],
                pac_error: Some(nasty.into()),
                proxy_auth: Some(crate::upstream::auth::AuthRecord {
                    proxy: "proxy.corp:3128".into(),
                    offered: vec!["Negotiate".into(), nasty.into()],
                    detail: Some(nasty.into()),
                    ..Default::default()
                }),
                proxy_headers: vec![("via".into(), nasty.into())],
                proxy_tls: Some(crate::tls::chain::TlsVerdict {
                    verdict: crate::tls::chain::Verdict::Inspected,
                    reason: Some("UnknownIssuer".into()),
                    issuer: nasty.into(),
                    root: "CN=Corp Root".into(),
                    vendor: Some("Zscaler".into()),
                    chain: Vec::new(),
                    scts: false,
                }),
            },
            downstream: Downstream {
                addr: "127.0.0.1:50000".into(),
                user_agent: Some(nasty.into()),
            },
            status: Some(403),
            content_type: Some("text/html; charset=utf-8".into()),
            reused: true,
            timings: Timings {
                dns_ms: Some(1.5),
                connect_ms: Some(0.25),
                proxy_connect_ms: Some(2.0),
                ssl_ms: Some(3.125),
                wait_ms: Some(0.017),
                receive_ms: Some(0.005),
                first_byte_ms: Some(0.018),
                total_ms: 12345.678,
            },
            bytes_up: u64::MAX,
            bytes_down: 37,
            complete: false,
            intercepted: true,
            upstream_protocol: Some("http/1.1".into()),
            headers: Some(Headers {
                request: HeaderList::wire(wire, false),
                response: HeaderList::Pairs(vec![
                    ("content-type".into(), "text/html".into()),
                    ("x-odd".into(), nasty.into()),
                ]),
            }),
            findings: vec![crate::inspect::Finding::new(
                &crate::profile::Profile::builtin(),
                crate::inspect::FindingKind::TlsInspection,
                "chatgpt.com",
                Some("Zscaler".into()),
                nasty.into(),
                nasty.into(),
            )],
            failure: Some(failure),
            block_page_body: Some(nasty.into()),
            body: Some(KeptBody {
                sha256: "ab".repeat(32),
                size: 5,
                truncated: true,
                encoding: BodyEncoding::Text,
                mime: Some("text/html".into()),
                data: None,
            }),
            unfinished: Some(nasty.into()),
        }
    }
}

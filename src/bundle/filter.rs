//! What a bundle reads out of a session's files, line by line (so a file of any size takes
//! bounded memory): which kept body belongs to which answer, the bodies of 2xx answers taken
//! out of a HAR, and the count of `REDACTED` values. Pure.

use std::borrow::Cow;

use serde_json::Value;

use crate::session::redact::REDACTED;

/// A kept body, as a `request` event names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyOwner {
    pub sha256: String,
    /// The answer's status (`None`: no answer came).
    pub status: Option<u16>,
    pub host: String,
}

impl BodyOwner {
    /// A 2xx answer's body: personal data (a conversation, a file), left out unless asked.
    pub fn is_success(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// The kept body an `events.jsonl` line names, if it names one.
pub fn body_owner(line: &str) -> Option<BodyOwner> {
    // Most lines name no body: skip them without parsing.
    if !line.contains("\"sha256\"") {
        return None;
    }
    let event: Value = serde_json::from_str(line).ok()?;
    if event["type"] != "request" {
        return None;
    }
    let sha256 = event["body"]["sha256"].as_str()?;
    Some(BodyOwner {
        sha256: sha256.to_string(),
        status: event["status"].as_u64().and_then(|s| u16::try_from(s).ok()),
        host: event["host"].as_str().unwrap_or("").to_string(),
    })
}

/// Whether `name` is a kept body's file name (64 lower-case hex digits).
pub fn is_body_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// One line of a HAR as diagproxy writes it (one entry per line): an entry whose answer was
/// 2xx loses its body's text (`_diagproxy_left_out` says why); every other line is unchanged.
/// The second value says whether a body was taken out.
pub fn har_line(line: &str) -> (Cow<'_, str>, bool) {
    if !line.contains("\"text\"") {
        return (Cow::Borrowed(line), false);
    }
    let (body, comma) = match line.strip_suffix(',') {
        Some(body) => (body, ","),
        None => (line, ""),
    };
    let Ok(mut entry) = serde_json::from_str::<Value>(body) else {
        return (Cow::Borrowed(line), false);
    };
    let status = entry["response"]["status"].as_u64().unwrap_or(0);
    let Some(content) = entry
        .get_mut("response")
        .and_then(|r| r.get_mut("content"))
        .and_then(Value::as_object_mut)
    else {
        return (Cow::Borrowed(line), false);
    };
    if !(200..300).contains(&status) || content.remove("text").is_none() {
        return (Cow::Borrowed(line), false);
    }
    content.remove("encoding");
    content.insert(
        "_diagproxy_left_out".into(),
        Value::from(
            "the body of a 2xx answer (diagproxy bundle; --include-sensitive bodies keeps it)",
        ),
    );
    (Cow::Owned(format!("{entry}{comma}")), true)
}

/// Counts `REDACTED` across chunks of a stream: a marker split between two chunks counts once.
#[derive(Debug, Default)]
pub struct RedactionCounter {
    count: u64,
    /// The end of the previous chunk that could start a marker.
    tail: Vec<u8>,
}

impl RedactionCounter {
    pub fn feed(&mut self, chunk: &[u8]) {
        let marker = REDACTED.as_bytes();
        let mut joined = std::mem::take(&mut self.tail);
        joined.extend_from_slice(&chunk[..chunk.len().min(marker.len() - 1)]);
        self.count += count(&joined, marker) as u64;
        self.count += count(chunk, marker) as u64;
        let keep = chunk.len().min(marker.len() - 1);
        self.tail = chunk[chunk.len() - keep..].to_vec();
        if chunk.len() < marker.len() - 1 {
            // A tiny chunk: the tail is the old tail plus it, at most a marker's length less one.
            let mut tail = joined;
            let cut = tail.len().saturating_sub(marker.len() - 1);
            tail.drain(..cut);
            self.tail = tail;
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    memchr::memmem::find_iter(haystack, needle).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_event_names_its_body_and_its_answer() {
        let line = r#"{"type":"request","host":"chatgpt.com","status":403,"body":{"sha256":"ab","size":3}}"#;
        let owner = body_owner(line).unwrap();
        assert_eq!(owner.sha256, "ab");
        assert_eq!(owner.status, Some(403));
        assert!(!owner.is_success());
        let ok = r#"{"type":"request","host":"h","status":204,"body":{"sha256":"cd"}}"#;
        assert!(body_owner(ok).unwrap().is_success());
        assert_eq!(body_owner(r#"{"type":"tunnel","sha256":"x"}"#), None);
        assert_eq!(body_owner(r#"{"type":"request","status":200}"#), None);
        assert_eq!(body_owner("{\"sha256\" not json"), None);
    }

    #[test]
    fn a_har_loses_the_text_of_2xx_answers_only() {
        let ok = r#"{"response":{"status":200,"content":{"size":5,"text":"hello","encoding":"base64"}}},"#;
        let (line, taken) = har_line(ok);
        assert!(taken);
        assert!(
            !line.contains("hello") && !line.contains("base64"),
            "{line}"
        );
        assert!(
            line.contains("_diagproxy_left_out") && line.ends_with("},"),
            "{line}"
        );
        let blocked = r#"{"response":{"status":403,"content":{"text":"Blocked by Zscaler"}}}"#;
        assert_eq!(har_line(blocked), (Cow::Borrowed(blocked), false));
        let header = r#"{"log":{"version":"1.2","entries":["#;
        assert!(!har_line(header).1);
        let no_text = r#"{"response":{"status":200,"content":{"size":5}}}"#;
        assert!(!har_line(no_text).1);
        // A line that only mentions "text" somewhere else is left alone.
        let other = r#"{"response":{"status":200,"content":{}},"comment":"\"text\""}"#;
        assert!(!har_line(other).1);
    }

    #[test]
    fn redactions_are_counted_across_chunk_boundaries() {
        let text = b"a=REDACTED&b=REDACTED REDACTE REDACTEDREDACTED";
        for size in 1..text.len() {
            let mut counter = RedactionCounter::default();
            for chunk in text.chunks(size) {
                counter.feed(chunk);
            }
            assert_eq!(counter.count(), 4, "chunks of {size}");
        }
    }

    #[test]
    fn body_names_are_hashes_only() {
        assert!(is_body_name(&"a".repeat(64)));
        assert!(!is_body_name(&"A".repeat(64)));
        assert!(!is_body_name("../../etc/passwd"));
    }
}

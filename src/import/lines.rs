//! The fast path for the layout Chromium writes: the constants on the first line
//! (`{"constants": {…},`), `"events": [` on the second, then one event per line (`{…},`),
//! the last closing the list (`{…}]` and maybe `,` or `}`), then `polledData`. Each line is
//! parsed from a slice (serde_json reads a slice several times faster than a reader, which
//! it takes a byte at a time); any other layout takes the streaming path in `netlog`.
//! Memory: one line at a time, at most [`MAX_VALUE_BYTES`]; a longer one is skipped.

use serde::Deserialize;

use super::assemble::Assembler;
use super::raw::{Constants, RawEvent};
use super::stream::{Input, Line, MAX_VALUE_BYTES};
use super::Source;

/// How Chromium's first line begins.
const CONSTANTS: &[u8] = b"{\"constants\":";

/// Why reading stopped before the end of the events.
#[derive(Debug)]
pub struct Broke {
    /// The file ended (a browser that crashed mid-capture), as opposed to bytes that are
    /// not JSON.
    pub eof: bool,
    pub reason: String,
}

impl From<std::io::Error> for Broke {
    fn from(e: std::io::Error) -> Broke {
        Broke {
            eof: false,
            reason: e.to_string(),
        }
    }
}

impl From<&serde_json::Error> for Broke {
    fn from(e: &serde_json::Error) -> Broke {
        Broke {
            eof: e.is_eof(),
            reason: without_position(e),
        }
    }
}

/// serde_json's message without its line and column (the caller gives the byte offset).
pub fn without_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let text = match text.rfind(" at line ") {
        Some(at) => text[..at].to_string(),
        None => text,
    };
    crate::text::terminal(&text, false).into_owned()
}

/// Whether `head` (the file's first bytes) is laid out as Chromium writes a NetLog.
pub fn applies(head: &[u8]) -> bool {
    let head = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
    let mut lines = head.split(|b| *b == b'\n');
    let (Some(first), Some(second)) = (lines.next(), lines.next()) else {
        return false;
    };
    // The second line must be whole in `head` too: something follows it.
    let first = first.trim_ascii();
    let second = second.trim_ascii();
    lines.next().is_some()
        && first.starts_with(CONSTANTS)
        && first.ends_with(b",")
        && second.starts_with(b"\"events\"")
        && second.ends_with(b"[")
}

/// Reads a file [`applies`] said yes to: constants, then each event into `assembler`.
pub fn read(
    input: &mut Input,
    assembler: &mut Assembler,
    source: &mut Source,
) -> Result<(), Broke> {
    let mut buf = Vec::new();
    input.line(&mut buf)?;
    assembler.constants(constants(&buf)?);
    input.line(&mut buf)?;
    let mut skipped = 0u64;
    let result = loop {
        let line = input.line(&mut buf)?;
        if line == Line::TooLong {
            skipped += 1;
            continue;
        }
        match event(buf.trim_ascii(), line == Line::End) {
            Next::Event(e, last) => {
                assembler.event(*e);
                if last {
                    break rest(input, &mut buf);
                }
            }
            Next::Blank => {}
            Next::Done => break rest(input, &mut buf),
            Next::Stop(broke) => break Err(broke),
        }
        if line == Line::End {
            break Err(ended());
        }
    };
    if skipped > 0 {
        source.cannot_tell.push(format!(
            "{skipped} events longer than {} MiB were skipped",
            MAX_VALUE_BYTES >> 20
        ));
    }
    result
}

/// After the events: the rest (`polledData`, the closing brace) is skipped line by line, but
/// a file cut in it is still said to be cut (every event was read by then).
fn rest(input: &mut Input, buf: &mut Vec<u8>) -> Result<(), Broke> {
    let mut closed = matches!(buf.trim_ascii().last(), Some(b'}'));
    loop {
        let line = input.line(buf)?;
        let text = buf.trim_ascii();
        if !text.is_empty() || line == Line::TooLong {
            closed = text.last() == Some(&b'}');
        }
        if line == Line::End {
            return if closed { Ok(()) } else { Err(ended()) };
        }
    }
}

/// `{"constants": {…},` → the constants.
fn constants(line: &[u8]) -> Result<Constants, Broke> {
    let line = line
        .strip_prefix(b"\xef\xbb\xbf")
        .unwrap_or(line)
        .trim_ascii();
    let value = line
        .strip_prefix(CONSTANTS)
        .and_then(|v| v.strip_suffix(b","))
        .unwrap_or_default();
    let mut de = serde_json::Deserializer::from_slice(value);
    Constants::deserialize(&mut de).map_err(|e| Broke::from(&e))
}

/// What one line holds.
enum Next {
    /// An event, and whether it closes the list.
    Event(Box<RawEvent>, bool),
    /// An empty line.
    Blank,
    /// The list ended before this line (`polledData`, the closing brace).
    Done,
    Stop(Broke),
}

fn event(line: &[u8], at_end: bool) -> Next {
    if line.is_empty() {
        return Next::Blank;
    }
    if matches!(line.first(), Some(b'"' | b']' | b'}')) {
        return Next::Done;
    }
    let (body, last) = if let Some(body) = line.strip_suffix(b",") {
        match body.strip_suffix(b"]") {
            Some(body) => (body, true),
            None => (body, false),
        }
    } else if let Some(body) = line.strip_suffix(b"]}").or(line.strip_suffix(b"]")) {
        (body, true)
    } else {
        (line, false)
    };
    match serde_json::from_slice::<RawEvent>(body) {
        Ok(e) => Next::Event(Box::new(e), last),
        // A last line cut mid-event: the file ended.
        Err(_) if at_end => Next::Stop(ended()),
        Err(e) => Next::Stop(Broke::from(&e)),
    }
}

fn ended() -> Broke {
    Broke {
        eof: true,
        reason: "the file ends before its closing ]}".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chromiums_layout_is_recognised_and_others_are_not() {
        let chromium = b"{\"constants\":{\"logEventTypes\":{}},\n\"events\": [\n{\"phase\":0},\n";
        assert!(applies(chromium));
        assert!(applies(
            b"\xef\xbb\xbf{\"constants\": {},\r\n\"events\": [\r\n{}"
        ));
        // One line, pretty-printed, events first, or a second line not yet whole: streamed.
        assert!(!applies(b"{\"constants\":{},\"events\":[{}]}"));
        assert!(!applies(b"{\n  \"constants\": {\n"));
        assert!(!applies(b"{\"events\":[\n{},\n"));
        assert!(!applies(b"{\"constants\":{},\n\"events\": ["));
    }

    #[test]
    fn each_line_is_an_event_until_the_list_closes() {
        let event = |line: &str, end| event(line.as_bytes(), end);
        let ev = r#"{"phase":1,"source":{"id":3},"time":"5","type":2}"#;
        assert!(matches!(
            event(&format!("{ev},"), false),
            Next::Event(_, false)
        ));
        assert!(matches!(
            event(&format!("{ev}],"), false),
            Next::Event(_, true)
        ));
        assert!(matches!(
            event(&format!("{ev}]}}"), false),
            Next::Event(_, true)
        ));
        assert!(matches!(
            event(&format!("{ev}]"), true),
            Next::Event(_, true)
        ));
        assert!(matches!(event("\"polledData\": {},", false), Next::Done));
        assert!(matches!(event("", false), Next::Blank));
        // Cut mid-event at the end of the file; broken bytes in the middle.
        match event(&ev[..20], true) {
            Next::Stop(b) => assert!(b.eof),
            _ => panic!("a cut event"),
        }
        match event("{\"phase\":\u{1}x},", false) {
            Next::Stop(b) => assert!(!b.eof && !b.reason.is_empty()),
            _ => panic!("broken bytes"),
        }
    }
}

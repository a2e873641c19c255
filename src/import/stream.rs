//! The imported file as a byte stream: gzip undone when it starts with gzip's magic, bytes
//! counted (so an error says where), and one record (a NetLog event, a HAR entry) bounded:
//! past [`MAX_VALUE_BYTES`] the read fails instead of growing a buffer.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::rc::Rc;

use super::Format;

/// The most bytes one record may take (a NetLog event with a certificate chain or a socket
/// read is a few KiB; a HAR entry with a page's body a few MiB).
pub const MAX_VALUE_BYTES: u64 = 16 << 20;

/// The read buffer (also what the format is recognised from).
const BUFFER: usize = 256 * 1024;

/// Where reading is: bytes read so far and where the current record began. Shared with the
/// readers' serde visitors, which mark each record's start.
#[derive(Debug, Default)]
pub struct Meter {
    pos: Cell<u64>,
    start: Cell<u64>,
}

impl Meter {
    /// A record begins here.
    pub fn mark(&self) {
        self.start.set(self.pos.get());
    }
}

pub struct Input {
    inner: BufReader<Box<dyn Read>>,
    pub gzip: bool,
    pub meter: Rc<Meter>,
}

impl Input {
    /// Opens `file`, undoing gzip when it begins with its magic bytes.
    pub fn open(file: File) -> io::Result<Input> {
        let mut raw = BufReader::with_capacity(BUFFER, file);
        let gzip = raw.fill_buf()?.starts_with(&[0x1f, 0x8b]);
        let inner: Box<dyn Read> = if gzip {
            Box::new(flate2::read::MultiGzDecoder::new(raw))
        } else {
            Box::new(raw)
        };
        Ok(Input {
            inner: BufReader::with_capacity(BUFFER, inner),
            gzip,
            meter: Rc::new(Meter::default()),
        })
    }

    /// Bytes read so far (of the uncompressed content).
    pub fn offset(&self) -> u64 {
        self.meter.pos.get()
    }

    /// The format, from the first key of the top-level object (`log` for a HAR, `constants`
    /// or `events` for a NetLog), read without consuming anything.
    pub fn format(&mut self) -> Result<Format, String> {
        let head = self.inner.fill_buf().map_err(|e| e.to_string())?;
        format_of(head)
    }
}

/// How a JSON object begins.
const OPEN_OBJECT: char = '{';

fn format_of(head: &[u8]) -> Result<Format, String> {
    let head = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
    let text = match std::str::from_utf8(head) {
        Ok(text) => text,
        Err(e) => std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or(""),
    };
    let rest = text.trim_start();
    if rest.is_empty() {
        return Err("the file is empty".into());
    }
    let Some(rest) = rest.strip_prefix(OPEN_OBJECT) else {
        return Err("not JSON: neither a HAR nor a NetLog (expected a JSON object)".into());
    };
    let key = rest
        .trim_start()
        .strip_prefix('"')
        .and_then(|r| r.split_once('"'))
        .map(|(key, _)| key);
    match key {
        Some("log") => Ok(Format::Har),
        Some("constants" | "events") => Ok(Format::Netlog),
        Some(other) => Err(format!(
            "neither a HAR (first key \"log\") nor a NetLog (first key \"constants\"): the first key is {:?}",
            crate::text::terminal(other, false)
        )),
        None => Err("neither a HAR nor a NetLog: no key at the start of the object".into()),
    }
}

/// One line as [`Input::line`] read it.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A whole line (its newline removed) is in the buffer.
    Whole,
    /// The file ended before a newline: what there was is in the buffer (maybe nothing).
    End,
    /// The line was longer than [`MAX_VALUE_BYTES`]: skipped to its end, the buffer empty.
    TooLong,
}

impl Input {
    /// The first bytes of the content, read without consuming them (at most the buffer).
    pub fn peek(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    /// Reads one line into `buf` (cleared first), keeping at most [`MAX_VALUE_BYTES`]; the
    /// record's start is marked at its first byte.
    pub fn line(&mut self, buf: &mut Vec<u8>) -> io::Result<Line> {
        buf.clear();
        self.meter.mark();
        let mut too_long = false;
        loop {
            let chunk = self.inner.fill_buf()?;
            if chunk.is_empty() {
                return Ok(if too_long { Line::TooLong } else { Line::End });
            }
            let (take, done) = match memchr::memchr(b'\n', chunk) {
                Some(at) => (at + 1, true),
                None => (chunk.len(), false),
            };
            too_long |= buf.len() + take > MAX_VALUE_BYTES as usize;
            if !too_long {
                buf.extend_from_slice(&chunk[..take]);
            }
            self.inner.consume(take);
            self.meter.pos.set(self.meter.pos.get() + take as u64);
            if done {
                if too_long {
                    buf.clear();
                    return Ok(Line::TooLong);
                }
                buf.pop();
                return Ok(Line::Whole);
            }
        }
    }
}

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let meter = &self.meter;
        if meter.pos.get() - meter.start.get() > MAX_VALUE_BYTES {
            return Err(io::Error::other(format!(
                "one record is larger than {} MiB",
                MAX_VALUE_BYTES >> 20
            )));
        }
        let n = self.inner.read(buf)?;
        meter.pos.set(meter.pos.get() + n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_is_told_by_the_first_key() {
        assert_eq!(format_of(br#"{"log": {"version":"1.2"}}"#), Ok(Format::Har));
        assert_eq!(
            format_of(b"\xef\xbb\xbf \n{\n  \"log\": {"),
            Ok(Format::Har)
        );
        assert_eq!(format_of(br#"{"constants":{}"#), Ok(Format::Netlog));
        assert_eq!(format_of(br#"{"events":[]}"#), Ok(Format::Netlog));
        assert!(format_of(b"").unwrap_err().contains("empty"));
        assert!(format_of(b"[1,2]").unwrap_err().contains("not JSON"));
        assert!(format_of(br#"{"foo":1}"#).unwrap_err().contains("\"foo\""));
        // Invalid UTF-8 after the key does not hide it.
        assert_eq!(format_of(b"{\"log\":\xff\xfe"), Ok(Format::Har));
    }

    #[test]
    fn gzip_is_undone_and_bytes_are_counted() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json.gz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(br#"{"log":{"entries":[]}}"#).unwrap();
        std::fs::write(&path, gz.finish().unwrap()).unwrap();
        let mut input = Input::open(File::open(&path).unwrap()).unwrap();
        assert!(input.gzip);
        assert_eq!(input.format(), Ok(Format::Har));
        let mut all = String::new();
        input.read_to_string(&mut all).unwrap();
        assert_eq!(all, r#"{"log":{"entries":[]}}"#);
        assert_eq!(input.offset(), all.len() as u64);
    }

    #[test]
    fn one_record_past_the_bound_fails_the_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        std::fs::write(
            &path,
            vec![b' '; (MAX_VALUE_BYTES + BUFFER as u64 * 2) as usize],
        )
        .unwrap();
        let mut input = Input::open(File::open(&path).unwrap()).unwrap();
        let err = io::copy(&mut input, &mut io::sink()).unwrap_err();
        assert!(err.to_string().contains("larger than 16 MiB"), "{err}");
        // A record that begins later gets its own allowance.
        input.meter.mark();
        assert!(input.read(&mut [0u8; 16]).unwrap() > 0);
    }
}

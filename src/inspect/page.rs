//! A kept answer body as a person would read it: decoded from its `Content-Encoding`
//! (gzip, deflate, br), read in its charset (UTF-8, else Latin-1), with its title, and its
//! visible text with tags dropped, entities decoded and whitespace collapsed. The detectors
//! match block-page markers against this, so a marker survives compression, `&nbsp;`, line
//! breaks and `<b>` inside a phrase. Pure: no I/O.

use std::io::Read;

use hyper::header::{HeaderMap, CONTENT_ENCODING, CONTENT_TYPE};

use crate::profile::Marker;
use crate::text::collapse_whitespace as collapse;

/// The most decoded bytes read from a kept body: a compressed body never grows past this
/// (no decompression bomb), and the body itself is at most 64 KiB before decoding.
pub const MAX_DECODED: usize = 64 * 1024;

/// How many characters of visible text an excerpt carries after the title.
pub const EXCERPT_CHARS: usize = 300;

/// How many characters of text count as the page's "first text" for the generic rule.
const FIRST_TEXT_CHARS: usize = 600;

/// A body read for the detectors.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// The decoded body as text (for the HAR's `content.text` of a block page).
    pub source: String,
    /// The decoded body in ASCII lower case (same byte offsets as the source), markup included: for markers that live in markup
    /// (asset paths, vendor hosts, HTML comments).
    pub markup: String,
    /// The visible text, whitespace collapsed, in its own case: for excerpts.
    pub text: String,
    /// `text` in lower case, for phrase markers.
    pub text_lower: String,
    /// The `<title>`, entities decoded and whitespace collapsed.
    pub title: Option<String>,
    /// The body looks like HTML (by its type or its first tag).
    pub is_html: bool,
}

impl Page {
    /// Reads `body` (the first bytes of an answer) as its headers describe it.
    pub fn read(body: &[u8], headers: &HeaderMap) -> Page {
        if body.is_empty() {
            return Page::default();
        }
        let content_type = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let source = Page::source_of(body, headers);
        let markup = source.to_ascii_lowercase();
        let is_html = content_type.contains("html")
            || ["<!doctype html", "<html", "<head", "<title", "<body"]
                .iter()
                .any(|tag| markup.contains(tag));
        let text = if is_html {
            visible_text(&source)
        } else {
            collapse(&source)
        };
        let title = is_html.then(|| title(&source, &markup)).flatten();
        Page {
            text_lower: text.to_lowercase(),
            source,
            markup,
            text,
            title,
            is_html,
        }
    }

    /// The body as text only (content coding undone, charset applied), without the rest of
    /// a page's reading: what the session folder keeps of a text body.
    pub fn source_of(body: &[u8], headers: &HeaderMap) -> String {
        let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
        let decoded = decode(body, header(CONTENT_ENCODING).unwrap_or(""));
        to_text(
            &decoded,
            &header(CONTENT_TYPE).unwrap_or("").to_ascii_lowercase(),
        )
    }

    /// Whether a marker (any case) appears in the markup or, whitespace collapsed, in the text.
    pub fn contains(&self, marker: &Marker) -> bool {
        !marker.ascii_lower.is_empty()
            && (self.markup.contains(marker.ascii_lower.as_str())
                || self.text_lower.contains(marker.lower.as_str()))
    }

    /// Whether the title equals `title` (any case, whitespace collapsed).
    pub fn has_title(&self, title: &Marker) -> bool {
        self.title
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case(&title.ascii_lower))
    }

    /// The title and the first text together, lower case: where the generic rule looks for
    /// words such as "blocked" or "policy".
    pub fn heading_lower(&self) -> String {
        let first: String = self.text_lower.chars().take(FIRST_TEXT_CHARS).collect();
        match &self.title {
            Some(t) => format!("{} {first}", t.to_lowercase()),
            None => first,
        }
    }

    /// What the user saw: the title, then the first [`EXCERPT_CHARS`] characters of text.
    /// Not yet sanitised for a terminal or redacted: the caller does that.
    pub fn excerpt(&self) -> Option<String> {
        let mut text: String = self.text.chars().take(EXCERPT_CHARS).collect();
        if self.text.chars().count() > EXCERPT_CHARS {
            text.push('…');
        }
        match (&self.title, text.is_empty()) {
            (Some(t), true) => Some(t.clone()),
            (Some(t), false) => Some(format!("{t} — {text}")),
            (None, false) => Some(text),
            (None, true) => None,
        }
    }
}

/// The body with its content codings undone, last applied first; on a coding diagproxy does
/// not know, or bytes that do not decode, what decoded so far (or the bytes as they came).
fn decode(body: &[u8], encoding: &str) -> Vec<u8> {
    let mut bytes = body.to_vec();
    for coding in encoding.rsplit(',').map(|c| c.trim().to_ascii_lowercase()) {
        let decoded = match coding.as_str() {
            "gzip" | "x-gzip" => read_bounded(flate2::read::MultiGzDecoder::new(&bytes[..])),
            "deflate" => read_bounded(flate2::read::ZlibDecoder::new(&bytes[..]))
                .or_else(|| read_bounded(flate2::read::DeflateDecoder::new(&bytes[..]))),
            "br" => read_bounded(brotli_decompressor::Decompressor::new(&bytes[..], 4096)),
            _ => None,
        };
        match decoded {
            Some(d) => bytes = d,
            None => break,
        }
    }
    bytes
}

/// Up to [`MAX_DECODED`] bytes from a decoder; a stream cut short (the body was only kept in
/// part) keeps what decoded before the cut. `None` when nothing decoded at all.
fn read_bounded(reader: impl Read) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut limited = reader.take(MAX_DECODED as u64);
    let mut chunk = [0u8; 8192];
    loop {
        match limited.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(_) => break,
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Bytes as text: UTF-8 unless the type names a single-byte charset or the bytes are not
/// UTF-8 (then Latin-1, where every byte is a character).
fn to_text(bytes: &[u8], content_type: &str) -> String {
    let single_byte = [
        "iso-8859-1",
        "latin1",
        "latin-1",
        "windows-1252",
        "us-ascii",
    ]
    .iter()
    .any(|c| content_type.contains(c));
    match std::str::from_utf8(bytes) {
        Ok(text) if !single_byte => text.to_string(),
        _ => bytes.iter().map(|&b| char::from(b)).collect(),
    }
}

/// The text a browser would show: tags, comments, scripts and styles dropped (each tag
/// counts as a space), entities decoded, whitespace collapsed.
fn visible_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let lower = html.to_ascii_lowercase();
    let mut i = 0;
    while let Some(rel) = html[i..].find('<') {
        out.push_str(&html[i..i + rel]);
        out.push(' ');
        let start = i + rel;
        i = skip_tag(&lower, start);
    }
    out.push_str(&html[i..]);
    collapse(&html_escape::decode_html_entities(&out))
}

/// Where the text resumes after the tag at `start`: past a comment, past the whole element
/// for `<script>`, `<style>` and `<title>` (not text a page shows in its body), else past the
/// tag's `>`; the end of the input when the closing part is missing.
fn skip_tag(lower: &str, start: usize) -> usize {
    let past = |needle: &str, from: usize| {
        lower[from..]
            .find(needle)
            .map_or(lower.len(), |p| from + p + needle.len())
    };
    let rest = &lower[start..];
    if rest.starts_with("<!--") {
        return past("-->", start + 4);
    }
    for element in ["script", "style", "title"] {
        let open = format!("<{element}");
        let boundary = rest
            .as_bytes()
            .get(open.len())
            .is_some_and(|b| b.is_ascii_whitespace() || *b == b'>');
        if rest.starts_with(&open) && boundary {
            let close = past(&format!("</{element}"), start + open.len());
            return past(">", close.min(lower.len()));
        }
    }
    past(">", start)
}

/// The `<title>`'s text, when there is one.
fn title(source: &str, markup: &str) -> Option<String> {
    let open = markup.find("<title")?;
    let content = open + markup[open..].find('>')? + 1;
    let end = content + markup[content..].find("</title")?;
    let raw = &source[content..end];
    let text = collapse(&html_escape::decode_html_entities(raw));
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;
    use std::io::Write;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(n, v)| {
                (
                    hyper::header::HeaderName::from_static(n),
                    HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    const PAGE: &str = "<!DOCTYPE html><html><head><title>\n  Access&nbsp;Denied </title>\
        <style>p { content: 'blocked by style' }</style><script>var x = '<b>';</script></head>\
        <body><!-- Message.TemplateName: block --><h1>Site   <b>blocked</b></h1>\
        <p>by your organization&#39;s security&#x20;policy &amp; rules.</p></body></html>";

    #[test]
    fn text_drops_markup_scripts_styles_and_comments_and_decodes_entities() {
        let page = Page::read(PAGE.as_bytes(), &headers(&[("content-type", "text/html")]));
        assert_eq!(page.title.as_deref(), Some("Access Denied"));
        assert_eq!(
            page.text,
            "Site blocked by your organization's security policy & rules."
        );
        assert!(page.contains(&"site blocked by your organization's".into()));
        assert!(
            page.contains(&"message.templatename:".into()),
            "comments stay in markup"
        );
        assert!(!page.text_lower.contains("blocked by style"));
        assert!(page.has_title(&"access   denied".into()));
        assert!(page.is_html);
    }

    #[test]
    fn compressed_bodies_are_read_in_every_coding() {
        let gz = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(PAGE.as_bytes()).unwrap();
            e.finish().unwrap()
        };
        let zlib = {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(PAGE.as_bytes()).unwrap();
            e.finish().unwrap()
        };
        let raw_deflate = {
            let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
            e.write_all(PAGE.as_bytes()).unwrap();
            e.finish().unwrap()
        };
        for (coding, body) in [("gzip", gz), ("deflate", zlib), ("deflate", raw_deflate)] {
            let h: HeaderMap = [
                (CONTENT_ENCODING, HeaderValue::from_str(coding).unwrap()),
                (CONTENT_TYPE, HeaderValue::from_static("text/html")),
            ]
            .into_iter()
            .collect();
            let page = Page::read(&body, &h);
            assert_eq!(page.title.as_deref(), Some("Access Denied"), "{coding}");
        }
    }

    #[test]
    fn a_bomb_decodes_to_the_bound_only_and_a_cut_stream_keeps_its_start() {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(b"<title>Big</title>").unwrap();
        e.write_all(&vec![b'a'; 50 * 1024 * 1024]).unwrap();
        let bomb = e.finish().unwrap();
        assert!(bomb.len() < 64 * 1024);
        assert_eq!(
            decode(&bomb, "gzip").len(),
            65_536,
            "64 KiB, not a byte more"
        );
        let cut = &bomb[..bomb.len() / 2];
        assert!(decode(cut, "gzip").starts_with(b"<title>Big</title>"));
        assert_eq!(decode(b"not gzip", "gzip"), b"not gzip");
        assert_eq!(decode(b"as is", "identity"), b"as is");
    }

    #[test]
    fn latin1_and_invalid_utf8_read_as_latin1() {
        let body = b"<title>Acc\xe8s refus\xe9</title>";
        let declared = Page::read(
            body,
            &headers(&[("content-type", "text/html; charset=ISO-8859-1")]),
        );
        assert_eq!(declared.title.as_deref(), Some("Accès refusé"));
        let undeclared = Page::read(body, &headers(&[("content-type", "text/html")]));
        assert_eq!(undeclared.title.as_deref(), Some("Accès refusé"));
        let utf8 = Page::read("<title>Accès refusé</title>".as_bytes(), &HeaderMap::new());
        assert_eq!(utf8.title.as_deref(), Some("Accès refusé"));
    }

    #[test]
    fn br_bodies_are_decoded() {
        let mut out = Vec::new();
        {
            let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
            w.write_all(b"<title>Blocked</title><p>by policy</p>")
                .unwrap();
        }
        assert_eq!(
            decode(&out, "br"),
            b"<title>Blocked</title><p>by policy</p>"
        );
        let page = Page::read(&out, &headers(&[("content-encoding", "br")]));
        assert_eq!(page.title.as_deref(), Some("Blocked"));
    }

    #[test]
    fn a_declared_single_byte_charset_wins_over_valid_utf8() {
        // "Ã©" in UTF-8 is the two bytes C3 A9; read as Latin-1 they are two characters.
        let body = "<title>caf\u{e9}</title>".as_bytes();
        let latin1 = Page::read(
            body,
            &headers(&[("content-type", "text/html; charset=iso-8859-1")]),
        );
        assert_eq!(latin1.title.as_deref(), Some("caf\u{c3}\u{a9}"));
        let utf8 = Page::read(
            body,
            &headers(&[("content-type", "text/html; charset=utf-8")]),
        );
        assert_eq!(utf8.title.as_deref(), Some("caf\u{e9}"));
    }

    #[test]
    fn an_excerpt_of_exactly_the_limit_is_not_cut() {
        let exact = format!("<p>{}</p>", "x".repeat(EXCERPT_CHARS));
        let page = Page::read(exact.as_bytes(), &headers(&[("content-type", "text/html")]));
        assert_eq!(page.excerpt().unwrap(), "x".repeat(EXCERPT_CHARS));
        let over = format!("<p>{}</p>", "x".repeat(EXCERPT_CHARS + 1));
        let page = Page::read(over.as_bytes(), &headers(&[("content-type", "text/html")]));
        assert_eq!(
            page.excerpt().unwrap(),
            format!("{}…", "x".repeat(EXCERPT_CHARS))
        );
    }

    #[test]
    fn excerpt_is_title_and_bounded_text() {
        let long = format!("<title>T</title><p>{}</p>", "word ".repeat(200));
        let page = Page::read(long.as_bytes(), &headers(&[("content-type", "text/html")]));
        let excerpt = page.excerpt().unwrap();
        assert!(excerpt.starts_with("T — word word"), "{excerpt}");
        assert!(excerpt.ends_with('…'));
        assert!(excerpt.chars().count() <= EXCERPT_CHARS + 5);
        assert_eq!(Page::read(b"", &HeaderMap::new()).excerpt(), None);
    }

    #[test]
    fn unterminated_markup_does_not_panic() {
        for body in [
            "<", "<script", "<script>", "<!--", "<title>x", "<style a", "a<b",
        ] {
            let page = Page::read(body.as_bytes(), &headers(&[("content-type", "text/html")]));
            assert!(page.text.len() <= body.len());
        }
    }
}

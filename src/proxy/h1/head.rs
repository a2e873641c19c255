//! Request and answer heads on the lean path, parsed once with httparse and rewritten for
//! the other side (origin-form, hop-by-hop headers gone, every other header as sent, in its
//! case and order). Pure: no I/O.

use std::ops::Range;

use bytes::Bytes;
use hyper::header::{
    HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH, EXPECT, HOST, TRANSFER_ENCODING, UPGRADE,
};
use hyper::{Method, Uri};

use super::framing::{Chunks, Framing};
use crate::proxy::connect::origin::Origin;
use crate::proxy::hop::{named_in_connection, HOP_BY_HOP};

/// A head longer than this goes to hyper, which answers 431.
const MAX_HEAD: usize = 64 * 1024;
/// More header fields than this go to hyper too.
const MAX_HEADERS: usize = 100;
/// The Connection token that asks to close after this message.
const CLOSE: HeaderName = HeaderName::from_static("close");

/// What a buffer holds.
#[derive(Debug)]
pub(super) enum Parse<T> {
    Done(T),
    Partial,
    /// Not for this path.
    Other,
}

/// A request head this path forwards itself.
#[derive(Debug)]
pub(super) struct RequestHead {
    /// The head as received (its length is how much of the buffer it took).
    pub(super) raw: Bytes,
    pub(super) method: Method,
    /// The absolute-form target, as sent.
    pub(super) url: String,
    pub(super) host: String,
    pub(super) port: u16,
    /// `host[:port]` from the URL, for a Host header when the request has none.
    pub(super) authority: String,
    /// Path and query, the origin-form target.
    pub(super) origin_form: String,
    pub(super) headers: HeaderMap,
    /// The header lines to forward (name and value ranges in `raw`), as sent.
    pub(super) lines: Vec<(Range<usize>, Range<usize>)>,
    /// The body's length (Content-Length; 0 without).
    pub(super) body_len: u64,
    /// The downstream asked to close after this request.
    pub(super) close: bool,
}

impl RequestHead {
    pub(super) fn path(&self) -> &str {
        self.origin_form
            .split_once('?')
            .map_or(self.origin_form.as_str(), |(path, _)| path)
    }

    /// The head as the origin gets it.
    pub(super) fn upstream_head(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.raw.len() + 32);
        out.extend_from_slice(self.method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.origin_form.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        // RFC 9112 §3.2.2: the Host is the target's authority, whatever the client wrote.
        push_line(&mut out, b"Host", self.authority.as_bytes());
        if self.url.starts_with("http://") {
            // Plain HTTP only: an intercepted request reaches its origin as the client sent it.
            push_line(&mut out, b"Via", crate::upstream::route::via().as_bytes());
        }
        for (name, value) in &self.lines {
            push_line(&mut out, &self.raw[name.clone()], &self.raw[value.clone()]);
        }
        out.extend_from_slice(b"\r\n");
        out
    }
}

/// How far a growing buffer has been searched for the blank line that ends a head, so each
/// byte is looked at once however the head arrives (63 KB in 4-byte writes is not parsed
/// 16,000 times).
#[derive(Debug, Default)]
pub(super) struct HeadEnd {
    scanned: usize,
}

impl HeadEnd {
    /// Whether `buf`, grown since the last call, is worth parsing now: it holds a blank
    /// line, or these are its first bytes (garbage fails fast), or it reached the limit.
    pub(super) fn worth_parsing(&mut self, buf: &[u8]) -> bool {
        let first = self.scanned == 0;
        let from = self.scanned.saturating_sub(2).min(buf.len());
        self.scanned = buf.len();
        first || buf.len() >= MAX_HEAD || has_blank_line(&buf[from..])
    }
}

/// `\n\n` or `\n\r\n`: where a head ends.
fn has_blank_line(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'\n')
        .any(|(i, _)| matches!(&bytes[i + 1..], [b'\n', ..] | [b'\r', b'\n', ..]))
}

/// `origin`: the intercepted tunnel's origin (origin-form targets), or `None` for plain
/// HTTP (absolute-form `http://` targets).
pub(super) fn parse_request(buf: &[u8], origin: Option<&Origin>) -> Parse<RequestHead> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Parse::Partial,
        _ => return Parse::Other,
    };
    let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
        return Parse::Other;
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Parse::Other;
    };
    let Some(target) = Target::of(target, origin) else {
        return Parse::Other;
    };
    if method == Method::CONNECT {
        return Parse::Other;
    }
    let raw = Bytes::copy_from_slice(&buf[..len]);
    let Some(fields) = Fields::read(req.headers, buf, &raw) else {
        return Parse::Other;
    };
    if crate::upstream::route::came_through_us(&fields.headers) {
        return Parse::Other; // a loop: the hyper path refuses it with a 508
    }
    let forbidden = [&UPGRADE, &EXPECT, &TRANSFER_ENCODING];
    if forbidden
        .iter()
        .any(|name| fields.headers.contains_key(*name))
    {
        return Parse::Other;
    }
    let Ok(body_len) = content_length(&fields.headers) else {
        return Parse::Other;
    };
    // The Host sent is the target's authority (the tunnel's origin inside a tunnel),
    // whatever the client wrote.
    let drop: &[&HeaderName] = &[&HOST];
    Parse::Done(RequestHead {
        method,
        body_len: body_len.unwrap_or(0),
        close: fields.close,
        lines: fields.forwarded(&[], drop),
        headers: fields.headers,
        raw,
        url: target.url,
        host: target.host,
        port: target.port,
        authority: target.authority,
        origin_form: target.origin_form,
    })
}

/// Where a request goes, from its target.
pub(super) struct Target {
    pub(super) url: String,
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) authority: String,
    pub(super) origin_form: String,
}

impl Target {
    /// An absolute `http://` URL for plain HTTP; an origin-form path inside a tunnel.
    pub(super) fn of(target: &str, origin: Option<&Origin>) -> Option<Target> {
        if let Some(origin) = origin {
            if !target.starts_with('/') {
                return None;
            }
            return Some(Target {
                url: format!("https://{}{target}", origin.authority()),
                host: origin.host.clone(),
                port: origin.port,
                authority: origin.authority().to_string(),
                origin_form: target.to_string(),
            });
        }
        if !target.starts_with("http://") {
            return None;
        }
        let uri = target.parse::<Uri>().ok()?;
        let authority = uri.authority()?;
        let host = crate::upstream::addr::unbracket(authority.host());
        if !crate::text::is_host(host) {
            return None; // hyper's path refuses it with a 400 that says why
        }
        Some(Target {
            url: crate::session::redact::strip_userinfo(target).into_owned(),
            host: host.to_string(),
            port: authority.port_u16().unwrap_or(80),
            // Without any userinfo (`user:pass@`): that is never forwarded.
            authority: crate::upstream::addr::without_userinfo(authority.as_str()).to_string(),
            origin_form: uri
                .path_and_query()
                .map_or("/", |pq| pq.as_str())
                .to_string(),
        })
    }
}

/// An answer head, as read from the origin.
#[derive(Debug)]
pub(super) struct ResponseHead {
    pub(super) raw: Bytes,
    pub(super) status: u16,
    pub(super) reason: Range<usize>,
    pub(super) headers: HeaderMap,
    /// The header lines the downstream gets, as sent.
    pub(super) lines: Vec<(Range<usize>, Range<usize>)>,
    pub(super) framing: Framing,
    /// Content-Length as declared.
    pub(super) declared: Option<u64>,
    /// The connection can carry another request once the body is through.
    pub(super) reusable: bool,
}

impl ResponseHead {
    /// The head as the downstream gets it.
    pub(super) fn downstream_head(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.raw.len() + 32);
        // httparse reads exactly three digits, so the status is 100..=999.
        let s = self.status;
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(&[
            b'0' + (s / 100 % 10) as u8,
            b'0' + (s / 10 % 10) as u8,
            b'0' + (s % 10) as u8,
            b' ',
        ]);
        out.extend_from_slice(&self.raw[self.reason.clone()]);
        out.extend_from_slice(b"\r\n");
        for (name, value) in &self.lines {
            push_line(&mut out, &self.raw[name.clone()], &self.raw[value.clone()]);
        }
        if self.framing == Framing::UntilClose {
            push_line(&mut out, b"Connection", b"close");
        }
        out.extend_from_slice(b"\r\n");
        out
    }
}

/// `Ok(None)`: more bytes needed; `Err`: what is wrong with the head.
pub(super) fn parse_response(buf: &[u8], to_head: bool) -> Result<Option<ResponseHead>, String> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut slots);
    let len = match res.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Ok(None),
        Ok(httparse::Status::Partial) => return Err("a head over 64 KiB".into()),
        Err(e) => return Err(e.to_string()),
    };
    let (Some(status), Some(version)) = (res.code, res.version) else {
        return Err("no status".into());
    };
    let reason = reason_range(res.reason, buf, len);
    let raw = Bytes::copy_from_slice(&buf[..len]);
    let fields = Fields::read(res.headers, buf, &raw).ok_or("an invalid header field")?;
    let encoded = fields.headers.contains_key(TRANSFER_ENCODING);
    let declared =
        content_length(&fields.headers).map_err(|()| "an invalid Content-Length".to_string())?;
    // RFC 9112 §6.3: with a Transfer-Encoding, a Content-Length means nothing and goes.
    let declared = declared.filter(|_| !encoded);
    let framing = if to_head || (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::Empty
    } else if let Some(codings) = fields.headers.get(TRANSFER_ENCODING) {
        let last = codings
            .as_bytes()
            .rsplit(|&b| b == b',')
            .next()
            .unwrap_or(b"");
        if last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
            Framing::Chunked(Chunks::default())
        } else {
            Framing::UntilClose
        }
    } else {
        declared.map_or(Framing::UntilClose, Framing::Length)
    };
    // A chunked body is relayed as the origin chunked it, so its Transfer-Encoding stays.
    let keep: &[&HeaderName] = match framing {
        Framing::Chunked(_) => &[&TRANSFER_ENCODING],
        _ => &[],
    };
    let drop: &[&HeaderName] = if encoded { &[&CONTENT_LENGTH] } else { &[] };
    Ok(Some(ResponseHead {
        status,
        reason,
        lines: fields.forwarded(keep, drop),
        reusable: version == 1 && !fields.close && framing != Framing::UntilClose,
        framing,
        declared,
        headers: fields.headers,
        raw,
    }))
}

/// Where httparse's reason phrase lies in `buf` (within the head's `len` bytes); empty when
/// there is none (`HTTP/1.1 200\r\n`).
fn reason_range(reason: Option<&str>, buf: &[u8], len: usize) -> Range<usize> {
    let Some(reason) = reason.filter(|r| !r.is_empty()) else {
        return 0..0;
    };
    let start = (reason.as_ptr() as usize).checked_sub(buf.as_ptr() as usize);
    match start {
        Some(start) if start + reason.len() <= len => start..start + reason.len(),
        _ => 0..0,
    }
}

/// A head's header fields: as a map (for the event and the detectors) and as lines.
pub(super) struct Fields {
    pub(super) headers: HeaderMap,
    /// Each field's name and (name, value) ranges in the head, in order.
    pub(super) lines: Vec<(HeaderName, Range<usize>, Range<usize>)>,
    /// Names listed in Connection: hop-by-hop for this message.
    pub(super) named: Vec<HeaderName>,
    /// Connection: close.
    pub(super) close: bool,
}

impl Fields {
    /// `parsed` are httparse's fields borrowing `buf`; `raw` is `buf`'s head, shared by the
    /// header values. `None` when a field is not valid for the `http` crate.
    pub(super) fn read(parsed: &[httparse::Header<'_>], buf: &[u8], raw: &Bytes) -> Option<Fields> {
        let base = buf.as_ptr() as usize;
        let mut headers = HeaderMap::with_capacity(parsed.len());
        let mut lines = Vec::with_capacity(parsed.len());
        for field in parsed {
            let name = HeaderName::from_bytes(field.name.as_bytes()).ok()?;
            let at = field.name.as_ptr() as usize - base;
            let value_at = field.value.as_ptr() as usize - base;
            let value_range = value_at..value_at + field.value.len();
            let value = HeaderValue::from_maybe_shared(raw.slice(value_range.clone())).ok()?;
            lines.push((name.clone(), at..at + field.name.len(), value_range));
            headers.append(name, value);
        }
        let named = named_in_connection(&headers);
        let close = named.contains(&CLOSE);
        Some(Fields {
            headers,
            lines,
            named,
            close,
        })
    }

    /// The lines to pass on: all but hop-by-hop ones (those in `keep` excepted) and those
    /// in `drop`.
    pub(super) fn forwarded(
        &self,
        keep: &[&HeaderName],
        drop: &[&HeaderName],
    ) -> Vec<(Range<usize>, Range<usize>)> {
        self.lines
            .iter()
            .filter(|(name, ..)| {
                !drop.contains(&name)
                    && (keep.contains(&name)
                        || !(HOP_BY_HOP.contains(name) || self.named.contains(name)))
            })
            .map(|(_, name, value)| (name.clone(), value.clone()))
            .collect()
    }
}

/// Content-Length, if any; `Err` when it is not one number (several must agree).
pub(super) fn content_length(headers: &HeaderMap) -> Result<Option<u64>, ()> {
    let mut found = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        for part in value.as_bytes().split(|&b| b == b',') {
            let text = std::str::from_utf8(part.trim_ascii()).map_err(|_| ())?;
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(());
            }
            let n: u64 = text.parse().map_err(|_| ())?;
            if found.is_some_and(|f| f != n) {
                return Err(());
            }
            found = Some(n);
        }
    }
    Ok(found)
}

/// One header line.
pub(super) fn push_line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str) -> RequestHead {
        match parse_request(text.as_bytes(), None) {
            Parse::Done(head) => head,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_simple_request_goes_origin_form_without_hop_by_hop_headers() {
        let head = request(
            "GET http://example.test:8081/a/b?q=1 HTTP/1.1\r\nHost: example.test:8081\r\n\
             X-Custom-Case: Kept\r\nProxy-Connection: keep-alive\r\nConnection: X-Drop\r\n\
             X-Drop: 1\r\nAccept: */*\r\n\r\n",
        );
        assert_eq!((head.host.as_str(), head.port), ("example.test", 8081));
        assert_eq!(head.path(), "/a/b");
        assert_eq!(head.body_len, 0);
        assert!(!head.close);
        assert_eq!(
            String::from_utf8(head.upstream_head()).unwrap(),
            format!(
                "GET /a/b?q=1 HTTP/1.1\r\nHost: example.test:8081\r\nVia: {}\r\n\
                 X-Custom-Case: Kept\r\nAccept: */*\r\n\r\n",
                crate::upstream::route::via()
            )
        );
        assert_eq!(
            head.headers.get("x-drop").unwrap(),
            "1",
            "recorded as received"
        );
    }

    #[test]
    fn a_request_without_host_gets_one_from_the_url() {
        let head = request("POST http://[::1]:9000/up HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!(head.host, "::1");
        assert_eq!(head.body_len, 5);
        assert_eq!(
            head.raw.len(),
            "POST http://[::1]:9000/up HTTP/1.1\r\nContent-Length: 5\r\n\r\n".len()
        );
        let wire = String::from_utf8(head.upstream_head()).unwrap();
        assert!(
            wire.starts_with("POST /up HTTP/1.1\r\nHost: [::1]:9000\r\n"),
            "{wire}"
        );
    }

    #[test]
    fn requests_the_lean_path_leaves_to_hyper() {
        for text in [
            "CONNECT example.test:443 HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: diagproxy\r\n\r\n",
            "GET http://example.test/ HTTP/1.0\r\n\r\n",
            "GET https://example.test/ HTTP/1.1\r\n\r\n",
            "GET http://example.test/ HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            "POST http://example.test/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST http://example.test/ HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
            "POST http://example.test/ HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "POST http://example.test/ HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "GET http://example.test/ HTTP/1.1\r\nBad Header\r\n\r\n",
        ] {
            assert!(
                matches!(parse_request(text.as_bytes(), None), Parse::Other),
                "{text:?}"
            );
        }
        assert!(matches!(
            parse_request(b"GET http://example.test/ HTTP/1.1\r\nHost: exa", None),
            Parse::Partial
        ));
        let huge = format!(
            "GET http://example.test/ HTTP/1.1\r\nX: {}",
            "a".repeat(MAX_HEAD)
        );
        assert!(matches!(parse_request(huge.as_bytes(), None), Parse::Other));
    }

    #[test]
    fn connection_close_is_noted() {
        let head = request("GET http://example.test/ HTTP/1.1\r\nConnection: Close\r\n\r\n");
        assert!(head.close);
    }

    fn response(text: &str, to_head: bool) -> ResponseHead {
        parse_response(text.as_bytes(), to_head).unwrap().unwrap()
    }

    #[test]
    fn answer_framing_follows_rfc_9112() {
        let cases: [(&str, bool, Framing); 6] = [
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n",
                false,
                Framing::Length(12),
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n",
                true,
                Framing::Empty,
            ),
            (
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 12\r\n\r\n",
                false,
                Framing::Empty,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n",
                false,
                Framing::Chunked(Chunks::default()),
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                false,
                Framing::UntilClose,
            ),
            ("HTTP/1.0 200 OK\r\n\r\n", false, Framing::UntilClose),
        ];
        for (text, to_head, framing) in cases {
            assert_eq!(response(text, to_head).framing, framing, "{text:?}");
        }
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false).is_err());
        assert!(parse_response(b"NOT HTTP\r\n\r\n", false).is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-", false)
            .unwrap()
            .is_none());
    }

    #[test]
    fn the_downstream_gets_the_answer_head_as_sent_less_hop_by_hop() {
        let chunked = response(
            "HTTP/1.1 200 Fine\r\nX-Case: Kept\r\nTransfer-Encoding: chunked\r\nKeep-Alive: 5\r\n\r\n",
            false,
        );
        assert!(chunked.reusable);
        assert_eq!(
            String::from_utf8(chunked.downstream_head()).unwrap(),
            "HTTP/1.1 200 Fine\r\nX-Case: Kept\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        let until_close = response("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", false);
        assert!(!until_close.reusable);
        assert_eq!(
            String::from_utf8(until_close.downstream_head()).unwrap(),
            "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"
        );
        let closing = response(
            "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
            false,
        );
        assert!(!closing.reusable, "the origin said close");
    }

    #[test]
    fn a_status_line_without_a_reason_is_parsed_safely() {
        let head = response("HTTP/1.1 200\r\ncontent-length: 0\r\n\r\n", false);
        assert_eq!(head.reason, 0..0);
        let out = String::from_utf8(head.downstream_head()).unwrap();
        assert!(out.starts_with("HTTP/1.1 200 \r\n"), "{out:?}");
        let head = response("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n", false);
        let out = String::from_utf8(head.downstream_head()).unwrap();
        assert!(out.starts_with("HTTP/1.1 404 Not Found\r\n"), "{out:?}");
    }

    #[test]
    fn content_length_beside_transfer_encoding_is_dropped() {
        let text =
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\nx-a: 1\r\n\r\n";
        let head = response(text, false);
        assert!(matches!(head.framing, Framing::Chunked(_)));
        assert_eq!(head.declared, None);
        let out = String::from_utf8(head.downstream_head())
            .unwrap()
            .to_ascii_lowercase();
        assert!(!out.contains("content-length"), "{out}");
        assert!(
            out.contains("transfer-encoding: chunked") && out.contains("x-a: 1"),
            "{out}"
        );
    }

    #[test]
    fn the_host_sent_is_the_urls_authority() {
        let head =
            request("GET http://u:p@a.example:8080/x HTTP/1.1\r\nHost: evil.example\r\n\r\n");
        let out = String::from_utf8(head.upstream_head())
            .unwrap()
            .to_ascii_lowercase();
        assert!(out.contains("host: a.example:8080\r\n"), "{out}");
        assert!(
            !out.contains("evil.example") && !out.contains("u:p@"),
            "{out}"
        );
        assert_eq!(head.url, "http://a.example:8080/x");
    }

    #[test]
    fn a_head_in_tiny_pieces_is_parsed_once_it_is_whole() {
        let text =
            b"GET http://a.example/ HTTP/1.1\r\nHost: a.example\r\nX-Long: 123456789\r\n\r\n";
        let mut end = HeadEnd::default();
        let mut parses = 0;
        let mut done = None;
        for cut in (4..=text.len()).step_by(4).chain([text.len()]) {
            if end.worth_parsing(&text[..cut]) {
                parses += 1;
                if let Parse::Done(head) = parse_request(&text[..cut], None) {
                    done = Some(head);
                    break;
                }
            }
        }
        assert_eq!(done.map(|h| h.host), Some("a.example".to_string()));
        assert_eq!(parses, 2, "the first bytes, then the whole head");
        assert!(has_blank_line(b"a\n\n") && has_blank_line(b"a\r\n\r\n"));
        assert!(!has_blank_line(b"a\r\nb\r\n"));
    }
}

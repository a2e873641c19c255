//! Property tests over the lean path's parsers with arbitrary bytes: no input makes them
//! panic, and splitting input differently never changes what they conclude. The number of
//! cases per property is proptest's `PROPTEST_CASES` (256 by default, so `cargo test` stays
//! quick); README's Tests section gives the long run.

use proptest::prelude::*;

use super::framing::Chunks;
use super::head::{parse_request, parse_response, HeadEnd, Parse};

/// Bytes that look like HTTP often enough to reach deep into the parsers.
fn http_ish() -> impl Strategy<Value = Vec<u8>> {
    let pieces = prop::sample::select(vec![
        &b"GET "[..],
        b"http://a.example",
        b":8080",
        b"/p?q=1",
        b" HTTP/1.1",
        b" HTTP/1.0",
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 200",
        b"\r\n",
        b"\n",
        b"Host: x\r\n",
        b"Content-Length: 5\r\n",
        b"Content-Length: 5, 6\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"Connection: close, x\r\n",
        b"Via: 1.1 a\r\n",
        b"0\r\n\r\n",
        b"5\r\nhello\r\n",
        b"ff;ext=1\r\n",
        b"\xff\x00\x1b",
        b": ",
        b"@",
        b"[::1]",
    ]);
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        prop::collection::vec(pieces, 0..40).prop_map(|p| p.concat()),
    ]
}

proptest! {
    #[test]
    fn request_heads_never_panic(bytes in http_ish()) {
        let _ = parse_request(&bytes, None);
        if let Parse::Done(head) = parse_request(&bytes, None) {
            let _ = head.upstream_head();
            let _ = head.path();
        }
    }

    #[test]
    fn answer_heads_never_panic(bytes in http_ish(), to_head in any::<bool>()) {
        if let Ok(Some(head)) = parse_response(&bytes, to_head) {
            let _ = head.downstream_head();
        }
    }

    #[test]
    fn the_head_end_is_found_however_the_bytes_arrive(bytes in http_ish(), step in 1usize..9) {
        // Parsing as the connection loop does (on `worth_parsing`) reaches the same
        // conclusion as parsing the whole buffer at once.
        let whole = matches!(parse_request(&bytes, None), Parse::Done(_));
        let mut end = HeadEnd::default();
        let mut found = false;
        let mut cut = 0;
        while cut < bytes.len() {
            cut = (cut + step).min(bytes.len());
            if end.worth_parsing(&bytes[..cut]) && matches!(parse_request(&bytes[..cut], None), Parse::Done(_)) {
                found = true;
                break;
            }
        }
        prop_assert!(!whole || found, "a whole head was never parsed");
    }

    #[test]
    fn chunked_framing_ignores_how_it_is_split(bytes in http_ish(), split in 0usize..512) {
        let feed = |pieces: &[&[u8]]| {
            let mut chunks = Chunks::default();
            let mut payload = Vec::new();
            let mut taken = 0;
            for piece in pieces {
                match chunks.feed(piece, |d| payload.extend_from_slice(d)) {
                    Ok(n) => taken += n,
                    Err(e) => return (Err(e), payload),
                }
                if chunks.done() {
                    break;
                }
            }
            (Ok(taken), payload)
        };
        let at = split.min(bytes.len());
        let (a, b) = bytes.split_at(at);
        let (whole, p1) = feed(&[&bytes]);
        let (parts, p2) = feed(&[a, b]);
        prop_assert_eq!(whole.is_ok(), parts.is_ok());
        if let (Ok(x), Ok(y)) = (whole, parts) {
            prop_assert_eq!(x, y);
            prop_assert_eq!(p1, p2);
        }
    }
}

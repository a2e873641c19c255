//! Reads the first bytes a downstream sends into a CONNECT tunnel: the TLS ClientHello's
//! server name (SNI) and offered ALPN protocols. Pure parsing, no I/O; the tunnel forwards
//! every byte unchanged whatever this says.

/// What the first bytes of a tunnel turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sniff {
    /// Too few bytes yet to say.
    NeedMore,
    /// Not a TLS handshake record (a plaintext protocol, or garbage).
    NotTls,
    /// A TLS handshake that is not a well-formed ClientHello.
    Malformed,
    /// A ClientHello.
    Hello(ClientHello),
}

/// The parts of a ClientHello the session records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientHello {
    /// The `server_name` extension's host name, if sent.
    pub sni: Option<String>,
    /// The ALPN protocols offered, in order (`h2`, `http/1.1`).
    pub alpn: Vec<String>,
}

const HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;
/// A ClientHello larger than this is not worth waiting for.
pub const MAX_HELLO: usize = 16 * 1024;

/// Parses the tunnel's first bytes, which may hold several TLS records.
pub fn client_hello(buf: &[u8]) -> Sniff {
    let mut handshake = Vec::new();
    let mut rest = buf;
    loop {
        if rest.len() < 5 {
            return if handshake.is_empty() && !rest.is_empty() && rest[0] != HANDSHAKE {
                Sniff::NotTls
            } else {
                Sniff::NeedMore
            };
        }
        if rest[0] != HANDSHAKE || rest[1] != 3 {
            return if handshake.is_empty() {
                Sniff::NotTls
            } else {
                Sniff::Malformed
            };
        }
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        let Some(fragment) = rest.get(5..5 + len) else {
            return Sniff::NeedMore;
        };
        handshake.extend_from_slice(fragment);
        rest = &rest[5 + len..];
        if handshake.len() >= 4 {
            if handshake[0] != CLIENT_HELLO {
                return Sniff::Malformed;
            }
            let body_len =
                u32::from_be_bytes([0, handshake[1], handshake[2], handshake[3]]) as usize;
            if handshake.len() >= 4 + body_len {
                return match parse_hello(&handshake[4..4 + body_len]) {
                    Some(hello) => Sniff::Hello(hello),
                    None => Sniff::Malformed,
                };
            }
        }
    }
}

/// A tiny cursor over big-endian length-prefixed fields.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

fn parse_hello(body: &[u8]) -> Option<ClientHello> {
    let mut r = Reader(body);
    r.take(2 + 32)?; // legacy_version, random
    r.vec8()?; // legacy_session_id
    r.vec16()?; // cipher_suites
    r.vec8()?; // legacy_compression_methods
    let mut hello = ClientHello::default();
    if r.0.is_empty() {
        return Some(hello); // no extensions at all
    }
    let mut exts = Reader(r.vec16()?);
    while !exts.0.is_empty() {
        let kind = exts.u16()?;
        let data = exts.vec16()?;
        match kind {
            EXT_SERVER_NAME => hello.sni = parse_sni(data),
            EXT_ALPN => hello.alpn = parse_alpn(data)?,
            _ => {}
        }
    }
    Some(hello)
}

fn parse_sni(data: &[u8]) -> Option<String> {
    let mut list = Reader(Reader(data).vec16()?);
    while !list.0.is_empty() {
        let name_type = list.u8()?;
        let name = list.vec16()?;
        if name_type == 0 {
            return std::str::from_utf8(name).ok().map(str::to_string);
        }
    }
    None
}

fn parse_alpn(data: &[u8]) -> Option<Vec<String>> {
    let mut list = Reader(Reader(data).vec16()?);
    let mut protocols = Vec::new();
    while !list.0.is_empty() {
        protocols.push(String::from_utf8_lossy(list.vec8()?).into_owned());
    }
    Some(protocols)
}

#[doc(hidden)]
/// Builds a ClientHello record the way a client would: for tests and benches.
pub fn example_hello(sni: Option<&str>, alpn: &[&str]) -> Vec<u8> {
    let mut exts = Vec::new();
    if let Some(name) = sni {
        let mut entry = vec![0u8];
        entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
        entry.extend_from_slice(name.as_bytes());
        push_ext(&mut exts, EXT_SERVER_NAME, &prefixed16(&entry));
    }
    if !alpn.is_empty() {
        let mut list = Vec::new();
        for p in alpn {
            list.push(p.len() as u8);
            list.extend_from_slice(p.as_bytes());
        }
        push_ext(&mut exts, EXT_ALPN, &prefixed16(&list));
    }
    push_ext(&mut exts, 43, &[2, 3, 4]); // supported_versions, ignored
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7u8; 32]);
    body.push(32);
    body.extend_from_slice(&[9u8; 32]);
    body.extend_from_slice(&prefixed16(&[0x13, 0x01, 0x13, 0x02]));
    body.extend_from_slice(&[1, 0]);
    body.extend_from_slice(&prefixed16(&exts));
    let mut hs = vec![CLIENT_HELLO, 0];
    hs.extend_from_slice(&(body.len() as u16).to_be_bytes());
    hs.extend_from_slice(&body);
    let mut record = vec![HANDSHAKE, 3, 1];
    record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    record.extend_from_slice(&hs);
    record
}

fn prefixed16(data: &[u8]) -> Vec<u8> {
    let mut v = (data.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(data);
    v
}

fn push_ext(exts: &mut Vec<u8>, kind: u16, data: &[u8]) {
    exts.extend_from_slice(&kind.to_be_bytes());
    exts.extend_from_slice(&prefixed16(data));
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn reads_sni_and_alpn() {
        let record = example_hello(Some("chatgpt.com"), &["h2", "http/1.1"]);
        let expected = ClientHello {
            sni: Some("chatgpt.com".into()),
            alpn: vec!["h2".into(), "http/1.1".into()],
        };
        assert_eq!(client_hello(&record), Sniff::Hello(expected));
    }

    #[test]
    fn hello_without_extensions_of_interest() {
        let record = example_hello(None, &[]);
        assert_eq!(client_hello(&record), Sniff::Hello(ClientHello::default()));
    }

    #[test]
    fn partial_input_needs_more_at_every_cut() {
        let record = example_hello(Some("files.oaiusercontent.com"), &["h2"]);
        for cut in 1..record.len() {
            assert_eq!(
                client_hello(&record[..cut]),
                Sniff::NeedMore,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn hello_split_over_two_records() {
        let record = example_hello(Some("chatgpt.com"), &["h2"]);
        let hs = &record[5..];
        let (a, b) = hs.split_at(20);
        let mut two = Vec::new();
        for part in [a, b] {
            two.extend_from_slice(&[HANDSHAKE, 3, 1]);
            two.extend_from_slice(&(part.len() as u16).to_be_bytes());
            two.extend_from_slice(part);
        }
        match client_hello(&two) {
            Sniff::Hello(h) => assert_eq!(h.sni.as_deref(), Some("chatgpt.com")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn plaintext_is_not_tls() {
        assert_eq!(client_hello(b"GET / HTTP/1.1\r\n"), Sniff::NotTls);
        assert_eq!(client_hello(b"SSH-2.0-OpenSSH"), Sniff::NotTls);
        assert_eq!(client_hello(b"G"), Sniff::NotTls);
    }

    #[test]
    fn garbage_handshake_is_malformed() {
        let mut record = example_hello(Some("chatgpt.com"), &[]);
        let len = record.len();
        record[len - 3] = 0xff; // corrupt a length inside the extensions
        record[43] = 200; // session id length beyond the body
        assert_eq!(client_hello(&record), Sniff::Malformed);
        assert_eq!(
            client_hello(&[HANDSHAKE, 3, 1, 0, 4, 2, 0, 0, 0]),
            Sniff::Malformed
        );
    }
}

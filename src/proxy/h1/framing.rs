//! Where a body ends (RFC 9112 §6.3): a length, chunked framing followed byte by byte, or
//! the close. Pure: the bytes themselves are relayed untouched.

/// How an answer's body is delimited.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Framing {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    /// This many bytes are left.
    Length(u64),
    Chunked(Chunks),
    /// Until the origin closes the connection.
    UntilClose,
}

impl Framing {
    /// Of `input` (bytes read from the origin), how many belong to this body, and whether
    /// the body ends with them; `data` gets the body's payload. `ended`: the origin closed.
    pub(super) fn take(
        &mut self,
        input: &[u8],
        ended: bool,
        mut data: impl FnMut(&[u8]),
    ) -> Result<(usize, bool), &'static str> {
        match self {
            Framing::Empty => Ok((0, true)),
            Framing::Length(left) => {
                let take = input
                    .len()
                    .min(usize::try_from(*left).unwrap_or(usize::MAX));
                data(&input[..take]);
                *left -= take as u64;
                Ok((take, *left == 0))
            }
            Framing::Chunked(chunks) => {
                let took = chunks.feed(input, data)?;
                Ok((took, chunks.done()))
            }
            Framing::UntilClose => {
                data(input);
                Ok((input.len(), ended))
            }
        }
    }
}

/// Follows a chunked body (RFC 9112 §7.1) as it passes, to know where it ends and which
/// bytes are payload; the bytes themselves are relayed untouched.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Chunks {
    pub(super) state: ChunkState,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub(super) enum ChunkState {
    /// Reading a chunk-size line: the size so far, and whether an extension began.
    #[default]
    SizeStart,
    Size {
        size: u64,
        extension: bool,
    },
    SizeLf {
        size: u64,
    },
    Data {
        left: u64,
    },
    DataCr,
    DataLf,
    /// After the last chunk: at the start of a trailer line (an empty one ends the body).
    TrailerStart,
    TrailerLine,
    EndLf,
    Done,
}

impl Chunks {
    pub(super) fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Reads `input` up to the end of the body; returns how many bytes were this body's.
    pub(super) fn feed(
        &mut self,
        input: &[u8],
        mut data: impl FnMut(&[u8]),
    ) -> Result<usize, &'static str> {
        let mut at = 0;
        while at < input.len() && !self.done() {
            if let ChunkState::Data { left } = &mut self.state {
                let take = (input.len() - at).min(usize::try_from(*left).unwrap_or(usize::MAX));
                data(&input[at..at + take]);
                at += take;
                *left -= take as u64;
                if *left == 0 {
                    self.state = ChunkState::DataCr;
                }
                continue;
            }
            self.state = step(&self.state, input[at])?;
            at += 1;
        }
        Ok(at)
    }
}

/// One byte of chunk framing.
pub(super) fn step(state: &ChunkState, byte: u8) -> Result<ChunkState, &'static str> {
    use ChunkState::*;
    let hex = (byte as char).to_digit(16).map(u64::from);
    Ok(match (state, byte) {
        (SizeStart, _) => match hex {
            Some(d) => Size {
                size: d,
                extension: false,
            },
            None => return Err("a chunk size is not hexadecimal"),
        },
        (
            Size {
                size,
                extension: false,
            },
            _,
        ) if hex.is_some() => Size {
            size: size
                .checked_mul(16)
                .and_then(|s| s.checked_add(hex.unwrap_or(0)))
                .ok_or("a chunk size overflows")?,
            extension: false,
        },
        (Size { size, .. }, b'\r') => SizeLf { size: *size },
        (Size { size, .. }, b'\n') | (SizeLf { size }, b'\n') => match size {
            0 => TrailerStart,
            left => Data { left: *left },
        },
        (Size { size, .. }, _) => Size {
            size: *size,
            extension: true,
        },
        (DataCr, b'\r') => DataLf,
        (DataCr, b'\n') | (DataLf, b'\n') => SizeStart,
        (TrailerStart, b'\r') => EndLf,
        (TrailerStart, b'\n') | (EndLf, b'\n') => Done,
        (TrailerStart, _) | (TrailerLine, _) if byte != b'\n' => TrailerLine,
        (TrailerLine, b'\n') => TrailerStart,
        _ => return Err("a chunk is not followed by CRLF"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked(pieces: &[&[u8]]) -> (Result<usize, &'static str>, Vec<u8>, bool) {
        let mut chunks = Chunks::default();
        let mut payload = Vec::new();
        let mut took = 0;
        for piece in pieces {
            match chunks.feed(piece, |d| payload.extend_from_slice(d)) {
                Ok(n) => took += n,
                Err(e) => return (Err(e), payload, false),
            }
        }
        let done = chunks.done();
        (Ok(took), payload, done)
    }

    #[test]
    fn chunked_bodies_end_where_the_last_chunk_and_trailers_end() {
        let body = b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\nNEXT";
        let (took, payload, done) = chunked(&[body]);
        assert_eq!(took, Ok(body.len() - 4), "stops before the next answer");
        assert_eq!(payload, b"hello0123456789");
        assert!(done);
        // Split anywhere: the same result.
        for cut in 1..body.len() - 4 {
            let (took, payload, done) = chunked(&[&body[..cut], &body[cut..body.len() - 4]]);
            assert_eq!(took, Ok(body.len() - 4), "cut at {cut}");
            assert_eq!(payload, b"hello0123456789");
            assert!(done);
        }
        let (_, _, done) = chunked(&[b"5\r\nhel"]);
        assert!(!done);
        assert!(chunked(&[b"zz\r\n"]).0.is_err());
        assert!(chunked(&[b"2\r\nhiX"]).0.is_err());
        assert!(chunked(&[b"ffffffffffffffffff\r\n"]).0.is_err());
    }
}

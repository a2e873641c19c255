//! The bytes to and from the origin on the lean path: a request's head and body written, the
//! answer's head read (1xx skipped), its body relayed as it arrives, and diagproxy's own
//! answers written as HTTP/1.1.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::header::CONTENT_LENGTH;
use hyper::{Method, Response};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::framing::Framing;
use super::head::{parse_response, push_line, HeadEnd, RequestHead, ResponseHead};
use crate::failure::{Failure, FailureKind, Side};
use crate::proxy::body::{Body, Received};
use crate::proxy::connect::zerocopy::Broke;
use crate::upstream::dial::Io;

/// Room made in a read buffer before each read.
pub(super) const READ_CHUNK: usize = 16 * 1024;
/// Room made before each read of a body once the detectors have the start they keep: a
/// bulk download then costs a sixteenth of the reads and writes. Held only while such a
/// body is relayed (a pooled connection keeps at most [`IDLE_BUF`]).
const BULK_CHUNK: usize = 256 * 1024;
/// A connection's read buffer larger than this is let go once its body has been relayed.
const IDLE_BUF: usize = 64 * 1024;
/// A `Content-Length` body with at least this much left once the detectors have their start
/// moves with `splice(2)` from the origin's socket to the client's (Linux, plain HTTP): the
/// bytes never enter this process. Shorter ones are not worth the pipe.
const SPLICE_FROM: u64 = 256 * 1024;

/// An open connection to an origin.
pub(super) struct Upstream {
    pub(super) host: String,
    pub(super) port: u16,
    /// What the event of the request that opened it recorded (`server_ip`,
    /// `upstream_protocol`), for the events of the requests that reuse it.
    pub(super) server_ip: Option<String>,
    pub(super) protocol: Option<String>,
    pub(super) stream: Box<dyn Io>,
    /// Bytes read from the origin and not yet relayed.
    pub(super) buf: BytesMut,
}

/// Why a request could not be exchanged on an open connection.
pub(super) struct ExchangeError {
    pub(super) failure: Failure,
    /// Nothing was received on a reused connection: it was closed while idle, so the
    /// request may be sent again on a new one.
    pub(super) stale: bool,
}

/// Writes the head and the body, then reads the answer's head (skipping 1xx heads).
pub(super) async fn exchange(
    down: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
    up: &mut Upstream,
    head: &RequestHead,
    wire: &[u8],
    bytes_up: &AtomicU64,
) -> Result<ResponseHead, ExchangeError> {
    let broke = |e: std::io::Error, stale: bool| ExchangeError {
        failure: Failure::from_exchange_error(&e, Side::Upstream),
        stale,
    };
    up.stream
        .write_all(wire)
        .await
        .map_err(|e| broke(e, true))?;
    if head.body_len == 0 {
        up.stream.flush().await.map_err(|e| broke(e, true))?;
    }
    send_body(down, buf, up, head.body_len, bytes_up).await?;
    read_answer_head(up, head.method == Method::HEAD).await
}

/// Relays a request body of `len` bytes (`Content-Length`) from the downstream.
async fn send_body(
    down: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
    up: &mut Upstream,
    len: u64,
    bytes_up: &AtomicU64,
) -> Result<(), ExchangeError> {
    let broke = |e: std::io::Error| ExchangeError {
        failure: Failure::from_exchange_error(&e, Side::Upstream),
        stale: false,
    };
    let mut left = len;
    while left > 0 {
        if buf.is_empty() {
            buf.reserve(READ_CHUNK);
            let n = down.read_buf(buf).await.unwrap_or(0);
            if n == 0 {
                let detail = format!(
                    "the client stopped sending the request body {} bytes short",
                    left
                );
                return Err(ExchangeError {
                    failure: Failure::new(FailureKind::HttpError, Side::Downstream, detail),
                    stale: false,
                });
            }
        }
        let take = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        up.stream.write_all(&buf[..take]).await.map_err(&broke)?;
        buf.advance(take);
        left -= take as u64;
        bytes_up.fetch_add(take as u64, Ordering::Relaxed);
        if left == 0 {
            up.stream.flush().await.map_err(&broke)?;
        }
    }
    Ok(())
}

/// Reads the answer's head, skipping 1xx heads (101 aside).
async fn read_answer_head(up: &mut Upstream, to_head: bool) -> Result<ResponseHead, ExchangeError> {
    let broke = |e: std::io::Error, stale: bool| ExchangeError {
        failure: Failure::from_exchange_error(&e, Side::Upstream),
        stale,
    };
    let mut end = HeadEnd::default();
    loop {
        let parsed = if !up.buf.is_empty() && end.worth_parsing(&up.buf) {
            parse_response(&up.buf, to_head)
        } else {
            Ok(None)
        };
        match parsed {
            Ok(Some(answer)) => {
                up.buf.advance(answer.raw.len());
                if (100..200).contains(&answer.status) && answer.status != 101 {
                    end = HeadEnd::default();
                    continue;
                }
                return Ok(answer);
            }
            Ok(None) => {}
            Err(problem) => {
                let detail = format!("the origin's answer is not valid HTTP/1.1: {problem}");
                return Err(ExchangeError {
                    failure: Failure::new(FailureKind::HttpError, Side::Upstream, detail),
                    stale: false,
                });
            }
        }
        up.buf.reserve(READ_CHUNK);
        let nothing_yet = up.buf.is_empty();
        match up.stream.read_buf(&mut up.buf).await {
            Ok(0) => {
                let detail = if nothing_yet {
                    "the origin closed the connection without answering"
                } else {
                    "the origin closed the connection in the middle of its answer's head"
                };
                return Err(ExchangeError {
                    failure: Failure::new(FailureKind::HttpError, Side::Upstream, detail),
                    stale: nothing_yet,
                });
            }
            Ok(_) => {}
            Err(e) => return Err(broke(e, nothing_yet)),
        }
    }
}

/// How an answer's body ended early.
pub(super) enum Cut {
    /// The origin broke off (recorded as the request's failure).
    Upstream(Failure),
    /// The downstream went away.
    Downstream,
}

/// Sends `out` (the answer's head) and the body as it arrives, counting it and keeping its
/// first `keep` bytes for the detectors.
pub(super) async fn relay_body<D: AsyncWrite + Unpin + 'static>(
    up: &mut Upstream,
    down: &mut D,
    mut framing: Framing,
    mut out: Vec<u8>,
    keep: usize,
    received: &mut Received,
) -> Result<(), Cut> {
    let mut ended = false;
    loop {
        let (take, done) = framing
            .take(&up.buf, ended, |data| received.note(keep, data))
            .map_err(|problem| {
                let detail = format!("the origin's chunked body is malformed: {problem}");
                Cut::Upstream(Failure::new(FailureKind::HttpError, Side::Upstream, detail))
            })?;
        if out.is_empty() {
            down.write_all(&up.buf[..take])
                .await
                .map_err(|_| Cut::Downstream)?;
        } else {
            out.extend_from_slice(&up.buf[..take]);
            down.write_all(&out).await.map_err(|_| Cut::Downstream)?;
            out = Vec::new();
        }
        down.flush().await.map_err(|_| Cut::Downstream)?;
        up.buf.advance(take);
        if done {
            if up.buf.is_empty() && up.buf.capacity() > IDLE_BUF {
                up.buf = BytesMut::new();
            }
            return Ok(());
        }
        if ended {
            let detail = format!(
                "the origin closed the connection after {} body bytes, before the end of its answer",
                received.bytes
            );
            return Err(Cut::Upstream(Failure::new(
                FailureKind::HttpError,
                Side::Upstream,
                detail,
            )));
        }
        let past_detectors = received.bytes >= keep as u64;
        if let Framing::Length(left) = &mut framing {
            // `(*up.stream)`: the box itself is an `Io` too, and is no TCP socket.
            let sockets = (*up.stream).tcp().zip(tcp(&*down));
            if let Some((from, to)) =
                sockets.filter(|_| past_detectors && *left >= SPLICE_FROM && up.buf.is_empty())
            {
                if let Some(moved) = splice_rest(from, to, *left).await {
                    received.bytes += moved.as_ref().map_or_else(|(n, _)| *n, |n| *n);
                    let moved = moved.map_err(|(_, cut)| cut)?;
                    received
                        .first_data
                        .get_or_insert_with(std::time::Instant::now);
                    *left -= moved;
                    continue;
                }
            }
        }
        up.buf.reserve(if past_detectors {
            BULK_CHUNK
        } else {
            READ_CHUNK
        });
        match up.stream.read_buf(&mut up.buf).await {
            Ok(0) => ended = true,
            Ok(_) => {}
            Err(e) => {
                return Err(Cut::Upstream(Failure::from_exchange_error(
                    &e,
                    Side::Upstream,
                )))
            }
        }
    }
}

/// The downstream as a TCP socket, when it is one (plain HTTP; not an intercepted TLS
/// stream).
fn tcp<D: 'static>(down: &D) -> Option<&TcpStream> {
    (down as &dyn std::any::Any).downcast_ref::<TcpStream>()
}

/// Moves the rest of a body (`left` bytes) from the origin's socket to the client's with
/// `splice(2)`, when a pipe can be had (else `None`: the caller copies). Returns the bytes
/// moved, or how many moved before the cut.
async fn splice_rest(
    from: &TcpStream,
    to: &TcpStream,
    left: u64,
) -> Option<Result<u64, (u64, Cut)>> {
    let mut pipe = crate::proxy::connect::zerocopy::Pipe::new().ok()?;
    let mut moved = 0;
    while moved < left {
        let max = usize::try_from(left - moved).unwrap_or(usize::MAX);
        match pipe.transfer_at_most(from, to, max).await {
            Ok(0) => {
                let detail = format!(
                    "the origin closed the connection {} bytes before the end of its answer",
                    left - moved
                );
                let failure = Failure::new(FailureKind::HttpError, Side::Upstream, detail);
                return Some(Err((moved, Cut::Upstream(failure))));
            }
            Ok(n) => moved += n as u64,
            Err(Broke::Reading(e)) => {
                let failure = Failure::from_exchange_error(&e, Side::Upstream);
                return Some(Err((moved, Cut::Upstream(failure))));
            }
            Err(Broke::Writing(_)) => return Some(Err((moved, Cut::Downstream))),
        }
    }
    Some(Ok(moved))
}

/// Writes one of diagproxy's own answers (a 502 and the like, whole bodies) as HTTP/1.1.
pub(super) async fn write_response(
    down: &mut (impl AsyncWrite + Unpin),
    response: Response<Body>,
) -> bool {
    let (parts, body) = response.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        parts.status.as_u16(),
        parts.status.canonical_reason().unwrap_or("")
    )
    .into_bytes();
    for (name, value) in &parts.headers {
        if name != CONTENT_LENGTH {
            push_line(&mut out, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    push_line(
        &mut out,
        b"content-length",
        body.len().to_string().as_bytes(),
    );
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
    down.write_all(&out).await.is_ok() && down.flush().await.is_ok()
}

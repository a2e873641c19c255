//! The lean HTTP/1.1 path: one task per downstream connection that relays simple requests
//! itself — plain HTTP (absolute-form, to any origin) and HTTP/1.1 inside an intercepted
//! tunnel (origin-form, to the tunnel's origin over diagproxy's own TLS). hyper's server and
//! client cost ~30 µs of CPU per request (two tasks, a channel, the head parsed and rebuilt on
//! each side), about half of what forwarding cost; here the head is parsed once with
//! httparse, rewritten (origin-form, hop-by-hop headers gone, every other header as sent, in
//! its case and order) and bodies are relayed as they arrive (a chunked answer passes
//! through as the origin chunked it).
//!
//! Anything else is handed back to the caller for the hyper path (`service`, or
//! `intercept::serve` inside a tunnel) with the bytes already read, and the connection stays there: CONNECT (a
//! connection that starts with one is handed over before a byte is read, so its tunnel can
//! splice the socket), upgrades, `Expect`, chunked uploads, HTTP/1.0, the proxy's own pages,
//! requests for the proxy itself, heads hyper should reject with 400/431, and every plain
//! request when `--upstream-proxy` or `--proxy-auth` is set.

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::header::{
    HeaderMap, HeaderName, HeaderValue, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, EXPECT, HOST,
    TRANSFER_ENCODING, UPGRADE, USER_AGENT,
};
use hyper::{Method, Response, Uri};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::answer;
use super::body::{Body, Received};
use super::exchange::{self, header_string, Answered, Asked};
use super::hop::{named_in_connection, HOP_BY_HOP};
use super::origin::{Ctx, Origin, SendError};
use super::{OpenGuard, Shared};
use crate::clock::ms;
use crate::failure::{Failure, FailureKind, Side};
use crate::session::event::{Downstream, RequestEvent};
use crate::shutdown::Shutdown;
use crate::upstream::dial::{self, Io, Prefixed};

/// A head longer than this goes to hyper, which answers 431.
const MAX_HEAD: usize = 64 * 1024;
/// More header fields than this go to hyper too.
const MAX_HEADERS: usize = 100;
/// The Connection token that asks to close after this message.
const CLOSE: HeaderName = HeaderName::from_static("close");
/// Room made in a read buffer before each read.
const READ_CHUNK: usize = 16 * 1024;

/// What the lean path leaves for the hyper path: the connection, with the bytes already
/// read from it put back in front. The caller serves it there for the rest of its life.
pub type Rest<D> = Prefixed<D>;

/// A plain downstream connection as the lean path leaves it.
pub enum Handoff {
    /// Served to the end here (or shut down).
    Done,
    /// Not for the lean path from its first byte (CONNECT, or a configuration the lean
    /// path does not do): the bare socket, so a tunnel can splice it.
    Untouched(TcpStream),
    /// Lean for a while, then something unusual: the rest goes to hyper.
    Rest(Rest<TcpStream>),
}

/// Serves one downstream connection's simple requests, and hands back what it does not
/// serve (see [`Handoff`]).
pub async fn serve(
    stream: TcpStream,
    state: Shared,
    peer: SocketAddr,
    shutdown: &mut Shutdown,
) -> Handoff {
    let lean = state.config.upstream_proxy.is_none() && state.config.proxy_auth.is_none();
    let to_hyper = !lean
        || tokio::select! {
            c = starts_with_c(&stream) => c,
            // A connection that never sent a byte does not hold up the end of the session.
            () = shutdown.recv() => return Handoff::Done,
        };
    if to_hyper {
        return Handoff::Untouched(stream);
    }
    // Boxed: a tunnel's task then holds only the hyper path's state, not this one's too
    // (an idle tunnel costs ~2 KiB less).
    Box::pin(serve_lean(stream, peer, state, shutdown)).await
}

async fn serve_lean(
    stream: TcpStream,
    peer: SocketAddr,
    state: Shared,
    shutdown: &mut Shutdown,
) -> Handoff {
    let route = Route::Forward {
        peer: peer.to_string(),
    };
    let mut conn = Conn::new(stream, state, route);
    if !conn.run(shutdown).await {
        return Handoff::Done;
    }
    Handoff::Rest(Prefixed::new(conn.buf.freeze(), conn.down))
}

/// Serves an intercepted HTTP/1.1 connection's simple requests (the client's TLS already
/// accepted), over the origin's own HTTP/1.1 connection; the rest, if any, is handed back
/// for the hyper path.
pub async fn serve_intercepted<D>(tls: D, ctx: Arc<Ctx>, shutdown: &mut Shutdown) -> Option<Rest<D>>
where
    D: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut conn = Conn::new(tls, ctx.state.clone(), Route::Intercept(ctx.clone()));
    if !Box::pin(conn.run(shutdown)).await {
        return None;
    }
    Some(Prefixed::new(conn.buf.freeze(), conn.down))
}

/// Whether the connection's first byte is a `C` (CONNECT, most likely): such connections go
/// to hyper untouched. Peeking reads nothing, so the tunnel still gets the bare socket.
async fn starts_with_c(stream: &TcpStream) -> bool {
    let mut first = [0u8; 1];
    matches!(stream.peek(&mut first).await, Ok(1) if first[0].eq_ignore_ascii_case(&b'c'))
}

/// One downstream connection on the lean path.
struct Conn<D> {
    down: D,
    /// Bytes read from the downstream and not yet used (the next request's head).
    buf: BytesMut,
    /// The upstream connection of the last request, kept open for the next one to the same
    /// host (a browser's keep-alive matched by ours).
    upstream: Option<Upstream>,
    state: Shared,
    route: Route,
}

/// Where a connection's requests go.
enum Route {
    /// Plain HTTP: absolute-form requests to any origin, dialled by name. `peer` is the
    /// client's address as every request's event names it (formatted once per connection).
    Forward { peer: String },
    /// Inside an intercepted tunnel: origin-form requests to the tunnel's origin, over
    /// diagproxy's own TLS (its chain judged as on the hyper path).
    Intercept(Arc<Ctx>),
}

/// An open connection to an origin.
struct Upstream {
    host: String,
    port: u16,
    /// What the event of the request that opened it recorded (`server_ip`,
    /// `upstream_protocol`), for the events of the requests that reuse it.
    server_ip: Option<String>,
    protocol: Option<String>,
    stream: Box<dyn Io>,
    /// Bytes read from the origin and not yet relayed.
    buf: BytesMut,
}

enum Next {
    Lean(Box<RequestHead>),
    /// A request for the hyper path (its bytes are still in `buf`).
    Other,
    /// The downstream closed (or broke) the connection between requests.
    Closed,
}

#[derive(Debug, PartialEq, Eq)]
enum After {
    KeepAlive,
    Close,
}

/// Why a request could not be exchanged on an open connection.
struct ExchangeError {
    failure: Failure,
    /// Nothing was received on a reused connection: it was closed while idle, so the
    /// request may be sent again on a new one.
    stale: bool,
}

impl<D: AsyncRead + AsyncWrite + Unpin> Conn<D> {
    fn new(down: D, state: Shared, route: Route) -> Conn<D> {
        Conn {
            down,
            buf: BytesMut::with_capacity(4096),
            upstream: None,
            state,
            route,
        }
    }

    /// Serves requests until the connection ends (false) or one needs hyper (true; its
    /// bytes are in `buf`).
    async fn run(&mut self, shutdown: &mut Shutdown) -> bool {
        loop {
            let next = tokio::select! {
                next = self.next_request() => next,
                () = shutdown.recv() => {
                    let _ = self.down.shutdown().await;
                    return false;
                }
            };
            let head = match next {
                Next::Lean(head) => head,
                Next::Other => return true,
                Next::Closed => return false,
            };
            if self.forward(*head).await == After::Close {
                // Ends the connection properly: a TLS client needs close_notify to trust
                // that an answer delimited by the close is whole.
                let _ = self.down.shutdown().await;
                return false;
            }
        }
    }

    async fn next_request(&mut self) -> Next {
        let origin = match &self.route {
            Route::Forward { .. } => None,
            Route::Intercept(ctx) => Some(&ctx.origin),
        };
        loop {
            if !self.buf.is_empty() {
                match parse_request(&self.buf, origin) {
                    Parse::Done(head) if !self.state.is_self(&head.host, head.port) => {
                        self.buf.advance(head.raw.len());
                        return Next::Lean(Box::new(head));
                    }
                    Parse::Done(_) | Parse::Other => return Next::Other,
                    Parse::Partial => {}
                }
            }
            self.buf.reserve(4096);
            match self.down.read_buf(&mut self.buf).await {
                Ok(0) if self.buf.is_empty() => return Next::Closed,
                // A partial head and then the end: hyper says what was wrong with it.
                Ok(0) => return Next::Other,
                Ok(_) => {}
                Err(_) => return Next::Closed,
            }
        }
    }

    /// Relays one request and its answer, and records it.
    async fn forward(&mut self, mut head: RequestHead) -> After {
        let started = Instant::now();
        let state = self.state.clone();
        let _open = OpenGuard::new(&state);
        let downstream = match &self.route {
            Route::Forward { peer } => Downstream {
                addr: peer.clone(),
                user_agent: header_string(&head.headers, &USER_AGENT),
            },
            Route::Intercept(ctx) => ctx.begin_request(&head.headers),
        };
        let intercepted = matches!(self.route, Route::Intercept(_));
        let line = exchange::RequestLine {
            method: head.method.to_string(),
            url: &head.url,
            host: head.host.clone(),
            port: head.port,
        };
        let asked = Asked {
            path: head.path().to_string(),
            accept: header_string(&head.headers, &ACCEPT),
            intercepted,
            started,
            bytes_up: Arc::new(AtomicU64::new(0)),
        };
        let headers = std::mem::take(&mut head.headers);
        let mut event = exchange::begin_event(&state, headers, line, downstream, intercepted);
        let sent = tokio::time::timeout(
            state.config.response_timeout,
            self.send(&head, &mut event, &asked.bytes_up),
        )
        .await;
        let result = sent.unwrap_or_else(|_| {
            let detail = format!(
                "no response head within {:?}",
                state.config.response_timeout
            );
            Err(Failure::new(FailureKind::Timeout, Side::Upstream, detail).into())
        });
        let (mut up, answer) = match result {
            Ok(ok) => ok,
            Err(error) => {
                let response = match &self.route {
                    Route::Forward { .. } => {
                        super::forward::fail(&state, event, error.failure, started, &asked.bytes_up)
                    }
                    Route::Intercept(ctx) => {
                        let wants_html = answer::wants_html(asked.accept.as_deref());
                        answer::intercepted_failure(
                            ctx,
                            event,
                            error,
                            started,
                            &asked.bytes_up,
                            wants_html,
                        )
                    }
                };
                let written = write_response(&mut self.down, response).await;
                // The request's body may be half read: only a bodiless one leaves the
                // connection in a known state.
                return if written && head.body_len == 0 && !head.close {
                    After::KeepAlive
                } else {
                    After::Close
                };
            }
        };
        let head_at = Instant::now();
        event.status = Some(answer.status);
        event.content_type = header_string(&answer.headers, &CONTENT_TYPE);
        let keep = exchange::keep_for(event.content_type.as_deref(), event.status);
        let mut received = Received::default();
        let out = answer.downstream_head();
        let until_close = answer.framing == Framing::UntilClose;
        let relayed = relay_body(
            &mut up,
            &mut self.down,
            answer.framing,
            out,
            keep,
            &mut received,
        )
        .await;
        let after = match relayed {
            Ok(()) => {
                event.complete = true;
                if answer.reusable && up.buf.is_empty() {
                    self.upstream = Some(up);
                }
                if head.close || until_close {
                    After::Close
                } else {
                    After::KeepAlive
                }
            }
            Err(Cut::Upstream(failure)) => {
                event.failure = Some(failure);
                After::Close
            }
            Err(Cut::Downstream) => After::Close,
        };
        let answered = Answered {
            head: answer.headers,
            declared: answer.declared,
            head_at,
        };
        exchange::finish(&state, event, &asked, answered, received);
        after
    }

    /// Sends the request on the kept connection when it goes to the same host (again on a
    /// new one if that was closed while idle), else on a new one; returns the answer's head.
    async fn send(
        &mut self,
        head: &RequestHead,
        event: &mut RequestEvent,
        bytes_up: &AtomicU64,
    ) -> Result<(Upstream, ResponseHead), SendError> {
        let wire = head.upstream_head();
        let kept = self
            .upstream
            .take()
            .filter(|u| u.port == head.port && u.host == head.host);
        if let Some(mut up) = kept {
            let sent = Instant::now();
            match self.exchange(&mut up, head, &wire, bytes_up).await {
                Ok(answer) => {
                    event.reused = true;
                    event.server_ip = up.server_ip.clone();
                    event.upstream_protocol = up.protocol.clone();
                    event.timings.wait_ms = Some(ms(sent.elapsed()));
                    return Ok((up, answer));
                }
                Err(e) if e.stale && head.body_len == 0 => {}
                Err(e) => return Err(e.failure.into()),
            }
        }
        let mut up = open(&self.route, &self.state, head, event).await?;
        let sent = Instant::now();
        let answer = self
            .exchange(&mut up, head, &wire, bytes_up)
            .await
            .map_err(|e| SendError::from(e.failure))?;
        event.timings.wait_ms = Some(ms(sent.elapsed()));
        Ok((up, answer))
    }

    /// Writes the head and the body, then reads the answer's head (skipping 1xx heads).
    async fn exchange(
        &mut self,
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
        let mut left = head.body_len;
        while left > 0 {
            if self.buf.is_empty() {
                self.buf.reserve(READ_CHUNK);
                let n = self.down.read_buf(&mut self.buf).await.unwrap_or(0);
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
            let take = self
                .buf
                .len()
                .min(usize::try_from(left).unwrap_or(usize::MAX));
            up.stream
                .write_all(&self.buf[..take])
                .await
                .map_err(|e| broke(e, false))?;
            self.buf.advance(take);
            left -= take as u64;
            bytes_up.fetch_add(take as u64, Ordering::Relaxed);
            if left == 0 {
                up.stream.flush().await.map_err(|e| broke(e, false))?;
            }
        }
        loop {
            match parse_response(&up.buf, head.method == Method::HEAD) {
                Ok(Some(answer)) => {
                    up.buf.advance(answer.raw.len());
                    if (100..200).contains(&answer.status) && answer.status != 101 {
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
}

/// A new connection to the request's origin: dialled by name, or the intercepted
/// tunnel's origin over TLS (DNS, connect and TLS timings go into the event).
async fn open(
    route: &Route,
    state: &Shared,
    head: &RequestHead,
    event: &mut RequestEvent,
) -> Result<Upstream, SendError> {
    let stream: Box<dyn Io> = match route {
        Route::Forward { .. } => {
            let side = Side::Upstream;
            let dialed = dial::dial(&head.host, head.port, &state.config, side).await?;
            let profile = &state.config.profile;
            event.findings.extend(crate::inspect::detect::dns_sinkhole(
                &head.host,
                &dialed.dns_answer,
                profile,
            ));
            event.server_ip = Some(dialed.addr.ip().to_string());
            event.timings.dns_ms = dialed.dns.map(ms);
            event.timings.connect_ms = Some(ms(dialed.connect));
            Box::new(dialed.stream)
        }
        Route::Intercept(ctx) => ctx.origin.open_h1(event).await?,
    };
    Ok(Upstream {
        host: head.host.clone(),
        port: head.port,
        server_ip: event.server_ip.clone(),
        protocol: event.upstream_protocol.clone(),
        stream,
        buf: BytesMut::new(),
    })
}

/// How an answer's body ended early.
enum Cut {
    /// The origin broke off (recorded as the request's failure).
    Upstream(Failure),
    /// The downstream went away.
    Downstream,
}

/// Sends `out` (the answer's head) and the body as it arrives, counting it and keeping its
/// first `keep` bytes for the detectors.
async fn relay_body(
    up: &mut Upstream,
    down: &mut (impl AsyncWrite + Unpin),
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
        up.buf.reserve(READ_CHUNK);
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

/// Writes one of diagproxy's own answers (a 502 and the like, whole bodies) as HTTP/1.1.
async fn write_response(down: &mut (impl AsyncWrite + Unpin), response: Response<Body>) -> bool {
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

fn push_line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

// ---- Parsing (no I/O) ----

/// What a buffer holds.
#[derive(Debug)]
enum Parse<T> {
    Done(T),
    Partial,
    /// Not for this path.
    Other,
}

/// A request head this path forwards itself.
#[derive(Debug)]
struct RequestHead {
    /// The head as received (its length is how much of the buffer it took).
    raw: Bytes,
    method: Method,
    /// The absolute-form target, as sent.
    url: String,
    host: String,
    port: u16,
    /// `host[:port]` from the URL, for a Host header when the request has none.
    authority: String,
    /// Path and query, the origin-form target.
    origin_form: String,
    headers: HeaderMap,
    /// The header lines to forward (name and value ranges in `raw`), as sent.
    lines: Vec<(Range<usize>, Range<usize>)>,
    has_host: bool,
    /// The body's length (Content-Length; 0 without).
    body_len: u64,
    /// The downstream asked to close after this request.
    close: bool,
}

impl RequestHead {
    fn path(&self) -> &str {
        self.origin_form
            .split_once('?')
            .map_or(self.origin_form.as_str(), |(path, _)| path)
    }

    /// The head as the origin gets it.
    fn upstream_head(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.raw.len() + 32);
        out.extend_from_slice(self.method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.origin_form.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        if !self.has_host {
            push_line(&mut out, b"Host", self.authority.as_bytes());
        }
        for (name, value) in &self.lines {
            push_line(&mut out, &self.raw[name.clone()], &self.raw[value.clone()]);
        }
        out.extend_from_slice(b"\r\n");
        out
    }
}

/// `origin`: the intercepted tunnel's origin (origin-form targets), or `None` for plain
/// HTTP (absolute-form `http://` targets).
fn parse_request(buf: &[u8], origin: Option<&Origin>) -> Parse<RequestHead> {
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
    // Inside a tunnel the Host is the tunnel's origin, whatever the client wrote.
    let drop: &[&HeaderName] = if origin.is_some() { &[&HOST] } else { &[] };
    Parse::Done(RequestHead {
        method,
        has_host: origin.is_none() && fields.headers.contains_key(HOST),
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
struct Target {
    url: String,
    host: String,
    port: u16,
    authority: String,
    origin_form: String,
}

impl Target {
    /// An absolute `http://` URL for plain HTTP; an origin-form path inside a tunnel.
    fn of(target: &str, origin: Option<&Origin>) -> Option<Target> {
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
        if host.is_empty() {
            return None;
        }
        Some(Target {
            url: target.to_string(),
            host: host.to_string(),
            port: authority.port_u16().unwrap_or(80),
            authority: authority.as_str().to_string(),
            origin_form: uri
                .path_and_query()
                .map_or("/", |pq| pq.as_str())
                .to_string(),
        })
    }
}

/// An answer head, as read from the origin.
#[derive(Debug)]
struct ResponseHead {
    raw: Bytes,
    status: u16,
    reason: Range<usize>,
    headers: HeaderMap,
    /// The header lines the downstream gets, as sent.
    lines: Vec<(Range<usize>, Range<usize>)>,
    framing: Framing,
    /// Content-Length as declared.
    declared: Option<u64>,
    /// The connection can carry another request once the body is through.
    reusable: bool,
}

impl ResponseHead {
    /// The head as the downstream gets it.
    fn downstream_head(&self) -> Vec<u8> {
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
fn parse_response(buf: &[u8], to_head: bool) -> Result<Option<ResponseHead>, String> {
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
    let reason = res.reason.unwrap_or("");
    let raw = Bytes::copy_from_slice(&buf[..len]);
    let reason_start = reason.as_ptr() as usize - buf.as_ptr() as usize;
    let fields = Fields::read(res.headers, buf, &raw).ok_or("an invalid header field")?;
    let declared =
        content_length(&fields.headers).map_err(|()| "an invalid Content-Length".to_string())?;
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
    Ok(Some(ResponseHead {
        status,
        reason: if reason.is_empty() {
            0..0
        } else {
            reason_start..reason_start + reason.len()
        },
        lines: fields.forwarded(keep, &[]),
        reusable: version == 1 && !fields.close && framing != Framing::UntilClose,
        framing,
        declared,
        headers: fields.headers,
        raw,
    }))
}

/// A head's header fields: as a map (for the event and the detectors) and as lines.
struct Fields {
    headers: HeaderMap,
    /// Each field's name and (name, value) ranges in the head, in order.
    lines: Vec<(HeaderName, Range<usize>, Range<usize>)>,
    /// Names listed in Connection: hop-by-hop for this message.
    named: Vec<HeaderName>,
    /// Connection: close.
    close: bool,
}

impl Fields {
    /// `parsed` are httparse's fields borrowing `buf`; `raw` is `buf`'s head, shared by the
    /// header values. `None` when a field is not valid for the `http` crate.
    fn read(parsed: &[httparse::Header<'_>], buf: &[u8], raw: &Bytes) -> Option<Fields> {
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
    fn forwarded(
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
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, ()> {
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

/// How an answer's body is delimited.
#[derive(Debug, PartialEq, Eq)]
enum Framing {
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
    fn take(
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
struct Chunks {
    state: ChunkState,
}

#[derive(Debug, Default, PartialEq, Eq)]
enum ChunkState {
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
    fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Reads `input` up to the end of the body; returns how many bytes were this body's.
    fn feed(&mut self, input: &[u8], mut data: impl FnMut(&[u8])) -> Result<usize, &'static str> {
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
fn step(state: &ChunkState, byte: u8) -> Result<ChunkState, &'static str> {
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
            "GET /a/b?q=1 HTTP/1.1\r\nHost: example.test:8081\r\nX-Custom-Case: Kept\r\n\
             Accept: */*\r\n\r\n"
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

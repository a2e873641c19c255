//! The lean path's connection loop: read a request head, forward it (on the kept origin
//! connection when it goes to the same host), relay the answer, record the exchange; hand the
//! connection back at the first request this path does not do.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use hyper::header::{ACCEPT, CONTENT_TYPE, USER_AGENT};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::framing::Framing;
use super::head::{parse_request, HeadEnd, Parse, RequestHead, ResponseHead};
use super::wire::{self, relay_body, write_response, Cut, Upstream};
use crate::clock::ms;
use crate::failure::{Failure, Side};
use crate::proxy::body::Received;
use crate::proxy::connect::origin::{Ctx, SendError};
use crate::proxy::exchange::{self, header_string, Answered, Asked};
use crate::proxy::pages::answer;
use crate::proxy::{OpenGuard, Shared};
use crate::session::event::{Downstream, RequestEvent};
use crate::shutdown::Shutdown;
use crate::upstream::dial::{self, Io};

/// One downstream connection on the lean path.
pub(super) struct Conn<D> {
    pub(super) down: D,
    /// Bytes read from the downstream and not yet used (the next request's head).
    pub(super) buf: BytesMut,
    /// The upstream connection of the last request, kept open for the next one to the same
    /// host (a browser's keep-alive matched by ours).
    pub(super) upstream: Option<Upstream>,
    pub(super) state: Shared,
    pub(super) route: Route,
}

/// Where a connection's requests go.
pub(super) enum Route {
    /// Plain HTTP: absolute-form requests to any origin, dialled by name. `peer` is the
    /// client's address as every request's event names it (formatted once per connection).
    Forward { peer: String },
    /// Inside an intercepted tunnel: origin-form requests to the tunnel's origin, over
    /// diagproxy's own TLS (its chain judged as on the hyper path).
    Intercept(Arc<Ctx>),
}

pub(super) enum Next {
    Lean(Box<RequestHead>),
    /// A request for the hyper path (its bytes are still in `buf`).
    Other,
    /// The downstream closed (or broke) the connection between requests.
    Closed,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum After {
    KeepAlive,
    Close,
}

impl<D: AsyncRead + AsyncWrite + Unpin + 'static> Conn<D> {
    pub(super) fn new(down: D, state: Shared, route: Route) -> Conn<D> {
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
    pub(super) async fn run(&mut self, shutdown: &mut Shutdown) -> bool {
        loop {
            let wait = self.state.config.header_timeout;
            let next = tokio::select! {
                next = tokio::time::timeout(wait, self.next_request()) => match next {
                    Ok(next) => next,
                    Err(_) => {
                        // No whole head in time (slow, or idle between requests): closed.
                        self.state.limits.header_timed_out();
                        let _ = self.down.shutdown().await;
                        return false;
                    }
                },
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

    pub(super) async fn next_request(&mut self) -> Next {
        let origin = match &self.route {
            Route::Forward { .. } => None,
            Route::Intercept(ctx) => Some(&ctx.origin),
        };
        let mut end = HeadEnd::default();
        loop {
            if !self.buf.is_empty() && end.worth_parsing(&self.buf) {
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
    pub(super) async fn forward(&mut self, mut head: RequestHead) -> After {
        let started = Instant::now();
        let state = self.state.clone();
        let (mut event, asked) = self.begin(&mut head, started);
        let mut open = OpenGuard::request(&state, &event);
        let sent = tokio::time::timeout(
            state.config.response_timeout,
            self.send(&head, &mut event, &asked.bytes_up),
        )
        .await;
        // The answer's head came, or the request failed: either way it is recorded now.
        open.answered();
        let waited = state.config.response_timeout;
        let result =
            sent.unwrap_or_else(|_| Err(Failure::no_response_head(Side::Upstream, waited).into()));
        match result {
            Ok((up, answer)) => self.relay_answer(&head, event, &asked, up, answer).await,
            Err(error) => self.answer_failure(&head, event, &asked, error).await,
        }
    }

    /// The request's event and what the answer will be judged against.
    fn begin(&self, head: &mut RequestHead, started: Instant) -> (RequestEvent, Asked) {
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
        let mut event = exchange::begin_event(&self.state, headers, line, downstream, intercepted);
        if let Route::Intercept(ctx) = &self.route {
            event.route = ctx.origin.route();
        }
        (event, asked)
    }

    /// Answers a request that failed upstream with diagproxy's explanation, and records it.
    async fn answer_failure(
        &mut self,
        head: &RequestHead,
        event: RequestEvent,
        asked: &Asked,
        error: SendError,
    ) -> After {
        let (state, started, up) = (&self.state, asked.started, &asked.bytes_up);
        let response = match &self.route {
            Route::Forward { .. } => crate::proxy::pages::answer::request_failed(
                state,
                event,
                error.failure,
                started,
                up,
            ),
            Route::Intercept(ctx) => {
                let wants_html = answer::wants_html(asked.accept.as_deref());
                answer::intercepted_failure(ctx, event, error, started, up, wants_html)
            }
        };
        let written = write_response(&mut self.down, response).await;
        // The request's body may be half read: only a bodiless one leaves the
        // connection in a known state.
        if written && head.body_len == 0 && !head.close {
            After::KeepAlive
        } else {
            After::Close
        }
    }

    /// Relays the answer's head and body, keeps the origin connection when it can be
    /// reused, and records the exchange.
    async fn relay_answer(
        &mut self,
        head: &RequestHead,
        mut event: RequestEvent,
        asked: &Asked,
        mut up: Upstream,
        answer: ResponseHead,
    ) -> After {
        let head_at = Instant::now();
        event.status = Some(answer.status);
        event.content_type = header_string(&answer.headers, &CONTENT_TYPE);
        let keep = exchange::keep_for(
            event.content_type.as_deref(),
            event.status,
            self.state.config.bodies,
        );
        let mut received = Received::default();
        let out = answer.downstream_head();
        let until_close = answer.framing == Framing::UntilClose;
        let down = &mut self.down;
        let relayed = relay_body(&mut up, down, answer.framing, out, keep, &mut received).await;
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
        exchange::finish(&self.state, event, asked, answered, received);
        after
    }

    /// One request and its answer's head on `up` (see [`wire::exchange`]).
    async fn exchange(
        &mut self,
        up: &mut Upstream,
        head: &RequestHead,
        wire: &[u8],
        bytes_up: &AtomicU64,
    ) -> Result<ResponseHead, wire::ExchangeError> {
        wire::exchange(&mut self.down, &mut self.buf, up, head, wire, bytes_up).await
    }

    /// Sends the request on the kept connection when it goes to the same host (again on a
    /// new one if that was closed while idle), else on a new one; returns the answer's head.
    pub(super) async fn send(
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
                // Closed while idle: sent again on a new connection, but only a request
                // that may be repeated (RFC 9110 §9.2.2) and had no body.
                Err(e) if e.stale && head.body_len == 0 && head.method.is_idempotent() => {}
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
}

/// A new connection to the request's origin: dialled by name, or the intercepted
/// tunnel's origin over TLS (DNS, connect and TLS timings go into the event).
pub(super) async fn open(
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

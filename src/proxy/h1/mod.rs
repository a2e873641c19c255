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
//!
//! The files, in the order a request meets them: `conn` (the connection loop, one request
//! at a time), `head` (request and answer heads parsed and rewritten, pure), `wire` (the
//! bytes to and from the origin), `framing` (where a body ends, pure).

mod conn;
mod framing;
#[cfg(test)]
mod fuzz;
mod head;
mod wire;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::Shared;
use crate::proxy::connect::origin::Ctx;
use crate::shutdown::Shutdown;
use crate::upstream::dial::Prefixed;
use conn::{Conn, Route};

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
    let lean = state.config.router.always_direct() && state.config.proxy_auth.is_none();
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

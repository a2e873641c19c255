//! Streams watched as they pass: what the upstream sends while diagproxy shakes hands with
//! it (interception), so a failed handshake is named as a tunnel's would be (a reset right
//! after the ClientHello, a plaintext answer, silence); and the bytes an intercepted
//! client connection carried each way, for its CONNECT line.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::inspect::detect::FIRST_UPSTREAM_KEPT;

/// What the upstream sent before the handshake ended.
#[derive(Debug, Default)]
pub struct Sight {
    /// Its first bytes (up to [`FIRST_UPSTREAM_KEPT`]).
    pub first: Vec<u8>,
    /// It reset or closed the connection.
    pub died: bool,
}

/// A stream that copies the upstream's first bytes into a shared [`Sight`] until told the
/// handshake is over (then a read costs one relaxed load more).
pub struct Sighted<S> {
    inner: S,
    sight: Arc<Mutex<Sight>>,
    done: Arc<AtomicBool>,
}

/// The watcher's handles: what was seen, and the switch that stops the watching.
#[derive(Clone, Default)]
pub struct Watch {
    pub sight: Arc<Mutex<Sight>>,
    pub done: Arc<AtomicBool>,
}

impl Watch {
    pub fn wrap<S>(&self, inner: S) -> Sighted<S> {
        Sighted {
            inner,
            sight: self.sight.clone(),
            done: self.done.clone(),
        }
    }

    /// Stops the copying (the handshake succeeded).
    pub fn finish(&self) {
        self.done.store(true, Ordering::Relaxed);
    }

    /// What was seen so far: the first bytes and whether the upstream died.
    pub fn seen(&self) -> (Vec<u8>, bool) {
        match self.sight.lock() {
            Ok(s) => (s.first.clone(), s.died),
            Err(_) => (Vec::new(), false),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Sighted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.done.load(Ordering::Relaxed) {
            return result;
        }
        if let Ok(mut sight) = self.sight.lock() {
            match &result {
                Poll::Ready(Ok(())) if buf.filled().len() == before => sight.died = true,
                Poll::Ready(Ok(())) => {
                    let new = &buf.filled()[before..];
                    let room = FIRST_UPSTREAM_KEPT.saturating_sub(sight.first.len());
                    sight.first.extend_from_slice(&new[..new.len().min(room)]);
                }
                Poll::Ready(Err(_)) => sight.died = true,
                Poll::Pending => {}
            }
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Sighted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Bytes read from and written to a stream, shared with whoever records them.
#[derive(Clone, Default)]
pub struct Counts {
    pub read: Arc<std::sync::atomic::AtomicU64>,
    pub written: Arc<std::sync::atomic::AtomicU64>,
}

impl Counts {
    pub fn wrap<S>(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            counts: self.clone(),
        }
    }

    /// (read, written) so far.
    pub fn get(&self) -> (u64, u64) {
        (
            self.read.load(Ordering::Relaxed),
            self.written.load(Ordering::Relaxed),
        )
    }
}

/// A stream that counts its bytes into [`Counts`].
pub struct Counted<S> {
    inner: S,
    counts: Counts,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        self.counts.read.fetch_add(n, Ordering::Relaxed);
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = &result {
            self.counts.written.fetch_add(*n as u64, Ordering::Relaxed);
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &result {
            self.counts.written.fetch_add(*n as u64, Ordering::Relaxed);
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

//! Streams watched as they pass: what the upstream sends while diagproxy shakes hands with
//! it (interception), so a failed handshake is named as a tunnel's would be (a reset right
//! after the ClientHello, a plaintext answer, silence); and the bytes an intercepted
//! client connection carried each way, for its CONNECT line.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

/// The watcher's handles: what was seen, and the switch that stops the watching.
#[derive(Clone, Default)]
pub struct Watch {
    pub sight: Arc<Mutex<Sight>>,
    pub done: Arc<AtomicBool>,
}

impl Watch {
    /// `inner`, copying what it reads into this watch until [`Watch::finish`].
    pub fn wrap<S>(&self, inner: S) -> Tapped<S> {
        Tapped {
            inner,
            watch: Some(self.clone()),
            counts: None,
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

    /// Notes one read's outcome (`new`: the bytes it brought; `None`: an error).
    fn saw(&self, new: Option<&[u8]>) {
        if self.done.load(Ordering::Relaxed) {
            return;
        }
        let Ok(mut sight) = self.sight.lock() else {
            return;
        };
        match new {
            Some([]) | None => sight.died = true,
            Some(bytes) => {
                let room = FIRST_UPSTREAM_KEPT.saturating_sub(sight.first.len());
                sight
                    .first
                    .extend_from_slice(&bytes[..bytes.len().min(room)]);
            }
        }
    }
}

/// Bytes read from and written to a stream, shared with whoever records them.
#[derive(Clone, Default)]
pub struct Counts {
    pub read: Arc<AtomicU64>,
    pub written: Arc<AtomicU64>,
}

impl Counts {
    /// `inner`, counting its bytes into these counts.
    pub fn wrap<S>(&self, inner: S) -> Tapped<S> {
        Tapped {
            inner,
            watch: None,
            counts: Some(self.clone()),
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

/// A stream with a tap on it: a [`Watch`] on what it reads, or [`Counts`] of its bytes.
pub struct Tapped<S> {
    inner: S,
    watch: Option<Watch>,
    counts: Option<Counts>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tapped<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        let new = &buf.filled()[before..];
        if let Some(counts) = &self.counts {
            counts.read.fetch_add(new.len() as u64, Ordering::Relaxed);
        }
        if let Some(watch) = &self.watch {
            match &result {
                Poll::Ready(Ok(())) => watch.saw(Some(new)),
                Poll::Ready(Err(_)) => watch.saw(None),
                Poll::Pending => {}
            }
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> Tapped<S> {
    fn wrote(&self, result: &Poll<io::Result<usize>>) {
        if let (Some(counts), Poll::Ready(Ok(n))) = (&self.counts, result) {
            counts.written.fetch_add(*n as u64, Ordering::Relaxed);
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tapped<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, data);
        self.wrote(&result);
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
        self.wrote(&result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn the_watch_keeps_enough_for_a_long_plaintext_page_then_stops() {
        // A block page whose marker sits past 12 KiB of inline CSS.
        let mut page = b"HTTP/1.1 403 Forbidden\r\n\r\n<style>".to_vec();
        page.extend(std::iter::repeat_n(b'x', 12 * 1024));
        page.extend_from_slice(b"</style>Not allowed to browse");
        page.extend(std::iter::repeat_n(b'y', 64 * 1024));
        let watch = Watch::default();
        let mut tapped = watch.wrap(&page[..]);
        let mut sink = Vec::new();
        tapped.read_to_end(&mut sink).await.unwrap();
        let (first, died) = watch.seen();
        assert_eq!(first.len(), FIRST_UPSTREAM_KEPT);
        assert!(first.windows(21).any(|w| w == b"Not allowed to browse"));
        assert!(died, "EOF is the upstream closing");
        // After finish, nothing more is copied.
        let watch = Watch::default();
        watch.finish();
        let mut tapped = watch.wrap(&page[..]);
        tapped.read_to_end(&mut sink).await.unwrap();
        assert!(watch.seen().0.is_empty());
    }

    #[tokio::test]
    async fn counts_count_both_ways() {
        use tokio::io::AsyncWriteExt;
        let counts = Counts::default();
        let (a, mut b) = tokio::io::duplex(1024);
        let mut tapped = counts.wrap(a);
        tapped.write_all(b"hello").await.unwrap();
        b.write_all(b"world!").await.unwrap();
        let mut buf = [0u8; 6];
        tapped.read_exact(&mut buf).await.unwrap();
        assert_eq!(counts.get(), (6, 5));
    }
}

//! Body wrappers that count bytes as they stream and report when a body ends, without
//! buffering anything.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body as HttpBody, Frame, SizeHint};

/// Any error a body may carry.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The one body type the proxy sends both ways.
pub type Body = BoxBody<Bytes, BoxError>;

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A body fed chunk by chunk from a channel (the live page's event stream); it ends when
/// the sender is dropped.
pub struct Channel(pub tokio::sync::mpsc::Receiver<Bytes>);

impl HttpBody for Channel {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
    }
}

/// Counts the data bytes that pass into a shared counter (request bodies going upstream).
pub struct Counted<B> {
    inner: B,
    count: Arc<AtomicU64>,
}

impl<B> Counted<B> {
    pub fn new(inner: B, count: Arc<AtomicU64>) -> Self {
        Counted { inner, count }
    }
}

impl<B> HttpBody for Counted<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.count.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }
        polled.map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// How a watched body ended.
pub enum BodyEnd {
    /// Every byte arrived.
    Complete,
    /// The source failed mid-way.
    Error(BoxError),
    /// The reader dropped it before the end (the downstream went away).
    Abandoned,
}

/// What a watched body delivered.
#[derive(Default)]
pub struct Received {
    pub bytes: u64,
    /// When the first data byte passed (an event stream's first event).
    pub first_data: Option<Instant>,
    /// The first bytes of the body, when the watcher was asked to keep them.
    pub prefix: Vec<u8>,
}

impl Received {
    /// Counts a piece of the body as it passes, notes when the first arrived, keeps the
    /// body's first `keep` bytes.
    pub fn note(&mut self, keep: usize, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.bytes += data.len() as u64;
        if self.first_data.is_none() {
            self.first_data = Some(Instant::now());
        }
        if self.prefix.len() < keep {
            let take = data.len().min(keep - self.prefix.len());
            self.prefix.extend_from_slice(&data[..take]);
        }
    }
}

/// Calls `on_end` exactly once, with the byte count, when the body ends however it ends.
pub struct Watched<B, F: FnOnce(Received, BodyEnd)> {
    inner: B,
    received: Received,
    /// How many first bytes to keep for the detectors; the body streams on regardless.
    keep: usize,
    on_end: Option<F>,
    /// The body had nothing to send (HEAD, 204, 304): dropping it unread is not abandoning it.
    empty: bool,
}

impl<B: HttpBody, F: FnOnce(Received, BodyEnd)> Watched<B, F> {
    /// Watches `inner`, keeping its first `keep` bytes (0: none).
    pub fn new(inner: B, keep: usize, on_end: F) -> Self {
        let empty = inner.is_end_stream();
        Watched {
            inner,
            received: Received::default(),
            keep,
            on_end: Some(on_end),
            empty,
        }
    }
}

impl<B, F: FnOnce(Received, BodyEnd)> Watched<B, F> {
    fn end(&mut self, how: BodyEnd) {
        if let Some(f) = self.on_end.take() {
            f(std::mem::take(&mut self.received), how);
        }
    }
}

impl<B, F> HttpBody for Watched<B, F>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
    F: FnOnce(Received, BodyEnd) + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                self.end(BodyEnd::Complete);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let keep = self.keep;
                    self.received.note(keep, data);
                }
                if self.inner.is_end_stream() {
                    self.end(BodyEnd::Complete);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                let e: BoxError = e.into();
                let copy: BoxError = crate::failure::error_chain(&*e).into();
                self.end(BodyEnd::Error(copy));
                Poll::Ready(Some(Err(e)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B, F: FnOnce(Received, BodyEnd)> Drop for Watched<B, F> {
    fn drop(&mut self) {
        let how = if self.empty {
            BodyEnd::Complete
        } else {
            BodyEnd::Abandoned
        };
        self.end(how);
    }
}

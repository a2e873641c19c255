//! Relaying a byte stream both ways (tunnels, intercepted WebSockets): half-close honoured,
//! who closed or broke it first recorded, an idle timeout, and byte counts and clocks for
//! the event. Between two TCP sockets the bytes move with `splice(2)` once the detectors have
//! seen the start and the stream turns out to be bulk; otherwise through a small buffer.

use std::io;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::zerocopy::{Broke, Pipe};
use crate::failure::Side;
use crate::session::event::TunnelEnd;
use crate::upstream::dial::Io;

/// A direction's first read buffer, and what it grows to under bulk transfer. Idle tunnels
/// are the common case (browsers keep many open), so buffers start small, and between TCP
/// sockets are not allocated until the first bytes are ready.
const SMALL_BUFFER: usize = 4 * 1024;
const LARGE_BUFFER: usize = 64 * 1024;

/// What a relayed pair of streams did.
pub struct Spliced {
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// From the start to the first upstream byte.
    pub first_down: Option<Duration>,
    pub end: TunnelEnd,
    /// The upstream's error, when it broke the connection.
    pub upstream_error: Option<io::Error>,
}

/// The two TCP sockets of a tunnel, with bytes each side sent that an HTTP parser already
/// read (the downstream's with its CONNECT, the corporate proxy's with its answer).
pub struct Ends {
    pub downstream: TcpStream,
    /// Already read from the downstream; goes upstream first.
    pub early_up: Bytes,
    pub upstream: TcpStream,
    /// Already read from the upstream; goes downstream first.
    pub early_down: Bytes,
}

/// Relays between two TCP sockets until both sides are done, one fails, or nothing moves for
/// `idle`. `watch_up` / `watch_down` see each direction's chunks for as long as they return
/// true; after that, bulk transfer is spliced (Linux) instead of copied.
pub async fn tcp(
    ends: Ends,
    idle: Duration,
    watch_up: impl FnMut(&[u8]) -> bool,
    watch_down: impl FnMut(&[u8]) -> bool,
    stop: impl std::future::Future<Output = ()>,
) -> Spliced {
    let meter = Meter::new();
    let (down, up) = (&ends.downstream, &ends.upstream);
    let upward = pump_tcp(down, up, ends.early_up, Side::Downstream, &meter, watch_up);
    let downward = pump_tcp(
        up,
        down,
        ends.early_down,
        Side::Upstream,
        &meter,
        watch_down,
    );
    drive(upward, downward, &meter, idle, stop).await
}

/// The same for any two byte streams (a corporate proxy's tunnel, an intercepted
/// WebSocket), always through a buffer.
pub async fn streams(
    downstream: impl Io,
    upstream: impl Io,
    idle: Duration,
    watch_up: impl FnMut(&[u8]) -> bool,
    watch_down: impl FnMut(&[u8]) -> bool,
    stop: impl std::future::Future<Output = ()>,
) -> Spliced {
    let meter = Meter::new();
    let (mut down_read, mut down_write) = tokio::io::split(downstream);
    let (mut up_read, mut up_write) = tokio::io::split(upstream);
    let upward = pump(
        &mut down_read,
        &mut up_write,
        Side::Downstream,
        &meter,
        watch_up,
    );
    let downward = pump(
        &mut up_read,
        &mut down_write,
        Side::Upstream,
        &meter,
        watch_down,
    );
    drive(upward, downward, &meter, idle, stop).await
}

type Pumped = Result<(), (Side, io::Error)>;

/// Runs both directions to the end (or the idle timeout) and says how it ended.
async fn drive(
    upward: impl std::future::Future<Output = Pumped>,
    downward: impl std::future::Future<Output = Pumped>,
    meter: &Meter,
    idle: Duration,
    stop: impl std::future::Future<Output = ()>,
) -> Spliced {
    let mut upstream_error = None;
    let end = tokio::select! {
        result = async { tokio::try_join!(upward, downward) } => match result {
            Ok(_) if meter.first_close.load(Ordering::Relaxed) == CLOSED_BY_UPSTREAM => TunnelEnd::UpstreamClosed,
            Ok(_) => TunnelEnd::DownstreamClosed,
            Err((Side::Downstream, _)) => TunnelEnd::DownstreamReset,
            Err((_, e)) => {
                upstream_error = Some(e);
                TunnelEnd::UpstreamReset
            }
        },
        () = idle_deadline(meter, idle) => TunnelEnd::IdleTimeout,
        () = stop => TunnelEnd::OpenAtShutdown,
    };
    let first = meter.first_down_us.load(Ordering::Relaxed);
    Spliced {
        bytes_up: meter.up.load(Ordering::Relaxed),
        bytes_down: meter.down.load(Ordering::Relaxed),
        first_down: (first > 0).then(|| Duration::from_micros(first - 1)),
        end,
        upstream_error,
    }
}

/// One direction between TCP sockets: copied while watched, then copied in small chunks
/// until a read fills the large buffer (bulk), then spliced. `from` is the side whose read
/// errors are its own; write errors belong to the other side. EOF becomes a half-close.
async fn pump_tcp(
    from: &TcpStream,
    to: &TcpStream,
    early: Bytes,
    from_side: Side,
    meter: &Meter,
    mut watch: impl FnMut(&[u8]) -> bool,
) -> Pumped {
    let to_side = other(from_side);
    let mut watching = true;
    if !early.is_empty() {
        meter.arrived(from_side);
        watching = watch(&early);
        write_all(to, &early).await.map_err(|e| (to_side, e))?;
        meter.moved(from_side, early.len());
    }
    // `early` can be a view of the HTTP parser's whole read buffer (8 KiB or more); an idle
    // tunnel must not keep that alive for hours.
    drop(early);
    let mut buf = Vec::new();
    let mut pipe: Option<Pipe> = None;
    loop {
        let n = match pipe.as_mut() {
            Some(pipe) => pipe.transfer(from, to).await.map_err(|broke| match broke {
                Broke::Reading(e) => (from_side, e),
                Broke::Writing(e) => (to_side, e),
            })?,
            None => {
                let n = read(from, &mut buf).await.map_err(|e| (from_side, e))?;
                if n > 0 {
                    meter.arrived(from_side);
                }
                if watching && n > 0 {
                    watching = watch(&buf[..n]);
                }
                write_all(to, &buf[..n]).await.map_err(|e| (to_side, e))?;
                if !watching && n == LARGE_BUFFER {
                    // Bulk: from now on the kernel moves the bytes (if it can).
                    if let Ok(p) = Pipe::new() {
                        pipe = Some(p);
                        buf = Vec::new();
                    }
                }
                n
            }
        };
        if n == 0 {
            meter.closed(from_side);
            let _ = socket2::SockRef::from(to).shutdown(std::net::Shutdown::Write);
            return Ok(());
        }
        meter.moved(from_side, n);
    }
}

/// Reads what `from` has into `buf`, allocating it when the first bytes are ready and
/// growing it when a read fills it.
async fn read(from: &TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    loop {
        from.readable().await?;
        if buf.is_empty() {
            buf.resize(SMALL_BUFFER, 0);
        }
        match from.try_read(buf) {
            Ok(n) => {
                if n == buf.len() && buf.len() < LARGE_BUFFER {
                    buf.resize(LARGE_BUFFER, 0);
                }
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

async fn write_all(to: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        to.writable().await?;
        match to.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One direction between any two streams, through a buffer.
async fn pump<R, W>(
    reader: &mut R,
    writer: &mut W,
    from: Side,
    meter: &Meter,
    mut watch: impl FnMut(&[u8]) -> bool,
) -> Pumped
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let to = other(from);
    let mut watching = true;
    let mut buf = vec![0u8; SMALL_BUFFER];
    loop {
        let n = reader.read(&mut buf).await.map_err(|e| (from, e))?;
        if n == 0 {
            meter.closed(from);
            let _ = writer.shutdown().await;
            return Ok(());
        }
        meter.arrived(from);
        if watching {
            watching = watch(&buf[..n]);
        }
        writer.write_all(&buf[..n]).await.map_err(|e| (to, e))?;
        meter.moved(from, n);
        if n == buf.len() && buf.len() < LARGE_BUFFER {
            buf.resize(LARGE_BUFFER, 0);
        }
    }
}

fn other(side: Side) -> Side {
    if side == Side::Downstream {
        Side::Upstream
    } else {
        Side::Downstream
    }
}

const CLOSED_BY_DOWNSTREAM: u8 = 1;
const CLOSED_BY_UPSTREAM: u8 = 2;

/// Byte counts and clocks both directions update.
struct Meter {
    start: Instant,
    up: AtomicU64,
    down: AtomicU64,
    /// Milliseconds from `start` to the last byte moved either way.
    last_activity_ms: AtomicU64,
    /// Microseconds from `start` to the first upstream byte, plus one (0: none yet).
    first_down_us: AtomicU64,
    /// Which side closed first (`CLOSED_BY_*`), 0 while both are open.
    first_close: AtomicU8,
}

impl Meter {
    fn new() -> Meter {
        Meter {
            start: Instant::now(),
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            last_activity_ms: AtomicU64::new(0),
            first_down_us: AtomicU64::new(0),
            first_close: AtomicU8::new(0),
        }
    }

    /// Bytes arrived from `from` (called as they are read: the first upstream byte's time
    /// is the tunnel's time to first byte).
    fn arrived(&self, from: Side) {
        if from == Side::Upstream && self.first_down_us.load(Ordering::Relaxed) == 0 {
            let us = self.start.elapsed().as_micros() as u64;
            self.first_down_us.store(us + 1, Ordering::Relaxed);
        }
    }

    /// `n` bytes went from `from` to the other side.
    fn moved(&self, from: Side, n: usize) {
        let count = if from == Side::Downstream {
            &self.up
        } else {
            &self.down
        };
        count.fetch_add(n as u64, Ordering::Relaxed);
        self.last_activity_ms
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// `from` closed its sending side (remembered if it was first).
    fn closed(&self, from: Side) {
        let code = if from == Side::Downstream {
            CLOSED_BY_DOWNSTREAM
        } else {
            CLOSED_BY_UPSTREAM
        };
        let _ = self
            .first_close
            .compare_exchange(0, code, Ordering::Relaxed, Ordering::Relaxed);
    }
}

async fn idle_deadline(meter: &Meter, idle: Duration) {
    loop {
        let last = Duration::from_millis(meter.last_activity_ms.load(Ordering::Relaxed));
        let deadline = meter.start + last + idle;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline.into()).await;
    }
}

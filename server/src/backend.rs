//! The two engines behind one worker loop: io_uring ([`ring`](crate::ring)) where the kernel
//! allows it, and readiness polling ([`poll`](crate::poll), epoll through `mio`) anywhere else.
//! Both take the same requests and give completions with the same meaning, so the worker's
//! logic (handshakes, sessions, rooms, timers, shutdown) is one and the same on either.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

use sockeye_codec::session::Outgoing;

use crate::config::Engine;
use crate::poll::{self, Poller};
use crate::ring::{self, BufRing, Op, Ring, SendQueue};

/// The engine a worker runs on, with its receive buffers.
pub(crate) enum Backend {
    Uring(Ring),
    Poll(Poller),
}

/// A worker's receive buffers: the ring's provided-buffer ring, or the poller's pool.
pub(crate) enum Bufs {
    Uring(BufRing),
    Poll(poll::Bufs),
}

/// A completed request, from either engine.
pub(crate) enum Completion {
    Uring(ring::Completion),
    Poll(poll::Completion),
}

/// A filled receive buffer, from either engine.
pub(crate) enum RecvBuf {
    Uring(ring::RecvBuf),
    Poll(poll::RecvBuf),
}

/// The engine to run: `engine` itself, or for [`Engine::Auto`] the one `SOCKEYE_ENGINE`
/// (`uring` or `poll`) names, else io_uring when a ring with a provided-buffer ring can be set
/// up, else the poller, with the reason io_uring was refused.
pub(crate) fn resolve(engine: Engine) -> (Engine, Option<io::Error>) {
    match engine {
        Engine::Auto => match std::env::var("SOCKEYE_ENGINE").ok().map(|v| v.parse()) {
            Some(Ok(e @ (Engine::Uring | Engine::Poll))) => (e, None),
            other => {
                if let Some(Err(why)) = other {
                    tracing::warn!(%why, "SOCKEYE_ENGINE ignored");
                }
                match probe() {
                    Ok(()) => (Engine::Uring, None),
                    Err(e) => (Engine::Poll, Some(e)),
                }
            }
        },
        e => (e, None),
    }
}

/// Sets up (and drops) a small ring with a provided-buffer ring, on a thread of its own: the
/// kernel's teardown of a ring runs task work on the thread that made it, which interrupts a
/// blocking call with a timeout there (`EINTR` from a socket read with `SO_RCVTIMEO`, seen in
/// this crate's tests); the caller of `Server::start` must not get that.
fn probe() -> io::Result<()> {
    std::thread::Builder::new()
        .name("sockeye-probe".into())
        .spawn(|| {
            let mut ring = Ring::new(8)?;
            let bufs = BufRing::new(0, 1, 4096)?;
            ring.register(&bufs)
        })?
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the io_uring probe panicked")))
}

impl Backend {
    /// A backend of `engine` (`Uring` or `Poll`) with `count` receive buffers of `size` bytes.
    pub(crate) fn new(engine: Engine, count: u16, size: usize) -> io::Result<(Backend, Bufs)> {
        match engine {
            Engine::Poll => {
                let bufs = poll::Bufs::new(count, size);
                Ok((Backend::Poll(Poller::new(bufs.clone())?), Bufs::Poll(bufs)))
            }
            Engine::Uring | Engine::Auto => {
                let mut ring = Ring::new(4096).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!(
                            "io_uring is not available ({e}). The io_uring engine needs Linux \
                             6.0 or later with io_uring enabled; in a container, allow the \
                             io_uring syscalls (Docker's default seccomp profile blocks them: \
                             run with a profile that allows io_uring_setup, io_uring_enter and \
                             io_uring_register), and check that \
                             /proc/sys/kernel/io_uring_disabled is 0. Or run on the portable \
                             engine: --engine poll (or auto)"
                        ),
                    )
                })?;
                let bufs = BufRing::new(0, count, size)?;
                ring.register(&bufs)?;
                Ok((Backend::Uring(ring), Bufs::Uring(bufs)))
            }
        }
    }

    /// The engine's name and mode, for the log.
    pub(crate) fn mode(&self) -> &'static str {
        match self {
            Backend::Uring(r) => r.mode,
            Backend::Poll(_) => "poll",
        }
    }

    pub(crate) fn accept_multi(&mut self, fd: BorrowedFd<'_>, data: u64) -> io::Result<()> {
        match self {
            Backend::Uring(r) => r.accept_multi(fd.as_raw_fd(), data),
            Backend::Poll(p) => p.accept_multi(fd),
        }
    }

    pub(crate) fn recv_multi(
        &mut self,
        fd: BorrowedFd<'_>,
        bufs: &Bufs,
        data: u64,
    ) -> io::Result<()> {
        match (self, bufs) {
            (Backend::Uring(r), Bufs::Uring(b)) => r.recv_multi(fd.as_raw_fd(), b, data),
            (Backend::Poll(p), Bufs::Poll(_)) => p.recv_multi(fd, data),
            _ => Err(io::Error::other("receive buffers of another engine")),
        }
    }

    #[inline]
    pub(crate) fn send(
        &mut self,
        fd: BorrowedFd<'_>,
        q: &mut SendQueue,
        out: &mut Outgoing,
        data: u64,
    ) -> io::Result<bool> {
        match self {
            Backend::Uring(r) => r.send(fd.as_raw_fd(), q, out, data),
            Backend::Poll(p) => p.send(fd, q, out, data),
        }
    }

    pub(crate) fn tick(&mut self, period: Duration) -> io::Result<()> {
        match self {
            Backend::Uring(r) => r.tick(period),
            Backend::Poll(p) => p.tick(period),
        }
    }

    pub(crate) fn read_eventfd(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        match self {
            Backend::Uring(r) => r.read_eventfd(fd.as_raw_fd()),
            Backend::Poll(p) => p.read_eventfd(fd),
        }
    }

    pub(crate) fn cancel(&mut self, op: Op, data: u64) -> io::Result<()> {
        match self {
            Backend::Uring(r) => r.cancel(op, data),
            Backend::Poll(p) => p.cancel(op, data),
        }
    }

    pub(crate) fn submit_and_wait(&mut self, want: usize) -> io::Result<usize> {
        match self {
            Backend::Uring(r) => r.submit_and_wait(want),
            Backend::Poll(p) => p.submit_and_wait(want),
        }
    }

    pub(crate) fn submit_and_wait_timeout(
        &mut self,
        want: usize,
        timeout: Duration,
    ) -> io::Result<usize> {
        match self {
            Backend::Uring(r) => r.submit_and_wait_timeout(want, timeout),
            Backend::Poll(p) => p.submit_and_wait_timeout(want, timeout),
        }
    }

    pub(crate) fn connect(
        &mut self,
        fd: BorrowedFd<'_>,
        addr: socket2::SockAddr,
        data: u64,
    ) -> io::Result<()> {
        match self {
            Backend::Uring(r) => r.connect(fd.as_raw_fd(), addr, data),
            Backend::Poll(p) => p.connect(fd, addr, data),
        }
    }

    /// Moves the completions that arrived into `out` (cleared first by the caller).
    pub(crate) fn completions(&mut self, out: &mut Vec<Completion>, scratch: &mut Scratch) {
        match self {
            Backend::Uring(r) => {
                r.completions(&mut scratch.uring);
                out.extend(scratch.uring.drain(..).map(Completion::Uring));
            }
            Backend::Poll(p) => {
                p.completions(&mut scratch.poll);
                out.extend(scratch.poll.drain(..).map(Completion::Poll));
            }
        }
    }
}

/// Reused vectors for [`Backend::completions`].
#[derive(Default)]
pub(crate) struct Scratch {
    uring: Vec<ring::Completion>,
    poll: Vec<poll::Completion>,
}

impl Completion {
    #[inline]
    pub(crate) fn op(&self) -> Option<Op> {
        match self {
            Completion::Uring(c) => c.op(),
            Completion::Poll(c) => c.op(),
        }
    }

    #[inline]
    pub(crate) fn data(&self) -> u64 {
        match self {
            Completion::Uring(c) => c.data(),
            Completion::Poll(c) => c.data(),
        }
    }

    #[inline]
    pub(crate) fn result(&self) -> i32 {
        match self {
            Completion::Uring(c) => c.result(),
            Completion::Poll(c) => c.result(),
        }
    }

    #[inline]
    pub(crate) fn more(&self) -> bool {
        match self {
            Completion::Uring(c) => c.more(),
            Completion::Poll(c) => c.more(),
        }
    }

    pub(crate) fn accepted_fd(&mut self) -> Option<std::os::fd::OwnedFd> {
        match self {
            Completion::Uring(c) => c.accepted_fd(),
            Completion::Poll(c) => c.accepted_fd(),
        }
    }
}

impl Bufs {
    /// Claims the buffer a receive's completion carries, once; `None` if it carries none (or
    /// comes from the other engine, which cannot happen: a worker has one of each).
    #[inline]
    pub(crate) fn take(&self, c: &mut Completion) -> Option<RecvBuf> {
        match (self, c) {
            (Bufs::Uring(b), Completion::Uring(c)) => b.take(c).map(RecvBuf::Uring),
            (Bufs::Poll(_), Completion::Poll(c)) => poll::Bufs::take(c).map(RecvBuf::Poll),
            _ => None,
        }
    }

    /// The received bytes, mutable so the codec can unmask them in place.
    #[inline]
    pub(crate) fn bytes<'a>(&'a mut self, buf: &'a mut RecvBuf) -> &'a mut [u8] {
        match (self, buf) {
            (Bufs::Uring(b), RecvBuf::Uring(r)) => b.bytes(r),
            (_, RecvBuf::Poll(r)) => poll::Bufs::bytes(r),
            (Bufs::Poll(_), RecvBuf::Uring(_)) => &mut [],
        }
    }

    /// Gives the buffer back.
    #[inline]
    pub(crate) fn recycle(&mut self, buf: RecvBuf) {
        match (self, buf) {
            (Bufs::Uring(b), RecvBuf::Uring(r)) => b.recycle(r),
            (Bufs::Poll(p), RecvBuf::Poll(r)) => p.recycle(r),
            // Cannot happen (one engine per worker); the buffer is dropped.
            _ => {}
        }
    }
}

//! The portable engine's I/O: readiness polling (epoll on Linux, kqueue on the BSDs and macOS,
//! through `mio`) shaped like the io_uring layer, so one worker loop drives either.
//!
//! The worker asks for the same operations it asks of the ring (arm a multishot accept or
//! receive, send a connection's queue, connect, cancel, arm the tick and the eventfd read) and
//! gets the same completions back, with the same meaning: a receive completes once per buffer
//! read and ends (`more() == false`) at EOF, on an error or when cancelled; a send completes
//! with the bytes written. Here the engine does the syscalls itself when the descriptor is
//! ready, so every `Outgoing` byte is written synchronously from the caller's thread and no
//! buffer is ever shared with the kernel beyond one call.
//!
//! Readiness is edge-triggered: each descriptor's last known readiness is cached (`readable`,
//! `writable`), cleared only by `EAGAIN` (or a short read, which on a stream socket means the
//! kernel had no more), and set again by an event. Once an event said the peer's end closed
//! (or the socket failed), a short read no longer clears it: the end of the stream (or the
//! error) that came with the last bytes raises no further edge, so reads go on until they
//! return it. A send that meets `EAGAIN` stays in flight
//! until the socket is writable; then it completes with 0 bytes and the worker submits it again.
//!
//! # Descriptors
//! The engine touches a connection's descriptor only while the worker has a request armed on
//! it (a receive, a send in flight, a connect), which is exactly when the worker keeps the
//! descriptor open (it frees a connection only once none is armed, as with the ring); its entry
//! here is removed, and the descriptor deregistered, when the last one completes.

#![allow(unsafe_code)]

use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Token};
use sockeye_codec::session::Outgoing;

use crate::ring::{Op, SendQueue};

/// Most iovecs in one `sendmsg` (as the ring's sends).
const MAX_IOV: usize = 64;
/// Accepts per turn before other descriptors get their turn.
const ACCEPTS_PER_TURN: usize = 64;
/// Tokens of the two descriptors that are not connections (user data is below 2^56).
const LISTENER: usize = 1 << 60;
const WAKE: usize = 1 << 61;

/// One completion, as the poller made it.
#[derive(Debug)]
pub(crate) struct Completion {
    op: Op,
    data: u64,
    result: i32,
    more: bool,
    /// An accepted connection's descriptor.
    fd: Option<OwnedFd>,
    /// A receive's buffer (`result` bytes of it are filled).
    buf: Option<Box<[u8]>>,
}

impl Completion {
    fn new(op: Op, data: u64, result: i32, more: bool) -> Completion {
        Completion {
            op,
            data,
            result,
            more,
            fd: None,
            buf: None,
        }
    }

    pub(crate) fn op(&self) -> Option<Op> {
        Some(self.op)
    }

    pub(crate) fn data(&self) -> u64 {
        self.data
    }

    pub(crate) fn result(&self) -> i32 {
        self.result
    }

    pub(crate) fn more(&self) -> bool {
        self.more
    }

    pub(crate) fn accepted_fd(&mut self) -> Option<OwnedFd> {
        self.fd.take()
    }
}

/// The receive buffers: filled by the poller, lent to the worker, given back after dispatch.
/// At most `cap` are out at once (further reads wait for the next turn), so the pool holds at
/// most `cap` buffers of `size` bytes, as the ring's arena does.
pub(crate) struct Pool {
    free: Vec<Box<[u8]>>,
    out: usize,
    cap: usize,
    size: usize,
}

/// The worker's handle on the pool.
#[derive(Clone)]
pub(crate) struct Bufs(Rc<RefCell<Pool>>);

/// A filled receive buffer; give it back with [`Bufs::recycle`].
#[must_use = "a RecvBuf must be recycled"]
pub(crate) struct RecvBuf {
    buf: Box<[u8]>,
    len: usize,
}

impl Bufs {
    pub(crate) fn new(cap: u16, size: usize) -> Bufs {
        Bufs(Rc::new(RefCell::new(Pool {
            free: Vec::new(),
            out: 0,
            cap: usize::from(cap.max(1)),
            size,
        })))
    }

    pub(crate) fn take(c: &mut Completion) -> Option<RecvBuf> {
        if c.op != Op::Recv {
            return None;
        }
        let buf = c.buf.take()?;
        let len = usize::try_from(c.result).unwrap_or(0).min(buf.len());
        Some(RecvBuf { buf, len })
    }

    pub(crate) fn bytes(buf: &mut RecvBuf) -> &mut [u8] {
        &mut buf.buf[..buf.len]
    }

    pub(crate) fn recycle(&self, buf: RecvBuf) {
        let mut pool = self.0.borrow_mut();
        pool.out -= 1;
        pool.free.push(buf.buf);
    }

    fn get(&self) -> Option<Box<[u8]>> {
        let mut pool = self.0.borrow_mut();
        if pool.out >= pool.cap {
            return None;
        }
        pool.out += 1;
        let size = pool.size;
        Some(
            pool.free
                .pop()
                .unwrap_or_else(|| vec![0; size].into_boxed_slice()),
        )
    }

    fn put_back(&self, buf: Box<[u8]>) {
        let mut pool = self.0.borrow_mut();
        pool.out -= 1;
        pool.free.push(buf);
    }
}

/// What the poller knows of one connection's descriptor.
struct Entry {
    data: u64,
    fd: RawFd,
    readable: bool,
    writable: bool,
    /// A multishot receive is armed.
    recv: bool,
    /// A send met `EAGAIN` and is in flight until the socket is writable.
    send_waiting: bool,
    /// A non-blocking connect is in progress.
    connecting: bool,
    /// In `Poller::listed`.
    listed: bool,
    /// An event said the read side is closed or the socket failed.
    closed: bool,
}

/// The listener or the eventfd.
#[derive(Default)]
struct Special {
    fd: Option<RawFd>,
    armed: bool,
    readable: bool,
    listed: bool,
}

struct Tick {
    period: Duration,
    next: Instant,
}

/// A worker's poller, in the shape of [`Ring`](crate::ring::Ring).
pub(crate) struct Poller {
    poll: mio::Poll,
    events: Events,
    /// By connection slot (the low 32 bits of the user data).
    entries: Vec<Option<Entry>>,
    listener: Special,
    wake: Special,
    tick: Option<Tick>,
    /// Tokens whose readiness or requests changed: worth an attempt.
    listed: Vec<usize>,
    ready: Vec<Completion>,
    bufs: Bufs,
}

fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

impl Poller {
    pub(crate) fn new(bufs: Bufs) -> io::Result<Poller> {
        Ok(Poller {
            poll: mio::Poll::new()?,
            events: Events::with_capacity(1024),
            entries: Vec::new(),
            listener: Special::default(),
            wake: Special::default(),
            tick: None,
            listed: Vec::new(),
            ready: Vec::new(),
            bufs,
        })
    }

    fn slot(data: u64) -> usize {
        data as u32 as usize
    }

    /// The entry of connection `data`, registered on first use.
    fn entry(&mut self, fd: RawFd, data: u64) -> io::Result<&mut Entry> {
        let slot = Self::slot(data);
        if self.entries.len() <= slot {
            self.entries.resize_with(slot + 1, || None);
        }
        if self.entries[slot].as_ref().is_some_and(|e| e.data != data) {
            // A freed connection's entry is removed when its last request ends; a new one in
            // the slot means the old one's descriptor is closed, so only its entry remains.
            self.entries[slot] = None;
        }
        if self.entries[slot].is_none() {
            self.poll.registry().register(
                &mut SourceFd(&fd),
                Token(data as usize),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            self.entries[slot] = Some(Entry {
                data,
                fd,
                // Optimistic: one attempt finds out (and registering reports readiness too).
                readable: true,
                writable: true,
                recv: false,
                send_waiting: false,
                connecting: false,
                listed: false,
                closed: false,
            });
        }
        Ok(self.entries[slot].as_mut().expect("just made"))
    }

    fn list(listed: &mut Vec<usize>, flag: &mut bool, token: usize) {
        if !*flag {
            *flag = true;
            listed.push(token);
        }
    }

    /// Removes (and deregisters) an entry with no request armed.
    fn retire(&mut self, slot: usize) {
        let Some(e) = self.entries.get(slot).and_then(Option::as_ref) else {
            return;
        };
        if e.recv || e.send_waiting || e.connecting {
            return;
        }
        let _ = self.poll.registry().deregister(&mut SourceFd(&e.fd));
        self.entries[slot] = None;
    }

    pub(crate) fn accept_multi(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        let raw = fd.as_raw_fd();
        if self.listener.fd.is_none() {
            // Accepting stops at EAGAIN; the ring's listener is a blocking socket.
            socket2::SockRef::from(&fd).set_nonblocking(true)?;
            self.poll.registry().register(
                &mut SourceFd(&raw),
                Token(LISTENER),
                Interest::READABLE,
            )?;
            self.listener.fd = Some(raw);
            self.listener.readable = true;
        }
        self.listener.armed = true;
        Self::list(&mut self.listed, &mut self.listener.listed, LISTENER);
        Ok(())
    }

    pub(crate) fn recv_multi(&mut self, fd: BorrowedFd<'_>, data: u64) -> io::Result<()> {
        let e = self.entry(fd.as_raw_fd(), data)?;
        e.recv = true;
        if e.readable && !e.listed {
            e.listed = true;
            self.listed.push(data as usize);
        }
        Ok(())
    }

    /// Writes the queue's sealed frames now (one `sendmsg`, `MSG_NOSIGNAL`); the completion
    /// says how much went out. On `EAGAIN` the send stays in flight until the socket is
    /// writable, then completes with 0 bytes. False if there is nothing to send or a send is
    /// in flight.
    pub(crate) fn send(
        &mut self,
        fd: BorrowedFd<'_>,
        q: &mut SendQueue,
        out: &mut Outgoing,
        data: u64,
    ) -> io::Result<bool> {
        if !q.load(out) {
            return Ok(false);
        }
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        let mut n = 0;
        for (slot, part) in iov.iter_mut().zip(q.chunks()) {
            *slot = IoSlice::new(part);
            n += 1;
        }
        let sent =
            socket2::SockRef::from(&fd).send_vectored_with_flags(&iov[..n], libc::MSG_NOSIGNAL);
        q.begin();
        match sent {
            Ok(n) => self.ready.push(Completion::new(
                Op::Send,
                data,
                i32::try_from(n).unwrap_or(i32::MAX),
                false,
            )),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let e = self.entry(fd.as_raw_fd(), data)?;
                e.writable = false;
                e.send_waiting = true;
            }
            Err(e) => self
                .ready
                .push(Completion::new(Op::Send, data, -errno(&e), false)),
        }
        Ok(true)
    }

    pub(crate) fn tick(&mut self, period: Duration) -> io::Result<()> {
        self.tick = Some(Tick {
            period,
            next: Instant::now() + period,
        });
        Ok(())
    }

    pub(crate) fn read_eventfd(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        let raw = fd.as_raw_fd();
        if self.wake.fd.is_none() {
            self.poll
                .registry()
                .register(&mut SourceFd(&raw), Token(WAKE), Interest::READABLE)?;
            self.wake.fd = Some(raw);
            self.wake.readable = true;
        }
        self.wake.armed = true;
        Self::list(&mut self.listed, &mut self.wake.listed, WAKE);
        Ok(())
    }

    /// Ends every request of kind `op` with user data `data`, as the ring's cancel does: the
    /// request completes with `ECANCELED` (and no more).
    pub(crate) fn cancel(&mut self, op: Op, data: u64) -> io::Result<()> {
        let cancelled = |op| Completion::new(op, data, -libc::ECANCELED, false);
        match op {
            Op::Accept if self.listener.armed => {
                self.listener.armed = false;
                self.ready.push(cancelled(op));
            }
            Op::Wake if self.wake.armed => {
                self.wake.armed = false;
                self.ready.push(cancelled(op));
            }
            Op::Tick if self.tick.is_some() => {
                self.tick = None;
                self.ready.push(cancelled(op));
            }
            Op::Recv | Op::Connect => {
                let slot = Self::slot(data);
                if let Some(e) = self.entries.get_mut(slot).and_then(Option::as_mut)
                    && e.data == data
                {
                    let armed = match op {
                        Op::Recv => std::mem::take(&mut e.recv),
                        _ => std::mem::take(&mut e.connecting),
                    };
                    if armed {
                        self.ready.push(cancelled(op));
                    }
                    self.retire(slot);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Starts a non-blocking connect of `fd` (made non-blocking here) to `addr`.
    pub(crate) fn connect(
        &mut self,
        fd: BorrowedFd<'_>,
        addr: socket2::SockAddr,
        data: u64,
    ) -> io::Result<()> {
        let sock = socket2::SockRef::from(&fd);
        sock.set_nonblocking(true)?;
        match sock.connect(&addr) {
            Ok(()) => self
                .ready
                .push(Completion::new(Op::Connect, data, 0, false)),
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
                let e = self.entry(fd.as_raw_fd(), data)?;
                e.connecting = true;
                e.writable = false;
            }
            Err(e) => self
                .ready
                .push(Completion::new(Op::Connect, data, -errno(&e), false)),
        }
        Ok(())
    }

    pub(crate) fn submit_and_wait(&mut self, want: usize) -> io::Result<usize> {
        self.wait(want, None)
    }

    pub(crate) fn submit_and_wait_timeout(
        &mut self,
        want: usize,
        timeout: Duration,
    ) -> io::Result<usize> {
        self.wait(want, Some(timeout))
    }

    /// Attempts what is ready; if that completes fewer than `want` requests, waits for
    /// readiness (until the next tick or `limit`) once and attempts again.
    fn wait(&mut self, want: usize, limit: Option<Duration>) -> io::Result<usize> {
        self.attempt();
        if self.ready.len() >= want {
            return Ok(self.ready.len());
        }
        let now = Instant::now();
        let until_tick = self
            .tick
            .as_ref()
            .map(|t| t.next.saturating_duration_since(now));
        let timeout = match (until_tick, limit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let timeout = match self.listed.is_empty() {
            true => timeout,
            false => Some(Duration::ZERO), // reads deferred for want of buffers
        };
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        for ev in self.events.iter() {
            let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
            let writable = ev.is_writable() || ev.is_write_closed() || ev.is_error();
            match ev.token().0 {
                LISTENER => {
                    self.listener.readable = true;
                    Self::list(&mut self.listed, &mut self.listener.listed, LISTENER);
                }
                WAKE => {
                    self.wake.readable = true;
                    Self::list(&mut self.listed, &mut self.wake.listed, WAKE);
                }
                token => {
                    let slot = Self::slot(token as u64);
                    if let Some(e) = self.entries.get_mut(slot).and_then(Option::as_mut)
                        && e.data == token as u64
                    {
                        e.readable |= readable;
                        e.writable |= writable;
                        e.closed |= ev.is_read_closed() || ev.is_error();
                        Self::list(&mut self.listed, &mut e.listed, token);
                    }
                }
            }
        }
        self.attempt();
        Ok(self.ready.len())
    }

    /// Does the I/O of every listed descriptor and the tick if due.
    fn attempt(&mut self) {
        if let Some(t) = &mut self.tick {
            let now = Instant::now();
            if now >= t.next {
                t.next = (t.next + t.period).max(now);
                self.ready
                    .push(Completion::new(Op::Tick, 0, -libc::ETIME, true));
            }
        }
        let listed = std::mem::take(&mut self.listed);
        for &token in &listed {
            match token {
                LISTENER => {
                    self.listener.listed = false;
                    self.accept_some();
                }
                WAKE => {
                    self.wake.listed = false;
                    self.read_wake();
                }
                token => self.conn_io(token as u64),
            }
        }
        // Reuse the allocation when nothing was listed meanwhile.
        if self.listed.is_empty() {
            self.listed = listed;
            self.listed.clear();
        }
    }

    fn accept_some(&mut self) {
        let Some(fd) = self.listener.fd else { return };
        if !self.listener.armed || !self.listener.readable {
            return;
        }
        for _ in 0..ACCEPTS_PER_TURN {
            // SAFETY: accept4 with no address output writes to no memory of ours; `fd` is the
            // listener the worker keeps open for as long as it runs.
            let new = unsafe {
                libc::accept4(
                    fd,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                )
            };
            if new >= 0 {
                let mut c = Completion::new(Op::Accept, 0, new, true);
                // SAFETY: a non-negative result of accept4 is a new descriptor nobody owns.
                c.fd = Some(unsafe { OwnedFd::from_raw_fd(new) });
                self.ready.push(c);
                continue;
            }
            let err = io::Error::last_os_error();
            match errno(&err) {
                libc::EAGAIN => {
                    self.listener.readable = false;
                    return;
                }
                libc::EINTR | libc::ECONNABORTED | libc::EPROTO => continue,
                e @ (libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                    // Ends the multishot accept, as the ring's does: re-armed at a tick.
                    self.listener.armed = false;
                    self.ready.push(Completion::new(Op::Accept, 0, -e, false));
                    return;
                }
                e => {
                    self.ready.push(Completion::new(Op::Accept, 0, -e, true));
                    return;
                }
            }
        }
        Self::list(&mut self.listed, &mut self.listener.listed, LISTENER);
    }

    fn read_wake(&mut self) {
        let Some(fd) = self.wake.fd else { return };
        if !self.wake.armed || !self.wake.readable {
            return;
        }
        let mut buf = [0u8; 8];
        // SAFETY: reads at most 8 bytes into an 8-byte buffer; `fd` is the worker's eventfd,
        // open for as long as the worker runs.
        let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), 8) };
        if r == 8 {
            self.wake.armed = false;
            self.ready.push(Completion::new(Op::Wake, 0, 8, false));
            return;
        }
        let err = io::Error::last_os_error();
        match errno(&err) {
            libc::EAGAIN => self.wake.readable = false,
            libc::EINTR => Self::list(&mut self.listed, &mut self.wake.listed, WAKE),
            e => {
                self.wake.armed = false;
                self.ready.push(Completion::new(Op::Wake, 0, -e, false));
            }
        }
    }

    fn conn_io(&mut self, data: u64) {
        let slot = Self::slot(data);
        let Some(e) = self.entries.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if e.data != data {
            return;
        }
        e.listed = false;
        if e.connecting && e.writable {
            e.connecting = false;
            let mut err: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: SO_ERROR writes one c_int into `err`, whose size `len` gives.
            let r = unsafe {
                libc::getsockopt(
                    e.fd,
                    libc::SOL_SOCKET,
                    libc::SO_ERROR,
                    (&mut err as *mut libc::c_int).cast(),
                    &mut len,
                )
            };
            let res = match r {
                0 => -err,
                _ => -errno(&io::Error::last_os_error()),
            };
            self.ready
                .push(Completion::new(Op::Connect, data, res, false));
        }
        if e.send_waiting && e.writable {
            e.send_waiting = false;
            self.ready.push(Completion::new(Op::Send, data, 0, false));
        }
        if e.recv && e.readable {
            let Some(mut buf) = self.bufs.get() else {
                // Every buffer is out: try again next turn.
                Self::list(&mut self.listed, &mut e.listed, data as usize);
                return;
            };
            // SAFETY: `buf` is valid for writes of `buf.len()` bytes; `e.fd` is open while a
            // receive is armed on it (module docs).
            let n = unsafe { libc::recv(e.fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n > 0 {
                if n as usize == buf.len() || e.closed {
                    // Maybe more, or the end that came with these bytes: read again next
                    // turn, after the others.
                    Self::list(&mut self.listed, &mut e.listed, data as usize);
                } else {
                    e.readable = false;
                }
                let mut c = Completion::new(Op::Recv, data, n as i32, true);
                c.buf = Some(buf);
                self.ready.push(c);
            } else {
                self.bufs.put_back(buf);
                let err = io::Error::last_os_error();
                match (n, errno(&err)) {
                    (0, _) => {
                        e.recv = false;
                        self.ready.push(Completion::new(Op::Recv, data, 0, false));
                    }
                    (_, libc::EAGAIN) => e.readable = false,
                    (_, libc::EINTR) => Self::list(&mut self.listed, &mut e.listed, data as usize),
                    (_, code) => {
                        e.recv = false;
                        self.ready
                            .push(Completion::new(Op::Recv, data, -code, false));
                    }
                }
            }
        }
        self.retire(slot);
    }

    /// Moves the completions made so far into `out`.
    pub(crate) fn completions(&mut self, out: &mut Vec<Completion>) {
        out.append(&mut self.ready);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    fn turn(p: &mut Poller) -> Vec<Completion> {
        p.submit_and_wait_timeout(1, Duration::from_millis(200))
            .unwrap();
        let mut out = Vec::new();
        p.completions(&mut out);
        out
    }

    /// A poller with a receive armed (user data `data`) on our end of a socket pair that has
    /// nothing to read yet: the poller, its buffers, our end (kept open) and the peer's.
    fn receiving(data: u64) -> (Poller, Bufs, UnixStream, UnixStream) {
        let bufs = Bufs::new(4, 4096);
        let mut p = Poller::new(bufs.clone()).unwrap();
        let (ours, theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        p.recv_multi(ours.as_fd(), data).unwrap();
        assert!(turn(&mut p).is_empty(), "nothing to read yet");
        (p, bufs, ours, theirs)
    }

    #[test]
    fn a_receive_completes_per_read_and_ends_at_eof() {
        let (mut p, bufs, _ours, mut theirs) = receiving(7);
        theirs.write_all(b"hello").unwrap();
        let mut got = turn(&mut p);
        assert_eq!(got.len(), 1);
        let c = &mut got[0];
        assert_eq!(
            (c.op(), c.data(), c.result(), c.more()),
            (Some(Op::Recv), 7, 5, true)
        );
        let mut buf = Bufs::take(c).expect("a buffer");
        assert_eq!(Bufs::bytes(&mut buf), b"hello");
        bufs.recycle(buf);
        drop(theirs);
        let got = turn(&mut p);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].result(), got[0].more()), (0, false));
        assert!(p.entries[7].is_none(), "no request left: the entry is gone");
    }

    #[test]
    fn bytes_and_the_end_that_came_together_are_both_received() {
        let (mut p, bufs, _ours, mut theirs) = receiving(3);
        // One edge for both: the read that takes the bytes is short, and no event follows.
        theirs.write_all(b"bye").unwrap();
        theirs.shutdown(std::net::Shutdown::Write).unwrap();
        let mut got = turn(&mut p);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].result(), got[0].more()), (3, true));
        bufs.recycle(Bufs::take(&mut got[0]).expect("a buffer"));
        let got = turn(&mut p);
        assert_eq!(got.len(), 1, "the end of the stream is received too");
        assert_eq!((got[0].result(), got[0].more()), (0, false));
    }

    #[test]
    fn a_send_to_a_full_socket_waits_then_completes_with_zero() {
        let mut p = Poller::new(Bufs::new(4, 4096)).unwrap();
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let mut q = SendQueue::default();
        let mut out = Outgoing::new();
        let mut sent = 0;
        let total = 8 << 20;
        out.push(bytes::Bytes::from(vec![1u8; total]));
        // Write until the kernel buffer is full: the send stays in flight.
        loop {
            assert!(p.send(ours.as_fd(), &mut q, &mut out, 9).unwrap());
            let mut c = Vec::new();
            p.completions(&mut c);
            match c.first() {
                Some(c) => {
                    assert_eq!(c.op(), Some(Op::Send));
                    sent += c.result() as usize;
                    q.complete(c.result() as usize);
                }
                None => break,
            }
        }
        assert!(q.in_flight() && sent < total);
        assert!(
            !p.send(ours.as_fd(), &mut q, &mut out, 9).unwrap(),
            "one at a time"
        );
        assert!(turn(&mut p).is_empty(), "still full");
        // The peer reads: the socket is writable and the send completes with 0 bytes.
        let mut sink = vec![0u8; 1 << 20];
        assert!(theirs.read(&mut sink).unwrap() > 0);
        let got = turn(&mut p);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].op(), got[0].result()), (Some(Op::Send), 0));
        q.complete(0);
        assert!(!q.in_flight() && q.queued() == total - sent);
    }

    #[test]
    fn cancelling_a_receive_ends_it_once() {
        let mut p = Poller::new(Bufs::new(4, 4096)).unwrap();
        let (ours, _theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        p.recv_multi(ours.as_fd(), 3).unwrap();
        p.cancel(Op::Recv, 3).unwrap();
        p.cancel(Op::Recv, 3).unwrap();
        let got = turn(&mut p);
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].op(), got[0].result(), got[0].more()),
            (Some(Op::Recv), -libc::ECANCELED, false)
        );
    }
}

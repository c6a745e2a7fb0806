//! The io_uring layer: the ring, the provided-buffer ring, and the send queue whose memory the
//! kernel reads. This module holds the server's `unsafe` with the portable engine's syscalls (`poll`);
//! everything above them is safe.
//!
//! # Why the kernel never writes a buffer we still read, nor reads one we freed
//!
//! - **Receive buffers** live in one arena per worker, registered as a provided-buffer ring
//!   ([`BufRing`]). A buffer id belongs to the kernel from the moment we publish it in the ring
//!   (advance the tail) until a completion names it (`IORING_CQE_F_BUFFER`). [`BufRing::take`]
//!   turns that completion into a [`RecvBuf`], the only handle through which the bytes can be
//!   read, and the id is published again only by [`BufRing::recycle`], which consumes the
//!   `RecvBuf`. So between completion and recycling the kernel cannot pick that buffer, and after
//!   recycling we cannot touch it. The arena is a raw mapping, so no Rust reference ever covers
//!   a buffer the kernel may be filling; it is unmapped only after the worker has dropped its
//!   ring and drained every request.
//! - **Sends** point the kernel at `Bytes` held by a [`SendQueue`], which takes them out of the
//!   connection's `Outgoing` queue when the send is submitted (so nothing done to that queue
//!   meanwhile can reach them). While a send is in flight the SendQueue neither drops nor
//!   mutates them nor the iovec array, and takes no new frames; [`SendQueue::complete`]
//!   releases exactly the bytes the kernel reported. A queue dropped while its send is in flight is leaked rather
//!   than freed, so a logic error elsewhere can cost memory but never soundness.
//! - **Timeout and eventfd reads** point at fields of [`Ring`] that are boxed (stable address) and
//!   live as long as the ring.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::RawFd;

use io_uring::{IoUring, cqueue, opcode, squeue, types};
use sockeye_codec::session::Outgoing;

/// Most iovecs in one `writev`.
const MAX_IOV: usize = 64;

/// The kind of a request, kept by the ring in the top byte of its user data, so that a
/// completion says truthfully what it completes (which is what makes [`BufRing::take`] and
/// [`Completion::accepted_fd`] safe: only a receive's completion can name a buffer, only an
/// accept's result is a new descriptor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Accept = 1,
    Recv = 2,
    Send = 3,
    Tick = 4,
    Wake = 5,
    Cancel = 6,
    Connect = 7,
}

impl Op {
    fn from_tag(tag: u64) -> Option<Op> {
        Some(match tag {
            1 => Op::Accept,
            2 => Op::Recv,
            3 => Op::Send,
            4 => Op::Tick,
            5 => Op::Wake,
            6 => Op::Cancel,
            7 => Op::Connect,
            _ => return None,
        })
    }
}

/// The caller's part of a request's user data: 56 bits.
pub(crate) const DATA_MASK: u64 = (1 << 56) - 1;

fn user_data(op: Op, data: u64) -> u64 {
    (op as u64) << 56 | (data & DATA_MASK)
}

/// `IORING_CQE_F_BUFFER`: the completion names a provided buffer.
const CQE_F_BUFFER: u32 = 1;

/// One completion, as the ring read it from the kernel (it can be made nowhere else).
#[derive(Debug)]
pub(crate) struct Completion {
    op: Option<Op>,
    data: u64,
    result: i32,
    flags: u32,
    /// `accepted_fd` took the descriptor.
    fd_taken: bool,
}

impl Completion {
    /// What the request was (`None` for user data the ring did not set).
    pub(crate) fn op(&self) -> Option<Op> {
        self.op
    }

    /// The caller's 56 bits of user data.
    pub(crate) fn data(&self) -> u64 {
        self.data
    }

    /// The request's result (a negative errno on failure).
    pub(crate) fn result(&self) -> i32 {
        self.result
    }

    /// Whether more completions follow for the same multishot request.
    pub(crate) fn more(&self) -> bool {
        cqueue::more(self.flags)
    }

    /// The descriptor a successful accept created, once.
    pub(crate) fn accepted_fd(&mut self) -> Option<std::os::fd::OwnedFd> {
        use std::os::fd::FromRawFd;
        if self.op != Some(Op::Accept) || self.result < 0 || self.fd_taken {
            return None;
        }
        self.fd_taken = true;
        // SAFETY: a non-negative result of an accept completion (the ring set the op tag when
        // it submitted the accept) is a new descriptor the kernel created for us; `fd_taken`
        // makes sure only one `OwnedFd` is made from it.
        Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(self.result) })
    }
}

/// One worker's ring, with the memory its requests point at.
pub(crate) struct Ring {
    // Field order matters: the ring (and with it every pending request) is dropped before the
    // memory that requests may point at.
    ring: IoUring,
    timespec: Box<types::Timespec>,
    eventfd_buf: Box<[u8; 8]>,
    /// Addresses of connects in flight, by user data, kept until their completion.
    connecting: std::collections::HashMap<u64, Box<socket2::SockAddr>>,
    /// The setup flags the kernel accepted, for the log.
    pub(crate) mode: &'static str,
}

impl Ring {
    /// Creates a ring with `entries` submission slots, preferring `SINGLE_ISSUER | DEFER_TASKRUN`
    /// (fewer interrupts; completions run when we wait) and falling back to a plain ring on
    /// kernels that refuse it.
    pub(crate) fn new(entries: u32) -> io::Result<Ring> {
        let cq = entries.saturating_mul(4).max(4096);
        type Setup = fn(&mut io_uring::Builder);
        let attempts: [(&'static str, Setup); 3] = [
            ("single_issuer+defer_taskrun", |b| {
                b.setup_single_issuer().setup_defer_taskrun();
            }),
            ("coop_taskrun", |b| {
                b.setup_coop_taskrun();
            }),
            ("plain", |_| {}),
        ];
        let mut last = None;
        for (mode, setup) in attempts {
            let mut b = IoUring::builder();
            b.setup_cqsize(cq).setup_submit_all();
            setup(&mut b);
            match b.build(entries) {
                Ok(ring) => {
                    return Ok(Ring {
                        ring,
                        timespec: Box::new(types::Timespec::new()),
                        eventfd_buf: Box::new([0; 8]),
                        connecting: std::collections::HashMap::new(),
                        mode,
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("io_uring setup failed")))
    }

    /// Pushes an entry, submitting first if the submission queue is full.
    ///
    /// # Safety
    /// Every buffer the entry points at must stay valid (and, for buffers the kernel writes,
    /// unaliased) until its completion arrives.
    unsafe fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: forwarded to our caller.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
    }

    /// Arms a multishot accept on `fd`.
    pub(crate) fn accept_multi(&mut self, fd: RawFd, data: u64) -> io::Result<()> {
        let e = opcode::AcceptMulti::new(types::Fd(fd))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(user_data(Op::Accept, data));
        // SAFETY: accept with no address output points at no memory of ours.
        unsafe { self.push(&e) }
    }

    /// Arms a multishot receive on `fd` into buffers of `ring`.
    pub(crate) fn recv_multi(&mut self, fd: RawFd, ring: &BufRing, data: u64) -> io::Result<()> {
        let e = opcode::RecvMulti::new(types::Fd(fd), ring.bgid)
            .build()
            .user_data(user_data(Op::Recv, data));
        // SAFETY: the kernel writes only into provided buffers it owns (see the module docs).
        unsafe { self.push(&e) }
    }

    /// Submits one `sendmsg` of the queue's unsent bytes (a gathered write, like `writev`, but
    /// with `MSG_NOSIGNAL`: a peer that reset the connection makes it fail with `EPIPE` instead
    /// of raising `SIGPIPE`, which kills a process that keeps the default disposition). Returns
    /// false if there is nothing to send or a send is already in flight.
    pub(crate) fn send(
        &mut self,
        fd: RawFd,
        q: &mut SendQueue,
        out: &mut Outgoing,
        data: u64,
    ) -> io::Result<bool> {
        if q.in_flight {
            return Ok(false);
        }
        // The queue takes ownership of what the kernel will read: nothing the session does to
        // `out` meanwhile can touch it.
        out.move_sealed(&mut q.frames);
        if q.queued() == 0 {
            return Ok(false);
        }
        q.iov.clear();
        for part in q.frames.chunks().take(MAX_IOV) {
            q.iov.push(libc::iovec {
                iov_base: part.as_ptr() as *mut _,
                iov_len: part.len(),
            });
        }
        // SAFETY: an all-zero msghdr is a valid value (no name, no control data).
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = q.iov.as_mut_ptr();
        msg.msg_iovlen = q.iov.len() as _;
        let hdr = q.msg.get_or_insert_with(|| Box::new(MsgHdr(msg)));
        hdr.0 = msg;
        let e = opcode::SendMsg::new(types::Fd(fd), &hdr.0)
            .flags(libc::MSG_NOSIGNAL as u32)
            .build()
            .user_data(user_data(Op::Send, data));
        // SAFETY: the msghdr (boxed), the iovecs and the `Bytes` they point into stay untouched
        // while `in_flight` (see `SendQueue`); the kernel only reads them.
        unsafe { self.push(&e)? };
        q.in_flight = true;
        Ok(true)
    }

    /// Arms the worker's one timer: a multishot timeout that fires every `period`.
    pub(crate) fn tick(&mut self, period: std::time::Duration) -> io::Result<()> {
        *self.timespec = types::Timespec::from(period);
        let e = opcode::Timeout::new(&*self.timespec)
            .flags(types::TimeoutFlags::MULTISHOT)
            .build()
            .user_data(user_data(Op::Tick, 0));
        // SAFETY: the timespec is boxed and lives as long as the ring.
        unsafe { self.push(&e) }
    }

    /// Arms an 8-byte read of the worker's eventfd (cross-thread wake-ups).
    pub(crate) fn read_eventfd(&mut self, fd: RawFd) -> io::Result<()> {
        let e = opcode::Read::new(types::Fd(fd), self.eventfd_buf.as_mut_ptr(), 8)
            .build()
            .user_data(user_data(Op::Wake, 0));
        // SAFETY: the buffer is boxed, lives as long as the ring, and only one read is armed
        // at a time (re-armed after its completion).
        unsafe { self.push(&e) }
    }

    /// Cancels every request of kind `op` with user data `data`.
    pub(crate) fn cancel(&mut self, op: Op, data: u64) -> io::Result<()> {
        let e = opcode::AsyncCancel::new(user_data(op, data))
            .build()
            .user_data(user_data(Op::Cancel, data));
        // SAFETY: cancellation points at no memory.
        unsafe { self.push(&e) }
    }

    /// Submits queued entries and waits for at least `want` completions.
    pub(crate) fn submit_and_wait(&mut self, want: usize) -> io::Result<usize> {
        match self.ring.submit_and_wait(want) {
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => Ok(0),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(0),
            r => r,
        }
    }

    /// Submits queued entries and waits for at least `want` completions or `timeout`,
    /// whichever comes first (`IORING_ENTER_EXT_ARG`, Linux 5.11).
    pub(crate) fn submit_and_wait_timeout(
        &mut self,
        want: usize,
        timeout: std::time::Duration,
    ) -> io::Result<usize> {
        let ts = types::Timespec::from(timeout);
        let args = types::SubmitArgs::new().timespec(&ts);
        match self.ring.submitter().submit_with_args(want, &args) {
            Err(e) if e.raw_os_error() == Some(libc::ETIME) => Ok(0),
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => Ok(0),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(0),
            r => r,
        }
    }

    /// Submits a `connect` of `fd` to `addr`; the ring keeps the address until the completion
    /// with `user_data` is drained.
    pub(crate) fn connect(
        &mut self,
        fd: RawFd,
        addr: socket2::SockAddr,
        data: u64,
    ) -> io::Result<()> {
        let user_data = user_data(Op::Connect, data);
        let addr = Box::new(addr);
        let e = opcode::Connect::new(types::Fd(fd), addr.as_ptr().cast(), addr.len())
            .build()
            .user_data(user_data);
        // SAFETY: the address is boxed (it does not move) and kept in `connecting` until the
        // completion arrives; the ring is dropped before `connecting` (field order).
        unsafe { self.push(&e)? };
        self.connecting.insert(user_data, addr);
        Ok(())
    }

    /// Drains the completion queue into `out`.
    pub(crate) fn completions(&mut self, out: &mut Vec<Completion>) {
        let start = out.len();
        out.extend(self.ring.completion().map(|c| Completion {
            op: Op::from_tag(c.user_data() >> 56),
            data: c.user_data() & DATA_MASK,
            result: c.result(),
            flags: c.flags(),
            fd_taken: false,
        }));
        if !self.connecting.is_empty() {
            for c in &out[start..] {
                if c.op == Some(Op::Connect) {
                    self.connecting.remove(&user_data(Op::Connect, c.data));
                }
            }
        }
    }

    /// Registers `buf_ring` with this ring.
    pub(crate) fn register(&mut self, buf_ring: &BufRing) -> io::Result<()> {
        // SAFETY: the ring memory is page-aligned, `entries` long, and outlives the
        // registration (the worker drops the `Ring` before the `BufRing`).
        unsafe {
            self.ring.submitter().register_buf_ring_with_flags(
                buf_ring.ring_addr as u64,
                buf_ring.entries,
                buf_ring.bgid,
                0,
            )
        }
    }
}

/// A provided-buffer ring: `entries` buffers of `size` bytes the kernel fills for multishot
/// receives.
pub(crate) struct BufRing {
    ring_addr: *mut io_uring::types::BufRingEntry,
    ring_bytes: usize,
    /// The buffers: an anonymous mapping of `entries * size` bytes. Kept as a raw pointer so
    /// that no Rust reference ever spans buffers the kernel may be writing; slices are made
    /// only for a buffer we own (see `bytes`).
    arena: *mut u8,
    arena_bytes: usize,
    size: usize,
    entries: u16,
    bgid: u16,
    tail: u16,
}

/// A private anonymous read-write mapping of `bytes` (page-aligned, zero-filled on first touch).
fn map_anonymous(bytes: usize) -> io::Result<*mut u8> {
    // SAFETY: an anonymous private mapping at an address of the kernel's choice; the result is
    // checked before use.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(ptr.cast())
}

/// The kernel's `struct io_uring_buf` (include/uapi/linux/io_uring.h); in entry 0, `resv` is
/// the ring's tail.
#[repr(C)]
struct RawBufEntry {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

const _: () = assert!(
    std::mem::size_of::<RawBufEntry>() == std::mem::size_of::<types::BufRingEntry>()
        && std::mem::align_of::<RawBufEntry>() <= std::mem::align_of::<types::BufRingEntry>()
);

/// A receive buffer handed over by a completion; give it back with [`BufRing::recycle`].
#[must_use = "a RecvBuf must be recycled, or its buffer is lost to the ring"]
pub(crate) struct RecvBuf {
    bid: u16,
    len: usize,
}

impl BufRing {
    /// Allocates the ring (page-aligned, as the kernel requires) and the buffer arena, and
    /// publishes every buffer. `entries` must be a power of two.
    pub(crate) fn new(bgid: u16, entries: u16, size: usize) -> io::Result<BufRing> {
        assert!(
            entries.is_power_of_two(),
            "buffer ring entries must be a power of two"
        );
        let ring_bytes = usize::from(entries) * std::mem::size_of::<types::BufRingEntry>();
        let ptr = map_anonymous(ring_bytes)?;
        let arena_bytes = usize::from(entries) * size;
        let arena = match map_anonymous(arena_bytes) {
            Ok(a) => a,
            Err(e) => {
                // SAFETY: unmaps the ring mapping made just above, which nothing uses yet.
                unsafe { libc::munmap(ptr.cast(), ring_bytes) };
                return Err(e);
            }
        };
        let mut ring = BufRing {
            ring_addr: ptr.cast(),
            ring_bytes,
            arena,
            arena_bytes,
            size,
            entries,
            bgid,
            tail: 0,
        };
        for bid in 0..entries {
            ring.publish(bid);
        }
        ring.sync_tail();
        Ok(ring)
    }

    /// Writes entry `bid` at the tail (not yet visible to the kernel until `sync_tail`).
    fn publish(&mut self, bid: u16) {
        let slot = usize::from(self.tail & (self.entries - 1));
        // In bounds: bid < entries, so the buffer lies inside the arena mapping.
        let addr = self.arena as u64 + (usize::from(bid) * self.size) as u64;
        // Written through a raw pointer, field by field: entry 0's last field is the ring's
        // tail, which the kernel reads at any time, so no `&mut` may cover a whole entry.
        let entry = self.ring_addr.wrapping_add(slot).cast::<RawBufEntry>();
        // SAFETY: `slot < entries`, so `entry` is inside the page-aligned ring mapping, whose
        // entries have `RawBufEntry`'s layout (the kernel's `struct io_uring_buf`); the kernel
        // does not read an entry's address, length or id past the published tail, so these
        // writes race with nothing, and they do not touch `resv` (the tail word).
        unsafe {
            std::ptr::addr_of_mut!((*entry).addr).write(addr);
            std::ptr::addr_of_mut!((*entry).len).write(self.size as u32);
            std::ptr::addr_of_mut!((*entry).bid).write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes every published entry visible to the kernel.
    fn sync_tail(&self) {
        // SAFETY: the ring base is the first entry of a valid, initialised ring, as `tail`
        // requires; the tail is an aligned u16 the kernel reads with acquire semantics.
        unsafe {
            let tail =
                types::BufRingEntry::tail(self.ring_addr) as *const std::sync::atomic::AtomicU16;
            (*tail).store(self.tail, std::sync::atomic::Ordering::Release);
        }
    }

    /// Claims the buffer a receive's completion names, once (the completion forgets it).
    /// `None` if the completion carries no buffer. A worker's ring has one buffer ring, the
    /// one every receive selects from.
    pub(crate) fn take(&self, c: &mut Completion) -> Option<RecvBuf> {
        if c.op != Some(Op::Recv) {
            return None;
        }
        let bid = cqueue::buffer_select(c.flags)?;
        c.flags &= !CQE_F_BUFFER;
        if bid >= self.entries {
            return None;
        }
        Some(RecvBuf {
            bid,
            len: usize::try_from(c.result).unwrap_or(0).min(self.size),
        })
    }

    /// The received bytes, mutable so the codec can unmask them in place.
    pub(crate) fn bytes(&mut self, buf: &RecvBuf) -> &mut [u8] {
        let start = usize::from(buf.bid) * self.size;
        debug_assert!(start + buf.len <= self.arena_bytes);
        // SAFETY: `buf.bid < entries` and `buf.len <= size` (checked in `take`), so the range is
        // inside the arena mapping; the buffer was handed to us by a completion and is not
        // published again until `recycle` consumes the `RecvBuf`, so the kernel does not write
        // it while this borrow (tied to `&mut self` and `buf`) lives.
        unsafe { std::slice::from_raw_parts_mut(self.arena.add(start), buf.len) }
    }

    /// Gives the buffer back to the kernel.
    pub(crate) fn recycle(&mut self, buf: RecvBuf) {
        self.publish(buf.bid);
        self.sync_tail();
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mappings made in `new`; the worker drops the ring (and
        // drains its requests) before the BufRing, so the kernel no longer uses them.
        unsafe {
            libc::munmap(self.ring_addr.cast(), self.ring_bytes);
            libc::munmap(self.arena.cast(), self.arena_bytes);
        }
    }
}

/// The frames of one connection's send in flight (or its unsent rest), taken from the
/// session's `Outgoing` queue into one of its own, and the iovecs pointing at them.
#[derive(Default)]
pub(crate) struct SendQueue {
    /// Only sealed frames, only appended between sends, advanced by completions.
    frames: Outgoing,
    iov: Vec<libc::iovec>,
    /// The header of the send in flight (boxed: its address is given to the kernel).
    msg: Option<Box<MsgHdr>>,
    in_flight: bool,
}

/// A `msghdr` that points into its own [`SendQueue`].
struct MsgHdr(libc::msghdr);

impl SendQueue {
    /// Appends a frame (only between sends: never while one is in flight).
    #[cfg(test)]
    fn push(&mut self, frame: bytes::Bytes) {
        debug_assert!(!self.in_flight);
        self.frames.push(frame);
    }

    /// (Readiness engine) takes `out`'s sealed frames behind the unsent rest, for a write made
    /// at once; false if a send is in flight or nothing is to be sent.
    pub(crate) fn load(&mut self, out: &mut Outgoing) -> bool {
        if self.in_flight {
            return false;
        }
        out.move_sealed(&mut self.frames);
        self.queued() > 0
    }

    /// (Readiness engine) the unsent bytes, in order.
    pub(crate) fn chunks(&self) -> impl Iterator<Item = &[u8]> {
        self.frames.chunks()
    }

    /// (Readiness engine) a write of these bytes is under way: nothing is added or released
    /// until its completion.
    pub(crate) fn begin(&mut self) {
        self.in_flight = true;
    }

    /// Unsent bytes.
    pub(crate) fn queued(&self) -> usize {
        self.frames.sealed()
    }

    /// Whether a send is in flight.
    pub(crate) fn in_flight(&self) -> bool {
        self.in_flight
    }

    /// Records that the kernel sent `n` bytes of the send in flight.
    pub(crate) fn complete(&mut self, n: usize) {
        self.in_flight = false;
        self.frames.advance(n);
        if self.frames.is_empty() {
            self.iov = Vec::new();
            self.msg = None;
        }
    }

    /// Marks the send in flight as failed (the connection is going away); nothing is released.
    pub(crate) fn fail(&mut self) {
        self.in_flight = false;
    }
}

impl Drop for SendQueue {
    fn drop(&mut self) {
        if self.in_flight {
            // The kernel may still read these bytes: leak them rather than free them.
            std::mem::forget(std::mem::take(&mut self.frames));
            std::mem::forget(std::mem::take(&mut self.iov));
            std::mem::forget(self.msg.take());
        }
    }
}

/// A new non-blocking eventfd, for cross-thread wake-ups.
pub(crate) fn eventfd() -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain syscall; the result is checked.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor nobody else owns.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Raises the soft descriptor limit to the hard limit (tens of thousands of connections).
pub(crate) fn raise_fd_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid out-pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is a valid in-pointer.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn send_queue_accounts_partial_sends() {
        let mut q = SendQueue::default();
        q.push(Bytes::from_static(b"hello"));
        q.push(Bytes::from_static(b""));
        q.push(Bytes::from_static(b" world"));
        assert_eq!((q.queued(), q.frames.frames()), (11, 2));
        q.in_flight = true;
        q.complete(3);
        let rest: Vec<&[u8]> = q.frames.chunks().collect();
        assert_eq!((q.queued(), rest), (8, vec![&b"lo"[..], b" world"]));
        q.in_flight = true;
        q.complete(4);
        assert_eq!((q.queued(), q.frames.frames()), (4, 1));
        q.in_flight = true;
        q.complete(4);
        assert_eq!(
            (q.queued(), q.frames.frames(), q.in_flight()),
            (0, 0, false)
        );
        assert!(q.iov.capacity() == 0 && q.msg.is_none());
    }
}

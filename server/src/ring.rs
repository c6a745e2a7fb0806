//! The io_uring layer: the ring, the provided-buffer ring, and the send queue whose memory the
//! kernel reads. This module holds all of the server's `unsafe`; everything above it is safe.
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
//! - **Sends** point the kernel at `Bytes` held by a [`SendQueue`]. While a send is in flight the
//!   queue neither drops nor mutates the in-flight prefix nor the iovec array (new frames are only
//!   appended, which never moves existing `Bytes` data); [`SendQueue::complete`] releases exactly
//!   the bytes the kernel reported. A queue dropped while its send is in flight is leaked rather
//!   than freed, so a logic error elsewhere can cost memory but never soundness.
//! - **Timeout and eventfd reads** point at fields of [`Ring`] that are boxed (stable address) and
//!   live as long as the ring.

#![allow(unsafe_code)]

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;

use bytes::Bytes;
use io_uring::{IoUring, cqueue, opcode, squeue, types};

/// Most iovecs in one `writev`.
const MAX_IOV: usize = 64;

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
    pub(crate) fn accept_multi(&mut self, fd: RawFd, user_data: u64) -> io::Result<()> {
        let e = opcode::AcceptMulti::new(types::Fd(fd))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(user_data);
        // SAFETY: accept with no address output points at no memory of ours.
        unsafe { self.push(&e) }
    }

    /// Arms a multishot receive on `fd` into buffers of `ring`.
    pub(crate) fn recv_multi(
        &mut self,
        fd: RawFd,
        ring: &BufRing,
        user_data: u64,
    ) -> io::Result<()> {
        let e = opcode::RecvMulti::new(types::Fd(fd), ring.bgid)
            .build()
            .user_data(user_data);
        // SAFETY: the kernel writes only into provided buffers it owns (see the module docs).
        unsafe { self.push(&e) }
    }

    /// Submits one `writev` of the queue's unsent bytes. Returns false if there is nothing to
    /// send or a send is already in flight.
    pub(crate) fn send(
        &mut self,
        fd: RawFd,
        q: &mut SendQueue,
        user_data: u64,
    ) -> io::Result<bool> {
        if q.in_flight || q.queued == 0 {
            return Ok(false);
        }
        q.iov.clear();
        let mut skip = q.head_offset;
        for b in q.frames.iter().take(MAX_IOV) {
            let part = &b[skip..];
            skip = 0;
            q.iov.push(libc::iovec {
                iov_base: part.as_ptr() as *mut _,
                iov_len: part.len(),
            });
        }
        let e = opcode::Writev::new(types::Fd(fd), q.iov.as_ptr(), q.iov.len() as u32)
            .build()
            .user_data(user_data);
        // SAFETY: the iovecs and the `Bytes` they point into stay untouched while `in_flight`
        // (see `SendQueue`); the kernel only reads them.
        unsafe { self.push(&e)? };
        q.in_flight = true;
        Ok(true)
    }

    /// Arms the worker's one timer: a multishot timeout that fires every `period`.
    pub(crate) fn tick(&mut self, period: std::time::Duration, user_data: u64) -> io::Result<()> {
        *self.timespec = types::Timespec::from(period);
        let e = opcode::Timeout::new(&*self.timespec)
            .flags(types::TimeoutFlags::MULTISHOT)
            .build()
            .user_data(user_data);
        // SAFETY: the timespec is boxed and lives as long as the ring.
        unsafe { self.push(&e) }
    }

    /// Arms an 8-byte read of the worker's eventfd (cross-thread wake-ups).
    pub(crate) fn read_eventfd(&mut self, fd: RawFd, user_data: u64) -> io::Result<()> {
        let e = opcode::Read::new(types::Fd(fd), self.eventfd_buf.as_mut_ptr(), 8)
            .build()
            .user_data(user_data);
        // SAFETY: the buffer is boxed, lives as long as the ring, and only one read is armed
        // at a time (re-armed after its completion).
        unsafe { self.push(&e) }
    }

    /// Cancels every request with `user_data`.
    pub(crate) fn cancel(&mut self, user_data: u64, tag: u64) -> io::Result<()> {
        let e = opcode::AsyncCancel::new(user_data).build().user_data(tag);
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

    /// Submits a `connect` of `fd` to `addr`; the ring keeps the address until the completion
    /// with `user_data` is drained.
    pub(crate) fn connect(
        &mut self,
        fd: RawFd,
        addr: socket2::SockAddr,
        user_data: u64,
    ) -> io::Result<()> {
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

    /// Drains the completion queue into `out` as (user_data, result, flags).
    pub(crate) fn completions(&mut self, out: &mut Vec<(u64, i32, u32)>) {
        let start = out.len();
        out.extend(
            self.ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        if !self.connecting.is_empty() {
            for (ud, _, _) in &out[start..] {
                self.connecting.remove(ud);
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

/// Whether a completion's flags say more completions follow for the same multishot request.
pub(crate) fn more(flags: u32) -> bool {
    cqueue::more(flags)
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
        // SAFETY: `slot < entries`, inside the mapping; the kernel does not read entries past
        // the published tail, so writing this one races with nothing.
        let entry = unsafe { &mut *self.ring_addr.add(slot) };
        entry.set_addr(addr);
        entry.set_len(self.size as u32);
        entry.set_bid(bid);
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

    /// Claims the buffer a completion names. `None` if the completion carries no buffer.
    pub(crate) fn take(&self, result: i32, flags: u32) -> Option<RecvBuf> {
        let bid = cqueue::buffer_select(flags)?;
        if bid >= self.entries {
            return None;
        }
        Some(RecvBuf {
            bid,
            len: usize::try_from(result).unwrap_or(0).min(self.size),
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

/// Frames waiting to be sent on one connection, and the iovecs of the send in flight.
#[derive(Default)]
pub(crate) struct SendQueue {
    frames: VecDeque<Bytes>,
    /// Bytes of `frames[0]` already sent.
    head_offset: usize,
    /// Unsent bytes in all.
    queued: usize,
    iov: Vec<libc::iovec>,
    in_flight: bool,
}

impl SendQueue {
    /// Appends a frame (never moves the data of frames already queued).
    pub(crate) fn push(&mut self, frame: Bytes) {
        if frame.is_empty() {
            return;
        }
        self.queued += frame.len();
        self.frames.push_back(frame);
    }

    /// Unsent bytes.
    pub(crate) fn queued(&self) -> usize {
        self.queued
    }

    /// Whether a send is in flight.
    pub(crate) fn in_flight(&self) -> bool {
        self.in_flight
    }

    /// Records that the kernel sent `n` bytes of the send in flight.
    pub(crate) fn complete(&mut self, n: usize) {
        self.in_flight = false;
        let mut n = n.min(self.queued);
        self.queued -= n;
        while n > 0 {
            let head = self
                .frames
                .front()
                .map_or(0, |b| b.len() - self.head_offset);
            if n >= head {
                n -= head;
                self.frames.pop_front();
                self.head_offset = 0;
            } else {
                self.head_offset += n;
                n = 0;
            }
        }
        if self.frames.is_empty() {
            self.iov = Vec::new();
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
        }
    }
}

/// Owns a descriptor returned by a successful accept completion.
pub(crate) fn accepted_fd(result: i32) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: a non-negative accept result is a new descriptor the kernel created for us;
    // nothing else owns it.
    (result >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(result) })
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

/// `bytes` as `&str`, for text the codec has already validated.
///
/// The decoder guarantees that every uncompressed text message it completes is valid UTF-8
/// (RFC 6455 §8.1, checked across fragments), so validating again would only cost time.
pub(crate) fn validated_str(bytes: &[u8]) -> &str {
    debug_assert!(
        std::str::from_utf8(bytes).is_ok(),
        "text not validated by the codec"
    );
    // SAFETY: see above; callers pass only whole text messages accepted by the decoder.
    unsafe { std::str::from_utf8_unchecked(bytes) }
}

/// `bytes` as a `String`, for a whole text message the codec has already validated (see
/// [`validated_str`]).
pub(crate) fn validated_string(bytes: Vec<u8>) -> String {
    debug_assert!(
        std::str::from_utf8(&bytes).is_ok(),
        "text not validated by the codec"
    );
    // SAFETY: callers pass only whole text messages accepted by the decoder, which checked
    // every byte as UTF-8 across fragments.
    unsafe { String::from_utf8_unchecked(bytes) }
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

    #[test]
    fn send_queue_accounts_partial_sends() {
        let mut q = SendQueue::default();
        q.push(Bytes::from_static(b"hello"));
        q.push(Bytes::from_static(b""));
        q.push(Bytes::from_static(b" world"));
        assert_eq!(q.queued(), 11);
        q.in_flight = true;
        q.complete(3);
        assert_eq!((q.queued(), q.head_offset, q.frames.len()), (8, 3, 2));
        q.in_flight = true;
        q.complete(4);
        assert_eq!((q.queued(), q.head_offset, q.frames.len()), (4, 2, 1));
        q.in_flight = true;
        q.complete(4);
        assert_eq!((q.queued(), q.frames.len(), q.in_flight()), (0, 0, false));
    }
}

//! [`BufferPool`]: a bounded, thread-safe pool of large buffers, the [`Buffers`] a driver
//! lends its sessions.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;

use super::Buffers;

/// Larger buffers are freed, not kept.
const MAX_SIZE: usize = 16 << 20;
/// Smaller payloads are not worth a pool (the allocator reuses small blocks well).
const MIN_SIZE: usize = 64 << 10;

/// A pool of large buffers (64 KiB to 16 MiB) that messages in several pieces are assembled in
/// and that owned payloads come back to once written, so a stream of large messages reuses the
/// same memory instead of the allocator giving it back to the kernel and faulting it in again
/// for every message.
///
/// Bounded: it keeps at most `max_kept` buffers, and [`BufferPool::age`] (called by the driver
/// now and then, such as once a second) frees them all when none was taken since the last
/// call, so an idle pool holds nothing. Clones share the pool; a payload queued through it may
/// be dropped on any thread. Needs the `std` feature (the pool's lock).
///
/// ```
/// use sockeye_codec::session::{BufferPool, Buffers};
///
/// let mut pool = BufferPool::new(4);
/// let queued = pool.queue(vec![7; 1 << 20]); // an owned payload, as a session queues it
/// drop(queued); // written: the buffer comes back
/// assert!(pool.kept() >= 1 << 20);
/// let reused = pool.take(1 << 19).expect("the same buffer");
/// assert!(reused.is_empty() && reused.capacity() >= 1 << 20);
/// ```
#[derive(Clone)]
pub struct BufferPool(Arc<Shared>);

struct Shared {
    free: Mutex<Vec<Vec<u8>>>,
    max_kept: usize,
    /// A buffer was taken since the last [`BufferPool::age`].
    used: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Vec<Vec<u8>>> {
        // A holder cannot leave the list inconsistent (push and swap_remove only).
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn give(&self, mut buf: Vec<u8>) {
        if !(MIN_SIZE..=MAX_SIZE).contains(&buf.capacity()) {
            return;
        }
        buf.clear();
        let mut free = self.lock();
        if free.len() < self.max_kept {
            free.push(buf);
        }
    }
}

impl core::fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BufferPool")
            .field("max_kept", &self.0.max_kept)
            .field("kept", &self.kept())
            .finish()
    }
}

impl BufferPool {
    /// An empty pool that keeps at most `max_kept` buffers.
    #[must_use]
    pub fn new(max_kept: usize) -> Self {
        BufferPool(Arc::new(Shared {
            free: Mutex::new(Vec::new()),
            max_kept,
            used: AtomicBool::new(false),
        }))
    }

    /// Frees every kept buffer unless one was taken since the last call.
    pub fn age(&self) {
        if !self.0.used.swap(false, Ordering::Relaxed) {
            self.clear();
        }
    }

    /// Frees every kept buffer now.
    pub fn clear(&self) {
        let drained = core::mem::take(&mut *self.0.lock());
        drop(drained); // freed outside the lock
    }

    /// Bytes kept for reuse (the buffers' capacity).
    #[must_use]
    pub fn kept(&self) -> usize {
        self.0.lock().iter().map(Vec::capacity).sum()
    }
}

impl Buffers for BufferPool {
    fn take(&mut self, min: usize) -> Option<Vec<u8>> {
        (&*self).take(min)
    }

    fn queue(&mut self, payload: Vec<u8>) -> Bytes {
        (&*self).queue(payload)
    }
}

/// A shared reference lends the pool too (a driver that holds it behind `&`).
impl Buffers for &BufferPool {
    fn take(&mut self, min: usize) -> Option<Vec<u8>> {
        if min > MAX_SIZE {
            return None;
        }
        let mut free = self.0.lock();
        let i = free.iter().position(|b| b.capacity() >= min)?;
        self.0.used.store(true, Ordering::Relaxed);
        Some(free.swap_remove(i))
    }

    fn queue(&mut self, payload: Vec<u8>) -> Bytes {
        if !(MIN_SIZE..=MAX_SIZE).contains(&payload.capacity()) {
            return Bytes::from(payload);
        }
        Bytes::from_owner(Returned {
            buf: payload,
            pool: self.0.clone(),
        })
    }
}

/// A queued payload that goes back to its pool when its last `Bytes` is dropped.
struct Returned {
    buf: Vec<u8>,
    pool: Arc<Shared>,
}

impl AsRef<[u8]> for Returned {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Returned {
    fn drop(&mut self) {
        self.pool.give(core::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn a_written_payload_comes_back_and_ages_out() {
        let mut pool = BufferPool::new(64);
        assert!(pool.take(1 << 20).is_none(), "empty at first");
        let mut v = Vec::with_capacity(1 << 20);
        v.extend_from_slice(&[7; 1000]);
        let queued = pool.queue(v);
        assert_eq!(&queued[..], &[7; 1000][..]);
        let clone = queued.clone();
        drop(queued);
        assert_eq!(pool.kept(), 0, "back only when the last reference goes");
        drop(clone);
        assert!(pool.kept() >= 1 << 20);
        let again = pool.take(1 << 19).expect("reused");
        assert!(again.is_empty() && again.capacity() >= 1 << 20);
        pool.0.give(again);
        pool.age(); // taken since the last call: kept
        assert!(pool.kept() > 0);
        pool.age(); // unused since: released
        assert_eq!(pool.kept(), 0);
    }

    #[test]
    fn small_and_huge_buffers_are_not_kept_and_the_count_is_bounded() {
        let mut pool = BufferPool::new(3);
        drop(pool.queue(vec![0; 100]));
        drop(pool.queue(Vec::with_capacity(MAX_SIZE + 1)));
        assert_eq!(pool.kept(), 0);
        assert!(pool.take(MAX_SIZE + 1).is_none());
        for _ in 0..8 {
            pool.0.give(Vec::with_capacity(MIN_SIZE));
        }
        assert_eq!(pool.kept(), 3 * MIN_SIZE);
        pool.clear();
        assert_eq!(pool.kept(), 0);
    }

    #[test]
    fn a_payload_dropped_on_another_thread_comes_back() {
        let mut pool = BufferPool::new(2);
        let queued = pool.queue(Vec::with_capacity(MIN_SIZE));
        std::thread::spawn(move || drop(queued)).join().unwrap();
        assert_eq!(pool.kept(), MIN_SIZE);
    }
}

//! A worker's pool of large buffers (the session's [`Buffers`]): messages in several pieces are
//! assembled in them, and echoed or forwarded payloads (`WebSocket::send_owned`) come back to
//! them once written, so that a stream of large messages reuses the same memory instead of
//! the allocator giving it back to the kernel and faulting it in again for every message.
//!
//! Bounded: at most [`MAX_KEPT`] buffers, none over [`MAX_SIZE`] bytes nor under
//! [`MIN_SIZE`]; and released when unused for a tick, so an idle worker holds none.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use sockeye_codec::session::Buffers;

/// Buffers kept at most.
const MAX_KEPT: usize = 64;
/// Larger buffers are freed, not kept.
const MAX_SIZE: usize = 16 << 20;
/// Smaller payloads are not worth a pool (the allocator reuses small blocks well).
const MIN_SIZE: usize = 64 << 10;

/// The pool, shared by the worker and the payloads it queued (which may be dropped elsewhere,
/// such as in a `Poster` task's thread: hence the lock, taken once per large message).
#[derive(Default)]
pub(crate) struct Pool {
    free: Mutex<Vec<Vec<u8>>>,
    /// A buffer was taken since the last [`Pool::age`].
    used: AtomicBool,
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        // A holder cannot leave the list inconsistent (push and swap_remove only).
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn give(&self, mut buf: Vec<u8>) {
        if !(MIN_SIZE..=MAX_SIZE).contains(&buf.capacity()) {
            return;
        }
        buf.clear();
        let mut free = self.lock();
        if free.len() < MAX_KEPT {
            free.push(buf);
        }
    }

    /// Called once per tick: frees every kept buffer unless one was taken since the last call.
    pub(crate) fn age(&self) {
        if !self.used.swap(false, Ordering::Relaxed) {
            let drained = std::mem::take(&mut *self.lock());
            drop(drained); // freed outside the lock
        }
    }

    /// Bytes kept (for tests).
    #[cfg(test)]
    fn kept(&self) -> usize {
        self.lock().iter().map(Vec::capacity).sum()
    }
}

/// The worker's handle, lent to the session as its [`Buffers`].
pub(crate) struct Handle<'a>(pub(crate) &'a Arc<Pool>);

impl Buffers for Handle<'_> {
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
    pool: Arc<Pool>,
}

impl AsRef<[u8]> for Returned {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Returned {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_payload_comes_back_and_ages_out() {
        let pool = Arc::new(Pool::default());
        let mut h = Handle(&pool);
        assert!(h.take(1 << 20).is_none(), "empty at first");
        let mut v = Vec::with_capacity(1 << 20);
        v.extend_from_slice(&[7; 1000]);
        let queued = h.queue(v);
        assert_eq!(&queued[..], &[7; 1000][..]);
        let clone = queued.clone();
        drop(queued);
        assert_eq!(pool.kept(), 0, "back only when the last reference goes");
        drop(clone);
        assert!(pool.kept() >= 1 << 20);
        let again = h.take(1 << 19).expect("reused");
        assert!(again.is_empty() && again.capacity() >= 1 << 20);
        h.0.give(again);
        pool.age(); // taken since the last tick: kept
        assert!(pool.kept() > 0);
        pool.age(); // unused for a tick: released
        assert_eq!(pool.kept(), 0);
    }

    #[test]
    fn small_and_huge_buffers_are_not_kept() {
        let pool = Arc::new(Pool::default());
        let mut h = Handle(&pool);
        drop(h.queue(vec![0; 100]));
        drop(h.queue(Vec::with_capacity(MAX_SIZE + 1)));
        assert_eq!(pool.kept(), 0);
        for _ in 0..MAX_KEPT + 5 {
            pool.give(Vec::with_capacity(MIN_SIZE));
        }
        assert_eq!(pool.kept(), MAX_KEPT * MIN_SIZE);
    }
}

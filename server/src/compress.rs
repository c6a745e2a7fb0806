//! permessage-deflate on the event loop: each connection's state and the worker's engines.
//!
//! A connection that negotiated compression holds a [`ConnDeflate`] (the peer's LZ77 history
//! and, while busy, zlib engines). The engines come from the worker's [`Deflater`] pool; once a
//! connection has gone [`PARK_TICKS`] ticks without compressing or inflating anything its
//! engines go back, so an idle connection keeps only that history (≤ 32 KiB).

use sockeye_codec::deflate::{Agreement, DeflateConfig, PerMessageDeflate, Pool};
use sockeye_codec::{Error, Role};

use crate::id::ConnId;

/// Engines kept idle per worker, per kind and window size.
const POOL_IDLE: usize = 32;

/// Ticks (of 100 ms) without use after which a connection's engines go back to the pool. Its
/// next message is then compressed without references to earlier ones (a little larger), and
/// its inflater is rebuilt from the kept history.
pub(crate) const PARK_TICKS: u8 = 10;

/// A scratch buffer larger than this is freed after use rather than kept for the next message.
const KEEP_SCRATCH: usize = 1 << 20;

fn take(slot: &mut Vec<u8>) -> Vec<u8> {
    let mut s = std::mem::take(slot);
    s.clear();
    s
}

fn put(slot: &mut Vec<u8>, s: Vec<u8>) {
    if s.capacity() <= KEEP_SCRATCH {
        *slot = s;
    }
}

/// One connection's compression state.
pub(crate) struct ConnDeflate {
    pmd: PerMessageDeflate,
    /// Used since the last tick.
    used: bool,
    /// Consecutive ticks without use.
    unused_ticks: u8,
    /// In the worker's list of connections holding engines.
    listed: bool,
}

impl ConnDeflate {
    pub(crate) fn new(role: Role, agreement: &Agreement, config: &DeflateConfig) -> Self {
        ConnDeflate {
            pmd: PerMessageDeflate::new(role, agreement, config).with_idle_release(),
            used: false,
            unused_ticks: 0,
            listed: false,
        }
    }

    /// Whether a message of `len` bytes is worth compressing.
    pub(crate) fn wants(&self, len: usize) -> bool {
        self.pmd.should_compress(len)
    }
}

/// A worker's compression engines and scratch space.
pub(crate) struct Deflater {
    /// The policy (`None`: compression off).
    pub(crate) config: Option<DeflateConfig>,
    pool: Pool,
    /// Connections that may hold engines, checked at each tick.
    active: Vec<ConnId>,
    /// Compressed output being framed.
    out_scratch: Vec<u8>,
    /// An inflated message lent to the handler (which may send, and so compress, meanwhile).
    in_scratch: Vec<u8>,
    /// Engines given back since the last heap trim.
    released: usize,
    ticks_since_trim: u32,
}

impl Deflater {
    pub(crate) fn new(config: Option<DeflateConfig>) -> Self {
        Deflater {
            config,
            pool: Pool::new(POOL_IDLE),
            active: Vec::new(),
            out_scratch: Vec::new(),
            in_scratch: Vec::new(),
            released: 0,
            ticks_since_trim: 0,
        }
    }

    /// An empty buffer for a compressed message; give it back with
    /// [`Deflater::put_out_scratch`].
    pub(crate) fn take_out_scratch(&mut self) -> Vec<u8> {
        take(&mut self.out_scratch)
    }

    pub(crate) fn put_out_scratch(&mut self, s: Vec<u8>) {
        put(&mut self.out_scratch, s);
    }

    /// An empty buffer for an inflated message; give it back with
    /// [`Deflater::put_in_scratch`].
    pub(crate) fn take_in_scratch(&mut self) -> Vec<u8> {
        take(&mut self.in_scratch)
    }

    pub(crate) fn put_in_scratch(&mut self, s: Vec<u8>) {
        put(&mut self.in_scratch, s);
    }

    fn touch(&mut self, id: ConnId, c: &mut ConnDeflate) {
        c.used = true;
        if !c.listed {
            c.listed = true;
            self.active.push(id);
        }
    }

    /// Compresses `payload` as one message into `out`.
    pub(crate) fn compress(
        &mut self,
        id: ConnId,
        c: &mut ConnDeflate,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) {
        self.touch(id, c);
        c.pmd.compress(payload, out, &mut self.pool);
    }

    /// Inflates a piece of a compressed message into `out`, checking the message limit (the
    /// session's receiver checks inflated text).
    pub(crate) fn inflate(
        &mut self,
        id: ConnId,
        c: &mut ConnDeflate,
        input: &[u8],
        fin: bool,
        out: &mut Vec<u8>,
        limit: u64,
    ) -> Result<(), Error> {
        self.touch(id, c);
        c.pmd.decompress(input, fin, out, limit, &mut self.pool)
    }

    /// The connections listed as holding engines, for the tick to check.
    pub(crate) fn take_active(&mut self) -> Vec<ConnId> {
        std::mem::take(&mut self.active)
    }

    /// At a tick: a connection used lately stays listed; one unused for [`PARK_TICKS`] gives
    /// its engines back to the pool.
    pub(crate) fn check_idle(&mut self, id: ConnId, c: &mut ConnDeflate) {
        if std::mem::take(&mut c.used) {
            c.unused_ticks = 0;
        } else {
            c.unused_ticks = c.unused_ticks.saturating_add(1);
        }
        if c.unused_ticks >= PARK_TICKS {
            self.released += usize::from(c.pmd.park(&mut self.pool));
            // Inside a received message the inflater stays: checked again later.
            c.listed = c.pmd.is_active();
        }
        if c.listed {
            self.active.push(id);
        }
    }

    /// A closing connection's engines go back to the pool.
    pub(crate) fn release(&mut self, c: &mut ConnDeflate) {
        self.released += usize::from(c.pmd.park(&mut self.pool));
    }

    /// Called at each tick: once engines were given back (most of them freed, the pool being
    /// small), at most once per [`TRIM_TICKS`], the heap's free pages go back to the system.
    /// Engines are hundreds of KiB interleaved with long-lived small blocks, so without this the
    /// freed memory stays in the process (measured: 57 KiB of RSS per idle connection instead
    /// of its ~33 KiB of live state).
    pub(crate) fn after_tick(&mut self) {
        self.ticks_since_trim = self.ticks_since_trim.saturating_add(1);
        if self.released > 0 && self.ticks_since_trim >= TRIM_TICKS {
            self.released = 0;
            self.ticks_since_trim = 0;
            trim_heap();
        }
    }
}

/// Ticks between two heap trims at most.
const TRIM_TICKS: u32 = 10;

/// Returns the free pages of glibc's heap to the system.
#[cfg(target_env = "gnu")]
#[allow(unsafe_code)]
fn trim_heap() {
    // SAFETY: malloc_trim only walks and trims the allocator's own free lists; it has no
    // preconditions and is thread-safe (it takes each arena's lock).
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(target_env = "gnu"))]
fn trim_heap() {}

//! permessage-deflate on the event loop: each connection's state and the worker's engines.
//!
//! A connection that negotiated compression holds a [`ConnDeflate`] (the peer's LZ77 history
//! and, while busy, zlib engines). The engines come from the worker's [`Deflater`] pool; once a
//! connection has gone [`PARK_TICKS`] ticks without compressing or inflating anything its
//! engines go back, so an idle connection keeps only that history (≤ 32 KiB).

use sockeye_codec::deflate::{Agreement, DeflateConfig, PerMessageDeflate, Pool};
use sockeye_codec::{Error, Role, Utf8Validator};

use crate::worker::ConnId;

/// Engines kept idle per worker, per kind and window size.
const POOL_IDLE: usize = 32;

/// Ticks (of 100 ms) without use after which a connection's engines go back to the pool. Its
/// next message is then compressed without references to earlier ones (a little larger), and
/// its inflater is rebuilt from the kept history.
pub(crate) const PARK_TICKS: u8 = 10;

/// A scratch buffer larger than this is freed after use rather than kept for the next message.
const KEEP_SCRATCH: usize = 1 << 20;

/// One connection's compression state.
pub(crate) struct ConnDeflate {
    pmd: PerMessageDeflate,
    /// UTF-8 of decompressed text, across the pieces of a message.
    utf8: Utf8Validator,
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
            utf8: Utf8Validator::new(),
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
    scratch: Vec<u8>,
}

impl Deflater {
    pub(crate) fn new(config: Option<DeflateConfig>) -> Self {
        Deflater {
            config,
            pool: Pool::new(POOL_IDLE),
            active: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// An empty buffer for one message's output; give it back with [`Deflater::put_scratch`].
    pub(crate) fn take_scratch(&mut self) -> Vec<u8> {
        let mut s = std::mem::take(&mut self.scratch);
        s.clear();
        s
    }

    pub(crate) fn put_scratch(&mut self, s: Vec<u8>) {
        if s.capacity() <= KEEP_SCRATCH {
            self.scratch = s;
        }
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

    /// Inflates a piece of a compressed message into `out`, checking the message limit and,
    /// for text, UTF-8 across pieces.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn inflate(
        &mut self,
        id: ConnId,
        c: &mut ConnDeflate,
        input: &[u8],
        start: bool,
        fin: bool,
        text: bool,
        out: &mut Vec<u8>,
        limit: u64,
    ) -> Result<(), Error> {
        self.touch(id, c);
        if start {
            c.utf8.reset();
        }
        let from = out.len();
        c.pmd.decompress(input, fin, out, limit, &mut self.pool)?;
        if text {
            c.utf8
                .feed(&out[from..], fin)
                .map_err(|_| Error::InvalidUtf8)?;
        }
        Ok(())
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
            c.pmd.park(&mut self.pool);
            // Inside a received message the inflater stays: checked again later.
            c.listed = c.pmd.is_active();
        }
        if c.listed {
            self.active.push(id);
        }
    }

    /// A closing connection's engines go back to the pool.
    pub(crate) fn release(&mut self, c: &mut ConnDeflate) {
        c.pmd.park(&mut self.pool);
    }
}

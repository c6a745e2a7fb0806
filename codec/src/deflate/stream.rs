//! Per-connection compression state, and the pool of zlib engines it borrows from.

use alloc::vec::Vec;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::{Agreement, DeflateConfig, Direction, MIN_COMPRESS_WINDOW_BITS};
use crate::decoder::Role;
use crate::error::Error;

/// The empty stored block a sync flush ends with; removed from sent messages and appended to
/// received ones (RFC 7692 §7.2.1, §7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Window of every inflater: a 15-bit window decodes streams written with any smaller one, so
/// one kind of inflater serves every agreement (and zlib cannot reset a smaller one in place).
const INFLATE_BITS: u8 = 15;

/// Idle zlib engines, reused by the connections of one thread (a worker, an event loop).
///
/// A compressor at 15 window bits is ~300 KiB and an inflater ~40 KiB; a connection takes them
/// from here while it sends or receives compressed messages and gives them back when it goes
/// idle ([`PerMessageDeflate::park`]) or, without context takeover, after each message. At most
/// `max_idle` engines of each kind are kept; the rest are freed.
pub struct Pool {
    /// Compressors by window bits 9–15, each with its level.
    compressors: [Vec<(u8, Compress)>; 7],
    decompressors: Vec<Decompress>,
    max_idle: usize,
}

impl Pool {
    /// A pool keeping at most `max_idle` idle engines of each kind and window size.
    #[must_use]
    pub fn new(max_idle: usize) -> Self {
        Pool {
            compressors: Default::default(),
            decompressors: Vec::new(),
            max_idle,
        }
    }

    /// Idle engines held (compressors and inflaters).
    #[must_use]
    pub fn idle(&self) -> usize {
        self.compressors.iter().map(Vec::len).sum::<usize>() + self.decompressors.len()
    }

    /// The engine settings for a window: zlib's smallest raw window is 9 bits, so an 8-bit
    /// agreement gets a level-0 compressor, which writes stored blocks that refer back to
    /// nothing and are valid for any window.
    fn engine(bits: u8, level: u8) -> (u8, u8) {
        if bits < MIN_COMPRESS_WINDOW_BITS {
            (MIN_COMPRESS_WINDOW_BITS, 0)
        } else {
            (bits, level)
        }
    }

    fn take_compressor(&mut self, bits: u8, level: u8) -> Compress {
        let (bits, level) = Pool::engine(bits, level);
        let slot = &mut self.compressors[usize::from(bits - 9)];
        match slot.pop() {
            Some((l, mut c)) => {
                if l != level {
                    // A reset engine takes a new level without emitting anything.
                    let _ = c.set_level(Compression::new(u32::from(level)));
                }
                c
            }
            None => Compress::new_with_window_bits(Compression::new(u32::from(level)), false, bits),
        }
    }

    fn put_compressor(&mut self, bits: u8, level: u8, mut c: Compress) {
        let (bits, level) = Pool::engine(bits, level);
        let slot = &mut self.compressors[usize::from(bits - 9)];
        if slot.len() < self.max_idle {
            c.reset();
            slot.push((level, c));
        }
    }

    fn take_decompressor(&mut self) -> Decompress {
        self.decompressors
            .pop()
            .unwrap_or_else(|| Decompress::new_with_window_bits(false, INFLATE_BITS))
    }

    fn put_decompressor(&mut self, mut d: Decompress) {
        if self.decompressors.len() < self.max_idle {
            d.reset(false);
            self.decompressors.push(d);
        }
    }
}

impl Default for Pool {
    /// Keeps up to 16 idle engines of each kind.
    fn default() -> Self {
        Pool::new(16)
    }
}

/// The last `window` bytes that went through a compressor or came out of an inflater: all the
/// context takeover needs to rebuild an engine after it was given back to the pool.
struct History {
    buf: Vec<u8>,
    /// Once `buf` is full: the position of the oldest byte.
    pos: usize,
    window: usize,
}

impl History {
    fn new(bits: u8) -> Self {
        History {
            buf: Vec::new(),
            pos: 0,
            window: 1 << bits,
        }
    }

    fn push(&mut self, mut data: &[u8]) {
        let w = self.window;
        if data.len() >= w {
            self.buf.clear();
            self.buf.reserve_exact(w);
            self.buf.extend_from_slice(&data[data.len() - w..]);
            self.pos = 0;
            return;
        }
        if self.buf.len() < w {
            // Still filling: grow in few steps (4 KiB, then ×4), never past the window. Each
            // step leaves a hole in the heap; few and page-sized ones are reused well.
            let want = (self.buf.len() + data.len()).min(w);
            if want > self.buf.capacity() {
                let cap = want.max(self.buf.capacity() * 4).max(4096).min(w);
                self.buf.reserve_exact(cap - self.buf.len());
            }
            let n = data.len().min(w - self.buf.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
        }
        // Full: overwrite the oldest bytes, wrapping around.
        let first = data.len().min(w - self.pos);
        self.buf[self.pos..self.pos + first].copy_from_slice(&data[..first]);
        self.buf[..data.len() - first].copy_from_slice(&data[first..]);
        self.pos = (self.pos + data.len()) % w;
    }

    /// The history, oldest byte first.
    fn linear(&mut self) -> &[u8] {
        if self.pos != 0 {
            self.buf.rotate_left(self.pos);
            self.pos = 0;
        }
        &self.buf
    }

    fn bytes(&self) -> usize {
        self.buf.capacity()
    }
}

/// The sending half: compresses whole messages.
struct Tx {
    dir: Direction,
    level: u8,
    threshold: usize,
    engine: Option<Compress>,
    /// A message written in parts is open.
    in_message: bool,
}

/// The receiving half: inflates messages chunk by chunk.
struct Rx {
    dir: Direction,
    engine: Option<Decompress>,
    history: Option<History>,
    /// Decompressed bytes of the message in progress.
    produced: u64,
    in_message: bool,
    /// The peer ended its deflate stream (a final block) inside this message.
    ended: bool,
}

/// permessage-deflate for one connection: compresses what it sends and inflates what it
/// receives, as agreed for its role.
///
/// The zlib engines come from a [`Pool`] owned by the caller (one per thread). Without context
/// takeover an engine is borrowed for a single message; with it, the engines stay attached
/// while the connection is busy, and [`park`](PerMessageDeflate::park) gives them back, keeping
/// only the peer's LZ77 history (≤ 2^window bits bytes) when the connection was built
/// [`with_idle_release`](PerMessageDeflate::with_idle_release).
///
/// ```
/// use sockeye_codec::deflate::{negotiate, DeflateConfig, PerMessageDeflate, Pool};
/// use sockeye_codec::Role;
///
/// let config = DeflateConfig::new();
/// let agreed = negotiate(["permessage-deflate"], &config).unwrap();
/// let mut pool = Pool::default();
/// let mut server = PerMessageDeflate::new(Role::Server, &agreed, &config);
/// let mut client = PerMessageDeflate::new(Role::Client, &agreed, &config);
///
/// let text = "hello hello hello hello hello hello".repeat(10);
/// let mut wire = Vec::new();
/// server.compress(text.as_bytes(), &mut wire, &mut pool);
/// assert!(wire.len() < text.len() / 4);
///
/// let mut out = Vec::new();
/// client.decompress(&wire, true, &mut out, 1 << 20, &mut pool).unwrap();
/// assert_eq!(out, text.as_bytes());
/// ```
pub struct PerMessageDeflate {
    tx: Tx,
    rx: Rx,
}

impl PerMessageDeflate {
    /// The state for an endpoint of `role` after `agreement`, compressing at `config`'s level.
    #[must_use]
    pub fn new(role: Role, agreement: &Agreement, config: &DeflateConfig) -> Self {
        PerMessageDeflate {
            tx: Tx {
                dir: agreement.outgoing(role),
                level: config.level,
                threshold: config.threshold_bytes(),
                engine: None,
                in_message: false,
            },
            rx: Rx {
                dir: agreement.incoming(role),
                engine: None,
                history: None,
                produced: 0,
                in_message: false,
                ended: false,
            },
        }
    }

    /// Keeps, when the peer compresses with context takeover, a copy of the last window of what
    /// it sent, so that [`park`](PerMessageDeflate::park) can give the inflater back while the
    /// connection is idle and rebuild it from that copy later. Costs a copy of each received
    /// message (up to the window).
    #[must_use]
    pub fn with_idle_release(mut self) -> Self {
        if self.rx.dir.context_takeover {
            self.rx.history = Some(History::new(self.rx.dir.window_bits));
        }
        self
    }

    /// Whether a message of `len` bytes should be compressed: it reaches the threshold, and
    /// the peer allows a window zlib can compress with (9 bits or more).
    #[must_use]
    pub fn should_compress(&self, len: usize) -> bool {
        len >= self.tx.threshold && self.tx.dir.window_bits >= MIN_COMPRESS_WINDOW_BITS
    }

    /// Compresses `payload` as one message, appending the compressed bytes (without the
    /// trailing `00 00 ff ff`) to `out`; send them as a message with RSV1 set on its first frame.
    pub fn compress(&mut self, payload: &[u8], out: &mut Vec<u8>, pool: &mut Pool) {
        self.compress_part(payload, true, out, pool);
    }

    /// Compresses the next part of a message written in pieces, appending what the compressor
    /// releases to `out` (often nothing until enough input has gathered); `fin` ends the message
    /// and flushes the rest. The output of all parts together is the message's payload.
    pub fn compress_part(&mut self, payload: &[u8], fin: bool, out: &mut Vec<u8>, pool: &mut Pool) {
        let tx = &mut self.tx;
        let bits = tx.dir.window_bits;
        // A compressor from the pool starts without history: the message simply refers to no
        // earlier one, which the peer's inflater accepts under any agreement.
        let mut engine = tx
            .engine
            .take()
            .unwrap_or_else(|| pool.take_compressor(bits, tx.level));
        let start = out.len();
        let base = engine.total_in();
        loop {
            if out.len() == out.capacity() {
                let left = payload.len() - (engine.total_in() - base) as usize;
                out.reserve(left / 2 + 64);
            }
            let done = (engine.total_in() - base) as usize;
            let flush = if fin {
                FlushCompress::Sync
            } else {
                FlushCompress::None
            };
            // Errors only come from a misused stream; a live one cannot fail.
            let _ = engine.compress_vec(&payload[done..], out, flush);
            let all_in = (engine.total_in() - base) as usize == payload.len();
            if all_in && out.len() < out.capacity() {
                break;
            }
        }
        tx.in_message = !fin;
        if fin {
            if out[start..].ends_with(&TAIL) {
                out.truncate(out.len() - TAIL.len());
            } else {
                // zlib writes nothing for a sync flush when no input came since the last one
                // (an empty message after another, or an empty last part after `flush_part`):
                // the stream already ends on a flushed, byte-aligned block. The message still
                // needs the start of a block for the tail the peer appends (`00 00 ff ff`, the
                // lengths of a stored block) to complete, so it gets the one byte `00`: the
                // header of a non-final stored block. With the tail that is an empty block,
                // which leaves both windows as they were.
                debug_assert_eq!(out.len(), start, "a sync flush ends with 00 00 ff ff");
                out.push(0);
            }
        }
        if fin && !tx.dir.context_takeover {
            pool.put_compressor(bits, tx.level, engine);
        } else {
            tx.engine = Some(engine);
        }
    }

    /// Flushes what the compressor holds of the message being written in parts into `out`
    /// (a sync flush; its `00 00 ff ff` marker stays inside the message, which the peer inflates
    /// as an empty block), so that everything written so far can be sent now. The message goes
    /// on with [`compress_part`](PerMessageDeflate::compress_part).
    pub fn flush_part(&mut self, out: &mut Vec<u8>) {
        let Some(engine) = self.tx.engine.as_mut().filter(|_| self.tx.in_message) else {
            return;
        };
        loop {
            if out.len() == out.capacity() {
                out.reserve(64);
            }
            let _ = engine.compress_vec(&[], out, FlushCompress::Sync);
            if out.len() < out.capacity() {
                break;
            }
        }
    }

    /// Inflates the next piece of a compressed message, appending the output to `out`; `fin`
    /// marks the message's last piece. `limit` bounds the message's decompressed size: past it
    /// the result is [`Error::MessageTooLarge`] (close with 1009), and `out` never grows beyond
    /// what the limit allows. Invalid data is [`Error::InvalidCompressedData`] (1007).
    pub fn decompress(
        &mut self,
        input: &[u8],
        fin: bool,
        out: &mut Vec<u8>,
        limit: u64,
        pool: &mut Pool,
    ) -> Result<(), Error> {
        let rx = &mut self.rx;
        if !rx.in_message {
            rx.in_message = true;
            rx.produced = 0;
            rx.ended = false;
        }
        let mut engine = match rx.engine.take() {
            Some(e) => e,
            None => {
                let mut e = pool.take_decompressor();
                if let Some(h) = rx.history.as_mut().filter(|h| !h.buf.is_empty()) {
                    e.set_dictionary(h.linear())
                        .map_err(|_| Error::InvalidCompressedData)?;
                }
                e
            }
        };
        let mut r = rx.inflate(&mut engine, input, FlushDecompress::None, out, limit);
        if r.is_ok() && fin {
            r = rx.inflate(&mut engine, &TAIL, FlushDecompress::Sync, out, limit);
        }
        if r.is_err() {
            // The connection fails; the engine is not reusable as is.
            rx.in_message = false;
            pool.put_decompressor(engine);
            return r;
        }
        if fin {
            rx.in_message = false;
            if rx.ended || !rx.dir.context_takeover {
                // A final block ends the stream; without takeover each message starts afresh.
                engine.reset(false);
                if rx.dir.context_takeover
                    && let Some(h) = rx.history.as_mut().filter(|h| !h.buf.is_empty())
                {
                    let _ = engine.set_dictionary(h.linear());
                }
            }
            if !rx.dir.context_takeover {
                pool.put_decompressor(engine);
                return Ok(());
            }
        }
        rx.engine = Some(engine);
        Ok(())
    }

    /// Gives the engines back to `pool`, never in the middle of a message: the compressor
    /// always (the next message then starts without references to earlier ones: a little less
    /// compression for it, no state kept meanwhile), the inflater without context takeover or
    /// when the connection keeps the peer's history
    /// ([`with_idle_release`](PerMessageDeflate::with_idle_release)). Returns whether an engine
    /// was released. Call it when the connection goes idle.
    pub fn park(&mut self, pool: &mut Pool) -> bool {
        let mut released = false;
        if !self.tx.in_message
            && let Some(e) = self.tx.engine.take()
        {
            pool.put_compressor(self.tx.dir.window_bits, self.tx.level, e);
            released = true;
        }
        let rx_free = self.rx.history.is_some() || !self.rx.dir.context_takeover;
        if rx_free
            && !self.rx.in_message
            && let Some(e) = self.rx.engine.take()
        {
            pool.put_decompressor(e);
            released = true;
        }
        released
    }

    /// Whether an engine is attached (the connection is not parked).
    #[must_use]
    pub fn is_active(&self) -> bool {
        self.tx.engine.is_some() || self.rx.engine.is_some()
    }

    /// Bytes of the peer's LZ77 history kept for idle release.
    #[must_use]
    pub fn history_bytes(&self) -> usize {
        self.rx.history.as_ref().map_or(0, History::bytes)
    }

    /// The outgoing direction as agreed.
    #[must_use]
    pub fn outgoing(&self) -> Direction {
        self.tx.dir
    }

    /// The incoming direction as agreed.
    #[must_use]
    pub fn incoming(&self) -> Direction {
        self.rx.dir
    }
}

impl Rx {
    /// Runs the inflater over all of `input`, growing `out` within the message limit.
    fn inflate(
        &mut self,
        engine: &mut Decompress,
        mut input: &[u8],
        flush: FlushDecompress,
        out: &mut Vec<u8>,
        limit: u64,
    ) -> Result<(), Error> {
        loop {
            if self.ended {
                // A final block ended the stream: what follows it (padding, our tail) is
                // ignored, as the example of RFC 7692 §7.2.3.4 needs.
                return Ok(());
            }
            if out.len() == out.capacity() {
                // Room for one byte past the limit at most: enough to tell it was exceeded.
                let budget = limit.saturating_sub(self.produced).saturating_add(1);
                let grow = (out.capacity().clamp(4096, 1 << 20) as u64).min(budget);
                out.reserve_exact(grow as usize);
            }
            let (in0, out0) = (engine.total_in(), out.len());
            let status = engine
                .decompress_vec(input, out, flush)
                .map_err(|_| Error::InvalidCompressedData)?;
            input = &input[(engine.total_in() - in0) as usize..];
            let made = out.len() - out0;
            self.produced += made as u64;
            if self.produced > limit {
                return Err(Error::MessageTooLarge);
            }
            if let Some(h) = self.history.as_mut() {
                h.push(&out[out0..]);
            }
            match status {
                Status::StreamEnd => self.ended = true,
                _ if input.is_empty() && out.len() < out.capacity() => return Ok(()),
                Status::BufError if made == 0 && out.len() < out.capacity() => return Ok(()),
                _ => {}
            }
        }
    }
}

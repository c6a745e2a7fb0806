//! One connection's protocol above the frame decoder (feature `alloc`): the first part of the
//! sans-IO session every driver (the io_uring worker, the blocking client) is built on.
//!
//! [`Receiver`] turns received bytes into whole messages, streamed chunks and control frames.
//! It owns what used to be written once per driver, and where the review of `444a203` found
//! its holes:
//!
//! - **Assembly.** A message in several frames (or split across receive buffers) is collected
//!   in a buffer that grows with the bytes that actually arrived: a header's declared length
//!   is reserved ahead only up to 16 times what has arrived (at least 64 KiB), so a large
//!   message is not copied as it grows and a lying header gets nothing. The message limit
//!   the decoder checks on every header bounds it too.
//! - **Whole or streamed, per message.** [`Receiver::set_streaming`] takes effect from the
//!   next message; a message is delivered entirely the way it started (a handler that changes
//!   its mind mid-message cannot get a message's tail as if it were the whole).
//! - **UTF-8.** Text is handed out as `&str` only for a whole message the decoder or this
//!   receiver validated itself: the decoder checks uncompressed text across fragments, the
//!   receiver checks inflated text across pieces.
//! - **permessage-deflate.** Compressed messages are inflated through an [`Inflate`] the driver
//!   lends (it keeps the engines and their pool), with the message limit applied to the
//!   inflated size.
//!
//! Zero copy: a whole message that sits in the caller's buffer is lent from it as it is
//! (unmasked in place), and an inflated one from the caller's scratch buffer.
//!
//! ```
//! use sockeye_codec::session::{Incoming, Message, Receiver};
//! use sockeye_codec::{Config, OpCode, Role, encode_frame};
//!
//! // A client's masked "Hello" in two fragments, then a ping.
//! let mut wire = vec![0u8; 64];
//! let mut n = encode_frame(&mut wire, OpCode::Text, false, Some([1, 2, 3, 4]), b"Hel").unwrap();
//! n += encode_frame(&mut wire[n..], OpCode::Continuation, true, Some([5, 6, 7, 8]), b"lo")
//!     .unwrap();
//! n += encode_frame(&mut wire[n..], OpCode::Ping, true, Some([9, 9, 9, 9]), b"").unwrap();
//!
//! let mut rx = Receiver::new(Role::Server, Config::default());
//! let mut scratch = Vec::new();
//! let mut buf = &mut wire[..n];
//! let mut seen = Vec::new();
//! loop {
//!     let got = rx.receive(buf, &mut scratch, None).unwrap();
//!     if got.needs_more() {
//!         break; // keep the unconsumed bytes (none here), receive more, call again
//!     }
//!     let used = got.consumed;
//!     match got.event {
//!         Some(Incoming::Assembled(m)) => seen.push(format!("{:?}", m.as_message())),
//!         Some(Incoming::Ping(p)) => seen.push(format!("ping {}", p.len())),
//!         _ => {} // a fragment collected: nothing to hand out yet
//!     }
//!     buf = &mut buf[used..];
//! }
//! assert_eq!(seen, [r#"Text("Hello")"#, "ping 0"]);
//! ```

// `unsafe` here is only `from_utf8_unchecked` on text this module or the decoder validated,
// allowed item by item below (the crate denies it elsewhere, as outside `mask`): the `&str`
// guarantee rests on the decoder's own invariants, so it can be kept only inside this crate.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::mem::MaybeUninit;

use crate::close::Close;
use crate::decoder::{Config, Data, DataKind, Decoder, Event, Role};
use crate::error::Error;
use crate::frame::Status;

mod clock;
mod endpoint;
#[cfg(feature = "std")]
mod pool;
mod send;

pub use clock::{Clock, Due, Timeouts};
pub use endpoint::{Deflate, Ended, Initiator, Session};
#[cfg(feature = "std")]
pub use pool::BufferPool;
pub use send::{
    Buffers, Compress, Fragment, Link, MaskKeys, Outgoing, Prepared, SendError, Sender,
};

/// A whole received message, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message (valid UTF-8, validated as it arrived).
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

impl<'a> Message<'a> {
    /// The payload bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &'a [u8] {
        match *self {
            Message::Text(s) => s.as_bytes(),
            Message::Binary(b) => b,
        }
    }

    /// Whether it is a text message.
    #[must_use]
    pub fn is_text(&self) -> bool {
        matches!(self, Message::Text(_))
    }
}

/// A whole message with its own buffer: text is valid UTF-8 (the type keeps that invariant:
/// it is built only from validated text or from a `String`).
///
/// ```
/// use sockeye_codec::session::{Message, OwnedMessage};
/// let m = OwnedMessage::text("hi".to_owned());
/// assert_eq!(m.as_message(), Message::Text("hi"));
/// assert_eq!(OwnedMessage::binary(vec![1, 2]).into_bytes(), [1, 2]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedMessage {
    text: bool,
    data: Vec<u8>,
}

impl OwnedMessage {
    /// A binary message owning `data`.
    #[must_use]
    pub fn binary(data: Vec<u8>) -> Self {
        OwnedMessage { text: false, data }
    }

    /// A text message owning `text`.
    #[must_use]
    pub fn text(text: String) -> Self {
        OwnedMessage {
            text: true,
            data: text.into_bytes(),
        }
    }

    /// Whether it is a text message (then the bytes are valid UTF-8).
    #[must_use]
    pub fn is_text(&self) -> bool {
        self.text
    }

    /// The message, borrowed.
    #[must_use]
    #[allow(unsafe_code)]
    pub fn as_message(&self) -> Message<'_> {
        if self.text {
            // SAFETY: `text` is set only by `OwnedMessage::text` (from a `String`) and by the
            // receiver for a whole message it or the decoder validated; `data` is never
            // handed out mutably.
            Message::Text(unsafe { text_unchecked(&self.data) })
        } else {
            Message::Binary(&self.data)
        }
    }

    /// The payload bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.data
    }

    /// Payload bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the payload is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The payload, with its buffer.
    #[must_use]
    pub fn into_bytes(self) -> Vec<u8> {
        self.data
    }

    /// The text, with its buffer; `None` for a binary message.
    #[must_use]
    #[allow(unsafe_code)]
    pub fn into_text(self) -> Option<String> {
        // SAFETY: as in `as_message`: a text message's bytes are valid UTF-8.
        self.text
            .then(|| unsafe { String::from_utf8_unchecked(self.data) })
    }
}

/// A piece of a message being streamed ([`Receiver::set_streaming`]).
#[derive(Debug, PartialEq, Eq)]
pub struct Chunk<'a> {
    /// Whether the message is text (a piece may end inside a character; the whole message is
    /// valid UTF-8, and invalid text fails the connection as soon as it arrives).
    pub text: bool,
    /// The bytes of this piece (unmasked; inflated if the message was compressed).
    pub data: &'a [u8],
    /// The first piece of its message.
    pub first: bool,
    /// The last piece of its message.
    pub last: bool,
}

/// What the receiver found.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// A whole message that arrived in one piece, lent from the caller's buffer (or, if it was
    /// compressed, from the caller's scratch buffer) without a copy.
    Message(Message<'a>),
    /// A whole message that arrived in several pieces, assembled in a buffer of its own and
    /// handed over with it.
    Assembled(OwnedMessage),
    /// A piece of a streamed message.
    Chunk(Chunk<'a>),
    /// A ping (≤125 bytes); the driver answers it with a pong.
    Ping(&'a [u8]),
    /// A pong.
    Pong(&'a [u8]),
    /// The peer's close frame, code and reason validated. Nothing follows it.
    Close(Close<'a>),
}

/// The result of one [`Receiver::receive`] call.
#[derive(Debug)]
#[must_use = "the caller must discard `consumed` bytes before the next call"]
pub struct Received<'a> {
    /// Bytes at the front of the buffer that were used: the caller MUST discard exactly these
    /// (keeping every byte after them, unchanged) before the next call.
    pub consumed: usize,
    /// The event; `None` for bytes that gave nothing to hand out yet (a piece collected into a
    /// message being assembled) or, with `consumed == 0`, for too few bytes to decode anything
    /// (see [`Received::needs_more`]).
    pub event: Option<Incoming<'a>>,
}

impl Received<'_> {
    /// Whether nothing more can be decoded until more bytes arrive (append them to what was
    /// not consumed and call again).
    #[must_use]
    pub fn needs_more(&self) -> bool {
        self.consumed == 0 && self.event.is_none()
    }
}

/// Inflates the pieces of compressed messages for a [`Receiver`]; the driver implements it
/// over its permessage-deflate state and engine pool (`Deflating` does, with the
/// `deflate` feature).
pub trait Inflate {
    /// Appends the inflation of `input`, a piece of a compressed message (`fin`: its last), to
    /// `out`. The message's inflated size may not pass `limit`
    /// ([`Error::MessageTooLarge`]); invalid data is [`Error::InvalidCompressedData`].
    fn inflate(
        &mut self,
        input: &[u8],
        fin: bool,
        out: &mut Vec<u8>,
        limit: u64,
    ) -> Result<(), Error>;
}

/// How the message in progress is delivered (decided at its first frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InMessage {
    /// Collected in `assembly`, delivered whole at its last frame.
    Whole,
    /// Delivered piece by piece.
    Stream,
}

/// A scratch buffer larger than this is freed after a message instead of kept.
const KEEP_SCRATCH: usize = 1 << 20;

/// The receiving half of a connection's protocol; see the [module docs](self).
#[derive(Debug)]
pub struct Receiver {
    decoder: Decoder,
    /// The message being assembled; `None` between messages (boxed: an idle connection pays
    /// one word for it instead of a `Vec`'s three).
    #[allow(clippy::box_collection)]
    assembly: Option<Box<Vec<u8>>>,
    /// How the next message is delivered.
    streaming: bool,
    /// The data message in progress, and how it is delivered.
    current: Option<InMessage>,
    /// Bytes of room [`Receiver::room`] lent (0: none): the assembly's spare capacity, which
    /// [`Receiver::received_in_room`] takes no more of than this. (A `u32` fits in the
    /// padding after the flags: with a `usize`, an idle tokio stream held 1,858 B instead of
    /// 1,713 at 10,000 connections.)
    room: u32,
}

/// A copy in the same state, except that no room is lent: the room [`Receiver::room`] lent is
/// the original's memory.
impl Clone for Receiver {
    fn clone(&self) -> Self {
        Receiver {
            decoder: self.decoder.clone(),
            assembly: self.assembly.clone(),
            streaming: self.streaming,
            current: self.current,
            room: 0,
        }
    }
}

/// How far ahead of the bytes received the assembly buffer may be reserved, as a multiple of
/// what has arrived of the message: a frame's declared length is used to avoid copying as
/// the message grows, but never beyond this (so memory stays proportional to bytes received,
/// whatever a header claims).
const RESERVE_AHEAD: usize = 16;

/// The least the assembly reserves ahead, whatever has arrived.
const RESERVE_MIN: usize = 64 << 10;

/// How much the assembly reserves ahead once `arrived` bytes of the message came, with `rest`
/// declared still to come: at most `rest`, at most [`RESERVE_AHEAD`] times what arrived, at
/// least [`RESERVE_MIN`].
fn reserve_ahead(arrived: usize, rest: usize) -> usize {
    rest.min(arrived.saturating_mul(RESERVE_AHEAD).max(RESERVE_MIN))
}

/// The least rest of a frame [`Receiver::room`] lends room for; shorter rests go through the
/// driver's receive buffer (a copy of less than 16 KiB).
pub const ROOM_MIN: usize = 16 << 10;

impl Receiver {
    /// A receiver for an endpoint of `role`, with `config`'s limits.
    #[must_use]
    pub const fn new(role: Role, config: Config) -> Self {
        Receiver {
            decoder: Decoder::new(role, config),
            assembly: None,
            streaming: false,
            current: None,
            room: 0,
        }
    }

    /// The decoder's configuration (limits, whether compression was negotiated).
    #[must_use]
    pub const fn config(&self) -> &Config {
        self.decoder.config()
    }

    /// Replaces the configuration (from the next frame header on).
    pub fn set_config(&mut self, config: Config) {
        self.decoder.set_config(config);
    }

    /// Whether messages are streamed as [`Incoming::Chunk`]s instead of delivered whole. Takes
    /// effect from the next message: one in progress ends the way it started.
    pub fn set_streaming(&mut self, streaming: bool) {
        self.streaming = streaming;
    }

    /// Whether the next message will be streamed.
    #[must_use]
    pub const fn streaming(&self) -> bool {
        self.streaming
    }

    /// Whether a data message is in progress.
    #[must_use]
    pub const fn in_message(&self) -> bool {
        self.current.is_some()
    }

    /// Whether the message in progress is being streamed.
    #[must_use]
    pub fn streaming_message(&self) -> bool {
        self.current == Some(InMessage::Stream)
    }

    /// Whether the peer's close frame was received.
    #[must_use]
    pub const fn is_closed(&self) -> bool {
        self.decoder.is_closed()
    }

    /// Heap bytes held for a message being assembled.
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.assembly.as_ref().map_or(0, |a| a.capacity())
    }

    /// Room in the message being assembled for the rest of a large frame's payload, to read
    /// into straight from the transport instead of through the caller's receive buffer (which
    /// saves copying each byte once more): `Some` while a message delivered whole and
    /// uncompressed is in a data frame with at least [`ROOM_MIN`] payload bytes still to come.
    /// Ask only when every byte received so far was passed to [`Receiver::receive`] and
    /// consumed; then report what was read into the room's front with
    /// [`Receiver::received_in_room`].
    ///
    /// The room is the assembly buffer's spare capacity (not initialized: a read fills it, as
    /// with tokio's `ReadBuf::uninit`), at most the rest of the frame. The assembly grows by the
    /// rule in the [module docs](self): ahead of what arrived by at most 16 times it, at least
    /// 64 KiB. A call to `receive` gives the room up.
    pub fn room(
        &mut self,
        buffers: Option<&mut (dyn Buffers + '_)>,
    ) -> Option<&mut [MaybeUninit<u8>]> {
        self.room = 0;
        if self.current != Some(InMessage::Whole) || self.decoder.message_compressed() {
            return None;
        }
        let rest = usize::try_from(self.decoder.payload_in_place()).unwrap_or(usize::MAX);
        if rest < ROOM_MIN {
            return None;
        }
        // Ahead of what arrived by the same rule as `assembly_for`, counting only what did
        // arrive (the room's bytes have not).
        let arrived = self.assembly.as_ref().map_or(0, |a| a.len());
        let want = reserve_ahead(arrived, rest);
        let a = self.assembly_or_reused(want, buffers.map(|b| b as &mut dyn Buffers));
        // Grown when less than a read's worth is left (a larger room means fewer reads; growing
        // by little at a time would copy the message over and over).
        if a.capacity() - a.len() < want.min(RESERVE_MIN) && a.try_reserve_exact(want).is_err() {
            return None; // read through the receive buffer instead
        }
        let room = (a.capacity() - a.len()).min(rest).min(u32::MAX as usize);
        self.room = room as u32; // within u32 (just above)
        let a = self.assembly.as_deref_mut()?;
        Some(&mut a.spare_capacity_mut()[..room])
    }

    /// Takes the first `n` bytes of the room [`Receiver::room`] lent last as the next payload
    /// bytes of the frame (unmasking them in place, checking text as UTF-8) and gives the rest
    /// of the room up: the message once its last byte came. `n` beyond the room counts as the
    /// room; with no room lent (or `receive` called since), nothing happens. An error is the
    /// connection's, as from [`Receiver::receive`].
    ///
    /// # Safety
    /// The first `n` bytes of the room (or all of it, if `n` is larger) must have been
    /// initialized since `room` lent it, e.g. by a read into it (tokio's `ReadBuf` guarantees
    /// it for its `filled()` bytes).
    #[allow(unsafe_code)]
    pub unsafe fn received_in_room(&mut self, n: usize) -> Result<Option<OwnedMessage>, Error> {
        let room = core::mem::take(&mut self.room);
        let Some(a) = self.assembly.as_deref_mut() else {
            return Ok(None);
        };
        let n = n.min(room as usize).min(a.capacity() - a.len());
        if n == 0 {
            return Ok(None);
        }
        let at = a.len();
        // SAFETY: `at + n` is within the capacity (just above), and the caller guarantees that
        // the first `n` bytes of the spare capacity lent by `room` were initialized since:
        // every other path that touches the assembly sets `self.room` to 0 first, and a clone
        // starts with 0, so this is still the memory `room` lent.
        unsafe { a.set_len(at + n) };
        // With the frame's header and earlier bytes consumed, the decoder takes a buffer that
        // holds only payload: the room's bytes, no more than the rest of the frame, are one
        // piece of data (the whole rest, or a chunk of it).
        let piece = match self.decoder.decode_streaming(&mut a[at..])? {
            Status::Complete(f) if f.wire_len() == n => match f.event {
                Event::Data(d) => Some((d.message_fin, d.kind == DataKind::Text)),
                _ => None,
            },
            _ => None,
        };
        let Some((fin, text)) = piece else {
            debug_assert!(false, "the room's bytes not taken as one piece of data");
            a.truncate(at);
            return Ok(None);
        };
        if !fin {
            return Ok(None);
        }
        self.current = None;
        // The decoder validated the text across all of the message's frames, which all went
        // into the assembly (through the room or `plain`).
        Ok(Some(OwnedMessage {
            text,
            data: self.take_assembly(),
        }))
    }

    /// Decodes one frame, or the part of one that has arrived, from the front of `buf`
    /// (unmasking in place). `scratch` receives inflated messages, which are then lent from it;
    /// `inflate` is required once compression was negotiated.
    ///
    /// The caller discards [`Received::consumed`] bytes and, unless
    /// [`Received::needs_more`], calls again with the rest: a piece collected into a message
    /// being assembled consumes bytes without an event. After an error the connection must be
    /// failed with [`Error::close_code`]; every later call returns the error again.
    #[inline]
    pub fn receive<'a>(
        &mut self,
        buf: &'a mut [u8],
        scratch: &'a mut Vec<u8>,
        inflate: Option<&mut (dyn Inflate + '_)>,
    ) -> Result<Received<'a>, Error> {
        self.receive_with(buf, scratch, inflate, None)
    }

    /// [`Receiver::receive`], assembling a message in a buffer from `buffers` when one has
    /// room (see [`Buffers`]).
    #[inline]
    pub fn receive_with<'a>(
        &mut self,
        buf: &'a mut [u8],
        scratch: &'a mut Vec<u8>,
        inflate: Option<&mut (dyn Inflate + '_)>,
        buffers: Option<&mut (dyn Buffers + '_)>,
    ) -> Result<Received<'a>, Error> {
        self.room = 0;
        let frame = match self.decoder.decode_streaming(buf)? {
            Status::Partial { .. } => {
                return Ok(Received {
                    consumed: 0,
                    event: None,
                });
            }
            Status::Complete(frame) => frame,
        };
        let consumed = frame.wire_len();
        let event = match frame.event {
            Event::Ping(p) => Some(Incoming::Ping(p)),
            Event::Pong(p) => Some(Incoming::Pong(p)),
            Event::Close(c) => {
                self.current = None;
                self.assembly = None;
                Some(Incoming::Close(c))
            }
            Event::Data(d) => {
                if d.message_start {
                    self.start_message();
                }
                if d.compressed {
                    self.inflated(d, scratch, inflate)?
                } else {
                    self.plain(d, buffers)
                }
            }
        };
        Ok(Received { consumed, event })
    }

    fn start_message(&mut self) {
        self.current = Some(if self.streaming {
            InMessage::Stream
        } else {
            InMessage::Whole
        });
        // The decoder reset its validator at this text message's first header; for a
        // compressed one it leaves it to us from there.
    }

    /// The assembly buffer, with room for `more` bytes: reserved up to the rest of the frame
    /// the header declared, but never more than [`RESERVE_AHEAD`] times what has arrived.
    fn assembly_for(&mut self, more: usize, buffers: Option<&mut dyn Buffers>) -> &mut Vec<u8> {
        let declared = usize::try_from(self.decoder.frame_remaining()).unwrap_or(usize::MAX);
        let a = self.assembly_or_reused(more + reserve_ahead(more, declared), buffers);
        if a.capacity() - a.len() < more {
            let arrived = a.len() + more;
            let ahead = reserve_ahead(arrived, declared);
            // Reserving ahead is speculative: if the allocator refuses it (strict overcommit,
            // a small heap), grow by what arrived instead of aborting.
            if a.try_reserve_exact(more + ahead).is_err() {
                a.reserve(more);
            }
        }
        a
    }

    /// The assembly buffer; a new one is a buffer from `buffers` with room for `min` bytes when
    /// it has one.
    fn assembly_or_reused(
        &mut self,
        min: usize,
        buffers: Option<&mut dyn Buffers>,
    ) -> &mut Vec<u8> {
        if self.assembly.is_none()
            && let Some(b) = buffers
            && let Some(mut reused) = b.take(min)
        {
            reused.clear();
            self.assembly = Some(Box::new(reused));
        }
        self.assembly.get_or_insert_with(Default::default)
    }

    /// The assembled message, handed over; the receiver keeps nothing of it.
    fn take_assembly(&mut self) -> Vec<u8> {
        self.assembly.take().map(|a| *a).unwrap_or_default()
    }

    /// An uncompressed piece: lent, streamed, or collected.
    #[inline]
    #[allow(unsafe_code)]
    fn plain<'a>(
        &mut self,
        d: Data<'a>,
        buffers: Option<&mut (dyn Buffers + '_)>,
    ) -> Option<Incoming<'a>> {
        let text = d.kind == DataKind::Text;
        let fin = d.message_fin;
        if self.current == Some(InMessage::Stream) {
            if fin {
                self.current = None;
            }
            // Empty pieces (an empty frame in the middle of a message) are skipped, except
            // the first and the last, which carry the message's boundaries.
            if d.payload.is_empty() && !d.message_start && !fin {
                return None;
            }
            return Some(Incoming::Chunk(Chunk {
                text,
                data: d.payload,
                first: d.message_start,
                last: fin,
            }));
        }
        if d.message_start && fin {
            self.current = None;
            let msg = if text {
                // SAFETY: a whole uncompressed text message in one piece: the decoder
                // validated every byte of it as UTF-8 (RFC 6455 §8.1), and nothing touched the
                // payload between the decoder and here.
                Message::Text(unsafe { text_unchecked(d.payload) })
            } else {
                Message::Binary(d.payload)
            };
            return Some(Incoming::Message(msg));
        }
        self.assembly_for(d.payload.len(), buffers.map(|b| b as &mut dyn Buffers))
            .extend_from_slice(d.payload);
        if !fin {
            return None;
        }
        self.current = None;
        // The decoder validated this text across all of the message's frames, all of which
        // went into the assembly.
        Some(Incoming::Assembled(OwnedMessage {
            text,
            data: self.take_assembly(),
        }))
    }

    /// A compressed piece: inflated into `scratch` (streamed, or a message in one piece) or
    /// into the assembly.
    #[allow(unsafe_code)]
    fn inflated<'a>(
        &mut self,
        d: Data<'_>,
        scratch: &'a mut Vec<u8>,
        inflate: Option<&mut (dyn Inflate + '_)>,
    ) -> Result<Option<Incoming<'a>>, Error> {
        // The decoder allows RSV1 only when compression was negotiated.
        let inflate = inflate.ok_or(Error::ReservedBits)?;
        let limit = self.decoder.config().max_message_size();
        let text = d.kind == DataKind::Text;
        let fin = d.message_fin;
        let stream = self.current == Some(InMessage::Stream);
        if stream || (d.message_start && fin) {
            if scratch.capacity() > KEEP_SCRATCH {
                *scratch = Vec::new();
            }
            scratch.clear();
            inflate.inflate(d.payload, fin, scratch, limit)?;
            if text {
                self.decoder
                    .utf8_mut()
                    .feed(scratch, fin)
                    .map_err(|_| Error::InvalidUtf8)?;
            }
            if fin {
                self.current = None;
            }
            if stream {
                return Ok(Some(Incoming::Chunk(Chunk {
                    text,
                    data: scratch,
                    first: d.message_start,
                    last: fin,
                })));
            }
            let msg = if text {
                // SAFETY: the whole inflated message is in `scratch`, fed to the validator from
                // a reset at its start to `last == true` just above, which succeeded.
                Message::Text(unsafe { text_unchecked(scratch) })
            } else {
                Message::Binary(scratch)
            };
            return Ok(Some(Incoming::Message(msg)));
        }
        // Inflated output grows with what inflates (bounded by `limit`), not with a header.
        let a = self.assembly.get_or_insert_with(Default::default);
        let from = a.len();
        inflate.inflate(d.payload, fin, a, limit)?;
        if text {
            let a = self.assembly.as_deref().map_or(&[][..], |a| &a[from..]);
            self.decoder
                .utf8_mut()
                .feed(a, fin)
                .map_err(|_| Error::InvalidUtf8)?;
        }
        if !fin {
            return Ok(None);
        }
        self.current = None;
        let data = self.take_assembly();
        // Every piece was fed to the validator as it was inflated (so invalid text fails
        // fast), but `Inflate` is a safe trait that was handed the whole buffer: the message
        // is checked once more as a whole before it may become a `&str`. (Only compressed
        // text in several pieces pays this; inflating it cost far more.)
        if text && simdutf8::basic::from_utf8(&data).is_err() {
            return Err(Error::InvalidUtf8);
        }
        Ok(Some(Incoming::Assembled(OwnedMessage { text, data })))
    }
}

/// `bytes` as text without checking.
///
/// # Safety
/// `bytes` must be valid UTF-8.
#[allow(unsafe_code)]
unsafe fn text_unchecked(bytes: &[u8]) -> &str {
    debug_assert!(core::str::from_utf8(bytes).is_ok());
    // SAFETY: forwarded to the caller.
    unsafe { core::str::from_utf8_unchecked(bytes) }
}

/// [`Inflate`] and [`Compress`] over a connection's permessage-deflate state and an engine
/// pool (both directions of one connection; the pool may serve many).
#[cfg(feature = "deflate")]
pub struct Deflating<'p> {
    /// The connection's compression state.
    pub state: &'p mut crate::deflate::PerMessageDeflate,
    /// The engines.
    pub pool: &'p mut crate::deflate::Pool,
}

#[cfg(feature = "deflate")]
impl Inflate for Deflating<'_> {
    fn inflate(
        &mut self,
        input: &[u8],
        fin: bool,
        out: &mut Vec<u8>,
        limit: u64,
    ) -> Result<(), Error> {
        self.state.decompress(input, fin, out, limit, self.pool)
    }
}

#[cfg(feature = "deflate")]
impl Compress for Deflating<'_> {
    fn wants(&self, len: usize) -> bool {
        self.state.should_compress(len)
    }

    fn compress(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        self.state.compress(payload, out, self.pool);
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod pair_tests;

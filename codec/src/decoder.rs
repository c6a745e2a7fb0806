//! The incremental, zero-copy frame decoder and the protocol rules it enforces.

use crate::close::Close;
use crate::error::Error;
use crate::frame::{Header, MAX_CONTROL_PAYLOAD, OpCode, Status};
use crate::mask::apply_mask;
use crate::utf8::Utf8Validator;

/// Default maximum message size: 16 MiB.
pub const DEFAULT_MAX_MESSAGE: u64 = 16 << 20;

/// Which end of the connection this endpoint is (§5.1: clients mask, servers do not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The endpoint that opened the connection; it masks what it sends.
    Client,
    /// The endpoint that accepted the connection; it requires masked frames.
    Server,
}

/// Limits and negotiated options for a [`Decoder`].
///
/// ```
/// use sockeye_codec::{Config, DEFAULT_MAX_MESSAGE};
/// let config = Config::new().max_message(1 << 20).max_frame(64 << 10);
/// assert_eq!(config.max_message_size(), 1 << 20);
/// assert_eq!(Config::default().max_message_size(), DEFAULT_MAX_MESSAGE);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    max_frame: u64,
    max_message: u64,
    rsv1: bool,
}

impl Config {
    /// Defaults: 16 MiB per message, 16 MiB per frame, no extension.
    #[must_use]
    pub const fn new() -> Self {
        Config {
            max_frame: DEFAULT_MAX_MESSAGE,
            max_message: DEFAULT_MAX_MESSAGE,
            rsv1: false,
        }
    }

    /// The largest payload a single frame may declare (checked on the header).
    #[must_use]
    pub const fn max_frame(mut self, bytes: u64) -> Self {
        self.max_frame = bytes;
        self
    }

    /// The largest message, summed over its frames (checked on each header).
    #[must_use]
    pub const fn max_message(mut self, bytes: u64) -> Self {
        self.max_message = bytes;
        self
    }

    /// Whether permessage-deflate was negotiated, which makes RSV1 legal on the first frame of a
    /// data message (RFC 7692 §6). The payload is then not UTF-8-checked by the decoder: the
    /// decompressed text is.
    #[must_use]
    pub const fn compression(mut self, negotiated: bool) -> Self {
        self.rsv1 = negotiated;
        self
    }

    /// The configured maximum message size.
    #[must_use]
    pub const fn max_message_size(&self) -> u64 {
        self.max_message
    }

    /// The configured maximum frame size.
    #[must_use]
    pub const fn max_frame_size(&self) -> u64 {
        self.max_frame
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}

/// The type of a data message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataKind {
    /// UTF-8 text (validated by the decoder unless compressed).
    Text,
    /// Arbitrary bytes.
    Binary,
}

/// A piece of a data message: a whole frame, or part of one when streaming.
#[derive(Debug, PartialEq, Eq)]
pub struct Data<'a> {
    /// Text or binary (taken from the message's first frame).
    pub kind: DataKind,
    /// The payload bytes, unmasked in place in the caller's buffer.
    pub payload: &'a mut [u8],
    /// This is the first piece of its message.
    pub message_start: bool,
    /// This piece ends its frame.
    pub frame_fin: bool,
    /// This piece ends its message (the frame had FIN and this is its end).
    pub message_fin: bool,
    /// The message is compressed (RSV1 with permessage-deflate).
    pub compressed: bool,
}

/// What the decoder found in the caller's buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// Text or binary payload.
    Data(Data<'a>),
    /// A ping; the payload (≤125 bytes) should be echoed in a pong.
    Ping(&'a mut [u8]),
    /// A pong.
    Pong(&'a mut [u8]),
    /// A close frame, code and reason already validated. No frame may follow it.
    Close(Close<'a>),
}

/// A decoded event and the number of bytes of the caller's buffer it used.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// What was decoded.
    pub event: Event<'a>,
    wire_len: usize,
}

impl Frame<'_> {
    /// How many bytes at the start of the buffer this event used. The caller MUST discard exactly
    /// these bytes (and keep every byte after them, unchanged) before the next call to the
    /// decoder.
    #[must_use]
    pub const fn wire_len(&self) -> usize {
        self.wire_len
    }
}

/// The frame whose header has been parsed and whose payload is not fully handed out.
#[derive(Debug, Clone, Copy)]
struct InFrame {
    opcode: OpCode,
    fin: bool,
    mask: Option<[u8; 4]>,
    /// Header bytes still at the front of the caller's buffer (0 once a chunk consumed them).
    /// (≤ 14: a `u8` keeps the decoder, which every idle connection holds, a word smaller.)
    header_left: u8,
    /// Payload bytes not yet handed out.
    remaining: u64,
    /// Payload bytes at the front of the buffer (after `header_left`) already unmasked and
    /// UTF-8-checked by an earlier call that returned `Partial`.
    ready: usize,
    /// Mask phase of the first payload byte still in the buffer.
    phase: u8,
    /// No piece of this frame has been handed out yet, and it starts a message.
    message_start: bool,
    /// The message's type (data frames only; copied from the message at the header).
    kind: DataKind,
    /// The message is compressed (data frames only).
    compressed: bool,
    /// The payload is uncompressed text, so it is UTF-8-checked as it is scanned.
    check_utf8: bool,
}

impl InFrame {
    const EMPTY: InFrame = InFrame {
        opcode: OpCode::Continuation,
        fin: false,
        mask: None,
        header_left: 0,
        remaining: 0,
        ready: 0,
        phase: 0,
        message_start: false,
        kind: DataKind::Binary,
        compressed: false,
        check_utf8: false,
    };
}

/// The data message in progress.
#[derive(Debug, Clone, Copy)]
struct InMessage {
    kind: DataKind,
    compressed: bool,
    /// Payload bytes declared so far by the message's frame headers.
    len: u64,
}

/// An incremental, zero-copy decoder for one direction of one connection.
///
/// The caller owns the bytes: it passes everything received and not yet consumed, the decoder
/// unmasks payloads in place and returns events that borrow the buffer, and the caller discards
/// [`Frame::wire_len`] bytes from the front before calling again. The decoder itself holds a few
/// words of state: the frame in progress, the message in progress, and a ≤3-byte UTF-8 carry.
///
/// [`Decoder::decode`] yields whole frames. [`Decoder::decode_streaming`] also yields the part
/// of a data frame that has arrived, so a message of any size streams through a small buffer.
///
/// ```
/// use sockeye_codec::{Config, Decoder, Event, Role, Status};
///
/// // Two frames as a client sends them (RFC 6455 §5.7): masked "Hello", then a masked ping.
/// let mut wire = vec![0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
/// wire.extend_from_slice(&[0x89, 0x80, 1, 2, 3, 4]);
///
/// let mut decoder = Decoder::new(Role::Server, Config::default());
/// let mut start = 0;
/// let mut seen = Vec::new();
/// while let Status::Complete(frame) = decoder.decode(&mut wire[start..]).unwrap() {
///     start += frame.wire_len();
///     match frame.event {
///         Event::Data(d) => seen.push(String::from_utf8(d.payload.to_vec()).unwrap()),
///         Event::Ping(p) => seen.push(format!("ping {}", p.len())),
///         _ => {}
///     }
/// }
/// assert_eq!(seen, ["Hello", "ping 0"]);
/// ```
#[derive(Debug, Clone)]
pub struct Decoder {
    role: Role,
    config: Config,
    /// The frame in progress; meaningful only while `in_frame`.
    frame: InFrame,
    in_frame: bool,
    message: Option<InMessage>,
    utf8: Utf8Validator,
    closed: bool,
    failed: Option<Error>,
    /// `closed || failed.is_some()`: one test on the hot path instead of two.
    halted: bool,
}

impl Decoder {
    /// A decoder for frames received by an endpoint of `role`.
    #[must_use]
    pub const fn new(role: Role, config: Config) -> Self {
        Decoder {
            role,
            config,
            frame: InFrame::EMPTY,
            in_frame: false,
            message: None,
            utf8: Utf8Validator::new(),
            closed: false,
            failed: None,
            halted: false,
        }
    }

    /// The role this decoder receives for.
    #[must_use]
    pub const fn role(&self) -> Role {
        self.role
    }

    /// The current configuration.
    #[must_use]
    pub const fn config(&self) -> &Config {
        &self.config
    }

    /// Replaces the configuration, e.g. to change the read limit or to enable RSV1 once
    /// permessage-deflate is negotiated. Takes effect from the next frame header.
    pub fn set_config(&mut self, config: Config) {
        self.config = config;
    }

    /// Whether a data message is in progress (some but not all of its frames were seen).
    #[must_use]
    pub const fn in_message(&self) -> bool {
        self.message.is_some()
    }

    /// Payload bytes of the frame in progress not handed out yet (0 between frames). After a
    /// streamed chunk, this is what the rest of the frame will bring, so a caller assembling the
    /// message can reserve it once.
    #[must_use]
    pub const fn frame_remaining(&self) -> u64 {
        if self.in_frame {
            self.frame.remaining
        } else {
            0
        }
    }

    /// Payload bytes of the data frame in progress that may be decoded from a buffer of the
    /// caller's choosing: the frame's header and every payload byte received so far were
    /// consumed, so the next call may pass a buffer that holds only the next payload bytes
    /// (a driver reads a large frame's payload straight into the message it assembles). 0
    /// otherwise (between frames, in a control frame, or with unconsumed bytes of the frame).
    #[must_use]
    pub const fn payload_in_place(&self) -> u64 {
        let f = &self.frame;
        if self.in_frame && !f.opcode.is_control() && f.header_left == 0 && f.ready == 0 {
            f.remaining
        } else {
            0
        }
    }

    /// Whether the data message in progress is compressed (RSV1 on its first frame).
    #[must_use]
    pub const fn message_compressed(&self) -> bool {
        matches!(
            self.message,
            Some(InMessage {
                compressed: true,
                ..
            })
        )
    }

    /// The UTF-8 validator, for the session's receiver to check inflated text with while a
    /// compressed message is in progress (the decoder itself checks only uncompressed text, so
    /// it does not touch the validator during such a message).
    #[cfg(feature = "alloc")]
    pub(crate) fn utf8_mut(&mut self) -> &mut Utf8Validator {
        &mut self.utf8
    }

    /// Whether the peer's close frame has been decoded.
    #[must_use]
    pub const fn is_closed(&self) -> bool {
        self.closed
    }

    /// Decodes the next whole frame from the front of `buf`.
    ///
    /// Returns `Partial` until the frame is complete; meanwhile the payload that has arrived of a
    /// text frame is already unmasked and UTF-8-checked, so invalid text fails before the frame
    /// ends. `buf` must hold the unconsumed bytes of the previous call unchanged at its front.
    /// After an error the decoder returns that error again: close the connection with
    /// [`Error::close_code`].
    pub fn decode<'a>(&mut self, buf: &'a mut [u8]) -> Result<Status<Frame<'a>>, Error> {
        self.run::<false>(buf)
    }

    /// Like [`Decoder::decode`], but a data frame whose payload has partly arrived is yielded
    /// as a chunk of what is there (with `frame_fin == false`), so a frame larger than the
    /// buffer streams through it. Control frames are always yielded whole (≤125 bytes).
    pub fn decode_streaming<'a>(&mut self, buf: &'a mut [u8]) -> Result<Status<Frame<'a>>, Error> {
        self.run::<true>(buf)
    }

    fn run<'a, const STREAM: bool>(
        &mut self,
        buf: &'a mut [u8],
    ) -> Result<Status<Frame<'a>>, Error> {
        if self.halted {
            return match self.failed {
                Some(e) => Err(e),
                None if buf.is_empty() => Ok(Status::Partial { needed: 1 }),
                None => Err(Error::FrameAfterClose),
            };
        }
        let r = self.step::<STREAM>(buf);
        if let Err(e) = r {
            self.failed = Some(e);
            self.halted = true;
        }
        r
    }

    fn step<'a, const STREAM: bool>(
        &mut self,
        buf: &'a mut [u8],
    ) -> Result<Status<Frame<'a>>, Error> {
        if !self.in_frame {
            if let Some((header, len)) = self.single_frame_message(buf) {
                return self.decode_single(buf, header, len).map(Status::Complete);
            }
            let (header, len) = match Header::parse(buf)? {
                Status::Complete(h) => h,
                Status::Partial { needed } => return Ok(Status::Partial { needed }),
            };
            self.frame = self.start_frame(&header, len)?;
            self.in_frame = true;
        }
        let f = &mut self.frame;
        let header_left = usize::from(f.header_left);
        let avail = buf.len() - header_left;
        let (_, payload) = buf.split_at_mut(header_left);

        if avail as u64 >= f.remaining {
            // The rest of the frame is here.
            self.in_frame = false;
            let n = f.remaining as usize;
            let payload = &mut payload[..n];
            let event = if f.opcode.is_control() {
                if let Some(key) = f.mask {
                    apply_mask(payload, key, usize::from(f.phase));
                }
                match f.opcode {
                    OpCode::Ping => Event::Ping(payload),
                    OpCode::Pong => Event::Pong(payload),
                    _ => {
                        let close = Close::parse(payload)?;
                        self.closed = true;
                        self.halted = true;
                        Event::Close(close)
                    }
                }
            } else {
                scan(&mut self.utf8, f, payload, true)?;
                if f.fin {
                    self.message = None;
                }
                Event::Data(Data {
                    kind: f.kind,
                    payload,
                    message_start: f.message_start,
                    frame_fin: true,
                    message_fin: f.fin,
                    compressed: f.compressed,
                })
            };
            return Ok(Status::Complete(Frame {
                event,
                wire_len: header_left + n,
            }));
        }

        let needed = (f.remaining - avail as u64)
            .try_into()
            .unwrap_or(usize::MAX);
        if f.opcode.is_control() {
            // ≤125 bytes: wait for all of it.
            return Ok(Status::Partial { needed });
        }
        scan(&mut self.utf8, f, payload, false)?;
        if !STREAM || avail == 0 {
            return Ok(Status::Partial { needed });
        }
        let data = Data {
            kind: f.kind,
            payload,
            message_start: f.message_start,
            frame_fin: false,
            message_fin: false,
            compressed: f.compressed,
        };
        let wire_len = header_left + avail;
        // The chunk is consumed: what is left of the frame starts the next buffer.
        f.header_left = 0;
        f.remaining -= avail as u64;
        f.ready = 0;
        f.phase = ((usize::from(f.phase) + avail) & 3) as u8;
        f.message_start = false;
        Ok(Status::Complete(Frame {
            event: Event::Data(data),
            wire_len,
        }))
    }

    /// The fast path for the most common frame: a whole, final, uncompressed text or binary
    /// frame with a 7-bit length that is a message by itself, with the masking its role
    /// requires. Returns its header and payload lengths; anything else (or any doubt) returns
    /// `None` and takes the general path, which would produce the same event and leave the same
    /// state. The property tests compare the two by decoding the same bytes whole (this path)
    /// and split (the general path).
    #[inline]
    fn single_frame_message(&self, buf: &[u8]) -> Option<(usize, usize)> {
        let [b0, b1, ..] = *buf else { return None };
        let len = usize::from(b1 & 0x7f);
        let masked = b1 & 0x80 != 0;
        let header = if masked { 6 } else { 2 };
        // FIN set, RSV clear, opcode text (1) or binary (2); no message in progress.
        let plain_data = b0 & 0xf0 == 0x80 && matches!(b0 & 0x0f, 1 | 2);
        let fits = plain_data
            && len <= 125
            && buf.len() >= header + len
            && masked == (self.role == Role::Server)
            && self.message.is_none()
            && len as u64 <= self.config.max_frame
            && len as u64 <= self.config.max_message;
        fits.then_some((header, len))
    }

    /// Decodes the frame [`Decoder::single_frame_message`] accepted.
    #[inline]
    fn decode_single<'a>(
        &mut self,
        buf: &'a mut [u8],
        header: usize,
        len: usize,
    ) -> Result<Frame<'a>, Error> {
        let b0 = buf[0];
        let (head, rest) = buf.split_at_mut(header);
        let payload = &mut rest[..len];
        if let [_, _, k0, k1, k2, k3] = *head {
            apply_mask(payload, [k0, k1, k2, k3], 0);
        }
        let kind = if b0 & 0x0f == 1 {
            DataKind::Text
        } else {
            DataKind::Binary
        };
        if kind == DataKind::Text {
            self.utf8.reset();
            self.utf8
                .feed(payload, true)
                .map_err(|_| Error::InvalidUtf8)?;
        }
        let data = Data {
            kind,
            payload,
            message_start: true,
            frame_fin: true,
            message_fin: true,
            compressed: false,
        };
        Ok(Frame {
            event: Event::Data(data),
            wire_len: header + len,
        })
    }

    /// Applies every rule a header alone decides (§5.2–§5.5), then opens the frame and, for a
    /// data frame, updates the message state. Runs exactly once per frame.
    #[inline]
    fn start_frame(&mut self, h: &Header, header_len: usize) -> Result<InFrame, Error> {
        let data_start = matches!(h.opcode, OpCode::Text | OpCode::Binary);
        if h.rsv2 || h.rsv3 || (h.rsv1 && !(self.config.rsv1 && data_start)) {
            return Err(Error::ReservedBits);
        }
        match (self.role, h.mask.is_some()) {
            (Role::Server, false) => return Err(Error::UnmaskedFrame),
            (Role::Client, true) => return Err(Error::MaskedFrame),
            _ => {}
        }
        let mut message_start = false;
        let (mut kind, mut compressed) = (DataKind::Binary, false);
        if h.opcode.is_control() {
            if !h.fin {
                return Err(Error::FragmentedControlFrame);
            }
            if h.payload_len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(Error::ControlFrameTooLong);
            }
        } else {
            if h.payload_len > self.config.max_frame {
                return Err(Error::FrameTooLarge);
            }
            match (h.opcode, self.message.is_some()) {
                (OpCode::Continuation, false) => return Err(Error::UnexpectedContinuation),
                (OpCode::Continuation, true) => {}
                (_, true) => return Err(Error::ExpectedContinuation),
                (op, false) => {
                    let kind = if op == OpCode::Text {
                        DataKind::Text
                    } else {
                        DataKind::Binary
                    };
                    self.message = Some(InMessage {
                        kind,
                        compressed: h.rsv1,
                        len: 0,
                    });
                    if kind == DataKind::Text {
                        self.utf8.reset();
                    }
                    message_start = true;
                }
            }
            let msg = self.message.as_mut().expect("message set above");
            msg.len = msg.len.saturating_add(h.payload_len);
            if msg.len > self.config.max_message {
                return Err(Error::MessageTooLarge);
            }
            (kind, compressed) = (msg.kind, msg.compressed);
        }
        debug_assert!(header_len <= crate::frame::MAX_HEADER_LEN);
        Ok(InFrame {
            opcode: h.opcode,
            fin: h.fin,
            mask: h.mask,
            // `Header::parse` never reports more than `MAX_HEADER_LEN` (14) bytes.
            header_left: header_len as u8,
            remaining: h.payload_len,
            ready: 0,
            phase: 0,
            message_start,
            kind,
            compressed,
            check_utf8: kind == DataKind::Text && !compressed,
        })
    }
}

/// Unmasks and UTF-8-checks `payload[f.ready..]`, the bytes of a data frame not seen before.
/// `complete` says `payload` ends the frame.
#[inline]
fn scan(
    utf8: &mut Utf8Validator,
    f: &mut InFrame,
    payload: &mut [u8],
    complete: bool,
) -> Result<(), Error> {
    let fresh = &mut payload[f.ready..];
    if let Some(key) = f.mask {
        apply_mask(fresh, key, usize::from(f.phase) + f.ready);
    }
    if f.check_utf8 {
        utf8.feed(fresh, complete && f.fin)
            .map_err(|_| Error::InvalidUtf8)?;
    }
    f.ready = payload.len();
    Ok(())
}

#[cfg(test)]
mod tests;

//! The sending half of a connection's protocol: commands in, frames out into a queue of
//! [`Bytes`] the driver writes (one gathered write), with a hard bound on what may wait.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt;

use bytes::{Bytes, BytesMut};

use super::{Message, OwnedMessage};
use crate::close::{Close, CloseCode};
use crate::decoder::{DataKind, Role};
use crate::error::EncodeError;
use crate::frame::{Header, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN, OpCode, Status};
use crate::mask::apply_mask;

/// The least a staging buffer allocates when its first frame arrives.
const STAGE_MIN: usize = 512;
/// A shared frame ([`Prepared`]) up to this size is copied into the staging buffer instead of
/// queued as a `Bytes` of its own: a broadcast's small frames then cost no reference count
/// (two atomic updates on a line every subscriber touches) and no iovec each, and many go out
/// as one buffer.
const COPY_SHARED_UP_TO: usize = 1024;

/// Frames waiting to be written, in order: small frames gathered in one staging buffer (one
/// allocation for many), larger ones and shared ones over 1 KiB as [`Bytes`] of their own.
///
/// A driver writes [`Outgoing::chunks`] (after [`Outgoing::seal`]) with one vectored write and
/// reports what the transport took with [`Outgoing::advance`]. A driver whose writes complete
/// later (io_uring) takes the sealed frames out with [`Outgoing::move_sealed`] or
/// [`Outgoing::pop`] and owns them until the kernel is done, so nothing done to the queue
/// meanwhile can touch bytes in flight.
#[derive(Debug, Default)]
pub struct Outgoing {
    staged: BytesMut,
    frames: VecDeque<Bytes>,
    /// Bytes of `frames[0]` already written.
    head_offset: usize,
    /// Unwritten bytes in `frames`.
    sealed: usize,
}

impl Outgoing {
    /// An empty queue (allocates nothing until a frame is queued).
    #[must_use]
    pub fn new() -> Self {
        Outgoing {
            staged: BytesMut::new(),
            frames: VecDeque::new(),
            head_offset: 0,
            sealed: 0,
        }
    }

    /// Unwritten bytes, staged or sealed.
    #[must_use]
    #[inline]
    pub fn queued(&self) -> usize {
        self.sealed + self.staged.len()
    }

    /// Whether nothing waits to be written.
    #[must_use]
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.queued() == 0
    }

    /// Unwritten bytes sealed for writing (what [`Outgoing::chunks`] yields).
    #[must_use]
    #[inline]
    pub fn sealed(&self) -> usize {
        self.sealed
    }

    /// Sealed frames waiting (each a buffer of its own; what a vectored write needs iovecs for).
    #[must_use]
    #[inline]
    pub fn frames(&self) -> usize {
        self.frames.len()
    }

    /// Bytes staged since the last [`Outgoing::seal`].
    #[must_use]
    #[inline]
    pub fn staged(&self) -> usize {
        self.staged.len()
    }

    /// The staging buffer, for a driver that frames into it itself.
    #[inline]
    pub fn stage(&mut self) -> &mut BytesMut {
        &mut self.staged
    }

    /// Moves the staged frames into the queue as one buffer; returns its length.
    #[inline]
    pub fn seal(&mut self) -> usize {
        let n = self.staged.len();
        if n != 0 {
            let staged = self.staged.split().freeze();
            self.sealed += n;
            self.frames.push_back(staged);
        }
        n
    }

    /// Queues a frame (or several) of its own after whatever is staged, keeping the order.
    #[inline]
    pub fn push(&mut self, frame: Bytes) {
        if frame.is_empty() {
            return;
        }
        self.seal();
        self.sealed += frame.len();
        self.frames.push_back(frame);
    }

    /// The sealed, unwritten bytes in order, as slices for one vectored write.
    #[inline]
    pub fn chunks(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let mut skip = self.head_offset;
        self.frames.iter().map(move |b| {
            let part = &b[skip..];
            skip = 0;
            part
        })
    }

    /// Takes the next sealed, unwritten frame (or the unwritten rest of it) out of the queue,
    /// for a driver that must own what its transport is still reading (io_uring).
    #[inline]
    pub fn pop(&mut self) -> Option<Bytes> {
        let mut b = self.frames.pop_front()?;
        let skip = core::mem::take(&mut self.head_offset);
        if skip != 0 {
            let _ = b.split_to(skip);
        }
        self.sealed -= b.len();
        Some(b)
    }

    /// Moves every sealed, unwritten frame to the back of `to` (what a driver that must own
    /// the bytes its transport reads takes at submission). Into an empty `to` this swaps the
    /// queues' storage (no frame moved, nothing allocated). The staged frames stay here.
    #[inline]
    pub fn move_sealed(&mut self, to: &mut Outgoing) {
        to.seal();
        if to.frames.is_empty() {
            core::mem::swap(&mut self.frames, &mut to.frames);
            to.head_offset = core::mem::take(&mut self.head_offset);
            to.sealed = core::mem::take(&mut self.sealed);
            return;
        }
        while let Some(b) = self.pop() {
            to.push(b);
        }
    }

    /// Records that the transport took the first `n` sealed bytes (at most [`Outgoing::sealed`]).
    #[inline]
    pub fn advance(&mut self, n: usize) {
        let mut n = n.min(self.sealed);
        self.sealed -= n;
        while n > 0 {
            let Some(head) = self.frames.front().map(|b| b.len() - self.head_offset) else {
                break;
            };
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
            self.head_offset = 0;
        }
    }

    /// Frees the queue's buffers if nothing is queued, so a connection gone quiet holds none
    /// (the staging buffer keeps its capacity between turns otherwise); the next frame
    /// allocates again. Returns whether the queue is empty (and so holds nothing now).
    ///
    /// ```
    /// use sockeye_codec::session::Outgoing;
    ///
    /// let mut out = Outgoing::new();
    /// out.stage().extend_from_slice(b"\x81\x02hi");
    /// out.seal();
    /// assert!(!out.release());
    /// out.advance(4);
    /// assert!(out.release());
    /// assert_eq!(out.held(), 0);
    /// ```
    pub fn release(&mut self) -> bool {
        if self.queued() != 0 {
            return false;
        }
        self.staged = BytesMut::new();
        self.frames = VecDeque::new();
        self.head_offset = 0;
        true
    }

    /// Forgets everything queued (the connection is gone).
    pub fn clear(&mut self) {
        self.staged.clear();
        self.frames.clear();
        self.head_offset = 0;
        self.sealed = 0;
    }

    /// Heap bytes this queue holds (its buffers' capacity, sealed frames by length).
    #[must_use]
    pub fn held(&self) -> usize {
        self.staged.capacity()
            + self.frames.capacity() * core::mem::size_of::<Bytes>()
            + self.sealed
    }

    #[inline]
    fn put_header(&mut self, header: &Header) {
        let mut buf = [0u8; MAX_HEADER_LEN];
        // A header encodes into `MAX_HEADER_LEN` bytes whatever its fields.
        let n = header.encode(&mut buf).unwrap_or(0);
        self.staged.extend_from_slice(&buf[..n]);
    }

    /// Stages bytes that are already a frame (or several).
    #[inline]
    fn put_bytes(&mut self, frame: &[u8]) {
        self.reserve_staged(frame.len());
        self.staged.extend_from_slice(frame);
    }

    /// Room in the staging buffer for `need` more bytes.
    fn reserve_staged(&mut self, need: usize) {
        // A staging buffer starts at `STAGE_MIN`, so a turn's small frames share one
        // allocation instead of growing it by doubling from the first frame's size
        // (callgrind, 16 B echo: the reallocations were a fifth of the user-space work).
        self.staged.reserve(if self.staged.capacity() == 0 {
            need.max(STAGE_MIN)
        } else {
            need
        });
    }

    /// Stages a frame with `header` (whose length is `payload`'s) and `payload`, masked in
    /// place in the staging buffer when the header carries a key.
    #[inline]
    fn put_frame(&mut self, header: &Header, payload: &[u8]) {
        self.reserve_staged(MAX_HEADER_LEN + payload.len());
        self.put_header(header);
        let start = self.staged.len();
        self.staged.extend_from_slice(payload);
        if let Some(key) = header.mask {
            apply_mask(&mut self.staged[start..], key, 0);
        }
    }
}

/// A whole data message framed once (unmasked, uncompressed), to send to many connections
/// without copying: [`Sender::send_prepared`] shares the frame's bytes (frames of at most
/// 1 KiB are copied into the connection's staging buffer instead).
///
/// ```
/// use sockeye_codec::session::Prepared;
/// let m = Prepared::text("hello");
/// assert_eq!(m.frame().as_ref(), b"\x81\x05hello");
/// assert_eq!(Prepared::parse(m.frame().clone()), Ok(m));
/// assert!(Prepared::parse(bytes::Bytes::from_static(b"\x89\x00")).is_err()); // a ping
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    frame: Bytes,
    header_len: u8,
}

impl Prepared {
    /// A message of `kind` with `payload` (text only from a `&str`: see [`Prepared::text`]).
    fn new(kind: DataKind, payload: &[u8]) -> Self {
        let header = Header::new(opcode(kind), payload.len() as u64);
        let mut buf = BytesMut::with_capacity(MAX_HEADER_LEN + payload.len());
        let mut h = [0u8; MAX_HEADER_LEN];
        let n = header.encode(&mut h).unwrap_or(0);
        buf.extend_from_slice(&h[..n]);
        buf.extend_from_slice(payload);
        Prepared {
            frame: buf.freeze(),
            header_len: n as u8,
        }
    }

    /// A text message.
    #[must_use]
    pub fn text(text: &str) -> Self {
        Prepared::new(DataKind::Text, text.as_bytes())
    }

    /// A binary message.
    #[must_use]
    pub fn binary(data: &[u8]) -> Self {
        Prepared::new(DataKind::Binary, data)
    }

    /// Checks that `frame` is one whole, final, unmasked, uncompressed data frame (text is
    /// checked to be UTF-8) and wraps it.
    pub fn parse(frame: Bytes) -> Result<Self, SendError> {
        let Ok(Status::Complete((h, hlen))) = Header::parse(&frame) else {
            return Err(SendError::NotAFrame);
        };
        let ok = matches!(h.opcode, OpCode::Text | OpCode::Binary)
            && h.fin
            && !h.rsv1
            && !h.rsv2
            && !h.rsv3
            && h.mask.is_none()
            && h.payload_len == (frame.len() - hlen) as u64
            && (h.opcode == OpCode::Binary || simdutf8::basic::from_utf8(&frame[hlen..]).is_ok());
        if !ok {
            return Err(SendError::NotAFrame);
        }
        Ok(Prepared {
            frame,
            header_len: hlen as u8,
        })
    }

    /// The frame, header and payload.
    #[must_use]
    pub fn frame(&self) -> &Bytes {
        &self.frame
    }

    /// The payload.
    #[must_use]
    pub fn payload(&self) -> &[u8] {
        &self.frame[usize::from(self.header_len)..]
    }

    /// The payload, sharing the frame's buffer.
    #[must_use]
    pub fn payload_bytes(&self) -> Bytes {
        self.frame.slice(usize::from(self.header_len)..)
    }

    /// The message's kind.
    #[must_use]
    pub fn kind(&self) -> DataKind {
        if self.frame[0] & 0x0f == 1 {
            DataKind::Text
        } else {
            DataKind::Binary
        }
    }

    fn opcode(&self) -> OpCode {
        opcode(self.kind())
    }

    /// Bytes on the wire (header and payload).
    #[must_use]
    pub fn wire_len(&self) -> usize {
        self.frame.len()
    }
}

/// Masking keys for the client role (RFC 6455 §5.3: a fresh, unpredictable key per frame,
/// from a strong source of entropy). The driver owns the source: `sockeye-codec` has no
/// randomness of its own, so that a `no_std` user can plug in their hardware's.
pub trait MaskKeys {
    /// The key for the next frame.
    fn next_key(&mut self) -> [u8; 4];
}

/// Compresses whole messages for a [`Sender`] (permessage-deflate); the driver implements it
/// over its engines (`Deflating` does, with the `deflate` feature).
pub trait Compress {
    /// Whether a message of `len` bytes should go out compressed.
    fn wants(&self, len: usize) -> bool;
    /// Appends the compressed form of the whole message `payload` to `out` (RFC 7692 §7.2.1:
    /// without the trailing `00 00 ff ff`).
    fn compress(&mut self, payload: &[u8], out: &mut Vec<u8>);
}

/// What a [`Sender`] command needs of its driver for one call.
pub struct Link<'a> {
    /// Where frames go.
    pub out: &'a mut Outgoing,
    /// Masking keys: required for the client role, ignored for the server role.
    pub keys: Option<&'a mut dyn MaskKeys>,
    /// The compressor, when permessage-deflate was negotiated.
    pub compress: Option<&'a mut dyn Compress>,
    /// The hard bound on [`Outgoing::queued`]: a data message that would take the queue past
    /// it is refused ([`SendError::Full`]), unless the queue is empty (so one message larger
    /// than the bound can still be sent). A ping or pong is refused only once the queue is
    /// already past it (so a pong still fits behind data up to the bound, and a peer's ping
    /// flood cannot grow the queue); the close frame never is.
    pub bound: usize,
    /// A buffer for compressed output (kept by the driver between calls).
    pub scratch: Option<&'a mut Vec<u8>>,
    /// Where owned payloads go back once written, if the driver keeps buffers for reuse.
    pub buffers: Option<&'a mut dyn Buffers>,
}

/// Large buffers a driver keeps for reuse: messages in several pieces are assembled in them
/// ([`Receiver::receive_with`](crate::session::Receiver::receive_with)), and owned payloads
/// ([`Sender::send_owned`]) go back to them once written. Without one, every assembled
/// message allocates its buffer and every written payload frees it, and at a megabyte per
/// message the allocator hands that memory back to the kernel and faults it in again between
/// messages (measured on the server: 14% of its CPU in page faults at 1 MiB echo).
///
/// ```
/// use sockeye_codec::session::Buffers;
/// /// Keeps one spare buffer (a real driver bounds and ages its pool).
/// struct One(Option<Vec<u8>>);
/// impl Buffers for One {
///     fn take(&mut self, min: usize) -> Option<Vec<u8>> {
///         self.0.take_if(|b| b.capacity() >= min)
///     }
/// }
/// let mut one = One(Some(Vec::with_capacity(1 << 20)));
/// assert!(one.take(4096).is_some_and(|b| b.is_empty() && b.capacity() >= 4096));
/// assert!(one.take(4096).is_none());
/// ```
pub trait Buffers {
    /// An empty buffer with room for at least `min` bytes, or `None` (then one is allocated).
    fn take(&mut self, min: usize) -> Option<Vec<u8>>;

    /// The [`Bytes`] an owned payload is queued as. By default they own the vector and free
    /// it when dropped; a driver that keeps buffers wraps it (`Bytes::from_owner`) so that the
    /// vector comes back to it once written.
    fn queue(&mut self, payload: Vec<u8>) -> Bytes {
        Bytes::from(payload)
    }
}

impl fmt::Debug for Link<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("queued", &self.out.queued())
            .field("masks", &self.keys.is_some())
            .field("compress", &self.compress.is_some())
            .field("bound", &self.bound)
            .finish_non_exhaustive()
    }
}

impl<'a> Link<'a> {
    /// A link to `out` with no bound, no compression and no masking keys (the server role).
    #[inline]
    pub fn new(out: &'a mut Outgoing) -> Self {
        Link {
            out,
            keys: None,
            compress: None,
            bound: usize::MAX,
            scratch: None,
            buffers: None,
        }
    }
}

/// Why a [`Sender`] refused a command. Nothing was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// Our close frame is queued: no frame may follow it (RFC 6455 §5.5.1).
    Closed,
    /// The data message would take the queue past its hard bound ([`Link::bound`]).
    Full {
        /// Bytes queued when the message was refused.
        queued: usize,
        /// The message's length.
        len: usize,
    },
    /// A streamed message is open: whole messages wait until it is finished (or, for
    /// [`Sender::fragment`], a fragment of another kind).
    MessageInProgress,
    /// A continuation fragment without a message started by [`Sender::fragment`].
    NoMessage,
    /// The client role needs masking keys ([`Link::keys`]).
    NoMaskKeys,
    /// A prepared frame that is not one whole unmasked data frame.
    NotAFrame,
    /// The frame cannot be encoded (a control payload over 125 bytes, a close code that may
    /// not be sent, a reason over 123 bytes).
    Encode(EncodeError),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Closed => f.write_str("the close frame was sent; nothing may follow it"),
            SendError::Full { queued, len } => write!(
                f,
                "send queue full: {len} bytes refused with {queued} bytes queued"
            ),
            SendError::MessageInProgress => f.write_str("a streamed message is in progress"),
            SendError::NoMessage => f.write_str("no streamed message is in progress"),
            SendError::NoMaskKeys => f.write_str("the client role needs masking keys"),
            SendError::NotAFrame => f.write_str("not one whole unmasked data frame"),
            SendError::Encode(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl core::error::Error for SendError {}

impl From<EncodeError> for SendError {
    fn from(e: EncodeError) -> Self {
        SendError::Encode(e)
    }
}

/// `Sender::sent` when no close frame was sent.
const NOT_SENT: u16 = 0;
/// `Sender::sent` for a close frame without a code (codes on the wire are 1000 and up).
const SENT_NO_CODE: u16 = 1;

/// One fragment of a streamed message ([`Sender::fragment`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment {
    /// The message's kind (checked against the message in progress).
    pub kind: DataKind,
    /// The message's last fragment.
    pub fin: bool,
    /// The payload is already compressed (permessage-deflate's RSV1 goes on the first
    /// fragment); the caller compressed it with its own streaming compressor.
    pub compressed: bool,
}

/// The sending half of a connection's protocol: frames data and control messages into an
/// [`Outgoing`] queue (masking for the client role, compressing through [`Compress`]), keeps
/// the order RFC 6455 requires (fragments of one message not interleaved with another's,
/// nothing after our close frame), and applies the queue's hard bound.
///
/// ```
/// use sockeye_codec::session::{Link, Message, Outgoing, Sender};
/// use sockeye_codec::{CloseCode, Role};
///
/// let mut out = Outgoing::new();
/// let mut tx = Sender::new(Role::Server);
/// tx.send(&mut Link::new(&mut out), Message::Text("hi")).unwrap();
/// tx.close(&mut Link::new(&mut out), Some(CloseCode::NORMAL), "bye").unwrap();
/// assert!(tx.send(&mut Link::new(&mut out), Message::Text("late")).is_err());
/// out.seal();
/// let wire: Vec<u8> = out.chunks().flatten().copied().collect();
/// assert_eq!(wire, b"\x81\x02hi\x88\x05\x03\xe8bye");
/// ```
#[derive(Debug, Clone)]
pub struct Sender {
    role: Role,
    /// Our close frame: [`NOT_SENT`], [`SENT_NO_CODE`], or its code (kept in two bytes: an
    /// idle server connection holds a `Sender`).
    sent: u16,
    /// The streamed message in progress (its first fragment is out).
    streaming: Option<DataKind>,
}

impl Sender {
    /// A sender for an endpoint of `role`.
    #[must_use]
    pub const fn new(role: Role) -> Self {
        Sender {
            role,
            sent: NOT_SENT,
            streaming: None,
        }
    }

    /// The role this sender frames for.
    #[must_use]
    #[inline]
    pub const fn role(&self) -> Role {
        self.role
    }

    /// Whether our close frame is queued.
    #[must_use]
    #[inline]
    pub const fn close_sent(&self) -> bool {
        self.sent != NOT_SENT
    }

    /// The code of the close frame we sent, if we sent one (`Some(None)`: one without a code).
    #[must_use]
    pub const fn sent_code(&self) -> Option<Option<CloseCode>> {
        match self.sent {
            NOT_SENT => None,
            SENT_NO_CODE => Some(None),
            code => Some(Some(CloseCode(code))),
        }
    }

    /// Whether a streamed message is open.
    #[must_use]
    pub const fn in_message(&self) -> bool {
        self.streaming.is_some()
    }

    #[inline]
    fn key(&self, link: &mut Link<'_>) -> Result<Option<[u8; 4]>, SendError> {
        match self.role {
            Role::Server => Ok(None),
            Role::Client => match link.keys.as_deref_mut() {
                Some(k) => Ok(Some(k.next_key())),
                None => Err(SendError::NoMaskKeys),
            },
        }
    }

    /// Refuses a data message of `len` bytes that may not be queued now.
    #[inline]
    fn admit(&self, link: &Link<'_>, len: usize) -> Result<(), SendError> {
        if self.close_sent() {
            return Err(SendError::Closed);
        }
        if self.streaming.is_some() {
            return Err(SendError::MessageInProgress);
        }
        fits(link, len)
    }

    /// Queues a whole message (copied into the queue; compressed if the compressor wants it).
    /// Text is a `&str`, so what goes out as text is UTF-8.
    #[inline]
    pub fn send(&mut self, link: &mut Link<'_>, msg: Message<'_>) -> Result<(), SendError> {
        let payload = msg.as_bytes();
        self.admit(link, payload.len())?;
        let op = if msg.is_text() {
            OpCode::Text
        } else {
            OpCode::Binary
        };
        if let Some(c) = link.compress.as_deref_mut()
            && c.wants(payload.len())
        {
            return self.send_compressed(link, op, payload);
        }
        let header = Header {
            mask: self.key(link)?,
            ..Header::new(op, payload.len() as u64)
        };
        link.out.put_frame(&header, payload);
        Ok(())
    }

    fn send_compressed(
        &mut self,
        link: &mut Link<'_>,
        op: OpCode,
        payload: &[u8],
    ) -> Result<(), SendError> {
        let mask = self.key(link)?;
        let mut own = Vec::new();
        let buf = match link.scratch.as_deref_mut() {
            Some(s) => s,
            None => &mut own,
        };
        buf.clear();
        if let Some(c) = link.compress.as_deref_mut() {
            c.compress(payload, buf);
        }
        let header = Header {
            rsv1: true,
            mask,
            ..Header::new(op, buf.len() as u64)
        };
        link.out.put_frame(&header, buf);
        if buf.capacity() > 1 << 20 {
            *buf = Vec::new();
        }
        Ok(())
    }

    /// Queues a whole message from its own buffer: only the header is written (the client
    /// role masks the payload in place), unless it goes out compressed.
    pub fn send_owned(&mut self, link: &mut Link<'_>, msg: OwnedMessage) -> Result<(), SendError> {
        let op = if msg.is_text() {
            OpCode::Text
        } else {
            OpCode::Binary
        };
        let mut payload = msg.into_bytes();
        self.admit(link, payload.len())?;
        if let Some(c) = link.compress.as_deref_mut()
            && c.wants(payload.len())
        {
            return self.send_compressed(link, op, &payload);
        }
        let mask = self.key(link)?;
        if let Some(key) = mask {
            apply_mask(&mut payload, key, 0);
        }
        link.out.put_header(&Header {
            mask,
            ..Header::new(op, payload.len() as u64)
        });
        let payload = match link.buffers.as_deref_mut() {
            Some(b) => b.queue(payload),
            None => Bytes::from(payload),
        };
        link.out.push(payload);
        Ok(())
    }

    /// Queues a [`Prepared`] message (framed once for many connections, such as a
    /// broadcast): the server role shares its frame as it is (a frame of at most 1 KiB is
    /// copied into the staging buffer, so a broadcast's small frames go out together), the
    /// client role sends a masked copy.
    #[inline]
    pub fn send_prepared(&mut self, link: &mut Link<'_>, msg: &Prepared) -> Result<(), SendError> {
        self.admit(link, msg.frame.len())?;
        match self.key(link)? {
            None if msg.frame.len() <= COPY_SHARED_UP_TO => link.out.put_bytes(&msg.frame),
            None => link.out.push(msg.frame.clone()),
            Some(key) => {
                let header = Header {
                    mask: Some(key),
                    ..Header::new(msg.opcode(), msg.payload().len() as u64)
                };
                link.out.put_frame(&header, msg.payload());
            }
        }
        Ok(())
    }

    /// Queues one fragment of a streamed message: the first (opening the message, which
    /// keeps whole messages out until its last fragment) has the message's opcode, the others
    /// are continuations.
    pub fn fragment(
        &mut self,
        link: &mut Link<'_>,
        fragment: Fragment,
        payload: &[u8],
    ) -> Result<(), SendError> {
        if self.close_sent() {
            return Err(SendError::Closed);
        }
        let first = match self.streaming {
            None => true,
            Some(kind) if kind == fragment.kind => false,
            Some(_) => return Err(SendError::MessageInProgress),
        };
        // Every fragment is held to the bound (a refused one may be sent again once the
        // queue drained; the message stays open meanwhile).
        fits(link, payload.len())?;
        let header = Header {
            fin: fragment.fin,
            rsv1: first && fragment.compressed,
            mask: self.key(link)?,
            ..Header::new(
                if first {
                    opcode(fragment.kind)
                } else {
                    OpCode::Continuation
                },
                payload.len() as u64,
            )
        };
        link.out.put_frame(&header, payload);
        self.streaming = (!fragment.fin).then_some(fragment.kind);
        Ok(())
    }

    /// Queues a ping (`payload` ≤ 125 bytes). Allowed between a streamed message's fragments;
    /// refused only by a queue already past its bound.
    pub fn ping(&mut self, link: &mut Link<'_>, payload: &[u8]) -> Result<(), SendError> {
        self.control(link, OpCode::Ping, payload)
    }

    /// Queues a pong (`payload` ≤ 125 bytes): the answer to a ping, or unsolicited as a
    /// heartbeat.
    pub fn pong(&mut self, link: &mut Link<'_>, payload: &[u8]) -> Result<(), SendError> {
        self.control(link, OpCode::Pong, payload)
    }

    fn control(
        &mut self,
        link: &mut Link<'_>,
        op: OpCode,
        payload: &[u8],
    ) -> Result<(), SendError> {
        if self.close_sent() {
            return Err(SendError::Closed);
        }
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(SendError::Encode(EncodeError::ControlFrameTooLong));
        }
        // A control frame may go out in a queue full of data up to the bound, but not into
        // one already past it: a peer that sends pings and reads nothing must not grow it.
        let queued = link.out.queued();
        if queued > link.bound {
            return Err(SendError::Full {
                queued,
                len: payload.len(),
            });
        }
        let header = Header {
            mask: self.key(link)?,
            ..Header::new(op, payload.len() as u64)
        };
        link.out.put_frame(&header, payload);
        Ok(())
    }

    /// Queues our close frame (`code` must be sendable, RFC 6455 §7.4; `reason` ≤ 123 bytes)
    /// and returns `Ok(true)`; `Ok(false)` if one was queued already. After it nothing more
    /// may be sent; the driver waits for the peer's close frame (the [`Clock`](super::Clock)
    /// times that out) and then closes the transport.
    pub fn close(
        &mut self,
        link: &mut Link<'_>,
        code: Option<CloseCode>,
        reason: &str,
    ) -> Result<bool, SendError> {
        if self.close_sent() {
            return Ok(false);
        }
        let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
        let n = Close { code, reason }.encode(&mut payload)?;
        let header = Header {
            mask: self.key(link)?,
            ..Header::new(OpCode::Close, n as u64)
        };
        link.out.put_frame(&header, &payload[..n]);
        // `encode` accepted it: a sendable code (1000 and up) or none.
        self.sent = code.map_or(SENT_NO_CODE, u16::from);
        Ok(true)
    }

    /// Answers the peer's close frame (RFC 6455 §5.5.1: with the same code, none if it sent
    /// none) unless we closed first; returns whether an answer was queued.
    pub fn answer_close(
        &mut self,
        link: &mut Link<'_>,
        peer: Option<CloseCode>,
    ) -> Result<bool, SendError> {
        // A code the peer may send we may send back, except 1005/1006/1015 which the decoder
        // never yields; should it, close without a code rather than not at all.
        match self.close(link, peer, "") {
            Err(SendError::Encode(_)) => self.close(link, None, ""),
            r => r,
        }
    }
}

/// Refuses `len` more bytes of data that would take a non-empty queue past its bound.
#[inline]
fn fits(link: &Link<'_>, len: usize) -> Result<(), SendError> {
    let queued = link.out.queued();
    if queued != 0 && queued.saturating_add(len) > link.bound {
        return Err(SendError::Full { queued, len });
    }
    Ok(())
}

fn opcode(kind: DataKind) -> OpCode {
    match kind {
        DataKind::Text => OpCode::Text,
        DataKind::Binary => OpCode::Binary,
    }
}

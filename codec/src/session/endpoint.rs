//! [`Session`]: the receiver, the sender, the clock and the output queue of one connection in
//! one value, for a driver that owns a connection from one place (the in-memory pair, a
//! single-task async driver). Drivers that split a connection (the blocking client's reader
//! and writers, the io_uring worker with its lazily allocated buffers) use the parts, and the
//! same reactions ([`Sender::respond`], [`Clock`]).

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::mem::MaybeUninit;
use core::time::Duration;

use super::{
    Buffers, Clock, Compress, Due, Fragment, Incoming, Inflate, Link, MaskKeys, Message, Outgoing,
    OwnedMessage, Prepared, Received, Receiver, SendError, Sender, Timeouts,
};
use crate::close::CloseCode;
use crate::decoder::{Config, Role};
use crate::error::Error;

/// permessage-deflate's engines for both directions (`Deflating` implements it).
pub trait Deflate: Inflate + Compress {}

impl<T: Inflate + Compress + ?Sized> Deflate for T {}

/// Who started the close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initiator {
    /// We did: the application's close, a limit, a protocol error, a timeout.
    Local,
    /// The peer's close frame came first.
    Remote,
}

/// How a connection ended, as it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// The close code that ended it: the peer's if its close came first, ours if we closed
    /// first (e.g. 1009 after a limit, 1001 after an idle timeout); `None` for a close frame
    /// without a code.
    pub code: Option<CloseCode>,
    /// The reason that went with it.
    pub reason: String,
    /// Who started the close.
    pub by: Initiator,
    /// Both close frames were exchanged (false: our close timed out, or the transport ended
    /// first).
    pub clean: bool,
}

impl Sender {
    /// What the protocol answers to a received event, queued on `link`: a pong for a ping
    /// (RFC 6455 §5.5.2; none once our close is out, nor while the queue is past its bound:
    /// §5.5.3 lets an endpoint skip pongs) and our close for the peer's (§5.5.1; none if we
    /// closed first). Returns whether a frame was queued.
    pub fn respond(&mut self, link: &mut Link<'_>, event: &Incoming<'_>) -> bool {
        match event {
            Incoming::Ping(p) => self.pong(link, p).is_ok(),
            Incoming::Close(c) => self.answer_close(link, c.code).unwrap_or(false),
            _ => false,
        }
    }
}

/// One connection's whole protocol: bytes in ([`Session::receive`]), commands in (send, ping,
/// close), frames out ([`Session::outgoing`]), the time passed in and the next deadline out
/// ([`Session::poll_timeout`], [`Session::on_timeout`]).
///
/// ```
/// use core::time::Duration;
/// use sockeye_codec::session::{Incoming, Message, Session, Timeouts};
/// use sockeye_codec::{Config, Role};
///
/// struct Keys(u32);
/// impl sockeye_codec::session::MaskKeys for Keys {
///     fn next_key(&mut self) -> [u8; 4] {
///         self.0 = self.0.wrapping_mul(2654435761).wrapping_add(1); // a test's keys only
///         self.0.to_be_bytes()
///     }
/// }
///
/// let now = Duration::ZERO;
/// let mut client = Session::new(Role::Client, Config::default(), Timeouts::default(), now);
/// client.set_keys(Box::new(Keys(7)));
/// let mut server = Session::new(Role::Server, Config::default(), Timeouts::default(), now);
///
/// client.send(Message::Text("hello"), None).unwrap();
/// let mut wire: Vec<u8> = client.take_output();
/// let mut scratch = Vec::new();
/// let got = server.receive(&mut wire, &mut scratch, None, now).unwrap();
/// assert_eq!(got.event, Some(Incoming::Message(Message::Text("hello"))));
/// ```
pub struct Session {
    rx: Receiver,
    tx: Sender,
    clock: Clock,
    timeouts: Timeouts,
    out: Outgoing,
    bound: usize,
    keys: Option<Box<dyn MaskKeys + Send>>,
    scratch: Vec<u8>,
    /// Large buffers lent to assembly and taken back from written payloads.
    buffers: Option<Box<dyn Buffers + Send>>,
    /// Our close: its code and reason, while the peer's has not come.
    ours: Option<(Option<CloseCode>, String)>,
    ended: Option<Ended>,
}

impl core::fmt::Debug for Session {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Session")
            .field("rx", &self.rx)
            .field("tx", &self.tx)
            .field("clock", &self.clock)
            .field("queued", &self.out.queued())
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A session for an endpoint of `role` whose handshake completed at `now`. The client role
    /// needs masking keys ([`Session::set_keys`]) before it sends.
    #[must_use]
    pub fn new(role: Role, config: Config, timeouts: Timeouts, now: Duration) -> Self {
        Session {
            rx: Receiver::new(role, config),
            tx: Sender::new(role),
            clock: Clock::new(now),
            timeouts,
            out: Outgoing::new(),
            bound: usize::MAX,
            keys: None,
            scratch: Vec::new(),
            buffers: None,
            ours: None,
            ended: None,
        }
    }

    /// The source of masking keys (the client role).
    pub fn set_keys(&mut self, keys: Box<dyn MaskKeys + Send>) {
        self.keys = Some(keys);
    }

    /// Large buffers for this session to assemble messages in and to give owned payloads back
    /// to once written (see [`Buffers`]; [`BufferPool`](crate::session::BufferPool) is one),
    /// or `None` to allocate and free them (the default). A driver may change it at any time,
    /// for example lending a pool only while large messages flow.
    pub fn set_buffers(&mut self, buffers: Option<Box<dyn Buffers + Send>>) {
        self.buffers = buffers;
    }

    /// The hard bound on queued output (see [`Link::bound`]).
    pub fn set_send_bound(&mut self, bound: usize) {
        self.bound = bound;
    }

    /// The receiving half (streaming choice, limits).
    pub fn receiver(&mut self) -> &mut Receiver {
        &mut self.rx
    }

    /// The sending half's state.
    #[must_use]
    pub fn sender(&self) -> &Sender {
        &self.tx
    }

    /// How the connection ended, once it has (`None` while it is open or closing).
    #[must_use]
    pub fn ended(&self) -> Option<&Ended> {
        self.ended.as_ref()
    }

    /// Bytes queued and not yet written.
    #[must_use]
    pub fn queued(&self) -> usize {
        self.out.queued()
    }

    /// Heap bytes the session's buffers hold: the message being assembled, the output queue
    /// and the inflate scratch buffer (what an idle connection should bring to 0).
    #[must_use]
    pub fn held(&self) -> usize {
        self.rx.buffered() + self.out.held() + self.scratch.capacity()
    }

    /// Frames to write, in order (seal, write [`Outgoing::chunks`], [`Outgoing::advance`]).
    pub fn outgoing(&mut self) -> &mut Outgoing {
        &mut self.out
    }

    /// Everything queued, as one buffer (for tests and simple drivers; a real driver writes
    /// the chunks with one vectored write instead).
    pub fn take_output(&mut self) -> Vec<u8> {
        self.out.seal();
        let mut v = Vec::with_capacity(self.out.sealed());
        for c in self.out.chunks() {
            v.extend_from_slice(c);
        }
        let n = v.len();
        self.out.advance(n);
        v
    }

    /// Runs a sender command with a link to this session's queue, keys and bound.
    fn command<R>(
        &mut self,
        compress: Option<&mut dyn Compress>,
        f: impl FnOnce(&mut Sender, &mut Link<'_>) -> R,
    ) -> R {
        let mut link = Link {
            out: &mut self.out,
            keys: self.keys.as_deref_mut().map(|k| k as &mut dyn MaskKeys),
            compress: compress.map(|c| c as &mut dyn Compress),
            bound: self.bound,
            scratch: Some(&mut self.scratch),
            buffers: self.buffers.as_deref_mut().map(|b| b as &mut dyn Buffers),
        };
        f(&mut self.tx, &mut link)
    }

    /// Decodes one frame (or the part of one that arrived) from the front of `buf`, like
    /// [`Receiver::receive`], and does what the protocol asks: answers pings, answers the
    /// peer's close, drops data that arrives after our close, fails the connection with the
    /// error's close code on a protocol error (the error is returned too).
    pub fn receive<'a>(
        &mut self,
        buf: &'a mut [u8],
        scratch: &'a mut Vec<u8>,
        deflate: Option<&mut dyn Deflate>,
        now: Duration,
    ) -> Result<Received<'a>, Error> {
        if !buf.is_empty() {
            self.clock.received(now);
        }
        // Answers are control frames, never compressed: only the inflating half is needed.
        let inflate = deflate.map(|d| d as &mut dyn Inflate);
        let buffers = self.buffers.as_deref_mut().map(|b| b as &mut dyn Buffers);
        let mut got = match self.rx.receive_with(buf, scratch, inflate, buffers) {
            Ok(got) => got,
            Err(e) => return Err(self.fail(e, now)),
        };
        let Some(event) = &got.event else {
            return Ok(got);
        };
        match event {
            Incoming::Ping(_) | Incoming::Close(_) => {
                self.command(None, |tx, link| tx.respond(link, event));
                if let Incoming::Close(c) = event {
                    self.end(c.code, c.reason.into(), true);
                }
            }
            Incoming::Pong(_) => {}
            Incoming::Message(_) | Incoming::Assembled(_) | Incoming::Chunk(_) => {
                if self.tx.close_sent() {
                    // After our close the peer's data is read and dropped (§1.4).
                    got.event = None;
                }
            }
        }
        Ok(got)
    }

    /// Room to read the rest of a large frame's payload into, in the message being assembled
    /// (see [`Receiver::room`]; assembled in a buffer from [`Session::set_buffers`]' pool when
    /// one has room). Ask only when every byte received was passed to [`Session::receive`] and
    /// consumed, and report what was read with [`Session::received_in_room`].
    pub fn room(&mut self) -> Option<&mut [MaybeUninit<u8>]> {
        let buffers = self.buffers.as_deref_mut().map(|b| b as &mut dyn Buffers);
        self.rx.room(buffers)
    }

    /// Takes `n` bytes read into the [`Session::room`] (see [`Receiver::received_in_room`]):
    /// the message once its last byte came, which [`Session::receive`] would have delivered as
    /// [`Incoming::Assembled`] (dropped after our close, as there). A protocol error (invalid
    /// UTF-8) fails the connection as in `receive`.
    ///
    /// # Safety
    /// As for [`Receiver::received_in_room`]: the room's first `n` bytes were initialized.
    #[allow(unsafe_code)]
    pub unsafe fn received_in_room(
        &mut self,
        n: usize,
        now: Duration,
    ) -> Result<Option<OwnedMessage>, Error> {
        if n > 0 {
            self.clock.received(now);
        }
        // SAFETY: forwarded to the caller.
        match unsafe { self.rx.received_in_room(n) } {
            Ok(msg) => Ok(msg.filter(|_| !self.tx.close_sent())),
            Err(e) => Err(self.fail(e, now)),
        }
    }

    /// Fails the connection after a protocol error: our close frame with its code is queued
    /// (unless one went out already).
    fn fail(&mut self, e: Error, now: Duration) -> Error {
        let code = e.close_code();
        if self
            .command(None, |tx, link| tx.close(link, Some(code), ""))
            .unwrap_or(false)
        {
            self.ours = Some((Some(code), String::new()));
            self.clock.closing(now);
        }
        e
    }

    /// Queues a whole message (see [`Sender::send`]).
    pub fn send(
        &mut self,
        msg: Message<'_>,
        compress: Option<&mut dyn Compress>,
    ) -> Result<(), SendError> {
        self.command(compress, |tx, link| tx.send(link, msg))
    }

    /// Queues a whole message from its own buffer (see [`Sender::send_owned`]).
    pub fn send_owned(
        &mut self,
        msg: OwnedMessage,
        compress: Option<&mut dyn Compress>,
    ) -> Result<(), SendError> {
        self.command(compress, |tx, link| tx.send_owned(link, msg))
    }

    /// Queues a prepared frame (see [`Sender::send_prepared`]).
    pub fn send_prepared(&mut self, msg: &Prepared) -> Result<(), SendError> {
        self.command(None, |tx, link| tx.send_prepared(link, msg))
    }

    /// Queues a fragment of a streamed message (see [`Sender::fragment`]).
    pub fn fragment(&mut self, fragment: Fragment, payload: &[u8]) -> Result<(), SendError> {
        self.command(None, |tx, link| tx.fragment(link, fragment, payload))
    }

    /// Queues a ping.
    pub fn ping(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.command(None, |tx, link| tx.ping(link, payload))
    }

    /// Queues our close frame at `now` (see [`Sender::close`]); the close deadline starts.
    pub fn close(
        &mut self,
        code: Option<CloseCode>,
        reason: &str,
        now: Duration,
    ) -> Result<bool, SendError> {
        let sent = self.command(None, |tx, link| tx.close(link, code, reason))?;
        if sent {
            self.ours = Some((code, reason.into()));
            self.clock.closing(now);
        }
        Ok(sent)
    }

    /// How long from `now` until [`Session::on_timeout`] must be called; `None`: no deadline.
    #[must_use]
    pub fn poll_timeout(&self, now: Duration) -> Option<Duration> {
        self.clock.poll_timeout(now, &self.timeouts)
    }

    /// Acts on a deadline that passed at `now` (a keepalive ping, the idle close with 1001,
    /// the end of a close handshake that got no answer) and says which, so the driver can
    /// close the transport after [`Due::CloseTimeout`].
    pub fn on_timeout(&mut self, now: Duration) -> Option<Due> {
        let due = self.clock.on_timeout(now, &self.timeouts)?;
        match due {
            Due::Ping => {
                let _ = self.ping(b"");
            }
            Due::IdleClose => {
                // The clock is closing already; this records our close for `ended`.
                let _ = self.close(Some(CloseCode::GOING_AWAY), "idle timeout", now);
            }
            Due::CloseTimeout => self.transport_ended(),
        }
        Some(due)
    }

    /// The transport ended (or is being closed) before the close handshake finished: records
    /// how the connection ended (our close's code if we sent one, else 1006).
    pub fn transport_ended(&mut self) {
        self.end(Some(CloseCode::ABNORMAL), String::new(), false);
    }

    /// Records how the connection ended, once: by our close if we sent one first, else by
    /// the peer's (`code` and `reason`: its close frame's, or 1006 for a transport that ended
    /// without one). Nothing is due after it.
    fn end(&mut self, code: Option<CloseCode>, reason: String, clean: bool) {
        self.clock.finish();
        if self.ended.is_some() {
            return;
        }
        let (code, reason, by) = match self.ours.take() {
            Some((ours, why)) => (ours, why, Initiator::Local),
            None => (code, reason, Initiator::Remote),
        };
        self.ended = Some(Ended {
            code,
            reason,
            by,
            clean,
        });
    }
}

//! [`WebSocketStream`]: one connection driven from its task, on the codec's session.

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures_core::Stream;
use futures_sink::Sink;
use sockeye_client::{CloseError, OsMaskKeys};
use sockeye_codec::deflate::{Agreement, DeflateConfig, PerMessageDeflate, Pool};
use sockeye_codec::session::{
    BufferPool, Deflate, Deflating, Ended, Incoming, Message as Lent, OwnedMessage, Prepared,
    SendError, Session, Timeouts,
};
use sockeye_codec::{CloseCode, DataKind, Role};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::{Config, Error, Message};

/// The receive buffer's size while reads are small (an idle connection holds none).
const SMALL_BUFFER: usize = 4 << 10;
/// A wake-up's first read on a connection that holds no buffer goes to the stack, this much.
const FIRST_READ: usize = 1024;
/// Its size once a read filled it: one read takes up to this much.
const READ_BUFFER: usize = 64 << 10;
/// Large buffers a connection keeps while large messages flow (see [`BufferPool`]).
const POOLED_BUFFERS: usize = 3;
/// How long a connection that carried large messages keeps its large buffers once no byte
/// comes (between messages): freeing them at every pause between 1 MiB messages cost 1,050
/// against 620 µs of server CPU per message.
const QUIET: Duration = Duration::from_millis(100);
/// Most buffers one vectored write takes.
const MAX_IOV: usize = 64;

/// What the opening handshake agreed to (for [`WebSocketStream::from_upgraded`]: what your
/// HTTP layer's upgrade agreed to).
#[derive(Debug, Clone, Default)]
pub struct Negotiated {
    /// The subprotocol chosen.
    pub protocol: Option<String>,
    /// permessage-deflate's agreed parameters and the policy they were agreed under.
    pub deflate: Option<(Agreement, DeflateConfig)>,
    /// (Client role) the server's response headers.
    pub headers: Vec<(String, String)>,
}

/// A piece of a message read without a copy ([`WebSocketStream::next_chunk`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk<'a> {
    /// Text or binary (a text piece may end inside a character; the whole message is valid
    /// UTF-8, and invalid text fails the connection as soon as it arrives).
    pub kind: DataKind,
    /// The bytes of this piece (unmasked, inflated if the message was compressed), lent
    /// from the stream's receive buffer.
    pub data: &'a [u8],
    /// The first piece of its message.
    pub first: bool,
    /// The last piece of its message.
    pub last: bool,
}

/// Where a lent piece sits.
#[derive(Debug, Clone)]
enum Place {
    /// In the receive buffer, at this range.
    Rx(usize, usize),
    /// In the inflate scratch buffer, at this range.
    Scratch(usize, usize),
}

/// What one step of reading produced.
enum Got {
    Message(Message),
    Chunk {
        kind: DataKind,
        at: Place,
        first: bool,
        last: bool,
    },
}

/// Where reading stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadState {
    Open,
    /// The connection is over; flush what is queued, shut the transport down, then report.
    Finishing,
    /// Reported: the stream yields nothing more.
    Done,
}

/// A WebSocket connection over `S`: a [`Stream`] of [`Message`]s and a [`Sink`] of them.
///
/// Reading answers pings and the peer's close, applies the read limit and inflates; the
/// stream ends (`None`) after a close handshake, with [`WebSocketStream::ended`] saying how.
/// A connection that drops without a close frame yields [`Error::Closed`] with 1006 first;
/// a protocol violation yields [`Error::Protocol`] (the close frame with its code is sent).
///
/// Writing queues frames and writes them with one vectored write per flush. The `Sink`
/// accepts up to [`Config::write_buffer`] of output before `poll_ready` writes it out, so a
/// peer that does not read slows the writer down instead of growing memory.
///
/// Control frames are answered only while the stream is read: keep a task reading (split
/// the stream with `futures::StreamExt::split` to write from another).
pub struct WebSocketStream<S> {
    io: S,
    session: Session,
    rx: Vec<u8>,
    start: usize,
    end: usize,
    scratch: Vec<u8>,
    deflate: Option<Box<(PerMessageDeflate, Pool)>>,
    epoch: Instant,
    /// Made at the first deadline, inside the runtime (tokio's time driver must be enabled
    /// for keepalive and the close timeout).
    timer: Option<Pin<Box<Sleep>>>,
    timer_at: Option<Instant>,
    negotiated: Negotiated,
    state: ReadState,
    /// The error to report once the transport is shut down.
    failure: Option<Error>,
    write_buffer: usize,
    /// The transport is shut down (or failed) for writing.
    write_closed: bool,
    /// The session queued frames of its own (a pong, our close, a keepalive ping) that
    /// reading writes out; the application's messages go out when the `Sink` flushes.
    answers: bool,
    /// Bytes the last read brought.
    last_read: usize,
    /// The session holds a [`BufferPool`] (while reads are large).
    pooled: bool,
    /// When to free the large buffers if nothing comes (from `epoch`; see [`QUIET`]).
    quiet_by: Option<Duration>,
    close_timeout: Duration,
    /// While finishing: when to stop waiting for the last frames to be written.
    finish_by: Instant,
}

impl<S> std::fmt::Debug for WebSocketStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketStream")
            .field("session", &self.session)
            .field("buffered", &(self.end - self.start))
            .field("negotiated", &self.negotiated)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocketStream<S> {
    /// A stream over `io`, whose HTTP upgrade was done elsewhere (hyper's `upgrade::on`, a
    /// proxy): `role` is this end's, `negotiated` what the handshake agreed to, `config` the
    /// limits and timeouts (its upgrade policy is not used here).
    pub fn from_upgraded(io: S, role: Role, config: &Config, negotiated: Negotiated) -> Self {
        WebSocketStream::from_parts(io, role, config, negotiated, &[])
    }

    pub(crate) fn from_parts(
        io: S,
        role: Role,
        config: &Config,
        negotiated: Negotiated,
        received: &[u8],
    ) -> Self {
        let limit = config.max_message.unwrap_or(u64::MAX);
        let codec = sockeye_codec::Config::new()
            .max_message(limit)
            .max_frame(limit)
            .compression(negotiated.deflate.is_some());
        let timeouts = Timeouts {
            idle: config.keepalive,
            close: config.close_timeout,
        };
        let mut session = Session::new(role, codec, timeouts, Duration::ZERO);
        session.set_send_bound(config.max_send_queue);
        if role == Role::Client {
            session.set_keys(Box::new(OsMaskKeys::new()));
        }
        let deflate = negotiated
            .deflate
            .as_ref()
            .map(|(a, c)| Box::new((PerMessageDeflate::new(role, a, c), Pool::new(1))));
        let mut rx = Vec::new();
        if !received.is_empty() {
            rx.resize(SMALL_BUFFER.max(received.len()), 0);
            rx[..received.len()].copy_from_slice(received);
        }
        WebSocketStream {
            io,
            session,
            rx,
            start: 0,
            end: received.len(),
            scratch: Vec::new(),
            deflate,
            epoch: Instant::now(),
            timer: None,
            timer_at: None,
            negotiated,
            state: ReadState::Open,
            failure: None,
            write_buffer: config.write_buffer,
            write_closed: false,
            answers: false,
            last_read: 0,
            pooled: false,
            quiet_by: None,
            close_timeout: config.close_timeout,
            finish_by: Instant::now(),
        }
    }

    /// The subprotocol the handshake chose.
    pub fn protocol(&self) -> Option<&str> {
        self.negotiated.protocol.as_deref()
    }

    /// Whether permessage-deflate was agreed.
    pub fn compressed(&self) -> bool {
        self.deflate.is_some()
    }

    /// (Client role) the server's response headers.
    pub fn response_headers(&self) -> &[(String, String)] {
        &self.negotiated.headers
    }

    /// How the connection ended, once it has: the close code and reason as they happened
    /// (the peer's, or ours when we closed first, e.g. 1009 after a limit), who started it,
    /// and whether both close frames were exchanged.
    pub fn ended(&self) -> Option<&Ended> {
        self.session.ended()
    }

    /// Bytes queued for sending and not yet written.
    pub fn buffered_amount(&self) -> usize {
        self.session.queued()
    }

    /// Heap bytes the connection's buffers hold (receive, inflate, output, a message being
    /// assembled): 0 once a connection went quiet, whatever it carried before.
    pub fn buffers_held(&self) -> usize {
        self.rx.capacity() + self.scratch.capacity() + self.session.held()
    }

    /// The transport, for what this API does not cover.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// Queues a text message (no copy beyond the frame's own buffer).
    pub fn queue_text(&mut self, text: &str) -> Result<(), Error> {
        self.queue(Lent::Text(text))
    }

    /// Queues a binary message.
    pub fn queue_binary(&mut self, data: &[u8]) -> Result<(), Error> {
        self.queue(Lent::Binary(data))
    }

    fn queue(&mut self, msg: Lent<'_>) -> Result<(), Error> {
        self.queue_either(Ok(msg))
    }

    fn queue_owned(&mut self, msg: Message) -> Result<(), Error> {
        self.queue_either(Err(match msg {
            Message::Text(t) => OwnedMessage::text(t),
            Message::Binary(b) => OwnedMessage::binary(b),
        }))
    }

    /// Queues a message lent (copied into the frame) or owned (sent from its own buffer).
    fn queue_either(&mut self, msg: Result<Lent<'_>, OwnedMessage>) -> Result<(), Error> {
        let mut engines = self
            .deflate
            .as_deref_mut()
            .map(|(state, pool)| Deflating { state, pool });
        let compress = engines
            .as_mut()
            .map(|d| d as &mut dyn sockeye_codec::session::Compress);
        match msg {
            Ok(lent) => self.session.send(lent, compress),
            Err(owned) => self.session.send_owned(owned, compress),
        }
        .map_err(send_error)
    }

    /// Sends a ping (at most 125 bytes) and writes it out. The pong arrives through reading.
    pub async fn ping(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.session.ping(payload).map_err(send_error)?;
        poll_fn(|cx| self.poll_write_out(cx))
            .await
            .map_err(Error::Io)
    }

    /// Starts the close handshake with `code` and `reason` and completes it: our close frame
    /// goes out, then the stream is read (data dropped) until the peer's close arrives or the
    /// close timeout passes, and the transport is shut down. A code that may not be sent
    /// (1005, 1006, 1015, below 1000, 5000 and up) or a reason over 123 bytes is
    /// [`Error::Invalid`] and nothing is sent.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        let now = self.now();
        self.session
            .close(Some(code), reason, now)
            .map_err(send_error)?;
        self.answers = true; // our close goes out first thing
        poll_fn(|cx| self.poll_finish_close(cx)).await
    }

    /// Reads the next piece of a message without copying it: the bytes are lent from the
    /// receive buffer until the next call. From the next message on, messages arrive piece by
    /// piece here (a message already begun whole is finished whole and its pieces lent the
    /// same way). `None` once the connection ended, as with the `Stream`.
    pub async fn next_chunk(&mut self) -> Option<Result<Chunk<'_>, Error>> {
        self.session.receiver().set_streaming(true);
        let got = poll_fn(|cx| self.poll_got(cx)).await;
        match got? {
            Err(e) => Some(Err(e)),
            Ok(Got::Message(m)) => {
                // Delivered whole (it began before streaming was asked for): lend it as one
                // piece from a buffer of its own.
                let kind = m.kind();
                self.scratch = m.into_bytes();
                Some(Ok(Chunk {
                    kind,
                    data: &self.scratch,
                    first: true,
                    last: true,
                }))
            }
            Ok(Got::Chunk {
                kind,
                at,
                first,
                last,
            }) => {
                let data = match at {
                    Place::Rx(a, b) => &self.rx[a..b],
                    Place::Scratch(a, b) => &self.scratch[a..b],
                };
                Some(Ok(Chunk {
                    kind,
                    data,
                    first,
                    last,
                }))
            }
        }
    }

    /// Writes queued output until the queue is empty.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let out = self.session.outgoing();
        out.seal();
        while out.sealed() > 0 {
            if self.write_closed {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the connection is closed for writing",
                )));
            }
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let mut n = 0;
            for (slot, chunk) in slices.iter_mut().zip(out.chunks()) {
                *slot = IoSlice::new(chunk);
                n += 1;
            }
            let written = match Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..n]) {
                Poll::Ready(Ok(0)) => Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(r) => r,
                Poll::Pending => return Poll::Pending,
            };
            match written {
                Ok(w) => out.advance(w),
                Err(e) => {
                    self.write_closed = true;
                    return Poll::Ready(Err(e));
                }
            }
        }
        self.answers = false;
        if self.rx.is_empty() {
            // Reading went quiet too: an idle connection holds no buffers.
            out.release();
        }
        Pin::new(&mut self.io).poll_flush(cx)
    }

    /// Reads more bytes into the receive buffer: `Ok(0)` at the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.rx.is_empty() {
                // An idle connection holds no receive buffer: a wake-up's first read goes to
                // the stack, and a buffer is taken only once bytes came.
                let mut first = [0u8; FIRST_READ];
                let mut buf = ReadBuf::new(&mut first);
                ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf))?;
                let n = buf.filled().len();
                if n > 0 {
                    // As small as the first read (a block the allocator keeps at hand) unless
                    // that read filled it; a read that fills it grows it to `READ_BUFFER`.
                    let size = if n == FIRST_READ {
                        READ_BUFFER
                    } else {
                        FIRST_READ
                    };
                    self.rx.resize(size, 0);
                    self.rx[..n].copy_from_slice(&first[..n]);
                    self.end = n;
                }
                self.last_read = n;
                return Poll::Ready(Ok(n));
            }
        } else if self.end == self.rx.len() {
            if self.start == 0 {
                // Cannot happen (the session takes a frame's payload as it comes, leaving at
                // most a header or a control frame), but a full buffer must not read as EOF.
                self.rx.resize(self.rx.len() * 2, 0);
            } else {
                // What is left is less than a frame header or control frame, so moving it
                // is cheap.
                self.rx.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
        }
        let room = self.rx.len() - self.end;
        let mut buf = ReadBuf::new(&mut self.rx[self.end..]);
        match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {
                // Nothing more for now. The buffer goes once reads are small (the next wake-up
                // reads into the stack first), so an idle connection holds none; while large
                // reads go on it stays (freeing and faulting in 64 KiB every wake-up cost 934
                // against 737 µs of server CPU per 1 MiB echo), until the connection has been
                // quiet between messages for `QUIET`.
                if self.start == self.end {
                    if self.last_read < SMALL_BUFFER {
                        self.release();
                    } else if self.quiet_by.is_none() && !self.session.receiver().in_message() {
                        self.quiet_by = Some(self.now() + QUIET);
                    }
                }
                return Poll::Pending;
            }
        }
        let n = buf.filled().len();
        if n != 0 {
            self.quiet_by = None;
        }
        self.end += n;
        self.last_read = n;
        if n == room && self.rx.len() < READ_BUFFER {
            // A read that filled the buffer: more is waiting, take it in larger reads.
            self.rx.resize(READ_BUFFER, 0);
        }
        if n == READ_BUFFER {
            self.pool_buffers();
        }
        Poll::Ready(Ok(n))
    }

    /// Large messages are coming: assemble them in buffers that come back from the payloads
    /// written (a message echoed or forwarded), instead of freeing and faulting in a megabyte
    /// per message. Three: one assembling, two being written.
    fn pool_buffers(&mut self) {
        if !self.pooled {
            self.session
                .set_buffers(Some(Box::new(BufferPool::new(POOLED_BUFFERS))));
            self.pooled = true;
        }
    }

    /// Frees the receive buffer, the output queue's buffers (if all is written; else
    /// `poll_write_out` frees them once it is) and the pool: the connection is quiet.
    fn release(&mut self) {
        self.rx = Vec::new();
        self.start = 0;
        self.end = 0;
        self.quiet_by = None;
        self.session.outgoing().release();
        if self.pooled {
            self.session.set_buffers(None);
            self.pooled = false;
        }
    }

    /// Acts on the session's deadline, and on the quiet one, when it passed; arms the timer
    /// for the next.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) {
        loop {
            let now = self.now();
            let quiet = self.quiet_by.map(|at| at.saturating_sub(now));
            let Some(left) = self
                .session
                .poll_timeout(now)
                .into_iter()
                .chain(quiet)
                .min()
            else {
                // No deadline: the timer (a heap block) goes too.
                self.timer = None;
                self.timer_at = None;
                return;
            };
            if !left.is_zero() {
                if !self.poll_timer(self.epoch + now + left, cx) {
                    return;
                }
                continue;
            }
            self.timer_at = None;
            if quiet == Some(Duration::ZERO) {
                // Still nothing since (a read would have cleared it): quiet.
                if self.start == self.end && !self.session.receiver().in_message() {
                    self.release();
                }
                self.quiet_by = None;
                continue;
            }
            match self.session.on_timeout(now) {
                Some(sockeye_codec::session::Due::CloseTimeout) => {
                    self.finish(None);
                    return;
                }
                // A ping or our idle close is queued; on to the next deadline.
                Some(_) => self.answers = true,
                None => return,
            }
        }
    }

    /// The connection is over: flush, shut down, then report `failure` (if any) and end.
    fn finish(&mut self, failure: Option<Error>) {
        if self.state == ReadState::Open {
            self.state = ReadState::Finishing;
            self.failure = failure;
            self.finish_by = Instant::now() + self.close_timeout;
        }
    }

    /// Whether the time to flush the last frames has passed (else the timer is armed for it).
    fn finish_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let at = self.finish_by;
        Instant::now() >= at || self.poll_timer(at, cx)
    }

    /// Whether `at` has come, arming the timer (made at its first use) for it if not.
    fn poll_timer(&mut self, at: Instant, cx: &mut Context<'_>) -> bool {
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if self.timer_at != Some(at) {
            timer.as_mut().reset(at);
            self.timer_at = Some(at);
        }
        timer.as_mut().poll(cx).is_ready()
    }

    /// One step of reading: the next message or piece, `None` once the connection ended.
    fn poll_got(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Got, Error>>> {
        loop {
            match self.state {
                ReadState::Done => return Poll::Ready(None),
                ReadState::Finishing => {
                    // Best effort: the close frame (ours or the answer) goes out first, within
                    // the close timeout (a peer that reads nothing does not hold us).
                    if !self.write_closed {
                        let flushed = self.poll_write_out(cx).is_ready()
                            && Pin::new(&mut self.io).poll_shutdown(cx).is_ready();
                        if !flushed && !self.finish_expired(cx) {
                            return Poll::Pending;
                        }
                        self.write_closed = true;
                    }
                    if self.session.ended().is_none() {
                        // Failed (or timed out) before a close handshake finished: ended by
                        // our close frame if one went out, else 1006.
                        self.session.transport_ended();
                    }
                    self.state = ReadState::Done;
                    return Poll::Ready(self.failure.take().map(Err));
                }
                ReadState::Open => {}
            }
            // Answers (pongs, our close) go out as they are queued, with whatever the
            // application queued before them; a transport that is not ready for them does not
            // hold up reading.
            if self.answers
                && !self.write_closed
                && let Poll::Ready(Err(e)) = self.poll_write_out(cx)
            {
                self.session.transport_ended();
                self.finish(Some(Error::Io(e)));
                continue;
            }
            if let Some(got) = self.step() {
                match got {
                    Ok(Some(got)) => return Poll::Ready(Some(Ok(got))),
                    Ok(None) => continue,
                    Err(e) => {
                        self.finish(Some(e));
                        continue;
                    }
                }
            }
            self.poll_deadline(cx);
            if self.state != ReadState::Open {
                continue;
            }
            // The rest of a large frame: read it straight into the message.
            if self.start == self.end
                && let Some(read) = self.poll_room(cx)
            {
                match read {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(Some(m))) => return Poll::Ready(Some(Ok(Got::Message(m)))),
                    Poll::Ready(Ok(None)) => {}
                    Poll::Ready(Err(e)) => self.finish(Some(e)),
                }
                continue;
            }
            let quiet = self.quiet_by;
            match self.poll_fill(cx) {
                Poll::Pending => {
                    if self.quiet_by != quiet {
                        // The quiet deadline was set just now: arm the timer for it.
                        self.poll_deadline(cx);
                        if self.answers || self.state != ReadState::Open {
                            continue;
                        }
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Ok(0)) => self.read_ended(),
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => self.read_failed(e),
            }
        }
    }

    /// Reads into the session's room (the rest of a large frame, in the message being
    /// assembled): the message if that completed it. `None` when the session lends no room.
    #[allow(unsafe_code)]
    fn poll_room(&mut self, cx: &mut Context<'_>) -> Option<Poll<Result<Option<Message>, Error>>> {
        let room = self.session.room()?;
        let mut buf = ReadBuf::uninit(room);
        let Poll::Ready(read) = Pin::new(&mut self.io).poll_read(cx, &mut buf) else {
            return Some(Poll::Pending);
        };
        let n = buf.filled().len();
        let now = self.now();
        // SAFETY: `ReadBuf` keeps its filled part initialized (a reader can mark bytes filled
        // only by writing them, or through its own unsafe calls), and it began at the room's
        // first byte; nothing else touched the session since `room`.
        let got = unsafe { self.session.received_in_room(n, now) };
        match read {
            Err(e) => self.read_failed(e),
            Ok(()) if n == 0 => self.read_ended(),
            Ok(()) => {
                // Whatever its size, a read into a large frame counts as a large read: the
                // last, short one of a message must not free the buffers between messages.
                self.last_read = n.max(READ_BUFFER);
                self.quiet_by = None;
                if n >= READ_BUFFER {
                    self.pool_buffers();
                }
            }
        }
        Some(Poll::Ready(match got {
            Ok(m) => Ok(m.map(owned_message)),
            Err(e) => Err(Error::Protocol(e)),
        }))
    }

    /// The transport's read side ended: cleanly if our close was out, else 1006.
    fn read_ended(&mut self) {
        let by_us = self.session.sender().close_sent();
        self.session.transport_ended();
        let failure = match by_us {
            // Our close is out and the peer hung up: done, if not cleanly.
            true => None,
            false => Some(Error::Closed(CloseError::abnormal(
                "the connection closed without a close frame",
            ))),
        };
        self.write_closed = true;
        self.finish(failure);
    }

    /// Reading failed: the connection is over.
    fn read_failed(&mut self, e: io::Error) {
        self.session.transport_ended();
        self.write_closed = true;
        self.finish(Some(Error::Io(e)));
    }

    /// Decodes what the receive buffer holds: `None` when it needs more bytes, `Some(Ok(None))`
    /// after an event that gives the caller nothing (a ping, a piece of an assembled message).
    fn step(&mut self) -> Option<Result<Option<Got>, Error>> {
        if self.start == self.end {
            return None;
        }
        let now = self.now();
        let base = self.start;
        let mut engines = self
            .deflate
            .as_deref_mut()
            .map(|(state, pool)| Deflating { state, pool });
        let deflate = engines.as_mut().map(|d| d as &mut dyn Deflate);
        let pending = &mut self.rx[base..self.end];
        let got = match self
            .session
            .receive(pending, &mut self.scratch, deflate, now)
        {
            Ok(got) => got,
            Err(e) => return Some(Err(Error::Protocol(e))),
        };
        if got.needs_more() {
            return None;
        }
        let consumed = got.consumed;
        let mut chunk = None;
        let out = match got.event {
            None | Some(Incoming::Pong(_)) => None,
            Some(Incoming::Ping(_)) => {
                self.answers = true; // the pong is queued
                None
            }
            Some(Incoming::Message(Lent::Text(t))) => Some(Got::Message(Message::Text(t.into()))),
            Some(Incoming::Message(Lent::Binary(b))) => {
                Some(Got::Message(Message::Binary(b.into())))
            }
            Some(Incoming::Assembled(m)) => Some(Got::Message(owned_message(m))),
            Some(Incoming::Chunk(c)) => {
                // The piece is in the receive buffer (in place) or inflated into the scratch
                // buffer, which may have moved as it grew: its address is kept and turned
                // into a place once the borrow has ended.
                let kind = match c.text {
                    true => DataKind::Text,
                    false => DataKind::Binary,
                };
                chunk = Some((
                    kind,
                    c.data.as_ptr() as usize,
                    c.data.len(),
                    c.first,
                    c.last,
                ));
                None
            }
            Some(Incoming::Close(_)) => {
                self.start += consumed;
                // The session queued our answer; flush it, shut down, end.
                self.finish(None);
                return Some(Ok(None));
            }
        };
        self.start += consumed;
        let Some((kind, addr, len, first, last)) = chunk else {
            return Some(Ok(out));
        };
        let Some(at) = self.place(addr, len) else {
            // The session lends a piece from the input or from the scratch buffer, never from
            // elsewhere; should that change, fail rather than lend the wrong bytes.
            return Some(Err(Error::Io(io::Error::other(
                "a piece lent from neither receive buffer",
            ))));
        };
        Some(Ok(Some(Got::Chunk {
            kind,
            at,
            first,
            last,
        })))
    }

    /// Which buffer holds the `len` bytes at address `addr`, and where.
    fn place(&self, addr: usize, len: usize) -> Option<Place> {
        if len == 0 {
            return Some(Place::Rx(0, 0));
        }
        let within = |base: *const u8, size: usize| {
            let base = base as usize;
            (base..base + size)
                .contains(&addr)
                .then(|| addr - base)
                .filter(|a| a + len <= size)
        };
        if let Some(a) = within(self.rx.as_ptr(), self.rx.len()) {
            return Some(Place::Rx(a, a + len));
        }
        within(self.scratch.as_ptr(), self.scratch.len()).map(|a| Place::Scratch(a, a + len))
    }

    /// Drives the close handshake we started to its end (see [`WebSocketStream::close`]).
    fn poll_finish_close(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        loop {
            match ready!(self.poll_got(cx)) {
                // After our close the session drops data; anything else is read past.
                Some(Ok(_)) => continue,
                Some(Err(Error::Closed(_))) | None => return Poll::Ready(Ok(())),
                Some(Err(e)) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// An assembled message as the stream hands it out.
fn owned_message(m: OwnedMessage) -> Message {
    match m.is_text() {
        // A text message's bytes are valid UTF-8: `into_text` is `Some` for it.
        true => Message::Text(m.into_text().unwrap_or_default()),
        false => Message::Binary(m.into_bytes()),
    }
}

fn send_error(e: SendError) -> Error {
    match e {
        SendError::Closed => Error::CloseSent,
        SendError::MessageInProgress => Error::MessageInProgress,
        SendError::Encode(e) => Error::Invalid(e),
        SendError::Full { .. } => Error::Io(io::Error::new(
            io::ErrorKind::WouldBlock,
            "the send queue is over its bound",
        )),
        other => Error::Io(io::Error::other(other.to_string())),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WebSocketStream<S> {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        this.session.receiver().set_streaming(false);
        loop {
            return match ready!(this.poll_got(cx)) {
                None => Poll::Ready(None),
                Some(Err(e)) => Poll::Ready(Some(Err(e))),
                Some(Ok(Got::Message(m))) => Poll::Ready(Some(Ok(m))),
                // A message begun piece by piece (`next_chunk`) ends that way: its remaining
                // pieces are not for the `Stream`, which hands out whole messages.
                Some(Ok(Got::Chunk { .. })) => continue,
            };
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocketStream<S> {
    fn sink_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.session.sender().close_sent() {
            return Poll::Ready(Err(Error::CloseSent));
        }
        if self.session.queued() >= self.write_buffer {
            ready!(self.poll_write_out(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    fn sink_close(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if !self.session.sender().close_sent() && self.state == ReadState::Open {
            let now = self.now();
            self.session
                .close(Some(CloseCode::NORMAL), "", now)
                .map_err(send_error)?;
            self.answers = true;
        }
        self.poll_finish_close(cx)
    }
}

/// Whole messages, sent from their own buffers (only the header is written; the client role
/// masks the payload in place).
impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WebSocketStream<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().sink_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        self.get_mut().queue_owned(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_write_out(cx).map_err(Error::Io)
    }

    /// Closes with 1000 (unless a close was sent already) and completes the handshake, as
    /// [`WebSocketStream::close`] does.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().sink_close(cx)
    }
}

/// Messages framed once for many connections ([`Prepared`]): the server role queues the
/// shared frame itself, without a copy (the client role, which must mask, a masked copy).
/// Compression does not apply to them.
impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Prepared> for WebSocketStream<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().sink_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Prepared) -> Result<(), Error> {
        self.get_mut()
            .session
            .send_prepared(&item)
            .map_err(send_error)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_write_out(cx).map_err(Error::Io)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().sink_close(cx)
    }
}

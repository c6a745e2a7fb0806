//! The reading half of a client connection, and the connection itself.

use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::ops::Range;
use std::time::Instant;

use sockeye_codec::deflate::{Agreement, DeflateConfig, PerMessageDeflate, Pool};
use sockeye_codec::session::{
    Chunk, Deflating, Incoming, Inflate, Message as SessionMessage, OwnedMessage, Receiver,
};
use sockeye_codec::{CloseCode, Config, DataKind, MAX_REASON_LEN, Role};

use super::Message;
use super::error::{CloseError, Error, deadline_error};
use super::writer::{CLOSE_TIMEOUT, MessageWriter, Writer, lock};

/// Receive buffer per connection. Larger messages stream through it.
pub(super) const RECV_BUF: usize = 64 << 10;

type Callback = Box<dyn FnMut(&[u8]) + Send>;
type CloseCallback = Box<dyn FnMut(Option<CloseCode>, &str) + Send>;

/// A receive buffer: bytes `start..end` are received and not yet consumed.
pub(super) struct RecvBuf {
    pub(super) buf: Box<[u8]>,
    pub(super) start: usize,
    pub(super) end: usize,
}

impl RecvBuf {
    pub(super) fn new() -> RecvBuf {
        RecvBuf {
            buf: vec![0; RECV_BUF].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads more bytes, first moving the pending ones to the front if the tail is full. Ranges
    /// of consumed bytes stay valid until this is called.
    pub(super) fn fill(&mut self, stream: &mut impl Read) -> io::Result<usize> {
        if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        loop {
            match stream.read(&mut self.buf[self.end..]) {
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(deadline_error(e)),
            }
        }
    }
}

/// A piece of a data message, consumed from the receive buffer but still in it.
#[derive(Clone, Copy)]
struct Piece {
    kind: DataKind,
    start: usize,
    end: usize,
    message_fin: bool,
    /// The bytes are in the inflater's output, not the receive buffer.
    inflated: bool,
}

/// The data message being read.
struct Current {
    /// Bytes of the latest piece not handed out yet (in the receive buffer, or the inflater's
    /// output if `inflated`).
    left: Range<usize>,
    inflated: bool,
    /// The latest piece ends the message.
    fin: bool,
    /// A [`MessageReader`] was dropped before the end: the rest is skipped.
    abandoned: bool,
}

/// A client connection (Go's `*websocket.Conn`): read messages here, write them here or through
/// a cloneable [`Writer`] from other threads.
///
/// Control frames are handled while reading: pings are answered with pongs, pongs complete
/// [`Writer::ping`], a close frame is answered and ends the connection with
/// [`Error::Closed`]. Register callbacks with [`Conn::on_ping`], [`Conn::on_pong`] and
/// [`Conn::on_close`] to see them.
pub struct Conn {
    writer: Writer,
    stream: TcpStream,
    rx: RecvBuf,
    subprotocol: Option<String>,
    headers: Vec<(String, String)>,
    peer_addr: SocketAddr,
    read_deadline: Option<Instant>,
    /// Whether a receive timeout is set on the socket.
    timeout_set: bool,
    current: Option<Current>,
    /// Why reading ended; every later read returns it again.
    ended: Option<Ended>,
    on_ping: Option<Callback>,
    on_pong: Option<Callback>,
    on_close: Option<CloseCallback>,
    /// The protocol's receiving half (in streaming mode: this type assembles messages into
    /// the caller's buffers).
    session: Receiver,
    /// permessage-deflate's receiving half and its engine, if negotiated.
    deflate: Option<Box<(PerMessageDeflate, Pool)>>,
    /// The inflation of the latest compressed piece.
    inflated: Vec<u8>,
    read_limit: Option<u64>,
}

/// What [`Conn::next_data`] found.
enum DataStep {
    /// A piece of a streamed message.
    Piece(Piece),
    /// A whole message.
    Whole(OwnedMessage),
}

/// Where a streamed piece lies: in the receive buffer (which starts at `buf_addr`), or all of
/// the inflater's output (an empty piece is taken as the latter: nothing to point at).
fn piece(c: &Chunk<'_>, buf_addr: usize) -> Piece {
    let addr = c.data.as_ptr() as usize;
    let in_rx = !c.data.is_empty() && (buf_addr..buf_addr + RECV_BUF).contains(&addr);
    let (inflated, start) = match in_rx {
        true => (false, addr - buf_addr),
        false => (true, 0),
    };
    Piece {
        kind: if c.text {
            DataKind::Text
        } else {
            DataKind::Binary
        },
        start,
        end: start + c.data.len(),
        message_fin: c.last,
        inflated,
    }
}

/// A control frame, copied out of the receive buffer (≤125 bytes) so the connection can act
/// on it.
enum Control {
    Ping([u8; 125], usize),
    Pong([u8; 125], usize),
    Close(CloseError),
}

impl Control {
    /// The control frame an event carries (`None` for data).
    fn of(event: Incoming<'_>) -> Option<Control> {
        let copy = |p: &[u8]| {
            let mut buf = [0u8; 125];
            let len = p.len().min(125);
            buf[..len].copy_from_slice(&p[..len]);
            (buf, len)
        };
        Some(match event {
            Incoming::Ping(p) => {
                let (buf, len) = copy(p);
                Control::Ping(buf, len)
            }
            Incoming::Pong(p) => {
                let (buf, len) = copy(p);
                Control::Pong(buf, len)
            }
            Incoming::Close(c) => Control::Close(CloseError {
                code: c.code,
                reason: c.reason.to_owned(),
            }),
            Incoming::Message(_) | Incoming::Assembled(_) | Incoming::Chunk(_) => return None,
        })
    }
}

#[derive(Clone)]
enum Ended {
    Closed(CloseError),
    Protocol(sockeye_codec::Error),
}

impl Ended {
    fn error(&self) -> Error {
        match self {
            Ended::Closed(c) => Error::Closed(c.clone()),
            Ended::Protocol(e) => Error::Protocol(*e),
        }
    }
}

/// What [`super::dial`] hands over once the handshake succeeded.
pub(super) struct Accepted {
    pub(super) stream: TcpStream,
    pub(super) rx: RecvBuf,
    pub(super) subprotocol: Option<String>,
    pub(super) headers: Vec<(String, String)>,
    pub(super) read_limit: Option<u64>,
    pub(super) deflate: Option<(Agreement, DeflateConfig)>,
}

impl Conn {
    pub(super) fn new(a: Accepted) -> io::Result<Conn> {
        let write_half = a.stream.try_clone()?;
        let socket = a.stream.try_clone()?;
        let peer_addr = a.stream.peer_addr()?;
        let pmd = |(agreed, config): &(Agreement, DeflateConfig)| {
            PerMessageDeflate::new(Role::Client, agreed, config)
        };
        let deflate = a.deflate.as_ref().map(|d| Box::new((pmd(d), Pool::new(1))));
        let compressed = a.deflate.is_some();
        let mut session = Receiver::new(Role::Client, limit_config(a.read_limit, compressed));
        session.set_streaming(true);
        Ok(Conn {
            writer: Writer::new(socket, write_half, a.deflate.as_ref().map(pmd)),
            stream: a.stream,
            rx: a.rx,

            subprotocol: a.subprotocol,
            headers: a.headers,
            peer_addr,
            read_deadline: None,
            timeout_set: true, // the handshake's
            current: None,
            ended: None,
            on_ping: None,
            on_pong: None,
            on_close: None,
            session,
            deflate,
            inflated: Vec::new(),
            read_limit: a.read_limit,
        })
    }

    /// A handle for writing from any thread (cloneable).
    #[must_use]
    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    /// The subprotocol the server selected, if any.
    #[must_use]
    pub fn subprotocol(&self) -> Option<&str> {
        self.subprotocol.as_deref()
    }

    /// The headers of the server's `101 Switching Protocols` response.
    #[must_use]
    pub fn response_headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The server's address.
    #[must_use]
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// Sets the largest message (and frame) accepted; a larger one closes the connection with
    /// 1009 before its payload is read. `None` removes the limit. Default 16 MiB.
    pub fn set_read_limit(&mut self, limit: Option<u64>) {
        self.read_limit = limit;
        let compressed = self.deflate.is_some();
        self.session.set_config(limit_config(limit, compressed));
    }

    /// Sets the deadline for reads (`None`: none). A read that passes it fails with
    /// [`Error::Timeout`]`("read deadline")` ([`io::ErrorKind::TimedOut`] through `Read`); the
    /// connection stays usable, and a message cut by the
    /// deadline continues with the next read.
    pub fn set_read_deadline(&mut self, deadline: Option<Instant>) {
        self.read_deadline = deadline;
    }

    /// Sets the deadline for writes; see [`Writer::set_write_deadline`].
    pub fn set_write_deadline(&self, deadline: Option<Instant>) {
        self.writer.set_write_deadline(deadline);
    }

    /// Calls `f` with the payload of every ping received (a pong is sent either way).
    pub fn on_ping(&mut self, f: impl FnMut(&[u8]) + Send + 'static) {
        self.on_ping = Some(Box::new(f));
    }

    /// Calls `f` with the payload of every pong received.
    pub fn on_pong(&mut self, f: impl FnMut(&[u8]) + Send + 'static) {
        self.on_pong = Some(Box::new(f));
    }

    /// Calls `f` with the code and reason of the peer's close frame when it arrives (the close is
    /// answered either way).
    pub fn on_close(&mut self, f: impl FnMut(Option<CloseCode>, &str) + Send + 'static) {
        self.on_close = Some(Box::new(f));
    }

    /// Reads the next whole message.
    ///
    /// A close from the peer is [`Error::Closed`] with its code and reason (use
    /// [`Error::is_normal_close`] to tell a normal end); a protocol error is
    /// [`Error::Protocol`], after the connection was closed with its code. A message cut by a
    /// read deadline stays with the connection, and the next `read` or `read_into` hands it
    /// out whole.
    pub fn read(&mut self) -> Result<Message, Error> {
        let m = self.next_message()?;
        Ok(match m.is_text() {
            true => Message::Text(m.into_text().unwrap_or_default()),
            false => Message::Binary(m.into_bytes()),
        })
    }

    /// Reads the next whole message, appending its bytes to `out` (into an empty `out`, a
    /// message that was assembled from pieces is moved, not copied). Text was validated as
    /// UTF-8 (the whole message, by the session). As with [`Conn::read`], a message cut by a
    /// deadline is handed out whole by the next read.
    pub fn read_into(&mut self, out: &mut Vec<u8>) -> Result<DataKind, Error> {
        let m = self.next_message()?;
        let kind = match m.is_text() {
            true => DataKind::Text,
            false => DataKind::Binary,
        };
        if out.is_empty() {
            *out = m.into_bytes();
        } else {
            out.extend_from_slice(m.as_bytes());
        }
        Ok(kind)
    }

    /// Decodes until a whole message is there, handling control frames on the way: lent from
    /// the receive buffer (copied out here) or assembled by the session.
    fn next_message(&mut self) -> Result<OwnedMessage, Error> {
        self.skip_abandoned()?;
        if self.current.is_some() {
            // A streamed message (`read_stream`) is half read.
            return Err(Error::MessageInProgress);
        }
        loop {
            if let DataStep::Whole(m) = self.next_data(true)? {
                return Ok(m);
            }
        }
    }

    /// Waits for the next message and returns a reader for it that hands out its bytes as they
    /// arrive (Go's `NextReader`); a message of any size streams through without being held.
    ///
    /// Dropping the reader before the end skips the rest of the message.
    pub fn next_reader(&mut self) -> Result<MessageReader<'_>, Error> {
        self.skip_abandoned()?;
        if self.current.is_some()
            || (self.session.in_message() && !self.session.streaming_message())
        {
            // A whole-message read was cut by a deadline (or a stream is half read): finish
            // it first.
            return Err(Error::MessageInProgress);
        }
        let piece = self.next_piece()?;
        let kind = piece.kind;
        self.current = Some(Current {
            left: piece.start..piece.end,
            inflated: piece.inflated,
            fin: piece.message_fin,
            abandoned: false,
        });
        Ok(MessageReader {
            conn: self,
            kind,
            done: false,
        })
    }

    /// Reads bytes of consecutive messages of `kind` as one stream (for [`super::Tunnel`]).
    pub(super) fn read_stream(&mut self, out: &mut [u8], kind: DataKind) -> Result<usize, Error> {
        self.skip_abandoned()?;
        loop {
            if let Some(cur) = &mut self.current {
                if !cur.left.is_empty() {
                    let n = cur.left.len().min(out.len());
                    let (start, inflated) = (cur.left.start, cur.inflated);
                    cur.left.start += n;
                    out[..n].copy_from_slice(self.bytes(inflated, start..start + n));
                    return Ok(n);
                }
                if !cur.fin {
                    let piece = self.next_piece()?;
                    let cur = self.current.as_mut().expect("checked above");
                    cur.left = piece.start..piece.end;
                    cur.inflated = piece.inflated;
                    cur.fin = piece.message_fin;
                    continue;
                }
                self.current = None;
            }
            let piece = self.next_piece()?;
            if piece.kind != kind {
                let reason = match kind {
                    DataKind::Text => "this stream carries text messages",
                    DataKind::Binary => "this stream carries binary messages",
                };
                let _ = self.close(CloseCode::UNSUPPORTED_DATA, reason);
                return Err(Error::Io(io::Error::new(
                    io::ErrorKind::InvalidData,
                    reason,
                )));
            }
            self.current = Some(Current {
                left: piece.start..piece.end,
                inflated: piece.inflated,
                fin: piece.message_fin,
                abandoned: false,
            });
        }
    }

    /// The bytes of a piece, from the receive buffer or the inflater's output.
    fn bytes(&self, inflated: bool, range: Range<usize>) -> &[u8] {
        match inflated {
            true => &self.inflated[range],
            false => &self.rx.buf[range],
        }
    }

    fn skip_abandoned(&mut self) -> Result<(), Error> {
        while let Some(cur) = &self.current {
            if !cur.abandoned {
                break;
            }
            if cur.fin {
                self.current = None;
                break;
            }
            let piece = self.next_piece()?;
            let cur = self.current.as_mut().expect("checked above");
            cur.fin = piece.message_fin;
        }
        Ok(())
    }

    /// Sends a text message; see [`Writer::write_text`].
    pub fn write_text(&self, text: &str) -> Result<(), Error> {
        self.writer.write_text(text)
    }

    /// Sends a binary message; see [`Writer::write_binary`].
    pub fn write_binary(&self, data: &[u8]) -> Result<(), Error> {
        self.writer.write_binary(data)
    }

    /// Sends `msg`.
    pub fn write(&self, msg: &Message) -> Result<(), Error> {
        match msg {
            Message::Text(t) => self.writer.write_text(t),
            Message::Binary(b) => self.writer.write_binary(b),
        }
    }

    /// Opens a streamed message; see [`Writer::next_writer`].
    pub fn next_writer(&self, kind: DataKind) -> Result<MessageWriter, Error> {
        self.writer.next_writer(kind)
    }

    /// Opens a streamed message in fragments of `fragment` bytes; see
    /// [`Writer::next_writer_with`].
    pub fn next_writer_with(
        &self,
        kind: DataKind,
        fragment: usize,
    ) -> Result<MessageWriter, Error> {
        self.writer.next_writer_with(kind, fragment)
    }

    /// The full close handshake (Go's `Close`): sends a close frame with `code` and `reason`,
    /// reads (discarding data) until the peer's close frame arrives or 5 s pass, waits for the
    /// server to drop the connection, and shuts the socket down.
    ///
    /// Returns `Ok` when the handshake completed, also when the peer had closed first.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        if let Some(ended) = &self.ended {
            return match ended {
                Ended::Closed(c) if c.code != Some(CloseCode::ABNORMAL) => Ok(()),
                other => Err(other.error()),
            };
        }
        lock(&self.writer.shared.out).send_close(Some(code), reason)?;
        let deadline = Instant::now() + CLOSE_TIMEOUT;
        self.read_deadline = Some(deadline);
        self.current = None;
        loop {
            match self.next_piece() {
                Ok(_) => continue,
                Err(Error::Closed(c)) if c.code != Some(CloseCode::ABNORMAL) => return Ok(()),
                Err(Error::Timeout(_)) => {
                    self.writer.close_now();
                    self.finish(Ended::Closed(CloseError::abnormal(
                        "no close frame from the peer within 5 s",
                    )));
                    return Err(Error::Timeout("close handshake"));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Shuts the connection down at once, without a close handshake (Go's `CloseNow`).
    pub fn close_now(&mut self) {
        self.writer.close_now();
        self.finish(Ended::Closed(CloseError::abnormal("closed by this end")));
    }

    /// Stops reading data (coder/websocket's `CloseRead`): a thread keeps reading so pings are
    /// answered, pongs seen and the close handshake completed, and closes with 1008 (policy
    /// violation) if a data message arrives. Returns the writer; [`Writer::wait_closed`] tells
    /// when the connection ends.
    pub fn close_read(mut self) -> Writer {
        let writer = self.writer.clone();
        std::thread::Builder::new()
            .name("sockeye-close-read".into())
            .spawn(move || {
                if self.next_piece().is_ok() {
                    let _ = self.close(CloseCode::POLICY_VIOLATION, "unexpected data message");
                }
            })
            .expect("spawn the close_read thread");
        writer
    }

    /// Decodes until a piece of a data message is available, handling control frames on the
    /// way. The piece's bytes are consumed from the receive buffer but stay in it (or, inflated,
    /// in the inflater's output) until the next fill.
    fn next_piece(&mut self) -> Result<Piece, Error> {
        loop {
            if let DataStep::Piece(p) = self.next_data(false)? {
                return Ok(p);
            }
        }
    }

    /// Decodes until there is data to hand out, whole messages (`whole`) or streamed pieces,
    /// filling the receive buffer as needed and handling control frames on the way. Data of
    /// the other kind (a message that began the other way and that a deadline cut) ends the way
    /// it started and is read past: `close` and `close_read` rely on that.
    fn next_data(&mut self, whole: bool) -> Result<DataStep, Error> {
        self.session.set_streaming(!whole);
        loop {
            if let Some(ended) = &self.ended {
                return Err(ended.error());
            }
            let base = self.rx.start;
            let buf_addr = self.rx.buf.as_ptr() as usize;
            let pending = &mut self.rx.buf[base..self.rx.end];
            let mut inflating = self.deflate.as_mut().map(|d| Deflating {
                state: &mut d.0,
                pool: &mut d.1,
            });
            let inflate = inflating.as_mut().map(|i| i as &mut dyn Inflate);
            let got = match self.session.receive(pending, &mut self.inflated, inflate) {
                Ok(got) if got.needs_more() => {
                    self.fill()?;
                    continue;
                }
                Ok(got) => got,
                Err(e) => return Err(self.fail(e)),
            };
            let used = got.consumed;
            let step = match got.event {
                Some(Incoming::Chunk(c)) if !whole => Some(DataStep::Piece(piece(&c, buf_addr))),
                Some(Incoming::Message(SessionMessage::Text(t))) if whole => {
                    Some(DataStep::Whole(OwnedMessage::text(t.to_owned())))
                }
                Some(Incoming::Message(SessionMessage::Binary(b))) if whole => {
                    Some(DataStep::Whole(OwnedMessage::binary(b.to_vec())))
                }
                Some(Incoming::Assembled(m)) if whole => Some(DataStep::Whole(m)),
                Some(other) => {
                    let control = Control::of(other);
                    self.rx.consume(used);
                    if let Some(c) = control {
                        self.on_control(c)?;
                    }
                    continue;
                }
                None => None,
            };
            self.rx.consume(used);
            if let Some(step) = step {
                return Ok(step);
            }
        }
    }

    /// A control frame: a ping is answered, a pong noted, a close answered and the end.
    fn on_control(&mut self, control: Control) -> Result<(), Error> {
        match control {
            Control::Ping(buf, len) => {
                let payload = &buf[..len];
                // Answer unless our close is out (then no more frames may be sent).
                self.writer.shared.answer_ping(payload);
                if let Some(f) = &mut self.on_ping {
                    f(payload);
                }
            }
            Control::Pong(buf, len) => {
                let payload = &buf[..len];
                if let Ok(seq) = <[u8; 8]>::try_from(payload) {
                    let mut peer = lock(&self.writer.shared.peer);
                    peer.pong_seen = peer.pong_seen.max(u64::from_be_bytes(seq));
                    drop(peer);
                    self.writer.shared.peer_changed.notify_all();
                }
                if let Some(f) = &mut self.on_pong {
                    f(payload);
                }
            }
            Control::Close(closed) => return Err(self.peer_closed(closed)),
        }
        Ok(())
    }

    fn fill(&mut self) -> Result<(), Error> {
        let timeout = match self.read_deadline {
            Some(d) => Some(
                d.checked_duration_since(Instant::now())
                    .filter(|t| !t.is_zero())
                    .ok_or(Error::Timeout("read deadline"))?,
            ),
            None => None,
        };
        if timeout.is_some() || self.timeout_set {
            self.stream.set_read_timeout(timeout)?;
            self.timeout_set = timeout.is_some();
        }
        match self.rx.fill(&mut self.stream) {
            Ok(0) => {
                let why = if lock(&self.writer.shared.out).close_sent() {
                    "the connection dropped during the close handshake"
                } else {
                    "the connection dropped without a close frame"
                };
                Err(self.finish(Ended::Closed(CloseError::abnormal(why))))
            }
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                ) =>
            {
                Err(Error::Timeout("read deadline"))
            }
            Err(e) => {
                let err = CloseError::abnormal(&e.to_string());
                self.finish(Ended::Closed(err));
                Err(Error::Io(e))
            }
        }
    }

    /// The peer broke the protocol: close with the error's code and stop.
    fn fail(&mut self, e: sockeye_codec::Error) -> Error {
        let mut reason = e.to_string();
        truncate_reason(&mut reason);
        let _ = lock(&self.writer.shared.out).send_close(Some(e.close_code()), &reason);
        self.writer.close_now();
        self.finish(Ended::Protocol(e))
    }

    /// The peer's close frame arrived: answer it (echoing its code, §5.5.1), wait for the
    /// server to drop the connection (§7.1.1: the server closes TCP first), and stop.
    fn peer_closed(&mut self, closed: CloseError) -> Error {
        let _ = lock(&self.writer.shared.out).answer_close(closed.code);
        {
            let mut peer = lock(&self.writer.shared.peer);
            peer.close_received = true;
        }
        if let Some(f) = &mut self.on_close {
            f(closed.code, &closed.reason);
        }
        let err = self.finish(Ended::Closed(closed));
        self.linger();
        err
    }

    /// Reads and discards until the server closes the connection or the close timeout passes,
    /// then shuts the socket down.
    fn linger(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
        let deadline = Instant::now() + CLOSE_TIMEOUT;
        let mut sink = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.stream.set_read_timeout(Some(left)).is_err() {
                break;
            }
            match self.stream.read(&mut sink) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        self.writer.close_now();
    }

    /// Records why reading ended, wakes writers waiting on the peer, and returns the error.
    fn finish(&mut self, ended: Ended) -> Error {
        let err = ended.error();
        if self.ended.is_none() {
            let closed = match &ended {
                Ended::Closed(c) => c.clone(),
                Ended::Protocol(e) => CloseError {
                    code: Some(e.close_code()),
                    reason: e.to_string(),
                },
            };
            self.ended = Some(ended);
            let mut peer = lock(&self.writer.shared.peer);
            peer.closed.get_or_insert(closed);
            drop(peer);
            self.writer.shared.peer_changed.notify_all();
        }
        err
    }
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("peer_addr", &self.peer_addr)
            .field("subprotocol", &self.subprotocol)
            .field("ended", &self.ended.as_ref().map(Ended::error))
            .finish_non_exhaustive()
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Dropping a connection does not block on a close handshake; it ends the connection so
        // the server sees it go (use `close` for a clean end).
        self.writer.close_now();
    }
}

/// One message being read as it arrives (Go's `NextReader`); see [`Conn::next_reader`].
#[derive(Debug)]
pub struct MessageReader<'c> {
    conn: &'c mut Conn,
    kind: DataKind,
    done: bool,
}

impl MessageReader<'_> {
    /// Whether the message is text or binary.
    #[must_use]
    pub fn kind(&self) -> DataKind {
        self.kind
    }

    /// Reads the next piece of the message without copying it: the bytes as they sit in the
    /// receive buffer, or `None` at the end of the message.
    pub fn next_chunk(&mut self) -> Result<Option<&[u8]>, Error> {
        let range = loop {
            if self.done {
                return Ok(None);
            }
            let cur = self.conn.current.as_mut().expect("a message is being read");
            if !cur.left.is_empty() {
                break std::mem::replace(&mut cur.left, 0..0);
            }
            if cur.fin {
                self.conn.current = None;
                self.done = true;
                return Ok(None);
            }
            let piece = self.conn.next_piece()?;
            let cur = self.conn.current.as_mut().expect("a message is being read");
            cur.left = piece.start..piece.end;
            cur.inflated = piece.inflated;
            cur.fin = piece.message_fin;
        };
        let inflated = self.conn.current.as_ref().is_some_and(|c| c.inflated);
        Ok(Some(self.conn.bytes(inflated, range)))
    }
}

impl Read for MessageReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.done {
                return Ok(0);
            }
            let cur = self.conn.current.as_mut().expect("a message is being read");
            if !cur.left.is_empty() {
                let n = cur.left.len().min(out.len());
                let (start, inflated) = (cur.left.start, cur.inflated);
                cur.left.start += n;
                out[..n].copy_from_slice(self.conn.bytes(inflated, start..start + n));
                return Ok(n);
            }
            if cur.fin {
                self.conn.current = None;
                self.done = true;
                return Ok(0);
            }
            let piece = self.conn.next_piece()?;
            let cur = self.conn.current.as_mut().expect("a message is being read");
            cur.left = piece.start..piece.end;
            cur.inflated = piece.inflated;
            cur.fin = piece.message_fin;
        }
    }
}

impl Drop for MessageReader<'_> {
    fn drop(&mut self) {
        if !self.done
            && let Some(cur) = &mut self.conn.current
        {
            cur.abandoned = true;
        }
    }
}

fn limit_config(limit: Option<u64>, compressed: bool) -> Config {
    let limit = limit.unwrap_or(u64::MAX >> 1);
    // The message limit bounds every frame too (checked on each header); for a compressed
    // message it bounds the compressed size here and the inflated size in the inflater.
    Config::new()
        .max_message(limit)
        .max_frame(u64::MAX >> 1)
        .compression(compressed)
}

fn truncate_reason(reason: &mut String) {
    if reason.len() > MAX_REASON_LEN {
        let mut cut = MAX_REASON_LEN;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
    }
}

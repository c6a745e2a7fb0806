//! The writing half of a client connection: whole messages, streamed messages, pings, close.
//!
//! Every frame is masked with a fresh key (RFC 6455 §5.3) drawn from the operating system's
//! random source, in place in the connection's own staging buffer.

use std::io::{self, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use sockeye_codec::session::{
    Compress, Deflating, Fragment, Link, Message, Outgoing, SendError, Sender,
};
use sockeye_codec::{CloseCode, DataKind, Role};

use sockeye_codec::deflate::{PerMessageDeflate, Pool};

use super::error::{CloseError, Error};
use crate::masks::OsMaskKeys;

/// How long a close handshake waits for the peer's close frame (coder/websocket's 5 s).
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The default fragment size of [`Writer::next_writer`].
pub const DEFAULT_FRAGMENT: usize = 16 << 10;

/// State both halves of a connection share.
pub(super) struct Shared {
    /// The socket, for shutting it down from any thread.
    pub(super) socket: TcpStream,
    pub(super) out: Mutex<Out>,
    /// Signalled when a streamed message ends.
    pub(super) out_free: Condvar,
    pub(super) peer: Mutex<PeerState>,
    /// Signalled when a pong arrives or the connection ends.
    pub(super) peer_changed: Condvar,
    /// A pong the reader could not send because a writer held `out` (mid-frame); the writer
    /// sends it when its frame is out. Only the latest ping needs an answer (§5.5.3).
    pending_pong: Mutex<Option<Vec<u8>>>,
}

impl Shared {
    /// Answers a ping from the reading thread without waiting behind a writer: a reader blocked
    /// on a large write could not read what the peer sends meanwhile, and a peer that stops
    /// reading while its own writes are blocked would then never let the write finish.
    pub(super) fn answer_ping(&self, payload: &[u8]) {
        match self.out.try_lock() {
            Ok(mut out) => {
                let _ = out.send_pong_if_open(payload);
            }
            Err(std::sync::TryLockError::Poisoned(p)) => {
                let _ = p.into_inner().send_pong_if_open(payload);
            }
            Err(std::sync::TryLockError::WouldBlock) => {
                *lock(&self.pending_pong) = Some(payload.to_vec());
                // The writer may have released `out` before the pong was stashed.
                if let Ok(mut out) = self.out.try_lock() {
                    self.flush_pong(&mut out);
                }
            }
        }
    }

    /// Sends the pong stashed by [`Shared::answer_ping`], if any; called with `out` held,
    /// between frames.
    fn flush_pong(&self, out: &mut Out) {
        if let Some(p) = lock(&self.pending_pong).take() {
            let _ = out.send_pong_if_open(&p);
        }
    }
}

/// What the reader learned that writers wait for.
#[derive(Default)]
pub(super) struct PeerState {
    /// The highest ping sequence number a pong has acknowledged.
    pub(super) pong_seen: u64,
    /// How the connection ended (the peer's close frame, or 1006).
    pub(super) closed: Option<CloseError>,
    /// The peer's close frame arrived (as opposed to the connection just ending).
    pub(super) close_received: bool,
}

/// The sending side, behind the shared lock: the session's sender frames (masking with keys
/// from the operating system, compressing), this writes what it queued.
pub(super) struct Out {
    stream: TcpStream,
    tx: Sender,
    out: Outgoing,
    rng: OsMaskKeys,
    /// The thread whose streamed message is open (its non-final fragments are out).
    streaming: Option<ThreadId>,
    /// A write failed: the stream is in an unknown state and nothing more is sent.
    broken: bool,
    deadline: Option<Instant>,
    /// Whether a send timeout is set on the socket.
    timeout_set: bool,
    pings_sent: u64,
    /// permessage-deflate's sending half, if negotiated.
    deflate: Option<Box<TxDeflate>>,
}

/// The compressor of a connection's messages, and where its output gathers (empty between
/// frames).
struct TxDeflate {
    pmd: PerMessageDeflate,
    pool: Pool,
    out: Vec<u8>,
}

impl TxDeflate {
    /// Empties the output once it is sent, not keeping the memory of a large message.
    fn clear(&mut self) {
        if self.out.capacity() > 1 << 20 {
            self.out = Vec::new();
        }
        self.out.clear();
    }
}

impl Out {
    pub(super) fn new(stream: TcpStream, deflate: Option<PerMessageDeflate>) -> Out {
        Out {
            deflate: deflate.map(|pmd| {
                Box::new(TxDeflate {
                    pmd,
                    pool: Pool::new(1),
                    out: Vec::new(),
                })
            }),
            stream,
            tx: Sender::new(Role::Client),
            out: Outgoing::new(),
            rng: OsMaskKeys::new(),
            streaming: None,
            broken: false,
            deadline: None,
            timeout_set: false,
            pings_sent: 0,
        }
    }

    /// Runs a sender command (with compression if `compress`), then writes what it queued.
    fn command(
        &mut self,
        compress: bool,
        f: impl FnOnce(&mut Sender, &mut Link<'_>) -> Result<(), SendError>,
    ) -> Result<(), Error> {
        if self.broken {
            return Err(Error::Io(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "an earlier write failed",
            )));
        }
        let mut d = if compress { self.deflate.take() } else { None };
        let queued = {
            let (mut engines, scratch) = match d.as_deref_mut() {
                Some(TxDeflate { pmd, pool, out }) => {
                    (Some(Deflating { state: pmd, pool }), Some(out))
                }
                None => (None, None),
            };
            let mut link = Link {
                out: &mut self.out,
                keys: Some(&mut self.rng),
                compress: engines.as_mut().map(|e| e as &mut dyn Compress),
                bound: usize::MAX,
                scratch,
                buffers: None,
            };
            f(&mut self.tx, &mut link)
        };
        if let Some(mut d) = d {
            d.clear();
            self.deflate = Some(d);
        }
        queued.map_err(send_error)?;
        self.write_queued()
    }

    /// Writes everything queued, under the write deadline.
    fn write_queued(&mut self) -> Result<(), Error> {
        self.out.seal();
        let timeout = match self.deadline {
            Some(d) => Some(
                d.checked_duration_since(Instant::now())
                    .filter(|t| !t.is_zero())
                    .ok_or_else(|| {
                        // The session counts these frames as sent (a close, a fragment): the
                        // stream can carry nothing after them.
                        self.broken = true;
                        self.out.clear();
                        Error::Timeout("write deadline")
                    })?,
            ),
            None => None,
        };
        if timeout.is_some() || self.timeout_set {
            self.stream.set_write_timeout(timeout)?;
            self.timeout_set = timeout.is_some();
        }
        while let Some(chunk) = self.out.pop() {
            if let Err(e) = self.stream.write_all(&chunk) {
                // Part of a frame may be out: the stream cannot carry another frame.
                self.broken = true;
                self.out.clear();
                return Err(match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                        Error::Timeout("write deadline")
                    }
                    _ => Error::Io(e),
                });
            }
        }
        Ok(())
    }

    /// Sends a whole data message, compressed into one frame if it reaches the threshold.
    fn send_message(&mut self, msg: Message<'_>) -> Result<(), Error> {
        self.command(true, |tx, link| tx.send(link, msg))
    }

    fn send_control(&mut self, ping: bool, payload: &[u8]) -> Result<(), Error> {
        self.command(false, |tx, link| match ping {
            true => tx.ping(link, payload),
            false => tx.pong(link, payload),
        })
    }

    /// Answers a ping, unless our close frame is out (then no frame may follow it).
    pub(super) fn send_pong_if_open(&mut self, ping: &[u8]) -> Result<(), Error> {
        if self.tx.close_sent() {
            return Ok(());
        }
        self.send_control(false, ping)
    }

    /// Sends a close frame unless one was sent; returns whether this call sent it.
    pub(super) fn send_close(
        &mut self,
        code: Option<CloseCode>,
        reason: &str,
    ) -> Result<bool, Error> {
        let mut sent = false;
        self.command(false, |tx, link| {
            sent = tx.close(link, code, reason)?;
            Ok(())
        })?;
        Ok(sent)
    }

    /// Answers the peer's close frame with its code (§5.5.1) unless we closed first.
    pub(super) fn answer_close(&mut self, peer: Option<CloseCode>) -> Result<(), Error> {
        self.command(false, |tx, link| tx.answer_close(link, peer).map(drop))
    }

    pub(super) fn close_sent(&self) -> bool {
        self.tx.close_sent()
    }
}

/// What a refused send means to a client's caller.
fn send_error(e: SendError) -> Error {
    match e {
        SendError::Closed => Error::CloseSent,
        SendError::MessageInProgress => Error::MessageInProgress,
        SendError::Encode(e) => Error::Invalid(e),
        e => Error::Io(io::Error::other(e.to_string())),
    }
}

/// The writing half of a client connection: cloneable and usable from any thread while one
/// thread reads from the [`Conn`](super::Conn).
///
/// Writes of whole messages are serialized; a streamed message ([`Writer::next_writer`]) holds
/// the data channel until it is finished, while control frames (pings, pongs, close) may go out
/// between its fragments, as RFC 6455 §5.4 allows.
#[derive(Clone)]
pub struct Writer {
    pub(super) shared: Arc<Shared>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("peer_addr", &self.shared.socket.peer_addr().ok())
            .finish_non_exhaustive()
    }
}

impl Writer {
    pub(super) fn new(
        socket: TcpStream,
        stream: TcpStream,
        deflate: Option<PerMessageDeflate>,
    ) -> Writer {
        Writer {
            shared: Arc::new(Shared {
                socket,
                out: Mutex::new(Out::new(stream, deflate)),
                out_free: Condvar::new(),
                peer: Mutex::new(PeerState::default()),
                peer_changed: Condvar::new(),
                pending_pong: Mutex::new(None),
            }),
        }
    }

    /// Sends a text message.
    pub fn write_text(&self, text: &str) -> Result<(), Error> {
        self.send_data(Message::Text(text))
    }

    /// Sends a binary message.
    pub fn write_binary(&self, data: &[u8]) -> Result<(), Error> {
        self.send_data(Message::Binary(data))
    }

    /// Sends a message of `kind` as one frame. Text must be valid UTF-8 (checked).
    pub fn write(&self, kind: DataKind, data: &[u8]) -> Result<(), Error> {
        let msg = match kind {
            DataKind::Binary => Message::Binary(data),
            DataKind::Text => Message::Text(std::str::from_utf8(data).map_err(|_| {
                Error::Io(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "text messages must be UTF-8",
                ))
            })?),
        };
        self.send_data(msg)
    }

    fn send_data(&self, msg: Message<'_>) -> Result<(), Error> {
        let mut out = self.data_channel()?;
        let sent = out.send_message(msg);
        self.shared.flush_pong(&mut out);
        sent
    }

    /// Opens a streamed message of `kind` sent in fragments of `DEFAULT_FRAGMENT` (16 KiB);
    /// see [`Writer::next_writer_with`].
    pub fn next_writer(&self, kind: DataKind) -> Result<MessageWriter, Error> {
        self.next_writer_with(kind, DEFAULT_FRAGMENT)
    }

    /// Opens a streamed message (Go's `NextWriter`): everything written to the returned
    /// [`MessageWriter`] goes out as one message, a fragment each time `fragment` bytes are
    /// buffered, the last when it is finished or dropped. Until then other data messages from
    /// other threads wait; this thread gets [`Error::MessageInProgress`].
    ///
    /// With compression negotiated the message is compressed as it is written, and a fragment
    /// goes out each time `fragment` bytes of compressed output have gathered.
    ///
    /// Text written in pieces is sent as it comes; the peer checks it is UTF-8 as a whole.
    pub fn next_writer_with(
        &self,
        kind: DataKind,
        fragment: usize,
    ) -> Result<MessageWriter, Error> {
        let mut out = self.data_channel()?;
        if out.close_sent() {
            return Err(Error::CloseSent);
        }
        out.streaming = Some(std::thread::current().id());
        drop(out);
        Ok(MessageWriter {
            shared: self.shared.clone(),
            kind,
            buf: Vec::with_capacity(fragment.clamp(1, 1 << 20)),
            fragment: fragment.max(1),
            done: false,
        })
    }

    /// Waits until no other thread's streamed message is open, then holds the sending side.
    fn data_channel(&self) -> Result<MutexGuard<'_, Out>, Error> {
        let me = std::thread::current().id();
        let mut out = lock(&self.shared.out);
        loop {
            match out.streaming {
                None => return Ok(out),
                Some(t) if t == me => return Err(Error::MessageInProgress),
                Some(_) => out = wait(&self.shared.out_free, out),
            }
        }
    }

    /// Sends a ping and waits for its pong, returning the round-trip time. Another thread must
    /// be reading from the [`Conn`](super::Conn) (or [`Conn::close_read`](super::Conn) be
    /// running): the reader is what sees the pong.
    pub fn ping(&self, timeout: Duration) -> Result<Duration, Error> {
        let start = Instant::now();
        let seq = {
            let mut out = lock(&self.shared.out);
            out.pings_sent += 1;
            let seq = out.pings_sent;
            out.send_control(true, &seq.to_be_bytes())?;
            self.shared.flush_pong(&mut out);
            seq
        };
        let answered = self.wait_peer(start + timeout, |peer| {
            if peer.pong_seen >= seq {
                Some(Ok(()))
            } else {
                peer.closed.clone().map(|c| Err(Error::Closed(c)))
            }
        });
        match answered {
            Some(Ok(())) => Ok(start.elapsed()),
            Some(Err(e)) => Err(e),
            None => Err(Error::Timeout("ping")),
        }
    }

    /// Sends a ping with `payload` (≤125 bytes) and does not wait.
    pub fn send_ping(&self, payload: &[u8]) -> Result<(), Error> {
        lock(&self.shared.out).send_control(true, payload)
    }

    /// Sends an unsolicited pong with `payload` (≤125 bytes), e.g. as a heartbeat.
    pub fn send_pong(&self, payload: &[u8]) -> Result<(), Error> {
        lock(&self.shared.out).send_control(false, payload)
    }

    /// Starts the close handshake with `code` and `reason` (≤123 bytes) and waits up to 5 s for
    /// the peer's close frame, which the thread reading the [`Conn`](super::Conn) receives;
    /// then the socket is shut down. Use [`Conn::close`](super::Conn::close) when no other
    /// thread reads.
    pub fn close(&self, code: CloseCode, reason: &str) -> Result<(), Error> {
        lock(&self.shared.out).send_close(Some(code), reason)?;
        let deadline = Instant::now() + CLOSE_TIMEOUT;
        match self.wait_peer(deadline, |peer| {
            peer.closed.as_ref().map(|_| peer.close_received)
        }) {
            // The reading thread saw the end; it waits for the server to drop the connection
            // first (§7.1.1) and shuts the socket down.
            Some(true) => Ok(()),
            Some(false) => Err(Error::Closed(CloseError::abnormal(
                "dropped during the close handshake",
            ))),
            None => {
                self.close_now();
                Err(Error::Timeout("close handshake"))
            }
        }
    }

    /// Shuts the connection down at once, without a close handshake (Go's `CloseNow`). A thread
    /// blocked reading returns.
    pub fn close_now(&self) {
        let _ = self.shared.socket.shutdown(Shutdown::Both);
    }

    /// Sets the deadline for writes (`None`: no deadline). A write that passes it fails with
    /// [`Error::Timeout`]`("write deadline")` ([`io::ErrorKind::TimedOut`] through `Write`),
    /// and the connection can then no longer be written to.
    pub fn set_write_deadline(&self, deadline: Option<Instant>) {
        lock(&self.shared.out).deadline = deadline;
    }

    /// Waits up to `timeout` for the connection to end; returns how it ended.
    pub fn wait_closed(&self, timeout: Duration) -> Option<CloseError> {
        self.wait_peer(Instant::now() + timeout, |peer| peer.closed.clone())
    }

    /// Waits until `check` returns something for what the reader learned, or `deadline`.
    fn wait_peer<T>(
        &self,
        deadline: Instant,
        mut check: impl FnMut(&PeerState) -> Option<T>,
    ) -> Option<T> {
        let mut peer = lock(&self.shared.peer);
        loop {
            if let Some(t) = check(&peer) {
                return Some(t);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            peer = self
                .shared
                .peer_changed
                .wait_timeout(peer, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// A message being written in fragments (Go's `NextWriter`); see [`Writer::next_writer_with`].
///
/// Call [`MessageWriter::finish`] to send the final fragment and see its result; dropping the
/// writer finishes it too, ignoring errors.
pub struct MessageWriter {
    shared: Arc<Shared>,
    kind: DataKind,
    buf: Vec<u8>,
    fragment: usize,
    done: bool,
}

impl std::fmt::Debug for MessageWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageWriter")
            .field("kind", &self.kind)
            .field("buffered", &self.buf.len())
            .field("fragment", &self.fragment)
            .finish_non_exhaustive()
    }
}

impl MessageWriter {
    /// Sends what is buffered as the final fragment and releases the data channel.
    pub fn finish(mut self) -> Result<(), Error> {
        self.finish_inner()
    }

    fn finish_inner(&mut self) -> Result<(), Error> {
        if self.done {
            return Ok(());
        }
        self.done = true;
        let result = self.send_fragment(true, false);
        lock(&self.shared.out).streaming = None;
        self.shared.out_free.notify_all();
        result
    }

    /// Sends what is buffered as a fragment (the last if `fin`); the session's sender gives
    /// the first its opcode (and RSV1 when compressed) and the rest continuations. With
    /// compression the bytes go through the compressor, and a frame leaves once `fragment`
    /// bytes of output have gathered, at the end, or on `flush` (a sync flush of everything
    /// written so far).
    fn send_fragment(&mut self, fin: bool, flush: bool) -> Result<(), Error> {
        let kind = self.kind;
        let mut out = lock(&self.shared.out);
        if out.close_sent() {
            return Err(Error::CloseSent);
        }
        let sent = match out.deflate.take() {
            None if flush && self.buf.is_empty() => return Ok(()), // nothing to send
            None => {
                let buf = &self.buf;
                let f = Fragment {
                    kind,
                    fin,
                    compressed: false,
                };
                out.command(false, |tx, link| tx.fragment(link, f, buf))
            }
            Some(mut d) => {
                d.pmd.compress_part(&self.buf, fin, &mut d.out, &mut d.pool);
                if flush {
                    d.pmd.flush_part(&mut d.out);
                }
                let due = fin || d.out.len() >= self.fragment || (flush && !d.out.is_empty());
                let sent = if due {
                    let f = Fragment {
                        kind,
                        fin,
                        compressed: true,
                    };
                    let r = out.command(false, |tx, link| tx.fragment(link, f, &d.out));
                    d.clear();
                    r
                } else {
                    Ok(())
                };
                out.deflate = Some(d);
                sent
            }
        };
        self.shared.flush_pong(&mut out);
        sent?;
        self.buf.clear();
        Ok(())
    }
}

impl Write for MessageWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.done {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "message finished",
            ));
        }
        let n = data.len().min(self.fragment - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == self.fragment {
            self.send_fragment(false, false)?;
        }
        Ok(n)
    }

    /// Sends what is buffered as a (non-final) fragment; with compression, everything the
    /// compressor holds too (a sync flush).
    fn flush(&mut self) -> io::Result<()> {
        if !self.done {
            self.send_fragment(false, true)?;
        }
        Ok(())
    }
}

impl Drop for MessageWriter {
    fn drop(&mut self) {
        let _ = self.finish_inner();
    }
}

/// Locks, ignoring poisoning: a panic elsewhere leaves the state consistent (every update is a
/// single assignment), and the connection must still be closable.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn wait<'a, T>(c: &Condvar, g: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    c.wait(g).unwrap_or_else(|e| e.into_inner())
}

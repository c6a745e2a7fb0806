//! One worker: an event loop on its own ring, with its own listener, connections and timers.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use sockeye_codec::deflate::{self, Agreement};
use sockeye_codec::handshake::{self, EMPTY_HEADER, HandshakeError, Request, Response};
use sockeye_codec::session::{Incoming, Inflate, Receiver};
use sockeye_codec::{Close, CloseCode, Header, OpCode, Role, Status, apply_mask};

use crate::compress::{ConnDeflate, Deflater};
use crate::config::{Config, SlowPolicy};
use crate::handler::{
    Handler, SendStatus, WebSocket, put_encoded_header, put_frame, put_frame_with, put_header,
};
use crate::hub::{Hub, Inbox, JoinError, Refusal, RoomKey, WorkerStats};
use crate::masks::MaskKeys;
use crate::ring::{BufRing, Completion, Op, RecvBuf, Ring, SendQueue};
use crate::timer::{TimerKind, Wheel};

/// Length of one timer tick.
pub(crate) const TICK: Duration = Duration::from_millis(100);

/// Epochs are 24 bits: with the ring's 8-bit operation tag and the 32-bit slot they fill a
/// completion's 64-bit user data. A slot would have to be reused 16.7 million times while a stale timer entry
/// or task for it is pending before an old id could match a new connection.
const EPOCH_MASK: u32 = 0x00ff_ffff;

/// Identifies a connection across the server: worker, slot and generation (a slot is reused by
/// later connections with a higher generation, so a stale id never reaches the wrong one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId {
    worker: u16,
    epoch: u32,
    slot: u32,
}

impl ConnId {
    /// The worker that owns the connection.
    pub fn worker(&self) -> usize {
        usize::from(self.worker)
    }

    /// The connection's part of a request's user data (the ring adds the operation).
    fn data(self) -> u64 {
        u64::from(self.epoch & EPOCH_MASK) << 32 | u64::from(self.slot)
    }
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// (Outbound) the TCP connect is in flight.
    Connecting,
    /// Reading the upgrade request (or, outbound, the response to ours).
    Handshake,
    /// Exchanging messages.
    Open,
    /// Our close frame is queued or sent; waiting for the peer's (or the timeout).
    Closing,
    /// The upgrade was refused with an HTTP error; the socket closes once it is sent.
    Refused,
    /// The socket is shut down; waiting for requests in flight before freeing the slot.
    Dead,
}

/// Bytes a connection holds only while it needs them.
#[derive(Default)]
struct Input {
    /// Received bytes not consumed yet (part of the request, or of a frame header or control
    /// frame).
    pending: Vec<u8>,
}

/// Output a connection holds only while it has something to send.
#[derive(Default)]
struct Output {
    /// Small frames being written this loop turn (one allocation for many frames).
    staged: BytesMut,
    queue: SendQueue,
    /// Listed in `Io::drained`, to be released at the next tick if still empty.
    release_listed: bool,
    /// A loop turn staged at least `KEEP_STAGED` bytes: worth keeping between turns.
    busy: bool,
}

/// Staged bytes per turn from which a connection keeps its output buffers until a tick finds it
/// idle, instead of freeing them as soon as they drain. Below it, allocating per turn is cheap
/// (small blocks are reused at once), and freeing at once keeps a mostly idle connection small;
/// above it, allocating and freeing a large block every turn cost page faults and heap
/// trimming (measured: 3.3 against 2.0 µs of server CPU per 4 KiB echo).
const KEEP_STAGED: usize = 4096;

impl Output {
    fn queued(&self) -> usize {
        self.queue.queued() + self.staged.len()
    }

    /// Moves the staged small frames into the send queue as one buffer.
    fn seal(&mut self) {
        if !self.staged.is_empty() {
            self.busy |= self.staged.len() >= KEEP_STAGED;
            let staged = self.staged.split().freeze();
            self.queue.push(staged);
        }
    }

    /// Queues a shared frame after whatever is staged, keeping the order.
    fn push(&mut self, frame: Bytes) {
        self.seal();
        self.queue.push(frame);
    }
}

/// What an outbound (client-role) connection needs beyond an accepted one.
pub(crate) struct ClientSide {
    pub(crate) token: u64,
    /// The subprotocol the server chose.
    protocol: Option<String>,
    /// Until the handshake completes: our key and the subprotocols offered.
    key: [u8; 24],
    offered: Vec<String>,
    /// The handshake completed (`on_open` was called).
    opened: bool,
    /// Why the connection failed before it opened.
    error: Option<String>,
}

/// Per-connection state. Kept small: an idle open connection holds only this struct (no
/// buffers); `input` and `output` exist only while in use.
pub(crate) struct Conn {
    fd: OwnedFd,
    epoch: u32,
    state: State,
    recv_armed: bool,
    /// Reading paused by backpressure (recv cancelled until the queue drains).
    paused: bool,
    /// Queued for a flush this loop turn.
    dirty: bool,
    ping_outstanding: bool,
    /// Shut the socket down as soon as the send queue is empty.
    close_after_send: bool,
    /// The handler saw `on_open` and has not seen `on_close` yet.
    live: bool,
    /// (Outbound) the connect request is in flight.
    connect_armed: bool,
    /// An outbound (client-role) connection: it masks what it sends, and its `ClientSide` is
    /// in `Io::outbound` (kept out of `Conn`, which every idle server connection pays for).
    pub(crate) outbound: bool,
    /// Index + 1 into the configured subprotocols (0: none).
    proto: u8,
    /// Position in its room's local member list + 1 (0: in no room).
    sub: u32,
    /// The room's id (when `sub != 0`).
    room: u32,
    /// Tick of the last received bytes.
    last_rx: u32,
    /// The protocol's receiving half: decoder, assembly, streaming choice, inflated UTF-8.
    rx: Receiver,
    input: Option<Box<Input>>,
    output: Option<Box<Output>>,
    /// permessage-deflate state, if negotiated.
    deflate: Option<Box<ConnDeflate>>,
}

impl Conn {
    /// A connection of `role` whose socket is `fd`: accepted ones start reading the upgrade
    /// request, outbound ones (the client role) start with the TCP connect.
    fn new(fd: OwnedFd, epoch: u32, role: Role, max_message: u64, now: u32) -> Conn {
        let outbound = role == Role::Client;
        let config = sockeye_codec::Config::new()
            .max_message(max_message)
            .max_frame(max_message);
        Conn {
            fd,
            epoch,
            state: if outbound {
                State::Connecting
            } else {
                State::Handshake
            },
            recv_armed: false,
            paused: false,
            dirty: false,
            ping_outstanding: false,
            close_after_send: false,
            live: false,
            connect_armed: false,
            outbound,
            proto: 0,
            sub: 0,
            room: 0,
            last_rx: now,
            rx: Receiver::new(role, config),
            input: None,
            output: None,
            deflate: None,
        }
    }

    pub(crate) fn peer_addr(&self) -> io::Result<SocketAddr> {
        socket2::SockRef::from(&self.fd)
            .peer_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("not an IP socket"))
    }

    pub(crate) fn set_read_limit(&mut self, bytes: u64) {
        let config = self.rx.config().max_message(bytes).max_frame(bytes);
        self.rx.set_config(config);
    }

    pub(crate) fn subscribed(&self) -> bool {
        self.sub != 0
    }

    pub(crate) fn compressed(&self) -> bool {
        self.deflate.is_some()
    }

    /// Whether a data message of `len` bytes goes out compressed.
    fn compresses(&self, op: OpCode, len: usize) -> bool {
        !op.is_control() && self.deflate.as_ref().is_some_and(|d| d.wants(len))
    }

    pub(crate) fn buffered_amount(&self) -> usize {
        self.output.as_ref().map_or(0, |o| o.queued())
    }

    fn mask(&self, io: &mut Io) -> Option<[u8; 4]> {
        self.outbound.then(|| io.masks.next_key())
    }

    fn reading(&self) -> bool {
        matches!(self.state, State::Handshake | State::Open | State::Closing)
    }

    /// Heap bytes held for reading (the `read_buffer_bytes` gauge).
    fn input_bytes(&self) -> u64 {
        self.input.as_ref().map_or(0, |i| {
            (std::mem::size_of::<Input>() + i.pending.capacity()) as u64
        }) + self.rx.buffered() as u64
    }

    fn input(&mut self) -> &mut Input {
        self.input.get_or_insert_with(Default::default)
    }

    fn output(&mut self) -> &mut Output {
        self.output.get_or_insert_with(Default::default)
    }
}

/// The part of a worker that handler callbacks may use: everything but the connection table,
/// the receive buffers and the handler itself.
pub(crate) struct Io {
    worker: u16,
    ring: Ring,
    config: Arc<Config>,
    hub: Arc<Hub>,
    timers: Wheel,
    /// Connections with output to flush at the end of this loop turn.
    dirty: Vec<ConnId>,
    /// Frames published during this turn, fanned out at its end.
    to_publish: Vec<(RoomKey, Bytes, Arc<str>)>,
    /// This worker's members of each room, by room id.
    rooms: Vec<LocalRoom>,
    idle_ticks: u32,
    close_ticks: u32,
    /// Masking keys for outbound connections.
    masks: MaskKeys,
    /// Outbound connections' client state, by slot.
    outbound: Vec<Option<Box<ClientSide>>>,
    /// Connections whose output drained; their buffers are released at the next tick unless
    /// they were used again (a busy connection keeps and reuses its staging buffer).
    drained: Vec<ConnId>,
    /// permessage-deflate engines and policy.
    deflate: Deflater,
    /// During `on_open` of an accepted connection: the bytes received so far, starting with
    /// its upgrade request (lent by the connection, given back after the call).
    request: Vec<u8>,
}

fn ticks(d: Duration) -> u32 {
    (d.as_millis() / TICK.as_millis()).clamp(1, u128::from(u32::MAX / 4)) as u32
}

impl Io {
    fn stats(&self) -> &WorkerStats {
        &self.hub.stats[usize::from(self.worker)]
    }

    fn mark_dirty(&mut self, id: ConnId, conn: &mut Conn) {
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(id);
        }
    }

    /// Applies backpressure after queuing: pauses reading when over the bound.
    fn after_queue(&mut self, id: ConnId, conn: &mut Conn) -> SendStatus {
        self.mark_dirty(id, conn);
        WorkerStats::add(&self.stats().messages_out, 1);
        if conn.buffered_amount() > self.config.max_backpressure {
            if !conn.paused {
                conn.paused = true;
                WorkerStats::add(&self.stats().backpressure, 1);
                if conn.recv_armed {
                    let _ = self.ring.cancel(Op::Recv, id.data());
                }
            }
            SendStatus::Backpressure
        } else {
            SendStatus::Queued
        }
    }

    /// Refuses a data message of `len` bytes that would take the queue past the hard bound
    /// (unless the queue is empty), by the slow policy.
    fn refuse_over_bound(&mut self, id: ConnId, conn: &mut Conn, len: usize) -> Option<SendStatus> {
        let queued = conn.buffered_amount();
        if queued == 0 || queued.saturating_add(len) <= self.config.send_queue_bound() {
            return None;
        }
        Some(match self.config.slow_policy {
            SlowPolicy::Drop => {
                WorkerStats::add(&self.stats().slow_skipped, 1);
                SendStatus::Dropped
            }
            SlowPolicy::Close => {
                WorkerStats::add(&self.stats().slow_closed, 1);
                let close = Close {
                    code: Some(CloseCode::POLICY_VIOLATION),
                    reason: "send queue full",
                };
                self.start_close(id, conn, close);
                SendStatus::Closed
            }
        })
    }

    pub(crate) fn send_copy(
        &mut self,
        id: ConnId,
        conn: &mut Conn,
        op: OpCode,
        payload: &[u8],
    ) -> SendStatus {
        if conn.state != State::Open {
            return SendStatus::Closed;
        }
        if !op.is_control()
            && let Some(refused) = self.refuse_over_bound(id, conn, payload.len())
        {
            return refused;
        }
        if conn.compresses(op, payload.len()) {
            return self.send_compressed(id, conn, op, payload);
        }
        match conn.mask(self) {
            None => put_frame(&mut conn.output().staged, op, payload),
            Some(key) => put_masked_frame(&mut conn.output().staged, op, payload, key),
        }
        self.after_queue(id, conn)
    }

    /// Compresses `payload` into one frame with RSV1 (RFC 7692 §6).
    fn send_compressed(
        &mut self,
        id: ConnId,
        conn: &mut Conn,
        op: OpCode,
        payload: &[u8],
    ) -> SendStatus {
        let mask = conn.mask(self);
        let mut buf = self.deflate.take_out_scratch();
        let c = conn.deflate.as_deref_mut().expect("checked by the caller");
        self.deflate.compress(id, c, payload, &mut buf);
        let header = Header {
            rsv1: true,
            mask,
            ..Header::new(op, buf.len() as u64)
        };
        put_frame_with(&mut conn.output().staged, &header, &buf);
        self.deflate.put_out_scratch(buf);
        self.after_queue(id, conn)
    }

    pub(crate) fn send_shared(&mut self, id: ConnId, conn: &mut Conn, frame: Bytes) -> SendStatus {
        if conn.state != State::Open {
            return SendStatus::Closed;
        }
        if let Some(refused) = self.refuse_over_bound(id, conn, frame.len()) {
            return refused;
        }
        if let Some(key) = conn.mask(self) {
            // A frame prepared for many is unmasked; a client sends its own masked copy.
            let Ok(Status::Complete((h, hlen))) = Header::parse(&frame) else {
                unreachable!("a prepared message holds one whole frame");
            };
            put_masked_frame(&mut conn.output().staged, h.opcode, &frame[hlen..], key);
            return self.after_queue(id, conn);
        }
        conn.output().push(frame);
        self.after_queue(id, conn)
    }

    /// Sends `payload` from its own buffer: only the header is written.
    pub(crate) fn send_owned(
        &mut self,
        id: ConnId,
        conn: &mut Conn,
        op: OpCode,
        mut payload: Vec<u8>,
    ) -> SendStatus {
        if conn.state != State::Open {
            return SendStatus::Closed;
        }
        if let Some(refused) = self.refuse_over_bound(id, conn, payload.len()) {
            return refused;
        }
        if conn.compresses(op, payload.len()) {
            return self.send_compressed(id, conn, op, &payload);
        }
        let mask = conn.mask(self);
        let out = conn.output();
        match mask {
            None => put_header(&mut out.staged, op, payload.len()),
            Some(key) => {
                // Our own buffer: masked in place.
                apply_mask(&mut payload, key, 0);
                put_encoded_header(&mut out.staged, &masked_header(op, payload.len(), key));
            }
        }
        out.push(Bytes::from(payload));
        self.after_queue(id, conn)
    }

    /// Queues our close frame and waits for the peer's (or the close timeout).
    pub(crate) fn start_close(&mut self, id: ConnId, conn: &mut Conn, close: Close<'_>) {
        if !matches!(conn.state, State::Open | State::Handshake) {
            return;
        }
        let mut frame = [0u8; 6 + 125];
        let mask = conn.mask(self);
        // Every caller passes a sendable code and a reason within the limit (the public
        // `WebSocket::close` checks); should one not, the close goes out without a code rather
        // than take the worker down.
        let n = match sockeye_codec::encode_close(&mut frame, &close, mask) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "unsendable close frame; closing without a code");
                let bare = Close {
                    code: None,
                    reason: "",
                };
                sockeye_codec::encode_close(&mut frame, &bare, mask).unwrap_or(0)
            }
        };
        let slot = crate::hub::close_slot(close.code.map(u16::from));
        WorkerStats::add(&self.stats().close_sent[slot], 1);
        conn.output().staged.extend_from_slice(&frame[..n]);
        conn.state = State::Closing;
        self.mark_dirty(id, conn);
        self.timers
            .schedule(id.slot, id.epoch, TimerKind::Close, self.close_ticks);
    }

    /// Shuts the socket down; the slot is freed once no request is in flight.
    pub(crate) fn teardown(&mut self, conn: &mut Conn) {
        if conn.state == State::Dead {
            return;
        }
        conn.state = State::Dead;
        // Wakes the multishot recv (it completes with 0 and ends) and fails pending sends.
        let _ = socket2::SockRef::from(&conn.fd).shutdown(std::net::Shutdown::Both);
    }

    pub(crate) fn subprotocol(&self, id: ConnId, conn: &Conn) -> Option<&str> {
        if conn.outbound {
            return self.client(id)?.protocol.as_deref();
        }
        let i = usize::from(conn.proto).checked_sub(1)?;
        self.config.subprotocols.get(i).map(String::as_str)
    }

    /// The client state of outbound connection `id`.
    pub(crate) fn client(&self, id: ConnId) -> Option<&ClientSide> {
        self.outbound.get(id.slot as usize)?.as_deref()
    }

    fn client_mut(&mut self, id: ConnId) -> Option<&mut ClientSide> {
        self.outbound.get_mut(id.slot as usize)?.as_deref_mut()
    }

    /// The upgrade request, while `on_open` runs for an accepted connection.
    pub(crate) fn request(&self) -> Option<&[u8]> {
        (!self.request.is_empty()).then_some(&self.request[..])
    }

    /// Publishes to the connection's room; false (and nothing sent) if it is in none.
    pub(crate) fn publish(&mut self, conn: &Conn, frame: Bytes) -> bool {
        if conn.sub == 0 {
            return false;
        }
        let room = &self.rooms[conn.room as usize];
        let key = RoomKey {
            id: conn.room,
            generation: room.generation,
        };
        let name = room.name.clone();
        self.to_publish.push((key, frame, name));
        true
    }

    /// Publishes to the room named `name`; false if it has no members in this process (when
    /// clustered, the other nodes get it all the same).
    pub(crate) fn publish_to(&mut self, name: &str, frame: Bytes) -> bool {
        let Some(key) = self.hub.rooms.find(name) else {
            #[cfg(feature = "cluster")]
            if let Some(link) = &self.hub.cluster {
                link.forward_from_worker(&Arc::from(name), &frame, self.stats());
            }
            return false;
        };
        self.to_publish.push((key, frame, Arc::from(name)));
        true
    }

    /// Moves the connection into room `name` (out of the one it was in).
    pub(crate) fn join(
        &mut self,
        id: ConnId,
        conn: &mut Conn,
        name: &str,
    ) -> Result<(), JoinError> {
        let (key, name) = self.hub.rooms.acquire(name)?;
        self.leave(conn);
        let i = key.id as usize;
        if self.rooms.len() <= i {
            self.rooms.resize_with(i + 1, LocalRoom::default);
        }
        let room = &mut self.rooms[i];
        if room.generation != key.generation {
            // The slot's previous room emptied on every worker, so none of it is left here.
            debug_assert_eq!(room.live(), 0);
            *room = LocalRoom {
                generation: key.generation,
                ..LocalRoom::default()
            };
        }
        room.name = name;
        let pos = match room.free.pop() {
            Some(p) => {
                room.members[p as usize] = id;
                p
            }
            None => {
                room.members.push(id);
                room.members.len() as u32 - 1
            }
        };
        conn.room = key.id;
        conn.sub = pos + 1;
        Ok(())
    }

    /// Takes the connection out of its room, if it is in one.
    pub(crate) fn leave(&mut self, conn: &mut Conn) {
        if conn.sub == 0 {
            return;
        }
        let room = &mut self.rooms[conn.room as usize];
        let pos = conn.sub - 1;
        room.members[pos as usize] = VACANT;
        room.free.push(pos);
        if room.live() == 0 {
            // Nothing kept for an empty room but its generation and name.
            room.members = Vec::new();
            room.free = Vec::new();
        }
        let key = RoomKey {
            id: conn.room,
            generation: room.generation,
        };
        conn.sub = 0;
        self.hub.rooms.release(key);
    }
}

/// A worker's members of one room. Leaving leaves a vacant place that the next member to join
/// takes, so no other member moves (and none needs to be found to be told); an empty room
/// holds no memory.
#[derive(Default)]
struct LocalRoom {
    generation: u32,
    /// The room's name (for the cluster bridge's subject).
    name: Arc<str>,
    members: Vec<ConnId>,
    /// Vacant places in `members`.
    free: Vec<u32>,
}

impl LocalRoom {
    /// Members on this worker.
    fn live(&self) -> usize {
        self.members.len() - self.free.len()
    }
}

/// A vacant place in a room's member list (matches no connection).
const VACANT: ConnId = ConnId {
    worker: u16::MAX,
    epoch: u32::MAX,
    slot: u32::MAX,
};

/// The connection table: a slab with generations.
struct Slab {
    conns: Vec<Option<Conn>>,
    free: Vec<u32>,
    epochs: Vec<u32>,
    open: usize,
}

impl Slab {
    fn get(&mut self, slot: u32, epoch: u32) -> Option<&mut Conn> {
        self.conns
            .get_mut(slot as usize)?
            .as_mut()
            .filter(|c| c.epoch == epoch)
    }

    fn insert(&mut self, make: impl FnOnce(u32) -> Conn) -> (u32, u32) {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.epochs.push(0);
            (self.conns.len() - 1) as u32
        });
        let epoch = self.epochs[slot as usize].wrapping_add(1) & EPOCH_MASK;
        self.epochs[slot as usize] = epoch;
        self.conns[slot as usize] = Some(make(epoch));
        self.open += 1;
        (slot, epoch)
    }

    fn remove(&mut self, slot: u32) -> Option<Conn> {
        let c = self.conns.get_mut(slot as usize)?.take()?;
        self.free.push(slot);
        self.open -= 1;
        Some(c)
    }
}

/// Runs a handler callback that gets the connection. A panic in it is caught here and costs
/// only this connection: it is logged with the connection, counted
/// (`sockeye_handler_panics_total`) and the connection closed with 1011; the worker and its
/// other connections go on.
fn call<H: Handler>(
    handler: &mut H,
    io: &mut Io,
    id: ConnId,
    conn: &mut Conn,
    f: impl FnOnce(&mut H, &mut WebSocket<'_>),
) {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        f(handler, &mut WebSocket { id, conn, io });
    }));
    if let Err(panic) = r {
        handler_panicked(io, id, Some(conn), &*panic);
    }
}

/// Runs a handler callback that has no connection to lend (`on_close`, `on_connect_error`);
/// a panic is logged and counted.
fn call_detached(io: &Io, id: Option<ConnId>, f: impl FnOnce()) {
    if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        WorkerStats::add(&io.stats().handler_panics, 1);
        tracing::error!(conn = ?id, panic = panic_text(&*panic), "handler panicked");
    }
}

fn handler_panicked(
    io: &mut Io,
    id: ConnId,
    conn: Option<&mut Conn>,
    panic: &(dyn std::any::Any + Send),
) {
    WorkerStats::add(&io.stats().handler_panics, 1);
    let Some(conn) = conn else { return };
    let peer = conn.peer_addr().ok();
    tracing::error!(conn = ?id, peer = ?peer, panic = panic_text(panic), "handler panicked; closing the connection with 1011");
    let close = Close {
        code: Some(CloseCode::INTERNAL_ERROR),
        reason: "internal error",
    };
    io.start_close(id, conn, close);
    conn.close_after_send = true;
}

/// A panic's message, when it is a string.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not a string)")
}

/// The connection slot and epoch a completion's user data carries.
fn slot_epoch(c: &Completion) -> (u32, u32) {
    (c.data() as u32, (c.data() >> 32) as u32 & EPOCH_MASK)
}

/// A worker thread's state.
pub(crate) struct Worker<H: Handler> {
    io: Io,
    handler: H,
    slab: Slab,
    listener: Option<OwnedFd>,
    wake: OwnedFd,
    inbox: mpsc::Receiver<Inbox>,
    /// Declared after `io` so the ring (inside `io`) is dropped first.
    bufs: BufRing,
    shutdown_deadline: Option<Instant>,
    accept_armed: bool,
    /// "Out of descriptors" was logged and nothing was accepted since.
    fd_warned: bool,
}

impl<H: Handler> Worker<H> {
    pub(crate) fn new(
        worker: usize,
        config: Arc<Config>,
        hub: Arc<Hub>,
        listener: Option<OwnedFd>,
        wake: OwnedFd,
        inbox: mpsc::Receiver<Inbox>,
        handler: H,
    ) -> io::Result<Worker<H>> {
        let mut ring = Ring::new(4096).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "io_uring is not available ({e}). sockeye needs Linux 6.0 or later with \
                     io_uring enabled; in a container, allow the io_uring syscalls (Docker's \
                     default seccomp profile blocks them: run with a profile that allows \
                     io_uring_setup, io_uring_enter and io_uring_register), and check that \
                     /proc/sys/kernel/io_uring_disabled is 0"
                ),
            )
        })?;
        let bufs = BufRing::new(0, config.recv_buffers, config.recv_buffer_size)?;
        ring.register(&bufs)?;
        tracing::debug!(worker, mode = ring.mode, "ring ready");
        let idle_ticks = ticks(config.idle_timeout);
        let close_ticks = ticks(config.close_timeout);
        let deflate = Deflater::new(config.deflate_config());
        Ok(Worker {
            io: Io {
                worker: worker as u16,
                ring,
                config,
                hub,
                timers: Wheel::new(),
                dirty: Vec::new(),
                to_publish: Vec::new(),
                rooms: Vec::new(),
                idle_ticks,
                close_ticks,
                masks: MaskKeys::new(),
                outbound: Vec::new(),
                drained: Vec::new(),
                deflate,
                request: Vec::new(),
            },
            handler,
            slab: Slab {
                conns: Vec::new(),
                free: Vec::new(),
                epochs: Vec::new(),
                open: 0,
            },
            listener,
            wake,
            inbox,
            bufs,
            shutdown_deadline: None,
            accept_armed: false,
            fd_warned: false,
        })
    }

    fn id(&self, slot: u32, epoch: u32) -> ConnId {
        ConnId {
            worker: self.io.worker,
            epoch,
            slot,
        }
    }

    /// Runs until shutdown completes, then drains the ring: also when the loop fails or
    /// panics, so that no request the kernel still holds points at freed memory.
    pub(crate) fn run(mut self) -> io::Result<()> {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run_loop()));
        self.drain();
        match r {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    fn run_loop(&mut self) -> io::Result<()> {
        if let Some(l) = &self.listener {
            self.io.ring.accept_multi(l.as_raw_fd(), 0)?;
            self.accept_armed = true;
        }
        self.io.ring.tick(TICK)?;
        self.io.ring.read_eventfd(self.wake.as_raw_fd())?;
        let mut cqes = Vec::with_capacity(1024);
        loop {
            self.flush();
            if self.finished() {
                return Ok(());
            }
            self.io.ring.submit_and_wait(1)?;
            cqes.clear();
            self.io.ring.completions(&mut cqes);
            for mut c in cqes.drain(..) {
                let (slot, epoch) = slot_epoch(&c);
                match c.op() {
                    Some(Op::Recv) => self.on_recv(slot, epoch, &mut c),
                    Some(Op::Send) => self.on_send(slot, epoch, c.result()),
                    Some(Op::Accept) => self.on_accept(&mut c),
                    Some(Op::Tick) => self.on_tick(&c),
                    Some(Op::Wake) => self.on_wake(),
                    Some(Op::Connect) => self.on_connect(slot, epoch, c.result()),
                    _ => {} // cancellations: the cancelled request reports itself
                }
            }
            self.fan_out();
        }
    }

    /// Whether a shutdown has finished: every connection is gone, or the deadline passed and
    /// the rest were shut down.
    fn finished(&mut self) -> bool {
        let Some(deadline) = self.shutdown_deadline else {
            return false;
        };
        if self.slab.open > 0 && Instant::now() >= deadline {
            if self.accept_armed {
                let _ = self.io.ring.cancel(Op::Accept, 0);
            }
            for slot in 0..self.slab.conns.len() as u32 {
                if let Some(conn) = self.slab.conns[slot as usize].as_mut() {
                    self.io.teardown(conn);
                    let id = ConnId {
                        worker: self.io.worker,
                        epoch: conn.epoch,
                        slot,
                    };
                    self.maybe_free(id);
                }
            }
        }
        // With its own connections gone, a worker still waits for the others' (until the
        // deadline): its listener stays open, so that requests the kernel hands it get 503
        // instead of a reset from a closed listener.
        self.slab.open == 0 && (Instant::now() >= deadline || self.io.hub.open_connections() == 0)
    }

    /// Cancels the worker's own requests and waits (briefly) for every request to complete,
    /// so that no kernel write can land in memory after it is freed. If the kernel does not
    /// answer in time the memory is leaked instead of freed.
    fn drain(mut self) {
        // Whatever is still open is shut down, so that its receive completes.
        for conn in self.slab.conns.iter_mut().flatten() {
            self.io.teardown(conn);
        }
        let _ = self.io.ring.cancel(Op::Tick, 0);
        let _ = self.io.ring.cancel(Op::Wake, 0);
        let _ = self.io.ring.cancel(Op::Accept, 0);
        let (mut tick, mut wake, mut accept) = (true, true, self.accept_armed);
        let give_up = Instant::now() + Duration::from_secs(1);
        let mut cqes = Vec::new();
        while (tick || wake || accept || self.slab.open > 0) && Instant::now() < give_up {
            let left = give_up.saturating_duration_since(Instant::now());
            if self.io.ring.submit_and_wait_timeout(1, left).is_err() {
                break;
            }
            cqes.clear();
            self.io.ring.completions(&mut cqes);
            for mut c in cqes.drain(..) {
                let (slot, epoch) = slot_epoch(&c);
                match c.op() {
                    Some(Op::Tick) => tick &= c.more(),
                    Some(Op::Wake) => wake = false,
                    Some(Op::Accept) => {
                        accept &= c.more();
                        drop(c.accepted_fd());
                    }
                    Some(Op::Recv) => self.on_recv(slot, epoch, &mut c),
                    Some(Op::Send) => self.on_send(slot, epoch, c.result()),
                    Some(Op::Connect) => self.on_connect(slot, epoch, c.result()),
                    _ => {}
                }
            }
            self.flush();
        }
        if tick || wake || accept || self.slab.open > 0 {
            tracing::warn!("requests still in flight at exit; leaking the worker's buffers");
            std::mem::forget(self);
        }
    }

    /// Submits one send per connection with output (the corked write of this loop turn).
    fn flush(&mut self) {
        let dirty = std::mem::take(&mut self.io.dirty);
        for id in &dirty {
            let Some(conn) = self.slab.get(id.slot, id.epoch) else {
                continue;
            };
            conn.dirty = false;
            if conn.state == State::Dead {
                continue; // shut down: nothing more goes out
            }
            let fd = conn.fd.as_raw_fd();
            let Some(out) = conn.output.as_mut() else {
                continue;
            };
            out.seal();
            if let Err(e) = self.io.ring.send(fd, &mut out.queue, id.data()) {
                tracing::warn!(error = %e, "submitting a send failed");
                self.io.teardown(conn);
            }
        }
        self.io.dirty = dirty;
        self.io.dirty.clear();
    }

    fn on_accept(&mut self, c: &mut Completion) {
        let res = c.result();
        let out_of_fds = res == -libc::EMFILE || res == -libc::ENFILE;
        if !c.more() {
            self.accept_armed = false;
            // Out of descriptors: retry on the next tick rather than spin on the error.
            if !out_of_fds {
                self.arm_accept();
            }
        }
        let Some(fd) = c.accepted_fd() else {
            if out_of_fds {
                if !self.fd_warned {
                    self.fd_warned = true;
                    tracing::warn!("out of file descriptors: not accepting until some close");
                }
            } else if res != -libc::ECANCELED {
                tracing::warn!(error = %io::Error::from_raw_os_error(-res), "accept failed");
            }
            return;
        };
        self.fd_warned = false;
        // While shutting down, new connections are still accepted: their requests get 503
        // (`/healthz` too), which tells load balancers to move on.
        let _ = socket2::SockRef::from(&fd).set_tcp_nodelay(true);
        let (now, max) = (self.io.timers.now(), self.io.config.max_message);
        let (slot, epoch) = self
            .slab
            .insert(|epoch| Conn::new(fd, epoch, Role::Server, max, now));
        let id = self.id(slot, epoch);
        let handshake_ticks = ticks(self.io.config.handshake_timeout);
        self.io
            .timers
            .schedule(slot, epoch, TimerKind::Handshake, handshake_ticks);
        self.arm_recv(id);
    }

    /// Arms the multishot accept unless it is armed or the worker is shutting down.
    fn arm_accept(&mut self) {
        if self.accept_armed || self.shutdown_deadline.is_some_and(|d| Instant::now() >= d) {
            return;
        }
        let Some(l) = &self.listener else { return };
        match self.io.ring.accept_multi(l.as_raw_fd(), 0) {
            Ok(()) => self.accept_armed = true,
            Err(e) => tracing::error!(error = %e, "arming accept failed"),
        }
    }

    fn arm_recv(&mut self, id: ConnId) {
        let Some(conn) = self.slab.get(id.slot, id.epoch) else {
            return;
        };
        if conn.recv_armed || conn.paused || !conn.reading() {
            return;
        }
        match self
            .io
            .ring
            .recv_multi(conn.fd.as_raw_fd(), &self.bufs, id.data())
        {
            Ok(()) => conn.recv_armed = true,
            Err(e) => {
                tracing::warn!(error = %e, "arming recv failed");
                self.io.teardown(conn);
            }
        }
    }

    fn on_recv(&mut self, slot: u32, epoch: u32, c: &mut Completion) {
        let buf = self.bufs.take(c);
        let res = c.result();
        let id = self.id(slot, epoch);
        let Some(conn) = self.slab.get(slot, epoch) else {
            if let Some(b) = buf {
                self.bufs.recycle(b);
            }
            return;
        };
        if !c.more() {
            conn.recv_armed = false;
        }
        match (res, buf) {
            (n, Some(b)) if n > 0 => {
                conn.last_rx = self.io.timers.now();
                WorkerStats::add(&self.io.stats().bytes_in, n as u64);
                self.on_bytes(id, &b);
                self.bufs.recycle(b);
            }
            (_, b) => {
                if let Some(b) = b {
                    self.bufs.recycle(b);
                }
                let conn = self.slab.get(slot, epoch).expect("checked above");
                match -res {
                    libc::ENOBUFS => {} // every buffer is busy: re-armed below
                    // Our own cancel (backpressure); it may land after the pause ended, in
                    // which case the recv is armed again below.
                    libc::ECANCELED => {}
                    _ => {
                        // EOF, reset, or shut down by us.
                        tracing::trace!(res, paused = conn.paused, "recv ended");
                        self.io.teardown(conn);
                    }
                }
            }
        }
        self.arm_recv(id);
        self.maybe_free(id);
    }

    /// Bytes received on a connection, in a ring buffer; the read-buffer gauge follows what the
    /// connection holds for reading afterwards.
    fn on_bytes(&mut self, id: ConnId, b: &RecvBuf) {
        let data = self.bufs.bytes(b);
        let conn = self.slab.conns[id.slot as usize]
            .as_mut()
            .expect("live connection");
        let before = conn.input_bytes();
        match conn.state {
            State::Handshake if conn.outbound => {
                let input = conn.input();
                input.pending.extend_from_slice(data);
                client_handshake(&mut self.io, &mut self.handler, id, conn);
            }
            State::Handshake => {
                let input = conn.input();
                let room = self.io.config.max_request + 1
                    - input.pending.len().min(self.io.config.max_request);
                let (head, rest) = data.split_at_mut(data.len().min(room));
                input.pending.extend_from_slice(head);
                handshake(&mut self.io, &mut self.handler, id, conn);
                // Frames the client sent right behind its request, beyond what the request
                // bound let into `pending`, follow what `open` already decoded.
                if !rest.is_empty() && matches!(conn.state, State::Open | State::Closing) {
                    feed(&mut self.io, &mut self.handler, id, conn, rest);
                }
            }
            State::Open | State::Closing => {
                feed(&mut self.io, &mut self.handler, id, conn, data);
            }
            State::Connecting | State::Refused | State::Dead => {}
        }
        let gauge = &self.io.stats().read_buffer_bytes;
        WorkerStats::add(gauge, conn.input_bytes().wrapping_sub(before));
    }

    fn on_send(&mut self, slot: u32, epoch: u32, res: i32) {
        let id = self.id(slot, epoch);
        let Some(conn) = self.slab.get(slot, epoch) else {
            return;
        };
        let Some(out) = conn.output.as_mut() else {
            return;
        };
        if res < 0 {
            tracing::trace!(res, "send failed");
            out.queue.fail();
            self.io.teardown(conn);
            self.maybe_free(id);
            return;
        }
        out.queue.complete(res as usize);
        WorkerStats::add(&self.io.stats().bytes_out, res as u64);
        if out.queued() > 0 {
            self.io.mark_dirty(id, conn); // the rest goes out in this turn's flush
        } else {
            if !out.queue.in_flight() {
                if !out.busy {
                    conn.output = None; // idle connections hold no output memory
                } else if !out.release_listed {
                    // Released at the next tick if still idle: a busy connection reuses its
                    // buffers instead of allocating them every turn.
                    out.release_listed = true;
                    self.io.drained.push(id);
                }
            }
            if conn.close_after_send {
                self.io.teardown(conn);
            }
        }
        let bound = self.io.config.max_backpressure;
        if conn.paused && conn.buffered_amount() <= bound / 2 && conn.state == State::Open {
            conn.paused = false;
            call(&mut self.handler, &mut self.io, id, conn, |h, ws| {
                h.on_drain(ws)
            });
            self.arm_recv(id);
        }
        self.maybe_free(id);
    }

    /// Frees the slot of a dead connection once no request is in flight.
    fn maybe_free(&mut self, id: ConnId) {
        let Some(conn) = self.slab.get(id.slot, id.epoch) else {
            return;
        };
        let sending = conn.output.as_ref().is_some_and(|o| o.queue.in_flight());
        if conn.state != State::Dead || conn.recv_armed || sending || conn.connect_armed {
            return;
        }
        let mut conn = self.slab.remove(id.slot).expect("present");
        WorkerStats::sub(&self.io.stats().read_buffer_bytes, conn.input_bytes());
        self.notify_close(id.slot, &mut conn, Some(CloseCode::ABNORMAL), "");
        if let Some(mut c) = conn.deflate.take() {
            self.io.deflate.release(&mut c);
        }
        let client = match conn.outbound {
            true => self
                .io
                .outbound
                .get_mut(id.slot as usize)
                .and_then(Option::take),
            false => None,
        };
        if let Some(c) = client
            && !c.opened
        {
            let why = c
                .error
                .unwrap_or_else(|| "the connection closed during the handshake".into());
            let handler = &mut self.handler;
            call_detached(&self.io, None, || {
                handler.on_connect_error(c.token, io::Error::other(why));
            });
        }
        drop(conn); // closes the socket
    }

    /// Calls `on_close` once for a connection that saw `on_open`, and unsubscribes it.
    fn notify_close(&mut self, slot: u32, conn: &mut Conn, code: Option<CloseCode>, reason: &str) {
        self.io.leave(conn);
        if conn.live {
            conn.live = false;
            WorkerStats::sub(&self.io.stats().connections, 1);
            let id = ConnId {
                worker: self.io.worker,
                epoch: conn.epoch,
                slot,
            };
            let handler = &mut self.handler;
            call_detached(&self.io, Some(id), || handler.on_close(id, code, reason));
        }
    }

    fn on_tick(&mut self, c: &Completion) {
        if !c.more()
            && let Err(e) = self.io.ring.tick(TICK)
        {
            tracing::error!(error = %e, "re-arming the timer failed");
        }
        self.arm_accept(); // after running out of descriptors
        for id in std::mem::take(&mut self.io.drained) {
            if let Some(conn) = self.slab.get(id.slot, id.epoch)
                && let Some(out) = conn.output.as_mut()
            {
                if out.queued() == 0 && !out.queue.in_flight() {
                    conn.output = None;
                } else {
                    out.release_listed = false; // listed again when it drains
                    out.busy = false; // and kept only if still busy by then
                }
            }
        }
        // Compression engines of connections unused for a while go back to the pool.
        for id in self.io.deflate.take_active() {
            if let Some(conn) = self.slab.get(id.slot, id.epoch)
                && let Some(c) = conn.deflate.as_deref_mut()
            {
                self.io.deflate.check_idle(id, c);
            }
        }
        self.io.deflate.after_tick();
        let mut fired = Vec::new();
        self.io.timers.advance(&mut fired);
        let now = self.io.timers.now();
        for e in fired {
            let id = self.id(e.slot, e.epoch);
            let Some(conn) = self.slab.get(e.slot, e.epoch) else {
                continue;
            };
            match (e.kind, conn.state) {
                (TimerKind::Handshake, State::Handshake | State::Connecting) => {
                    tracing::debug!("handshake timeout");
                    if !conn.outbound {
                        self.io.stats().refuse(Refusal::Timeout);
                    }
                    if conn.outbound
                        && let Some(c) = self.io.client_mut(id)
                    {
                        c.error = Some("the handshake timed out".into());
                    }
                    if conn.connect_armed {
                        let _ = self.io.ring.cancel(Op::Connect, id.data());
                    }
                    self.io.teardown(conn);
                }
                (TimerKind::Close, State::Closing | State::Refused) => self.io.teardown(conn),
                (TimerKind::Idle, State::Open) => {
                    let silent = now.wrapping_sub(conn.last_rx);
                    let idle = self.io.idle_ticks;
                    if silent < idle {
                        self.io
                            .timers
                            .schedule(e.slot, e.epoch, TimerKind::Idle, idle - silent);
                    } else if conn.ping_outstanding {
                        let close = Close {
                            code: Some(CloseCode::GOING_AWAY),
                            reason: "idle timeout",
                        };
                        self.io.start_close(id, conn, close);
                    } else {
                        conn.ping_outstanding = true;
                        // A control frame: never refused by the bounds.
                        let _ = self.io.send_copy(id, conn, OpCode::Ping, b"");
                        self.io
                            .timers
                            .schedule(e.slot, e.epoch, TimerKind::Idle, idle);
                    }
                }
                _ => {}
            }
            self.maybe_free(id);
        }
    }

    fn on_wake(&mut self) {
        let w = usize::from(self.io.worker);
        self.io.hub.woken(w);
        if let Err(e) = self.io.ring.read_eventfd(self.wake.as_raw_fd()) {
            tracing::error!(error = %e, "re-arming the wake-up read failed");
        }
        while let Ok(msg) = self.inbox.try_recv() {
            match msg {
                Inbox::Broadcast(key, frame) => self.deliver(key, frame),
                Inbox::Connect(c) => self.open_outbound(*c),
                Inbox::Task(id, task) => {
                    let Some(conn) = self.slab.get(id.slot, id.epoch) else {
                        continue;
                    };
                    if conn.state == State::Open {
                        call(&mut self.handler, &mut self.io, id, conn, |_, ws| task(ws));
                    }
                }
            }
        }
        if self.io.hub.shutdown.load(Ordering::Acquire) && self.shutdown_deadline.is_none() {
            self.begin_shutdown();
        }
    }

    /// Closes every connection with 1001. Until they are all gone (or the close timeout
    /// passes), new connections are still accepted and refused with 503.
    fn begin_shutdown(&mut self) {
        self.shutdown_deadline = Some(Instant::now() + self.io.config.close_timeout);
        for slot in 0..self.slab.conns.len() as u32 {
            let Some(conn) = self.slab.conns[slot as usize].as_mut() else {
                continue;
            };
            let id = ConnId {
                worker: self.io.worker,
                epoch: conn.epoch,
                slot,
            };
            match conn.state {
                State::Open => {
                    let close = Close {
                        code: Some(CloseCode::GOING_AWAY),
                        reason: "server shutdown",
                    };
                    self.io.start_close(id, conn, close);
                }
                // Inbound requests in progress are answered 503 when complete.
                State::Handshake if conn.outbound => self.io.teardown(conn),
                State::Connecting => {
                    if let Some(c) = self.io.client_mut(id) {
                        c.error = Some("the runtime is shutting down".into());
                    }
                    let _ = self.io.ring.cancel(Op::Connect, id.data());
                    self.io.teardown(conn);
                }
                _ => {}
            }
            self.maybe_free(id);
        }
    }

    /// Starts an outbound connection: a socket, the upgrade request staged, the connect
    /// submitted, the handshake timer set.
    fn open_outbound(&mut self, c: crate::Connect) {
        if self.shutdown_deadline.is_some() {
            let e = io::Error::other("the runtime is shutting down");
            let handler = &mut self.handler;
            call_detached(&self.io, None, || handler.on_connect_error(c.token, e));
            return;
        }
        let (fd, request, key) = match outbound_socket(&mut self.io, &c) {
            Ok(x) => x,
            Err(e) => {
                let handler = &mut self.handler;
                call_detached(&self.io, None, || handler.on_connect_error(c.token, e));
                return;
            }
        };
        let client = Box::new(ClientSide {
            token: c.token,
            protocol: None,
            key,
            offered: c.options.protocols().to_vec(),
            opened: false,
            error: None,
        });
        let (now, max) = (self.io.timers.now(), self.io.config.max_message);
        let (slot, epoch) = self
            .slab
            .insert(|epoch| Conn::new(fd, epoch, Role::Client, max, now));
        let id = self.id(slot, epoch);
        if self.io.outbound.len() <= slot as usize {
            self.io.outbound.resize_with(slot as usize + 1, || None);
        }
        self.io.outbound[slot as usize] = Some(client);
        let conn = self.slab.get(slot, epoch).expect("just inserted");
        conn.output().staged.extend_from_slice(&request);
        let fd = conn.fd.as_raw_fd();
        match self.io.ring.connect(fd, c.addr.into(), id.data()) {
            Ok(()) => conn.connect_armed = true,
            Err(e) => {
                if let Some(cs) = self.io.client_mut(id) {
                    cs.error = Some(format!("submitting the connect failed: {e}"));
                }
                self.io.teardown(conn);
                self.maybe_free(id);
                return;
            }
        }
        let handshake_ticks = ticks(self.io.config.handshake_timeout);
        self.io
            .timers
            .schedule(slot, epoch, TimerKind::Handshake, handshake_ticks);
    }

    /// The TCP connect of an outbound connection completed: send the request, start reading.
    fn on_connect(&mut self, slot: u32, epoch: u32, res: i32) {
        let id = self.id(slot, epoch);
        let Some(conn) = self.slab.get(slot, epoch) else {
            return;
        };
        conn.connect_armed = false;
        if conn.state != State::Connecting {
            self.maybe_free(id); // torn down meanwhile
            return;
        }
        if res < 0 {
            if let Some(c) = self.io.client_mut(id) {
                let e = io::Error::from_raw_os_error(-res);
                c.error = Some(format!("connect: {e}"));
            }
            self.io.teardown(conn);
            self.maybe_free(id);
            return;
        }
        conn.state = State::Handshake;
        self.io.mark_dirty(id, conn); // the staged request
        self.arm_recv(id);
    }

    /// Delivers the frames published during this turn: to other workers through their
    /// mailboxes, to local subscribers directly.
    fn fan_out(&mut self) {
        if self.io.to_publish.is_empty() {
            return;
        }
        let frames = std::mem::take(&mut self.io.to_publish);
        let me = usize::from(self.io.worker);
        for (key, frame, _room) in frames {
            #[cfg(feature = "cluster")]
            if let Some(link) = &self.io.hub.cluster {
                link.forward_from_worker(&_room, &frame, self.io.stats());
            }
            self.io.hub.broadcast(key, frame.clone(), Some(me));
            self.deliver(key, frame);
        }
    }

    /// Queues one shared frame for every local member of a room, applying the slow policy.
    fn deliver(&mut self, key: RoomKey, frame: Bytes) {
        let Some(room) = self.io.rooms.get(key.id as usize) else {
            return;
        };
        if room.generation != key.generation {
            return; // a room that emptied since (its slot may hold another room now)
        }
        let mut i = 0;
        while let Some(&id) = self.io.rooms[key.id as usize].members.get(i) {
            i += 1;
            let Some(conn) = self.slab.get(id.slot, id.epoch) else {
                continue; // vacant
            };
            if conn.state != State::Open {
                continue;
            }
            let over = conn.buffered_amount() + frame.len() > self.io.config.max_backpressure;
            match (over, self.io.config.slow_policy) {
                (true, SlowPolicy::Drop) => {
                    WorkerStats::add(&self.io.stats().slow_skipped, 1);
                    continue;
                }
                (true, SlowPolicy::Close) => {
                    WorkerStats::add(&self.io.stats().slow_closed, 1);
                    let close = Close {
                        code: Some(CloseCode::POLICY_VIOLATION),
                        reason: "too slow",
                    };
                    self.io.start_close(id, conn, close);
                }
                (false, _) => {
                    // Within the bound, so this never pauses the subscriber's reading.
                    let _ = self.io.send_shared(id, conn, frame.clone());
                }
            }
        }
    }
}

/// A socket for an outbound connection, and its upgrade request with the key it carries.
fn outbound_socket(io: &mut Io, c: &crate::Connect) -> io::Result<(OwnedFd, Vec<u8>, [u8; 24])> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(c.addr), Type::STREAM.cloexec(), None)?;
    socket.set_tcp_nodelay(true)?;
    if let Some(ip) = c.source {
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    let mut random = [0u8; 16];
    for chunk in random.chunks_mut(4) {
        chunk.copy_from_slice(&io.masks.next_key());
    }
    let key = handshake::client_key(random);
    let offer = io.deflate.config.map(|d| deflate::client_offer(&d));
    let parts = c.options.request_parts(&c.host, &c.path, offer.as_deref());
    let request = parts
        .encode(&key)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    Ok((OwnedFd::from(socket), request, key))
}

/// (Outbound) tries to complete the upgrade from the response bytes received so far.
fn client_handshake<H: Handler>(io: &mut Io, handler: &mut H, id: ConnId, conn: &mut Conn) {
    let mut input = conn.input.take().expect("handshake bytes");
    let Some(client) = io
        .outbound
        .get_mut(id.slot as usize)
        .and_then(|c| c.as_deref_mut())
    else {
        io.teardown(conn); // cannot happen: outbound connections have their client state
        return;
    };
    let mut headers = [EMPTY_HEADER; 64];
    let verdict = match Response::parse(&input.pending, &mut headers) {
        Ok(Status::Partial { .. }) if input.pending.len() > io.config.max_request => {
            Err("the response headers are too large".to_owned())
        }
        Ok(Status::Partial { .. }) => {
            conn.input = Some(input);
            return;
        }
        Err(e) => Err(format!("invalid handshake response: {e}")),
        Ok(Status::Complete((resp, _))) if resp.status != 101 => {
            Err(format!("handshake refused: HTTP {}", resp.status))
        }
        Ok(Status::Complete((resp, len))) => {
            let offered: Vec<&str> = client.offered.iter().map(String::as_str).collect();
            let policy = io.deflate.config;
            let agreed = match policy {
                Some(c) => deflate::accept_response(resp.extensions(), &c),
                None => Ok(None),
            };
            match (
                resp.validate(&client.key, &offered, policy.is_some()),
                agreed,
            ) {
                (Ok(p), Ok(a)) => Ok((p.map(str::to_owned), a, len)),
                (Err(e), _) | (_, Err(e)) => Err(format!("invalid handshake response: {e}")),
            }
        }
    };
    match verdict {
        Err(why) => {
            tracing::debug!(%why, "outbound handshake failed");
            client.error = Some(why);
            io.teardown(conn);
        }
        Ok((protocol, agreed, len)) => {
            client.protocol = protocol;
            client.opened = true;
            client.offered = Vec::new();
            if let (Some(a), Some(config)) = (agreed, io.deflate.config) {
                enable_deflate(conn, ConnDeflate::new(Role::Client, &a, &config));
            }
            open(io, handler, id, conn, &mut input.pending, len);
        }
    }
}

/// Appends a masked frame: the header with `key`, then `payload` masked in place in `out`.
fn put_masked_frame(out: &mut BytesMut, op: OpCode, payload: &[u8], key: [u8; 4]) {
    put_frame_with(out, &masked_header(op, payload.len(), key), payload);
}

/// The header of a masked client frame with a `len`-byte payload.
fn masked_header(op: OpCode, len: usize, key: [u8; 4]) -> Header {
    Header {
        mask: Some(key),
        ..Header::new(op, len as u64)
    }
}

/// Tries to complete the upgrade from the request bytes received so far.
fn handshake<H: Handler>(io: &mut Io, handler: &mut H, id: ConnId, conn: &mut Conn) {
    let mut input = conn.input.take().expect("handshake bytes");
    let max = io.config.max_request;
    let mut headers = [EMPTY_HEADER; 64];
    let outcome = match Request::parse(&input.pending, &mut headers) {
        Ok(Status::Partial { .. }) if input.pending.len() > max => {
            Some(Err((431, "request too large".into())))
        }
        Ok(Status::Partial { .. }) => None,
        Err(HandshakeError::TooManyHeaders) => Some(Err((431, "too many headers".into()))),
        Err(e @ (HandshakeError::NotUpgrade | HandshakeError::MethodNotGet)) => {
            match crate::http::respond(&io.config, &io.hub, &input.pending) {
                Some(response) => {
                    WorkerStats::add(&io.stats().http_requests, 1);
                    conn.output().staged.extend_from_slice(&response);
                    finish_refused(io, id, conn);
                    return;
                }
                None => Some(Err((e.status(), e.to_string()))),
            }
        }
        Err(e) => Some(Err((e.status(), e.to_string()))),
        Ok(Status::Complete((req, len))) => Some(accept(io, &req).map(|a| (a, len))),
    };
    let Some(outcome) = outcome else {
        conn.input = Some(input);
        return;
    };
    match outcome {
        Err((status, body)) => {
            let mut resp = vec![0u8; 512 + body.len()];
            let n = handshake::write_error_response(&mut resp, status, &body)
                .expect("sized for the body");
            tracing::debug!(status, %body, "handshake refused");
            io.stats().refuse(Refusal::from_status(status));
            conn.output().staged.extend_from_slice(&resp[..n]);
            finish_refused(io, id, conn);
        }
        Ok((accepted, len)) => {
            WorkerStats::add(&io.stats().accepted, 1);
            conn.output().staged.extend_from_slice(&accepted.response);
            io.mark_dirty(id, conn);
            conn.proto = accepted.proto;
            if let (Some(a), Some(config)) = (accepted.deflate, io.deflate.config) {
                enable_deflate(conn, ConnDeflate::new(Role::Server, &a, &config));
            }
            open(io, handler, id, conn, &mut input.pending, len);
        }
    }
}

/// A plain HTTP response (or a refusal) is staged: the socket closes once it is sent, or at
/// the close timeout.
fn finish_refused(io: &mut Io, id: ConnId, conn: &mut Conn) {
    conn.state = State::Refused;
    conn.close_after_send = true;
    io.mark_dirty(id, conn);
    io.timers
        .schedule(id.slot, id.epoch, TimerKind::Close, io.close_ticks);
}

/// The upgrade completed (either role): the connection opens, the handler hears of it, and the
/// frames the peer sent right behind its request or response (after `len` bytes of `pending`)
/// are decoded.
fn open<H: Handler>(
    io: &mut Io,
    handler: &mut H,
    id: ConnId,
    conn: &mut Conn,
    pending: &mut Vec<u8>,
    len: usize,
) {
    conn.state = State::Open;
    conn.live = true;
    WorkerStats::add(&io.stats().connections, 1);
    io.timers
        .schedule(id.slot, id.epoch, TimerKind::Idle, io.idle_ticks);
    if !conn.outbound {
        std::mem::swap(&mut io.request, pending);
    }
    call(handler, io, id, conn, |h, ws| h.on_open(ws));
    if !conn.outbound {
        std::mem::swap(&mut io.request, pending);
        io.request.clear();
    }
    pending.drain(..len);
    if !pending.is_empty() {
        let mut rest = std::mem::take(pending);
        feed(io, handler, id, conn, &mut rest);
    }
}

/// Compression was negotiated: RSV1 becomes legal on the first frame of a message.
fn enable_deflate(conn: &mut Conn, state: ConnDeflate) {
    conn.deflate = Some(Box::new(state));
    let config = conn.rx.config().compression(true);
    conn.rx.set_config(config);
}

/// An accepted upgrade: the 101 response and what it agreed to.
struct Accepted {
    response: Vec<u8>,
    /// Index + 1 of the chosen subprotocol (0: none).
    proto: u8,
    deflate: Option<Agreement>,
}

/// Validates the request against the policy and writes the 101 response.
fn accept(io: &Io, req: &Request<'_, '_>) -> Result<Accepted, (u16, String)> {
    let config = &io.config;
    if io.hub.shutdown.load(Ordering::Acquire) {
        return Err((503, "the server is shutting down".into()));
    }
    if !config.insecure_skip_origin_check {
        let patterns: Vec<&str> = config.allowed_origins.iter().map(String::as_str).collect();
        if !handshake::origin_allowed(req.origin, req.host, &patterns) {
            let origin = req.origin.unwrap_or_default();
            return Err((403, format!("origin {origin:?} not allowed")));
        }
    }
    // A connection stores its subprotocol as an index + 1 in a byte: the first 255 count.
    let supported: Vec<&str> = config
        .subprotocols
        .iter()
        .take(usize::from(u8::MAX))
        .map(String::as_str)
        .collect();
    let chosen = handshake::select_protocol(&req.protocols, &supported);
    let proto = chosen
        .and_then(|p| supported.iter().position(|s| *s == p))
        .and_then(|i| u8::try_from(i + 1).ok())
        .unwrap_or(0);
    let deflate = io
        .deflate
        .config
        .and_then(|c| deflate::negotiate(req.extensions.iter().copied(), &c));
    let extension = deflate.map(|a| a.to_string());
    let mut response = vec![0u8; 512];
    let n = req
        .accept(&mut response, chosen, extension.as_deref())
        .map_err(|e| (500, e.to_string()))?;
    response.truncate(n);
    Ok(Accepted {
        response,
        proto,
        deflate,
    })
}

/// Feeds received frame bytes to the decoder: first through bytes left over from the last
/// receive (a partial header or control frame), then in place in `data`.
fn feed<H: Handler>(io: &mut Io, handler: &mut H, id: ConnId, conn: &mut Conn, data: &mut [u8]) {
    let mut data = data;
    while conn.input.as_ref().is_some_and(|i| !i.pending.is_empty()) && !data.is_empty() {
        let input = conn.input.as_mut().expect("checked");
        // Enough to complete a header or a control frame (≤ 14 + 125 bytes) and a little more
        // to save a round; a data frame's payload then streams from `data` in place.
        let take = data.len().min(256);
        input.pending.extend_from_slice(&data[..take]);
        data = &mut data[take..];
        let mut pending = std::mem::take(&mut input.pending);
        let used = decode(io, handler, id, conn, &mut pending);
        pending.drain(..used);
        if let Some(input) = conn.input.as_mut() {
            input.pending = pending;
        }
    }
    if !data.is_empty() && conn.input.as_ref().is_none_or(|i| i.pending.is_empty()) {
        let used = decode(io, handler, id, conn, data);
        if used < data.len() && conn.reading() {
            conn.input().pending.extend_from_slice(&data[used..]);
        }
    }
    // Hold no memory that is not needed any more.
    if conn.input.as_ref().is_some_and(|i| i.pending.is_empty()) {
        conn.input = None;
    }
}

/// Decodes frames from `buf` and dispatches them; returns the bytes consumed (all of them once
/// the connection stops reading).
fn decode<H: Handler>(
    io: &mut Io,
    handler: &mut H,
    id: ConnId,
    conn: &mut Conn,
    buf: &mut [u8],
) -> usize {
    // Inflated messages are lent from the worker's scratch buffer, taken out for the duration
    // (a handler may compress, into the other scratch buffer, meanwhile).
    let mut scratch = match conn.deflate {
        Some(_) => io.deflate.take_in_scratch(),
        None => Vec::new(),
    };
    let used = decode_frames(io, handler, id, conn, buf, &mut scratch);
    if conn.deflate.is_some() {
        io.deflate.put_in_scratch(scratch);
    }
    used
}

fn decode_frames<H: Handler>(
    io: &mut Io,
    handler: &mut H,
    id: ConnId,
    conn: &mut Conn,
    buf: &mut [u8],
    scratch: &mut Vec<u8>,
) -> usize {
    let mut used = 0;
    loop {
        if !matches!(conn.state, State::Open | State::Closing) {
            return buf.len();
        }
        // Asked before each frame; the receiver applies it from the next message on, so a
        // message is delivered entirely the way it started.
        conn.rx.set_streaming(handler.streaming());
        let mut inflater = conn.deflate.as_deref_mut().map(|c| Inflater {
            conn: c,
            worker: &mut io.deflate,
            id,
        });
        let inflate = inflater.as_mut().map(|i| i as &mut dyn Inflate);
        let got = match conn.rx.receive(&mut buf[used..], scratch, inflate) {
            Ok(got) if got.needs_more() => return used,
            Ok(got) => got,
            Err(e) => {
                fail(io, id, conn, e);
                return buf.len();
            }
        };
        used += got.consumed;
        let Some(event) = got.event else { continue };
        match event {
            Incoming::Message(_) | Incoming::Assembled(_) | Incoming::Chunk(_)
                if conn.state != State::Open =>
            {
                // After our close, data is read and dropped.
            }
            Incoming::Message(msg) => {
                WorkerStats::add(&io.stats().messages_in, 1);
                call(handler, io, id, conn, |h, ws| h.on_message(ws, msg));
            }
            Incoming::Assembled(msg) => {
                WorkerStats::add(&io.stats().messages_in, 1);
                call(handler, io, id, conn, |h, ws| h.on_message_owned(ws, msg));
            }
            Incoming::Chunk(chunk) => {
                if chunk.last {
                    WorkerStats::add(&io.stats().messages_in, 1);
                }
                call(handler, io, id, conn, |h, ws| h.on_chunk(ws, chunk));
            }
            Incoming::Ping(p) => {
                if conn.state == State::Open {
                    // A control frame: never refused by the bounds.
                    let _ = io.send_copy(id, conn, OpCode::Pong, p);
                    call(handler, io, id, conn, |h, ws| h.on_ping(ws, p));
                }
            }
            Incoming::Pong(p) => {
                conn.ping_outstanding = false;
                if conn.state == State::Open {
                    call(handler, io, id, conn, |h, ws| h.on_pong(ws, p));
                }
            }
            Incoming::Close(c) => {
                let slot = crate::hub::close_slot(c.code.map(u16::from));
                WorkerStats::add(&io.stats().close_received[slot], 1);
                if conn.state == State::Open {
                    // Answer with the same code (none if none came), then close the socket.
                    io.start_close(
                        id,
                        conn,
                        Close {
                            code: c.code,
                            reason: "",
                        },
                    );
                }
                conn.close_after_send = true;
                if conn
                    .output
                    .as_ref()
                    .is_none_or(|o| o.queued() == 0 && !o.queue.in_flight())
                {
                    io.teardown(conn);
                }
                if conn.live {
                    conn.live = false;
                    WorkerStats::sub(&io.stats().connections, 1);
                    call_detached(io, Some(id), || handler.on_close(id, c.code, c.reason));
                }
                return buf.len();
            }
        }
    }
}

/// Fails the connection (RFC 6455 §7.1.7) for a protocol error: our close with the error's
/// code, then the socket.
fn fail(io: &mut Io, id: ConnId, conn: &mut Conn, e: sockeye_codec::Error) {
    tracing::debug!(error = %e, "protocol error");
    let close = Close {
        code: Some(e.close_code()),
        reason: "",
    };
    io.start_close(id, conn, close);
    conn.close_after_send = true;
}

/// The receiver's [`Inflate`] on the event loop: the connection's state, the worker's engines.
struct Inflater<'a> {
    conn: &'a mut ConnDeflate,
    worker: &'a mut Deflater,
    id: ConnId,
}

impl Inflate for Inflater<'_> {
    fn inflate(
        &mut self,
        input: &[u8],
        fin: bool,
        out: &mut Vec<u8>,
        limit: u64,
    ) -> Result<(), sockeye_codec::Error> {
        self.worker
            .inflate(self.id, self.conn, input, fin, out, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_connection_is_small() {
        // The whole per-connection state of an idle open connection: no buffers, no queues.
        // The decoder dominates; the budget for server memory per idle connection is 256 B.
        let size = std::mem::size_of::<Option<Conn>>();
        assert!(size <= 192, "Conn grew to {size} bytes");
        eprintln!("Option<Conn>: {size} bytes");
    }
}

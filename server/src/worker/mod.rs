//! One worker: an event loop on its own engine (an io_uring ring, or the portable poller, behind
//! `backend::Backend`: the same requests and completions), with its own listener, connections
//! and timers.
//!
//! - `mod.rs`: the loop: completions from the ring dispatched to accept, receive, send,
//!   connect, the timer tick and cross-thread wake-ups; shutdown and the final drain.
//! - `slab`: connection ids and the connection table. `conn`: one connection's state.
//! - `upgrade` and `outbound`: the two sides of the handshake, then `open`.
//! - `dispatch`: received bytes → `sockeye_codec::session::Receiver` → handler callbacks (each
//!   behind a panic guard). `lent`: a connection and the worker's [`Io`] as the handler API's
//!   engine-neutral `Connection`, which `WebSocket` wraps.
//! - `send` ([`Io`]): what callbacks may use; commands to the connection's session `Sender`
//!   (framing, order, the hard bound, the close handshake) into its `Outgoing` queue, plus
//!   backpressure and the slow policy. `Io` groups the worker's `Time` (the wheel, the
//!   session timeouts), this loop `Turn`'s bookkeeping and the outbound `Clients`.
//! - `rooms`: this worker's members of each room.
//!
//! How a message flows: a multishot receive fills a provided buffer (`ring`); `dispatch::feed`
//! hands the bytes, in place, to the connection's `Receiver`, which unmasks them and yields a
//! message lent from that buffer when it sits in it whole (else assembled, or streamed); pings
//! and the peer's close are answered by `Sender::respond`; the handler answers through
//! `WebSocket` (`send`), whose sends the connection's `Sender` frames into its `Outgoing`
//! queue; at the end of the loop turn `Worker::flush` submits one `sendmsg` per connection,
//! the ring's `SendQueue` taking the sealed frames out of `Outgoing` until the kernel is done
//! with them. The wheel asks each connection's session `Clock` what is due (keepalive ping,
//! idle close, close timeout).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use sockeye_codec::deflate::Agreement;
use sockeye_codec::handshake::{self, EMPTY_HEADER, HandshakeError, Policy, Request};
use sockeye_codec::session::{
    BufferPool, Clock, Due, Incoming, Inflate, Link, Message, Outgoing, OwnedMessage, Prepared,
    Receiver, SendError, Sender, Timeouts,
};
use sockeye_codec::{Close, CloseCode, Role, Status};

use crate::backend::{Backend, Bufs, Completion, RecvBuf, Scratch};
use crate::compress::{ConnDeflate, Deflater};
use crate::config::Engine;
use crate::config::{Config, SlowPolicy};
use crate::handler::JoinError;
use crate::handler::{Handler, SendStatus, WebSocket};
use crate::hub::{Hub, Inbox, Refusal, RoomKey, WorkerStats};
use crate::id::{ConnId, EPOCH_MASK};
use crate::ring::{Op, SendQueue};
use crate::timer::{TimerKind, Wheel};
use sockeye_client::{ClientHandshake, OsMaskKeys, Reply};

mod conn;
mod dispatch;
mod lent;
mod outbound;
mod rooms;
mod send;
mod slab;
mod upgrade;

use conn::*;
use dispatch::*;
use lent::*;
use outbound::*;
use rooms::*;
use send::*;
use slab::*;
use upgrade::*;

pub(crate) use conn::Conn;
pub(crate) use send::Io;

/// Length of one timer tick.
pub(crate) const TICK: Duration = Duration::from_millis(100);

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
    bufs: Bufs,
    scratch: Scratch,
    shutdown_deadline: Option<Instant>,
    accept_armed: bool,
    /// "Out of descriptors" was logged and nothing was accepted since.
    fd_warned: bool,
}

impl<H: Handler> Worker<H> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        worker: usize,
        engine: Engine,
        config: Arc<Config>,
        hub: Arc<Hub>,
        listener: Option<OwnedFd>,
        wake: OwnedFd,
        inbox: mpsc::Receiver<Inbox>,
        handler: H,
    ) -> io::Result<Worker<H>> {
        let (ring, bufs) = Backend::new(engine, config.recv_buffers, config.recv_buffer_size)?;
        tracing::debug!(worker, mode = ring.mode(), "engine ready");
        let timeouts = Timeouts {
            idle: Some(config.idle_timeout).filter(|d| !d.is_zero()),
            close: config.close_timeout,
        };
        let close_ticks = ticks(config.close_timeout);
        let deflate = Deflater::new(config.deflate_config());
        let send_bound = config.send_queue_bound();
        Ok(Worker {
            io: Io {
                worker: worker as u16,
                ring,
                config,
                hub,
                time: Time {
                    timers: Wheel::new(),
                    timeouts,
                    now: Duration::ZERO,
                    close_ticks,
                },
                turn: Turn::default(),
                rooms: Vec::new(),
                clients: Clients {
                    masks: OsMaskKeys::new(),
                    by_slot: Vec::new(),
                },
                deflate,
                request: Vec::new(),
                send_bound,
                // At most 64 large buffers (64 KiB to 16 MiB), freed after an unused tick.
                buffers: BufferPool::new(64),
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
            scratch: Scratch::default(),
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
            self.io.ring.accept_multi(l.as_fd(), 0)?;
            self.accept_armed = true;
        }
        self.io.ring.tick(TICK)?;
        self.io.ring.read_eventfd(self.wake.as_fd())?;
        let mut cqes = Vec::with_capacity(1024);
        loop {
            self.flush();
            if self.finished() {
                return Ok(());
            }
            self.io.ring.submit_and_wait(1)?;
            cqes.clear();
            self.io.ring.completions(&mut cqes, &mut self.scratch);
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
            self.io.ring.completions(&mut cqes, &mut self.scratch);
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
        let dirty = std::mem::take(&mut self.io.turn.dirty);
        for id in &dirty {
            let Some(conn) = self.slab.get(id.slot, id.epoch) else {
                continue;
            };
            conn.dirty = false;
            if conn.state == State::Dead {
                continue; // shut down: nothing more goes out
            }
            let fd = conn.fd.as_fd();
            let Some(out) = conn.output.as_mut() else {
                continue;
            };
            out.seal();
            if let Err(e) = self
                .io
                .ring
                .send(fd, &mut out.queue, &mut out.out, id.data())
            {
                tracing::warn!(error = %e, "submitting a send failed");
                self.io.teardown(conn);
            }
        }
        self.io.turn.dirty = dirty;
        self.io.turn.dirty.clear();
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
        let (now, max) = (self.io.time.now, self.io.config.max_message);
        let (slot, epoch) = self
            .slab
            .insert(|epoch| Conn::new(fd, epoch, Role::Server, max, now));
        let id = self.id(slot, epoch);
        let handshake_ticks = ticks(self.io.config.handshake_timeout);
        self.io
            .time
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
        match self.io.ring.accept_multi(l.as_fd(), 0) {
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
            .recv_multi(conn.fd.as_fd(), &self.bufs, id.data())
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
            (n, Some(mut b)) if n > 0 => {
                conn.clock.received(self.io.time.now);
                WorkerStats::add(&self.io.stats().bytes_in, n as u64);
                self.on_bytes(id, &mut b);
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
    fn on_bytes(&mut self, id: ConnId, b: &mut RecvBuf) {
        let data = self.bufs.bytes(b);
        let conn = self.slab.conns[id.slot as usize]
            .as_mut()
            .expect("live connection");
        let before = conn.input_bytes();
        let (io, handler) = (&mut self.io, &mut self.handler);
        // Every handler callback made while these bytes are dispatched is for this connection:
        // one guard for all of them (a guard per callback cost 3% of the CPU per message at
        // 16 B, measured). A panic closes this connection with 1011; the rest of its bytes are
        // dropped.
        let dispatched = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            match conn.state {
                State::Handshake if conn.outbound() => {
                    let input = conn.input();
                    input.pending.extend_from_slice(data);
                    client_handshake(io, handler, id, conn);
                }
                State::Handshake => {
                    let input = conn.input();
                    let room =
                        io.config.max_request + 1 - input.pending.len().min(io.config.max_request);
                    let (head, rest) = data.split_at_mut(data.len().min(room));
                    input.pending.extend_from_slice(head);
                    handshake(io, handler, id, conn);
                    // Frames the client sent right behind its request, beyond what the
                    // request bound let into `pending`, follow what `open` already decoded.
                    if !rest.is_empty() && matches!(conn.state, State::Open | State::Closing) {
                        feed(io, handler, id, conn, rest);
                    }
                }
                State::Open | State::Closing => feed(io, handler, id, conn, data),
                State::Connecting | State::Refused | State::Dead => {}
            }
        }));
        if let Err(panic) = dispatched {
            handler_panicked(io, id, Some(conn), &*panic);
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
                    self.io.turn.drained.push(id);
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
        // The socket is gone without the peer's close frame: our own close code if we sent
        // one (e.g. 1009 after a limit, 1001 at shutdown), else 1006.
        let code = match conn.tx.sent_code() {
            None => Some(CloseCode::ABNORMAL),
            Some(sent) => sent,
        };
        self.notify_close(id.slot, &mut conn, code, "");
        if let Some(mut c) = conn.deflate.take() {
            self.io.deflate.release(&mut c);
        }
        let client = match conn.outbound() {
            true => self
                .io
                .clients
                .by_slot
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
        for id in std::mem::take(&mut self.io.turn.drained) {
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
        self.io.buffers.age();
        let mut fired = Vec::new();
        self.io.time.timers.advance(&mut fired);
        self.io.time.now = TICK * self.io.time.timers.now();
        let now = self.io.time.now;
        for e in fired {
            let id = self.id(e.slot, e.epoch());
            let Some(conn) = self.slab.get(e.slot, e.epoch()) else {
                continue;
            };
            match (e.kind(), conn.state) {
                (TimerKind::Handshake, State::Handshake | State::Connecting) => {
                    tracing::debug!("handshake timeout");
                    if !conn.outbound() {
                        self.io.stats().refuse(Refusal::Timeout);
                    }
                    if conn.outbound()
                        && let Some(c) = self.io.client_mut(id)
                    {
                        c.error = Some("the handshake timed out".into());
                    }
                    if conn.connect_armed {
                        let _ = self.io.ring.cancel(Op::Connect, id.data());
                    }
                    self.io.teardown(conn);
                }
                (TimerKind::Close, State::Refused) => self.io.teardown(conn),
                (TimerKind::Session, State::Open | State::Closing) => {
                    match conn.clock.on_timeout(now, &self.io.time.timeouts) {
                        Some(Due::Ping) => {
                            // Dropped only if the queue is already past its hard bound.
                            let _ = self.io.send_control(id, conn, true, b"");
                            self.io.schedule_session(id, conn);
                        }
                        Some(Due::IdleClose) => {
                            let close = Close {
                                code: Some(CloseCode::GOING_AWAY),
                                reason: "idle timeout",
                            };
                            // Schedules the close deadline.
                            self.io.start_close(id, conn, close);
                        }
                        Some(Due::CloseTimeout) => self.io.teardown(conn),
                        // Not due yet (bytes arrived since): come back when it is.
                        None => self.io.schedule_session(id, conn),
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
        if let Err(e) = self.io.ring.read_eventfd(self.wake.as_fd()) {
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
                State::Handshake if conn.outbound() => self.io.teardown(conn),
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
        let (fd, handshake) = match outbound_socket(&mut self.io, &c) {
            Ok(x) => x,
            Err(e) => {
                let handler = &mut self.handler;
                call_detached(&self.io, None, || handler.on_connect_error(c.token, e));
                return;
            }
        };
        let (now, max) = (self.io.time.now, self.io.config.max_message);
        let (slot, epoch) = self
            .slab
            .insert(|epoch| Conn::new(fd, epoch, Role::Client, max, now));
        let id = self.id(slot, epoch);
        if self.io.clients.by_slot.len() <= slot as usize {
            self.io
                .clients
                .by_slot
                .resize_with(slot as usize + 1, || None);
        }
        let conn = self.slab.get(slot, epoch).expect("just inserted");
        conn.output().stage().extend_from_slice(handshake.request());
        self.io.clients.by_slot[slot as usize] = Some(Box::new(ClientSide {
            token: c.token,
            protocol: None,
            handshake: Some(handshake),
            opened: false,
            error: None,
        }));
        let fd = conn.fd.as_fd();
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
            .time
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
        if self.io.turn.to_publish.is_empty() {
            return;
        }
        let frames = std::mem::take(&mut self.io.turn.to_publish);
        let me = usize::from(self.io.worker);
        for (key, frame, room) in frames {
            self.io
                .hub
                .forward_from_worker(&room, &frame, self.io.stats());
            self.io.hub.broadcast(key, frame.clone(), Some(me));
            self.deliver(key, frame);
        }
    }

    /// Queues one shared frame for every local member of a room, applying the slow policy.
    fn deliver(&mut self, key: RoomKey, frame: Prepared) {
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
            let over = conn.buffered_amount() + frame.wire_len() > self.io.config.max_backpressure;
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
                    let _ = self.io.send_prepared(id, conn, &frame);
                    // A subscriber that is delivered to keeps its output buffers until a tick
                    // finds it idle, instead of allocating and freeing them every loop turn
                    // (the shared frame itself is never copied).
                    if let Some(out) = conn.output.as_deref_mut() {
                        out.busy = true;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_connection_is_small() {
        // The whole per-connection state of an idle open connection: no buffers, no queues.
        // The decoder dominates; the budget for server memory per idle connection is 256 B,
        // and 160 is what 444a203 held (the session must not cost idle memory).
        let size = std::mem::size_of::<Option<Conn>>();
        assert!(size <= 160, "Conn grew to {size} bytes");
        eprintln!("Option<Conn>: {size} bytes");
    }
}

//! The part of a worker that handler callbacks may use ([`Io`]), and sending: commands go to
//! the connection's session `Sender` (framing, masking, compression, order, the hard bound,
//! the close handshake) with a link to its output; the worker adds backpressure (pausing
//! reads), the slow policy and the counters.

use super::*;

/// The part of a worker that handler callbacks may use: everything but the connection table,
/// the receive buffers and the handler itself.
pub(crate) struct Io {
    pub(super) worker: u16,
    pub(super) ring: Backend,
    pub(super) config: Arc<Config>,
    pub(super) hub: Arc<Hub>,
    /// The wheel and what the session clocks need of it.
    pub(super) time: Time,
    /// This loop turn's bookkeeping: what to flush, to release, to fan out.
    pub(super) turn: Turn,
    /// This worker's members of each room, by room id.
    pub(super) rooms: Vec<LocalRoom>,
    /// What outbound (client-role) connections add.
    pub(super) clients: Clients,
    /// permessage-deflate engines and policy.
    pub(super) deflate: Deflater,
    /// During `on_open` of an accepted connection: the bytes received so far, starting with
    /// its upgrade request (lent by the connection, given back after the call).
    pub(super) request: Vec<u8>,
    /// The hard bound on a connection's queued output (`Config::send_queue_bound`).
    pub(super) send_bound: usize,
    /// Large buffers reused for assembly and owned payloads.
    pub(super) buffers: BufferPool,
}

/// A worker's time: one wheel for every connection's deadlines.
pub(super) struct Time {
    pub(super) timers: Wheel,
    /// Keepalive and close timeouts, for every connection's session clock.
    pub(super) timeouts: Timeouts,
    /// The time at the last tick, as the session clocks count it.
    pub(super) now: Duration,
    /// How long a refused request's response may take to go out.
    pub(super) close_ticks: u32,
}

/// What a loop turn collects for its end.
#[derive(Default)]
pub(super) struct Turn {
    /// Connections with output to flush at the end of this loop turn.
    pub(super) dirty: Vec<ConnId>,
    /// Connections whose output drained; their buffers are released at the next tick unless
    /// they were used again (a busy connection keeps and reuses its staging buffer).
    pub(super) drained: Vec<ConnId>,
    /// Frames published during this turn, fanned out at its end.
    pub(super) to_publish: Vec<(RoomKey, Prepared, Arc<str>)>,
}

/// Outbound connections' masking keys and client state.
pub(super) struct Clients {
    /// Masking keys for every frame they send.
    pub(super) masks: OsMaskKeys,
    /// Their client state, by connection slot.
    pub(super) by_slot: Vec<Option<Box<ClientSide>>>,
}

pub(super) fn ticks(d: Duration) -> u32 {
    (d.as_millis() / TICK.as_millis()).clamp(1, u128::from(u32::MAX / 4)) as u32
}

/// Ticks until `d` has passed (at least one).
pub(super) fn ticks_ceil(d: Duration) -> u32 {
    d.as_millis()
        .div_ceil(TICK.as_millis())
        .clamp(1, u128::from(u32::MAX / 4)) as u32
}

/// permessage-deflate for one connection on the event loop, both directions: its state, the
/// worker's engines.
pub(super) struct Engines<'a> {
    pub(super) conn: &'a mut ConnDeflate,
    pub(super) worker: &'a mut Deflater,
    pub(super) id: ConnId,
}

impl sockeye_codec::session::Compress for Engines<'_> {
    fn wants(&self, len: usize) -> bool {
        self.conn.wants(len)
    }

    fn compress(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        self.worker.compress(self.id, self.conn, payload, out);
    }
}

impl Inflate for Engines<'_> {
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

impl Io {
    pub(super) fn stats(&self) -> &WorkerStats {
        &self.hub.stats[usize::from(self.worker)]
    }

    pub(super) fn mark_dirty(&mut self, id: ConnId, conn: &mut Conn) {
        if !conn.dirty {
            conn.dirty = true;
            self.turn.dirty.push(id);
        }
    }

    /// Applies backpressure after queuing: pauses reading when over the bound.
    #[inline]
    pub(super) fn after_queue(&mut self, id: ConnId, conn: &mut Conn) -> SendStatus {
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

    /// Runs a command of the connection's session sender with a link to its output: the
    /// worker's masking keys for an outbound connection, and, if `compress` and the
    /// connection negotiated it, the worker's compression engines.
    #[inline]
    pub(super) fn with_link<R>(
        &mut self,
        id: ConnId,
        conn: &mut Conn,
        compress: bool,
        f: impl FnOnce(&mut Sender, &mut Link<'_>) -> R,
    ) -> R {
        let outbound = conn.outbound();
        let Conn {
            tx,
            output,
            deflate,
            ..
        } = conn;
        let out = &mut output.get_or_insert_with(Default::default).out;
        let keys = match outbound {
            true => Some(&mut self.clients.masks as &mut dyn sockeye_codec::session::MaskKeys),
            false => None,
        };
        let bound = self.send_bound;
        let mut buffers = &self.buffers;
        match deflate.as_deref_mut() {
            Some(c) if compress => {
                let mut scratch = self.deflate.take_out_scratch();
                let mut engines = Engines {
                    conn: c,
                    worker: &mut self.deflate,
                    id,
                };
                let r = f(
                    tx,
                    &mut Link {
                        out,
                        keys,
                        compress: Some(&mut engines),
                        bound,
                        scratch: Some(&mut scratch),
                        buffers: Some(&mut buffers),
                    },
                );
                self.deflate.put_out_scratch(scratch);
                r
            }
            _ => f(
                tx,
                &mut Link {
                    out,
                    keys,
                    compress: None,
                    bound,
                    scratch: None,
                    buffers: Some(&mut buffers),
                },
            ),
        }
    }

    /// What a send the session refused means for the application; past the hard bound, the
    /// slow policy applies.
    #[cold]
    fn refused(&mut self, id: ConnId, conn: &mut Conn, e: SendError) -> SendStatus {
        match e {
            SendError::Full { .. } => match self.config.slow_policy {
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
            },
            SendError::Closed => SendStatus::Closed,
            // The handler API offers no streamed sends and cuts pings to 125 bytes, so no
            // other refusal is reachable from it; should one happen, nothing was queued.
            e => {
                tracing::debug!(conn = ?id, error = %e, "send refused");
                SendStatus::Dropped
            }
        }
    }

    #[inline]
    fn sent(&mut self, id: ConnId, conn: &mut Conn, r: Result<(), SendError>) -> SendStatus {
        match r {
            Ok(()) => self.after_queue(id, conn),
            Err(e) => self.refused(id, conn, e),
        }
    }

    /// Queues a whole data message, copied (or compressed) into the connection's output.
    #[inline]
    pub(crate) fn send_data(
        &mut self,
        id: ConnId,
        conn: &mut Conn,
        msg: Message<'_>,
    ) -> SendStatus {
        if conn.state != State::Open {
            return SendStatus::Closed;
        }
        let r = self.with_link(id, conn, true, |tx, link| tx.send(link, msg));
        self.sent(id, conn, r)
    }

    /// Queues a ping or an unsolicited pong: refused (`Dropped`, without the slow policy,
    /// which is for data) only when the queue is already past its hard bound.
    pub(crate) fn send_control(
        &mut self,
        id: ConnId,
        conn: &mut Conn,
        ping: bool,
        payload: &[u8],
    ) -> SendStatus {
        if conn.state != State::Open {
            return SendStatus::Closed;
        }
        let r = self.with_link(id, conn, false, |tx, link| match ping {
            true => tx.ping(link, payload),
            false => tx.pong(link, payload),
        });
        match r {
            Err(SendError::Full { .. }) => SendStatus::Dropped,
            r => self.sent(id, conn, r),
        }
    }

    /// Queues a prepared message: the shared frame itself (or, outbound, a masked copy).
    #[inline]
    pub(crate) fn send_prepared(
        &mut self,
        id: ConnId,
        conn: &mut Conn,
        msg: &Prepared,
    ) -> SendStatus {
        if conn.state != State::Open {
            return SendStatus::Closed;
        }
        let r = self.with_link(id, conn, false, |tx, link| tx.send_prepared(link, msg));
        self.sent(id, conn, r)
    }

    /// Sends `payload` from its own buffer: only the header is written.
    pub(crate) fn send_owned(
        &mut self,
        id: ConnId,
        conn: &mut Conn,
        msg: OwnedMessage,
    ) -> SendStatus {
        if conn.state != State::Open {
            return SendStatus::Closed;
        }
        let r = self.with_link(id, conn, true, |tx, link| tx.send_owned(link, msg));
        self.sent(id, conn, r)
    }

    /// What the protocol answers to a received ping or close (the session's
    /// `Sender::respond`): a pong, or our close frame with the peer's code.
    pub(super) fn respond(&mut self, id: ConnId, conn: &mut Conn, event: &Incoming<'_>) {
        if !matches!(conn.state, State::Open | State::Closing) {
            return;
        }
        if self.with_link(id, conn, false, |tx, link| tx.respond(link, event)) {
            if matches!(event, Incoming::Close(_)) {
                self.close_queued(id, conn);
            } else {
                // A pong: counted, and reading pauses past the backpressure bound like after
                // any send (a peer that pings and does not read stops being read).
                let _ = self.after_queue(id, conn);
            }
        }
    }

    /// Queues our close frame and waits for the peer's (or the close timeout).
    pub(crate) fn start_close(&mut self, id: ConnId, conn: &mut Conn, close: Close<'_>) {
        if !matches!(conn.state, State::Open | State::Handshake) {
            return;
        }
        // Every caller passes a sendable code and a reason within the limit (the public
        // `WebSocket::close` checks); should one not, the close goes out without a code rather
        // than take the worker down.
        let queued = self.with_link(id, conn, false, |tx, link| {
            match tx.close(link, close.code, close.reason) {
                Ok(sent) => sent,
                Err(e) => {
                    tracing::error!(error = %e, "unsendable close frame; closing without a code");
                    tx.close(link, None, "").unwrap_or(false)
                }
            }
        });
        if queued {
            self.close_queued(id, conn);
        }
    }

    /// Our close frame is queued: counted, the connection closing, the close deadline set.
    fn close_queued(&mut self, id: ConnId, conn: &mut Conn) {
        let code = conn.tx.sent_code().flatten();
        let slot = crate::hub::close_slot(code.map(u16::from));
        WorkerStats::add(&self.stats().close_sent[slot], 1);
        conn.state = State::Closing;
        self.mark_dirty(id, conn);
        conn.clock.closing(self.time.now);
        self.schedule_session(id, conn);
    }

    /// Schedules the connection's next session deadline (keepalive, close) on the wheel.
    pub(super) fn schedule_session(&mut self, id: ConnId, conn: &Conn) {
        if let Some(left) = conn.clock.poll_timeout(self.time.now, &self.time.timeouts) {
            self.time
                .timers
                .schedule(id.slot, id.epoch, TimerKind::Session, ticks_ceil(left));
        }
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
        if conn.outbound() {
            return self.client(id)?.protocol.as_deref();
        }
        let i = usize::from(conn.proto).checked_sub(1)?;
        self.config.subprotocols.get(i).map(String::as_str)
    }

    /// The client state of outbound connection `id`.
    pub(crate) fn client(&self, id: ConnId) -> Option<&ClientSide> {
        self.clients.by_slot.get(id.slot as usize)?.as_deref()
    }

    pub(super) fn client_mut(&mut self, id: ConnId) -> Option<&mut ClientSide> {
        self.clients
            .by_slot
            .get_mut(id.slot as usize)?
            .as_deref_mut()
    }

    /// The upgrade request, while `on_open` runs for an accepted connection.
    pub(crate) fn request(&self) -> Option<&[u8]> {
        (!self.request.is_empty()).then_some(&self.request[..])
    }
}

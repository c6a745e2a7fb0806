//! The part of a worker that handler callbacks may use ([`Io`]), and sending: data and
//! control frames into a connection's output, backpressure and the hard bound, the close
//! handshake.

use super::*;

/// The part of a worker that handler callbacks may use: everything but the connection table,
/// the receive buffers and the handler itself.
pub(crate) struct Io {
    pub(super) worker: u16,
    pub(super) ring: Ring,
    pub(super) config: Arc<Config>,
    pub(super) hub: Arc<Hub>,
    pub(super) timers: Wheel,
    /// Connections with output to flush at the end of this loop turn.
    pub(super) dirty: Vec<ConnId>,
    /// Frames published during this turn, fanned out at its end.
    pub(super) to_publish: Vec<(RoomKey, Bytes, Arc<str>)>,
    /// This worker's members of each room, by room id.
    pub(super) rooms: Vec<LocalRoom>,
    pub(super) idle_ticks: u32,
    pub(super) close_ticks: u32,
    /// Masking keys for outbound connections.
    pub(super) masks: MaskKeys,
    /// Outbound connections' client state, by slot.
    pub(super) outbound: Vec<Option<Box<ClientSide>>>,
    /// Connections whose output drained; their buffers are released at the next tick unless
    /// they were used again (a busy connection keeps and reuses its staging buffer).
    pub(super) drained: Vec<ConnId>,
    /// permessage-deflate engines and policy.
    pub(super) deflate: Deflater,
    /// During `on_open` of an accepted connection: the bytes received so far, starting with
    /// its upgrade request (lent by the connection, given back after the call).
    pub(super) request: Vec<u8>,
    /// The hard bound on a connection's queued output (`Config::send_queue_bound`).
    pub(super) send_bound: usize,
}

pub(super) fn ticks(d: Duration) -> u32 {
    (d.as_millis() / TICK.as_millis()).clamp(1, u128::from(u32::MAX / 4)) as u32
}

impl Io {
    pub(super) fn stats(&self) -> &WorkerStats {
        &self.hub.stats[usize::from(self.worker)]
    }

    pub(super) fn mark_dirty(&mut self, id: ConnId, conn: &mut Conn) {
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(id);
        }
    }

    /// Applies backpressure after queuing: pauses reading when over the bound.
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

    /// Refuses a data message of `len` bytes that would take the queue past the hard bound
    /// (unless the queue is empty), by the slow policy.
    pub(super) fn refuse_over_bound(
        &mut self,
        id: ConnId,
        conn: &mut Conn,
        len: usize,
    ) -> Option<SendStatus> {
        let queued = conn.buffered_amount();
        if queued == 0 || queued.saturating_add(len) <= self.send_bound {
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
    pub(super) fn send_compressed(
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
        self.queue_shared(id, conn, frame)
    }

    /// Queues a shared frame on an open connection whose bounds the caller checked (a
    /// broadcast delivery, which applies the lower backpressure bound itself).
    pub(crate) fn queue_shared(&mut self, id: ConnId, conn: &mut Conn, frame: Bytes) -> SendStatus {
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
        conn.sent_code = close.code.map_or(0, u16::from);
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

    pub(super) fn client_mut(&mut self, id: ConnId) -> Option<&mut ClientSide> {
        self.outbound.get_mut(id.slot as usize)?.as_deref_mut()
    }

    /// The upgrade request, while `on_open` runs for an accepted connection.
    pub(crate) fn request(&self) -> Option<&[u8]> {
        (!self.request.is_empty()).then_some(&self.request[..])
    }
}

//! How a message flows from received bytes to the handler: bytes are fed through the session's
//! receiver and each event goes to the handler (`Worker::on_bytes` catches a panic for the
//! whole dispatch of one receive); the panic guards for callbacks made elsewhere.

use super::*;

/// Runs a handler callback that gets the connection, outside the dispatch of received bytes
/// (which `Worker::on_bytes` guards as a whole). A panic in it is caught here and costs only
/// this connection: it is logged with the connection, counted
/// (`sockeye_handler_panics_total`) and the connection closed with 1011; the worker and its
/// other connections go on.
pub(super) fn call<H: Handler>(
    handler: &mut H,
    io: &mut Io,
    id: ConnId,
    conn: &mut Conn,
    f: impl FnOnce(&mut H, &mut WebSocket<'_>),
) {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        f(handler, &mut WebSocket::new(&mut Lent { id, conn, io }));
    }));
    if let Err(panic) = r {
        handler_panicked(io, id, Some(conn), &*panic);
    }
}

/// Runs a handler callback that has no connection to lend (`on_close`, `on_connect_error`);
/// a panic is logged and counted.
pub(super) fn call_detached(io: &Io, id: Option<ConnId>, f: impl FnOnce()) {
    if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        WorkerStats::add(&io.stats().handler_panics, 1);
        tracing::error!(conn = ?id, panic = panic_text(&*panic), "handler panicked");
    }
}

pub(super) fn handler_panicked(
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
pub(super) fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not a string)")
}

/// Feeds received frame bytes to the decoder: first through bytes left over from the last
/// receive (a partial header or control frame), then in place in `data`.
pub(super) fn feed<H: Handler>(
    io: &mut Io,
    handler: &mut H,
    id: ConnId,
    conn: &mut Conn,
    data: &mut [u8],
) {
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
pub(super) fn decode<H: Handler>(
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

pub(super) fn decode_frames<H: Handler>(
    io: &mut Io,
    handler: &mut H,
    id: ConnId,
    conn: &mut Conn,
    buf: &mut [u8],
    scratch: &mut Vec<u8>,
) -> usize {
    let mut used = 0;
    // Asked once per receive; the receiver applies it from the next message on, so a message
    // is delivered entirely the way it started.
    conn.rx.set_streaming(handler.streaming());
    loop {
        if !matches!(conn.state, State::Open | State::Closing) {
            return buf.len();
        }
        let mut inflater = conn.deflate.as_deref_mut().map(|c| Engines {
            conn: c,
            worker: &mut io.deflate,
            id,
        });
        let inflate = inflater.as_mut().map(|i| i as &mut dyn Inflate);
        let mut buffers = &io.buffers;
        let got = match conn
            .rx
            .receive_with(&mut buf[used..], scratch, inflate, Some(&mut buffers))
        {
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
                handler.on_message(&mut WebSocket::new(&mut Lent { id, conn, io }), msg);
            }
            Incoming::Assembled(msg) => {
                WorkerStats::add(&io.stats().messages_in, 1);
                handler.on_message_owned(&mut WebSocket::new(&mut Lent { id, conn, io }), msg);
            }
            Incoming::Chunk(chunk) => {
                if chunk.last {
                    WorkerStats::add(&io.stats().messages_in, 1);
                }
                handler.on_chunk(&mut WebSocket::new(&mut Lent { id, conn, io }), chunk);
            }
            Incoming::Ping(p) => {
                // The session answers (no pong once the queue is past its hard bound).
                io.respond(id, conn, &Incoming::Ping(p));
                if conn.state == State::Open {
                    handler.on_ping(&mut WebSocket::new(&mut Lent { id, conn, io }), p);
                }
            }
            Incoming::Pong(p) => {
                if conn.state == State::Open {
                    handler.on_pong(&mut WebSocket::new(&mut Lent { id, conn, io }), p);
                }
            }
            Incoming::Close(c) => {
                let slot = crate::hub::close_slot(c.code.map(u16::from));
                WorkerStats::add(&io.stats().close_received[slot], 1);
                // The session answers with the same code (none if none came) unless we
                // closed first; the socket closes once that is out.
                io.respond(id, conn, &Incoming::Close(c));
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
pub(super) fn fail(io: &mut Io, id: ConnId, conn: &mut Conn, e: sockeye_codec::Error) {
    tracing::debug!(error = %e, "protocol error");
    let close = Close {
        code: Some(e.close_code()),
        reason: "",
    };
    io.start_close(id, conn, close);
    conn.close_after_send = true;
}

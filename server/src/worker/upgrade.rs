//! The server side of the upgrade: the request checked against the policy, the 101 (or an
//! HTTP error, or a plain page), and the connection opened.

use super::*;
use crate::handler::{Admission, UpgradeRequest};

/// Tries to complete the upgrade from the request bytes received so far.
pub(super) fn handshake<H: Handler>(io: &mut Io, handler: &mut H, id: ConnId, conn: &mut Conn) {
    let mut input = conn.input.take().expect("handshake bytes");
    let max = io.config.max_request;
    let mut headers = [EMPTY_HEADER; 64];
    let outcome = match Request::parse(&input.pending, &mut headers) {
        Ok(Status::Partial { .. }) if input.pending.len() > max => {
            Some(Err(Refused::status(431, "request too large")))
        }
        Ok(Status::Partial { .. }) => None,
        Err(HandshakeError::TooManyHeaders) => Some(Err(Refused::status(431, "too many headers"))),
        Err(e @ (HandshakeError::NotUpgrade | HandshakeError::MethodNotGet)) => {
            match crate::http::respond(&io.config, &io.hub, &input.pending) {
                Some(response) => {
                    WorkerStats::add(&io.stats().http_requests, 1);
                    conn.output().stage().extend_from_slice(&response);
                    finish_refused(io, id, conn);
                    return;
                }
                None => Some(Err(Refused::status(e.status(), e.to_string()))),
            }
        }
        Err(e) => Some(Err(Refused::status(e.status(), e.to_string()))),
        Ok(Status::Complete((req, len))) => Some(
            accept(io, &req)
                .and_then(|a| admit(io, handler, conn, &req).map(|()| a))
                .map(|a| (a, len)),
        ),
    };
    let Some(outcome) = outcome else {
        conn.input = Some(input);
        return;
    };
    match outcome {
        Err(Refused { status, body, why }) => {
            let mut resp = vec![0u8; 512 + body.len()];
            let n = handshake::write_error_response(&mut resp, status, &body)
                .expect("sized for the body");
            tracing::debug!(status, %body, "handshake refused");
            io.stats().refuse(why);
            conn.output().stage().extend_from_slice(&resp[..n]);
            finish_refused(io, id, conn);
        }
        Ok((accepted, len)) => {
            WorkerStats::add(&io.stats().accepted, 1);
            conn.output().stage().extend_from_slice(&accepted.response);
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
pub(super) fn finish_refused(io: &mut Io, id: ConnId, conn: &mut Conn) {
    conn.state = State::Refused;
    conn.close_after_send = true;
    io.mark_dirty(id, conn);
    io.time
        .timers
        .schedule(id.slot, id.epoch, TimerKind::Close, io.time.close_ticks);
}

/// The upgrade completed (either role): the connection opens, the handler hears of it, and the
/// frames the peer sent right behind its request or response (after `len` bytes of `pending`)
/// are decoded.
pub(super) fn open<H: Handler>(
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
    conn.clock = Clock::new(io.time.now);
    io.schedule_session(id, conn);
    if !conn.outbound() {
        std::mem::swap(&mut io.request, pending);
    }
    call(handler, io, id, conn, |h, ws| h.on_open(ws));
    if !conn.outbound() {
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
pub(super) fn enable_deflate(conn: &mut Conn, state: ConnDeflate) {
    conn.deflate = Some(Box::new(state));
    let config = conn.rx.config().compression(true);
    conn.rx.set_config(config);
}

/// An accepted upgrade: the 101 response and what it agreed to.
pub(super) struct Accepted {
    pub(super) response: Vec<u8>,
    /// Index + 1 of the chosen subprotocol (0: none).
    pub(super) proto: u8,
    pub(super) deflate: Option<Agreement>,
}

/// An upgrade refused: the HTTP status and body sent, and the reason counted.
pub(super) struct Refused {
    status: u16,
    body: String,
    why: Refusal,
}

impl Refused {
    /// Refused for the reason `status` stands for.
    fn status(status: u16, body: impl Into<String>) -> Refused {
        Refused {
            status,
            body: body.into(),
            why: Refusal::from_status(status),
        }
    }
}

/// The longest body a handler's refusal sends.
const MAX_REFUSAL_BODY: usize = 4096;

/// Asks the handler's [`Handler::on_upgrade`]; a panic in it refuses with 500 (logged and
/// counted like any handler panic) and costs nothing else.
fn admit<H: Handler>(
    io: &Io,
    handler: &mut H,
    conn: &Conn,
    req: &Request<'_, '_>,
) -> Result<(), Refused> {
    let view = UpgradeRequest {
        req,
        socket: std::os::fd::AsFd::as_fd(&conn.fd),
    };
    let decided =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler.on_upgrade(&view)));
    let (status, mut body) = match decided {
        Ok(Admission::Accept) => return Ok(()),
        Ok(Admission::Refuse { status, body }) => (status, body),
        Err(panic) => {
            WorkerStats::add(&io.stats().handler_panics, 1);
            tracing::error!(peer = ?view.peer_addr(), panic = dispatch::panic_text(&*panic), "on_upgrade panicked; refusing with 500");
            (500, "internal error".into())
        }
    };
    if body.len() > MAX_REFUSAL_BODY {
        let mut cut = MAX_REFUSAL_BODY;
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        body.truncate(cut);
    }
    Err(Refused {
        status: if (400..=599).contains(&status) {
            status
        } else {
            500
        },
        body,
        why: Refusal::Handler,
    })
}

/// Validates the request against the policy and writes the 101 response.
pub(super) fn accept(io: &Io, req: &Request<'_, '_>) -> Result<Accepted, Refused> {
    let config = &io.config;
    if io.hub.shutdown.load(Ordering::Acquire) {
        return Err(Refused::status(503, "the server is shutting down"));
    }
    if let Some(max) = config.max_connections
        && io.hub.open_connections() >= max as u64
    {
        return Err(Refused {
            status: 503,
            body: "the server holds as many connections as it may".into(),
            why: Refusal::ConnectionLimit,
        });
    }
    let origins: Vec<&str> = config.allowed_origins.iter().map(String::as_str).collect();
    // A connection stores its subprotocol as an index + 1 in a byte: the first 255 count.
    let supported: Vec<&str> = config
        .subprotocols
        .iter()
        .take(usize::from(u8::MAX))
        .map(String::as_str)
        .collect();
    let mut policy = Policy::new()
        .origins(&origins)
        .protocols(&supported)
        .deflate(io.deflate.config.as_ref());
    if config.insecure_skip_origin_check {
        policy = policy.insecure_any_origin();
    }
    let upgrade = policy
        .decide(req)
        .map_err(|r| Refused::status(r.status(), r.to_string()))?;
    let mut response = vec![0u8; 512];
    let n = upgrade
        .write_response(req, &policy, &mut response)
        .map_err(|e| Refused::status(500, e.to_string()))?;
    response.truncate(n);
    Ok(Accepted {
        response,
        proto: upgrade
            .protocol
            .and_then(|i| u8::try_from(i + 1).ok())
            .unwrap_or(0),
        deflate: upgrade.deflate,
    })
}

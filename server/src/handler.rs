//! The application API: a [`Handler`] per worker, called with a [`WebSocket`] handle.

use std::io;
use std::net::SocketAddr;

use sockeye_codec::session::Prepared;
use sockeye_codec::{Close, CloseCode, EncodeError};

use crate::id::ConnId;

pub use sockeye_codec::session::{Chunk, Message, OwnedMessage};

/// What a send did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a send can be refused (Closed, Dropped) or ask the sender to wait (Backpressure)"]
pub enum SendStatus {
    /// Queued; the queue is within its bound.
    Queued,
    /// Queued, and the queue is now over its bound: reading from this connection pauses until
    /// it drains ([`Handler::on_drain`] is called then).
    Backpressure,
    /// Not queued: the connection is closing (or was closed now, for passing
    /// [`Config::max_send_queue`](crate::Config::max_send_queue) under
    /// [`SlowPolicy::Close`](crate::SlowPolicy::Close)).
    Closed,
    /// Not queued: it would have passed
    /// [`Config::max_send_queue`](crate::Config::max_send_queue), and the policy is
    /// [`SlowPolicy::Drop`](crate::SlowPolicy::Drop).
    Dropped,
}

/// The application, one instance per worker thread. Every method has a default that does
/// nothing, so a handler implements only what it needs.
///
/// **Callbacks run on the worker's event loop.** While one runs, no other connection of that
/// worker is read from or written to: a blocking call (a database query, a file read, a
/// `sleep`) stalls every one of them for as long as it takes. Work that may block goes to
/// another thread, and its result comes back through a [`Poster`](crate::Poster) (see its
/// example; `server/tests/hardening.rs` tests exactly that shape).
///
/// A callback that panics is caught at the callback: its connection is closed with 1011
/// (internal error), the panic is logged with the connection and counted
/// (`sockeye_handler_panics_total`), and the worker goes on with its other connections. The
/// handler's own state is whatever the panic left it in.
pub trait Handler: 'static {
    /// An upgrade request passed the server's own checks (origin, version, limits) and is
    /// about to be answered with 101: the place to authenticate, or to refuse with an HTTP
    /// status before any WebSocket exists (401 without credentials, 403, 429 when a client
    /// opens too many). By default every request is admitted.
    ///
    /// ```
    /// use sockeye_server::{Admission, Handler, Message, UpgradeRequest, WebSocket};
    ///
    /// struct Authenticated;
    /// impl Handler for Authenticated {
    ///     fn on_upgrade(&mut self, req: &UpgradeRequest<'_>) -> Admission {
    ///         match req.header("authorization") {
    ///             Some("Bearer let-me-in") => Admission::Accept,
    ///             Some(_) => Admission::refuse(403, "wrong token"),
    ///             None => Admission::refuse(401, "send a bearer token"),
    ///         }
    ///     }
    ///     fn on_message(&mut self, ws: &mut WebSocket<'_>, msg: Message<'_>) {
    ///         if let Message::Text(t) = msg {
    ///             let _ = ws.send_text(t);
    ///         }
    ///     }
    /// }
    /// ```
    fn on_upgrade(&mut self, req: &UpgradeRequest<'_>) -> Admission {
        let _ = req;
        Admission::Accept
    }

    /// A connection completed its handshake.
    fn on_open(&mut self, ws: &mut WebSocket<'_>) {
        let _ = ws;
    }

    /// A whole message arrived (unless [`Handler::streaming`]).
    fn on_message(&mut self, ws: &mut WebSocket<'_>, msg: Message<'_>) {
        let _ = (ws, msg);
    }

    /// A whole message that arrived in several pieces and was assembled in a buffer of its own,
    /// handed over with that buffer, so the handler can keep or send it without a copy (see
    /// [`WebSocket::send_owned`]). By default it is lent to [`Handler::on_message`].
    fn on_message_owned(&mut self, ws: &mut WebSocket<'_>, msg: OwnedMessage) {
        self.on_message(ws, msg.as_message());
    }

    /// Whether messages are delivered piece by piece to [`Handler::on_chunk`] instead of whole
    /// to [`Handler::on_message`] (for messages too large to hold). Asked as bytes arrive; the
    /// answer applies from the next message's first frame, so a message is always delivered
    /// entirely one way.
    fn streaming(&self) -> bool {
        false
    }

    /// A piece of a message arrived (only when [`Handler::streaming`]).
    fn on_chunk(&mut self, ws: &mut WebSocket<'_>, chunk: Chunk<'_>) {
        let _ = (ws, chunk);
    }

    /// A ping arrived; the pong has already been queued.
    fn on_ping(&mut self, ws: &mut WebSocket<'_>, payload: &[u8]) {
        let _ = (ws, payload);
    }

    /// A pong arrived.
    fn on_pong(&mut self, ws: &mut WebSocket<'_>, payload: &[u8]) {
        let _ = (ws, payload);
    }

    /// The connection is gone. `code` is the peer's close code when its close frame arrived
    /// (`None` for a close frame without one); when it did not, the code of the close frame
    /// this end sent (a protocol error's 1002/1007/1009, 1001 at shutdown, 1008 for a slow
    /// peer, the handler's own), and [`CloseCode::ABNORMAL`] (1006) when the connection
    /// dropped with no close frame either way.
    fn on_close(&mut self, id: ConnId, code: Option<CloseCode>, reason: &str) {
        let _ = (id, code, reason);
    }

    /// The send queue drained below half its bound after [`SendStatus::Backpressure`].
    fn on_drain(&mut self, ws: &mut WebSocket<'_>) {
        let _ = ws;
    }

    /// An outbound connection ([`Connect`](crate::Connect)) failed before it opened: the TCP
    /// connect, a refused or invalid handshake, or the handshake timeout.
    fn on_connect_error(&mut self, token: u64, error: std::io::Error) {
        let _ = (token, error);
    }
}

/// A message framed once, to send to many connections without copying (broadcast).
///
/// ```
/// use sockeye_server::PreparedMessage;
/// let m = PreparedMessage::text("hello");
/// assert_eq!(m.wire_len(), 7); // 2-byte header + payload
/// ```
#[derive(Debug, Clone)]
pub struct PreparedMessage(pub(crate) Prepared);

impl PreparedMessage {
    /// A text message.
    pub fn text(s: &str) -> Self {
        PreparedMessage(Prepared::text(s))
    }

    /// A binary message.
    pub fn binary(b: &[u8]) -> Self {
        PreparedMessage(Prepared::binary(b))
    }

    /// Bytes on the wire (header and payload).
    pub fn wire_len(&self) -> usize {
        self.0.wire_len()
    }
}

/// One connection as an engine lends it to a handler callback. Each engine implements this
/// over its own connection state and worker; handlers see it only through [`WebSocket`], so
/// the API names no engine type and one `Handler` runs on any engine.
///
/// The checks that do not depend on the engine (a sendable close code, the reason's length,
/// a ping's 125 bytes) are made by [`WebSocket`] before it calls in.
pub(crate) trait Connection {
    fn id(&self) -> ConnId;
    /// `Connect::token` of an outbound connection.
    fn token(&self) -> Option<u64>;
    fn send(&mut self, msg: Message<'_>) -> SendStatus;
    fn send_owned(&mut self, msg: OwnedMessage) -> SendStatus;
    fn send_prepared(&mut self, msg: &Prepared) -> SendStatus;
    /// `payload` is at most 125 bytes.
    fn ping(&mut self, payload: &[u8]) -> SendStatus;
    /// `close` carries a sendable code and a reason of at most 123 bytes.
    fn close(&mut self, close: Close<'_>);
    fn close_now(&mut self);
    fn subprotocol(&self) -> Option<&str>;
    fn compressed(&self) -> bool;
    fn peer_addr(&self) -> io::Result<SocketAddr>;
    /// The upgrade request's bytes, during `on_open` of an accepted connection.
    fn request(&self) -> Option<&[u8]>;
    fn set_read_limit(&mut self, bytes: u64);
    fn buffered_amount(&self) -> usize;
    fn publish(&mut self, msg: &Prepared) -> bool;
    fn publish_to(&mut self, room: &str, msg: &Prepared) -> bool;
    fn join(&mut self, room: &str) -> Result<(), JoinError>;
    fn leave(&mut self);
    fn subscribed(&self) -> bool;
}

/// A handle to one connection, lent to the handler for the duration of a callback.
pub struct WebSocket<'w> {
    conn: &'w mut dyn Connection,
}

impl<'w> WebSocket<'w> {
    /// Lends `conn` to a callback (what an engine does).
    #[inline]
    pub(crate) fn new(conn: &'w mut dyn Connection) -> Self {
        WebSocket { conn }
    }

    /// This connection's id, valid until [`Handler::on_close`]; use it with a
    /// [`Poster`](crate::Poster) to reach the connection from another thread.
    pub fn id(&self) -> ConnId {
        self.conn.id()
    }

    /// The token of an outbound connection ([`Connect::token`](crate::Connect::token));
    /// `None` for an accepted one.
    pub fn token(&self) -> Option<u64> {
        self.conn.token()
    }

    /// Queues a text message.
    #[inline]
    pub fn send_text(&mut self, text: &str) -> SendStatus {
        self.conn.send(Message::Text(text))
    }

    /// Queues a binary message.
    #[inline]
    pub fn send_binary(&mut self, data: &[u8]) -> SendStatus {
        self.conn.send(Message::Binary(data))
    }

    /// Queues a message whose buffer is handed over: the payload is sent from it, not copied
    /// (echoing or forwarding a large message).
    pub fn send_owned(&mut self, msg: OwnedMessage) -> SendStatus {
        self.conn.send_owned(msg)
    }

    /// Queues a message framed once for many connections (no copy).
    pub fn send_prepared(&mut self, msg: &PreparedMessage) -> SendStatus {
        self.conn.send_prepared(&msg.0)
    }

    /// Queues a ping (payload of at most 125 bytes; longer is cut).
    pub fn ping(&mut self, payload: &[u8]) -> SendStatus {
        self.conn.ping(&payload[..payload.len().min(125)])
    }

    /// Starts the close handshake with `code` and `reason` (cut to 123 bytes at a character
    /// boundary); the socket closes when the peer answers or after the close timeout.
    ///
    /// A code that may not be sent (RFC 6455 §7.4: below 1000, 1004–1006, 1015, 1016–2999, 5000
    /// and up; see [`CloseCode::is_sendable`]) is refused with
    /// [`EncodeError::InvalidCloseCode`] and nothing is sent. Closing a connection that is
    /// already closing does nothing.
    ///
    /// ```
    /// use sockeye_server::{CloseCode, Handler, WebSocket};
    /// struct Strict;
    /// impl Handler for Strict {
    ///     fn on_open(&mut self, ws: &mut WebSocket<'_>) {
    ///         assert!(ws.close(CloseCode(1005), "").is_err()); // reserved: never on the wire
    ///         ws.close(CloseCode::POLICY_VIOLATION, "no thanks").unwrap();
    ///     }
    /// }
    /// ```
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), EncodeError> {
        if !code.is_sendable() {
            return Err(EncodeError::InvalidCloseCode(code.0));
        }
        let mut end = reason.len().min(sockeye_codec::MAX_REASON_LEN);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        self.conn.close(Close {
            code: Some(code),
            reason: &reason[..end],
        });
        Ok(())
    }

    /// Closes the socket now, without a close handshake.
    pub fn close_now(&mut self) {
        self.conn.close_now();
    }

    /// The negotiated subprotocol, if any.
    pub fn subprotocol(&self) -> Option<&str> {
        self.conn.subprotocol()
    }

    /// Whether permessage-deflate was negotiated (then messages from the threshold up are sent
    /// compressed, and compressed ones from the peer arrive inflated).
    pub fn compressed(&self) -> bool {
        self.conn.compressed()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.conn.peer_addr()
    }

    /// The path (with its query) of the upgrade request, during [`Handler::on_open`] of an
    /// accepted connection; `None` elsewhere (the request is not kept after the upgrade).
    ///
    /// ```
    /// use sockeye_server::{Handler, WebSocket};
    /// struct Rooms;
    /// impl Handler for Rooms {
    ///     fn on_open(&mut self, ws: &mut WebSocket<'_>) {
    ///         if ws.request_path().is_some_and(|p| p.starts_with("/news")) {
    ///             ws.subscribe();
    ///         }
    ///     }
    /// }
    /// ```
    pub fn request_path(&self) -> Option<&str> {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        req.parse(self.conn.request()?).ok()?;
        req.path
    }

    /// The value of the upgrade request's first header named `name` (ASCII case-insensitive),
    /// during [`Handler::on_open`] of an accepted connection; `None` elsewhere.
    pub fn request_header(&self, name: &str) -> Option<&[u8]> {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        req.parse(self.conn.request()?).ok()?;
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// Sets this connection's largest accepted message (from the next frame header on).
    pub fn set_read_limit(&mut self, bytes: u64) {
        self.conn.set_read_limit(bytes);
    }

    /// Bytes queued for sending and not yet sent.
    pub fn buffered_amount(&self) -> usize {
        self.conn.buffered_amount()
    }

    /// Publishes a message, framed once, to every member of this connection's room on every
    /// worker (this connection included). Members get each publisher's messages in the order
    /// they were published. Returns false, and sends nothing, if this connection is in no
    /// room (use [`WebSocket::publish_to`] to speak into a room without joining it).
    pub fn publish(&mut self, msg: &PreparedMessage) -> bool {
        self.conn.publish(&msg.0)
    }

    /// Publishes to the room named `room` (looked up in the process-wide room table, which
    /// [`WebSocket::publish`] does not need); false if it has no members in this process (when
    /// clustered, the other nodes get it all the same).
    pub fn publish_to(&mut self, room: &str, msg: &PreparedMessage) -> bool {
        self.conn.publish_to(room, &msg.0)
    }

    /// Joins the default room (`""`), which every `subscribe`d connection shares.
    pub fn subscribe(&mut self) {
        // The default room always exists and its name is empty: joining it cannot fail.
        let _ = self.conn.join("");
    }

    /// Joins room `room` (leaving the one this connection was in): from now on it gets what
    /// is published there. Rooms exist while they have members. Fails when the name is over
    /// [`Config::max_room_name`](crate::Config::max_room_name) or a new room would be one
    /// over [`Config::max_rooms`](crate::Config::max_rooms);
    /// [`JoinError::close_code`] says how to refuse the peer.
    ///
    /// ```
    /// use sockeye_server::{Handler, WebSocket};
    /// /// Each URL path is a room.
    /// struct Rooms;
    /// impl Handler for Rooms {
    ///     fn on_open(&mut self, ws: &mut WebSocket<'_>) {
    ///         let path = ws.request_path().unwrap_or("/").to_owned();
    ///         if let Err(e) = ws.join(&path) {
    ///             ws.close(e.close_code(), &e.to_string());
    ///         }
    ///     }
    /// }
    /// ```
    pub fn join(&mut self, room: &str) -> Result<(), JoinError> {
        self.conn.join(room)
    }

    /// Leaves this connection's room, if it is in one.
    pub fn leave(&mut self) {
        self.conn.leave();
    }

    /// Whether this connection is in a room (the default room included).
    pub fn subscribed(&self) -> bool {
        self.conn.subscribed()
    }
}

/// Why a connection could not join a room.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JoinError {
    /// The name is longer than [`Config::max_room_name`](crate::Config::max_room_name).
    NameTooLong {
        /// The limit, in bytes.
        max: usize,
    },
    /// The process has [`Config::max_rooms`](crate::Config::max_rooms) rooms already.
    TooManyRooms {
        /// The limit.
        max: usize,
    },
}

impl JoinError {
    /// The close code to refuse the connection with: 1008 (policy violation) for a name over
    /// the limit, 1013 (try again later) when the process is out of rooms.
    pub fn close_code(&self) -> sockeye_codec::CloseCode {
        match self {
            JoinError::NameTooLong { .. } => sockeye_codec::CloseCode::POLICY_VIOLATION,
            JoinError::TooManyRooms { .. } => sockeye_codec::CloseCode::TRY_AGAIN_LATER,
        }
    }
}

impl std::fmt::Display for JoinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JoinError::NameTooLong { max } => write!(f, "room name over {max} bytes"),
            JoinError::TooManyRooms { max } => write!(f, "room limit ({max}) reached"),
        }
    }
}

impl std::error::Error for JoinError {}

/// An upgrade request, as [`Handler::on_upgrade`] sees it before the 101.
pub struct UpgradeRequest<'r> {
    pub(crate) req: &'r sockeye_codec::handshake::Request<'r, 'r>,
    /// The connection's socket, asked for the peer address only when the hook wants it (a
    /// syscall the default hook does not pay).
    pub(crate) socket: std::os::fd::BorrowedFd<'r>,
}

impl<'r> UpgradeRequest<'r> {
    /// The request target as sent, e.g. `/chat/lobby?token=x`.
    pub fn target(&self) -> &'r str {
        self.req.path
    }

    /// The path of the target, without its query: `/chat/lobby`.
    pub fn path(&self) -> &'r str {
        self.req.path.split(['?', '#']).next().unwrap_or_default()
    }

    /// The query of the target, without the `?`: `token=x` (undecoded).
    pub fn query(&self) -> Option<&'r str> {
        let (_, q) = self.req.path.split_once('?')?;
        Some(q.split('#').next().unwrap_or_default())
    }

    /// The first header named `name` (ASCII case-insensitive), if its value is UTF-8.
    pub fn header(&self, name: &str) -> Option<&'r str> {
        self.req
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
    }

    /// Every header, in order, as name and raw value.
    pub fn headers(&self) -> impl Iterator<Item = (&'r str, &'r [u8])> + '_ {
        self.req.headers.iter().map(|h| (h.name, h.value))
    }

    /// The `Origin` header, if any (browsers always send one).
    pub fn origin(&self) -> Option<&'r str> {
        self.req.origin
    }

    /// The subprotocols the client offers, in its order.
    pub fn protocols(&self) -> &[&'r str] {
        &self.req.protocols
    }

    /// The peer's address (the proxy's, behind one).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        socket2::SockRef::from(&self.socket)
            .peer_addr()
            .ok()?
            .as_socket()
    }
}

/// What [`Handler::on_upgrade`] decides.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Admission {
    /// Answer 101: the connection opens.
    Accept,
    /// Answer with this HTTP status (400–599; others are sent as 500) and a plain-text body
    /// (at most 4 KiB; longer is cut), then close the socket. Counted in `/metrics` as
    /// `handler`.
    Refuse {
        /// The HTTP status.
        status: u16,
        /// The plain-text body.
        body: String,
    },
}

impl Admission {
    /// [`Admission::Refuse`] with `status` and `body`.
    pub fn refuse(status: u16, body: impl Into<String>) -> Admission {
        Admission::Refuse {
            status,
            body: body.into(),
        }
    }
}

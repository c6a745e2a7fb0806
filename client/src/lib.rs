//! The blocking WebSocket client of sockeye: [`dial`] a `ws://` URL and read and write messages
//! on plain threads over `std::net`, in the shape of Go's gorilla/websocket and
//! coder/websocket. Portable: it needs only `std` (no io_uring, no Linux-only calls), and
//! everything a user names is re-exported here. `sockeye-server` re-exports this crate as
//! `sockeye_server::client`.
//!
//! ```no_run
//! use sockeye_client::{self as client, CloseCode, DialOptions, Message};
//!
//! let mut conn = client::dial("ws://127.0.0.1:9001/", &DialOptions::new())?;
//! conn.write_text("hello")?;
//! assert_eq!(conn.read()?, Message::Text("hello".into()));
//!
//! // A second thread can write (and ping) while this one reads.
//! let writer = conn.writer().clone();
//! std::thread::spawn(move || writer.write_binary(&[1, 2, 3]));
//! assert_eq!(conn.read()?, Message::Binary(vec![1, 2, 3]));
//!
//! // Messages of any size stream through `next_reader` and `next_writer` as `std::io` types.
//! conn.close(CloseCode::NORMAL, "done")?;
//! # Ok::<(), client::Error>(())
//! ```
//!
//! One thread reads (the [`Conn`]); any number write through clones of its [`Writer`]. Reading
//! handles control frames: pings are answered, pongs complete [`Writer::ping`], and the peer's
//! close frame is answered and reported as [`Error::Closed`] with its code and reason.

mod conn;
mod error;
mod handshake;
mod masks;
mod tunnel;
mod writer;

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use sockeye_codec::DEFAULT_MAX_MESSAGE;
use sockeye_codec::handshake::HandshakeError;

pub use conn::{Conn, MessageReader};
pub use error::{CloseError, Error, MAX_ERROR_BODY, close_status};
pub use tunnel::{DEFAULT_TUNNEL_MESSAGE, Tunnel, TunnelWriter};
pub use writer::{CLOSE_TIMEOUT, DEFAULT_FRAGMENT, MessageWriter, Writer};

pub use handshake::{Agreed, ClientHandshake, MAX_RESPONSE, Reply};
pub use masks::OsMaskKeys;
pub use sockeye_codec::deflate::DeflateConfig;
pub use sockeye_codec::{CloseCode, DataKind};

/// permessage-deflate modes, as in coder/websocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// No compression is offered or accepted (the default).
    #[default]
    Disabled,
    /// Context takeover both ways where the peer allows it: the best ratio for streams of
    /// similar messages. Busy connections hold zlib engines; idle ones only their LZ77
    /// history (at most 32 KiB each way), the engines going back to a per-worker pool.
    ContextTakeover,
    /// Each message compressed on its own, both ways: nothing is held between messages.
    NoContextTakeover,
}

impl Compression {
    /// The codec policy for this mode (`None` when disabled).
    pub fn deflate_config(self) -> Option<DeflateConfig> {
        match self {
            Compression::Disabled => None,
            Compression::ContextTakeover => Some(DeflateConfig::new()),
            Compression::NoContextTakeover => Some(DeflateConfig::new().no_context_takeover()),
        }
    }
}

/// `config` with `threshold` applied if one was set.
#[doc(hidden)] // for sockeye-server's Config (the same threshold rule); not a stable API
pub fn with_threshold(
    config: Option<DeflateConfig>,
    threshold: Option<usize>,
) -> Option<DeflateConfig> {
    let d = config?;
    Some(match threshold {
        Some(t) => d.threshold(t),
        None => d,
    })
}

use conn::{Accepted, RecvBuf};

/// A whole message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message (valid UTF-8).
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

impl Message {
    /// Text or binary.
    #[must_use]
    pub fn kind(&self) -> DataKind {
        match self {
            Message::Text(_) => DataKind::Text,
            Message::Binary(_) => DataKind::Binary,
        }
    }

    /// The payload bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b,
        }
    }

    /// The payload bytes, owned.
    #[must_use]
    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            Message::Text(t) => t.into_bytes(),
            Message::Binary(b) => b,
        }
    }
}

/// Options for [`dial`]; `DialOptions::new()` has the defaults.
///
/// ```
/// use std::time::Duration;
/// use sockeye_client::DialOptions;
/// let options = DialOptions::new()
///     .protocol("chat")
///     .header("Authorization", "Bearer abc")
///     .origin("https://example.com")
///     .connect_timeout(Duration::from_secs(3))
///     .read_limit(Some(1 << 20));
/// ```
#[derive(Debug, Clone)]
pub struct DialOptions {
    headers: Vec<(String, String)>,
    host: Option<String>,
    origin: Option<String>,
    protocols: Vec<String>,
    connect_timeout: Duration,
    handshake_timeout: Duration,
    read_limit: Option<u64>,
    deflate: Option<DeflateConfig>,
    compression_threshold: Option<usize>,
}

impl Default for DialOptions {
    fn default() -> Self {
        DialOptions::new()
    }
}

impl DialOptions {
    /// Defaults: no extra headers, no subprotocol, 10 s to connect, 10 s for the handshake,
    /// a 16 MiB read limit.
    #[must_use]
    pub fn new() -> Self {
        DialOptions {
            headers: Vec::new(),
            host: None,
            origin: None,
            protocols: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            read_limit: Some(DEFAULT_MAX_MESSAGE),
            deflate: None,
            compression_threshold: None,
        }
    }

    /// Offers permessage-deflate in this mode (default disabled). If the server accepts, messages
    /// from the threshold up ([`DialOptions::compression_threshold`]) are compressed, each into
    /// one frame (a streamed message into frames of its fragment size), and compressed messages
    /// from the server are inflated, with the read limit applying to their inflated size.
    #[must_use]
    pub fn compression(mut self, mode: Compression) -> Self {
        self.deflate = mode.deflate_config();
        self
    }

    /// Messages shorter than this are sent uncompressed (default: 128 bytes with context
    /// takeover, 512 without).
    #[must_use]
    pub fn compression_threshold(mut self, bytes: usize) -> Self {
        self.compression_threshold = Some(bytes);
        self
    }

    /// Full control over permessage-deflate: windows, level, threshold (`None` disables it).
    #[must_use]
    pub fn deflate(mut self, config: Option<DeflateConfig>) -> Self {
        self.deflate = config;
        self
    }

    /// Refuses extra headers that belong to the upgrade itself (`Upgrade`, `Connection`,
    /// `Sec-WebSocket-*`), for `dial` and for outbound connections on the event loop alike.
    #[doc(hidden)] // for sockeye-server's Connect (checked when it is made); not a stable API
    pub fn check_headers(&self) -> Result<(), Error> {
        for (name, _) in &self.headers {
            let lower = name.to_ascii_lowercase();
            if matches!(lower.as_str(), "upgrade" | "connection")
                || lower.starts_with("sec-websocket-")
            {
                return Err(Error::Io(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("the {name} header is set by the client"),
                )));
            }
        }
        Ok(())
    }

    /// The permessage-deflate policy these options offer: the [`DialOptions::compression`]
    /// mode or [`DialOptions::deflate`] config, with [`DialOptions::compression_threshold`]
    /// applied (`None`: no offer).
    #[must_use]
    pub fn deflate_config(&self) -> Option<DeflateConfig> {
        with_threshold(self.deflate, self.compression_threshold)
    }

    /// Adds a request header. The headers of the upgrade itself (`Upgrade`, `Connection`,
    /// `Sec-WebSocket-*`) are the client's; `Host` sets [`DialOptions::host`].
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        if name.eq_ignore_ascii_case("host") {
            self.host = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("origin") {
            self.origin = Some(value.to_owned());
        } else {
            self.headers.push((name.to_owned(), value.to_owned()));
        }
        self
    }

    /// Sends this `Host` header instead of the URL's host and port.
    #[must_use]
    pub fn host(mut self, host: &str) -> Self {
        self.host = Some(host.to_owned());
        self
    }

    /// Sends an `Origin` header.
    #[must_use]
    pub fn origin(mut self, origin: &str) -> Self {
        self.origin = Some(origin.to_owned());
        self
    }

    /// Offers a subprotocol (call again for more, in order of preference).
    #[must_use]
    pub fn protocol(mut self, protocol: &str) -> Self {
        self.protocols.push(protocol.to_owned());
        self
    }

    /// The time allowed to establish the TCP connection (all resolved addresses together).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The time allowed for the opening handshake once connected.
    #[must_use]
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The largest message accepted (`None`: no limit); see [`Conn::set_read_limit`].
    #[must_use]
    pub fn read_limit(mut self, limit: Option<u64>) -> Self {
        self.read_limit = limit;
        self
    }
}

/// Where a `ws://` URL points.
///
/// ```
/// use sockeye_client::Target;
/// let t = Target::parse("ws://[::1]:9001/chat?room=1")?;
/// assert_eq!((t.host.as_str(), t.port, t.host_header.as_str(), t.path.as_str()),
///            ("::1", 9001, "[::1]:9001", "/chat?room=1"));
/// # Ok::<(), sockeye_client::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host name or address, without IPv6 brackets.
    pub host: String,
    /// The port (80 when the URL has none).
    pub port: u16,
    /// The `Host` header: the URL's host, and its port when one was given.
    pub host_header: String,
    /// The request target (path and query).
    pub path: String,
}

impl Target {
    /// Parses `ws://host[:port]/path?query` (`http://` is taken as `ws://`); `wss://` is
    /// [`Error::TlsUnsupported`], credentials in the URL are refused.
    pub fn parse(url: &str) -> Result<Target, Error> {
        let uri: http::Uri = url.parse().map_err(|e| Error::Url(format!("{url}: {e}")))?;
        match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("ws") || s.eq_ignore_ascii_case("http") => {}
            Some(s) if s.eq_ignore_ascii_case("wss") || s.eq_ignore_ascii_case("https") => {
                return Err(Error::TlsUnsupported);
            }
            Some(s) => return Err(Error::Url(format!("{url}: scheme {s}:// (use ws://)"))),
            None => return Err(Error::Url(format!("{url}: no scheme (use ws://host/)"))),
        }
        let authority = uri.authority().map(|a| a.as_str()).unwrap_or("");
        if authority.contains('@') {
            return Err(Error::Url(format!(
                "{url}: credentials in the URL are not sent"
            )));
        }
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| Error::Url(format!("{url}: no host")))?;
        let port = uri.port_u16().unwrap_or(80);
        let host_header = match uri.port() {
            Some(p) => format!("{host}:{}", p.as_str()),
            None => host.to_owned(),
        };
        let path = match uri.path_and_query().map(|p| p.as_str()) {
            None | Some("") => "/".to_owned(),
            Some(p) => p.to_owned(),
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        Ok(Target {
            host,
            port,
            host_header,
            path,
        })
    }
}

/// Opens a WebSocket connection to `url` (`ws://host[:port]/path?query`; `http://` is treated
/// as `ws://`, `wss://` is refused with [`Error::TlsUnsupported`]) (Go's `Dial`).
///
/// The response is validated by the codec: status 101, the upgrade headers, the
/// `Sec-WebSocket-Accept` derived from a fresh random key, and a subprotocol only from those
/// offered. A refusal is [`Error::Handshake`] with the HTTP status and the start of the body.
pub fn dial(url: &str, options: &DialOptions) -> Result<Conn, Error> {
    let target = Target::parse(url)?;
    options.check_headers()?; // before connecting
    let stream = connect(&target, options.connect_timeout)?;
    stream.set_nodelay(true)?;
    let deadline = Instant::now() + options.handshake_timeout;
    let (rx, agreed) = handshake(&stream, &target, options, deadline)?;
    stream.set_read_timeout(None)?;
    stream.set_write_timeout(None)?;
    Ok(Conn::new(Accepted {
        stream,
        rx,
        subprotocol: agreed.protocol,
        headers: agreed.headers,
        read_limit: options.read_limit,
        deflate: agreed.deflate,
    })?)
}

fn connect(target: &Target, timeout: Duration) -> Result<TcpStream, Error> {
    let deadline = Instant::now() + timeout;
    let addrs: Vec<SocketAddr> = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| Error::Url(format!("cannot resolve {}: {e}", target.host)))?
        .collect();
    let mut last = None;
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) if e.kind() != io::ErrorKind::TimedOut => Err(Error::Io(e)),
        Some(_) => Err(Error::Timeout("connect")),
        None if Instant::now() >= deadline => Err(Error::Timeout("connect")),
        None => Err(Error::Url(format!(
            "{} resolved to no address",
            target.host
        ))),
    }
}

fn handshake(
    stream: &TcpStream,
    target: &Target,
    options: &DialOptions,
    deadline: Instant,
) -> Result<(RecvBuf, Agreed), Error> {
    let mut random = [0u8; 16];
    getrandom::fill(&mut random).map_err(|e| Error::Io(io::Error::other(e.to_string())))?;
    let hs = ClientHandshake::new(target, options, options.deflate_config(), random)?;
    let mut stream = stream;
    stream.set_write_timeout(Some(left(deadline)?))?;
    stream
        .write_all(hs.request())
        .map_err(|e| timeout_or(e, "handshake"))?;

    let mut rx = RecvBuf::new();
    loop {
        stream.set_read_timeout(Some(left(deadline)?))?;
        match rx.fill(&mut stream) {
            Ok(0) => {
                return Err(Error::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection during the handshake",
                )));
            }
            Ok(_) => {}
            Err(e) => return Err(timeout_or(e, "handshake")),
        }
        match hs.response(&rx.buf[..rx.end])? {
            None => continue,
            Some(Reply::Refused { status, len, body }) => {
                let body = error_body(&mut rx, len, body, stream, deadline);
                return Err(Error::Handshake {
                    status: Some(status),
                    error: HandshakeError::UnexpectedStatus(status),
                    body,
                });
            }
            Some(Reply::Accepted(agreed)) => {
                rx.start = agreed.len;
                if rx.start == rx.end {
                    rx.start = 0;
                    rx.end = 0;
                }
                return Ok((rx, agreed));
            }
        }
    }
}

/// At most [`MAX_ERROR_BODY`] bytes of a refusal's body: what arrived with the headers, and
/// more until the declared length, the end of the connection, or the handshake deadline.
fn error_body(
    rx: &mut RecvBuf,
    header_len: usize,
    want: usize,
    mut stream: &TcpStream,
    deadline: Instant,
) -> Vec<u8> {
    while rx.end - header_len < want && rx.end < rx.buf.len() {
        let Ok(left) = left(deadline) else { break };
        if stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match rx.fill(&mut stream) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let end = rx.end.min(header_len + want);
    rx.buf[header_len..end].to_vec()
}

fn left(deadline: Instant) -> Result<Duration, Error> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(Error::Timeout("handshake"))
    } else {
        Ok(left)
    }
}

fn timeout_or(e: io::Error, what: &'static str) -> Error {
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Error::Timeout(what),
        _ => Error::Io(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = Target::parse("ws://127.0.0.1:9001/chat?room=1").unwrap();
        assert_eq!(
            (
                t.host.as_str(),
                t.port,
                t.host_header.as_str(),
                t.path.as_str()
            ),
            ("127.0.0.1", 9001, "127.0.0.1:9001", "/chat?room=1")
        );
        let t = Target::parse("http://localhost").unwrap();
        assert_eq!(
            (t.port, t.host_header.as_str(), t.path.as_str()),
            (80, "localhost", "/")
        );
        let t = Target::parse("ws://[::1]:8080").unwrap();
        assert_eq!(
            (t.host.as_str(), t.host_header.as_str()),
            ("::1", "[::1]:8080")
        );
        assert!(matches!(
            Target::parse("wss://example.com/"),
            Err(Error::TlsUnsupported)
        ));
        assert!(matches!(
            Target::parse("https://example.com/"),
            Err(Error::TlsUnsupported)
        ));
        assert!(matches!(
            Target::parse("ftp://example.com/"),
            Err(Error::Url(_))
        ));
        assert!(matches!(Target::parse("example.com/x"), Err(Error::Url(_))));
        assert!(matches!(
            Target::parse("ws://user:pw@host/"),
            Err(Error::Url(_))
        ));
        assert!(matches!(Target::parse("ws:///path"), Err(Error::Url(_))));
    }
}

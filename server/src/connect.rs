//! Outbound connections on the event loop: the client role for high-volume use (load
//! generation, fan-in from many upstreams), with the same [`Handler`](crate::Handler) API as
//! accepted connections.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use crate::client::{self, DialOptions, Error};

/// An outbound WebSocket connection for a worker to open (client role).
///
/// The worker connects, sends the upgrade request with a fresh random key, validates the
/// response with the codec, and then runs the connection through its handler like an accepted
/// one: [`Handler::on_open`](crate::Handler::on_open), messages, close. Everything it sends is
/// masked with a fresh key per frame. A connection that fails before it opens is reported to
/// [`Handler::on_connect_error`](crate::Handler::on_connect_error) with its token.
///
/// ```no_run
/// use sockeye_server::{Config, Connect, Handler, Message, Server, WebSocket};
///
/// struct Hello;
/// impl Handler for Hello {
///     fn on_open(&mut self, ws: &mut WebSocket<'_>) {
///         ws.send_text("hello");
///     }
///     fn on_message(&mut self, ws: &mut WebSocket<'_>, msg: Message<'_>) {
///         println!("connection {:?} got {} bytes", ws.token(), msg.as_bytes().len());
///     }
/// }
///
/// // Workers without a listener: outbound connections only.
/// let config = Config::new("127.0.0.1:0".parse().unwrap()).listen(false);
/// let runtime = Server::start(config, |_| Hello).unwrap();
/// for token in 0..100 {
///     runtime.connect(Connect::new("ws://127.0.0.1:9001/").unwrap().token(token)).unwrap();
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Connect {
    pub(crate) addr: SocketAddr,
    /// Where the URL points (its `Host` header and path go in the request).
    pub(crate) target: client::Target,
    /// Headers, subprotocols and origin: the same options type as [`client::dial`]'s, checked
    /// the same way (the upgrade's own headers are refused).
    pub(crate) options: DialOptions,
    pub(crate) source: Option<IpAddr>,
    pub(crate) token: u64,
}

impl Connect {
    /// A connection to `url` (`ws://host[:port]/path`); the host is resolved now, and the first
    /// address is used.
    pub fn new(url: &str) -> Result<Connect, Error> {
        Connect::with_options(url, DialOptions::new())
    }

    /// A connection to `url` with the request headers, subprotocols and origin of `options`
    /// (what [`client::dial`] takes). Compression follows the server's
    /// [`Config::compression`](crate::Config::compression), and the read limit its
    /// [`Config::max_message`](crate::Config::max_message): those options are not used here.
    pub fn with_options(url: &str, options: DialOptions) -> Result<Connect, Error> {
        let target = client::Target::parse(url)?;
        options.check_headers()?;
        let addr = (target.host.as_str(), target.port)
            .to_socket_addrs()
            .map_err(|e| Error::Url(format!("cannot resolve {}: {e}", target.host)))?
            .next()
            .ok_or_else(|| Error::Url(format!("{} resolved to no address", target.host)))?;
        Ok(Connect {
            addr,
            target,
            options,
            source: None,
            token: 0,
        })
    }

    /// A number the handler sees as [`WebSocket::token`](crate::WebSocket::token) and in
    /// [`Handler::on_connect_error`](crate::Handler::on_connect_error); the connection runs on
    /// worker `token % workers`.
    #[must_use]
    pub fn token(mut self, token: u64) -> Self {
        self.token = token;
        self
    }

    /// Offers a subprotocol (call again for more, in order of preference).
    #[must_use]
    pub fn protocol(mut self, protocol: &str) -> Self {
        self.options = self.options.protocol(protocol);
        self
    }

    /// Adds a request header, as [`DialOptions::header`] does: `Host` and `Origin` set those;
    /// the upgrade's own headers (`Upgrade`, `Connection`, `Sec-WebSocket-*`) make
    /// [`Server::connect`](crate::Server::connect) fail with `InvalidInput`.
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.options = self.options.header(name, value);
        self
    }

    /// Sends an `Origin` header.
    #[must_use]
    pub fn origin(mut self, origin: &str) -> Self {
        self.options = self.options.origin(origin);
        self
    }

    /// Connects from this local address (e.g. rotating over 127.0.0.x to open more than one
    /// port range's worth of connections to one server).
    #[must_use]
    pub fn source(mut self, ip: IpAddr) -> Self {
        self.source = Some(ip);
        self
    }

    /// The server's address.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

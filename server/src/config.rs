//! Server configuration: one builder for everything.

use std::net::SocketAddr;
use std::time::Duration;

use crate::client::Compression;
use crate::client::with_threshold;
use sockeye_codec::deflate::DeflateConfig;

/// What to do with a broadcast subscriber whose send queue is over its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowPolicy {
    /// Close it with 1008 (policy violation).
    Close,
    /// Skip messages for it until its queue drains.
    Drop,
}

/// The I/O engine under the workers ([`Config::engine`]). The handler, rooms, broadcast, the
/// cluster, the pages, `/metrics` and `/healthz` work the same on each; only the system calls
/// differ.
///
/// ```
/// use sockeye_server::{Config, Engine};
/// let config = Config::new("127.0.0.1:0".parse().unwrap()).engine(Engine::Poll);
/// assert_eq!(config.engine_choice(), Engine::Poll);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Engine {
    /// io_uring when the kernel allows it (a ring with a provided-buffer ring can be set up),
    /// else [`Engine::Poll`], said once in the log with the reason. The default. The
    /// environment variable `SOCKEYE_ENGINE` (`uring` or `poll`) overrides the choice, so
    /// an operator can pick the engine of any sockeye application without a rebuild.
    Auto,
    /// io_uring only (Linux 6.0 or later): multishot accept and receive into provided buffers,
    /// one `sendmsg` per connection per loop turn. Starting fails if the kernel refuses it.
    Uring,
    /// Readiness polling (epoll, through `mio`) with the same loop: one non-blocking `recv` per
    /// readable connection into the worker's buffers, one `sendmsg` per connection per loop
    /// turn. Runs where io_uring is refused (Docker's default seccomp profile, kernels with
    /// io_uring disabled or too old for it).
    Poll,
}

impl Engine {
    /// `auto`, `uring` or `poll`.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Auto => "auto",
            Engine::Uring => "uring",
            Engine::Poll => "poll",
        }
    }
}

impl std::str::FromStr for Engine {
    type Err = String;

    fn from_str(s: &str) -> Result<Engine, String> {
        match s {
            "auto" => Ok(Engine::Auto),
            "uring" | "io_uring" | "io-uring" => Ok(Engine::Uring),
            "poll" | "epoll" => Ok(Engine::Poll),
            _ => Err(format!(
                "unknown engine {s:?} (expected auto, uring or poll)"
            )),
        }
    }
}

/// Configuration of a [`Server`](crate::Server), built with chained setters.
///
/// ```
/// use std::time::Duration;
/// use sockeye_server::Config;
///
/// let config = Config::new("127.0.0.1:9001".parse().unwrap())
///     .workers(2)
///     .max_message(1 << 20)
///     .allow_origin("*.example.com")
///     .subprotocol("chat")
///     .idle_timeout(Duration::from_secs(60));
/// assert_eq!(config.worker_count(), 2);
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) bind: SocketAddr,
    pub(crate) engine: Engine,
    pub(crate) listen: bool,
    pub(crate) reuse_port: bool,
    pub(crate) workers: usize,
    pub(crate) max_message: u64,
    pub(crate) max_request: usize,
    pub(crate) allowed_origins: Vec<String>,
    pub(crate) insecure_skip_origin_check: bool,
    pub(crate) subprotocols: Vec<String>,
    pub(crate) handshake_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) close_timeout: Duration,
    pub(crate) max_backpressure: usize,
    /// Hard bound on queued output (`None`: four times `max_backpressure`).
    pub(crate) max_send_queue: Option<usize>,
    pub(crate) slow_policy: SlowPolicy,
    pub(crate) recv_buffers: u16,
    pub(crate) recv_buffer_size: usize,
    pub(crate) stats_interval: Option<Duration>,
    pub(crate) deflate: Option<DeflateConfig>,
    pub(crate) compression_threshold: Option<usize>,
    pub(crate) pages: Vec<Page>,
    pub(crate) metrics: bool,
    pub(crate) metrics_path: bool,
    pub(crate) max_rooms: usize,
    pub(crate) max_connections: Option<usize>,
    pub(crate) max_room_name: usize,
    #[cfg(feature = "cluster")]
    pub(crate) cluster: Option<ClusterConfig>,
}

/// A fixed document served to plain (non-upgrade) `GET` and `HEAD` requests for its path.
#[derive(Debug, Clone)]
pub(crate) struct Page {
    pub(crate) path: String,
    pub(crate) content_type: String,
    pub(crate) body: bytes::Bytes,
}

impl Config {
    /// Defaults: one worker per core, 16 MiB messages, 8 KiB requests, same-origin only, 10 s
    /// handshake timeout, 30 s idle (then a ping, then 30 s more), 5 s close timeout, 1 MiB of
    /// backpressure, slow broadcast subscribers closed, 128 receive buffers of 64 KiB per worker.
    pub fn new(bind: SocketAddr) -> Config {
        Config {
            bind,
            engine: Engine::Auto,
            listen: true,
            reuse_port: false,
            workers: std::thread::available_parallelism().map_or(1, usize::from),
            max_message: sockeye_codec::DEFAULT_MAX_MESSAGE,
            max_request: 8 << 10,
            allowed_origins: Vec::new(),
            insecure_skip_origin_check: false,
            subprotocols: Vec::new(),
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            close_timeout: Duration::from_secs(5),
            max_backpressure: 1 << 20,
            max_send_queue: None,
            slow_policy: SlowPolicy::Close,
            recv_buffers: 128,
            recv_buffer_size: 64 << 10,
            stats_interval: None,
            deflate: None,
            compression_threshold: None,
            pages: Vec::new(),
            metrics: true,
            metrics_path: true,
            max_rooms: 10_000,
            max_connections: None,
            max_room_name: 256,
            #[cfg(feature = "cluster")]
            cluster: None,
        }
    }

    /// permessage-deflate mode (default disabled). Messages below the threshold
    /// ([`Config::compression_threshold`]) go out uncompressed, and a compressed message always
    /// leaves as one frame. Broadcasts ([`WebSocket::publish`](crate::WebSocket::publish)) are
    /// framed once for every subscriber and so go out uncompressed.
    pub fn compression(mut self, mode: Compression) -> Self {
        self.deflate = mode.deflate_config();
        self
    }

    /// Messages shorter than this are sent uncompressed (default: 128 bytes with context
    /// takeover, 512 without). Only matters with compression on.
    pub fn compression_threshold(mut self, bytes: usize) -> Self {
        self.compression_threshold = Some(bytes);
        self
    }

    /// Full control over permessage-deflate: windows, level, threshold (`None` disables it).
    pub fn deflate(mut self, config: Option<DeflateConfig>) -> Self {
        self.deflate = config;
        self
    }

    /// The permessage-deflate policy in effect, threshold applied.
    pub(crate) fn deflate_config(&self) -> Option<DeflateConfig> {
        with_threshold(self.deflate, self.compression_threshold)
    }

    /// The I/O engine (default [`Engine::Auto`]).
    pub fn engine(mut self, engine: Engine) -> Self {
        self.engine = engine;
        self
    }

    /// The engine asked for (what [`Server::engine`](crate::Server::engine) says is the one
    /// that runs).
    pub fn engine_choice(&self) -> Engine {
        self.engine
    }

    /// Whether the workers listen on the bind address (default true). Without a listener they
    /// run outbound connections only ([`Server::connect`](crate::Server::connect)).
    pub fn listen(mut self, listen: bool) -> Self {
        self.listen = listen;
        self
    }

    /// Whether the server may share its port with listeners already there (default false).
    ///
    /// The workers' listeners always use `SO_REUSEPORT` among themselves, and the kernel would
    /// let any other process of the same user join them and take a share of new connections.
    /// So by default [`Server::start`](crate::Server::start) first checks that nothing listens
    /// on the address and fails with [`std::io::ErrorKind::AddrInUse`] if something does.
    /// With `true` it joins them instead: that is the restart that never leaves the port
    /// without a listener (start the new server with `reuse_port(true)`, then shut the old one
    /// down; while it drains, new connections the kernel still hands it get 503, and once it
    /// has exited the new server takes them all).
    ///
    /// ```
    /// let config = sockeye_server::Config::new("127.0.0.1:9001".parse().unwrap()).reuse_port(true);
    /// assert!(config.reuses_port());
    /// ```
    pub fn reuse_port(mut self, share: bool) -> Self {
        self.reuse_port = share;
        self
    }

    /// Whether [`Config::reuse_port`] is on.
    pub fn reuses_port(&self) -> bool {
        self.reuse_port
    }

    /// Number of worker threads, each with its own ring and listener (at least 1).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// The number of workers configured.
    pub fn worker_count(&self) -> usize {
        self.workers
    }

    /// Largest message accepted (checked on each frame header); larger ones close with 1009.
    /// 0 is refused at start.
    pub fn max_message(mut self, bytes: u64) -> Self {
        self.max_message = bytes;
        self
    }

    /// Largest upgrade request (header block) accepted; larger ones get 431.
    pub fn max_request(mut self, bytes: usize) -> Self {
        self.max_request = bytes;
        self
    }

    /// Allows cross-origin requests whose origin matches `pattern` (a host glob such as
    /// `*.example.com`, or `https://*.example.com` to match the scheme too). Same-origin
    /// requests and requests without `Origin` are always allowed. A pattern that can never
    /// match (a path, as in `https://example.com/`; an empty one) is refused at start.
    pub fn allow_origin(mut self, pattern: impl Into<String>) -> Self {
        self.allowed_origins.push(pattern.into());
        self
    }

    /// Accepts every origin. Only for development: it lets any web page talk to the server
    /// with the user's cookies.
    pub fn insecure_skip_origin_check(mut self, skip: bool) -> Self {
        self.insecure_skip_origin_check = skip;
        self
    }

    /// Adds a supported subprotocol; earlier ones are preferred. A name that is not an HTTP
    /// token is refused at start.
    pub fn subprotocol(mut self, name: impl Into<String>) -> Self {
        self.subprotocols.push(name.into());
        self
    }

    /// Time a client has to complete its upgrade request.
    pub fn handshake_timeout(mut self, t: Duration) -> Self {
        self.handshake_timeout = t;
        self
    }

    /// Silence after which the server pings; after as long again without a pong (or any other
    /// byte) it closes with 1001. Zero turns the keepalive off.
    pub fn idle_timeout(mut self, t: Duration) -> Self {
        self.idle_timeout = t;
        self
    }

    /// How long our close frame waits for the peer's before the socket is closed.
    pub fn close_timeout(mut self, t: Duration) -> Self {
        self.close_timeout = t;
        self
    }

    /// Bound on bytes queued for sending per connection: over it, sends report
    /// [`SendStatus::Backpressure`](crate::SendStatus::Backpressure) and reading from the
    /// connection pauses until the queue drains to half of it.
    pub fn max_backpressure(mut self, bytes: usize) -> Self {
        self.max_backpressure = bytes;
        self
    }

    /// Hard bound on bytes queued for sending per connection (default: four times
    /// [`Config::max_backpressure`]). Sends from timers, [`Poster`](crate::Poster) tasks or
    /// other connections can outrun a peer that does not read even while its reading is
    /// paused; a send that would pass this bound is handled by [`Config::slow_policy`]
    /// instead of queued: the connection is closed with 1008 ([`SlowPolicy::Close`], the
    /// send reports [`SendStatus::Closed`](crate::SendStatus::Closed)) or the message is
    /// dropped ([`SlowPolicy::Drop`], [`SendStatus::Dropped`](crate::SendStatus::Dropped)).
    /// A message larger than the bound still goes out when the queue is empty.
    pub fn max_send_queue(mut self, bytes: usize) -> Self {
        self.max_send_queue = Some(bytes);
        self
    }

    /// The hard bound on queued output (see [`Config::max_send_queue`]).
    pub(crate) fn send_queue_bound(&self) -> usize {
        self.max_send_queue
            .unwrap_or(self.max_backpressure.saturating_mul(4))
            .max(self.max_backpressure)
    }

    /// What happens to a connection over its bounds: a broadcast subscriber over the
    /// backpressure bound, and any connection whose queue would pass
    /// [`Config::max_send_queue`].
    pub fn slow_policy(mut self, policy: SlowPolicy) -> Self {
        self.slow_policy = policy;
        self
    }

    /// Provided receive buffers per worker (a power of two) and their size.
    pub fn recv_buffers(mut self, count: u16, size: usize) -> Self {
        // The kernel takes at most 2^15 entries in a buffer ring; 0 would be no ring at all.
        self.recv_buffers = count.clamp(1, 1 << 15).next_power_of_two();
        self.recv_buffer_size = size.max(4096);
        self
    }

    /// Serves `body` as `content_type` to plain `GET` (and `HEAD`) requests for `path` (the
    /// query string is ignored), on the WebSocket port; an upgrade request for the same path is
    /// still an upgrade. Other plain requests get 426 Upgrade Required. `sockeye serve` uses it
    /// for its demo page.
    ///
    /// ```
    /// use sockeye_server::Config;
    /// let config = Config::new("127.0.0.1:9001".parse().unwrap())
    ///     .page("/", "text/html; charset=utf-8", "<!doctype html><p>hello</p>");
    /// ```
    pub fn page(
        mut self,
        path: impl Into<String>,
        content_type: impl Into<String>,
        body: impl Into<bytes::Bytes>,
    ) -> Self {
        let path = path.into();
        self.pages.retain(|p| p.path != path);
        self.pages.push(Page {
            path,
            content_type: content_type.into(),
            body: body.into(),
        });
        self
    }

    /// Whether plain `GET /metrics` (Prometheus text format: connections, handshakes accepted
    /// and refused by reason, messages and bytes each way, close codes sent and received,
    /// backpressure, read-buffer memory; per-worker counters summed when scraped) and
    /// `GET /healthz` (200 while accepting, 503 once shutting down) are answered. Default on.
    pub fn metrics(mut self, on: bool) -> Self {
        self.metrics = on;
        self
    }

    /// Whether `GET /metrics` is answered on the WebSocket port when [`Config::metrics`] is on
    /// (default true). Off, only `/healthz` is, and the metrics are served elsewhere through
    /// [`Server::metrics_handle`](crate::Server::metrics_handle), as `sockeye serve
    /// --metrics-bind` does on its own address.
    pub fn metrics_path(mut self, on: bool) -> Self {
        self.metrics_path = on;
        self
    }

    /// Most rooms that may exist at once in the process (default 10,000; the default room is
    /// not counted). A connection that would create one more is refused with 1013 by the
    /// built-in broadcast handler. 0 is refused at start.
    pub fn max_rooms(mut self, n: usize) -> Self {
        self.max_rooms = n;
        self
    }

    /// Most WebSocket connections open at once in the process (default: no limit but the
    /// descriptor limit). Past it, upgrades are refused with 503 and counted in `/metrics` as
    /// `connection_limit`; plain HTTP (`/healthz`, `/metrics`, pages) is still answered.
    /// Workers check the count as they accept, so the process can pass it by at most one
    /// connection per other worker. 0 is refused at start.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = Some(n);
        self
    }

    /// Longest room name, in bytes (default 256); a longer one is refused with 1008 by the
    /// built-in broadcast handler.
    pub fn max_room_name(mut self, bytes: usize) -> Self {
        self.max_room_name = bytes;
        self
    }

    /// Joins a cluster through NATS: room messages published here reach the rooms' members on
    /// every node, and theirs reach the members here (see [`ClusterConfig`]).
    /// Without NATS the node still serves its local rooms, and reconnects in the background.
    #[cfg(feature = "cluster")]
    pub fn cluster(mut self, cluster: ClusterConfig) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// Log a one-line summary (connections, messages/s) at this interval.
    pub fn stats_interval(mut self, every: Option<Duration>) -> Self {
        self.stats_interval = every;
        self
    }

    /// The settings that cannot work, refused by [`Server::start`](crate::Server::start) with
    /// [`std::io::ErrorKind::InvalidInput`] and a message naming the setting, instead of a
    /// server that refuses every message or every browser.
    pub(crate) fn check(&self) -> std::io::Result<()> {
        use sockeye_codec::handshake::{is_token, origin_pattern_problem};
        let bad = |msg: String| Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, msg));
        if self.max_message == 0 {
            return bad(
                "max message 0 would refuse every message; it must be at least 1 byte".into(),
            );
        }
        if self.max_rooms == 0 {
            return bad(
                "max rooms 0 would let no connection join a room; it must be at least 1".into(),
            );
        }
        if self.max_connections == Some(0) {
            return bad(
                "max connections 0 would refuse every connection; it must be at least 1".into(),
            );
        }
        if self.max_room_name == 0 {
            return bad(
                "max room name 0 would refuse every room name; it must be at least 1 byte".into(),
            );
        }
        if self.max_request < 64 {
            return bad(format!(
                "max request {} bytes is too small for any upgrade request; it must be at least 64",
                self.max_request
            ));
        }
        for p in &self.subprotocols {
            if !is_token(p) {
                return bad(format!(
                    "subprotocol {p:?} is not an HTTP token (letters, digits and !#$%&'*+-.^_`|~)"
                ));
            }
        }
        for p in &self.allowed_origins {
            if let Some(why) = origin_pattern_problem(p) {
                return bad(format!("origin pattern {p:?} can never match: {why}"));
            }
        }
        Ok(())
    }
}

/// Where and how to join a cluster (feature `cluster`).
///
/// ```
/// use sockeye_server::{ClusterConfig, Config};
/// let cluster = ClusterConfig::new("nats://127.0.0.1:4222")
///     .url("nats://user:secret@10.0.0.2:4222")
///     .subject_prefix("chat.rooms");
/// let config = Config::new("127.0.0.1:9001".parse().unwrap()).cluster(cluster);
/// ```
#[cfg(feature = "cluster")]
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub(crate) urls: Vec<String>,
    pub(crate) credentials: Option<std::path::PathBuf>,
    pub(crate) prefix: String,
    pub(crate) queue: usize,
    pub(crate) node_id: Option<String>,
}

#[cfg(feature = "cluster")]
impl ClusterConfig {
    /// A cluster reached through the NATS server at `url` (`nats://[user:pass@]host:port`).
    pub fn new(url: impl Into<String>) -> Self {
        ClusterConfig {
            urls: vec![url.into()],
            credentials: None,
            prefix: "sockeye.room".into(),
            queue: 1 << 16,
            node_id: None,
        }
    }

    /// Another seed server of the same NATS cluster.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.urls.push(url.into());
        self
    }

    /// Authenticates with a NATS `.creds` file (JWT and NKey seed).
    pub fn credentials_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.credentials = Some(path.into());
        self
    }

    /// The subject prefix rooms live under (default `sockeye.room`); nodes of one cluster
    /// must agree on it.
    pub fn subject_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Messages waiting to go to NATS before further ones are dropped (default 65,536).
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue = n.max(1);
        self
    }

    /// This node's id, sent in the `Sockeye-Node` header of what it publishes (default: 16
    /// random hex digits).
    pub fn node_id(mut self, id: impl Into<String>) -> Self {
        self.node_id = Some(id.into());
        self
    }
}

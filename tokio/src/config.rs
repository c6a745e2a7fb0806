//! What a stream and the server handshake allow.

use std::time::Duration;

use sockeye_client::{Compression, DeflateConfig};
use sockeye_codec::DEFAULT_MAX_MESSAGE;
use sockeye_codec::handshake::Policy;

/// Limits, timeouts and (for [`accept`](crate::accept)) the upgrade policy.
///
/// ```
/// use std::time::Duration;
/// use sockeye_tokio::{Compression, Config};
/// let config = Config::new()
///     .max_message(Some(1 << 20))
///     .protocol("chat.v2")
///     .allow_origin("https://*.example.com")
///     .compression(Compression::ContextTakeover)
///     .keepalive(Some(Duration::from_secs(30)));
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) max_message: Option<u64>,
    pub(crate) max_send_queue: usize,
    pub(crate) write_buffer: usize,
    pub(crate) keepalive: Option<Duration>,
    pub(crate) close_timeout: Duration,
    pub(crate) protocols: Vec<String>,
    pub(crate) origins: Vec<String>,
    pub(crate) any_origin: bool,
    pub(crate) deflate: Option<DeflateConfig>,
    pub(crate) handshake_timeout: Duration,
    pub(crate) max_request: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}

impl Config {
    /// Messages up to the codec's default limit (64 MiB), 64 MiB of queued output at most,
    /// no keepalive, 5 s for the close handshake; for `accept`: same-origin browsers only, no
    /// subprotocol, no compression, 10 s and 16 KiB for the upgrade request.
    #[must_use]
    pub fn new() -> Self {
        Config {
            max_message: Some(DEFAULT_MAX_MESSAGE),
            max_send_queue: 64 << 20,
            write_buffer: 128 << 10,
            keepalive: None,
            close_timeout: Duration::from_secs(5),
            protocols: Vec::new(),
            origins: Vec::new(),
            any_origin: false,
            deflate: None,
            handshake_timeout: Duration::from_secs(10),
            max_request: 16 << 10,
        }
    }

    /// The largest message (and frame) accepted; a larger one closes the connection with
    /// 1009. `None`: no limit.
    #[must_use]
    pub fn max_message(mut self, bytes: Option<u64>) -> Self {
        self.max_message = bytes;
        self
    }

    /// The hard bound on output queued and not yet written: a message that would pass it is
    /// refused ([`Error::Io`](crate::Error::Io) of kind `WouldBlock`) unless the queue is
    /// empty. The `Sink` never gets there: it writes before it accepts more than
    /// [`Config::write_buffer`].
    #[must_use]
    pub fn max_send_queue(mut self, bytes: usize) -> Self {
        self.max_send_queue = bytes.max(1);
        self
    }

    /// How much queued output the `Sink` accepts before `poll_ready` writes it out
    /// (default 128 KiB): larger batches fewer writes.
    #[must_use]
    pub fn write_buffer(mut self, bytes: usize) -> Self {
        self.write_buffer = bytes;
        self
    }

    /// After this long without receiving anything, send a ping; after as long again, close
    /// with 1001 (`None`, the default: no keepalive). Only a stream that is being read sees
    /// time pass.
    #[must_use]
    pub fn keepalive(mut self, idle: Option<Duration>) -> Self {
        self.keepalive = idle.filter(|d| !d.is_zero());
        self
    }

    /// How long our close frame waits for the peer's before the transport is closed.
    #[must_use]
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// (`accept`) A subprotocol to support; call again for more, in order of preference.
    #[must_use]
    pub fn protocol(mut self, protocol: &str) -> Self {
        self.protocols.push(protocol.to_owned());
        self
    }

    /// (`accept`) An origin pattern to accept besides the request's own host (see
    /// `sockeye_codec::handshake::origin_allowed`: `*.example.com`,
    /// `https://app.example.com`).
    #[must_use]
    pub fn allow_origin(mut self, pattern: &str) -> Self {
        self.origins.push(pattern.to_owned());
        self
    }

    /// (`accept`) Accepts every origin: any web page may then connect with its visitors'
    /// cookies (cross-site WebSocket hijacking). For development, or when another layer
    /// checks.
    #[must_use]
    pub fn insecure_skip_origin_check(mut self) -> Self {
        self.any_origin = true;
        self
    }

    /// (`accept`) permessage-deflate in one of the preset modes.
    #[must_use]
    pub fn compression(mut self, mode: Compression) -> Self {
        self.deflate = mode.deflate_config();
        self
    }

    /// (`accept`) Full control over permessage-deflate (`None` refuses it).
    #[must_use]
    pub fn deflate(mut self, config: Option<DeflateConfig>) -> Self {
        self.deflate = config;
        self
    }

    /// (`accept`) The time allowed for the upgrade request to arrive and the answer to go out.
    #[must_use]
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// (`accept`) The largest upgrade request accepted (over it: 431).
    #[must_use]
    pub fn max_request(mut self, bytes: usize) -> Self {
        self.max_request = bytes.max(256);
        self
    }

    /// Runs `f` with the upgrade policy this config describes (for `accept` and the axum
    /// extractor alike).
    pub(crate) fn with_policy<R>(&self, f: impl FnOnce(&Policy<'_>) -> R) -> R {
        let origins: Vec<&str> = self.origins.iter().map(String::as_str).collect();
        let protocols: Vec<&str> = self.protocols.iter().map(String::as_str).collect();
        let mut policy = Policy::new()
            .origins(&origins)
            .protocols(&protocols)
            .deflate(self.deflate.as_ref());
        if self.any_origin {
            policy = policy.insecure_any_origin();
        }
        f(&policy)
    }
}

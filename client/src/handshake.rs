//! The client side of the opening handshake without I/O ([`ClientHandshake`]): the request to
//! write, then the server's response checked against what was offered. The blocking [`dial`],
//! sockeye-server's outbound connections and sockeye-tokio's `connect` all go through it.
//!
//! [`dial`]: crate::dial

use std::time::Duration;

use sockeye_codec::Status;
use sockeye_codec::deflate::{self, Agreement, DeflateConfig};
use sockeye_codec::handshake::{self, ClientRequest, EMPTY_HEADER, HandshakeError, Response};

use crate::{DialOptions, Error, Target};

/// Largest response header block accepted from a server.
pub const MAX_RESPONSE: usize = 16 << 10;

/// One client handshake: the request (with a fresh key), then the response's verdict.
///
/// ```
/// use sockeye_client::{ClientHandshake, DialOptions, Reply, Target};
/// let target = Target::parse("ws://example.com/chat")?;
/// let hs = ClientHandshake::new(&target, &DialOptions::new().protocol("v1"), None, [7; 16])?;
/// assert!(hs.request().starts_with(b"GET /chat HTTP/1.1\r\n"));
///
/// // What a server answers (the accept value is derived from the request's key).
/// let response = b"HTTP/1.1 403 Forbidden\r\ncontent-length: 2\r\n\r\nno";
/// assert!(hs.response(&response[..10])?.is_none()); // not all there yet
/// match hs.response(response)? {
///     Some(Reply::Refused { status, len, body }) => {
///         assert_eq!((status, &response[len..], body), (403, &b"no"[..], 2));
///     }
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), sockeye_client::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ClientHandshake {
    key: [u8; 24],
    request: Vec<u8>,
    protocols: Vec<String>,
    deflate: Option<DeflateConfig>,
    connect_timeout: Duration,
    handshake_timeout: Duration,
    read_limit: Option<u64>,
}

/// What the server answered ([`ClientHandshake::response`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `101 Switching Protocols`, valid for what was offered.
    Accepted(Agreed),
    /// Another status: the connection was refused. The body follows the first `len` bytes.
    Refused {
        /// The HTTP status.
        status: u16,
        /// The length of the response's header block.
        len: usize,
        /// How much of the body to keep for the error: its `Content-Length`, at most
        /// [`MAX_ERROR_BODY`](crate::MAX_ERROR_BODY) (that much when it has none).
        body: usize,
    },
}

/// What an accepted handshake agreed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreed {
    /// The length of the response's header block: frames may follow right behind it.
    pub len: usize,
    /// The subprotocol the server chose (one of those offered).
    pub protocol: Option<String>,
    /// Every response header (values decoded lossily as UTF-8).
    pub headers: Vec<(String, String)>,
    /// permessage-deflate as agreed, with the policy it was offered under.
    pub deflate: Option<(Agreement, DeflateConfig)>,
}

impl ClientHandshake {
    /// The upgrade request for `target` with `options`' headers, origin and subprotocols,
    /// offering permessage-deflate under `deflate` (`None`: no offer), keyed by `random` (16
    /// bytes from a strong source: RFC 6455 §4.1 asks for a fresh random key). Extra headers
    /// that belong to the upgrade itself are refused.
    pub fn new(
        target: &Target,
        options: &DialOptions,
        deflate: Option<DeflateConfig>,
        random: [u8; 16],
    ) -> Result<ClientHandshake, Error> {
        options.check_headers()?;
        let key = handshake::client_key(random);
        let offer = deflate.map(|d| deflate::client_offer(&d));
        let protocols: Vec<&str> = options.protocols.iter().map(String::as_str).collect();
        let headers: Vec<(&str, &str)> = options
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let request = ClientRequest {
            origin: options.origin.as_deref(),
            protocols: &protocols,
            headers: &headers,
            extensions: offer.as_deref(),
            ..ClientRequest::new(
                options.host.as_deref().unwrap_or(&target.host_header),
                &target.path,
                &key,
            )
        };
        let mut out = vec![0u8; 512];
        loop {
            match request.encode(&mut out) {
                Ok(n) => {
                    out.truncate(n);
                    break;
                }
                Err(sockeye_codec::EncodeError::InsufficientSize { required }) => {
                    out.resize(required, 0);
                }
                Err(e) => return Err(Error::Invalid(e)),
            }
        }
        Ok(ClientHandshake {
            key,
            request: out,
            protocols: options.protocols.clone(),
            deflate,
            connect_timeout: options.connect_timeout,
            handshake_timeout: options.handshake_timeout,
            read_limit: options.read_limit,
        })
    }

    /// The time the options allow for the TCP connection.
    #[must_use]
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The time the options allow for the handshake once connected.
    #[must_use]
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// The largest message the options accept (`None`: no limit).
    #[must_use]
    pub fn read_limit(&self) -> Option<u64> {
        self.read_limit
    }

    /// The request to write.
    #[must_use]
    pub fn request(&self) -> &[u8] {
        &self.request
    }

    /// The verdict on the response bytes received so far (`buf` starts with the response):
    /// `None` while its header block is incomplete (a driver gives up at [`MAX_RESPONSE`]
    /// bytes), a refusal with its status, or what the accepted handshake agreed to. A 101
    /// that does not match the request (the accept key, a subprotocol or extension that was
    /// not offered) is [`Error::Handshake`].
    pub fn response(&self, buf: &[u8]) -> Result<Option<Reply>, Error> {
        let invalid = |status, error| Error::Handshake {
            status,
            error,
            body: Vec::new(),
        };
        let mut storage = [EMPTY_HEADER; 64];
        let (response, len) = match Response::parse(buf, &mut storage) {
            Err(e) => return Err(invalid(None, e)),
            Ok(Status::Partial { .. }) if buf.len() >= MAX_RESPONSE => {
                return Err(invalid(None, HandshakeError::TooManyHeaders));
            }
            Ok(Status::Partial { .. }) => return Ok(None),
            Ok(Status::Complete(r)) => r,
        };
        if response.status != 101 {
            let content_length = response
                .header("content-length")
                .and_then(|v| core::str::from_utf8(v).ok())
                .and_then(|v| v.trim().parse::<usize>().ok());
            return Ok(Some(Reply::Refused {
                status: response.status,
                len,
                body: content_length
                    .unwrap_or(crate::MAX_ERROR_BODY)
                    .min(crate::MAX_ERROR_BODY),
            }));
        }
        let offered: Vec<&str> = self.protocols.iter().map(String::as_str).collect();
        let protocol = response
            .validate(&self.key, &offered, self.deflate.is_some())
            .map_err(|e| invalid(Some(101), e))?
            .map(str::to_owned);
        let agreed = match &self.deflate {
            Some(c) => deflate::accept_response(response.extensions(), c)
                .map_err(|e| invalid(Some(101), e))?,
            None => None,
        };
        let headers = response
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_owned(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        Ok(Some(Reply::Accepted(Agreed {
            len,
            protocol,
            headers,
            deflate: agreed.zip(self.deflate),
        })))
    }
}

//! A server's upgrade decision ([`Policy`]): origin, subprotocol and permessage-deflate, and
//! the 101 that says what was agreed.

use core::fmt;

use super::{Request, origin_allowed, select_protocol};
use crate::error::EncodeError;

/// A server's upgrade policy: the origins, subprotocols and permessage-deflate parameters it
/// accepts. [`Policy::decide`] turns a parsed [`Request`] into an [`Upgrade`] (what the 101
/// agrees to) or a [`Refusal`] (the status to refuse with), so every server driver decides the
/// same way.
///
/// ```
/// use sockeye_codec::handshake::{EMPTY_HEADER, Policy, Request};
/// use sockeye_codec::Status;
/// let raw = b"GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n\
///             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
///             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v1, v2\r\n\
///             Origin: https://evil.test\r\n\r\n";
/// let mut headers = [EMPTY_HEADER; 16];
/// let Status::Complete((req, _)) = Request::parse(raw, &mut headers).unwrap() else { panic!() };
///
/// let refused = Policy::new().decide(&req).unwrap_err();
/// assert_eq!((refused.status(), refused.to_string().as_str()),
///            (403, "origin \"https://evil.test\" not allowed"));
///
/// let policy = Policy::new().origins(&["*.test"]).protocols(&["v2", "v1"]);
/// let upgrade = policy.decide(&req).unwrap();
/// assert_eq!(upgrade.protocol, Some(0)); // "v2": the server's preference
/// let mut response = [0u8; 256];
/// let n = upgrade.write_response(&req, &policy, &mut response).unwrap();
/// assert!(response[..n].starts_with(b"HTTP/1.1 101"));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    /// `None`: every origin (no check).
    origins: Option<&'a [&'a str]>,
    protocols: &'a [&'a str],
    #[cfg(feature = "deflate")]
    deflate: Option<&'a crate::deflate::DeflateConfig>,
}

impl Default for Policy<'_> {
    fn default() -> Self {
        Policy::new()
    }
}

impl<'a> Policy<'a> {
    /// Same-origin requests and requests without an `Origin` header only (see
    /// [`origin_allowed`]), no subprotocol, no compression.
    #[must_use]
    pub const fn new() -> Self {
        Policy {
            origins: Some(&[]),
            protocols: &[],
            #[cfg(feature = "deflate")]
            deflate: None,
        }
    }

    /// Also accepts origins matching one of `patterns` (see [`origin_allowed`]).
    #[must_use]
    pub const fn origins(mut self, patterns: &'a [&'a str]) -> Self {
        self.origins = Some(patterns);
        self
    }

    /// Accepts every origin: a browser page on any site may then connect with the user's
    /// cookies (cross-site WebSocket hijacking). For development, or when another layer checks.
    #[must_use]
    pub const fn insecure_any_origin(mut self) -> Self {
        self.origins = None;
        self
    }

    /// The subprotocols supported, in the server's order of preference.
    #[must_use]
    pub const fn protocols(mut self, protocols: &'a [&'a str]) -> Self {
        self.protocols = protocols;
        self
    }

    /// permessage-deflate as `config` allows (`None`: refused, the default).
    #[cfg(feature = "deflate")]
    #[must_use]
    pub const fn deflate(mut self, config: Option<&'a crate::deflate::DeflateConfig>) -> Self {
        self.deflate = config;
        self
    }

    /// What to answer `req`: the origin checked, the subprotocol chosen (the first of ours the
    /// client offered), the compression parameters agreed.
    pub fn decide<'r>(&self, req: &Request<'_, 'r>) -> Result<Upgrade, Refusal<'r>> {
        if let Some(patterns) = self.origins
            && !origin_allowed(req.origin, req.host, patterns)
        {
            return Err(Refusal::Origin(req.origin.unwrap_or_default()));
        }
        let protocol = select_protocol(&req.protocols, self.protocols)
            .and_then(|p| self.protocols.iter().position(|s| *s == p));
        Ok(Upgrade {
            protocol,
            #[cfg(feature = "deflate")]
            deflate: self
                .deflate
                .and_then(|c| crate::deflate::negotiate(req.extensions.iter().copied(), c)),
        })
    }
}

/// What a server's 101 agrees to ([`Policy::decide`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// The chosen subprotocol, as an index into the policy's.
    pub protocol: Option<usize>,
    /// The permessage-deflate parameters agreed, if any.
    #[cfg(feature = "deflate")]
    pub deflate: Option<crate::deflate::Agreement>,
}

impl Upgrade {
    /// The chosen subprotocol's name.
    #[must_use]
    pub fn protocol_name<'a>(&self, policy: &Policy<'a>) -> Option<&'a str> {
        policy.protocols.get(self.protocol?).copied()
    }

    /// Writes the `101 Switching Protocols` response to `req` into `buf` and returns its
    /// length (512 bytes always suffice but for very long subprotocol names).
    pub fn write_response(
        &self,
        req: &Request<'_, '_>,
        policy: &Policy<'_>,
        buf: &mut [u8],
    ) -> Result<usize, EncodeError> {
        #[cfg(feature = "deflate")]
        let extension = self.deflate.map(|a| alloc::string::ToString::to_string(&a));
        #[cfg(feature = "deflate")]
        let extension = extension.as_deref();
        #[cfg(not(feature = "deflate"))]
        let extension = None;
        req.accept(buf, self.protocol_name(policy), extension)
    }
}

/// Why [`Policy::decide`] refused an upgrade request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal<'r> {
    /// The `Origin` header (this value) is neither the request's host nor allowed by a
    /// pattern.
    Origin(&'r str),
}

impl Refusal<'_> {
    /// The HTTP status to refuse with (403 for an origin).
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Origin(_) => 403,
        }
    }
}

impl fmt::Display for Refusal<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Origin(o) => write!(f, "origin {o:?} not allowed"),
        }
    }
}

impl core::error::Error for Refusal<'_> {}

//! permessage-deflate (RFC 7692): negotiation, and per-message compression with a small idle
//! footprint.
//!
//! - [`DeflateConfig`] is one endpoint's policy: context takeover or not, the LZ77 windows, the
//!   compression level and the size below which messages go out uncompressed.
//! - [`negotiate`] (server) picks a response from a request's offers; [`client_offer`] and
//!   [`accept_response`] (client) make the offer and check the server's answer. Both yield an
//!   [`Agreement`], which renders the response header with `Display`.
//! - [`PerMessageDeflate`] compresses outgoing and inflates incoming messages for one connection,
//!   taking zlib engines from a [`Pool`] and giving them back when the connection goes idle
//!   ([`PerMessageDeflate::park`]): an idle connection keeps only the peer's LZ77 history (at
//!   most 32 KiB at 15 window bits), not the hundreds of KiB of zlib engines.
//!
//! ```
//! use sockeye_codec::deflate::{DeflateConfig, negotiate};
//! let config = DeflateConfig::new();
//! let offer = "permessage-deflate; client_max_window_bits, permessage-deflate";
//! let agreed = negotiate([offer], &config).unwrap();
//! assert_eq!(agreed.to_string(), "permessage-deflate");
//! ```

use core::fmt;

use crate::decoder::Role;
use crate::handshake::HandshakeError;

mod stream;

pub use stream::{PerMessageDeflate, Pool};

/// The extension token in `Sec-WebSocket-Extensions`.
pub const EXTENSION: &str = "permessage-deflate";

/// The smallest window zlib compresses with: it cannot write raw deflate with an 8-bit (256-byte)
/// window. When the peer limits us to 8 bits the agreement stands, but our messages go out
/// uncompressed ([`PerMessageDeflate::should_compress`] is false; a message written in parts is
/// stored in deflate's uncompressed blocks, which refer back to nothing), while the peer's are
/// inflated as usual.
pub const MIN_COMPRESS_WINDOW_BITS: u8 = 9;

/// One endpoint's compression policy.
///
/// Window bits are role-neutral: `max_window_bits` bounds the window this endpoint compresses
/// with, `peer_max_window_bits` the window it asks the peer to compress with (which bounds the
/// memory of this endpoint's inflater).
///
/// ```
/// use sockeye_codec::deflate::DeflateConfig;
/// let c = DeflateConfig::new().no_context_takeover().level(6).threshold(1024);
/// assert!(!c.context_takeover());
/// assert_eq!(c.threshold_bytes(), 1024);
/// assert_eq!(DeflateConfig::new().threshold_bytes(), 128);
/// assert_eq!(DeflateConfig::new().no_context_takeover().threshold_bytes(), 512);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateConfig {
    takeover: bool,
    max_window_bits: u8,
    peer_max_window_bits: u8,
    level: u8,
    threshold: Option<usize>,
}

impl DeflateConfig {
    /// Context takeover both ways when the peer allows it, 15-bit windows, level 1 (fastest),
    /// threshold 128 bytes.
    #[must_use]
    pub const fn new() -> Self {
        DeflateConfig {
            takeover: true,
            max_window_bits: 15,
            peer_max_window_bits: 15,
            level: 1,
            threshold: None,
        }
    }

    /// Every message is compressed on its own, both ways (`server_no_context_takeover` and
    /// `client_no_context_takeover`): no history is kept between messages, so nothing is held per
    /// connection between them; compression is weaker for streams of similar small messages.
    #[must_use]
    pub const fn no_context_takeover(mut self) -> Self {
        self.takeover = false;
        self
    }

    /// The largest LZ77 window this endpoint compresses with, as base-2 log (9–15; clamped).
    #[must_use]
    pub const fn max_window_bits(mut self, bits: u8) -> Self {
        self.max_window_bits = clamp(bits, MIN_COMPRESS_WINDOW_BITS, 15);
        self
    }

    /// The largest window this endpoint asks the peer to compress with (8–15; clamped). Smaller
    /// windows make this endpoint's inflater and its idle history smaller.
    #[must_use]
    pub const fn peer_max_window_bits(mut self, bits: u8) -> Self {
        self.peer_max_window_bits = clamp(bits, 8, 15);
        self
    }

    /// The zlib compression level, 0 (store) to 9 (best; clamped). Default 1.
    #[must_use]
    pub const fn level(mut self, level: u8) -> Self {
        self.level = if level > 9 { 9 } else { level };
        self
    }

    /// Messages shorter than this go out uncompressed. Default: 128 bytes with context takeover,
    /// 512 without.
    #[must_use]
    pub const fn threshold(mut self, bytes: usize) -> Self {
        self.threshold = Some(bytes);
        self
    }

    /// Whether this policy allows context takeover.
    #[must_use]
    pub const fn context_takeover(&self) -> bool {
        self.takeover
    }

    /// The compression threshold in effect.
    #[must_use]
    pub const fn threshold_bytes(&self) -> usize {
        match self.threshold {
            Some(t) => t,
            None if self.takeover => 128,
            None => 512,
        }
    }

    /// The compression level.
    #[must_use]
    pub const fn level_value(&self) -> u8 {
        self.level
    }
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig::new()
    }
}

const fn clamp(v: u8, lo: u8, hi: u8) -> u8 {
    if v < lo {
        lo
    } else if v > hi {
        hi
    } else {
        v
    }
}

/// The parameters of one `permessage-deflate` offer or response (RFC 7692 §7.1), as read from
/// the wire: each at most once, window bits 8–15 without leading zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Params {
    /// `server_no_context_takeover`.
    pub server_no_context_takeover: bool,
    /// `client_no_context_takeover`.
    pub client_no_context_takeover: bool,
    /// `server_max_window_bits` (always with a value).
    pub server_max_window_bits: Option<u8>,
    /// `client_max_window_bits`. In an offer it may come without a value, which means "any
    /// value the server picks" and reads as 15.
    pub client_max_window_bits: Option<u8>,
}

impl Params {
    /// Parses the parameters after the extension name (`"; a; b=9"` pieces). `offer` allows a
    /// value-less `client_max_window_bits`. Unknown, repeated or malformed parameters are errors.
    ///
    /// ```
    /// use sockeye_codec::deflate::Params;
    /// let p = Params::parse(&["client_max_window_bits", "server_max_window_bits=\"10\""], true)
    ///     .unwrap();
    /// assert_eq!((p.client_max_window_bits, p.server_max_window_bits), (Some(15), Some(10)));
    /// assert!(Params::parse(&["server_max_window_bits=08"], true).is_err());
    /// assert!(Params::parse(&["client_no_context_takeover", "client_no_context_takeover"], true)
    ///     .is_err());
    /// ```
    pub fn parse<'a>(
        params: impl IntoIterator<Item = &'a &'a str>,
        offer: bool,
    ) -> Result<Params, HandshakeError> {
        let bad = HandshakeError::InvalidExtension;
        let mut p = Params::default();
        for raw in params {
            let (name, value) = match raw.split_once('=') {
                Some((n, v)) => (n.trim(), Some(unquote(v.trim()).ok_or(bad)?)),
                None => (raw.trim(), None),
            };
            let flag = |set: &mut bool| {
                if value.is_some() || core::mem::replace(set, true) {
                    Err(bad)
                } else {
                    Ok(())
                }
            };
            if name.eq_ignore_ascii_case("server_no_context_takeover") {
                flag(&mut p.server_no_context_takeover)?;
            } else if name.eq_ignore_ascii_case("client_no_context_takeover") {
                flag(&mut p.client_no_context_takeover)?;
            } else if name.eq_ignore_ascii_case("server_max_window_bits") {
                let bits = window_bits(value.ok_or(bad)?).ok_or(bad)?;
                if p.server_max_window_bits.replace(bits).is_some() {
                    return Err(bad);
                }
            } else if name.eq_ignore_ascii_case("client_max_window_bits") {
                let bits = match value {
                    Some(v) => window_bits(v).ok_or(bad)?,
                    None if offer => 15,
                    None => return Err(bad),
                };
                if p.client_max_window_bits.replace(bits).is_some() {
                    return Err(bad);
                }
            } else {
                return Err(bad);
            }
        }
        Ok(p)
    }
}

/// A token or the inside of a quoted-string (RFC 7230 §3.2.6; RFC 7692 §7.1 allows both).
/// Escapes never appear in valid values here, so a backslash is refused.
fn unquote(v: &str) -> Option<&str> {
    let inner = match v.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"')?,
        None => v,
    };
    (!inner.is_empty() && !inner.contains(['"', '\\'])).then_some(inner)
}

/// `1*DIGIT` without leading zeros, 8–15.
fn window_bits(v: &str) -> Option<u8> {
    if v.len() > 2 || v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bits: u8 = v.parse().ok()?;
    (8..=15).contains(&bits).then_some(bits)
}

/// Splits `s` at `sep` outside quoted strings.
fn split_unquoted(s: &str, sep: char) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    core::iter::from_fn(move || {
        let s = rest?;
        let (mut quoted, mut escaped) = (false, false);
        for (i, c) in s.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                c if c == sep && !quoted => {
                    rest = Some(&s[i + 1..]);
                    return Some(&s[..i]);
                }
                _ => {}
            }
        }
        rest = None;
        Some(s)
    })
}

/// The most parameters read from one extension (four are defined; more is malformed).
const MAX_PARAMS: usize = 8;

/// Calls `f(name, params)` for each extension listed in `Sec-WebSocket-Extensions` values,
/// stopping at the first `Some`. An extension with too many parameters gets `Err`.
fn each_extension<'a, T>(
    values: impl IntoIterator<Item = &'a str>,
    mut f: impl FnMut(&'a str, Result<&[&'a str], HandshakeError>) -> Option<T>,
) -> Option<T> {
    for value in values {
        for ext in split_unquoted(value, ',') {
            let mut parts = split_unquoted(ext, ';');
            let name = parts.next().unwrap_or_default().trim();
            if name.is_empty() {
                continue; // `a, , b` — empty list elements are allowed (RFC 7230 §7)
            }
            let mut params = heapless::Vec::<&str, MAX_PARAMS>::new();
            let mut overflow = false;
            for p in parts {
                overflow |= params.push(p).is_err();
            }
            let params = if overflow {
                Err(HandshakeError::InvalidExtension)
            } else {
                Ok(&params[..])
            };
            if let Some(t) = f(name, params) {
                return Some(t);
            }
        }
    }
    None
}

/// What both ends agreed on: who keeps context and how large each compressor's window is.
/// `Display` renders it as the server's `Sec-WebSocket-Extensions` response value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreement {
    /// The server compresses each message without the previous ones' history.
    pub server_no_context_takeover: bool,
    /// The client compresses each message without the previous ones' history.
    pub client_no_context_takeover: bool,
    /// The server compresses with at most this window (8–15).
    pub server_max_window_bits: u8,
    /// The client compresses with at most this window (8–15).
    pub client_max_window_bits: u8,
    /// Render `server_max_window_bits` in the response.
    show_server_bits: bool,
    /// Render `client_max_window_bits` in the response.
    show_client_bits: bool,
}

/// One direction of an agreement, from one endpoint's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Direction {
    /// The compressor's window, base-2 log.
    pub window_bits: u8,
    /// History carries over from message to message.
    pub context_takeover: bool,
}

impl Agreement {
    /// The direction `role` sends in: its compressor's window and takeover.
    #[must_use]
    pub const fn outgoing(&self, role: Role) -> Direction {
        match role {
            Role::Server => Direction {
                window_bits: self.server_max_window_bits,
                context_takeover: !self.server_no_context_takeover,
            },
            Role::Client => Direction {
                window_bits: self.client_max_window_bits,
                context_takeover: !self.client_no_context_takeover,
            },
        }
    }

    /// The direction `role` receives in: the peer's compressor, which this end inflates.
    #[must_use]
    pub const fn incoming(&self, role: Role) -> Direction {
        match role {
            Role::Server => self.outgoing(Role::Client),
            Role::Client => self.outgoing(Role::Server),
        }
    }
}

impl fmt::Display for Agreement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(EXTENSION)?;
        if self.server_no_context_takeover {
            f.write_str("; server_no_context_takeover")?;
        }
        if self.client_no_context_takeover {
            f.write_str("; client_no_context_takeover")?;
        }
        if self.show_server_bits {
            write!(
                f,
                "; server_max_window_bits={}",
                self.server_max_window_bits
            )?;
        }
        if self.show_client_bits {
            write!(
                f,
                "; client_max_window_bits={}",
                self.client_max_window_bits
            )?;
        }
        Ok(())
    }
}

/// (Server) picks the first acceptable `permessage-deflate` offer from the request's
/// `Sec-WebSocket-Extensions` values, or `None` to go on without compression.
///
/// Offers that are malformed (unknown, repeated or invalid parameters) are declined and the next
/// one is tried. The server's own policy is added: no context takeover both ways if configured,
/// and smaller windows than the client asked for. An offer that limits the server to an 8-bit
/// window is accepted, with the server's messages then sent uncompressed (see
/// [`MIN_COMPRESS_WINDOW_BITS`]).
///
/// ```
/// use sockeye_codec::deflate::{DeflateConfig, negotiate};
/// let offers = ["permessage-deflate; bogus, \
///                permessage-deflate; server_no_context_takeover; client_max_window_bits"];
/// let a = negotiate(offers, &DeflateConfig::new().peer_max_window_bits(12)).unwrap();
/// assert_eq!(
///     a.to_string(),
///     "permessage-deflate; server_no_context_takeover; client_max_window_bits=12"
/// );
/// assert!(negotiate(["x-webkit-deflate-frame"], &DeflateConfig::new()).is_none());
/// ```
pub fn negotiate<'a>(
    offers: impl IntoIterator<Item = &'a str>,
    config: &DeflateConfig,
) -> Option<Agreement> {
    each_extension(offers, |name, params| {
        if !name.eq_ignore_ascii_case(EXTENSION) {
            return None;
        }
        let offer = Params::parse(params.ok()?, true).ok()?;
        let (server_bits, show_server_bits) = match offer.server_max_window_bits {
            Some(bits) => (bits.min(config.max_window_bits), true),
            None => (config.max_window_bits, config.max_window_bits < 15),
        };
        let (client_bits, show_client_bits) = match offer.client_max_window_bits {
            Some(bits) => {
                let b = bits.min(config.peer_max_window_bits);
                (b, b < 15)
            }
            None => (15, false),
        };
        Some(Agreement {
            server_no_context_takeover: offer.server_no_context_takeover || !config.takeover,
            client_no_context_takeover: offer.client_no_context_takeover || !config.takeover,
            server_max_window_bits: server_bits,
            client_max_window_bits: client_bits,
            show_server_bits,
            show_client_bits,
        })
    })
}

/// The longest offer [`client_offer`] writes.
pub const MAX_OFFER_LEN: usize = 128;

/// (Client) the `Sec-WebSocket-Extensions` value offering permessage-deflate under `config`.
///
/// ```
/// use sockeye_codec::deflate::{DeflateConfig, client_offer};
/// assert_eq!(client_offer(&DeflateConfig::new()).as_str(),
///            "permessage-deflate; client_max_window_bits");
/// assert_eq!(
///     client_offer(&DeflateConfig::new().no_context_takeover().peer_max_window_bits(10)).as_str(),
///     "permessage-deflate; client_max_window_bits; server_max_window_bits=10; \
///      client_no_context_takeover; server_no_context_takeover"
/// );
/// ```
#[must_use]
pub fn client_offer(config: &DeflateConfig) -> heapless::String<MAX_OFFER_LEN> {
    use fmt::Write;
    let mut s = heapless::String::new();
    // Every piece is short and fixed: the capacity holds the longest combination.
    let _ = s.push_str(EXTENSION);
    let _ = match config.max_window_bits {
        15 => s
            .push_str("; client_max_window_bits")
            .map_err(|_| fmt::Error),
        b => write!(s, "; client_max_window_bits={b}"),
    };
    if config.peer_max_window_bits < 15 {
        let _ = write!(
            s,
            "; server_max_window_bits={}",
            config.peer_max_window_bits
        );
    }
    if !config.takeover {
        let _ = s.push_str("; client_no_context_takeover; server_no_context_takeover");
    }
    s
}

/// (Client) checks the server's `Sec-WebSocket-Extensions` values against the offer
/// [`client_offer`] made for `config`: `Ok(None)` if the server declined, the agreement if it
/// accepted, and an error (fail the connection) for anything else — another extension, two
/// answers, malformed or unoffered parameters, a window larger than we allowed. (An 8-bit window
/// for our compressor is accepted: our messages then go out uncompressed.)
///
/// ```
/// use sockeye_codec::deflate::{DeflateConfig, accept_response};
/// use sockeye_codec::Role;
/// let c = DeflateConfig::new();
/// let a = accept_response(["permessage-deflate; client_max_window_bits=10"], &c).unwrap().unwrap();
/// assert_eq!(a.outgoing(Role::Client).window_bits, 10);
/// assert!(accept_response(core::iter::empty::<&str>(), &c).unwrap().is_none());
/// assert!(accept_response(["permessage-deflate; client_max_window_bits"], &c).is_err());
/// ```
pub fn accept_response<'a>(
    values: impl IntoIterator<Item = &'a str>,
    config: &DeflateConfig,
) -> Result<Option<Agreement>, HandshakeError> {
    let mut agreed: Option<Agreement> = None;
    let err = each_extension(values, |name, params| {
        if !name.eq_ignore_ascii_case(EXTENSION) {
            return Some(HandshakeError::UnexpectedExtension);
        }
        if agreed.is_some() {
            return Some(HandshakeError::InvalidExtension);
        }
        let p = match params.and_then(|p| Params::parse(p, false)) {
            Ok(p) => p,
            Err(e) => return Some(e),
        };
        let server_bits = p.server_max_window_bits.unwrap_or(15);
        let client_bits = p.client_max_window_bits.unwrap_or(config.max_window_bits);
        if server_bits > config.peer_max_window_bits || client_bits > config.max_window_bits {
            return Some(HandshakeError::InvalidExtension);
        }
        agreed = Some(Agreement {
            server_no_context_takeover: p.server_no_context_takeover,
            client_no_context_takeover: p.client_no_context_takeover || !config.takeover,
            server_max_window_bits: server_bits,
            client_max_window_bits: client_bits,
            show_server_bits: p.server_max_window_bits.is_some(),
            show_client_bits: p.client_max_window_bits.is_some(),
        });
        None
    });
    match err {
        Some(e) => Err(e),
        None => Ok(agreed),
    }
}

#[cfg(test)]
mod tests;

//! The opening handshake (RFC 6455 §4): parse and answer an upgrade request on the server, build a
//! request and validate the answer on the client.
//!
//! Everything parses with `httparse` into storage the caller provides and writes into caller
//! buffers; lists are fixed-capacity (`heapless`), so the handshake allocates nothing. Policy
//! helpers decide origins ([`origin_allowed`]) and subprotocols ([`select_protocol`]).
//!
//! ```
//! use sockeye_codec::handshake::{self, Request};
//! use sockeye_codec::Status;
//!
//! let raw = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
//!             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
//!             Origin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\n\
//!             Sec-WebSocket-Version: 13\r\n\r\n";
//! let mut headers = [handshake::EMPTY_HEADER; 32];
//! let Status::Complete((req, len)) = Request::parse(raw, &mut headers).unwrap() else {
//!     panic!("partial")
//! };
//! assert_eq!(len, raw.len());
//! assert_eq!(req.path, "/chat");
//! assert!(!handshake::origin_allowed(req.origin, req.host, &[]));
//! assert!(handshake::origin_allowed(req.origin, req.host, &["example.com"]));
//! let protocol = handshake::select_protocol(&req.protocols, &["superchat", "chat"]);
//! assert_eq!(protocol, Some("superchat"));
//!
//! let mut out = [0u8; 256];
//! let n = req.accept(&mut out, protocol, None).unwrap();
//! assert!(out[..n].starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
//! assert!(out[..n].windows(28).any(|w| w == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
//! ```

use core::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::error::EncodeError;
use crate::frame::Status;

/// The `httparse` types that parsing fills, re-exported so callers need no matching version.
pub use httparse::{EMPTY_HEADER, Header as HttpHeader};

/// The GUID appended to the key before hashing (§1.3).
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Most subprotocols read from a request or offered by a client.
pub const MAX_PROTOCOLS: usize = 16;

/// Most `Sec-WebSocket-Extensions` header values kept from a request or response.
pub const MAX_EXTENSION_HEADERS: usize = 8;

/// Why a handshake failed. On the server, [`HandshakeError::status`] is the HTTP status to
/// answer with ([`write_error_response`] writes it).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    /// Not valid HTTP/1.x.
    Malformed,
    /// More header lines than the caller's storage holds.
    TooManyHeaders,
    /// The method is not GET.
    MethodNotGet,
    /// Not HTTP/1.1 or later.
    HttpVersion,
    /// No `Host` header.
    MissingHost,
    /// No `Upgrade: websocket` with `Connection: upgrade`: a plain HTTP request.
    NotUpgrade,
    /// `Sec-WebSocket-Version` missing or not 13.
    UnsupportedVersion,
    /// `Sec-WebSocket-Key` missing, repeated, or not base64 of 16 bytes.
    InvalidKey,
    /// More subprotocols or extension headers than the fixed lists hold, or an empty or
    /// malformed subprotocol token.
    InvalidList,
    /// The `Origin` is not allowed by the server's policy.
    OriginRefused,
    /// (Client) the server answered with this status instead of 101.
    UnexpectedStatus(u16),
    /// (Client) `Sec-WebSocket-Accept` missing or not derived from our key.
    InvalidAccept,
    /// (Client) the server chose a subprotocol we did not offer, or several.
    UnexpectedProtocol,
    /// (Client) the server answered with an extension we did not offer.
    UnexpectedExtension,
    /// (Client) the server's `permessage-deflate` answer is malformed, repeated, or asks for
    /// what we did not offer or cannot do (RFC 7692 §7.1).
    InvalidExtension,
}

impl HandshakeError {
    /// The HTTP status a server answers this error with: 400, 403, 405, 426 or 431.
    #[must_use]
    pub const fn status(self) -> u16 {
        match self {
            HandshakeError::TooManyHeaders => 431,
            HandshakeError::MethodNotGet => 405,
            HandshakeError::NotUpgrade | HandshakeError::UnsupportedVersion => 426,
            HandshakeError::OriginRefused => 403,
            _ => 400,
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Malformed => f.write_str("malformed http request"),
            HandshakeError::TooManyHeaders => f.write_str("too many header fields"),
            HandshakeError::MethodNotGet => f.write_str("websocket upgrade requires GET"),
            HandshakeError::HttpVersion => f.write_str("websocket upgrade requires HTTP/1.1"),
            HandshakeError::MissingHost => f.write_str("missing Host header"),
            HandshakeError::NotUpgrade => f.write_str("not a websocket upgrade request"),
            HandshakeError::UnsupportedVersion => {
                f.write_str("unsupported Sec-WebSocket-Version (13 required)")
            }
            HandshakeError::InvalidKey => f.write_str("missing or invalid Sec-WebSocket-Key"),
            HandshakeError::InvalidList => {
                f.write_str("invalid or too long subprotocol or extension list")
            }
            HandshakeError::OriginRefused => f.write_str("origin not allowed"),
            HandshakeError::UnexpectedStatus(s) => write!(f, "server answered http status {s}"),
            HandshakeError::InvalidAccept => f.write_str("missing or wrong Sec-WebSocket-Accept"),
            HandshakeError::UnexpectedProtocol => {
                f.write_str("server chose a subprotocol that was not offered")
            }
            HandshakeError::UnexpectedExtension => {
                f.write_str("server chose an extension that was not offered")
            }
            HandshakeError::InvalidExtension => {
                f.write_str("invalid or unacceptable permessage-deflate parameters")
            }
        }
    }
}

impl core::error::Error for HandshakeError {}

impl From<httparse::Error> for HandshakeError {
    fn from(e: httparse::Error) -> Self {
        match e {
            httparse::Error::TooManyHeaders => HandshakeError::TooManyHeaders,
            _ => HandshakeError::Malformed,
        }
    }
}

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key` (§4.2.2): base64 of the SHA-1 of
/// the key and the GUID.
///
/// ```
/// // RFC 6455 §1.3
/// let accept = sockeye_codec::handshake::accept_key(b"dGhlIHNhbXBsZSBub25jZQ==");
/// assert_eq!(&accept, b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
#[must_use]
pub fn accept_key(key: &[u8]) -> [u8; 28] {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key);
    sha.update(GUID);
    let mut out = [0u8; 28];
    let n = BASE64
        .encode_slice(sha.digest().bytes(), &mut out)
        .expect("20 bytes encode to 28 base64 characters");
    debug_assert_eq!(n, 28);
    out
}

/// A `Sec-WebSocket-Key` from 16 random bytes (the codec has no RNG: the caller brings them).
#[must_use]
pub fn client_key(random: [u8; 16]) -> [u8; 24] {
    let mut out = [0u8; 24];
    let n = BASE64
        .encode_slice(random, &mut out)
        .expect("16 bytes encode to 24 characters");
    debug_assert_eq!(n, 24);
    out
}

fn valid_key(key: &[u8]) -> bool {
    let mut raw = [0u8; 18];
    key.len() == 24 && BASE64.decode_slice(key, &mut raw) == Ok(16)
}

/// Whether the comma-separated header value `list` contains `token` (ASCII case-insensitive).
fn has_token(list: &[u8], token: &str) -> bool {
    list.split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Whether `s` is an HTTP token (RFC 7230 §3.2.6), as subprotocol names must be: not empty,
/// letters, digits and ``!#$%&'*+-.^_`|~`` only.
///
/// ```
/// use sockeye_codec::handshake::is_token;
/// assert!(is_token("v2.chat"));
/// assert!(!is_token("chat, v2"));
/// assert!(!is_token(""));
/// ```
#[must_use]
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether a header value is safe to write: visible ASCII, spaces and tabs, no CR or LF.
fn is_header_value(s: &str) -> bool {
    s.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

/// A validated WebSocket upgrade request, borrowing the request bytes.
#[derive(Debug, Clone)]
pub struct Request<'h, 'b> {
    /// The request target, e.g. `/chat?room=1`.
    pub path: &'b str,
    /// The `Host` header.
    pub host: &'b str,
    /// The `Sec-WebSocket-Key` (checked: base64 of 16 bytes).
    pub key: &'b str,
    /// The `Origin` header, if any (browsers always send it).
    pub origin: Option<&'b str>,
    /// Offered subprotocols, in the client's order.
    pub protocols: heapless::Vec<&'b str, MAX_PROTOCOLS>,
    /// Each `Sec-WebSocket-Extensions` header value, unparsed.
    pub extensions: heapless::Vec<&'b str, MAX_EXTENSION_HEADERS>,
    /// Every header of the request.
    pub headers: &'h [httparse::Header<'b>],
}

impl<'h, 'b> Request<'h, 'b> {
    /// Parses and validates an upgrade request from the start of `buf` into `headers`, returning
    /// the request and its length (the bytes after it are already WebSocket frames).
    ///
    /// `Partial` means the header block is not complete yet; the caller bounds how much it
    /// buffers (and answers 431 when over its bound).
    pub fn parse(
        buf: &'b [u8],
        headers: &'h mut [httparse::Header<'b>],
    ) -> Result<Status<(Self, usize)>, HandshakeError> {
        let mut req = httparse::Request::new(headers);
        let len = match req.parse(buf)? {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => return Ok(Status::Partial { needed: 1 }),
        };
        if req.method != Some("GET") {
            return Err(HandshakeError::MethodNotGet);
        }
        if req.version != Some(1) {
            return Err(HandshakeError::HttpVersion);
        }
        let path = req.path.ok_or(HandshakeError::Malformed)?;
        let headers: &'h [httparse::Header<'b>] = req.headers;

        let (mut host, mut key, mut origin, mut version) = (None, None, None, None);
        let (mut upgrade, mut connection) = (false, false);
        let mut protocols = heapless::Vec::new();
        let mut extensions = heapless::Vec::new();
        for h in headers {
            let value = h.value;
            let name = h.name;
            if name.eq_ignore_ascii_case("host") {
                host = Some(header_str(value)?);
            } else if name.eq_ignore_ascii_case("upgrade") {
                upgrade |= has_token(value, "websocket");
            } else if name.eq_ignore_ascii_case("connection") {
                connection |= has_token(value, "upgrade");
            } else if name.eq_ignore_ascii_case("sec-websocket-key") {
                if key.replace(header_str(value)?).is_some() {
                    return Err(HandshakeError::InvalidKey);
                }
            } else if name.eq_ignore_ascii_case("sec-websocket-version") {
                version = Some(value);
            } else if name.eq_ignore_ascii_case("origin") {
                origin = Some(header_str(value)?);
            } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
                for p in header_str(value)?.split(',') {
                    let p = p.trim_matches([' ', '\t']);
                    if p.is_empty() {
                        continue;
                    }
                    if !is_token(p) || protocols.push(p).is_err() {
                        return Err(HandshakeError::InvalidList);
                    }
                }
            } else if name.eq_ignore_ascii_case("sec-websocket-extensions")
                && extensions.push(header_str(value)?).is_err()
            {
                return Err(HandshakeError::InvalidList);
            }
        }
        if !(upgrade && connection) {
            return Err(HandshakeError::NotUpgrade);
        }
        let host = host
            .filter(|h| !h.is_empty())
            .ok_or(HandshakeError::MissingHost)?;
        if version.map(<[u8]>::trim_ascii) != Some(b"13") {
            return Err(HandshakeError::UnsupportedVersion);
        }
        let key = key.map(str::trim).ok_or(HandshakeError::InvalidKey)?;
        if !valid_key(key.as_bytes()) {
            return Err(HandshakeError::InvalidKey);
        }
        let request = Request {
            path,
            host,
            key,
            origin,
            protocols,
            extensions,
            headers,
        };
        Ok(Status::Complete((request, len)))
    }

    /// The value of the first header named `name` (ASCII case-insensitive).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        find_header(self.headers, name)
    }

    /// Writes the `101 Switching Protocols` response for this request, with the chosen
    /// subprotocol and extension response if any, and returns its length.
    pub fn accept(
        &self,
        buf: &mut [u8],
        protocol: Option<&str>,
        extensions: Option<&str>,
    ) -> Result<usize, EncodeError> {
        write_accept_response(buf, self.key.as_bytes(), protocol, extensions)
    }
}

/// The value of the first header named `name` (ASCII case-insensitive).
fn find_header<'b>(headers: &[httparse::Header<'b>], name: &str) -> Option<&'b [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

fn header_str(value: &[u8]) -> Result<&str, HandshakeError> {
    core::str::from_utf8(value)
        .map(str::trim)
        .map_err(|_| HandshakeError::Malformed)
}

/// Writes into a caller buffer in two passes: the first measures, the second writes only if
/// everything fits, so an error leaves the buffer untouched.
struct Out<'a> {
    buf: Option<&'a mut [u8]>,
    len: usize,
}

impl Out<'_> {
    fn put(&mut self, s: &[u8]) {
        if let Some(buf) = self.buf.as_deref_mut() {
            buf[self.len..self.len + s.len()].copy_from_slice(s);
        }
        self.len += s.len();
    }
}

fn emit(buf: &mut [u8], mut f: impl FnMut(&mut Out<'_>)) -> Result<usize, EncodeError> {
    let mut measure = Out { buf: None, len: 0 };
    f(&mut measure);
    let required = measure.len;
    if buf.len() < required {
        return Err(EncodeError::InsufficientSize { required });
    }
    let mut out = Out {
        buf: Some(buf),
        len: 0,
    };
    f(&mut out);
    Ok(required)
}

/// Writes a `101 Switching Protocols` response for the request key `key` (use
/// [`Request::accept`] when you have the parsed request).
pub fn write_accept_response(
    buf: &mut [u8],
    key: &[u8],
    protocol: Option<&str>,
    extensions: Option<&str>,
) -> Result<usize, EncodeError> {
    if protocol.is_some_and(|p| !is_token(p)) || extensions.is_some_and(|e| !is_header_value(e)) {
        return Err(EncodeError::InvalidHeaderValue);
    }
    let accept = accept_key(key);
    emit(buf, |o| {
        o.put(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n");
        o.put(b"Sec-WebSocket-Accept: ");
        o.put(&accept);
        o.put(b"\r\n");
        if let Some(p) = protocol {
            o.put(b"Sec-WebSocket-Protocol: ");
            o.put(p.as_bytes());
            o.put(b"\r\n");
        }
        if let Some(e) = extensions {
            o.put(b"Sec-WebSocket-Extensions: ");
            o.put(e.as_bytes());
            o.put(b"\r\n");
        }
        o.put(b"\r\n");
    })
}

/// Writes a complete error response (`Connection: close`, a short `text/plain` body) for an HTTP
/// `status` and returns its length. A 426 carries `Sec-WebSocket-Version: 13` and
/// `Upgrade: websocket` (RFC 6455 §4.4, RFC 7231 §6.5.15); a 405 carries `Allow: GET`.
///
/// ```
/// use sockeye_codec::handshake::{HandshakeError, write_error_response};
/// let mut buf = [0u8; 512];
/// let e = HandshakeError::UnsupportedVersion;
/// let n = write_error_response(&mut buf, e.status(), "unsupported websocket version").unwrap();
/// let text = std::str::from_utf8(&buf[..n]).unwrap();
/// assert!(text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
/// assert!(text.contains("\r\nSec-WebSocket-Version: 13\r\n"));
/// assert!(text.ends_with("\r\n\r\nunsupported websocket version\n"));
/// ```
pub fn write_error_response(buf: &mut [u8], status: u16, body: &str) -> Result<usize, EncodeError> {
    let reason = match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    };
    let mut digits = [0u8; 20];
    let body_len = fmt_usize(body.len() + 1, &mut digits);
    let mut code = [0u8; 20];
    let code = fmt_usize(usize::from(status), &mut code);
    emit(buf, |o| {
        o.put(b"HTTP/1.1 ");
        o.put(code);
        o.put(b" ");
        o.put(reason.as_bytes());
        o.put(b"\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n");
        if status == 426 {
            o.put(b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n");
        }
        if status == 405 {
            o.put(b"Allow: GET\r\n");
        }
        o.put(b"Content-Length: ");
        o.put(body_len);
        o.put(b"\r\n\r\n");
        o.put(body.as_bytes());
        o.put(b"\n");
    })
}

fn fmt_usize(mut n: usize, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// Picks the subprotocol to answer with: the first of `supported` (the server's order of
/// preference) that the client `offered`, compared exactly (§4.2.2).
///
/// ```
/// use sockeye_codec::handshake::select_protocol;
/// assert_eq!(select_protocol(&["v1.chat", "v2.chat"], &["v2.chat", "v1.chat"]), Some("v2.chat"));
/// assert_eq!(select_protocol(&["mqtt"], &["v2.chat"]), None);
/// ```
#[must_use]
pub fn select_protocol<'s>(offered: &[&str], supported: &[&'s str]) -> Option<&'s str> {
    supported.iter().copied().find(|s| offered.contains(s))
}

/// The origin policy of coder/websocket's `OriginPatterns`.
///
/// Allowed when: there is no `Origin` header (not a browser); or the origin's host (with port)
/// equals `host` ignoring ASCII case; or a pattern matches. A pattern is a glob (`*`, `?`,
/// `[a-z]`, `[^x]`, `\` escapes) matched ignoring ASCII case against the origin's host
/// (`*.example.com`), or against `scheme://host` when the pattern contains `://`
/// (`https://*.example.com`). `*` and `?` do not match `/`.
///
/// ```
/// use sockeye_codec::handshake::origin_allowed;
/// assert!(origin_allowed(None, "api.example.com", &[]));
/// assert!(origin_allowed(Some("https://API.example.com"), "api.example.com", &[]));
/// assert!(!origin_allowed(Some("https://evil.com"), "api.example.com", &[]));
/// assert!(origin_allowed(Some("https://app.example.com"), "api.example.com", &["*.example.com"]));
/// assert!(!origin_allowed(Some("http://app.example.com"), "x", &["https://*.example.com"]));
/// assert!(!origin_allowed(Some("null"), "api.example.com", &["*.example.com"]));
/// ```
#[must_use]
pub fn origin_allowed(origin: Option<&str>, host: &str, patterns: &[&str]) -> bool {
    let Some(origin) = origin else { return true };
    let Some((scheme, rest)) = origin.split_once("://") else {
        // "null" (opaque origins: sandboxed frames, file://) and malformed values.
        return false;
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let origin_host = &rest[..end];
    let with_scheme = &origin[..scheme.len() + 3 + end];
    if origin_host.is_empty() {
        return false;
    }
    if origin_host.eq_ignore_ascii_case(host) {
        return true;
    }
    patterns.iter().any(|p| {
        let target = if p.contains("://") {
            with_scheme
        } else {
            origin_host
        };
        glob_match(p.as_bytes(), target.as_bytes())
    })
}

/// Why an origin pattern for [`origin_allowed`] can never match any origin, or `None` when it
/// can. A server checks its patterns with this at start, so a typo is an error there instead
/// of every browser being refused.
///
/// An origin is `scheme://host[:port]` and nothing more, so a pattern with a path (the
/// commonest mistake: `https://example.com/`), an empty one, or one with whitespace or
/// control characters matches nothing; so does a glob with an unclosed `[`.
///
/// ```
/// use sockeye_codec::handshake::origin_pattern_problem;
/// assert_eq!(origin_pattern_problem("*.example.com"), None);
/// assert_eq!(origin_pattern_problem("https://app.example.com:8443"), None);
/// assert!(origin_pattern_problem("https://example.com/").is_some());
/// assert!(origin_pattern_problem("").is_some());
/// assert!(origin_pattern_problem("[a-z.example.com").is_some());
/// assert!(origin_pattern_problem("[]].example.com").is_none()); // `]` first is a member
/// ```
#[must_use]
pub fn origin_pattern_problem(pattern: &str) -> Option<&'static str> {
    if pattern.is_empty() {
        return Some("it is empty");
    }
    if pattern
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Some("it contains whitespace or control characters, which no origin has");
    }
    let host = match pattern.split_once("://") {
        Some(("", _)) => return Some("its scheme is empty"),
        Some((_, host)) => host,
        None => pattern,
    };
    if host.is_empty() {
        return Some("its host is empty");
    }
    if host.contains('/') {
        return Some("it has a path, but an origin is only a scheme, a host and a port");
    }
    // Every class (`[` not escaped) needs its `]`, or the glob matches nothing from there on;
    // the matcher's own class parser says where each one ends.
    let b = pattern.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'[' => match class_match(&b[i..], b'a') {
                Some((_, len)) => i += len,
                None => return Some("it has a '[' without its ']'"),
            },
            _ => i += 1,
        }
    }
    None
}

/// Glob matching in the manner of Go's `path.Match`, ASCII case-insensitive. Iterative with one
/// backtrack point, so it runs in O(pattern × text) at worst.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    star = Some((p, t));
                    p += 1;
                    continue;
                }
                b'?' if text[t] != b'/' => {
                    p += 1;
                    t += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class_match(&pattern[p..], text[t]) {
                        if matched {
                            p += next;
                            t += 1;
                            continue;
                        }
                    } else {
                        return false; // malformed class
                    }
                }
                b'\\' if p + 1 < pattern.len() && pattern[p + 1].eq_ignore_ascii_case(&text[t]) => {
                    p += 2;
                    t += 1;
                    continue;
                }
                b'\\' if p + 1 < pattern.len() => {}
                c if c != b'?' && c.eq_ignore_ascii_case(&text[t]) => {
                    p += 1;
                    t += 1;
                    continue;
                }
                _ => {}
            }
        }
        // Mismatch: let the last `*` swallow one more byte (never a `/`), or fail.
        match star {
            Some((sp, st)) if text[st] != b'/' => {
                star = Some((sp, st + 1));
                p = sp + 1;
                t = st + 1;
            }
            _ => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the class at the start of `pattern` (`[...]`), returning whether it
/// matched and the class's length, or `None` if the class is not terminated.
fn class_match(pattern: &[u8], c: u8) -> Option<(bool, usize)> {
    let c = c.to_ascii_lowercase();
    let mut i = 1;
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let lo = *pattern.get(i)?;
        if lo == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        let (lo, next) = if lo == b'\\' {
            (*pattern.get(i + 1)?, i + 2)
        } else {
            (lo, i + 1)
        };
        i = next;
        let mut hi = lo;
        if pattern.get(i) == Some(&b'-') && pattern.get(i + 1).is_some_and(|&b| b != b']') {
            hi = pattern[i + 1];
            i += 2;
        }
        let (lo, hi) = (lo.to_ascii_lowercase(), hi.to_ascii_lowercase());
        matched |= lo <= c && c <= hi;
    }
}

/// A client's upgrade request. [`ClientRequest::encode`] writes it.
///
/// ```
/// use sockeye_codec::handshake::{ClientRequest, client_key};
/// let key = client_key([7; 16]);
/// let req = ClientRequest { protocols: &["chat"], ..ClientRequest::new("127.0.0.1:9001", "/", &key) };
/// let mut buf = [0u8; 512];
/// let n = req.encode(&mut buf).unwrap();
/// assert!(buf[..n].starts_with(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:9001\r\n"));
/// assert!(buf[..n].ends_with(b"Sec-WebSocket-Protocol: chat\r\n\r\n"));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ClientRequest<'a> {
    /// The `Host` header (host and port if not the default).
    pub host: &'a str,
    /// The request target, e.g. `/chat`.
    pub path: &'a str,
    /// The `Sec-WebSocket-Key`, from [`client_key`].
    pub key: &'a [u8; 24],
    /// Subprotocols to offer, in order of preference.
    pub protocols: &'a [&'a str],
    /// A `Sec-WebSocket-Extensions` offer.
    pub extensions: Option<&'a str>,
    /// An `Origin` header.
    pub origin: Option<&'a str>,
    /// Extra headers (name, value).
    pub headers: &'a [(&'a str, &'a str)],
}

impl<'a> ClientRequest<'a> {
    /// A request for `path` on `host` with `key` and nothing optional.
    #[must_use]
    pub const fn new(host: &'a str, path: &'a str, key: &'a [u8; 24]) -> Self {
        ClientRequest {
            host,
            path,
            key,
            protocols: &[],
            extensions: None,
            origin: None,
            headers: &[],
        }
    }

    /// Writes the request and returns its length; nothing is written on error.
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        let values_ok = is_header_value(self.host)
            && !self.path.is_empty()
            && self.path.bytes().all(|b| b.is_ascii_graphic())
            && self.protocols.iter().all(|p| is_token(p))
            && self.extensions.is_none_or(is_header_value)
            && self.origin.is_none_or(is_header_value)
            && self
                .headers
                .iter()
                .all(|(n, v)| is_token(n) && is_header_value(v));
        if !values_ok {
            return Err(EncodeError::InvalidHeaderValue);
        }
        emit(buf, |o| {
            o.put(b"GET ");
            o.put(self.path.as_bytes());
            o.put(b" HTTP/1.1\r\nHost: ");
            o.put(self.host.as_bytes());
            o.put(b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ");
            o.put(self.key);
            o.put(b"\r\nSec-WebSocket-Version: 13\r\n");
            if let Some(origin) = self.origin {
                o.put(b"Origin: ");
                o.put(origin.as_bytes());
                o.put(b"\r\n");
            }
            for (i, p) in self.protocols.iter().enumerate() {
                o.put(if i == 0 {
                    b"Sec-WebSocket-Protocol: "
                } else {
                    b", "
                });
                o.put(p.as_bytes());
            }
            if !self.protocols.is_empty() {
                o.put(b"\r\n");
            }
            if let Some(e) = self.extensions {
                o.put(b"Sec-WebSocket-Extensions: ");
                o.put(e.as_bytes());
                o.put(b"\r\n");
            }
            for (name, value) in self.headers {
                o.put(name.as_bytes());
                o.put(b": ");
                o.put(value.as_bytes());
                o.put(b"\r\n");
            }
            o.put(b"\r\n");
        })
    }
}

/// A server's answer to an upgrade request, borrowing the response bytes.
#[derive(Debug, Clone)]
pub struct Response<'h, 'b> {
    /// The HTTP status code (101 when accepted).
    pub status: u16,
    /// Every header of the response.
    pub headers: &'h [httparse::Header<'b>],
}

impl<'h, 'b> Response<'h, 'b> {
    /// Parses a response's status line and headers from the start of `buf`, returning it and the
    /// header block's length (a body, for a non-101 status, follows it). Any status parses;
    /// [`Response::validate`] checks it is an acceptance.
    pub fn parse(
        buf: &'b [u8],
        headers: &'h mut [httparse::Header<'b>],
    ) -> Result<Status<(Self, usize)>, HandshakeError> {
        let mut res = httparse::Response::new(headers);
        let len = match res.parse(buf)? {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => return Ok(Status::Partial { needed: 1 }),
        };
        let status = res.code.ok_or(HandshakeError::Malformed)?;
        Ok(Status::Complete((
            Response {
                status,
                headers: res.headers,
            },
            len,
        )))
    }

    /// The value of the first header named `name` (ASCII case-insensitive).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        find_header(self.headers, name)
    }

    /// Each `Sec-WebSocket-Extensions` value (one that is not UTF-8 reads as `"\u{fffd}"`,
    /// which names no extension), as `deflate::accept_response` takes them.
    pub fn extensions(&self) -> impl Iterator<Item = &'b str> + '_ {
        self.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-extensions"))
            .map(|h| core::str::from_utf8(h.value).unwrap_or("\u{fffd}"))
    }

    /// Checks the response accepts the request made with `key` offering `protocols` (§4.1): status
    /// 101, `Upgrade: websocket`, `Connection: upgrade`, the right `Sec-WebSocket-Accept`, at most
    /// one subprotocol and only one we offered. Extension headers are refused unless
    /// `extensions_offered` (then the caller validates them). Returns the chosen subprotocol.
    pub fn validate(
        &self,
        key: &[u8; 24],
        protocols: &[&str],
        extensions_offered: bool,
    ) -> Result<Option<&'b str>, HandshakeError> {
        if self.status != 101 {
            return Err(HandshakeError::UnexpectedStatus(self.status));
        }
        let (mut upgrade, mut connection, mut accept, mut protocol) = (false, false, None, None);
        for h in self.headers {
            if h.name.eq_ignore_ascii_case("upgrade") {
                upgrade |= has_token(h.value, "websocket");
            } else if h.name.eq_ignore_ascii_case("connection") {
                connection |= has_token(h.value, "upgrade");
            } else if h.name.eq_ignore_ascii_case("sec-websocket-accept") {
                if accept.replace(h.value.trim_ascii()).is_some() {
                    return Err(HandshakeError::InvalidAccept);
                }
            } else if h.name.eq_ignore_ascii_case("sec-websocket-protocol") {
                let p = header_str(h.value)?;
                if protocol.replace(p).is_some() || !protocols.contains(&p) {
                    return Err(HandshakeError::UnexpectedProtocol);
                }
            } else if h.name.eq_ignore_ascii_case("sec-websocket-extensions") && !extensions_offered
            {
                return Err(HandshakeError::UnexpectedExtension);
            }
        }
        if !(upgrade && connection) {
            return Err(HandshakeError::NotUpgrade);
        }
        if accept != Some(&accept_key(key)[..]) {
            return Err(HandshakeError::InvalidAccept);
        }
        Ok(protocol)
    }
}

mod policy;
pub use policy::{Policy, Refusal, Upgrade};

#[cfg(test)]
mod tests;

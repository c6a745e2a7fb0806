//! The client's error: what went wrong, and the close status when the connection ended.

use std::fmt;
use std::io;

use sockeye_codec::CloseCode;
use sockeye_codec::handshake::HandshakeError;

/// Most bytes of a refused handshake's response body kept in [`Error::Handshake`].
pub const MAX_ERROR_BODY: usize = 1024;

/// The connection ended with a close status (Go's `CloseError`): the peer's close frame, or a
/// status this end reports for a connection that ended without one.
///
/// `code` is `None` when the peer's close frame carried no status (an API reports that as 1005,
/// [`CloseCode::NO_STATUS`]); a connection that dropped without a close frame reports
/// [`CloseCode::ABNORMAL`] (1006), which no endpoint ever sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseError {
    /// The status code, `None` for a close frame without one.
    pub code: Option<CloseCode>,
    /// The reason the peer gave (empty if none).
    pub reason: String,
}

impl CloseError {
    /// The code as an API reports it: 1005 for a close frame without one.
    #[must_use]
    pub fn status(&self) -> CloseCode {
        self.code.unwrap_or(CloseCode::NO_STATUS)
    }

    /// 1006: the connection ended without a close frame (`reason` says how).
    #[must_use]
    pub fn abnormal(reason: &str) -> Self {
        CloseError {
            code: Some(CloseCode::ABNORMAL),
            reason: reason.to_owned(),
        }
    }
}

impl fmt::Display for CloseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // CloseCode's Display names registered codes: "1000 (normal closure)".
        write!(f, "closed with {}", self.status())?;
        if !self.reason.is_empty() {
            write!(f, ": {}", self.reason)?;
        }
        Ok(())
    }
}

impl std::error::Error for CloseError {}

/// Everything that can go wrong with a client connection.
#[non_exhaustive]
#[derive(Debug)]
pub enum Error {
    /// The URL is not a WebSocket URL this client can dial.
    Url(String),
    /// A `wss://` (or `https://`) URL: TLS is not supported yet.
    TlsUnsupported,
    /// Something did not finish within its timeout or deadline; the text says what: `connect`,
    /// `handshake`, `read deadline`, `write deadline`, `ping`, `close handshake`. Every
    /// timeout is reported this way (through `Read`/`Write` it is [`io::ErrorKind::TimedOut`]).
    Timeout(&'static str),
    /// The server did not accept the upgrade.
    Handshake {
        /// The HTTP status, when a response arrived (101 if it was an invalid acceptance).
        status: Option<u16>,
        /// What was wrong with the response.
        error: HandshakeError,
        /// At most the first [`MAX_ERROR_BODY`] bytes of the response body.
        body: Vec<u8>,
    },
    /// (Server role) this end refused the upgrade request and answered with `status` (a
    /// malformed or oversized request, an origin not allowed, a plain HTTP request).
    Refused {
        /// The HTTP status sent.
        status: u16,
        /// Why, as the response body said.
        reason: String,
    },
    /// The peer broke RFC 6455 (or a read limit); the connection was closed with the error's
    /// close code (1002, 1007 or 1009).
    Protocol(sockeye_codec::Error),
    /// The connection is closed: the peer sent a close frame, or it dropped (1006).
    Closed(CloseError),
    /// This end already sent its close frame; no more messages may be written.
    CloseSent,
    /// This thread has a streamed message open on the connection; finish it first.
    MessageInProgress,
    /// The argument cannot be sent (a control payload over 125 bytes, a close code that must not
    /// be sent, a reason over 123 bytes, ...).
    Invalid(sockeye_codec::EncodeError),
    /// An I/O error other than a timeout (those are [`Error::Timeout`]).
    Io(io::Error),
}

impl Error {
    /// The close status if the connection ended with one (Go's `CloseStatus`): the peer's code,
    /// 1005 for a close frame without a code, 1006 for a dropped connection, or the code this end
    /// sent after a protocol error.
    ///
    /// ```
    /// use sockeye_client::{CloseCode, CloseError, Error};
    /// let e = Error::Closed(CloseError { code: Some(CloseCode::GOING_AWAY), reason: "bye".into() });
    /// assert_eq!(e.close_code(), Some(CloseCode::GOING_AWAY));
    /// assert!(e.is_close(&[CloseCode::NORMAL, CloseCode::GOING_AWAY]));
    /// ```
    #[must_use]
    pub fn close_code(&self) -> Option<CloseCode> {
        match self {
            Error::Closed(c) => Some(c.status()),
            Error::Protocol(e) => Some(e.close_code()),
            _ => None,
        }
    }

    /// Whether the connection ended with one of `codes` (Go's `IsCloseError`).
    #[must_use]
    pub fn is_close(&self, codes: &[CloseCode]) -> bool {
        self.close_code().is_some_and(|c| codes.contains(&c))
    }

    /// Whether the connection ended normally: a close frame with 1000, 1001 or no code.
    #[must_use]
    pub fn is_normal_close(&self) -> bool {
        matches!(self, Error::Closed(c) if matches!(c.code, None | Some(CloseCode::NORMAL) | Some(CloseCode::GOING_AWAY)))
    }
}

/// The close status of any error, or `None` (Go's `CloseStatus`).
#[must_use]
pub fn close_status(err: &Error) -> Option<CloseCode> {
    err.close_code()
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Url(why) => write!(f, "invalid WebSocket URL: {why}"),
            Error::TlsUnsupported => f.write_str("wss:// needs TLS, which is not supported yet"),
            Error::Timeout(what) => write!(f, "{what} timed out"),
            Error::Handshake {
                status,
                error,
                body,
            } => {
                match status {
                    Some(s) => write!(f, "handshake refused (HTTP {s}): {error}")?,
                    None => write!(f, "handshake failed: {error}")?,
                }
                let body = String::from_utf8_lossy(body);
                let body = body.trim();
                if !body.is_empty() {
                    write!(f, ": {body}")?;
                }
                Ok(())
            }
            Error::Refused { status, reason } => {
                write!(f, "upgrade refused with HTTP {status}: {reason}")
            }
            Error::Protocol(e) => write!(f, "protocol error, closed with {}: {e}", e.close_code()),
            Error::Closed(c) => c.fmt(f),
            Error::CloseSent => f.write_str("the close frame was already sent"),
            Error::MessageInProgress => {
                f.write_str("this thread's streamed message is still open; finish it first")
            }
            Error::Invalid(e) => write!(f, "cannot send: {e}"),
            Error::Io(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            Error::Protocol(e) => Some(e),
            Error::Closed(e) => Some(e),
            Error::Handshake { error, .. } => Some(error),
            Error::Invalid(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<Error> for io::Error {
    /// For the `Read` and `Write` impls: I/O errors come back as they were; the rest keep the
    /// client error as their source.
    fn from(e: Error) -> Self {
        let kind = match &e {
            Error::Io(_) => return into_io(e),
            Error::Timeout(_) => io::ErrorKind::TimedOut,
            Error::Closed(_) | Error::CloseSent => io::ErrorKind::ConnectionAborted,
            Error::Protocol(_) => io::ErrorKind::InvalidData,
            Error::Invalid(_) | Error::MessageInProgress => io::ErrorKind::InvalidInput,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}

fn into_io(e: Error) -> io::Error {
    match e {
        Error::Io(e) => e,
        other => io::Error::other(other),
    }
}

/// A read or write on a socket with a timeout reports `WouldBlock` on Linux; a passed deadline
/// is `TimedOut` to the user.
pub(crate) fn deadline_error(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::WouldBlock {
        io::Error::new(io::ErrorKind::TimedOut, "deadline passed")
    } else {
        e
    }
}

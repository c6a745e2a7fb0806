//! Errors of the codec.
//!
//! Three small enums, one per direction of work, because each maps to a different answer on the
//! wire: [`Error`] (a received frame broke RFC 6455; answer with a close code), [`EncodeError`]
//! (the caller asked to send something malformed or gave too little room; nothing is sent) and
//! [`HandshakeError`](crate::handshake::HandshakeError) (answer with an HTTP status).

use core::fmt;

use crate::close::CloseCode;

/// A violation of RFC 6455 (or of a configured limit) found while decoding received frames.
///
/// Every variant maps to the close code the endpoint should send, via [`Error::close_code`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// RSV1, RSV2 or RSV3 was set without an extension that defines it (§5.2), or RSV1 was set on a
    /// control frame or a continuation frame (RFC 7692 §6).
    ReservedBits,
    /// An opcode reserved for future use (0x3–0x7, 0xB–0xF) (§5.2).
    ReservedOpcode(u8),
    /// A client received a masked frame (§5.1).
    MaskedFrame,
    /// A server received an unmasked frame (§5.1).
    UnmaskedFrame,
    /// A 64-bit payload length with the most significant bit set (§5.2).
    InvalidLength,
    /// A control frame with a payload over 125 bytes (§5.5).
    ControlFrameTooLong,
    /// A control frame without FIN (§5.5).
    FragmentedControlFrame,
    /// A continuation frame with no message in progress (§5.4).
    UnexpectedContinuation,
    /// A text or binary frame while a fragmented message is still in progress (§5.4).
    ExpectedContinuation,
    /// A close frame with a 1-byte payload (§5.5.1).
    InvalidClosePayload,
    /// A close code that must not appear on the wire (§7.4).
    InvalidCloseCode(u16),
    /// Invalid UTF-8 in a text message or a close reason (§8.1).
    InvalidUtf8,
    /// A frame arrived after the peer's close frame (§5.5.1).
    FrameAfterClose,
    /// A frame's payload exceeds the configured maximum frame size.
    FrameTooLarge,
    /// A message exceeds the configured maximum message size (for a compressed message: its
    /// decompressed size).
    MessageTooLarge,
    /// A compressed message that is not a valid raw deflate stream, or refers back beyond the
    /// negotiated window (RFC 7692 §7.2.2).
    InvalidCompressedData,
}

impl Error {
    /// The close code to send in answer to this error: 1002 (protocol error), 1007 (invalid
    /// payload data: bad UTF-8 or bad compressed data) or 1009 (message too big).
    ///
    /// ```
    /// use sockeye_codec::{CloseCode, Error};
    /// assert_eq!(Error::InvalidUtf8.close_code(), CloseCode::INVALID_PAYLOAD);
    /// assert_eq!(Error::MessageTooLarge.close_code(), CloseCode::MESSAGE_TOO_BIG);
    /// ```
    #[must_use]
    pub fn close_code(self) -> CloseCode {
        match self {
            Error::InvalidUtf8 | Error::InvalidCompressedData => CloseCode::INVALID_PAYLOAD,
            Error::FrameTooLarge | Error::MessageTooLarge => CloseCode::MESSAGE_TOO_BIG,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ReservedBits => f.write_str("reserved bits set without a negotiated extension"),
            Error::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            Error::MaskedFrame => f.write_str("masked frame from a server"),
            Error::UnmaskedFrame => f.write_str("unmasked frame from a client"),
            Error::InvalidLength => f.write_str("payload length with the most significant bit set"),
            Error::ControlFrameTooLong => f.write_str("control frame payload over 125 bytes"),
            Error::FragmentedControlFrame => f.write_str("fragmented control frame"),
            Error::UnexpectedContinuation => f.write_str("continuation frame without a message"),
            Error::ExpectedContinuation => {
                f.write_str("new data frame inside a fragmented message")
            }
            Error::InvalidClosePayload => f.write_str("close frame with a 1-byte payload"),
            Error::InvalidCloseCode(c) => write!(f, "close code {c} is not allowed on the wire"),
            Error::InvalidUtf8 => f.write_str("invalid utf-8 in text"),
            Error::FrameAfterClose => f.write_str("frame received after the close frame"),
            Error::FrameTooLarge => f.write_str("frame exceeds the maximum frame size"),
            Error::MessageTooLarge => f.write_str("message exceeds the maximum message size"),
            Error::InvalidCompressedData => f.write_str("invalid compressed data"),
        }
    }
}

impl core::error::Error for Error {}

/// A request to encode something that cannot be encoded; the output buffer is left untouched.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// The output buffer is too small; `required` bytes are needed in all.
    InsufficientSize {
        /// Total bytes the encoding needs.
        required: usize,
    },
    /// A control frame payload over 125 bytes (§5.5).
    ControlFrameTooLong,
    /// A close reason over 123 bytes (§5.5: 125 minus the 2-byte code).
    ReasonTooLong,
    /// A close code that must not be sent (§7.4), such as 1005 or 1006.
    InvalidCloseCode(u16),
    /// A handshake header value with a control character (CR or LF would inject headers), or a
    /// subprotocol that is not an HTTP token.
    InvalidHeaderValue,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::InsufficientSize { required } => {
                write!(f, "output buffer too small: {required} bytes required")
            }
            EncodeError::ControlFrameTooLong => f.write_str("control frame payload over 125 bytes"),
            EncodeError::ReasonTooLong => f.write_str("close reason over 123 bytes"),
            EncodeError::InvalidCloseCode(c) => write!(f, "close code {c} must not be sent"),
            EncodeError::InvalidHeaderValue => f.write_str("invalid character in a header value"),
        }
    }
}

impl core::error::Error for EncodeError {}

//! Close codes (RFC 6455 §7.4) and close frame payloads (§5.5.1).

use core::fmt;

use crate::error::{EncodeError, Error};

/// Maximum length of a close reason: a control payload is at most 125 bytes, 2 of them the code.
pub const MAX_REASON_LEN: usize = 123;

/// A close status code (RFC 6455 §7.4).
///
/// An open set, so a newtype with a constant for every code registered with IANA (1000–1015),
/// rather than an enum. Codes 3000–3999 are for libraries and frameworks, 4000–4999 for
/// applications.
///
/// ```
/// use sockeye_codec::CloseCode;
/// assert!(CloseCode::NORMAL.is_sendable());
/// assert!(!CloseCode::NO_STATUS.is_sendable()); // 1005 is reserved for "no code was received"
/// assert!(CloseCode(4001).is_sendable());
/// assert!(!CloseCode(2999).is_sendable());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection has been fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: a data type the endpoint cannot accept (e.g. binary to a text-only endpoint).
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1004: reserved; must not be sent.
    pub const RESERVED: CloseCode = CloseCode(1004);
    /// 1005: reserved for APIs to mean "no status code was present"; must not be sent.
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: reserved for APIs to mean "closed without a close frame"; must not be sent.
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: data inconsistent with the message type (e.g. invalid UTF-8 in text).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: a message violates the endpoint's policy.
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: a message too big to process.
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: the client expected the server to negotiate an extension it did not.
    pub const MANDATORY_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: the server met an unexpected condition.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1012: the service is restarting.
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);
    /// 1013: try again later (temporary overload).
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
    /// 1014: a gateway received an invalid response from upstream.
    pub const BAD_GATEWAY: CloseCode = CloseCode(1014);
    /// 1015: reserved for APIs to mean "TLS handshake failed"; must not be sent.
    pub const TLS_HANDSHAKE: CloseCode = CloseCode(1015);

    /// Whether this code may appear in a close frame on the wire (§7.4.1, §7.4.2).
    ///
    /// Allowed: 1000–1003, 1007–1014 and 3000–4999. Not allowed: 0–999, 1004–1006 (reserved and
    /// API-only), 1015 (API-only), 1016–2999 (reserved for future RFCs) and 5000 and up.
    #[must_use]
    pub const fn is_sendable(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }

    /// The registered name of the code, if it has one.
    #[must_use]
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            1000 => "normal closure",
            1001 => "going away",
            1002 => "protocol error",
            1003 => "unsupported data",
            1004 => "reserved",
            1005 => "no status received",
            1006 => "abnormal closure",
            1007 => "invalid payload data",
            1008 => "policy violation",
            1009 => "message too big",
            1010 => "mandatory extension",
            1011 => "internal error",
            1012 => "service restart",
            1013 => "try again later",
            1014 => "bad gateway",
            1015 => "tls handshake",
            _ => return None,
        })
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        CloseCode(code)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> Self {
        code.0
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{} ({name})", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

/// A validated close frame payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Close<'a> {
    /// The status code, or `None` when the payload was empty (an API would report 1005).
    pub code: Option<CloseCode>,
    /// The reason, valid UTF-8 of at most 123 bytes; empty when absent.
    pub reason: &'a str,
}

impl<'a> Close<'a> {
    /// Parses and validates a close payload (§5.5.1): empty, or a 2-byte sendable code followed
    /// by a UTF-8 reason.
    ///
    /// ```
    /// use sockeye_codec::{Close, CloseCode, Error};
    /// let close = Close::parse(b"\x03\xe8bye").unwrap();
    /// assert_eq!(close.code, Some(CloseCode::NORMAL));
    /// assert_eq!(close.reason, "bye");
    /// assert_eq!(Close::parse(b"\x03"), Err(Error::InvalidClosePayload));
    /// assert_eq!(Close::parse(b"\x03\xed"), Err(Error::InvalidCloseCode(1005)));
    /// ```
    pub fn parse(payload: &'a [u8]) -> Result<Self, Error> {
        match payload {
            [] => Ok(Close {
                code: None,
                reason: "",
            }),
            [_] => Err(Error::InvalidClosePayload),
            [hi, lo, reason @ ..] => {
                let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
                if !code.is_sendable() {
                    return Err(Error::InvalidCloseCode(code.0));
                }
                if reason.len() > MAX_REASON_LEN {
                    return Err(Error::ControlFrameTooLong);
                }
                let reason = core::str::from_utf8(reason).map_err(|_| Error::InvalidUtf8)?;
                Ok(Close {
                    code: Some(code),
                    reason,
                })
            }
        }
    }

    /// Writes the close payload (code then reason) into `buf` and returns its length (0 when
    /// `code` is `None`, in which case `reason` must be empty).
    ///
    /// ```
    /// use sockeye_codec::{Close, CloseCode};
    /// let mut buf = [0u8; 125];
    /// let close = Close { code: Some(CloseCode::GOING_AWAY), reason: "restart" };
    /// let n = close.encode(&mut buf).unwrap();
    /// assert_eq!(&buf[..n], b"\x03\xe9restart");
    /// ```
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        let Some(code) = self.code else {
            return if self.reason.is_empty() {
                Ok(0)
            } else {
                Err(EncodeError::InvalidCloseCode(CloseCode::NO_STATUS.0))
            };
        };
        if !code.is_sendable() {
            return Err(EncodeError::InvalidCloseCode(code.0));
        }
        if self.reason.len() > MAX_REASON_LEN {
            return Err(EncodeError::ReasonTooLong);
        }
        let len = 2 + self.reason.len();
        if buf.len() < len {
            return Err(EncodeError::InsufficientSize { required: len });
        }
        buf[..2].copy_from_slice(&code.0.to_be_bytes());
        buf[2..len].copy_from_slice(self.reason.as_bytes());
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sendable_codes_match_rfc_7_4() {
        for c in 0..=u16::MAX {
            let expect = (1000..=1003).contains(&c)
                || (1007..=1014).contains(&c)
                || (3000..=4999).contains(&c);
            assert_eq!(CloseCode(c).is_sendable(), expect, "{c}");
        }
        for c in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            assert!(!CloseCode(c).is_sendable(), "{c}");
        }
    }

    #[test]
    fn every_registered_code_has_a_name() {
        for c in 1000..=1015 {
            assert!(CloseCode(c).name().is_some(), "{c}");
        }
        assert_eq!(CloseCode(1016).name(), None);
    }

    #[test]
    fn parse_rejects_bad_payloads() {
        assert_eq!(Close::parse(&[0x03, 0xe8, 0xff]), Err(Error::InvalidUtf8));
        assert_eq!(
            Close::parse(&[0x03, 0xe7]),
            Err(Error::InvalidCloseCode(999))
        );
        assert_eq!(
            Close::parse(&[0x13, 0x88]),
            Err(Error::InvalidCloseCode(5000))
        );
        let ok = Close::parse(&[0x0f, 0xa0]).unwrap();
        assert_eq!(ok.code, Some(CloseCode(4000)));
    }

    #[test]
    fn encode_enforces_reason_and_code() {
        let mut buf = [0u8; 200];
        let long = "x".repeat(124);
        let too_long = Close {
            code: Some(CloseCode::NORMAL),
            reason: &long,
        };
        assert_eq!(too_long.encode(&mut buf), Err(EncodeError::ReasonTooLong));
        let max = "y".repeat(123);
        let fits = Close {
            code: Some(CloseCode::NORMAL),
            reason: &max,
        };
        assert_eq!(fits.encode(&mut buf), Ok(125));
        let reserved = Close {
            code: Some(CloseCode::ABNORMAL),
            reason: "",
        };
        assert_eq!(
            reserved.encode(&mut buf),
            Err(EncodeError::InvalidCloseCode(1006))
        );
        let small = Close {
            code: Some(CloseCode::NORMAL),
            reason: "abc",
        };
        let mut tiny = [0u8; 4];
        assert_eq!(
            small.encode(&mut tiny),
            Err(EncodeError::InsufficientSize { required: 5 })
        );
        assert_eq!(tiny, [0; 4], "buffer untouched on error");
        let empty = Close {
            code: None,
            reason: "",
        };
        assert_eq!(empty.encode(&mut tiny), Ok(0));
    }
}

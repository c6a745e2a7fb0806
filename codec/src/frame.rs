//! Frame headers (RFC 6455 §5.2): opcodes, parsing and encoding of all three length forms.

use crate::error::{EncodeError, Error};

/// Largest frame header: 2 bytes, 8 bytes of extended length, 4 bytes of masking key.
pub const MAX_HEADER_LEN: usize = 14;

/// Largest payload of a control frame (§5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// The outcome of parsing bytes that may not all have arrived.
///
/// A partial input is not an error: the caller reads more bytes and calls again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status<T> {
    /// Enough bytes were present.
    Complete(T),
    /// More bytes are needed: at least `needed` more (a lower bound; exact once the header is
    /// complete).
    Partial {
        /// How many more bytes are needed at least (always ≥ 1).
        needed: usize,
    },
}

impl<T> Status<T> {
    /// The value, if complete.
    pub fn complete(self) -> Option<T> {
        match self {
            Status::Complete(v) => Some(v),
            Status::Partial { .. } => None,
        }
    }

    /// Whether more bytes are needed.
    pub fn is_partial(&self) -> bool {
        matches!(self, Status::Partial { .. })
    }
}

/// A frame opcode (§5.2). Reserved opcodes are not representable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OpCode {
    /// 0x0: continues a fragmented message.
    Continuation = 0x0,
    /// 0x1: the first frame of a UTF-8 text message.
    Text = 0x1,
    /// 0x2: the first frame of a binary message.
    Binary = 0x2,
    /// 0x8: connection close.
    Close = 0x8,
    /// 0x9: ping.
    Ping = 0x9,
    /// 0xA: pong.
    Pong = 0xA,
}

impl OpCode {
    /// Whether this is a control opcode (close, ping, pong).
    #[must_use]
    pub const fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

impl TryFrom<u8> for OpCode {
    type Error = Error;

    fn try_from(v: u8) -> Result<Self, Error> {
        Ok(match v {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            other => return Err(Error::ReservedOpcode(other)),
        })
    }
}

/// A frame header.
///
/// ```
/// use sockeye_codec::{Header, OpCode, Status};
///
/// // RFC 6455 §5.7: a single-frame masked text message "Hello".
/// let wire = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
/// let Status::Complete((header, len)) = Header::parse(&wire).unwrap() else { panic!() };
/// assert_eq!(len, 6);
/// assert_eq!(header.opcode, OpCode::Text);
/// assert_eq!(header.payload_len, 5);
/// assert_eq!(header.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
///
/// let mut out = [0u8; 14];
/// let n = header.encode(&mut out).unwrap();
/// assert_eq!(&out[..n], &wire[..6]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// FIN: this is the final frame of its message.
    pub fin: bool,
    /// RSV1 (used by permessage-deflate to mark a compressed message).
    pub rsv1: bool,
    /// RSV2 (no registered extension uses it).
    pub rsv2: bool,
    /// RSV3 (no registered extension uses it).
    pub rsv3: bool,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, present on every client-to-server frame.
    pub mask: Option<[u8; 4]>,
    /// The payload length.
    pub payload_len: u64,
}

impl Header {
    /// A header for an unmasked final frame with no reserved bits.
    #[must_use]
    pub const fn new(opcode: OpCode, payload_len: u64) -> Self {
        Header {
            fin: true,
            rsv1: false,
            rsv2: false,
            rsv3: false,
            opcode,
            mask: None,
            payload_len,
        }
    }

    /// Parses a header from the start of `buf`, returning it and its length in bytes.
    ///
    /// Checks only what the header alone determines: reserved opcodes and the 64-bit length's
    /// most significant bit. Role, extension and fragmentation rules belong to the
    /// [`Decoder`](crate::Decoder). Lengths are accepted in non-minimal form (the minimal-length
    /// rule binds senders; rejecting it would only break interop).
    #[inline]
    pub fn parse(buf: &[u8]) -> Result<Status<(Header, usize)>, Error> {
        let (b0, b1) = match buf {
            [b0, b1, ..] => (*b0, *b1),
            _ => {
                return Ok(Status::Partial {
                    needed: 2 - buf.len(),
                });
            }
        };
        let opcode = OpCode::try_from(b0 & 0x0f)?;
        let masked = b1 & 0x80 != 0;
        let (ext, payload_len) = match b1 & 0x7f {
            126 => (2, None),
            127 => (8, None),
            n => (0, Some(u64::from(n))),
        };
        let len = 2 + ext + if masked { 4 } else { 0 };
        if buf.len() < len {
            return Ok(Status::Partial {
                needed: len - buf.len(),
            });
        }
        let payload_len = match payload_len {
            Some(n) => n,
            None if ext == 2 => u64::from(u16::from_be_bytes([buf[2], buf[3]])),
            None => {
                let n = u64::from_be_bytes([
                    buf[2], buf[3], buf[4], buf[5], buf[6], buf[7], buf[8], buf[9],
                ]);
                if n >> 63 != 0 {
                    return Err(Error::InvalidLength);
                }
                n
            }
        };
        let mask = match &buf[len - if masked { 4 } else { 0 }..len] {
            &[a, b, c, d] => Some([a, b, c, d]),
            _ => None,
        };
        Ok(Status::Complete((
            Header {
                fin: b0 & 0x80 != 0,
                rsv1: b0 & 0x40 != 0,
                rsv2: b0 & 0x20 != 0,
                rsv3: b0 & 0x10 != 0,
                opcode,
                mask,
                payload_len,
            },
            len,
        )))
    }

    /// The number of bytes [`Header::encode`] writes (2 to 14), always the minimal form.
    #[must_use]
    #[inline]
    pub const fn encoded_len(&self) -> usize {
        let ext = match self.payload_len {
            0..=125 => 0,
            126..=0xffff => 2,
            _ => 8,
        };
        2 + ext + if self.mask.is_some() { 4 } else { 0 }
    }

    /// Writes the header into `buf` with the minimal length encoding, returning its length, or
    /// [`EncodeError::InsufficientSize`] (and no write) when `buf` is too small.
    #[inline]
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        let len = self.encoded_len();
        if buf.len() < len {
            return Err(EncodeError::InsufficientSize { required: len });
        }
        buf[0] = u8::from(self.fin) << 7
            | u8::from(self.rsv1) << 6
            | u8::from(self.rsv2) << 5
            | u8::from(self.rsv3) << 4
            | self.opcode as u8;
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut at = 2;
        match self.payload_len {
            n @ 0..=125 => buf[1] = mask_bit | n as u8,
            n @ 126..=0xffff => {
                buf[1] = mask_bit | 126;
                buf[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                at = 4;
            }
            n => {
                buf[1] = mask_bit | 127;
                buf[2..10].copy_from_slice(&n.to_be_bytes());
                at = 10;
            }
        }
        if let Some(key) = self.mask {
            buf[at..at + 4].copy_from_slice(&key);
        }
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(buf: &[u8]) -> (Header, usize) {
        Header::parse(buf).unwrap().complete().unwrap()
    }

    #[test]
    fn rfc_5_7_length_forms() {
        // 256 bytes binary, unmasked: 0x82 0x7E 0x0100
        let (h, n) = parse(&[0x82, 0x7e, 0x01, 0x00]);
        assert_eq!(
            (h.opcode, h.payload_len, n, h.fin),
            (OpCode::Binary, 256, 4, true)
        );
        // 64 KiB binary, unmasked: 0x82 0x7F 0x0000000000010000
        let (h, n) = parse(&[0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!((h.payload_len, n), (65536, 10));
        // fragmented unmasked text "Hel": 0x01 0x03
        let (h, _) = parse(&[0x01, 0x03]);
        assert_eq!((h.fin, h.opcode, h.payload_len), (false, OpCode::Text, 3));
        // unmasked ping "Hello": 0x89 0x05
        let (h, _) = parse(&[0x89, 0x05]);
        assert_eq!((h.opcode, h.payload_len), (OpCode::Ping, 5));
    }

    #[test]
    fn every_prefix_is_partial() {
        let mut buf = [0u8; 14];
        let h = Header {
            mask: Some([1, 2, 3, 4]),
            ..Header::new(OpCode::Binary, 1 << 40)
        };
        let n = h.encode(&mut buf).unwrap();
        assert_eq!(n, 14);
        for i in 0..n {
            match Header::parse(&buf[..i]).unwrap() {
                Status::Partial { needed } => assert!(needed >= 1 && i + needed <= n, "{i}"),
                Status::Complete(_) => panic!("prefix {i} complete"),
            }
        }
        assert_eq!(parse(&buf[..n]), (h, n));
    }

    #[test]
    fn top_bit_of_64_bit_length_is_an_error() {
        let buf = [0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(Header::parse(&buf), Err(Error::InvalidLength));
    }

    #[test]
    fn reserved_opcodes_are_errors() {
        for op in [3u8, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
            assert_eq!(
                Header::parse(&[0x80 | op, 0]),
                Err(Error::ReservedOpcode(op))
            );
        }
    }

    #[test]
    fn encode_uses_minimal_lengths_and_round_trips() {
        for len in [0u64, 1, 125, 126, 127, 0xffff, 0x10000, u64::MAX >> 1] {
            for mask in [None, Some([9, 8, 7, 6])] {
                let h = Header {
                    rsv1: true,
                    fin: false,
                    mask,
                    ..Header::new(OpCode::Text, len)
                };
                let mut buf = [0u8; 14];
                let n = h.encode(&mut buf).unwrap();
                assert_eq!(n, h.encoded_len());
                assert_eq!(parse(&buf[..n]), (h, n));
            }
        }
    }

    #[test]
    fn encode_reports_required_size_without_writing() {
        let h = Header::new(OpCode::Binary, 70000);
        let mut small = [0xaau8; 5];
        assert_eq!(
            h.encode(&mut small),
            Err(EncodeError::InsufficientSize { required: 10 })
        );
        assert_eq!(small, [0xaa; 5]);
    }
}

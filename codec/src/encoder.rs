//! Encoding frames into caller memory. Nothing here allocates.
//!
//! A server usually writes only the header with [`Header::encode`] and sends the payload from
//! where it already is (a vectored write). A client must mask: either [`encode_frame`] copies and
//! masks the payload into the output, or the client masks its own buffer in place with
//! [`apply_mask`](crate::apply_mask) and sends it after the header.

use crate::close::Close;
use crate::error::EncodeError;
use crate::frame::{Header, MAX_CONTROL_PAYLOAD, OpCode};
use crate::mask::apply_mask;

/// Writes a whole frame (header, then `payload`, masked with `mask` if given) into `buf` and
/// returns the number of bytes written.
///
/// Control frames must be final and carry at most 125 bytes. On error nothing is written;
/// [`EncodeError::InsufficientSize`] says how large `buf` must be.
///
/// ```
/// use sockeye_codec::{OpCode, encode_frame};
///
/// // RFC 6455 §5.7: a masked text frame "Hello".
/// let mut buf = [0u8; 32];
/// let n = encode_frame(&mut buf, OpCode::Text, true, Some([0x37, 0xfa, 0x21, 0x3d]), b"Hello")
///     .unwrap();
/// assert_eq!(&buf[..n], [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
/// ```
pub fn encode_frame(
    buf: &mut [u8],
    opcode: OpCode,
    fin: bool,
    mask: Option<[u8; 4]>,
    payload: &[u8],
) -> Result<usize, EncodeError> {
    if opcode.is_control() && payload.len() > MAX_CONTROL_PAYLOAD {
        return Err(EncodeError::ControlFrameTooLong);
    }
    let header = Header {
        fin: fin || opcode.is_control(),
        mask,
        ..Header::new(opcode, 0)
    };
    let header = Header {
        payload_len: payload.len() as u64,
        ..header
    };
    let hlen = header.encoded_len();
    let required = hlen + payload.len();
    if buf.len() < required {
        return Err(EncodeError::InsufficientSize { required });
    }
    header.encode(buf)?;
    let out = &mut buf[hlen..required];
    out.copy_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(out, key, 0);
    }
    Ok(required)
}

/// Writes a close frame with `close`'s code and reason (validated: a sendable code, a reason of
/// at most 123 bytes) into `buf`, masked with `mask` if given.
///
/// ```
/// use sockeye_codec::{Close, CloseCode, encode_close};
/// let mut buf = [0u8; 16];
/// let close = Close { code: Some(CloseCode::NORMAL), reason: "bye" };
/// let n = encode_close(&mut buf, &close, None).unwrap();
/// assert_eq!(&buf[..n], b"\x88\x05\x03\xe8bye");
/// ```
pub fn encode_close(
    buf: &mut [u8],
    close: &Close<'_>,
    mask: Option<[u8; 4]>,
) -> Result<usize, EncodeError> {
    let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
    let n = close.encode(&mut payload)?;
    encode_frame(buf, OpCode::Close, true, mask, &payload[..n])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::close::CloseCode;

    #[test]
    fn rfc_5_7_vectors() {
        let mut buf = [0u8; 70000];
        let n = encode_frame(&mut buf, OpCode::Text, true, None, b"Hello").unwrap();
        assert_eq!(&buf[..n], [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        let n = encode_frame(&mut buf, OpCode::Text, false, None, b"Hel").unwrap();
        assert_eq!(&buf[..n], [0x01, 0x03, 0x48, 0x65, 0x6c]);
        let n = encode_frame(&mut buf, OpCode::Continuation, true, None, b"lo").unwrap();
        assert_eq!(&buf[..n], [0x80, 0x02, 0x6c, 0x6f]);
        let n = encode_frame(&mut buf, OpCode::Ping, true, None, b"Hello").unwrap();
        assert_eq!(&buf[..n], [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let n = encode_frame(&mut buf, OpCode::Pong, true, Some(key), b"Hello").unwrap();
        assert_eq!(
            &buf[..n],
            [
                0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58
            ]
        );
        let n = encode_frame(&mut buf, OpCode::Binary, true, None, &[0u8; 256]).unwrap();
        assert_eq!((&buf[..4], n), (&[0x82, 0x7e, 0x01, 0x00][..], 260));
        let n = encode_frame(&mut buf, OpCode::Binary, true, None, &[0u8; 65536]).unwrap();
        assert_eq!(
            (&buf[..10], n),
            (&[0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0][..], 65546)
        );
    }

    #[test]
    fn control_rules_and_sizes() {
        let mut buf = [0u8; 200];
        assert_eq!(
            encode_frame(&mut buf, OpCode::Ping, true, None, &[0; 126]),
            Err(EncodeError::ControlFrameTooLong)
        );
        let mut small = [0u8; 6];
        assert_eq!(
            encode_frame(&mut small, OpCode::Binary, true, None, b"Hello"),
            Err(EncodeError::InsufficientSize { required: 7 })
        );
        assert_eq!(small, [0; 6]);
        let long = "r".repeat(124);
        let close = Close {
            code: Some(CloseCode::NORMAL),
            reason: &long,
        };
        assert_eq!(
            encode_close(&mut buf, &close, None),
            Err(EncodeError::ReasonTooLong)
        );
    }
}

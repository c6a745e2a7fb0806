//! Frame writers for the event loop: whole frames (unmasked for the server role, masked for
//! outbound client connections) appended to a connection's staging buffer.

use bytes::{Bytes, BytesMut};
use sockeye_codec::{Header, OpCode, apply_mask};

/// One unmasked server frame in a new buffer.
#[inline]
pub(crate) fn frame(op: OpCode, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 10);
    put_frame(&mut out, op, payload);
    out.freeze()
}

/// Appends one unmasked server frame to `out`.
#[inline]
pub(crate) fn put_frame(out: &mut BytesMut, op: OpCode, payload: &[u8]) {
    put_header(out, op, payload.len());
    out.extend_from_slice(payload);
}

/// Appends the header of an unmasked server frame with a `len`-byte payload to `out`.
#[inline]
pub(crate) fn put_header(out: &mut BytesMut, op: OpCode, len: usize) {
    put_encoded_header(out, &Header::new(op, len as u64));
}

/// Appends `header`, encoded, to `out`.
#[inline]
pub(crate) fn put_encoded_header(out: &mut BytesMut, header: &Header) {
    let mut buf = [0u8; 14];
    let n = header.encode(&mut buf).expect("14 bytes hold any header");
    out.extend_from_slice(&buf[..n]);
}

/// Appends a frame with `header` (whose length is `payload`'s) and `payload`, masked in place
/// in `out` when the header carries a key.
#[inline]
pub(crate) fn put_frame_with(out: &mut BytesMut, header: &Header, payload: &[u8]) {
    debug_assert_eq!(header.payload_len, payload.len() as u64);
    put_encoded_header(out, header);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = header.mask {
        apply_mask(&mut out[start..], key, 0);
    }
}

/// Appends a masked frame: the header with `key`, then `payload` masked in place in `out`.
#[inline]
pub(crate) fn put_masked_frame(out: &mut BytesMut, op: OpCode, payload: &[u8], key: [u8; 4]) {
    put_frame_with(out, &masked_header(op, payload.len(), key), payload);
}

/// The header of a masked client frame with a `len`-byte payload.
#[inline]
pub(crate) fn masked_header(op: OpCode, len: usize, key: [u8; 4]) -> Header {
    Header {
        mask: Some(key),
        ..Header::new(op, len as u64)
    }
}

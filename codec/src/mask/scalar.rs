//! The portable kernel: 8 bytes per step with a `u64` key, written so LLVM can vectorize it.

/// Masks `buf` with `key` already rotated to the phase of `buf[0]`.
#[inline]
pub(super) fn mask(buf: &mut [u8], key: [u8; 4]) {
    let k = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let (words, tail) = buf.as_chunks_mut::<8>();
    for w in words {
        *w = (u64::from_ne_bytes(*w) ^ k).to_ne_bytes();
    }
    // A multiple of 8 bytes was consumed, so the key phase is unchanged for the tail.
    mask_bytes(tail, key);
}

/// Byte-at-a-time masking for short buffers and tails.
#[inline]
pub(super) fn mask_bytes(buf: &mut [u8], key: [u8; 4]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

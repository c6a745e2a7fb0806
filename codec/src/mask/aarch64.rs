//! NEON kernel for aarch64.

#![allow(unsafe_code)]

use core::arch::aarch64::{vdupq_n_u32, veorq_u8, vld1q_u8, vreinterpretq_u8_u32, vst1q_u8};

use super::scalar;

/// NEON kernel; only selected when the target has the `neon` feature at compile time.
pub(super) fn mask_neon(buf: &mut [u8], key: [u8; 4]) {
    if cfg!(target_feature = "neon") {
        // SAFETY: the target is compiled with NEON, the only requirement of `neon`.
        unsafe { neon(buf, key) }
    } else {
        scalar::mask(buf, key)
    }
}

#[target_feature(enable = "neon")]
fn neon(buf: &mut [u8], key: [u8; 4]) {
    let k = vreinterpretq_u8_u32(vdupq_n_u32(u32::from_ne_bytes(key)));
    let mut blocks = buf.chunks_exact_mut(16);
    for block in &mut blocks {
        let p = block.as_mut_ptr();
        // SAFETY: `block` is exactly 16 bytes under a unique borrow; `vld1q_u8`/`vst1q_u8` have no
        // alignment requirement beyond a byte.
        unsafe { vst1q_u8(p, veorq_u8(vld1q_u8(p), k)) };
    }
    // 16 is a multiple of 4, so the tail starts at the same key phase.
    scalar::mask(blocks.into_remainder(), key);
}

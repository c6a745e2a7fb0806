//! SSE2 and AVX2 kernels for x86_64.
//!
//! Each kernel is a `#[target_feature]` function behind a zero-sized token whose safe constructor
//! proves the feature is present, so the safe wrappers below can never run an instruction the CPU
//! lacks. Loads and stores are unaligned (`loadu`/`storeu`): a payload starts wherever the frame
//! header ended, and on every x86_64 core of the last decade unaligned access within a cache line
//! costs the same as aligned.

#![allow(unsafe_code)]

use core::arch::x86_64::{
    __m128i, __m256i, _mm_loadu_si128, _mm_set1_epi32, _mm_storeu_si128, _mm_xor_si128,
    _mm256_loadu_si256, _mm256_set1_epi32, _mm256_storeu_si256, _mm256_xor_si256,
};

use super::scalar;

/// Proof that the CPU has SSE2 (always true on x86_64, kept for symmetry).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct Sse2(());

impl Sse2 {
    /// Returns the token if the CPU supports SSE2.
    #[inline]
    pub(super) fn new() -> Option<Self> {
        #[cfg(feature = "std")]
        let has = std::is_x86_feature_detected!("sse2");
        #[cfg(not(feature = "std"))]
        let has = cfg!(target_feature = "sse2");
        has.then_some(Sse2(()))
    }

    /// The token without checking.
    ///
    /// # Safety
    /// The CPU must support SSE2 (for example: [`Sse2::new`] returned `Some` earlier in this
    /// process).
    #[cfg(feature = "std")]
    #[inline]
    pub(super) const unsafe fn new_unchecked() -> Self {
        Sse2(())
    }
}

/// Proof that the CPU has AVX2.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct Avx2(());

impl Avx2 {
    /// Returns the token if the CPU supports AVX2 (detected at run time under `std`).
    #[inline]
    pub(super) fn new() -> Option<Self> {
        #[cfg(feature = "std")]
        let has = std::is_x86_feature_detected!("avx2");
        #[cfg(not(feature = "std"))]
        let has = cfg!(target_feature = "avx2");
        has.then_some(Avx2(()))
    }

    /// The token without checking.
    ///
    /// # Safety
    /// The CPU must support AVX2 (for example: [`Avx2::new`] returned `Some` earlier in this
    /// process).
    #[cfg(feature = "std")]
    #[inline]
    pub(super) const unsafe fn new_unchecked() -> Self {
        Avx2(())
    }
}

/// SSE2 kernel; falls back to scalar if called on a CPU without SSE2.
pub(super) fn mask_sse2(buf: &mut [u8], key: [u8; 4]) {
    match Sse2::new() {
        // SAFETY: the token proves SSE2 is available, the only requirement of `sse2`.
        Some(_) => unsafe { sse2(buf, key) },
        None => scalar::mask(buf, key),
    }
}

/// AVX2 kernel; falls back to scalar if called on a CPU without AVX2.
pub(super) fn mask_avx2(buf: &mut [u8], key: [u8; 4]) {
    match Avx2::new() {
        // SAFETY: the token proves AVX2 is available, the only requirement of `avx2`.
        Some(_) => unsafe { avx2(buf, key) },
        None => scalar::mask(buf, key),
    }
}

/// SSE2 kernel; the token proves the CPU has SSE2.
#[inline]
pub(super) fn mask_sse2_with(_: Sse2, buf: &mut [u8], key: [u8; 4]) {
    // SAFETY: an `Sse2` token exists only where SSE2 is available (see `Sse2::new` and
    // `Sse2::new_unchecked`), the only requirement of `sse2`.
    unsafe { sse2(buf, key) }
}

/// AVX2 kernel; the token proves the CPU has AVX2.
#[inline]
pub(super) fn mask_avx2_with(_: Avx2, buf: &mut [u8], key: [u8; 4]) {
    // SAFETY: an `Avx2` token exists only where AVX2 is available (see `Avx2::new` and
    // `Avx2::new_unchecked`), the only requirement of `avx2`.
    unsafe { avx2(buf, key) }
}

#[target_feature(enable = "sse2")]
fn sse2(buf: &mut [u8], key: [u8; 4]) {
    let k = _mm_set1_epi32(i32::from_ne_bytes(key));
    let mut blocks = buf.chunks_exact_mut(16);
    for block in &mut blocks {
        let p = block.as_mut_ptr().cast::<__m128i>();
        // SAFETY: `block` is exactly 16 bytes we hold a unique borrow of; `loadu`/`storeu` have no
        // alignment requirement.
        unsafe { _mm_storeu_si128(p, _mm_xor_si128(_mm_loadu_si128(p), k)) };
    }
    // 16 is a multiple of 4, so the tail starts at the same key phase.
    scalar::mask(blocks.into_remainder(), key);
}

#[target_feature(enable = "avx2")]
fn avx2(buf: &mut [u8], key: [u8; 4]) {
    let k = _mm256_set1_epi32(i32::from_ne_bytes(key));
    let mut blocks = buf.chunks_exact_mut(64);
    for block in &mut blocks {
        let p = block.as_mut_ptr().cast::<__m256i>();
        // SAFETY: `block` is exactly 64 bytes (two 32-byte lanes at `p` and `p + 1`) under a unique
        // borrow; unaligned loads and stores are allowed.
        unsafe {
            let a = _mm256_xor_si256(_mm256_loadu_si256(p), k);
            let b = _mm256_xor_si256(_mm256_loadu_si256(p.add(1)), k);
            _mm256_storeu_si256(p, a);
            _mm256_storeu_si256(p.add(1), b);
        }
    }
    let rest = blocks.into_remainder();
    let mut halves = rest.chunks_exact_mut(32);
    for block in &mut halves {
        let p = block.as_mut_ptr().cast::<__m256i>();
        // SAFETY: `block` is exactly 32 bytes under a unique borrow; unaligned access is allowed.
        unsafe { _mm256_storeu_si256(p, _mm256_xor_si256(_mm256_loadu_si256(p), k)) };
    }
    // 64 and 32 are multiples of 4, so the tail starts at the same key phase.
    scalar::mask(halves.into_remainder(), key);
}

//! In-place XOR masking (RFC 6455 §5.3).
//!
//! One entry point, [`apply_mask`], picks the fastest kernel once: on x86_64 AVX2 or SSE2, on
//! aarch64 NEON, elsewhere a safe word-at-a-time scalar loop. With `std` the choice is made at run
//! time (`is_x86_feature_detected!`) and cached in a static; without it, from the compile-time
//! target features. Building with `--cfg sockeye_disable_simd` (or under Miri) forces the scalar
//! kernel everywhere, which is how CI runs the whole test suite on the fallback path.
//!
//! This module is the only place in the crate where `unsafe` is allowed.

mod scalar;

#[cfg(all(target_arch = "x86_64", not(sockeye_disable_simd), not(miri)))]
mod x86;

#[cfg(all(target_arch = "aarch64", not(sockeye_disable_simd), not(miri)))]
mod aarch64;

/// Rotates `key` so that byte 0 of the result is the key byte for payload offset `phase`.
#[inline]
pub fn rotate_key(key: [u8; 4], phase: usize) -> [u8; 4] {
    // Little-endian on both sides makes this byte-order independent: byte i moves to i - phase.
    u32::from_le_bytes(key)
        .rotate_right(8 * (phase as u32 & 3))
        .to_le_bytes()
}

/// XORs `buf` in place with the 4-byte masking `key`, starting at key offset `phase` (0..=3), and
/// returns the phase for the byte that follows `buf`.
///
/// Masking is an involution, so the same call masks and unmasks. Because the phase is threaded
/// through, a payload processed in pieces equals the payload processed whole:
///
/// ```
/// use sockeye_codec::apply_mask;
///
/// let key = [0x37, 0xfa, 0x21, 0x3d];
/// let mut whole = *b"Hello, WebSocket!";
/// let mut split = whole;
/// apply_mask(&mut whole, key, 0);
/// let phase = apply_mask(&mut split[..5], key, 0);
/// apply_mask(&mut split[5..], key, phase);
/// assert_eq!(whole, split);
/// ```
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], phase: usize) -> usize {
    let next = (phase + buf.len()) & 3;
    let key = rotate_key(key, phase);
    if buf.len() < SIMD_THRESHOLD {
        // Control frames and small messages: the inlined word loop beats a dispatched call.
        scalar::mask(buf, key);
    } else {
        dispatch(buf, key);
    }
    next
}

/// Below this length the scalar kernel is used without dispatch: a SIMD kernel would spend its
/// time in the scalar tail anyway.
const SIMD_THRESHOLD: usize = 64;

/// The kernel [`apply_mask`] uses on this machine, for reports and benchmarks.
///
/// One of `"avx2"`, `"sse2"`, `"neon"` or `"scalar"`.
pub fn kernel_name() -> &'static str {
    match choice() {
        Choice::Scalar => "scalar",
        #[cfg(all(target_arch = "x86_64", not(sockeye_disable_simd), not(miri)))]
        Choice::Sse2(_) => "sse2",
        #[cfg(all(target_arch = "x86_64", not(sockeye_disable_simd), not(miri)))]
        Choice::Avx2(_) => "avx2",
        #[cfg(all(target_arch = "aarch64", not(sockeye_disable_simd), not(miri)))]
        Choice::Neon => "neon",
    }
}

/// A kernel: its name and its function (key already rotated to the buffer's phase).
#[doc(hidden)]
pub type Kernel = (&'static str, fn(&mut [u8], [u8; 4]));

/// The kernels this build can choose from. A SIMD variant carries the token that proves the CPU
/// supports it, which is what makes calling its kernel sound.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Choice {
    Scalar,
    #[cfg(all(target_arch = "x86_64", not(sockeye_disable_simd), not(miri)))]
    Sse2(x86::Sse2),
    #[cfg(all(target_arch = "x86_64", not(sockeye_disable_simd), not(miri)))]
    Avx2(x86::Avx2),
    #[cfg(all(target_arch = "aarch64", not(sockeye_disable_simd), not(miri)))]
    Neon,
}

#[inline]
fn dispatch(buf: &mut [u8], key: [u8; 4]) {
    match choice() {
        Choice::Scalar => scalar::mask(buf, key),
        #[cfg(all(target_arch = "x86_64", not(sockeye_disable_simd), not(miri)))]
        Choice::Sse2(t) => x86::mask_sse2_with(t, buf, key),
        #[cfg(all(target_arch = "x86_64", not(sockeye_disable_simd), not(miri)))]
        Choice::Avx2(t) => x86::mask_avx2_with(t, buf, key),
        #[cfg(all(target_arch = "aarch64", not(sockeye_disable_simd), not(miri)))]
        Choice::Neon => aarch64::mask_neon(buf, key),
    }
}

/// Detects the best kernel once (under `std`) and caches the answer in a static.
#[cfg(all(
    target_arch = "x86_64",
    not(sockeye_disable_simd),
    not(miri),
    feature = "std"
))]
#[inline]
#[allow(unsafe_code)] // the tokens for a kernel detected once and cached
fn choice() -> Choice {
    use core::sync::atomic::{AtomicU8, Ordering};
    // 0 = not detected yet, 1 = scalar, 2 = sse2, 3 = avx2.
    static CHOICE: AtomicU8 = AtomicU8::new(0);
    let c = match CHOICE.load(Ordering::Relaxed) {
        0 => {
            let c = if x86::Avx2::new().is_some() {
                3
            } else if x86::Sse2::new().is_some() {
                2
            } else {
                1
            };
            CHOICE.store(c, Ordering::Relaxed);
            c
        }
        c => c,
    };
    match c {
        // SAFETY: 3 is stored above only after `Avx2::new` found AVX2.
        3 => Choice::Avx2(unsafe { x86::Avx2::new_unchecked() }),
        // SAFETY: 2 is stored above only after `Sse2::new` found SSE2.
        2 => Choice::Sse2(unsafe { x86::Sse2::new_unchecked() }),
        _ => Choice::Scalar,
    }
}

/// Without `std` there is no run-time detection: the compile-time target features decide.
#[cfg(all(
    target_arch = "x86_64",
    not(sockeye_disable_simd),
    not(miri),
    not(feature = "std")
))]
#[inline]
fn choice() -> Choice {
    if let Some(t) = x86::Avx2::new() {
        Choice::Avx2(t)
    } else if let Some(t) = x86::Sse2::new() {
        Choice::Sse2(t)
    } else {
        Choice::Scalar
    }
}

#[cfg(all(target_arch = "aarch64", not(sockeye_disable_simd), not(miri)))]
#[inline]
fn choice() -> Choice {
    // NEON is part of every aarch64 target Rust supports with std; bare-metal targets without
    // the target feature get the scalar kernel.
    if cfg!(target_feature = "neon") {
        Choice::Neon
    } else {
        Choice::Scalar
    }
}

#[cfg(any(
    sockeye_disable_simd,
    miri,
    not(any(target_arch = "x86_64", target_arch = "aarch64"))
))]
#[inline]
fn choice() -> Choice {
    Choice::Scalar
}

/// The byte-at-a-time definition of masking: the oracle every kernel is tested against.
#[doc(hidden)]
pub fn mask_naive(buf: &mut [u8], key: [u8; 4], phase: usize) -> usize {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[(phase + i) & 3];
    }
    (phase + buf.len()) & 3
}

/// Every kernel compiled into this build and usable on this CPU, by name (for tests and fuzzing).
#[doc(hidden)]
pub fn kernels() -> impl Iterator<Item = Kernel> {
    // Only filled in further on targets with SIMD kernels.
    #[allow(unused_mut)]
    let mut list: [Option<Kernel>; 4] = [Some(("scalar", scalar::mask)), None, None, None];
    #[cfg(all(target_arch = "x86_64", not(sockeye_disable_simd), not(miri)))]
    {
        #[cfg(feature = "std")]
        let (sse2, avx2) = (x86::Sse2::new().is_some(), x86::Avx2::new().is_some());
        #[cfg(not(feature = "std"))]
        let (sse2, avx2) = (cfg!(target_feature = "sse2"), cfg!(target_feature = "avx2"));
        if sse2 {
            list[1] = Some(("sse2", x86::mask_sse2));
        }
        if avx2 {
            list[2] = Some(("avx2", x86::mask_avx2));
        }
    }
    #[cfg(all(target_arch = "aarch64", not(sockeye_disable_simd), not(miri)))]
    if cfg!(target_feature = "neon") {
        list[3] = Some(("neon", aarch64::mask_neon));
    }
    list.into_iter().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator, so failures reproduce.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn rfc6455_example() {
        // RFC 6455 §5.7: "Hello" masked with 37 fa 21 3d.
        let mut data = *b"Hello";
        apply_mask(&mut data, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(data, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    }

    #[test]
    fn every_kernel_matches_naive_for_all_lengths_offsets_and_phases() {
        let mut seed = 0x9e37_79b9_7f4a_7c15;
        let mut names = 0;
        for (name, kernel) in kernels() {
            names += 1;
            for len in 0..=300usize {
                for offset in 0..=3usize {
                    for phase in 0..=3usize {
                        let key = (xorshift(&mut seed) as u32).to_le_bytes();
                        let mut data = [0u8; 310];
                        data.iter_mut().for_each(|b| *b = xorshift(&mut seed) as u8);
                        let mut expect = data;
                        mask_naive(&mut expect[offset..offset + len], key, phase);
                        let mut got = data;
                        kernel(&mut got[offset..offset + len], rotate_key(key, phase));
                        assert_eq!(
                            &got[..],
                            &expect[..],
                            "{name} len {len} offset {offset} phase {phase}"
                        );
                    }
                }
            }
        }
        assert!(names >= 1);
    }

    #[test]
    fn dispatched_mask_matches_naive_in_pieces() {
        let mut seed = 42;
        for _ in 0..200 {
            let len = (xorshift(&mut seed) % 5000) as usize;
            let key = (xorshift(&mut seed) as u32).to_le_bytes();
            let mut data: std::vec::Vec<u8> = (0..len).map(|_| xorshift(&mut seed) as u8).collect();
            let mut expect = data.clone();
            mask_naive(&mut expect, key, 0);
            let mut phase = 0;
            let mut rest = &mut data[..];
            while !rest.is_empty() {
                let n = ((xorshift(&mut seed) % 700) as usize).min(rest.len());
                let (a, b) = rest.split_at_mut(n);
                phase = apply_mask(a, key, phase);
                rest = b;
            }
            assert_eq!(phase, len & 3);
            assert_eq!(data, expect);
        }
    }

    #[test]
    fn kernel_name_is_known() {
        assert!(["avx2", "sse2", "neon", "scalar"].contains(&kernel_name()));
        #[cfg(sockeye_disable_simd)]
        assert_eq!(kernel_name(), "scalar");
    }
}

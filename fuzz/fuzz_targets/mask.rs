//! Every masking kernel, and the dispatched `apply_mask` in pieces, against the byte-by-byte
//! definition.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockeye_codec::__fuzz::{kernels, mask_naive, rotate_key};

fuzz_target!(|data: &[u8]| {
    let [k0, k1, k2, k3, phase, cut, rest @ ..] = data else {
        return;
    };
    let key = [*k0, *k1, *k2, *k3];
    let phase = usize::from(*phase) & 3;
    let offset = usize::from(*cut) % 4;
    if rest.len() < offset {
        return;
    }
    let mut expect = rest.to_vec();
    let next = mask_naive(&mut expect[offset..], key, phase);
    for (name, kernel) in kernels() {
        let mut got = rest.to_vec();
        kernel(&mut got[offset..], rotate_key(key, phase));
        assert_eq!(got, expect, "{name}");
    }
    let mut pieces = rest.to_vec();
    let split = offset + (pieces.len() - offset) * usize::from(*cut) / 256;
    let p = sockeye_codec::apply_mask(&mut pieces[offset..split], key, phase);
    assert_eq!(
        sockeye_codec::apply_mask(&mut pieces[split..], key, p),
        next
    );
    assert_eq!(pieces, expect);
});

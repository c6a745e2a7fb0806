//! Close-frame payload parsing and encoding.
//!
//! Oracle: no panic; an accepted payload has a sendable code (or none) and a UTF-8 reason of at
//! most 123 bytes, and encoding it gives back exactly the input; a rejected one maps to 1002 or
//! 1007.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockeye_codec::{Close, MAX_REASON_LEN};

fuzz_target!(|data: &[u8]| {
    match Close::parse(data) {
        Ok(close) => {
            assert!(close.code.is_none_or(|c| c.is_sendable()));
            assert!(close.reason.len() <= MAX_REASON_LEN);
            let mut out = [0u8; 125];
            let n = close.encode(&mut out).expect("a parsed close re-encodes");
            assert_eq!(&out[..n], data);
        }
        Err(e) => assert!(matches!(e.close_code().0, 1002 | 1007)),
    }
});

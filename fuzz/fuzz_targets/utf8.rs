//! The incremental UTF-8 validator against `core::str::from_utf8` of the whole input.
//!
//! Input: byte 0 and 1 are cut steps, the rest the text. Oracle: the pieces validate iff the
//! whole does; if the whole holds an impossible sequence, the validator fails in the piece that
//! shows it (fail fast), not at the end.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockeye_codec::Utf8Validator;

fuzz_target!(|data: &[u8]| {
    let [a, b, text @ ..] = data else { return };
    let steps = [usize::from(*a) % 17 + 1, usize::from(*b) % 5 + 1];
    let whole = core::str::from_utf8(text);
    let mut v = Utf8Validator::new();
    let (mut at, mut i, mut failed_at) = (0, 0, None);
    while at < text.len() {
        let end = (at + steps[i % 2]).min(text.len());
        i += 1;
        if v.feed(&text[at..end], false).is_err() {
            failed_at = Some((at, end));
            break;
        }
        at = end;
    }
    let ok = failed_at.is_none() && v.feed(&[], true).is_ok();
    assert_eq!(ok, whole.is_ok(), "{text:x?} steps {steps:?}");
    if let Err(e) = whole
        && let Some(bad_len) = e.error_len()
    {
        // Failing fast: in the piece holding the byte that shows the sequence is invalid (at
        // `valid_up_to + bad_len` at the latest), never before the sequence begins.
        let (start, end) = failed_at.expect("an impossible sequence fails before the end");
        assert!(end > e.valid_up_to(), "failed before the error");
        assert!(
            start <= e.valid_up_to() + bad_len,
            "failed late: piece {start}..{end}"
        );
    }
});

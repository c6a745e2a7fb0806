//! Incremental UTF-8 validation across chunks and fragments (RFC 6455 §8.1).
//!
//! A text message may arrive in pieces split anywhere, even inside a code point. The validator
//! keeps at most 3 bytes of an unfinished code point (the carry) between pieces, validates the
//! bulk of each piece with `simdutf8`'s fast `basic` checker, and fails as soon as a piece holds a
//! byte sequence that no continuation could make valid ("fail fast", Autobahn 6.4.x).

/// Width of a UTF-8 sequence from its lead byte, or 0 for a byte that cannot start one.
const fn width(lead: u8) -> usize {
    match lead {
        0x00..=0x7f => 1,
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => 0,
    }
}

/// Whether `bytes` (1 to 3 bytes) could be the beginning of a valid code point.
fn is_valid_prefix(bytes: &[u8]) -> bool {
    match core::str::from_utf8(bytes) {
        Ok(_) => false, // complete: not an unfinished prefix
        Err(e) => e.valid_up_to() == 0 && e.error_len().is_none(),
    }
}

/// Incremental UTF-8 validator with a carry of at most 3 bytes.
///
/// ```
/// use sockeye_codec::Utf8Validator;
///
/// let text = "κόσμε 世界".as_bytes();
/// let mut v = Utf8Validator::new();
/// // Split inside the 2-byte 'κ' and inside the 3-byte '世'.
/// assert!(v.feed(&text[..1], false).is_ok());
/// assert!(v.feed(&text[1..13], false).is_ok());
/// assert!(v.feed(&text[13..], true).is_ok());
///
/// // An invalid byte fails at once, without waiting for the end of the message.
/// let mut v = Utf8Validator::new();
/// assert!(v.feed(b"ok \xff", false).is_err());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Utf8Validator {
    carry: [u8; 4],
    carry_len: u8,
}

/// The input was not valid UTF-8 (and no continuation could make it valid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utf8Error;

impl Utf8Validator {
    /// A validator at the start of a message.
    #[must_use]
    pub const fn new() -> Self {
        Utf8Validator {
            carry: [0; 4],
            carry_len: 0,
        }
    }

    /// Forgets any carry, for the start of a new message.
    pub fn reset(&mut self) {
        self.carry_len = 0;
    }

    /// Whether a code point is unfinished (the message so far ends mid-character).
    #[must_use]
    pub const fn is_incomplete(&self) -> bool {
        self.carry_len != 0
    }

    /// Validates the next piece of the message; `last` marks the final piece, after which an
    /// unfinished code point is an error. On error the validator must not be fed again.
    pub fn feed(&mut self, mut data: &[u8], last: bool) -> Result<(), Utf8Error> {
        if self.carry_len != 0 {
            let have = usize::from(self.carry_len);
            let need = width(self.carry[0]);
            let take = (need - have).min(data.len());
            self.carry[have..have + take].copy_from_slice(&data[..take]);
            let have = have + take;
            data = &data[take..];
            if have < need {
                // Still unfinished: each byte must keep the prefix valid (fail fast).
                if !is_valid_prefix(&self.carry[..have]) || last {
                    return Err(Utf8Error);
                }
                self.carry_len = have as u8;
                return Ok(());
            }
            if core::str::from_utf8(&self.carry[..need]).is_err() {
                return Err(Utf8Error);
            }
            self.carry_len = 0;
        }
        let split = if last {
            data.len()
        } else {
            unfinished_tail(data)
        };
        let (body, tail) = data.split_at(split);
        if simdutf8::basic::from_utf8(body).is_err() {
            return Err(Utf8Error);
        }
        if !tail.is_empty() {
            if !is_valid_prefix(tail) {
                return Err(Utf8Error);
            }
            self.carry[..tail.len()].copy_from_slice(tail);
            self.carry_len = tail.len() as u8;
        }
        Ok(())
    }
}

/// The index where an unfinished code point at the end of `data` begins (`data.len()` if none).
///
/// Looks back at most 3 bytes for a lead byte whose sequence would run past the end. Whether the
/// tail really is a valid prefix is checked by the caller.
fn unfinished_tail(data: &[u8]) -> usize {
    let n = data.len();
    for back in 1..=3.min(n) {
        let b = data[n - back];
        if b & 0xc0 != 0x80 {
            // The last non-continuation byte: unfinished if its sequence is longer than what
            // follows it. Invalid lead bytes (width 0) stay in the body and fail there.
            let w = width(b);
            return if w > back { n - back } else { n };
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn validate_split(data: &[u8], cuts: &[usize]) -> bool {
        let mut v = Utf8Validator::new();
        let mut start = 0;
        for &c in cuts {
            if v.feed(&data[start..c], false).is_err() {
                return false;
            }
            start = c;
        }
        v.feed(&data[start..], true).is_ok()
    }

    #[test]
    fn every_two_way_split_agrees_with_core() {
        let samples: [&[u8]; 8] = [
            "Hello-µ@ßöäüàá-UTF-8!!".as_bytes(),
            "κόσμε".as_bytes(),
            "𝄞 music 世界 \u{10ffff}".as_bytes(),
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64",
            b"\xf4\x90\x80\x80",
            b"\xc0\xaf",
            b"abc\xe0\x80",
            b"\xf0\x9f\x98",
        ];
        for s in samples {
            let expect = core::str::from_utf8(s).is_ok();
            for a in 0..=s.len() {
                assert_eq!(validate_split(s, &[a]), expect, "{s:x?} at {a}");
                for b in a..=s.len() {
                    assert_eq!(validate_split(s, &[a, b]), expect, "{s:x?} at {a},{b}");
                }
            }
        }
    }

    #[test]
    fn byte_at_a_time_fails_at_the_first_impossible_byte() {
        // 6.4.x style: valid text, then a byte that can never be valid, then more.
        let data = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80\x65";
        let mut v = Utf8Validator::new();
        let mut failed_at = None;
        for (i, b) in data.iter().enumerate() {
            if v.feed(core::slice::from_ref(b), false).is_err() {
                failed_at = Some(i);
                break;
            }
        }
        // 0xf4 is a valid lead byte; 0x90 after it is not (max U+10FFFF).
        assert_eq!(failed_at, Some(12));
    }

    #[test]
    fn unfinished_at_end_is_an_error() {
        let mut v = Utf8Validator::new();
        assert!(v.feed(b"ok\xe2\x82", false).is_ok());
        assert!(v.is_incomplete());
        assert!(v.feed(b"", true).is_err());
    }

    #[test]
    fn random_splits_match_core_on_random_bytes() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet: Vec<char> = "aé€𝄞z".chars().collect();
        for round in 0..3000 {
            let mut s = std::string::String::new();
            for _ in 0..(next() % 40) {
                s.push(alphabet[(next() % alphabet.len() as u64) as usize]);
            }
            let mut bytes = s.into_bytes();
            if round % 2 == 1 && !bytes.is_empty() {
                let i = (next() % bytes.len() as u64) as usize;
                bytes[i] = next() as u8; // possibly corrupt one byte
            }
            let expect = core::str::from_utf8(&bytes).is_ok();
            let mut cuts: Vec<usize> = (0..(next() % 5))
                .map(|_| (next() % (bytes.len() as u64 + 1)) as usize)
                .collect();
            cuts.sort_unstable();
            assert_eq!(validate_split(&bytes, &cuts), expect, "{bytes:x?} {cuts:?}");
        }
    }
}

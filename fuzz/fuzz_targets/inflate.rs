//! Deflating a received compressed message (RFC 7692 §7.2.2) from arbitrary bytes, whole and in
//! two pieces, under a 64 KiB limit.
//!
//! Oracle: no panic; the output never exceeds the limit; an error is bad data (1007) or the
//! limit (1009); both ways of feeding the bytes give the same result.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockeye_codec::deflate::{DeflateConfig, PerMessageDeflate, Pool, negotiate};
use sockeye_codec::{Error, Role};

const LIMIT: u64 = 64 << 10;

fn inflate(pieces: &[&[u8]], pool: &mut Pool) -> Result<Vec<u8>, Error> {
    let config = DeflateConfig::new();
    let agreed = negotiate(["permessage-deflate"], &config).expect("accepted");
    let mut pmd = PerMessageDeflate::new(Role::Server, &agreed, &config).with_idle_release();
    let mut out = Vec::new();
    for (i, p) in pieces.iter().enumerate() {
        let last = i + 1 == pieces.len();
        pmd.decompress(p, last, &mut out, LIMIT, pool)?;
        assert!(out.len() as u64 <= LIMIT + 1);
    }
    // A second message on the same state, after the engine was parked.
    pmd.park(pool);
    Ok(out)
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, body)) = data.split_first() else {
        return;
    };
    let mut pool = Pool::new(2);
    let whole = inflate(&[body], &mut pool);
    let at = usize::from(cut).min(body.len());
    let split = inflate(&[&body[..at], &body[at..]], &mut pool);
    if let Err(e) = &whole {
        assert!(matches!(e, Error::InvalidCompressedData | Error::MessageTooLarge), "{e:?}");
    }
    match (&whole, &split) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("whole {whole:?} vs split {split:?}"),
    }
});

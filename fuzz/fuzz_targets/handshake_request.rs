//! The server's upgrade-request parser and policy helpers on arbitrary bytes.
//!
//! Oracle: no panic; a parsed request has a valid key, so the 101 response always fits 512 bytes
//! and names that key's accept value; every prefix of an accepted request is `Partial`; the
//! origin policy and protocol selection never panic on what was parsed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockeye_codec::Status;
use sockeye_codec::handshake::{self, EMPTY_HEADER, Request};

fuzz_target!(|data: &[u8]| {
    let mut headers = [EMPTY_HEADER; 32];
    let Ok(Status::Complete((req, len))) = Request::parse(data, &mut headers) else {
        return;
    };
    assert!(len <= data.len());
    let _ = handshake::origin_allowed(req.origin, req.host, &["*.example.com", "https://[a-f]?.*"]);
    let chosen = handshake::select_protocol(&req.protocols, &["chat", "v2"]);
    let mut out = [0u8; 512];
    let n = req
        .accept(&mut out, chosen, None)
        .expect("a 101 fits 512 bytes");
    let accept = handshake::accept_key(req.key.as_bytes());
    assert!(out[..n].windows(28).any(|w| w == accept));
    for cut in [0, len / 2, len.saturating_sub(1)] {
        let mut h = [EMPTY_HEADER; 32];
        if cut < len {
            assert!(matches!(
                Request::parse(&data[..cut], &mut h),
                Ok(Status::Partial { .. }) | Err(_)
            ));
        }
    }
});

//! permessage-deflate negotiation: `Sec-WebSocket-Extensions` offers (server) and responses
//! (client) from arbitrary header values.
//!
//! Oracle: no panic; an accepted offer renders a response that our client (default policy)
//! accepts and reads the same way, with windows 8–15; an accepted response has windows 8–15.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockeye_codec::Role;
use sockeye_codec::deflate::{DeflateConfig, accept_response, negotiate};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    let config = DeflateConfig::new();
    if let Some(agreed) = negotiate([value], &config) {
        let out = agreed.outgoing(Role::Server);
        assert!((8..=15).contains(&out.window_bits), "{value:?}");
        assert!((8..=15).contains(&agreed.incoming(Role::Server).window_bits));
        let response = agreed.to_string();
        let back = accept_response([response.as_str()], &config)
            .unwrap_or_else(|e| panic!("{value:?} -> {response:?}: {e}"));
        if let Some(b) = back {
            // What the client reads is what the server agreed to.
            assert_eq!(b.incoming(Role::Client), agreed.outgoing(Role::Server));
        }
    }
    if let Ok(Some(a)) = accept_response([value], &config) {
        assert!((8..=15).contains(&a.outgoing(Role::Client).window_bits), "{value:?}");
        assert!((8..=15).contains(&a.incoming(Role::Client).window_bits), "{value:?}");
    }
});

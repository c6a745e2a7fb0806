//! The client's response parser and validation on arbitrary bytes, plus a round trip of the
//! client request through the server parser.
//!
//! Oracle: no panic; a response that validates is a 101 carrying the accept value of our key and
//! at most a subprotocol we offered; a client request built from fuzzed values either is refused
//! with an error or parses back on the server side with the same path and protocols.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockeye_codec::Status;
use sockeye_codec::handshake::{self, ClientRequest, EMPTY_HEADER, Request, Response};

fuzz_target!(|data: &[u8]| {
    let key = handshake::client_key([0x5a; 16]);
    let mut headers = [EMPTY_HEADER; 32];
    if let Ok(Status::Complete((res, _))) = Response::parse(data, &mut headers)
        && let Ok(proto) = res.validate(&key, &["chat", "v2"], false)
    {
        assert_eq!(res.status, 101);
        assert!(proto.is_none_or(|p| p == "chat" || p == "v2"));
        let accept = handshake::accept_key(&key);
        assert_eq!(
            res.header("sec-websocket-accept").map(<[u8]>::trim_ascii),
            Some(&accept[..])
        );
    }

    // Fuzzed path and protocol: encode, then parse as the server would.
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(2, '\n');
    let path = parts.next().unwrap_or("/");
    let proto = parts.next().unwrap_or("");
    let protocols = [proto];
    let req = ClientRequest {
        protocols: &protocols,
        ..ClientRequest::new("127.0.0.1:9", path, &key)
    };
    let mut buf = vec![0u8; 4096];
    let Ok(n) = req.encode(&mut buf) else { return };
    let mut h = [EMPTY_HEADER; 32];
    let (parsed, len) = Request::parse(&buf[..n], &mut h)
        .expect("our own request parses")
        .complete()
        .expect("complete");
    assert_eq!(len, n);
    assert_eq!(parsed.path, path);
    assert_eq!(&parsed.protocols[..], &protocols[..]);
});

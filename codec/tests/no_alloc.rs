//! Proof that the decode path allocates nothing: a counting global allocator around decoding,
//! masking, UTF-8 validation, encoding and handshake parsing.

// A global allocator cannot be written without `unsafe`; this test file is the one exception
// outside the mask module, and it only forwards to the system allocator.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use sockeye_codec::handshake::{self, ClientRequest, EMPTY_HEADER, Request, Response};
use sockeye_codec::{
    Close, CloseCode, Config, Decoder, Event, OpCode, Role, Status, Utf8Validator, apply_mask,
    encode_close, encode_frame,
};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; only counts allocations.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made on this thread while running `f`.
fn allocations(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

fn wire() -> Vec<u8> {
    let mut w = vec![0u8; 200_000];
    let mut n = 0;
    let key = Some([1, 2, 3, 4]);
    n += encode_frame(&mut w[n..], OpCode::Text, false, key, "κόσ".as_bytes()).unwrap();
    n += encode_frame(&mut w[n..], OpCode::Ping, true, key, b"ping").unwrap();
    n += encode_frame(
        &mut w[n..],
        OpCode::Continuation,
        true,
        key,
        "με".as_bytes(),
    )
    .unwrap();
    n += encode_frame(&mut w[n..], OpCode::Binary, true, key, &[7; 100_000]).unwrap();
    n += encode_frame(&mut w[n..], OpCode::Pong, true, key, b"").unwrap();
    let close = Close {
        code: Some(CloseCode::NORMAL),
        reason: "bye",
    };
    n += encode_close(&mut w[n..], &close, key).unwrap();
    w.truncate(n);
    w
}

#[test]
fn the_counter_sees_allocations() {
    assert!(allocations(|| drop(std::hint::black_box(vec![1u8; 10]))) >= 1);
}

#[test]
fn decoding_allocates_nothing() {
    let original = wire();
    for stream in [false, true] {
        let mut wire = original.clone();
        let mut decoder = Decoder::new(Role::Server, Config::default());
        let mut events = 0;
        let n = allocations(|| {
            let mut start = 0;
            // Feed in 1000-byte steps, as a socket would.
            let mut end = 0;
            while start < wire.len() {
                end = (end + 1000).min(wire.len());
                loop {
                    let r = if stream {
                        decoder.decode_streaming(&mut wire[start..end])
                    } else {
                        decoder.decode(&mut wire[start..end])
                    };
                    match r.unwrap() {
                        Status::Complete(f) => {
                            start += f.wire_len();
                            events += 1;
                            if let Event::Close(c) = f.event {
                                assert_eq!(c.reason, "bye");
                            }
                        }
                        Status::Partial { .. } => break,
                    }
                }
            }
        });
        assert_eq!(n, 0, "stream {stream}");
        assert!(events >= 6);
    }
}

#[test]
fn masking_utf8_encoding_and_handshakes_allocate_nothing() {
    let mut payload = vec![0x55u8; 1 << 20];
    let text = "κόσμε 世界 𝄞 ".repeat(1000);
    let request = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Origin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";
    let mut out = vec![0u8; 4096];
    let n = allocations(|| {
        let phase = apply_mask(&mut payload[3..], [9, 8, 7, 6], 1);
        assert_eq!(phase, (1 + (1 << 20) - 3) & 3);

        let mut v = Utf8Validator::new();
        for chunk in text.as_bytes().chunks(777) {
            v.feed(chunk, false).unwrap();
        }
        v.feed(b"", true).unwrap();

        let mut headers = [EMPTY_HEADER; 32];
        let (req, _) = Request::parse(request, &mut headers)
            .unwrap()
            .complete()
            .unwrap();
        assert!(handshake::origin_allowed(
            req.origin,
            req.host,
            &["*.example.com", "example.com"]
        ));
        let protocol = handshake::select_protocol(&req.protocols, &["superchat"]);
        let m = req.accept(&mut out, protocol, None).unwrap();
        let mut rh = [EMPTY_HEADER; 32];
        let (res, _) = Response::parse(&out[..m], &mut rh)
            .unwrap()
            .complete()
            .unwrap();
        assert_eq!(res.status, 101);
        let e = handshake::write_error_response(&mut out, 403, "origin not allowed").unwrap();
        assert!(e > 0);

        let key = handshake::client_key([5; 16]);
        let creq = ClientRequest {
            protocols: &["chat"],
            ..ClientRequest::new("h:1", "/", &key)
        };
        creq.encode(&mut out).unwrap();

        let m = encode_frame(
            &mut out,
            OpCode::Binary,
            true,
            Some([1, 2, 3, 4]),
            &[1; 1000],
        )
        .unwrap();
        assert_eq!(m, 1008);
    });
    assert_eq!(n, 0);
}

/// The session's receiver on messages that each sit whole in the buffer: lent, never copied or
/// allocated for, text included (as `&str`); control frames too.
#[test]
fn the_session_receiver_lends_whole_messages_without_allocating() {
    use sockeye_codec::session::{Incoming, Message, Receiver};
    let key = Some([1, 2, 3, 4]);
    let mut w = vec![0u8; 4096];
    let mut n = 0;
    for i in 0..20u8 {
        n += encode_frame(&mut w[n..], OpCode::Text, true, key, "κόσμε".as_bytes()).unwrap();
        n += encode_frame(&mut w[n..], OpCode::Binary, true, key, &[i; 100]).unwrap();
        n += encode_frame(&mut w[n..], OpCode::Ping, true, key, b"p").unwrap();
    }
    w.truncate(n);
    let mut rx = Receiver::new(Role::Server, Config::default());
    let mut scratch = Vec::new();
    let (mut texts, mut binaries, mut pings) = (0, 0, 0);
    let allocated = allocations(|| {
        let mut start = 0;
        loop {
            let got = rx.receive(&mut w[start..], &mut scratch, None).unwrap();
            if got.needs_more() {
                break;
            }
            start += got.consumed;
            match got.event {
                Some(Incoming::Message(Message::Text(t))) => {
                    assert_eq!(t, "κόσμε");
                    texts += 1;
                }
                Some(Incoming::Message(Message::Binary(b))) => {
                    assert_eq!(b.len(), 100);
                    binaries += 1;
                }
                Some(Incoming::Ping(_)) => pings += 1,
                other => panic!("{other:?}"),
            }
        }
    });
    assert_eq!(allocated, 0);
    assert_eq!((texts, binaries, pings), (20, 20, 20));
}

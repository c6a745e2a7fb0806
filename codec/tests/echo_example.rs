//! The codec-only echo server example, exercised by an independent client (tungstenite) and by
//! raw bad input.

#[allow(dead_code)]
#[path = "../examples/echo_server.rs"]
mod echo_server;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode as TCloseCode;
use tungstenite::{Bytes, Message};

fn start() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || echo_server::serve(listener));
    addr
}

fn connect(addr: SocketAddr) -> tungstenite::WebSocket<TcpStream> {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (ws, resp) = tungstenite::client(format!("ws://{addr}/echo"), stream).unwrap();
    assert_eq!(resp.status(), 101);
    ws
}

#[test]
fn tungstenite_round_trips_text_binary_large_and_ping() {
    let addr = start();
    let mut ws = connect(addr);
    ws.send(Message::text("Hello, κόσμε")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("Hello, κόσμε"));
    ws.send(Message::binary(vec![0u8, 1, 2, 255])).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(vec![0u8, 1, 2, 255]));
    // 4 MiB: larger than the server's 64 KiB buffer, so it streams through and is reassembled.
    let big: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
    ws.send(Message::binary(big.clone())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(big));
    ws.send(Message::Ping(Bytes::from_static(b"are you there")))
        .unwrap();
    assert_eq!(
        ws.read().unwrap(),
        Message::Pong(Bytes::from_static(b"are you there"))
    );
    ws.close(Some(CloseFrame {
        code: TCloseCode::Away,
        reason: "".into(),
    }))
    .unwrap();
    match ws.read() {
        Ok(Message::Close(Some(frame))) => assert_eq!(frame.code, TCloseCode::Away),
        other => panic!("expected the echoed close, got {other:?}"),
    }
}

#[test]
fn fragmented_message_is_echoed_whole() {
    use tungstenite::protocol::frame::Frame;
    use tungstenite::protocol::frame::coding::{Data, OpCode};
    let addr = start();
    let mut ws = connect(addr);
    let text = "fragments: 𝄞 世界".as_bytes();
    let parts = [&text[..13], &text[13..16], &text[16..]];
    for (i, part) in parts.iter().enumerate() {
        let op = if i == 0 {
            OpCode::Data(Data::Text)
        } else {
            OpCode::Data(Data::Continue)
        };
        let frame = Frame::message(part.to_vec(), op, i == parts.len() - 1);
        ws.write(Message::Frame(frame)).unwrap();
    }
    ws.flush().unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("fragments: 𝄞 世界"));
}

/// Performs the upgrade by hand, to then send bytes no well-behaved client would.
fn raw_upgrade(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let mut resp = Vec::new();
    let mut byte = [0u8];
    while !resp.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        resp.push(byte[0]);
    }
    assert!(resp.starts_with(b"HTTP/1.1 101 "));
    s
}

fn read_close_code(s: &mut TcpStream) -> u16 {
    let mut frame = [0u8; 4];
    s.read_exact(&mut frame).unwrap();
    assert_eq!(
        frame[..2],
        [0x88, 0x02],
        "a close frame with a 2-byte payload"
    );
    u16::from_be_bytes([frame[2], frame[3]])
}

#[test]
fn bad_frames_get_their_close_codes() {
    let addr = start();
    // reserved opcode 3 → 1002
    let mut s = raw_upgrade(addr);
    s.write_all(&[0x83, 0x80, 0, 0, 0, 0]).unwrap();
    assert_eq!(read_close_code(&mut s), 1002);
    // unmasked frame from a client → 1002
    let mut s = raw_upgrade(addr);
    s.write_all(&[0x81, 0x01, b'a']).unwrap();
    assert_eq!(read_close_code(&mut s), 1002);
    // invalid UTF-8 → 1007
    let mut s = raw_upgrade(addr);
    s.write_all(&[0x81, 0x82, 0, 0, 0, 0, 0xc3, 0x28]).unwrap();
    assert_eq!(read_close_code(&mut s), 1007);
    // a 32 MiB frame header (over the 16 MiB default) → 1009 without sending the payload
    let mut s = raw_upgrade(addr);
    s.write_all(&[0x82, 0xff, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0])
        .unwrap();
    assert_eq!(read_close_code(&mut s), 1009);
}

#[test]
fn plain_http_gets_426_and_bad_upgrades_400() {
    let addr = start();
    let ask = |req: &[u8]| {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(req).unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        resp
    };
    let r = ask(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 426 "), "{r}");
    assert!(r.contains("Sec-WebSocket-Version: 13"));
    let r = ask(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 400 "), "{r}");
    let r = ask(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                  Origin: http://evil.example\r\n\
                  Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 403 "), "{r}");
    let mut huge = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 9000));
    let r = ask(&huge);
    assert!(r.starts_with("HTTP/1.1 431 "), "{r}");
}

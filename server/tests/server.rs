//! The server against independent clients (tokio-tungstenite) and raw bad input. CI runs this
//! suite (and every other server test) on each engine: `SOCKEYE_ENGINE=poll` picks the portable
//! one, which `engine_is_the_one_asked_for` checks.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use sockeye_server::{Broadcast, Config, Echo, Handler, Message as SMessage, Server, WebSocket};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Bytes, Message};

fn config() -> Config {
    Config::new("127.0.0.1:0".parse().unwrap()).workers(2)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(addr: SocketAddr) -> Ws {
    let (ws, resp) = tokio_tungstenite::connect_async(format!("ws://{addr}/"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    ws
}

async fn next(ws: &mut Ws) -> Message {
    tokio::time::timeout(Duration::from_secs(20), ws.next())
        .await
        .expect("a message within 20 s")
        .expect("stream open")
        .expect("no error")
}

#[test]
fn engine_is_the_one_asked_for() {
    let server = Server::start(config(), |_| Echo).unwrap();
    let expected = match std::env::var("SOCKEYE_ENGINE").as_deref() {
        Ok("poll") => sockeye_server::Engine::Poll,
        // This machine allows io_uring, so `auto` picks it.
        _ => sockeye_server::Engine::Uring,
    };
    assert_eq!(server.engine(), expected);
    let forced = Server::start(config().engine(sockeye_server::Engine::Poll), |_| Echo).unwrap();
    assert_eq!(forced.engine(), sockeye_server::Engine::Poll);
    for s in [server, forced] {
        s.shutdown();
        s.join().unwrap();
    }
}

#[test]
fn start_refuses_settings_that_cannot_work() {
    for (config, says) in [
        (config().max_message(0), "max message 0"),
        (config().max_rooms(0), "max rooms 0"),
        (config().max_room_name(0), "max room name 0"),
        (config().max_request(10), "max request 10"),
        (
            config().subprotocol("chat v2"),
            "\"chat v2\" is not an HTTP token",
        ),
        (config().subprotocol(""), "\"\" is not an HTTP token"),
        (
            config().allow_origin("https://app.example.com/"),
            "can never match: it has a path",
        ),
        (config().allow_origin(""), "can never match: it is empty"),
    ] {
        let err = Server::start(config, |_| Echo)
            .err()
            .unwrap_or_else(|| panic!("{says}: started"));
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
        assert!(err.to_string().contains(says), "{says}: {err}");
    }
    // The edges that do work still start.
    let fine = config()
        .max_message(1)
        .max_rooms(1)
        .subprotocol("v2.chat")
        .allow_origin("https://*.example.com:8443");
    let server = Server::start(fine, |_| Echo).unwrap();
    server.shutdown();
    server.join().unwrap();
}

#[test]
fn a_port_already_listened_on_is_refused_unless_shared() {
    let first = Server::start(config(), |_| Echo).unwrap();
    let addr = first.local_addr();
    // A second server on the port is refused instead of silently taking a share of the
    // clients (the workers' listeners use SO_REUSEPORT among themselves).
    let err = Server::start(Config::new(addr).workers(1), |_| Echo)
        .err()
        .expect("a second server on the port is refused");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
    assert!(err.to_string().contains("--reuse-port"), "{err}");
    // So is a port held by any other listener.
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let err = Server::start(Config::new(other.local_addr().unwrap()), |_| Echo)
        .err()
        .expect("a port held by another listener is refused");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
    drop(other);
    // Asked to share, a new server joins the first; once the first has shut down, it
    // takes every connection (the zero-downtime restart).
    let second = Server::start(Config::new(addr).workers(1).reuse_port(true), |_| Echo).unwrap();
    first.shutdown();
    first.join().unwrap();
    rt().block_on(async {
        for i in 0..4 {
            let mut ws = connect(addr).await;
            ws.send(Message::text(format!("after restart {i}")))
                .await
                .unwrap();
            assert_eq!(
                next(&mut ws).await,
                Message::text(format!("after restart {i}"))
            );
        }
    });
    second.shutdown();
    second.join().unwrap();
    // Free again (connections in TIME_WAIT do not count): a plain start succeeds.
    let third = Server::start(Config::new(addr).workers(1), |_| Echo).unwrap();
    third.shutdown();
    third.join().unwrap();
}

#[test]
fn echo_text_binary_fragmented_and_large() {
    let server = Server::start(config(), |_| Echo).unwrap();
    let addr = server.local_addr();
    rt().block_on(async {
        let mut ws = connect(addr).await;
        ws.send(Message::text("Hello, κόσμε")).await.unwrap();
        assert_eq!(next(&mut ws).await, Message::text("Hello, κόσμε"));
        ws.send(Message::binary(vec![0u8, 1, 2, 255]))
            .await
            .unwrap();
        assert_eq!(next(&mut ws).await, Message::binary(vec![0u8, 1, 2, 255]));
        for size in [0, 125, 126, 65535, 65536, 64 << 10, 1 << 20, 16 << 20] {
            let payload: Vec<u8> = (0..size).map(|i: usize| (i % 251) as u8).collect();
            ws.send(Message::binary(payload.clone())).await.unwrap();
            assert_eq!(next(&mut ws).await, Message::binary(payload), "size {size}");
        }
        // A fragmented text message, split inside characters.
        use tokio_tungstenite::tungstenite::protocol::frame::Frame;
        use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
        let text = "fragments: 𝄞 世界".as_bytes();
        let parts = [&text[..13], &text[13..16], &text[16..]];
        for (i, part) in parts.iter().enumerate() {
            let op = if i == 0 {
                OpCode::Data(Data::Text)
            } else {
                OpCode::Data(Data::Continue)
            };
            ws.feed(Message::Frame(Frame::message(
                part.to_vec(),
                op,
                i == parts.len() - 1,
            )))
            .await
            .unwrap();
        }
        ws.flush().await.unwrap();
        assert_eq!(next(&mut ws).await, Message::text("fragments: 𝄞 世界"));
        ws.send(Message::Ping(Bytes::from_static(b"are you there")))
            .await
            .unwrap();
        assert_eq!(
            next(&mut ws).await,
            Message::Pong(Bytes::from_static(b"are you there"))
        );
        ws.close(None).await.unwrap();
    });
    server.shutdown();
    server.join().unwrap();
}

#[test]
fn messages_straddling_small_receive_buffers() {
    // 8 buffers of 4 KiB: every message below crosses buffer boundaries at odd offsets.
    let server = Server::start(config().recv_buffers(8, 4096), |_| Echo).unwrap();
    let addr = server.local_addr();
    rt().block_on(async {
        let mut ws = connect(addr).await;
        let sizes = [1, 4095, 4096, 4097, 9000, 70_001, 300_007];
        for &size in &sizes {
            let text: String = (0..size)
                .map(|i| if i % 3 == 0 { 'é' } else { 'x' })
                .collect();
            ws.feed(Message::text(text)).await.unwrap();
        }
        ws.flush().await.unwrap();
        for &size in &sizes {
            let Message::Text(t) = next(&mut ws).await else {
                panic!("text expected")
            };
            assert_eq!(t.chars().count(), size);
        }
        // Many small pipelined messages: several frames per receive, headers split across them.
        for i in 0..2000u32 {
            ws.feed(Message::binary(i.to_be_bytes().repeat(i as usize % 7)))
                .await
                .unwrap();
        }
        ws.flush().await.unwrap();
        for i in 0..2000u32 {
            assert_eq!(
                next(&mut ws).await,
                Message::binary(i.to_be_bytes().repeat(i as usize % 7))
            );
        }
    });
    server.shutdown();
    server.join().unwrap();
}

#[test]
fn broadcast_reaches_every_subscriber_in_order() {
    let server = Server::start(config(), |_| Broadcast).unwrap();
    let addr = server.local_addr();
    rt().block_on(async {
        let mut subs = Vec::new();
        for _ in 0..20 {
            subs.push(connect(addr).await);
        }
        // Let every subscription land on its worker before publishing.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut publisher = connect(addr).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        for i in 0..200 {
            publisher
                .feed(Message::text(format!("m{i}")))
                .await
                .unwrap();
        }
        publisher.flush().await.unwrap();
        for ws in subs.iter_mut().chain(std::iter::once(&mut publisher)) {
            for i in 0..200 {
                assert_eq!(next(ws).await, Message::text(format!("m{i}")));
            }
        }
    });
    server.shutdown();
    server.join().unwrap();
}

/// An upgrade request to `addr` with `extra` header lines.
fn upgrade_request(addr: SocketAddr, extra: &str) -> String {
    format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Reads a response's status line and headers, byte by byte (nothing after them).
fn read_head(s: &mut TcpStream) -> String {
    let mut resp = Vec::new();
    let mut byte = [0u8];
    while !resp.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).unwrap() == 0 {
            break;
        }
        resp.push(byte[0]);
    }
    String::from_utf8(resp).unwrap()
}

/// Upgrades by hand, to send bytes no well-behaved client would.
fn raw_upgrade(addr: SocketAddr, extra: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(upgrade_request(addr, extra).as_bytes())
        .unwrap();
    let head = read_head(&mut s);
    (s, head)
}

/// Reads an unmasked close frame and returns its code; the server then closes the socket.
fn read_close_code(s: &mut TcpStream) -> u16 {
    let mut head = [0u8; 2];
    s.read_exact(&mut head).unwrap();
    assert_eq!(head[0], 0x88, "a close frame");
    let len = usize::from(head[1]);
    assert!((2..=125).contains(&len), "a close frame with a code");
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).unwrap();
    assert!(std::str::from_utf8(&payload[2..]).is_ok());
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty(), "nothing after the close frame");
    u16::from_be_bytes([payload[0], payload[1]])
}

#[test]
fn bad_frames_get_their_close_codes_and_others_go_on() {
    let server = Server::start(config().max_message(1 << 20), |_| Echo).unwrap();
    let addr = server.local_addr();
    let (mut bystander, _) = raw_upgrade(addr, "");
    let cases: [(&[u8], u16); 5] = [
        (&[0x83, 0x80, 0, 0, 0, 0], 1002),             // reserved opcode
        (&[0x81, 0x01, b'a'], 1002),                   // unmasked client frame
        (&[0x81, 0x82, 0, 0, 0, 0, 0xc3, 0x28], 1007), // invalid UTF-8
        (&[0x82, 0xff, 0, 0, 0, 0, 0, 0x20, 0, 0, 0, 0, 0, 0], 1009), // 2 MiB header, 1 MiB limit
        (&[0x89, 0xfe, 0, 200, 0, 0, 0, 0], 1002),     // ping over 125 bytes
    ];
    for (bytes, code) in cases {
        let (mut s, resp) = raw_upgrade(addr, "");
        assert!(resp.starts_with("HTTP/1.1 101 "), "{resp}");
        s.write_all(bytes).unwrap();
        assert_eq!(read_close_code(&mut s), code, "{bytes:x?}");
    }
    // The bystander connection is untouched: a masked "ok" is echoed.
    bystander
        .write_all(&[0x81, 0x82, 1, 2, 3, 4, b'o' ^ 1, b'k' ^ 2])
        .unwrap();
    let mut echo = [0u8; 4];
    bystander.read_exact(&mut echo).unwrap();
    assert_eq!(echo, [0x81, 0x02, b'o', b'k']);
    server.shutdown();
    server.join().unwrap();
}

/// A client that sends frames right behind its request, in the same write (not waiting for
/// the 101), and more of them than the request bound (8 KiB) holds: nothing is lost.
#[test]
fn frames_sent_with_the_request_are_all_read() {
    let server = Server::start(config(), |_| Echo).unwrap();
    let addr = server.local_addr();
    let mut bytes = upgrade_request(addr, "").into_bytes();
    let sizes = [100_000usize, 5, 70_000];
    for (i, n) in sizes.iter().enumerate() {
        bytes.extend_from_slice(&[0x82, 0xff]);
        bytes.extend_from_slice(&(*n as u64).to_be_bytes());
        bytes.extend_from_slice(&[0; 4]);
        bytes.extend(std::iter::repeat_n(i as u8 + 1, *n));
    }
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&bytes).unwrap();
    assert!(read_head(&mut s).starts_with("HTTP/1.1 101 "));
    for (i, n) in sizes.iter().enumerate() {
        let (header, payload) = read_frame(&mut s);
        assert_eq!(header.opcode, sockeye_codec::OpCode::Binary);
        assert_eq!(payload.len(), *n, "message {i}");
        assert!(payload.iter().all(|b| *b == i as u8 + 1), "message {i}");
    }
    drop(s);
    server.shutdown();
    server.join().unwrap();
}

fn http(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp
}

/// Admits `Authorization: Bearer ok` only, with a different refusal for each other case.
struct Gate;

impl Handler for Gate {
    fn on_upgrade(
        &mut self,
        req: &sockeye_server::UpgradeRequest<'_>,
    ) -> sockeye_server::Admission {
        use sockeye_server::Admission;
        assert!(req.peer_addr().is_some_and(|a| a.ip().is_loopback()));
        assert_eq!(req.path(), "/gate");
        match (req.header("AUTHORIZATION"), req.query()) {
            (_, Some("panic")) => panic!("a bug in the application's check"),
            (Some("Bearer ok"), _) => Admission::Accept,
            (_, Some("busy")) => Admission::refuse(429, "slow down"),
            (_, Some("odd")) => Admission::refuse(200, "200 is not a refusal"),
            (Some(_), _) => Admission::refuse(403, "wrong token"),
            (None, _) => Admission::refuse(401, "é".repeat(5_000)),
        }
    }

    fn on_message(&mut self, ws: &mut WebSocket<'_>, msg: SMessage<'_>) {
        let _ = match msg {
            SMessage::Text(t) => ws.send_text(t),
            SMessage::Binary(b) => ws.send_binary(b),
        };
    }
}

#[test]
fn the_pre_upgrade_hook_refuses_with_its_own_status_before_the_101() {
    let server = Server::start(config(), |_| Gate).unwrap();
    let addr = server.local_addr();
    let request = |target: &str, extra: &str| {
        format!(
            "GET {target} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        )
    };
    let r = http(addr, request("/gate", "").as_bytes());
    assert!(r.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{r}");
    let body = r.split_once("\r\n\r\n").unwrap().1;
    assert!(body.len() <= 4097, "the body is bounded: {}", body.len());
    assert!(body.starts_with("éé"));
    let r = http(
        addr,
        request("/gate", "Authorization: Bearer no\r\n").as_bytes(),
    );
    assert!(
        r.starts_with("HTTP/1.1 403 Forbidden\r\n") && r.ends_with("wrong token\n"),
        "{r}"
    );
    let r = http(addr, request("/gate?busy", "").as_bytes());
    assert!(r.starts_with("HTTP/1.1 429 Too Many Requests\r\n"), "{r}");
    let r = http(addr, request("/gate?odd", "").as_bytes());
    assert!(r.starts_with("HTTP/1.1 500 "), "{r}");
    let r = http(addr, request("/gate?panic", "").as_bytes());
    assert!(r.starts_with("HTTP/1.1 500 "), "{r}");
    // Admitted: the upgrade completes and the connection works, the panic notwithstanding.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request("/gate", "Authorization: Bearer ok\r\n").as_bytes())
        .unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    s.write_all(&[0x81, 0x82, 0, 0, 0, 0, b'h', b'i']).unwrap();
    let mut echo = [0u8; 4];
    s.read_exact(&mut echo).unwrap();
    assert_eq!(echo, [0x81, 2, b'h', b'i']);
    let text = server.metrics();
    assert!(
        text.contains("sockeye_handshakes_refused_total{reason=\"handler\"} 5\n"),
        "{text}"
    );
    assert!(text.contains("sockeye_handler_panics_total 1\n"), "{text}");
    drop(s); // (a peer that never answers the shutdown's close would hold it 5 s)
    server.shutdown();
    server.join().unwrap();
}

#[test]
fn http_errors_origins_and_subprotocols() {
    let config = config()
        .allow_origin("*.good.example")
        .subprotocol("v2")
        .subprotocol("v1");
    let server = Server::start(config, |_| Echo).unwrap();
    let addr = server.local_addr();
    let r = http(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 426 "), "{r}");
    assert!(r.contains("\r\nSec-WebSocket-Version: 13\r\n"), "{r}");
    let r = http(
        addr,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 405 "), "{r}");
    let r = http(
        addr,
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                         Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 400 "), "{r}");
    let r = http(addr, b"NOT HTTP AT ALL\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 400 "), "{r}");
    let mut huge = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 9000));
    let r = http(addr, &huge);
    assert!(r.starts_with("HTTP/1.1 431 "), "{r}");

    let (_, r) = raw_upgrade(addr, "Origin: http://evil.example\r\n");
    assert!(r.starts_with("HTTP/1.1 403 "), "{r}");
    let (_, r) = raw_upgrade(addr, "Origin: https://app.good.example\r\n");
    assert!(r.starts_with("HTTP/1.1 101 "), "{r}");
    let (_, r) = raw_upgrade(addr, &format!("Origin: http://{addr}\r\n"));
    assert!(r.starts_with("HTTP/1.1 101 "), "same origin: {r}");
    let (_, r) = raw_upgrade(addr, "Sec-WebSocket-Protocol: v1, v2\r\n");
    assert!(
        r.contains("\r\nSec-WebSocket-Protocol: v2\r\n"),
        "server preference wins: {r}"
    );
    let (_, r) = raw_upgrade(addr, "Sec-WebSocket-Protocol: mqtt\r\n");
    assert!(!r.contains("Sec-WebSocket-Protocol"), "{r}");
    server.shutdown();
    server.join().unwrap();
}

#[test]
fn idle_connections_are_pinged_then_closed_with_1001() {
    let config = config().idle_timeout(Duration::from_millis(300));
    let server = Server::start(config, |_| Echo).unwrap();
    let (mut s, resp) = raw_upgrade(server.local_addr(), "");
    assert!(resp.starts_with("HTTP/1.1 101 "));
    // We never answer: first a ping, then the close.
    let mut ping = [0u8; 2];
    s.read_exact(&mut ping).unwrap();
    assert_eq!(ping, [0x89, 0x00]);
    assert_eq!(read_close_code(&mut s), 1001);
    server.shutdown();
    server.join().unwrap();
}

#[test]
fn a_peer_that_answers_pings_stays_connected() {
    let config = config().idle_timeout(Duration::from_millis(200));
    let server = Server::start(config, |_| Echo).unwrap();
    let addr = server.local_addr();
    rt().block_on(async {
        let mut ws = connect(addr).await; // tungstenite answers pings by itself
        let until = Instant::now() + Duration::from_millis(1200);
        while Instant::now() < until {
            match tokio::time::timeout(Duration::from_millis(100), ws.next()).await {
                Ok(Some(Ok(Message::Ping(_)))) | Err(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        ws.send(Message::text("still here")).await.unwrap();
        loop {
            match next(&mut ws).await {
                Message::Ping(_) => continue,
                m => break assert_eq!(m, Message::text("still here")),
            }
        }
    });
    server.shutdown();
    server.join().unwrap();
}

#[test]
fn graceful_shutdown_closes_with_1001() {
    let server = Server::start(config(), |_| Echo).unwrap();
    let addr = server.local_addr();
    rt().block_on(async {
        let mut clients = Vec::new();
        for _ in 0..10 {
            clients.push(connect(addr).await);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        server.shutdown();
        for ws in &mut clients {
            match next(ws).await {
                Message::Close(Some(f)) => assert_eq!(f.code, CloseCode::Away),
                m => panic!("expected close, got {m:?}"),
            }
        }
    });
    let started = Instant::now();
    server.join().unwrap();
    assert!(started.elapsed() < Duration::from_secs(6));
    assert!(TcpStream::connect(addr).is_err(), "no longer accepting");
}

/// A handler that answers from another thread through a `Poster`.
struct Deferred(sockeye_server::Poster);

impl Handler for Deferred {
    fn on_message(&mut self, ws: &mut WebSocket<'_>, msg: SMessage<'_>) {
        let (id, text, poster) = (
            ws.id(),
            String::from_utf8_lossy(msg.as_bytes()).into_owned(),
            self.0.clone(),
        );
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20)); // the slow work
            assert!(poster.post(id, move |ws| {
                let _ = ws.send_text(&text.to_uppercase());
            }));
        });
    }
}

#[test]
fn work_posted_back_from_another_thread() {
    let server = Server::start(config(), |ctx| Deferred(ctx.poster)).unwrap();
    let addr = server.local_addr();
    rt().block_on(async {
        let mut ws = connect(addr).await;
        ws.send(Message::text("shout")).await.unwrap();
        assert_eq!(next(&mut ws).await, Message::text("SHOUT"));
    });
    server.shutdown();
    server.join().unwrap();
}

#[test]
fn a_client_that_does_not_read_is_paused_not_buffered() {
    // 64 KiB bound: the server stops reading from a peer that never reads its echoes, so its
    // memory stays bounded while the peer's sends block.
    let server = Server::start(config().max_backpressure(64 << 10), |_| Echo).unwrap();
    let addr = server.local_addr();
    let (mut s, _) = raw_upgrade(addr, "");
    s.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut frame = vec![0x82, 0xfe, 0xff, 0xff, 0, 0, 0, 0];
    frame.extend(std::iter::repeat_n(7u8, 65535));
    let mut sent = 0usize;
    while s.write_all(&frame).is_ok() {
        sent += frame.len();
        assert!(sent < 512 << 20, "the server kept reading without bound");
    }
    // Now read everything back: the connection is alive and drains.
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = vec![0u8; 1 << 16];
    assert!(s.read(&mut buf).unwrap() > 0);
    server.shutdown();
    server.join().unwrap();
}

#[test]
fn a_slow_broadcast_subscriber_is_closed_with_1008() {
    let config = config().max_backpressure(256 << 10);
    let server = Server::start(config, |_| Broadcast).unwrap();
    let addr = server.local_addr();
    // The slow subscriber upgrades and then never reads.
    let (mut slow, resp) = raw_upgrade(addr, "");
    assert!(resp.starts_with("HTTP/1.1 101 "));
    std::thread::sleep(Duration::from_millis(100));
    rt().block_on(async {
        let mut publisher = connect(addr).await;
        let payload = vec![7u8; 60 << 10];
        // Far more than the slow peer's socket buffers and its 256 KiB bound can hold.
        for _ in 0..400 {
            publisher
                .send(Message::binary(payload.clone()))
                .await
                .unwrap();
            let _ = next(&mut publisher).await; // the publisher reads its own copies
        }
    });
    // Skip the broadcast frames that reached the slow peer, then find the close frame: 1008.
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut all = Vec::new();
    let _ = slow.read_to_end(&mut all);
    let mut at = 0;
    let mut close = None;
    while at + 2 <= all.len() {
        let (op, len7) = (all[at] & 0x0f, usize::from(all[at + 1] & 0x7f));
        let (hlen, len) = match len7 {
            126 => (
                4,
                usize::from(u16::from_be_bytes([all[at + 2], all[at + 3]])),
            ),
            127 => (
                10,
                u64::from_be_bytes(all[at + 2..at + 10].try_into().unwrap()) as usize,
            ),
            n => (2, n),
        };
        if op == 0x8 {
            close = Some(u16::from_be_bytes([all[at + hlen], all[at + hlen + 1]]));
            break;
        }
        at += hlen + len;
    }
    assert_eq!(close, Some(1008));
    server.shutdown();
    server.join().unwrap();
}

/// Streams messages piece by piece and answers with the byte count; limits reads to 1 MiB.
struct Counter {
    bytes: usize,
    pieces: usize,
}

impl Handler for Counter {
    fn on_open(&mut self, ws: &mut WebSocket<'_>) {
        ws.set_read_limit(1 << 20);
    }

    fn streaming(&self) -> bool {
        true
    }

    fn on_chunk(&mut self, ws: &mut WebSocket<'_>, chunk: sockeye_server::Chunk<'_>) {
        if chunk.first {
            (self.bytes, self.pieces) = (0, 0);
        }
        self.bytes += chunk.data.len();
        self.pieces += 1;
        if chunk.last {
            let _ = ws.send_text(&format!("{} bytes", self.bytes));
        }
    }
}

#[test]
fn streaming_handler_and_per_connection_read_limit() {
    let config = config().recv_buffers(8, 4096);
    let server = Server::start(config, |_| Counter {
        bytes: 0,
        pieces: 0,
    })
    .unwrap();
    let addr = server.local_addr();
    rt().block_on(async {
        let mut ws = connect(addr).await;
        // 900 KiB through 4 KiB receive buffers: streamed in pieces, never assembled.
        ws.send(Message::binary(vec![1u8; 900 << 10]))
            .await
            .unwrap();
        assert_eq!(
            next(&mut ws).await,
            Message::text(format!("{} bytes", 900 << 10))
        );
    });
    // Over the 1 MiB limit set in on_open (the server default is 16 MiB): 1009 on the header
    // alone, before any payload is sent.
    let (mut s, _) = raw_upgrade(addr, "");
    let len = ((1u64 << 20) + 1).to_be_bytes();
    let mut header = vec![0x82, 0xff];
    header.extend_from_slice(&len);
    header.extend_from_slice(&[0, 0, 0, 0]);
    s.write_all(&header).unwrap();
    assert_eq!(read_close_code(&mut s), 1009);
    server.shutdown();
    server.join().unwrap();
}

/// A frame as a client sends it: masked, with RSV1 when `rsv1`.
fn client_frame(op: sockeye_codec::OpCode, fin: bool, rsv1: bool, payload: &[u8]) -> Vec<u8> {
    let key = [7, 1, 8, 2];
    let header = sockeye_codec::Header {
        fin,
        rsv1,
        mask: Some(key),
        ..sockeye_codec::Header::new(op, payload.len() as u64)
    };
    let mut out = vec![0u8; sockeye_codec::MAX_HEADER_LEN];
    let n = header.encode(&mut out).unwrap();
    out.truncate(n);
    let at = out.len();
    out.extend_from_slice(payload);
    sockeye_codec::apply_mask(&mut out[at..], key, 0);
    out
}

/// Reads one unmasked frame from the server: its header and payload.
fn read_frame(s: &mut TcpStream) -> (sockeye_codec::Header, Vec<u8>) {
    let mut buf = vec![0u8; 2];
    s.read_exact(&mut buf).unwrap();
    loop {
        match sockeye_codec::Header::parse(&buf).unwrap() {
            sockeye_codec::Status::Complete((h, n)) => {
                let mut payload = vec![0u8; h.payload_len as usize];
                s.read_exact(&mut payload).unwrap();
                assert_eq!(n, buf.len());
                return (h, payload);
            }
            sockeye_codec::Status::Partial { needed } => {
                let at = buf.len();
                buf.resize(at + needed, 0);
                s.read_exact(&mut buf[at..]).unwrap();
            }
        }
    }
}

fn deflate_pair() -> (
    sockeye_codec::deflate::PerMessageDeflate,
    sockeye_codec::deflate::Pool,
) {
    use sockeye_codec::deflate::{DeflateConfig, PerMessageDeflate, Pool, negotiate};
    let c = DeflateConfig::new();
    let agreed = negotiate(["permessage-deflate"], &c).unwrap();
    (
        PerMessageDeflate::new(sockeye_codec::Role::Client, &agreed, &c),
        Pool::default(),
    )
}

const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate\r\n";

#[test]
fn compressed_messages_echo_as_one_compressed_frame_above_the_threshold() {
    use sockeye_codec::OpCode;
    let config = config().compression(sockeye_server::Compression::ContextTakeover);
    let server = Server::start(config, |_| Echo).unwrap();
    let (mut s, resp) = raw_upgrade(server.local_addr(), OFFER);
    assert!(
        resp.contains("Sec-WebSocket-Extensions: permessage-deflate\r\n"),
        "{resp}"
    );
    let (mut pmd, mut pool) = deflate_pair();
    let text = "{\"event\": \"tick\", \"price\": 101.25, \"venue\": \"κόσμε\"} ".repeat(80);
    for round in 0..3 {
        let mut wire = Vec::new();
        pmd.compress(text.as_bytes(), &mut wire, &mut pool);
        s.write_all(&client_frame(OpCode::Text, true, true, &wire))
            .unwrap();
        let (h, payload) = read_frame(&mut s);
        assert!(h.rsv1 && h.fin && h.opcode == OpCode::Text, "{h:?}");
        assert!(
            payload.len() * 5 < text.len(),
            "round {round}: {}",
            payload.len()
        );
        let mut out = Vec::new();
        pmd.decompress(&payload, true, &mut out, 1 << 20, &mut pool)
            .unwrap();
        assert_eq!(out, text.as_bytes());
    }
    // The same message split over three frames (RSV1 on the first only) comes back whole.
    let mut wire = Vec::new();
    pmd.compress(text.as_bytes(), &mut wire, &mut pool);
    let (a, rest) = wire.split_at(wire.len() / 3);
    let (b, c) = rest.split_at(rest.len() / 2);
    s.write_all(&client_frame(OpCode::Text, false, true, a))
        .unwrap();
    s.write_all(&client_frame(OpCode::Continuation, false, false, b))
        .unwrap();
    s.write_all(&client_frame(OpCode::Continuation, true, false, c))
        .unwrap();
    let (h, payload) = read_frame(&mut s);
    assert!(h.rsv1 && h.fin);
    let mut out = Vec::new();
    pmd.decompress(&payload, true, &mut out, 1 << 20, &mut pool)
        .unwrap();
    assert_eq!(out, text.as_bytes());
    // Below the 128-byte threshold the echo is sent plain.
    s.write_all(&client_frame(OpCode::Binary, true, false, b"short"))
        .unwrap();
    let (h, payload) = read_frame(&mut s);
    assert!(!h.rsv1);
    assert_eq!(payload, b"short");
    server.shutdown();
    server.join().unwrap();
}

#[test]
fn bad_compressed_input_gets_its_close_code_and_others_go_on() {
    use sockeye_codec::OpCode;
    let config = config()
        .max_message(1 << 20)
        .compression(sockeye_server::Compression::ContextTakeover);
    let server = Server::start(config, |_| Echo).unwrap();
    let addr = server.local_addr();
    let (mut bystander, _) = raw_upgrade(addr, OFFER);
    let (mut pmd, mut pool) = deflate_pair();
    let mut bomb = Vec::new();
    pmd.compress(&vec![0u8; 64 << 20], &mut bomb, &mut pool); // ~0.6 MiB on the wire
    let (mut pmd, mut pool) = deflate_pair();
    let mut bad_text = Vec::new();
    pmd.compress(b"valid until \xc3\x28 here", &mut bad_text, &mut pool);
    let cases: [(Vec<u8>, u16, &str); 5] = [
        (
            client_frame(OpCode::Binary, true, true, &bomb),
            1009,
            "64 MiB inflated, 1 MiB limit",
        ),
        (
            client_frame(OpCode::Text, true, true, &bad_text),
            1007,
            "invalid UTF-8 once inflated",
        ),
        (
            client_frame(OpCode::Binary, true, true, &[0xff; 8]),
            1007,
            "not deflate",
        ),
        (
            [
                client_frame(OpCode::Text, false, true, &bad_text[..2]),
                client_frame(OpCode::Continuation, true, true, &bad_text[2..]),
            ]
            .concat(),
            1002,
            "RSV1 on a continuation",
        ),
        (
            client_frame(OpCode::Ping, true, true, b""),
            1002,
            "RSV1 on a control frame",
        ),
    ];
    for (bytes, code, what) in cases {
        let (mut s, resp) = raw_upgrade(addr, OFFER);
        assert!(resp.contains("permessage-deflate"), "{resp}");
        s.write_all(&bytes).unwrap();
        assert_eq!(read_close_code(&mut s), code, "{what}");
    }
    // Without negotiation RSV1 is a protocol error.
    let (mut s, resp) = raw_upgrade(addr, "");
    assert!(!resp.contains("permessage-deflate"), "{resp}");
    s.write_all(&client_frame(OpCode::Text, true, true, &bad_text))
        .unwrap();
    assert_eq!(read_close_code(&mut s), 1002);
    // The bystander is untouched.
    bystander
        .write_all(&client_frame(OpCode::Text, true, false, b"ok"))
        .unwrap();
    let (h, payload) = read_frame(&mut bystander);
    assert_eq!(
        (h.opcode, payload.as_slice()),
        (sockeye_codec::OpCode::Text, &b"ok"[..])
    );
    server.shutdown();
    server.join().unwrap();
}

#[test]
fn a_client_without_compression_falls_back_to_plain_frames() {
    let config = config().compression(sockeye_server::Compression::ContextTakeover);
    let server = Server::start(config, |_| Echo).unwrap();
    let addr = server.local_addr();
    rt().block_on(async {
        let mut ws = connect(addr).await;
        let text = "tokio-tungstenite offers no extension ".repeat(100);
        ws.send(Message::text(text.clone())).await.unwrap();
        assert_eq!(next(&mut ws).await, Message::text(text));
        ws.close(None).await.unwrap();
    });
    server.shutdown();
    server.join().unwrap();
}

/// Our client and server with each mode and window combination, whole and streamed messages.
#[test]
fn our_client_and_server_compress_with_every_window() {
    use sockeye_codec::DataKind;
    use sockeye_codec::deflate::DeflateConfig;
    use sockeye_server::client::{self, DialOptions, Message as CMessage};
    let takeover = config().compression(sockeye_server::Compression::ContextTakeover);
    let plain = config()
        .compression(sockeye_server::Compression::NoContextTakeover)
        .compression_threshold(0);
    for server_config in [takeover, plain] {
        let server = Server::start(server_config, |_| Echo).unwrap();
        let url = format!("ws://{}/", server.local_addr());
        for bits in [9u8, 10, 12, 15] {
            for nct in [false, true] {
                let mut c = DeflateConfig::new()
                    .max_window_bits(bits)
                    .peer_max_window_bits(24 - bits);
                if nct {
                    c = c.no_context_takeover();
                }
                let opts = DialOptions::new().deflate(Some(c));
                let mut conn = client::dial(&url, &opts).unwrap();
                let ext = conn
                    .response_headers()
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-extensions"))
                    .map(|(_, v)| v.clone());
                assert!(ext.is_some_and(|e| e.starts_with("permessage-deflate")));
                for i in 0..5 {
                    let msg =
                        format!("{i} sockeye compresses this line again and again. ").repeat(200);
                    conn.write_text(&msg).unwrap();
                    assert_eq!(conn.read().unwrap(), CMessage::Text(msg), "{c:?}");
                }
                let mut w = conn.next_writer_with(DataKind::Binary, 700).unwrap();
                let blob: Vec<u8> = (0..300_000u32).map(|i| (i % 97) as u8).collect();
                for (i, part) in blob.chunks(4096).enumerate() {
                    w.write_all(part).unwrap();
                    if i % 9 == 0 {
                        w.flush().unwrap(); // with compression: a sync flush mid-message
                    }
                }
                w.finish().unwrap();
                assert_eq!(conn.read().unwrap(), CMessage::Binary(blob), "{c:?}");
                conn.close(sockeye_server::CloseCode::NORMAL, "").unwrap();
            }
        }
        server.shutdown();
        server.join().unwrap();
    }
}

/// A streaming handler gets compressed messages inflated piece by piece, and its read limit
/// applies to the inflated size.
#[test]
fn streaming_handler_gets_inflated_pieces_within_its_limit() {
    use sockeye_server::client::{self, DialOptions, Message as CMessage};
    let config = config()
        .recv_buffers(8, 4096)
        .compression(sockeye_server::Compression::ContextTakeover);
    let server = Server::start(config, |_| Counter {
        bytes: 0,
        pieces: 0,
    })
    .unwrap();
    let url = format!("ws://{}/", server.local_addr());
    let opts = DialOptions::new().compression(sockeye_server::Compression::ContextTakeover);
    let mut conn = client::dial(&url, &opts).unwrap();
    let blob: Vec<u8> = (0..900u32 << 10).map(|i| (i % 251) as u8).collect();
    conn.write_binary(&blob).unwrap();
    assert_eq!(
        conn.read().unwrap(),
        CMessage::Text(format!("{} bytes", 900 << 10))
    );
    // 2 MiB of zeros is a few KiB on the wire, over the 1 MiB limit once inflated: 1009.
    conn.write_binary(&vec![0u8; 2 << 20]).unwrap();
    let e = conn.read().unwrap_err();
    assert_eq!(e.close_code(), Some(sockeye_server::CloseCode(1009)), "{e}");
    server.shutdown();
    server.join().unwrap();
}

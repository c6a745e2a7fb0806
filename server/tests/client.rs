//! The blocking client against our server, an independent server (tungstenite), and scripted
//! raw-TCP servers for the failure cases.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use sockeye_codec::handshake::{self, Request};
use sockeye_codec::{DataKind, Status};
use sockeye_server::client::{self, DialOptions, Error, Message, Tunnel};
use sockeye_server::{CloseCode, Config, Echo, Handler, Server, WebSocket};

mod common;

fn echo_server(config: Config) -> Server {
    Server::start(config, |_| Echo).expect("io_uring available")
}

fn local() -> Config {
    Config::new("127.0.0.1:0".parse().unwrap()).workers(1)
}

fn url(addr: SocketAddr) -> String {
    format!("ws://{addr}/")
}

/// Deterministic bytes that are not a repeating short pattern.
fn blob(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn echo_text_binary_large_and_streamed() {
    let server = echo_server(local().max_message(32 << 20));
    let mut conn = client::dial(&url(server.local_addr()), &DialOptions::new()).unwrap();
    conn.write_text("hello κόσμε 𝄞").unwrap();
    assert_eq!(conn.read().unwrap(), Message::Text("hello κόσμε 𝄞".into()));
    conn.write_binary(&[]).unwrap();
    assert_eq!(conn.read().unwrap(), Message::Binary(vec![]));

    // 5 MiB: written in masked 64 KiB chunks, read through the 64 KiB receive buffer.
    let big = blob(5 << 20);
    conn.write_binary(&big).unwrap();
    let mut got = Vec::new();
    assert_eq!(conn.read_into(&mut got).unwrap(), DataKind::Binary);
    assert!(got == big, "5 MiB echo differs");

    // A streamed message in 1000-byte fragments; the echo comes back as one message, which we
    // read through the streaming reader in small reads.
    let text: String = "κόσμε 𝄞 ".repeat(3000);
    let mut w = conn.next_writer_with(DataKind::Text, 1000).unwrap();
    for piece in text.as_bytes().chunks(777) {
        w.write_all(piece).unwrap();
    }
    w.finish().unwrap();
    let mut r = conn.next_reader().unwrap();
    assert_eq!(r.kind(), DataKind::Text);
    let mut back = Vec::new();
    let mut small = [0u8; 100];
    loop {
        let n = r.read(&mut small).unwrap();
        if n == 0 {
            break;
        }
        back.extend_from_slice(&small[..n]);
    }
    drop(r);
    assert!(back == text.as_bytes());

    // An abandoned reader skips the rest of its message.
    conn.write_binary(&blob(300_000)).unwrap();
    conn.write_text("after").unwrap();
    let mut r = conn.next_reader().unwrap();
    let mut first = [0u8; 10];
    r.read_exact(&mut first).unwrap();
    drop(r);
    assert_eq!(conn.read().unwrap(), Message::Text("after".into()));

    conn.close(CloseCode::NORMAL, "bye").unwrap();
    // Every later read reports how the connection ended.
    let e = conn.read().unwrap_err();
    assert!(e.is_normal_close(), "{e}");
    server.shutdown();
    server.join().unwrap();
}

#[test]
fn writer_from_another_thread_and_ping_while_reading() {
    let server = echo_server(local());
    let mut conn = client::dial(&url(server.local_addr()), &DialOptions::new()).unwrap();
    let writer = conn.writer().clone();
    let pinger = thread::spawn(move || {
        let mut rtts = Vec::new();
        for i in 0..20u32 {
            writer.write_binary(&i.to_be_bytes()).unwrap();
            rtts.push(writer.ping(Duration::from_secs(5)).unwrap());
        }
        writer.write_text("done").unwrap();
        rtts
    });
    let mut pongs = 0;
    let (tx, rx) = mpsc::channel();
    conn.on_pong(move |p| {
        tx.send(p.len()).unwrap();
    });
    for i in 0..20u32 {
        assert_eq!(
            conn.read().unwrap(),
            Message::Binary(i.to_be_bytes().to_vec())
        );
    }
    assert_eq!(conn.read().unwrap(), Message::Text("done".into()));
    let rtts = pinger.join().unwrap();
    while rx.try_recv().is_ok() {
        pongs += 1;
    }
    assert_eq!(pongs, 20);
    assert!(rtts.iter().all(|r| *r < Duration::from_secs(1)), "{rtts:?}");
    conn.close(CloseCode::NORMAL, "").unwrap();
    server.shutdown();
    server.join().unwrap();
}

#[test]
fn read_limit_closes_with_1009_and_deadline_resumes() {
    let server = echo_server(local());
    let options = DialOptions::new().read_limit(Some(1000));
    let mut conn = client::dial(&url(server.local_addr()), &options).unwrap();

    // A read deadline that passes leaves the connection usable.
    conn.set_read_deadline(Some(Instant::now() + Duration::from_millis(100)));
    let t = Instant::now();
    match conn.read() {
        Err(Error::Timeout("read deadline")) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(2));
    conn.set_read_deadline(None);
    conn.write_text("still here").unwrap();
    assert_eq!(conn.read().unwrap(), Message::Text("still here".into()));

    conn.write_binary(&[7; 1000]).unwrap();
    assert_eq!(conn.read().unwrap().into_bytes().len(), 1000);
    conn.write_binary(&[7; 1001]).unwrap();
    let e = conn.read().unwrap_err();
    assert!(
        matches!(e, Error::Protocol(sockeye_codec::Error::MessageTooLarge)),
        "{e:?}"
    );
    assert_eq!(e.close_code(), Some(CloseCode::MESSAGE_TOO_BIG));
    server.shutdown();
    server.join().unwrap();
}

#[test]
fn subprotocol_and_headers() {
    let server = echo_server(local().subprotocol("chat"));
    let options = DialOptions::new().protocol("v2.other").protocol("chat");
    let conn = client::dial(&url(server.local_addr()), &options).unwrap();
    assert_eq!(conn.subprotocol(), Some("chat"));
    assert!(
        conn.response_headers()
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("sec-websocket-protocol") && v == "chat")
    );
    let conn2 = client::dial(&url(server.local_addr()), &DialOptions::new()).unwrap();
    assert_eq!(conn2.subprotocol(), None);
    drop((conn, conn2));
    server.shutdown();
    server.join().unwrap();
}

#[test]
fn server_shutdown_is_a_1001_close() {
    let server = echo_server(local());
    let mut conn = client::dial(&url(server.local_addr()), &DialOptions::new()).unwrap();
    let (tx, rx) = mpsc::channel();
    conn.on_close(move |code, reason| tx.send((code, reason.to_owned())).unwrap());
    server.shutdown();
    let e = conn.read().unwrap_err();
    assert_eq!(e.close_code(), Some(CloseCode::GOING_AWAY), "{e}");
    assert!(e.is_normal_close());
    assert_eq!(rx.recv().unwrap().0, Some(CloseCode::GOING_AWAY));
    server.join().unwrap();
}

/// Closes with 4000 when a message says "close-me"; echoes anything else.
struct Closer;

impl Handler for Closer {
    fn on_message(&mut self, ws: &mut WebSocket<'_>, msg: sockeye_server::Message<'_>) {
        match msg {
            sockeye_server::Message::Text("close-me") => {
                ws.close(CloseCode(4000), "as asked").unwrap();
            }
            sockeye_server::Message::Text(t) => {
                let _ = ws.send_text(t);
            }
            sockeye_server::Message::Binary(b) => {
                let _ = ws.send_binary(b);
            }
        }
    }
}

#[test]
fn close_races() {
    let server = Server::start(local().max_message(64 << 20), |_| Closer).unwrap();
    // Both ends close at once: the close frames cross, and each side's close completes.
    for _ in 0..20 {
        let mut conn = client::dial(&url(server.local_addr()), &DialOptions::new()).unwrap();
        conn.write_text("close-me").unwrap();
        conn.close(CloseCode::NORMAL, "me too").unwrap();
        let e = conn.read().unwrap_err();
        assert!(matches!(e, Error::Closed(_)), "{e}");
    }

    // Close while a large write is in flight on another thread (no read limit for its echo).
    let options = DialOptions::new().read_limit(None);
    let mut conn = client::dial(&url(server.local_addr()), &options).unwrap();
    let writer = conn.writer().clone();
    let big = blob(32 << 20);
    let w = thread::spawn(move || writer.write_binary(&big));
    thread::sleep(Duration::from_millis(5));
    let closer = conn.writer().clone();
    let c = thread::spawn(move || closer.close(CloseCode::NORMAL, "while writing"));
    // Read (discarding the echo, if it comes) until the close completes.
    let end = loop {
        match conn.read() {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert!(matches!(end, Error::Closed(_)), "{end}");
    let wrote = w.join().unwrap();
    assert!(
        matches!(wrote, Ok(()) | Err(Error::CloseSent) | Err(Error::Io(_))),
        "{wrote:?}"
    );
    c.join().unwrap().unwrap();
    server.shutdown();
    server.join().unwrap();
}

#[test]
fn close_read_refuses_data_with_1008() {
    let server = echo_server(local());
    let conn = client::dial(&url(server.local_addr()), &DialOptions::new()).unwrap();
    let writer = conn.close_read();
    // Control frames are still handled: the pong comes back.
    writer.ping(Duration::from_secs(5)).unwrap();
    // The echo of this message is a data message: the reader closes with 1008.
    writer.write_text("echo me").unwrap();
    let closed = writer.wait_closed(Duration::from_secs(10)).expect("closed");
    assert_eq!(closed.code, Some(CloseCode::POLICY_VIOLATION));
    server.shutdown();
    server.join().unwrap();
}

#[test]
fn dial_failures_are_clear_and_bounded() {
    // Nothing listening.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let t = Instant::now();
    let e = client::dial(&url(addr), &DialOptions::new()).unwrap_err();
    assert!(
        matches!(&e, Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused),
        "{e:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(2));

    // A server that refuses the origin: 403 with its reason in the body.
    let server = echo_server(local().allow_origin("good.example"));
    let options = DialOptions::new().origin("https://evil.example");
    let e = client::dial(&url(server.local_addr()), &options).unwrap_err();
    match &e {
        Error::Handshake {
            status: Some(403),
            body,
            ..
        } => assert!(String::from_utf8_lossy(body).contains("origin"), "{e}"),
        other => panic!("expected a 403, got {other:?}"),
    }
    assert!(e.to_string().contains("403"), "{e}");
    server.shutdown();
    server.join().unwrap();

    // A server that accepts the connection and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let hold = thread::spawn(move || silent.accept().map(|(s, _)| s));
    let t = Instant::now();
    let options = DialOptions::new().handshake_timeout(Duration::from_millis(300));
    let e = client::dial(&url(addr), &options).unwrap_err();
    assert!(matches!(e, Error::Timeout("handshake")), "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    drop(hold.join());

    // TLS is refused up front, without touching the network.
    assert!(matches!(
        client::dial("wss://127.0.0.1:1/", &DialOptions::new()),
        Err(Error::TlsUnsupported)
    ));
    assert!(matches!(
        client::dial(
            "ws://127.0.0.1/",
            &DialOptions::new().header("Sec-WebSocket-Key", "x")
        ),
        Err(Error::Io(_))
    ));
}

/// A scripted server: completes the handshake by hand, then runs `then` on the raw stream.
fn raw_server(then: impl FnOnce(TcpStream) + Send + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 4096];
        let mut n = 0;
        let response = loop {
            n += s.read(&mut buf[n..]).unwrap();
            let mut headers = [handshake::EMPTY_HEADER; 32];
            if let Status::Complete((req, _)) = Request::parse(&buf[..n], &mut headers).unwrap() {
                let mut out = vec![0u8; 512];
                let len = req.accept(&mut out, None, None).unwrap();
                out.truncate(len);
                break out;
            }
        };
        s.write_all(&response).unwrap();
        then(s);
    });
    addr
}

/// Reads one masked frame from a client and returns (opcode byte, unmasked payload).
fn read_client_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).unwrap();
    assert_eq!(h[1] & 0x80, 0x80, "client frames are masked");
    let len = match h[1] & 0x7f {
        126 => {
            let mut l = [0u8; 2];
            s.read_exact(&mut l).unwrap();
            u16::from_be_bytes(l) as usize
        }
        127 => {
            let mut l = [0u8; 8];
            s.read_exact(&mut l).unwrap();
            u64::from_be_bytes(l) as usize
        }
        l => l as usize,
    };
    let mut key = [0u8; 4];
    s.read_exact(&mut key).unwrap();
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).unwrap();
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
    (h[0], payload)
}

#[test]
fn protocol_errors_close_with_their_code() {
    // A masked frame from a server: 1002, sent back in our close frame.
    let (tx, rx) = mpsc::channel();
    let addr = raw_server(move |mut s| {
        s.write_all(&[0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2])
            .unwrap();
        tx.send(read_client_frame(&mut s)).unwrap();
    });
    let mut conn = client::dial(&url(addr), &DialOptions::new()).unwrap();
    let e = conn.read().unwrap_err();
    assert!(
        matches!(e, Error::Protocol(sockeye_codec::Error::MaskedFrame)),
        "{e:?}"
    );
    let (op, payload) = rx.recv().unwrap();
    assert_eq!(op, 0x88);
    assert_eq!(&payload[..2], &1002u16.to_be_bytes());

    // Invalid UTF-8 in text: 1007.
    let (tx, rx) = mpsc::channel();
    let addr = raw_server(move |mut s| {
        s.write_all(&[0x81, 0x02, 0xc3, 0x28]).unwrap();
        tx.send(read_client_frame(&mut s)).unwrap();
    });
    let mut conn = client::dial(&url(addr), &DialOptions::new()).unwrap();
    assert_eq!(
        conn.read().unwrap_err().close_code(),
        Some(CloseCode::INVALID_PAYLOAD)
    );
    assert_eq!(&rx.recv().unwrap().1[..2], &1007u16.to_be_bytes());

    // A peer that drops without a close frame: 1006, reported, never sent.
    let addr = raw_server(drop);
    let mut conn = client::dial(&url(addr), &DialOptions::new()).unwrap();
    let e = conn.read().unwrap_err();
    assert_eq!(e.close_code(), Some(CloseCode::ABNORMAL), "{e}");
}

#[test]
fn masks_differ_per_frame_and_pings_without_pong_time_out() {
    let (tx, rx) = mpsc::channel();
    let addr = raw_server(move |mut s| {
        let mut keys = Vec::new();
        for _ in 0..64 {
            let mut h = [0u8; 6];
            s.read_exact(&mut h).unwrap();
            keys.push([h[2], h[3], h[4], h[5]]);
        }
        // Then the ping (the payload is 8 bytes): no pong is ever sent.
        let (op, payload) = read_client_frame(&mut s);
        tx.send((keys, op, payload.len())).unwrap();
        thread::sleep(Duration::from_secs(2));
    });
    let mut conn = client::dial(&url(addr), &DialOptions::new()).unwrap();
    for _ in 0..64 {
        conn.write_binary(&[]).unwrap();
    }
    let writer = conn.writer().clone();
    let reader = thread::spawn(move || conn.read().map(|_| ()));
    let t = Instant::now();
    let e = writer.ping(Duration::from_millis(300)).unwrap_err();
    assert!(matches!(e, Error::Timeout("ping")), "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(2));
    let (mut keys, op, len) = rx.recv().unwrap();
    assert_eq!((op, len), (0x89, 8));
    keys.sort_unstable();
    keys.dedup();
    assert!(
        keys.len() >= 63,
        "masking keys repeat: {} distinct of 64",
        keys.len()
    );
    writer.close_now();
    assert!(reader.join().unwrap().is_err());
}

/// A tunnelled HTTP/1.1 exchange: the server side is tungstenite (an independent
/// implementation) acting as an HTTP server over binary messages.
#[test]
fn tunnel_carries_http_through_tungstenite() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let body = blob(3 << 20);
    let sum = checksum(&body);
    let server_body = body.clone();
    let server = thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        let mut ws = tungstenite::accept(s).unwrap();
        let mut request = Vec::new();
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match ws.read().unwrap() {
                tungstenite::Message::Binary(b) => request.extend_from_slice(&b),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(request.starts_with(b"GET /file HTTP/1.1\r\n"));
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
            server_body.len()
        );
        ws.send(tungstenite::Message::binary(head.into_bytes()))
            .unwrap();
        // The body in uneven messages: the stream must not care where messages end.
        let mut rest = &server_body[..];
        let mut size = 1000;
        while !rest.is_empty() {
            let n = size.min(rest.len());
            ws.send(tungstenite::Message::binary(rest[..n].to_vec()))
                .unwrap();
            rest = &rest[n..];
            size = size * 3 % 70_001 + 1;
        }
        ws.close(None).unwrap();
        while ws.read().is_ok() {}
    });

    let conn = client::dial(&url(addr), &DialOptions::new()).unwrap();
    let mut tunnel = Tunnel::new(conn, DataKind::Binary);
    // The request in two writes (two messages).
    tunnel.write_all(b"GET /file HTTP/1.1\r\n").unwrap();
    tunnel.write_all(b"Host: tunnel\r\n\r\n").unwrap();
    let mut response = Vec::new();
    tunnel.read_to_end(&mut response).unwrap(); // ends at the normal close
    let mut headers = [httparse::EMPTY_HEADER; 8];
    let mut parsed = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(head_len)) = parsed.parse(&response) else {
        panic!("no HTTP response head");
    };
    assert_eq!(parsed.code, Some(200));
    let len: usize = parsed
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
        .unwrap();
    let got = &response[head_len..];
    assert_eq!((got.len(), len), (body.len(), body.len()));
    assert_eq!(checksum(got), sum);
    drop(tunnel);
    server.join().unwrap();
}

#[test]
fn a_tunnel_write_past_the_peers_limit_goes_out_as_several_messages() {
    // The server refuses messages over 64 KiB (1009); the tunnel sends 32 KiB ones.
    let server = echo_server(local().max_message(64 << 10));
    let conn = client::dial(&url(server.local_addr()), &DialOptions::new()).unwrap();
    let mut tunnel = Tunnel::new(conn, DataKind::Binary);
    let data = blob(200_000);
    let writer = tunnel.writer();
    let sending = {
        let (mut writer, data) = (writer, data.clone());
        std::thread::spawn(move || writer.write_all(&data).unwrap())
    };
    let mut back = vec![0u8; data.len()];
    tunnel.read_exact(&mut back).unwrap();
    sending.join().unwrap();
    assert!(back == data, "the echo differs");

    // Text is cut only between characters (a cut inside one would be invalid UTF-8: 1007).
    let conn = client::dial(&url(server.local_addr()), &DialOptions::new()).unwrap();
    let mut tunnel = Tunnel::new(conn, DataKind::Text).max_message(1000);
    let text = "κόσμε 𝄞 ".repeat(500);
    tunnel.write_all(text.as_bytes()).unwrap();
    let mut back = vec![0u8; text.len()];
    tunnel.read_exact(&mut back).unwrap();
    assert_eq!(String::from_utf8(back).unwrap(), text);
    drop(tunnel);
    server.shutdown();
    server.join().unwrap();
}

#[test]
fn a_write_past_its_deadline_is_a_timeout() {
    // A server that upgrades and then never reads.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        common::answer_upgrade(&mut s);
        let _ = done_rx.recv(); // hold the socket, unread, until the test is done
    });
    let conn = client::dial(&url(addr), &DialOptions::new()).unwrap();
    conn.set_write_deadline(Some(Instant::now() + Duration::from_millis(300)));
    let big = vec![0u8; 1 << 20];
    let start = Instant::now();
    let err = loop {
        if let Err(e) = conn.write_binary(&big) {
            break e;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the socket never filled"
        );
    };
    assert!(matches!(err, Error::Timeout("write deadline")), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(5));
    // Through io::Write it is TimedOut.
    assert_eq!(
        std::io::Error::from(err).kind(),
        std::io::ErrorKind::TimedOut
    );
    done_tx.send(()).unwrap();
    server.join().unwrap();
}

/// FNV-1a, enough to compare megabytes.
fn checksum(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Our client against an independent server: tokio-tungstenite echoing.
#[test]
fn against_tokio_tungstenite() {
    use futures_util::{SinkExt, StreamExt};
    let std_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let server = thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            let (s, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(s).await.unwrap();
            while let Some(msg) = ws.next().await {
                // Polling on after a close sends tungstenite's reply and ends the stream.
                let msg = msg.unwrap();
                if msg.is_text() || msg.is_binary() {
                    ws.send(msg).await.unwrap();
                }
            }
        });
    });
    let mut conn = client::dial(&url(addr), &DialOptions::new()).unwrap();
    conn.write_text("héllo").unwrap();
    assert_eq!(conn.read().unwrap(), Message::Text("héllo".into()));
    let big = blob(2 << 20);
    conn.write_binary(&big).unwrap();
    assert!(conn.read().unwrap().into_bytes() == big);
    let mut w = conn.next_writer_with(DataKind::Binary, 4096).unwrap();
    w.write_all(&big[..100_000]).unwrap();
    w.finish().unwrap();
    assert!(conn.read().unwrap().into_bytes() == big[..100_000]);
    let writer = conn.writer().clone();
    // tungstenite answers pings as it reads, so the pong comes before the echo of "flush",
    // which this thread is reading for.
    let pinger = thread::spawn(move || {
        let rtt = writer.ping(Duration::from_secs(5));
        writer.write_text("flush").unwrap();
        rtt
    });
    assert_eq!(conn.read().unwrap(), Message::Text("flush".into()));
    pinger.join().unwrap().unwrap();
    conn.close(CloseCode::NORMAL, "done").unwrap();
    server.join().unwrap();
}

/// A ping that arrives while another thread is blocked writing a large frame must not stop the
/// reader: the peer may itself be blocked writing to us until we read.
#[test]
fn reader_keeps_reading_while_a_writer_is_blocked() {
    let (tx, rx) = mpsc::channel();
    let addr = raw_server(move |mut s| {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        // Let the client's 32 MiB write fill the socket buffers first.
        thread::sleep(Duration::from_millis(300));
        s.write_all(&[0x89, 0x04, b'p', b'i', b'n', b'g']).unwrap();
        let big = vec![0x42u8; 8 << 20];
        let mut frame = vec![0x82, 127];
        frame.extend_from_slice(&(big.len() as u64).to_be_bytes());
        s.write_all(&frame).unwrap();
        s.write_all(&big).unwrap(); // blocks until the client reads
        let (op, payload) = read_client_frame(&mut s);
        let (op2, payload2) = read_client_frame(&mut s);
        tx.send((op, payload.len(), op2, payload2)).unwrap();
    });
    let options = DialOptions::new().read_limit(Some(64 << 20));
    let mut conn = client::dial(&url(addr), &options).unwrap();
    let writer = conn.writer().clone();
    let w = thread::spawn(move || writer.write_binary(&vec![7u8; 32 << 20]));
    conn.set_read_deadline(Some(Instant::now() + Duration::from_secs(20)));
    let msg = conn
        .read()
        .expect("the 8 MiB message, read while the writer is blocked");
    assert_eq!(msg.into_bytes().len(), 8 << 20);
    w.join().unwrap().unwrap();
    let (op, len, op2, pong) = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!((op, len), (0x82, 32 << 20));
    assert_eq!((op2, pong.as_slice()), (0x8a, &b"ping"[..]));
}

//! The tokio stream against tokio-tungstenite (both roles), against itself with compression,
//! and against hostile or silent peers. Loopback only; every wait is bounded.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sockeye_tokio::{
    CloseCode, Compression, Config, DataKind, DialOptions, Error, Initiator, Message,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode as TCode;

const LIMIT: Duration = Duration::from_secs(10);

/// An upgrade request, written by hand by the tests that play a silent or hostile client.
const UPGRADE: &[u8] =
    b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// `host:port` of a `listener` URL, for the tests that speak TCP themselves.
fn host_port(url: &str) -> String {
    url.trim_start_matches("ws://")
        .trim_end_matches("/chat")
        .to_owned()
}

async fn listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/chat", l.local_addr().unwrap());
    (l, url)
}

/// A sockeye echo server for one connection, returning how it ended.
fn sockeye_echo(
    l: TcpListener,
    config: Config,
) -> tokio::task::JoinHandle<Result<sockeye_tokio::Ended, Error>> {
    tokio::spawn(async move {
        let (tcp, _) = l.accept().await?;
        let mut ws = sockeye_tokio::accept(tcp, &config).await?;
        while let Some(msg) = ws.next().await {
            ws.send(msg?).await?;
        }
        Ok(ws.ended().cloned().expect("ended after the stream"))
    })
}

#[tokio::test]
async fn accepts_tungstenite_and_echoes_closes_with_its_code() {
    let (l, url) = listener().await;
    let server = sockeye_echo(l, Config::new());
    let (mut c, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let big = vec![7u8; 1 << 20];
    c.send(tungstenite::Message::text("hello")).await.unwrap();
    c.send(tungstenite::Message::binary(big.clone()))
        .await
        .unwrap();
    c.send(tungstenite::Message::Ping(b"p".to_vec().into()))
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 3 {
        match timeout(LIMIT, c.next()).await.unwrap().unwrap().unwrap() {
            m @ (tungstenite::Message::Text(_) | tungstenite::Message::Binary(_)) => got.push(m),
            tungstenite::Message::Pong(p) => {
                assert_eq!(&p[..], b"p");
                got.push(tungstenite::Message::Pong(p));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got[0], tungstenite::Message::text("hello"));
    assert_eq!(got[1], tungstenite::Message::binary(big));
    c.close(Some(CloseFrame {
        code: TCode::from(4001),
        reason: "bye".into(),
    }))
    .await
    .unwrap();
    // The server answers the close with the same code, then closes the TCP connection.
    while let Some(m) = timeout(LIMIT, c.next()).await.unwrap() {
        match m {
            Ok(tungstenite::Message::Close(Some(f))) => assert_eq!(u16::from(f.code), 4001),
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => break,
        }
    }
    let ended = timeout(LIMIT, server).await.unwrap().unwrap().unwrap();
    assert_eq!(ended.code, Some(CloseCode(4001)));
    assert_eq!(ended.reason, "bye");
    assert_eq!(ended.by, Initiator::Remote);
    assert!(ended.clean);
}

#[tokio::test]
async fn connects_to_tungstenite_and_closes_with_our_code() {
    let (l, url) = listener().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        let mut close = None;
        while let Some(m) = ws.next().await {
            match m.unwrap() {
                tungstenite::Message::Close(f) => close = f,
                m @ (tungstenite::Message::Text(_) | tungstenite::Message::Binary(_)) => {
                    ws.send(m).await.unwrap()
                }
                _ => {}
            }
        }
        close
    });
    let mut ws = sockeye_tokio::connect(&url, &DialOptions::new())
        .await
        .unwrap();
    ws.send(Message::Text("ü".repeat(70_000))).await.unwrap();
    ws.send(Message::Binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::Text("ü".repeat(70_000))
    );
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::Binary(vec![1, 2, 3])
    );
    timeout(LIMIT, ws.close(CloseCode(4002), "done"))
        .await
        .unwrap()
        .unwrap();
    let ended = ws.ended().unwrap();
    assert_eq!(
        (ended.code, ended.by, ended.clean),
        (Some(CloseCode(4002)), Initiator::Local, true)
    );
    let close = timeout(LIMIT, server).await.unwrap().unwrap().unwrap();
    assert_eq!(
        (u16::from(close.code), close.reason.as_str()),
        (4002, "done")
    );
    // Nothing may be sent after our close.
    assert!(matches!(
        ws.send(Message::Text("late".into())).await,
        Err(Error::CloseSent)
    ));
}

#[tokio::test]
async fn compression_both_modes_with_itself() {
    for mode in [Compression::ContextTakeover, Compression::NoContextTakeover] {
        let (l, url) = listener().await;
        let server = sockeye_echo(l, Config::new().compression(mode));
        let mut ws = sockeye_tokio::connect(&url, &DialOptions::new().compression(mode))
            .await
            .unwrap();
        assert!(ws.compressed());
        let text = "a compressible line of text. ".repeat(2000);
        for _ in 0..3 {
            ws.send(Message::Text(text.clone())).await.unwrap();
            assert_eq!(
                ws.next().await.unwrap().unwrap(),
                Message::Text(text.clone())
            );
        }
        ws.send(Message::Binary(vec![0; 10])).await.unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::Binary(vec![0; 10])
        );
        timeout(LIMIT, ws.close(CloseCode::NORMAL, ""))
            .await
            .unwrap()
            .unwrap();
        let ended = timeout(LIMIT, server).await.unwrap().unwrap().unwrap();
        assert_eq!(ended.code, Some(CloseCode::NORMAL));
    }
}

#[tokio::test]
async fn tungstenite_compression_is_refused_politely_without_offer() {
    // tokio-tungstenite offers no permessage-deflate; the server then sends uncompressed.
    let (l, url) = listener().await;
    let _server = sockeye_echo(l, Config::new().compression(Compression::ContextTakeover));
    let (mut c, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    c.send(tungstenite::Message::text("plain")).await.unwrap();
    let m = timeout(LIMIT, c.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(m, tungstenite::Message::text("plain"));
}

#[tokio::test]
async fn a_message_over_the_limit_closes_with_1009() {
    let (l, url) = listener().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut ws = sockeye_tokio::accept(tcp, &Config::new().max_message(Some(1024)))
            .await
            .unwrap();
        let first = ws.next().await.unwrap().unwrap();
        let second = ws.next().await.unwrap();
        let after = ws.next().await;
        (first, second, after.is_none(), ws.ended().cloned())
    });
    let (mut c, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    c.send(tungstenite::Message::binary(vec![1; 1024]))
        .await
        .unwrap();
    c.send(tungstenite::Message::binary(vec![1; 1025]))
        .await
        .unwrap();
    let mut code = None;
    while let Some(Ok(m)) = timeout(LIMIT, c.next()).await.unwrap() {
        if let tungstenite::Message::Close(Some(f)) = m {
            code = Some(u16::from(f.code));
        }
    }
    assert_eq!(code, Some(1009));
    let (first, second, ended_after, ended) = timeout(LIMIT, server).await.unwrap().unwrap();
    assert_eq!(first, Message::Binary(vec![1; 1024]));
    let e = second.unwrap_err();
    assert!(matches!(e, Error::Protocol(_)), "{e}");
    assert_eq!(e.close_code(), Some(CloseCode::MESSAGE_TOO_BIG));
    assert!(ended_after);
    let ended = ended.unwrap();
    assert_eq!(
        (ended.code, ended.by),
        (Some(CloseCode::MESSAGE_TOO_BIG), Initiator::Local)
    );
}

#[tokio::test]
async fn origins_and_subprotocols() {
    let (l, url) = listener().await;
    let config = Config::new()
        .protocol("v2")
        .protocol("v1")
        .allow_origin("https://*.example.com");
    let server = tokio::spawn(async move {
        let mut results = Vec::new();
        for _ in 0..2 {
            let (tcp, _) = l.accept().await.unwrap();
            results.push(
                sockeye_tokio::accept(tcp, &config)
                    .await
                    .map(|ws| ws.protocol().map(str::to_owned)),
            );
        }
        results
    });
    let ok = sockeye_tokio::connect(
        &url,
        &DialOptions::new()
            .origin("https://app.example.com")
            .protocol("v1")
            .protocol("v2"),
    )
    .await
    .unwrap();
    assert_eq!(ok.protocol(), Some("v2")); // the server's preference
    let refused = sockeye_tokio::connect(&url, &DialOptions::new().origin("https://evil.test"))
        .await
        .unwrap_err();
    match &refused {
        Error::Handshake { status, body, .. } => {
            assert_eq!(*status, Some(403));
            assert!(String::from_utf8_lossy(body).contains("evil.test"));
        }
        other => panic!("{other}"),
    }
    let results = timeout(LIMIT, server).await.unwrap().unwrap();
    assert_eq!(results[0].as_ref().unwrap().as_deref(), Some("v2"));
    assert!(matches!(
        results[1],
        Err(Error::Refused { status: 403, .. })
    ));
}

#[tokio::test]
async fn plain_http_and_garbage_are_refused() {
    let (l, url) = listener().await;
    let addr = host_port(&url);
    let server = tokio::spawn(async move {
        let mut out = Vec::new();
        for _ in 0..3 {
            let (tcp, _) = l.accept().await.unwrap();
            let config = Config::new().max_request(1024);
            out.push(
                sockeye_tokio::accept(tcp, &config)
                    .await
                    .err()
                    .map(|e| e.to_string()),
            );
        }
        out
    });
    for request in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &b"\x16\x03\x01garbage\r\n\r\n"[..],
        &[b'a'; 4096][..],
    ] {
        let mut tcp = TcpStream::connect(&addr).await.unwrap();
        let _ = tcp.write_all(request).await;
        let mut response = Vec::new();
        let _ = timeout(LIMIT, tcp.read_to_end(&mut response))
            .await
            .unwrap();
        let status: u16 = String::from_utf8_lossy(&response[9..12]).parse().unwrap();
        assert!((400..500).contains(&status), "{status}");
    }
    let errors = timeout(LIMIT, server).await.unwrap().unwrap();
    assert!(
        errors
            .iter()
            .all(|e| e.as_deref().is_some_and(|e| e.contains("refused"))),
        "{errors:?}"
    );
    assert!(errors[2].as_deref().unwrap().contains("431"), "{errors:?}");
}

#[tokio::test]
async fn split_halves_read_and_write_from_two_tasks() {
    let (l, url) = listener().await;
    let _server = sockeye_echo(l, Config::new());
    let ws = sockeye_tokio::connect(&url, &DialOptions::new())
        .await
        .unwrap();
    let (mut tx, mut rx) = ws.split();
    let writer = tokio::spawn(async move {
        for i in 0..1000u32 {
            tx.send(Message::Binary(i.to_be_bytes().to_vec()))
                .await
                .unwrap();
        }
        tx
    });
    for i in 0..1000u32 {
        let m = timeout(LIMIT, rx.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(m, Message::Binary(i.to_be_bytes().to_vec()));
    }
    let mut tx = writer.await.unwrap();
    timeout(LIMIT, tx.close()).await.unwrap().unwrap();
}

#[tokio::test]
async fn chunks_are_lent_without_assembling_the_message() {
    let (l, url) = listener().await;
    tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        let payload: Vec<u8> = (0..4u32 << 20).map(|i| i as u8).collect();
        ws.send(tungstenite::Message::binary(payload))
            .await
            .unwrap();
        ws.send(tungstenite::Message::text("after")).await.unwrap();
        let _ = ws.next().await;
    });
    let mut ws = sockeye_tokio::connect(&url, &DialOptions::new())
        .await
        .unwrap();
    let (mut total, mut pieces, mut expect) = (0usize, 0, 0u8);
    loop {
        let c = timeout(LIMIT, ws.next_chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(c.kind, DataKind::Binary);
        assert_eq!(c.first, total == 0);
        for &b in c.data {
            assert_eq!(b, expect);
            expect = expect.wrapping_add(1);
        }
        assert!(
            c.data.len() <= 64 << 10,
            "a piece is at most the receive buffer"
        );
        total += c.data.len();
        pieces += 1;
        if c.last {
            break;
        }
    }
    assert_eq!(total, 4 << 20);
    assert!(pieces >= 64, "{pieces} pieces");
    // Whole messages again through the Stream.
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::Text("after".into())
    );
}

#[tokio::test]
async fn a_dropped_connection_is_1006() {
    let (l, url) = listener().await;
    tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        drop(ws);
    });
    let mut ws = sockeye_tokio::connect(&url, &DialOptions::new())
        .await
        .unwrap();
    let e = timeout(LIMIT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(e.close_code(), Some(CloseCode::ABNORMAL), "{e}");
    assert!(ws.next().await.is_none());
    assert_eq!(ws.ended().unwrap().code, Some(CloseCode::ABNORMAL));
}

#[tokio::test]
async fn a_silent_peer_is_pinged_then_closed_with_1001() {
    let (l, url) = listener().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let config = Config::new()
            .keepalive(Some(Duration::from_millis(200)))
            .close_timeout(Duration::from_millis(200));
        let mut ws = sockeye_tokio::accept(tcp, &config).await.unwrap();
        let started = std::time::Instant::now();
        assert!(ws.next().await.is_none());
        (started.elapsed(), ws.ended().cloned().unwrap())
    });
    // A client that completes the handshake and then reads but never answers.
    let addr = host_port(&url);
    let mut tcp = TcpStream::connect(&addr).await.unwrap();
    tcp.write_all(UPGRADE).await.unwrap();
    let mut seen = Vec::new();
    let _ = timeout(LIMIT, tcp.read_to_end(&mut seen)).await.unwrap();
    let (elapsed, ended) = timeout(LIMIT, server).await.unwrap().unwrap();
    let frames = &seen[seen.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
    assert_eq!(frames[0], 0x89, "a ping first");
    assert!(
        frames.windows(2).any(|w| w == [0x88, 0x0e]),
        "then a close (1001 + reason)"
    );
    assert_eq!(
        (ended.code, ended.by, ended.clean),
        (Some(CloseCode::GOING_AWAY), Initiator::Local, false)
    );
    assert!(
        elapsed >= Duration::from_millis(400) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn a_protocol_error_closes_with_1002() {
    let (l, url) = listener().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut ws = sockeye_tokio::accept(tcp, &Config::new()).await.unwrap();
        ws.next().await.unwrap().unwrap_err()
    });
    let addr = host_port(&url);
    let mut tcp = TcpStream::connect(&addr).await.unwrap();
    // The upgrade, and right behind it an unmasked frame (clients must mask).
    tcp.write_all(&[UPGRADE, b"\x81\x02hi"].concat())
        .await
        .unwrap();
    let mut seen = Vec::new();
    let _ = timeout(LIMIT, tcp.read_to_end(&mut seen)).await.unwrap();
    let e = timeout(LIMIT, server).await.unwrap().unwrap();
    assert_eq!(e.close_code(), Some(CloseCode::PROTOCOL_ERROR), "{e}");
    assert!(
        seen.ends_with(&[0x88, 0x02, 0x03, 0xea]),
        "{:x?}",
        &seen[seen.len() - 4..]
    );
}

#[tokio::test]
async fn compressed_messages_read_as_chunks_from_the_inflate_buffer() {
    let (l, url) = listener().await;
    let mode = Compression::ContextTakeover;
    let _server = sockeye_echo(l, Config::new().compression(mode));
    let mut ws = sockeye_tokio::connect(&url, &DialOptions::new().compression(mode))
        .await
        .unwrap();
    let text: String = (0..200_000u32)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    ws.send(Message::Text(text.clone())).await.unwrap();
    let mut got = Vec::new();
    loop {
        let c = timeout(LIMIT, ws.next_chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(c.kind, DataKind::Text);
        got.extend_from_slice(c.data);
        if c.last {
            break;
        }
    }
    assert_eq!(got, text.as_bytes());
}

#[tokio::test]
async fn closing_on_a_peer_that_reads_nothing_ends_within_the_close_timeouts() {
    let (l, url) = listener().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let config = Config::new().close_timeout(Duration::from_millis(300));
        let mut ws = sockeye_tokio::accept(tcp, &config).await.unwrap();
        // More than the socket buffers hold, queued without waiting for the peer.
        for _ in 0..32 {
            ws.queue_binary(&[0u8; 1 << 20]).unwrap();
        }
        let started = std::time::Instant::now();
        ws.close(CloseCode::GOING_AWAY, "bye").await.unwrap();
        (started.elapsed(), ws.ended().cloned().unwrap())
    });
    let addr = host_port(&url);
    let mut tcp = TcpStream::connect(&addr).await.unwrap();
    tcp.write_all(UPGRADE).await.unwrap();
    // Never read: the server's queue cannot drain.
    let (elapsed, ended) = timeout(LIMIT, server).await.unwrap().unwrap();
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert_eq!(
        (ended.code, ended.by, ended.clean),
        (Some(CloseCode::GOING_AWAY), Initiator::Local, false)
    );
    drop(tcp);
}

#[tokio::test]
async fn a_quiet_connection_holds_no_buffers_in_either_role() {
    let (l, url) = listener().await;
    // The server echoes two messages, then waits for a third that does not come.
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut ws = sockeye_tokio::accept(tcp, &Config::new()).await.unwrap();
        for _ in 0..2 {
            let m = timeout(LIMIT, ws.next()).await.unwrap().unwrap().unwrap();
            ws.send(m).await.unwrap();
        }
        // Large buffers stay for a pause between messages (100 ms), then go.
        assert!(
            timeout(Duration::from_millis(300), ws.next())
                .await
                .is_err()
        );
        let held = ws.buffers_held();
        (ws, held)
    });
    let mut ws = sockeye_tokio::connect(&url, &DialOptions::new())
        .await
        .unwrap();
    let large = vec![7u8; 1 << 20];
    for m in [Message::Text("hi".into()), Message::Binary(large)] {
        ws.send(m.clone()).await.unwrap();
        assert_eq!(
            timeout(LIMIT, ws.next()).await.unwrap().unwrap().unwrap(),
            m
        );
    }
    let (mut server_ws, server_held) = server.await.unwrap();
    assert_eq!(
        server_held, 0,
        "the server's stream, quiet after a 1 MiB echo"
    );
    // The client's read side has not yet found the connection quiet: one read that waits.
    assert!(ws.buffers_held() > 0);
    assert!(
        timeout(Duration::from_millis(300), ws.next())
            .await
            .is_err()
    );
    assert_eq!(ws.buffers_held(), 0, "the client's stream, quiet");
    // And both work on afterwards.
    ws.send(Message::Text("again".into())).await.unwrap();
    let m = timeout(LIMIT, server_ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(m, Message::Text("again".into()));
}

/// A masked frame as a client sends it (mask key 0: the payload as it is).
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80 | opcode, 0x80 | 127];
    f.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    f.extend_from_slice(&[0; 4]);
    f.extend_from_slice(payload);
    f
}

#[tokio::test]
async fn a_large_frame_read_in_place_is_checked_and_cut_off_cleanly() {
    // Large frames are read straight into the message (not through the receive buffer): sent
    // in pieces with pauses, a 768 KiB text message arrives whole; invalid UTF-8 half-way through
    // the next fails the connection with 1007 before the frame ends; a peer that hangs up
    // inside a large frame is 1006.
    let (l, url) = listener().await;
    let addr = host_port(&url);
    let server = tokio::spawn(async move {
        let mut results = Vec::new();
        for _ in 0..2 {
            let (tcp, _) = l.accept().await.unwrap();
            let mut ws = sockeye_tokio::accept(tcp, &Config::new()).await.unwrap();
            let mut got = Vec::new();
            while let Some(m) = ws.next().await {
                got.push(m.map(|m| (m.kind(), m.into_bytes().len())));
            }
            results.push(got);
        }
        results
    });
    let text = "añb€c😀".repeat(1 << 16); // 768 KiB, characters of 1 to 4 bytes
    let mut bad = vec![b'a'; 1 << 20];
    bad[700_000] = 0xff;
    let mut wire = client_frame(0x1, text.as_bytes());
    wire.extend(client_frame(0x1, &bad));
    let mut tcp = TcpStream::connect(&addr).await.unwrap();
    tcp.write_all(UPGRADE).await.unwrap();
    for piece in wire.chunks(100_003) {
        if tcp.write_all(piece).await.is_err() {
            break; // the server failed the connection: the rest is not read
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut seen = Vec::new();
    let _ = timeout(LIMIT, tcp.read_to_end(&mut seen)).await.unwrap();
    assert!(
        seen.ends_with(&[0x88, 0x02, 0x03, 0xef]),
        "a close with 1007 last: {:x?}",
        &seen[seen.len().saturating_sub(4)..]
    );
    // The second connection hangs up 300 KB into a 1 MiB frame.
    let mut tcp = TcpStream::connect(&addr).await.unwrap();
    tcp.write_all(UPGRADE).await.unwrap();
    tcp.write_all(&client_frame(0x2, &vec![1; 1 << 20])[..300_000])
        .await
        .unwrap();
    tcp.shutdown().await.unwrap(); // a FIN (an RST would be an I/O error instead)
    let mut response = Vec::new();
    let _ = timeout(LIMIT, tcp.read_to_end(&mut response))
        .await
        .unwrap();
    assert!(response.starts_with(b"HTTP/1.1 101"));
    let results = timeout(LIMIT, server).await.unwrap().unwrap();
    let first = &results[0];
    assert_eq!(first.len(), 2, "{first:?}");
    assert_eq!(first[0].as_ref().ok(), Some(&(DataKind::Text, text.len())));
    let e = first[1].as_ref().unwrap_err();
    assert_eq!(e.close_code(), Some(CloseCode::INVALID_PAYLOAD), "{e}");
    let second = &results[1];
    assert_eq!(second.len(), 1, "{second:?}");
    let e = second[0].as_ref().unwrap_err();
    assert_eq!(e.close_code(), Some(CloseCode::ABNORMAL), "{e}");
}

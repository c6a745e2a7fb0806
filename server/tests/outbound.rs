//! Outbound (client-role) connections on the io_uring event loop: against our own server, an
//! independent one (tokio-tungstenite), and the failure cases.

use std::net::TcpListener;
use std::sync::mpsc::{self, Sender};
use std::thread;
use std::time::Duration;

use sockeye_server::{
    CloseCode, Compression, Config, ConnId, Connect, Echo, Handler, Message, OwnedMessage,
    PreparedMessage, Server, WebSocket,
};

#[derive(Debug, PartialEq)]
enum Seen {
    Open(u64, Option<String>),
    Message(u64, bool, Vec<u8>),
    Closed(Option<CloseCode>),
    Failed(u64, String),
    /// Sent before `Open` when permessage-deflate was negotiated.
    Compressed(u64),
}

/// Sends a script of messages on open (every send path: copied, owned, prepared), reports
/// everything it sees.
struct Probe {
    tx: Sender<Seen>,
    big: Vec<u8>,
}

impl Handler for Probe {
    fn on_open(&mut self, ws: &mut WebSocket<'_>) {
        let token = ws.token().expect("an outbound connection");
        if ws.compressed() {
            self.tx.send(Seen::Compressed(token)).unwrap();
        }
        self.tx
            .send(Seen::Open(token, ws.subprotocol().map(str::to_owned)))
            .unwrap();
        let _ = ws.send_text(&format!("hello from {token}"));
        let _ = ws.send_owned(OwnedMessage::binary(self.big.clone()));
        let _ = ws.send_prepared(&PreparedMessage::text("prepared κόσμε"));
        let _ = ws.ping(b"p");
    }

    fn on_message(&mut self, ws: &mut WebSocket<'_>, msg: Message<'_>) {
        let token = ws.token().unwrap();
        let text = matches!(msg, Message::Text(_));
        self.tx
            .send(Seen::Message(token, text, msg.as_bytes().to_vec()))
            .unwrap();
    }

    fn on_close(&mut self, _id: ConnId, code: Option<CloseCode>, _reason: &str) {
        self.tx.send(Seen::Closed(code)).unwrap();
    }

    fn on_connect_error(&mut self, token: u64, error: std::io::Error) {
        self.tx
            .send(Seen::Failed(token, error.to_string()))
            .unwrap();
    }
}

fn runtime(tx: Sender<Seen>, big: Vec<u8>) -> Server {
    runtime_with(tx, big, Compression::Disabled)
}

fn runtime_with(tx: Sender<Seen>, big: Vec<u8>, compression: Compression) -> Server {
    let config = Config::new("127.0.0.1:0".parse().unwrap())
        .listen(false)
        .workers(2)
        .max_message(8 << 20)
        .compression(compression);
    Server::start(config, move |_| Probe {
        tx: tx.clone(),
        big: big.clone(),
    })
    .unwrap()
}

fn next(rx: &mpsc::Receiver<Seen>) -> Seen {
    rx.recv_timeout(Duration::from_secs(10)).expect("an event")
}

#[test]
fn outbound_echo_against_our_server() {
    outbound_echo(Compression::Disabled);
}

/// Both ends compress (each send path: copied, owned; prepared frames go out plain).
#[test]
fn outbound_echo_with_compression() {
    outbound_echo(Compression::ContextTakeover);
    outbound_echo(Compression::NoContextTakeover);
}

fn outbound_echo(compression: Compression) {
    let server = Server::start(
        Config::new("127.0.0.1:0".parse().unwrap())
            .workers(1)
            .subprotocol("chat")
            .max_message(8 << 20)
            .compression(compression),
        |_| Echo,
    )
    .unwrap();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 31 % 253) as u8).collect();
    let (tx, rx) = mpsc::channel();
    let rt = runtime_with(tx, big.clone(), compression);
    let url = format!("ws://{}/chat", server.local_addr());
    for token in 0..4 {
        rt.connect(Connect::new(&url).unwrap().token(token).protocol("chat"))
            .unwrap();
    }
    let mut per_token = vec![Vec::new(); 4];
    let (mut opened, mut compressed) = (0, 0);
    while per_token.iter().map(Vec::len).sum::<usize>() < 12 {
        match next(&rx) {
            Seen::Open(_, proto) => {
                assert_eq!(proto.as_deref(), Some("chat"));
                opened += 1;
            }
            Seen::Compressed(_) => compressed += 1,
            Seen::Message(t, text, data) => per_token[t as usize].push((text, data)),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(opened, 4);
    let expected = if compression == Compression::Disabled {
        0
    } else {
        4
    };
    assert_eq!(compressed, expected, "{compression:?}");
    for (t, got) in per_token.iter().enumerate() {
        assert_eq!(got[0], (true, format!("hello from {t}").into_bytes()));
        assert!(got[1] == (false, big.clone()), "owned 3 MB echo");
        assert_eq!(got[2], (true, "prepared κόσμε".as_bytes().to_vec()));
    }
    // The server's shutdown closes them with 1001.
    server.shutdown();
    for _ in 0..4 {
        assert_eq!(next(&rx), Seen::Closed(Some(CloseCode::GOING_AWAY)));
    }
    server.join().unwrap();
    rt.shutdown();
    rt.join().unwrap();
}

#[test]
fn outbound_against_tokio_tungstenite() {
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
            let mut n = 0;
            while let Some(msg) = ws.next().await {
                let msg = msg.unwrap(); // tungstenite checks our masking and framing
                if msg.is_text() || msg.is_binary() {
                    ws.send(msg).await.unwrap();
                    n += 1;
                    if n == 3 {
                        use tokio_tungstenite::tungstenite::protocol::CloseFrame;
                        let frame = CloseFrame {
                            code: 4002.into(),
                            reason: "enough".into(),
                        };
                        ws.close(Some(frame)).await.unwrap();
                    }
                }
            }
        });
    });
    let big = vec![0x5a; 200_000];
    let (tx, rx) = mpsc::channel();
    let rt = runtime(tx, big.clone());
    rt.connect(Connect::new(&format!("ws://{addr}/")).unwrap().token(7))
        .unwrap();
    assert_eq!(next(&rx), Seen::Open(7, None));
    assert_eq!(next(&rx), Seen::Message(7, true, b"hello from 7".to_vec()));
    assert_eq!(next(&rx), Seen::Message(7, false, big));
    assert_eq!(
        next(&rx),
        Seen::Message(7, true, "prepared κόσμε".as_bytes().to_vec())
    );
    assert_eq!(next(&rx), Seen::Closed(Some(CloseCode(4002))));
    server.join().unwrap();
    rt.shutdown();
    rt.join().unwrap();
}

#[test]
fn outbound_failures_reach_on_connect_error() {
    let (tx, rx) = mpsc::channel();
    let rt = runtime(tx, Vec::new());

    // Nothing listening.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    rt.connect(Connect::new(&format!("ws://{closed}/")).unwrap().token(1))
        .unwrap();
    match next(&rx) {
        Seen::Failed(1, why) => assert!(why.contains("refused"), "{why}"),
        other => panic!("unexpected {other:?}"),
    }

    // A refused handshake (origin not allowed: 403).
    let server = Server::start(
        Config::new("127.0.0.1:0".parse().unwrap())
            .workers(1)
            .allow_origin("good.example"),
        |_| Echo,
    )
    .unwrap();
    let c = Connect::new(&format!("ws://{}/", server.local_addr()))
        .unwrap()
        .token(2)
        .origin("https://evil.example");
    rt.connect(c).unwrap();
    match next(&rx) {
        Seen::Failed(2, why) => assert!(why.contains("403"), "{why}"),
        other => panic!("unexpected {other:?}"),
    }

    // A server that answers 101 with a wrong accept key.
    let liar = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = liar.local_addr().unwrap();
    let t = thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut s, _) = liar.accept().unwrap();
        let mut buf = [0u8; 2048];
        let _ = s.read(&mut buf).unwrap();
        s.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .unwrap();
        let _ = s.read(&mut buf);
    });
    rt.connect(Connect::new(&format!("ws://{addr}/")).unwrap().token(3))
        .unwrap();
    match next(&rx) {
        Seen::Failed(3, why) => assert!(why.contains("Sec-WebSocket-Accept"), "{why}"),
        other => panic!("unexpected {other:?}"),
    }
    t.join().unwrap();
    server.shutdown();
    server.join().unwrap();
    rt.shutdown();
    rt.join().unwrap();
}

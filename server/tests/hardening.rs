//! Regression tests for the review of `444a203`: each of these crashed, hung or handed out
//! invalid text before the fix.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sockeye_codec::{Header, OpCode, encode_frame};
use sockeye_server::client::{self, DialOptions, Error, Message as CMessage};
use sockeye_server::{CloseCode, Config, Echo, Handler, Message, Server, WebSocket};

fn config() -> Config {
    Config::new("127.0.0.1:0".parse().unwrap()).workers(1)
}

fn dial(addr: SocketAddr) -> client::Conn {
    client::dial(&format!("ws://{addr}/"), &DialOptions::default()).unwrap()
}

fn echo_works(addr: SocketAddr) {
    let mut c = dial(addr);
    c.write_text("still here").unwrap();
    assert_eq!(c.read().unwrap(), CMessage::Text("still here".into()));
    c.close(CloseCode::NORMAL, "").unwrap();
}

fn metrics(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// Echoes, but panics on "panic" and tries an unsendable close code on "1005".
struct Fragile;

impl Handler for Fragile {
    fn on_message(&mut self, ws: &mut WebSocket<'_>, msg: Message<'_>) {
        match msg {
            Message::Text("panic") => panic!("handler bug"),
            Message::Text("1005") => {
                let refused = ws.close(CloseCode(1005), "reserved").is_err();
                let _ = ws.send_text(if refused { "refused" } else { "sent" });
            }
            other => {
                let _ = ws.send_binary(other.as_bytes());
            }
        }
    }
}

#[test]
fn a_panicking_handler_costs_its_connection_only() {
    let server = Server::start(config(), |_| Fragile).unwrap();
    let addr = server.local_addr();
    let mut neighbour = dial(addr);
    let mut victim = dial(addr);
    victim.write_text("panic").unwrap();
    match victim.read() {
        Err(Error::Closed(c)) => assert_eq!(c.code, Some(CloseCode::INTERNAL_ERROR)),
        other => panic!("expected a 1011 close, got {other:?}"),
    }
    // The same worker still serves its other connections and new ones.
    neighbour.write_binary(b"ok").unwrap();
    assert_eq!(neighbour.read().unwrap(), CMessage::Binary(b"ok".to_vec()));
    let mut fresh = dial(addr);
    fresh.write_binary(b"new").unwrap();
    assert_eq!(fresh.read().unwrap(), CMessage::Binary(b"new".to_vec()));
    assert!(
        metrics(addr).contains("sockeye_handler_panics_total 1"),
        "the panic is counted"
    );
    server.shutdown();
    server.join().unwrap();
}

#[test]
fn an_unsendable_close_code_is_an_error_not_a_dead_worker() {
    let server = Server::start(config(), |_| Fragile).unwrap();
    let addr = server.local_addr();
    let mut c = dial(addr);
    c.write_text("1005").unwrap();
    assert_eq!(c.read().unwrap(), CMessage::Text("refused".into()));
    c.write_binary(b"open").unwrap();
    assert_eq!(c.read().unwrap(), CMessage::Binary(b"open".to_vec()));
    server.shutdown();
    server.join().unwrap();
}

#[test]
fn a_huge_declared_frame_allocates_nothing_up_front() {
    // One 15-byte frame declaring 100 GiB, with the limit raised to allow it: the server used
    // to reserve the declared length and abort (`memory allocation ... failed`).
    let limit = 100u64 << 30;
    let server = Server::start(config().max_message(limit), |_| Echo).unwrap();
    let addr = server.local_addr();
    let mut raw = TcpStream::connect(addr).unwrap();
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    write!(
        raw,
        "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let header = Header {
        mask: Some([1, 2, 3, 4]),
        ..Header::new(OpCode::Binary, limit)
    };
    let mut frame = [0u8; 15];
    let n = header.encode(&mut frame).unwrap();
    raw.write_all(&frame[..n + 1]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    echo_works(addr);
    drop(raw);
    server.shutdown();
    server.join().unwrap();
}

#[test]
fn start_fails_instead_of_hanging_when_a_handler_factory_panics() {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = Server::start(config().workers(2), |ctx| {
            assert!(ctx.worker != 1, "factory bug on worker 1");
            Echo
        });
        let _ = tx.send(r.map(|s| s.local_addr()).map_err(|e| e.to_string()));
    });
    let r = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("Server::start returned");
    let e = r.expect_err("start fails");
    assert!(e.contains("panicked"), "{e}");
}

/// A server that sends a text message in two fragments with a pause between, split inside a
/// two-byte character ("é").
fn slow_fragment_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut req = Vec::new();
        let mut b = [0u8; 1024];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut b).unwrap();
            req.extend_from_slice(&b[..n]);
        }
        let text = String::from_utf8_lossy(&req).into_owned();
        let key = text
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap()
            .trim()
            .to_owned();
        let accept = sockeye_codec::handshake::accept_key(key.as_bytes());
        write!(
            s,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            std::str::from_utf8(&accept).unwrap()
        )
        .unwrap();
        let mut f = [0u8; 32];
        let n = encode_frame(&mut f, OpCode::Text, false, None, b"h\xc3").unwrap();
        s.write_all(&f[..n]).unwrap();
        std::thread::sleep(Duration::from_millis(600));
        let n = encode_frame(&mut f, OpCode::Continuation, true, None, b"\xa9llo").unwrap();
        s.write_all(&f[..n]).unwrap();
        std::thread::sleep(Duration::from_secs(2));
    });
    addr
}

#[test]
fn a_read_after_a_cut_read_into_never_yields_invalid_text() {
    let mut c = dial(slow_fragment_server());
    c.set_read_deadline(Some(Instant::now() + Duration::from_millis(200)));
    let mut out = Vec::new();
    match c.read_into(&mut out) {
        Err(Error::Timeout("read deadline")) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
    c.set_read_deadline(None);
    // Nothing of the cut message was handed out, and the next read, of either kind, gets all
    // of it (444a203 returned its tail as `Message::Text`, which is not UTF-8).
    assert!(out.is_empty());
    assert_eq!(c.read().unwrap(), CMessage::Text("héllo".into()));
}

/// Offloads "slow" to another thread and posts the answer back; echoes everything else.
struct Offloading {
    poster: sockeye_server::Poster,
}

impl Handler for Offloading {
    fn on_message(&mut self, ws: &mut WebSocket<'_>, msg: Message<'_>) {
        if msg == Message::Text("slow") {
            let (id, poster) = (ws.id(), self.poster.clone());
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(500)); // the blocking part
                assert!(poster.post(id, |ws| {
                    let _ = ws.send_text("slow answer");
                }));
            });
        } else {
            let _ = ws.send_binary(msg.as_bytes());
        }
    }
}

#[test]
fn work_moved_off_the_event_loop_does_not_stall_neighbours() {
    let server = Server::start(config(), |ctx| Offloading { poster: ctx.poster }).unwrap();
    let addr = server.local_addr();
    let mut slow = dial(addr);
    let mut neighbour = dial(addr);
    slow.write_text("slow").unwrap();
    // The neighbour, on the same (only) worker, is answered while the slow job runs.
    neighbour.write_binary(b"quick").unwrap();
    assert_eq!(
        neighbour.read().unwrap(),
        CMessage::Binary(b"quick".to_vec())
    );
    slow.set_read_deadline(Some(Instant::now() + Duration::from_millis(50)));
    assert!(slow.read().is_err(), "the slow answer is not there yet");
    slow.set_read_deadline(None);
    assert_eq!(slow.read().unwrap(), CMessage::Text("slow answer".into()));
    server.shutdown();
    server.join().unwrap();
}

/// On "flood", a thread posts 4,000 × 16 KiB to the connection; every status is recorded.
struct Flooder {
    poster: sockeye_server::Poster,
    statuses: mpsc::Sender<sockeye_server::SendStatus>,
}

impl Handler for Flooder {
    fn on_message(&mut self, ws: &mut WebSocket<'_>, _: Message<'_>) {
        let (id, poster, statuses) = (ws.id(), self.poster.clone(), self.statuses.clone());
        std::thread::spawn(move || {
            let payload = vec![7u8; 16 << 10];
            for _ in 0..4000 {
                let (p, tx) = (payload.clone(), statuses.clone());
                if !poster.post(id, move |ws| {
                    let _ = tx.send(ws.send_binary(&p));
                }) {
                    std::thread::sleep(Duration::from_millis(1)); // mailbox full: slow down
                }
            }
        });
    }
}

#[test]
fn sends_to_a_peer_that_does_not_read_stop_at_the_hard_bound() {
    use sockeye_server::SendStatus;
    let (tx, rx) = mpsc::channel();
    let cfg = config()
        .max_backpressure(64 << 10)
        .max_send_queue(256 << 10);
    let server = Server::start(cfg, move |ctx| Flooder {
        poster: ctx.poster,
        statuses: tx.clone(),
    })
    .unwrap();
    let mut c = dial(server.local_addr());
    c.write_text("flood").unwrap();
    // Not reading: the kernel's buffers fill, then the queue; past 256 KiB the connection is
    // closed with 1008 instead of the queue growing.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut closed = false;
    while !closed && Instant::now() < deadline {
        if let Ok(s) = rx.recv_timeout(Duration::from_millis(100)) {
            closed = s == SendStatus::Closed;
        }
    }
    assert!(closed, "a send past the hard bound closes the connection");
    loop {
        match c.read() {
            Ok(_) => continue,
            Err(Error::Closed(e)) => {
                assert_eq!(e.code, Some(CloseCode::POLICY_VIOLATION));
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    server.shutdown();
    server.join().unwrap();
}

#[test]
fn outbound_connections_refuse_the_upgrades_own_headers_like_dial() {
    use sockeye_server::Connect;
    let server = Server::start(config().listen(false), |_| Echo).unwrap();
    for name in [
        "Sec-WebSocket-Key",
        "upgrade",
        "Connection",
        "sec-websocket-extensions",
    ] {
        let c = Connect::new("ws://127.0.0.1:9/").unwrap().header(name, "x");
        let e = server.connect(c).expect_err(name);
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{name}: {e}");
        let opts = DialOptions::new().header(name, "x");
        assert!(
            Connect::with_options("ws://127.0.0.1:9/", opts).is_err(),
            "{name}"
        );
    }
    server.shutdown();
    server.join().unwrap();
}

/// Reports every `on_close` code.
struct CloseRecorder(mpsc::Sender<Option<CloseCode>>);

impl Handler for CloseRecorder {
    fn on_close(&mut self, _: sockeye_server::ConnId, code: Option<CloseCode>, _: &str) {
        let _ = self.0.send(code);
    }
}

#[test]
fn on_close_reports_our_code_when_we_failed_the_connection() {
    // 444a203 reported 1006 here: the server closes the socket right after its 1009, so the
    // peer's answer never arrives.
    let (tx, rx) = mpsc::channel();
    let server = Server::start(config().max_message(100), move |_| {
        CloseRecorder(tx.clone())
    })
    .unwrap();
    let mut c = dial(server.local_addr());
    c.write_binary(&[0; 200]).unwrap();
    match c.read() {
        Err(Error::Closed(e)) => assert_eq!(e.code, Some(CloseCode::MESSAGE_TOO_BIG)),
        other => panic!("expected 1009, got {other:?}"),
    }
    let code = rx.recv_timeout(Duration::from_secs(10)).expect("on_close");
    assert_eq!(code, Some(CloseCode::MESSAGE_TOO_BIG));
    server.shutdown();
    server.join().unwrap();
}

//! The peers, configured fairly: tokio-tungstenite, fastwebsockets and sockeye's own tokio
//! stream (`sockeye-tokio`) as echo/broadcast servers on a tokio current_thread runtime (one core, like one sockeye worker), no logging, the same
//! 16 MiB message limit, whole messages echoed (fragments reassembled).
//!
//! ```text
//! peer-server --impl tungstenite|fastwebsockets|sockeye-tokio [--port 9001] [--mode echo|broadcast]
//! ```

use std::net::SocketAddr;
use std::rc::Rc;

use clap::{Parser, ValueEnum};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::spawn_local;

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Impl {
    Tungstenite,
    Fastwebsockets,
    /// sockeye-tokio's `WebSocketStream`, driven exactly as tokio-tungstenite is here.
    SockeyeTokio,
    /// The floor: after the upgrade, bytes are echoed as they come (no WebSocket work at all),
    /// through a 512 KiB buffer. Use with `sockeye-load echo --verbatim`.
    RawEcho,
    /// The broadcast floor: after the upgrade, bytes read from any connection are written to
    /// every connection as they are (no WebSocket work), each subscriber's pending bytes
    /// coalesced into one write. Use with `sockeye-load broadcast --verbatim`.
    RawFanout,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Mode {
    Echo,
    Broadcast,
}

#[derive(Parser)]
struct Args {
    #[arg(long = "impl", value_enum)]
    imp: Impl,
    #[arg(long, default_value_t = 9001)]
    port: u16,
    #[arg(long, value_enum, default_value = "echo")]
    mode: Mode,
}

const MAX_MESSAGE: usize = 16 << 20;

fn main() {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
        let listener = TcpListener::bind(addr).await.unwrap();
        eprintln!(
            "peer-server: {} {} on ws://{addr}",
            name(args.imp),
            mode(args.mode)
        );
        let hub = Rc::new(Hub::default());
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let hub = hub.clone();
            // One task per connection, spawned with that implementation's own future: a
            // single `async` block matching over all of them would give every task the size
            // of the largest (3.8 KB, counted in each one's idle memory).
            let mode = args.mode;
            match args.imp {
                Impl::Tungstenite => spawn_local(tungstenite_conn(stream, mode, hub)),
                Impl::Fastwebsockets => spawn_local(fastwebsockets_conn(stream, mode, hub)),
                Impl::SockeyeTokio => spawn_local(sockeye_tokio_conn(stream, mode, hub)),
                Impl::RawEcho => spawn_local(raw_echo(stream)),
                Impl::RawFanout => spawn_local(raw_fanout(stream, hub)),
            };
        }
    });
}

fn name(i: Impl) -> &'static str {
    match i {
        Impl::Tungstenite => "tokio-tungstenite",
        Impl::Fastwebsockets => "fastwebsockets",
        Impl::SockeyeTokio => "sockeye-tokio",
        Impl::RawEcho => "raw TCP echo",
        Impl::RawFanout => "raw TCP fan-out",
    }
}

fn mode(m: Mode) -> &'static str {
    match m {
        Mode::Echo => "echo",
        Mode::Broadcast => "broadcast",
    }
}

/// Broadcast subscribers: one unbounded channel each, fed the same `Bytes` payload (or, for
/// sockeye-tokio, the same frame: each implementation gets its shared form of a message).
#[derive(Default)]
struct Hub {
    subs: std::cell::RefCell<Vec<tokio::sync::mpsc::UnboundedSender<(bool, bytes_t::Bytes)>>>,
    frames: std::cell::RefCell<Vec<tokio::sync::mpsc::UnboundedSender<sockeye_tokio::Prepared>>>,
}

mod bytes_t {
    pub use tokio_tungstenite::tungstenite::Bytes;
}

impl Hub {
    fn publish(&self, text: bool, payload: bytes_t::Bytes) {
        self.subs
            .borrow_mut()
            .retain(|s| s.send((text, payload.clone())).is_ok());
    }

    fn publish_frame(&self, frame: &sockeye_tokio::Prepared) {
        self.frames
            .borrow_mut()
            .retain(|s| s.send(frame.clone()).is_ok());
    }
}

async fn tungstenite_conn(stream: TcpStream, mode: Mode, hub: Rc<Hub>) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    let (mut tx, mut rx) = ws.split();
    match mode {
        Mode::Echo => {
            // forward() feeds while messages are ready and flushes when the reader would block.
            let data = rx.filter(|m| {
                std::future::ready(matches!(m, Ok(Message::Text(_) | Message::Binary(_))))
            });
            let _ = data.forward(tx).await;
        }
        Mode::Broadcast => {
            let (stx, mut srx) = tokio::sync::mpsc::unbounded_channel();
            hub.subs.borrow_mut().push(stx);
            let writer = tokio::task::spawn_local(async move {
                while let Some((text, payload)) = srx.recv().await {
                    let msg = if text {
                        Message::Text(payload.try_into().expect("valid text"))
                    } else {
                        Message::Binary(payload)
                    };
                    if tx.feed(msg).await.is_err() {
                        return;
                    }
                    if srx.is_empty() && tx.flush().await.is_err() {
                        return;
                    }
                }
            });
            while let Some(Ok(m)) = rx.next().await {
                match m {
                    Message::Text(t) => hub.publish(true, t.into()),
                    Message::Binary(b) => hub.publish(false, b),
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            writer.abort();
        }
    }
}

/// The same shape as `tungstenite_conn`: split halves, `forward` for echo, a writer task fed
/// from the hub for broadcast (with frames shared as tokio-tungstenite shares payloads).
async fn sockeye_tokio_conn(stream: TcpStream, mode: Mode, hub: Rc<Hub>) {
    use futures_util::{SinkExt, StreamExt};
    use sockeye_tokio::{Config, Message, Prepared};
    let config = Config::new().max_message(Some(MAX_MESSAGE as u64));
    let Ok(ws) = sockeye_tokio::accept(stream, &config).await else {
        return;
    };
    match mode {
        Mode::Echo => {
            let (tx, rx) = ws.split::<Message>();
            let _ = rx.forward(tx).await;
        }
        Mode::Broadcast => {
            let (mut tx, mut rx) = ws.split::<Prepared>();
            let (stx, mut srx) = tokio::sync::mpsc::unbounded_channel();
            hub.frames.borrow_mut().push(stx);
            // The hub carries frames here: each published message is framed once
            // (`Prepared`) and every subscriber queues that same frame.
            let writer = tokio::task::spawn_local(async move {
                while let Some(prepared) = srx.recv().await {
                    if tx.feed(prepared).await.is_err() {
                        return;
                    }
                    if srx.is_empty() && tx.flush().await.is_err() {
                        return;
                    }
                }
            });
            while let Some(Ok(m)) = rx.next().await {
                let prepared = match &m {
                    Message::Text(t) => Prepared::text(t),
                    Message::Binary(b) => Prepared::binary(b),
                };
                hub.publish_frame(&prepared);
            }
            writer.abort();
        }
    }
}

/// The upgrade by hand (httparse + sockeye-codec's accept key), as fastwebsockets leaves the
/// HTTP layer to the application; then `WebSocket::after_handshake`.
async fn handshake(stream: &mut TcpStream) -> Option<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = Vec::with_capacity(1024);
    loop {
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [sockeye_codec::handshake::EMPTY_HEADER; 32];
        match sockeye_codec::handshake::Request::parse(&buf, &mut headers) {
            Ok(sockeye_codec::Status::Complete((req, _))) => {
                let mut out = [0u8; 256];
                let len = req.accept(&mut out, None, None).ok()?;
                stream.write_all(&out[..len]).await.ok()?;
                return Some(());
            }
            Ok(_) if buf.len() < 8192 => continue,
            _ => return None,
        }
    }
}

async fn raw_echo(mut stream: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if handshake(&mut stream).await.is_none() {
        return;
    }
    let mut buf = vec![0u8; 512 << 10];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn raw_fanout(mut stream: TcpStream, hub: Rc<Hub>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if handshake(&mut stream).await.is_none() {
        return;
    }
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(bool, bytes_t::Bytes)>();
    hub.subs.borrow_mut().push(tx);
    let writer = tokio::task::spawn_local(async move {
        let mut out = Vec::with_capacity(512 << 10);
        while let Some((_, first)) = rx.recv().await {
            out.clear();
            out.extend_from_slice(&first);
            while out.len() < 512 << 10 {
                match rx.try_recv() {
                    Ok((_, more)) => out.extend_from_slice(&more),
                    Err(_) => break,
                }
            }
            if wr.write_all(&out).await.is_err() {
                return;
            }
        }
    });
    let mut buf = vec![0u8; 512 << 10];
    loop {
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => hub.publish(false, bytes_t::Bytes::copy_from_slice(&buf[..n])),
        }
    }
    writer.abort();
}

async fn fastwebsockets_conn(mut stream: TcpStream, mode: Mode, hub: Rc<Hub>) {
    use fastwebsockets::{FragmentCollector, Frame, OpCode, Payload, Role, WebSocket};

    if handshake(&mut stream).await.is_none() {
        return;
    }
    let mut ws = WebSocket::after_handshake(stream, Role::Server);
    ws.set_max_message_size(MAX_MESSAGE);
    ws.set_auto_close(true);
    ws.set_auto_pong(true);
    match mode {
        Mode::Echo => {
            let mut ws = FragmentCollector::new(ws);
            while let Ok(frame) = ws.read_frame().await {
                let data = matches!(frame.opcode, OpCode::Text | OpCode::Binary);
                if frame.opcode == OpCode::Close || (data && ws.write_frame(frame).await.is_err()) {
                    break;
                }
            }
        }
        Mode::Broadcast => {
            use fastwebsockets::{FragmentCollectorRead, WebSocketError};
            // Split halves: the writer task serves broadcasts and the reader's obligated
            // control replies, so a read is never cancelled mid-frame. fastwebsockets writes
            // each frame straight to its stream; a user who fans out wraps the write half in a
            // `BufWriter` and flushes when the queue runs dry, as the tokio-tungstenite
            // harness does with feed/flush (without it every delivery is its own syscall).
            let (rd, mut wr) = ws.split(|s: TcpStream| {
                let (r, w) = s.into_split();
                (r, tokio::io::BufWriter::with_capacity(64 << 10, w))
            });
            let (stx, mut srx) = tokio::sync::mpsc::unbounded_channel::<(bool, bytes_t::Bytes)>();
            let (ctx, mut crx) = tokio::sync::mpsc::unbounded_channel::<(OpCode, Vec<u8>)>();
            hub.subs.borrow_mut().push(stx);
            let writer = tokio::task::spawn_local(async move {
                loop {
                    let f = tokio::select! {
                        Some((text, payload)) = srx.recv() => {
                            let op = if text { OpCode::Text } else { OpCode::Binary };
                            wr.write_frame(Frame::new(true, op, None, Payload::Borrowed(&payload))).await
                        }
                        Some((op, payload)) = crx.recv() => {
                            wr.write_frame(Frame::new(true, op, None, Payload::Owned(payload))).await
                        }
                        else => return,
                    };
                    if f.is_err() {
                        return;
                    }
                    if srx.is_empty() && crx.is_empty() && wr.flush().await.is_err() {
                        return;
                    }
                }
            });
            let mut rd = FragmentCollectorRead::new(rd);
            let mut send = |f: Frame<'_>| {
                let _ = ctx.send((f.opcode, f.payload.to_vec()));
                std::future::ready(Ok::<(), WebSocketError>(()))
            };
            loop {
                match rd.read_frame(&mut send).await {
                    Ok(f) if matches!(f.opcode, OpCode::Text | OpCode::Binary) => {
                        let text = f.opcode == OpCode::Text;
                        hub.publish(text, bytes_t::Bytes::copy_from_slice(&f.payload));
                    }
                    Ok(f) if f.opcode == OpCode::Close => break,
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            drop(ctx);
            writer.abort();
        }
    }
}

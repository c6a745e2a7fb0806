//! A WebSocket echo server on blocking `std::net`, one thread per connection, that uses nothing but
//! `sockeye-codec`: the proof that the codec drives a runtime of your own.
//!
//! ```text
//! cargo run --release -p sockeye-codec --example echo_server -- 127.0.0.1:9001
//! ```
//!
//! Each connection reads into one fixed 64 KiB buffer. Frames that sit whole in it are echoed
//! straight from it; larger messages stream through it with `decode_streaming` and are assembled
//! in a per-connection `Vec` bounded by the decoder's message limit.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::Duration;

use sockeye_codec::handshake::{self, HandshakeError, Request};
use sockeye_codec::{
    Close, CloseCode, Config, DataKind, Decoder, Event, Header, OpCode, Role, Status, encode_close,
};

/// Largest request header block accepted.
const MAX_REQUEST: usize = 8 << 10;
/// Receive buffer per connection.
const BUF_SIZE: usize = 64 << 10;

fn main() -> io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_string());
    let listener = TcpListener::bind(&addr)?;
    eprintln!("echo_server: listening on ws://{}", listener.local_addr()?);
    serve(listener)
}

/// Accepts connections forever, one thread each.
pub fn serve(listener: TcpListener) -> io::Result<()> {
    for stream in listener.incoming() {
        let stream = stream?;
        std::thread::spawn(move || {
            if let Err(e) = handle(stream) {
                eprintln!("echo_server: connection ended: {e}");
            }
        });
    }
    Ok(())
}

/// A receive buffer: bytes `start..end` are received and not yet consumed.
struct RecvBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl RecvBuf {
    fn pending(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.end]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads more bytes, first moving the pending ones to the front if the tail is full.
    fn fill(&mut self, stream: &mut TcpStream) -> io::Result<usize> {
        if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = stream.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }
}

fn handle(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut rx = RecvBuf {
        buf: vec![0; BUF_SIZE],
        start: 0,
        end: 0,
    };
    let mut out = Vec::with_capacity(BUF_SIZE);

    // Opening handshake.
    let consumed = loop {
        if rx.fill(&mut stream)? == 0 {
            return Ok(());
        }
        let mut headers = [handshake::EMPTY_HEADER; 32];
        let request = &rx.buf[..rx.end];
        let result = Request::parse(request, &mut headers).and_then(|s| match s {
            Status::Complete((req, len)) => {
                if !handshake::origin_allowed(req.origin, req.host, &[]) {
                    return Err(HandshakeError::OriginRefused);
                }
                out.resize(512, 0);
                let n = req
                    .accept(&mut out, None, None)
                    .expect("512 bytes hold a 101");
                out.truncate(n);
                Ok(Some(len))
            }
            Status::Partial { .. } if rx.end >= MAX_REQUEST => Err(HandshakeError::TooManyHeaders),
            Status::Partial { .. } => Ok(None),
        });
        match result {
            Ok(Some(len)) => break len,
            Ok(None) => continue,
            Err(e) => {
                let status = if rx.end >= MAX_REQUEST {
                    431
                } else {
                    e.status()
                };
                let mut resp = [0u8; 512];
                let n = handshake::write_error_response(&mut resp, status, &e.to_string())
                    .expect("512 bytes hold an error response");
                stream.write_all(&resp[..n])?;
                return Ok(());
            }
        }
    };
    stream.write_all(&out)?;
    rx.consume(consumed);
    stream.set_read_timeout(None)?;

    let mut decoder = Decoder::new(Role::Server, Config::default());
    let mut message: Vec<u8> = Vec::new();
    let mut kind = DataKind::Binary;
    loop {
        let (used, reply) = match decoder.decode_streaming(rx.pending()) {
            Ok(Status::Partial { .. }) => {
                if rx.fill(&mut stream)? == 0 {
                    return Ok(()); // peer went away without a close frame
                }
                continue;
            }
            Ok(Status::Complete(frame)) => {
                let used = frame.wire_len();
                match frame.event {
                    Event::Data(d) if d.message_start && d.message_fin => {
                        // Whole message in the buffer: echo it from there, no copy.
                        send(&mut stream, &mut out, opcode(d.kind), d.payload)?;
                        (used, None)
                    }
                    Event::Data(d) => {
                        if d.message_start {
                            message.clear();
                            kind = d.kind;
                        }
                        message.extend_from_slice(d.payload);
                        if d.message_fin {
                            send(&mut stream, &mut out, opcode(kind), &message)?;
                            message = Vec::new(); // hold no memory between large messages
                        }
                        (used, None)
                    }
                    Event::Ping(p) => {
                        send(&mut stream, &mut out, OpCode::Pong, p)?;
                        (used, None)
                    }
                    Event::Pong(_) => (used, None),
                    Event::Close(c) => (used, Some(c.code.unwrap_or(CloseCode::NORMAL))),
                }
            }
            Err(e) => (0, Some(e.close_code())),
        };
        rx.consume(used);
        if let Some(code) = reply {
            return close(stream, code);
        }
    }
}

fn opcode(kind: DataKind) -> OpCode {
    match kind {
        DataKind::Text => OpCode::Text,
        DataKind::Binary => OpCode::Binary,
    }
}

/// Sends one unmasked frame: header and payload in one write.
fn send(stream: &mut TcpStream, out: &mut Vec<u8>, op: OpCode, payload: &[u8]) -> io::Result<()> {
    let mut header = [0u8; 14];
    let n = Header::new(op, payload.len() as u64)
        .encode(&mut header)
        .expect("14 bytes hold any header");
    out.clear();
    out.extend_from_slice(&header[..n]);
    out.extend_from_slice(payload);
    stream.write_all(out)
}

/// Sends our close frame, then closes TCP (the server closes first, RFC 6455 §7.1.1) after
/// draining briefly so the peer reads the close frame rather than a reset.
fn close(mut stream: TcpStream, code: CloseCode) -> io::Result<()> {
    let mut frame = [0u8; 4];
    let n = encode_close(
        &mut frame,
        &Close {
            code: Some(code),
            reason: "",
        },
        None,
    )
    .expect("4 bytes hold a close frame without reason");
    stream.write_all(&frame[..n])?;
    stream.shutdown(Shutdown::Write)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut sink = [0u8; 4096];
    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
    Ok(())
}

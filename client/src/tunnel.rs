//! A byte stream over WebSocket messages (Go's `websocket.NetConn`).

use std::io::{self, Read, Write};

use sockeye_codec::{CloseCode, DataKind};

use super::conn::Conn;
use super::error::Error;
use super::writer::Writer;

/// A byte stream carried by messages of one type (Go's `NetConn`): reads return the bytes of
/// consecutive messages as one continuous stream, each write is sent as one message (a write
/// longer than [`Tunnel::max_message`], 32 KiB by default, as several), and the
/// peer's close with 1000 (normal) or 1001 (going away) is the end of the stream. A message of
/// the other type closes the connection with 1003 (unsupported data) and fails the read.
/// Dropping the tunnel, or [`Tunnel::close`], performs the close handshake.
///
/// ```no_run
/// use std::io::{Read, Write};
/// use sockeye_client::{self as client, DialOptions, Tunnel};
/// use sockeye_codec::DataKind;
///
/// let conn = client::dial("ws://127.0.0.1:9001/", &DialOptions::new())?;
/// let mut stream = Tunnel::new(conn, DataKind::Binary);
/// stream.write_all(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n")?;
/// let mut reply = Vec::new();
/// stream.read_to_end(&mut reply)?; // until the server closes normally
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Tunnel {
    conn: Conn,
    kind: DataKind,
    max_message: usize,
}

/// The largest message a [`Tunnel`] sends unless told otherwise: 32 KiB, the smallest read
/// limit common among WebSocket libraries (coder/websocket's default), so a peer with default
/// settings accepts every message.
pub const DEFAULT_TUNNEL_MESSAGE: usize = 32 << 10;

impl Tunnel {
    /// Carries a byte stream over `conn` in messages of `kind`.
    #[must_use]
    pub fn new(conn: Conn, kind: DataKind) -> Tunnel {
        Tunnel {
            conn,
            kind,
            max_message: DEFAULT_TUNNEL_MESSAGE,
        }
    }

    /// The largest message a write sends (at least 4 bytes, so a text tunnel can always hold
    /// a whole character; default [`DEFAULT_TUNNEL_MESSAGE`]): a longer write goes out as
    /// several messages, each within the peer's read limit when this is. A text tunnel splits
    /// only between characters.
    #[must_use]
    pub fn max_message(mut self, bytes: usize) -> Tunnel {
        self.max_message = bytes.max(4);
        self
    }

    /// A writing half for another thread (each write is one message, or several past
    /// [`Tunnel::max_message`]).
    #[must_use]
    pub fn writer(&self) -> TunnelWriter {
        TunnelWriter {
            writer: self.conn.writer().clone(),
            kind: self.kind,
            max_message: self.max_message,
        }
    }

    /// The connection underneath.
    pub fn conn(&mut self) -> &mut Conn {
        &mut self.conn
    }

    /// Ends the stream with a normal close handshake.
    pub fn close(mut self) -> Result<(), Error> {
        self.conn.close(CloseCode::NORMAL, "")
    }
}

impl Read for Tunnel {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match self.conn.read_stream(out, self.kind) {
            Ok(n) => Ok(n),
            Err(e) if e.is_normal_close() => Ok(0),
            Err(e) => Err(e.into()),
        }
    }
}

impl Write for Tunnel {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        write_split(self.conn.writer(), self.kind, self.max_message, data)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        let _ = self.conn.close(CloseCode::NORMAL, "");
    }
}

/// The writing half of a [`Tunnel`], for use from another thread.
#[derive(Debug, Clone)]
pub struct TunnelWriter {
    writer: Writer,
    kind: DataKind,
    max_message: usize,
}

impl Write for TunnelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        write_split(&self.writer, self.kind, self.max_message, data)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Sends `data` as messages of at most `max` bytes (text cut only between characters); the
/// bytes sent, or the error if none were. An empty write sends nothing (a byte stream has no
/// empty pieces).
fn write_split(writer: &Writer, kind: DataKind, max: usize, data: &[u8]) -> io::Result<usize> {
    let mut sent = 0;
    while sent < data.len() {
        let rest = &data[sent..];
        let mut n = rest.len().min(max);
        if kind == DataKind::Text && n < rest.len() {
            // Back off to a character boundary: at most 3 bytes, as max >= 4.
            while n > 0 && (rest[n] & 0xC0) == 0x80 {
                n -= 1;
            }
            if n == 0 {
                n = rest.len().min(max); // not UTF-8 at all: the writer refuses it
            }
        }
        match writer.write(kind, &rest[..n]) {
            Ok(()) => sent += n,
            Err(_) if sent > 0 => return Ok(sent),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(sent)
}

//! A byte stream over WebSocket messages (Go's `websocket.NetConn`).

use std::io::{self, Read, Write};

use sockeye_codec::{CloseCode, DataKind};

use super::conn::Conn;
use super::error::Error;
use super::writer::Writer;

/// A byte stream carried by messages of one type (Go's `NetConn`): reads return the bytes of
/// consecutive messages as one continuous stream, each write is sent as one message, and the
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
}

impl Tunnel {
    /// Carries a byte stream over `conn` in messages of `kind`.
    #[must_use]
    pub fn new(conn: Conn, kind: DataKind) -> Tunnel {
        Tunnel { conn, kind }
    }

    /// A writing half for another thread (each write is one message).
    #[must_use]
    pub fn writer(&self) -> TunnelWriter {
        TunnelWriter {
            writer: self.conn.writer().clone(),
            kind: self.kind,
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
        self.conn.writer().write(self.kind, data)?;
        Ok(data.len())
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
}

impl Write for TunnelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.writer.write(self.kind, data)?;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

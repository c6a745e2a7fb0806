//! WebSocket streams for tokio on sockeye's sans-IO session.
//!
//! A [`WebSocketStream`] is a [`Stream`](futures_core::Stream) of [`Message`]s and a
//! [`Sink`](futures_sink::Sink) of them over any `AsyncRead + AsyncWrite` transport, so it
//! splits into read and write halves with `futures::StreamExt::split`. Pings are answered,
//! the close handshake is carried out with its code and reason, read limits and
//! permessage-deflate (both context modes) apply: all of it is the codec's
//! [`Session`](sockeye_codec::session::Session), the same protocol logic sockeye's io_uring
//! server and blocking client run on. Large messages can be read without a copy, piece by
//! piece ([`WebSocketStream::next_chunk`]).
//!
//! Deadlines (keepalive, the close handshake's timeout, the handshake timeouts) use tokio's
//! time driver: build the runtime with `enable_time` (or `enable_all`, as `#[tokio::main]`
//! does).
//!
//! Open one with [`connect`] (a `ws://` URL, client role), [`client`] (the client handshake
//! over a stream you opened), [`accept`] (the server handshake over any stream) or
//! [`WebSocketStream::from_upgraded`] (a stream whose HTTP upgrade was done elsewhere, as with
//! hyper).
//!
//! ```no_run
//! use futures_util::{SinkExt, StreamExt};
//! use sockeye_tokio::{Config, Message};
//!
//! # async fn run() -> Result<(), sockeye_tokio::Error> {
//! // An echo server.
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
//! tokio::spawn(async move {
//!     while let Ok((tcp, _)) = listener.accept().await {
//!         tokio::spawn(async move {
//!             let mut ws = sockeye_tokio::accept(tcp, &Config::new()).await?;
//!             while let Some(msg) = ws.next().await {
//!                 ws.send(msg?).await?;
//!             }
//!             Ok::<_, sockeye_tokio::Error>(())
//!         });
//!     }
//! });
//!
//! // A client.
//! let mut ws = sockeye_tokio::connect("ws://127.0.0.1:9001/", &Default::default()).await?;
//! ws.send(Message::Text("hello".into())).await?;
//! assert_eq!(ws.next().await.transpose()?, Some(Message::Text("hello".into())));
//! ws.close(sockeye_tokio::CloseCode::NORMAL, "done").await?;
//! # Ok(())
//! # }
//! ```

mod accept;
#[cfg(feature = "axum")]
pub mod axum;
mod config;
mod stream;

use std::io;

use sockeye_client::{ClientHandshake, OsMaskKeys, Reply, Target};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub use accept::accept;
pub use config::Config;
pub use sockeye_client::{
    CloseCode, CloseError, Compression, DataKind, DeflateConfig, DialOptions, Error, Message,
};
pub use sockeye_codec::session::{Ended, Initiator, Prepared};
pub use stream::{Chunk, Negotiated, WebSocketStream};

/// Opens a WebSocket connection to `url` (`ws://host[:port]/path?query`; `wss://` is refused
/// with [`Error::TlsUnsupported`]): the TCP connection within the options' connect timeout,
/// then [`client`]'s handshake. The stream runs with [`Config::new`]'s session settings and
/// the options' read limit.
pub async fn connect(
    url: &str,
    options: &DialOptions,
) -> Result<WebSocketStream<TcpStream>, Error> {
    let target = Target::parse(url)?;
    let handshake = handshake_for(&target, options)?;
    let addr = (target.host.as_str(), target.port);
    let tcp =
        match tokio::time::timeout(handshake.connect_timeout(), TcpStream::connect(addr)).await {
            Ok(tcp) => tcp?,
            Err(_) => return Err(Error::Timeout("connect")),
        };
    tcp.set_nodelay(true)?;
    finish_client(tcp, &handshake, &Config::new()).await
}

/// The client handshake for `url` over `io`, a stream already connected to its host (a
/// proxy's tunnel, a Unix socket, an in-memory pipe); the URL gives the `Host` header and
/// the path. See [`connect`].
pub async fn client<S>(io: S, url: &str, options: &DialOptions) -> Result<WebSocketStream<S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let target = Target::parse(url)?;
    let handshake = handshake_for(&target, options)?;
    finish_client(io, &handshake, &Config::new()).await
}

fn handshake_for(target: &Target, options: &DialOptions) -> Result<ClientHandshake, Error> {
    let mut keys = OsMaskKeys::new();
    let mut random = [0u8; 16];
    for chunk in random.chunks_mut(4) {
        chunk.copy_from_slice(&keys.next_key());
    }
    ClientHandshake::new(target, options, options.deflate_config(), random)
}

async fn finish_client<S>(
    mut io: S,
    handshake: &ClientHandshake,
    config: &Config,
) -> Result<WebSocketStream<S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let exchange = async {
        io.write_all(handshake.request()).await?;
        io.flush().await?;
        let mut buf = Vec::with_capacity(1024);
        loop {
            if io.read_buf(&mut buf).await? == 0 {
                return Err(Error::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection during the handshake",
                )));
            }
            match handshake.response(&buf)? {
                None => continue,
                Some(Reply::Refused {
                    status,
                    len,
                    body: want,
                }) => {
                    // The body, as far as it comes before the connection ends (bounded).
                    while buf.len() - len < want {
                        let mut more = (&mut io).take((len + want - buf.len()) as u64);
                        match more.read_buf(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {}
                        }
                    }
                    let end = buf.len().min(len + want);
                    return Err(Error::Handshake {
                        status: Some(status),
                        error: sockeye_codec::handshake::HandshakeError::UnexpectedStatus(status),
                        body: buf[len..end].to_vec(),
                    });
                }
                Some(Reply::Accepted(agreed)) => return Ok((buf, agreed)),
            }
        }
    };
    let (buf, agreed) = match tokio::time::timeout(handshake.handshake_timeout(), exchange).await {
        Ok(r) => r?,
        Err(_) => return Err(Error::Timeout("handshake")),
    };
    let config = config.clone().max_message(handshake.read_limit());
    let negotiated = Negotiated {
        protocol: agreed.protocol,
        deflate: agreed.deflate,
        headers: agreed.headers,
    };
    Ok(WebSocketStream::from_parts(
        io,
        sockeye_codec::Role::Client,
        &config,
        negotiated,
        &buf[agreed.len..],
    ))
}

//! The server side of the upgrade over any stream.

use std::io;

use sockeye_codec::handshake::{self, EMPTY_HEADER, HandshakeError, Request};
use sockeye_codec::{Role, Status};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::{Config, Error, Negotiated, WebSocketStream};

/// Reads an upgrade request from `io`, checks it against `config`'s policy (origin,
/// subprotocols, permessage-deflate) and answers: the 101 and the open stream, or an HTTP
/// error response and [`Error::Refused`] (400 for a malformed request, 426 for a plain HTTP
/// request, 403 for an origin not allowed, 431 for a request over
/// [`Config::max_request`]). The whole exchange is bounded by
/// [`Config::handshake_timeout`]; a request that does not finish in time is
/// [`Error::Timeout`] and gets no answer.
///
/// Frames the client sent right behind its request are kept for the stream.
pub async fn accept<S>(io: S, config: &Config) -> Result<WebSocketStream<S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // Boxed: the handshake's state (its buffers, the timer) is on the heap while it runs and
    // gone after, instead of a part of the caller's future (and so of the task that holds
    // the connection) for as long as the connection lives (that future was 536 B).
    match Box::pin(tokio::time::timeout(
        config.handshake_timeout,
        upgrade(io, config),
    ))
    .await
    {
        Ok(r) => r,
        Err(_) => Err(Error::Timeout("handshake")),
    }
}

async fn upgrade<S>(mut io: S, config: &Config) -> Result<WebSocketStream<S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = Vec::with_capacity(1024);
    let (status, reason) = loop {
        let limit = (config.max_request + 1).saturating_sub(buf.len()) as u64;
        if (&mut io).take(limit).read_buf(&mut buf).await? == 0 {
            return Err(Error::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the client closed the connection during the handshake",
            )));
        }
        match judge(&buf, config) {
            Verdict::Partial => continue,
            Verdict::Refuse(status, reason) => break (status, reason),
            Verdict::Accept {
                response,
                negotiated,
                len,
            } => {
                io.write_all(&response).await?;
                io.flush().await?;
                return Ok(WebSocketStream::from_parts(
                    io,
                    Role::Server,
                    config,
                    negotiated,
                    &buf[len..],
                ));
            }
        }
    };
    let mut response = vec![0u8; 512 + reason.len()];
    if let Ok(n) = handshake::write_error_response(&mut response, status, &reason) {
        // The refusal is best effort: the error below says what happened either way.
        let _ = io.write_all(&response[..n]).await;
        let _ = io.shutdown().await;
    }
    Err(Error::Refused { status, reason })
}

/// What the bytes read so far make of the request.
enum Verdict {
    /// Not all of it has come.
    Partial,
    /// Accepted: the 101 to send, what it agreed to, and the request's length in bytes.
    Accept {
        response: Vec<u8>,
        negotiated: Negotiated,
        len: usize,
    },
    /// Refused with this status and reason.
    Refuse(u16, String),
}

/// Parses and decides without awaiting, so the parser's header array (2 KiB) is not part of
/// the connection's future: a task's future is as large as its largest state, and the task
/// holds that size for as long as the connection lives.
fn judge(buf: &[u8], config: &Config) -> Verdict {
    let mut headers = [EMPTY_HEADER; 64];
    let (status, reason) = match Request::parse(buf, &mut headers) {
        Ok(Status::Partial { .. }) if buf.len() > config.max_request => {
            (431, "request too large".to_owned())
        }
        Ok(Status::Partial { .. }) => return Verdict::Partial,
        Err(HandshakeError::TooManyHeaders) => (431, "too many headers".to_owned()),
        Err(e) => (e.status(), e.to_string()),
        Ok(Status::Complete((req, len))) => match decide(&req, config) {
            Ok((response, negotiated)) => {
                return Verdict::Accept {
                    response,
                    negotiated,
                    len,
                };
            }
            Err(refused) => refused,
        },
    };
    Verdict::Refuse(status, reason)
}

/// The policy's verdict on `req`: the 101 response and what it agreed to, or the refusal.
fn decide(req: &Request<'_, '_>, config: &Config) -> Result<(Vec<u8>, Negotiated), (u16, String)> {
    config.with_policy(|policy| {
        let upgrade = policy
            .decide(req)
            .map_err(|r| (r.status(), r.to_string()))?;
        let mut response = vec![0u8; 512];
        let n = loop {
            match upgrade.write_response(req, policy, &mut response) {
                Ok(n) => break n,
                Err(sockeye_codec::EncodeError::InsufficientSize { required }) => {
                    response.resize(required, 0);
                }
                Err(e) => return Err((500, e.to_string())),
            }
        };
        response.truncate(n);
        let negotiated = Negotiated {
            protocol: upgrade.protocol_name(policy).map(str::to_owned),
            deflate: upgrade.deflate.zip(config.deflate),
            headers: Vec::new(),
        };
        Ok((response, negotiated))
    })
}

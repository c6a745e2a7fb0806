//! Outbound (client-role) connections: the socket and request, and the server's response.

use super::*;

/// A socket for an outbound connection, and its upgrade request with the key it carries.
pub(super) fn outbound_socket(
    io: &mut Io,
    c: &crate::Connect,
) -> io::Result<(OwnedFd, Vec<u8>, [u8; 24])> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(c.addr), Type::STREAM.cloexec(), None)?;
    socket.set_tcp_nodelay(true)?;
    if let Some(ip) = c.source {
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    let mut random = [0u8; 16];
    for chunk in random.chunks_mut(4) {
        chunk.copy_from_slice(&io.clients.masks.next_key());
    }
    let key = handshake::client_key(random);
    let offer = io.deflate.config.map(|d| deflate::client_offer(&d));
    let parts = c.options.request_parts(&c.host, &c.path, offer.as_deref());
    let request = parts
        .encode(&key)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    Ok((OwnedFd::from(socket), request, key))
}

/// (Outbound) tries to complete the upgrade from the response bytes received so far.
pub(super) fn client_handshake<H: Handler>(
    io: &mut Io,
    handler: &mut H,
    id: ConnId,
    conn: &mut Conn,
) {
    let mut input = conn.input.take().expect("handshake bytes");
    let Some(client) = io
        .clients
        .by_slot
        .get_mut(id.slot as usize)
        .and_then(|c| c.as_deref_mut())
    else {
        io.teardown(conn); // cannot happen: outbound connections have their client state
        return;
    };
    let mut headers = [EMPTY_HEADER; 64];
    let verdict = match Response::parse(&input.pending, &mut headers) {
        Ok(Status::Partial { .. }) if input.pending.len() > io.config.max_request => {
            Err("the response headers are too large".to_owned())
        }
        Ok(Status::Partial { .. }) => {
            conn.input = Some(input);
            return;
        }
        Err(e) => Err(format!("invalid handshake response: {e}")),
        Ok(Status::Complete((resp, _))) if resp.status != 101 => {
            Err(format!("handshake refused: HTTP {}", resp.status))
        }
        Ok(Status::Complete((resp, len))) => {
            let offered: Vec<&str> = client.offered.iter().map(String::as_str).collect();
            let policy = io.deflate.config;
            let agreed = match policy {
                Some(c) => deflate::accept_response(resp.extensions(), &c),
                None => Ok(None),
            };
            match (
                resp.validate(&client.key, &offered, policy.is_some()),
                agreed,
            ) {
                (Ok(p), Ok(a)) => Ok((p.map(str::to_owned), a, len)),
                (Err(e), _) | (_, Err(e)) => Err(format!("invalid handshake response: {e}")),
            }
        }
    };
    match verdict {
        Err(why) => {
            tracing::debug!(%why, "outbound handshake failed");
            client.error = Some(why);
            io.teardown(conn);
        }
        Ok((protocol, agreed, len)) => {
            client.protocol = protocol;
            client.opened = true;
            client.offered = Vec::new();
            if let (Some(a), Some(config)) = (agreed, io.deflate.config) {
                enable_deflate(conn, ConnDeflate::new(Role::Client, &a, &config));
            }
            open(io, handler, id, conn, &mut input.pending, len);
        }
    }
}

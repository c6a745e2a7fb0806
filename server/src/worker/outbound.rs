//! Outbound (client-role) connections: the socket and request, and the server's response.

use super::*;

/// A socket for an outbound connection, and its handshake (the request, with a fresh key).
pub(super) fn outbound_socket(
    io: &mut Io,
    c: &crate::Connect,
) -> io::Result<(OwnedFd, ClientHandshake)> {
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
    let handshake = ClientHandshake::new(&c.target, &c.options, io.deflate.config, random)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    Ok((OwnedFd::from(socket), handshake))
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
    let Some(handshake) = client.handshake.as_ref() else {
        io.teardown(conn); // cannot happen: the handshake is kept until it completes
        return;
    };
    let verdict = match handshake.response(&input.pending) {
        Ok(None) if input.pending.len() > io.config.max_request => {
            Err("the response headers are too large".to_owned())
        }
        Ok(None) => {
            conn.input = Some(input);
            return;
        }
        Ok(Some(Reply::Refused { status, .. })) => Err(format!("handshake refused: HTTP {status}")),
        Ok(Some(Reply::Accepted(agreed))) => Ok(agreed),
        Err(e) => Err(e.to_string()),
    };
    match verdict {
        Err(why) => {
            tracing::debug!(%why, "outbound handshake failed");
            client.error = Some(why);
            io.teardown(conn);
        }
        Ok(agreed) => {
            client.protocol = agreed.protocol;
            client.opened = true;
            client.handshake = None;
            if let Some((a, config)) = agreed.deflate {
                enable_deflate(conn, ConnDeflate::new(Role::Client, &a, &config));
            }
            open(io, handler, id, conn, &mut input.pending, agreed.len);
        }
    }
}

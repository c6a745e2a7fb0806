//! The built-in modes, written on the public handler API (they double as examples).

use crate::handler::{Handler, Message, OwnedMessage, PreparedMessage, WebSocket};

/// Echoes every message back to its sender. A peer that does not read its echoes stops being
/// read from until its queue drains (backpressure), so memory stays bounded.
#[derive(Debug, Default, Clone, Copy)]
pub struct Echo;

impl Handler for Echo {
    // The status needs no handling here: over the soft bound reading pauses by itself (so a
    // peer that does not read its echoes sends nothing more to echo), and over the hard bound
    // the slow policy has already been applied.
    #[inline]
    fn on_message(&mut self, ws: &mut WebSocket<'_>, msg: Message<'_>) {
        let _ = match msg {
            Message::Text(t) => ws.send_text(t),
            Message::Binary(b) => ws.send_binary(b),
        };
    }

    /// A message assembled from several receives goes back from its own buffer, uncopied.
    #[inline]
    fn on_message_owned(&mut self, ws: &mut WebSocket<'_>, msg: OwnedMessage) {
        let _ = ws.send_owned(msg);
    }
}

/// Each URL path is a room (the query string left out): every message is framed once and
/// delivered to every member of its sender's room on every worker (the sender included), in
/// order per publisher. A room name over the limit is refused with 1008, a room beyond the
/// room limit with 1013.
#[derive(Debug, Default, Clone, Copy)]
pub struct Broadcast;

impl Handler for Broadcast {
    fn on_open(&mut self, ws: &mut WebSocket<'_>) {
        join_path(ws);
    }

    fn on_message(&mut self, ws: &mut WebSocket<'_>, msg: Message<'_>) {
        let prepared = match msg {
            Message::Text(t) => PreparedMessage::text(t),
            Message::Binary(b) => PreparedMessage::binary(b),
        };
        // Every connection joined its room in `on_open` (or was closed).
        let _ = ws.publish(&prepared);
    }
}

/// Joins the room named by the request path (without its query), or closes the connection
/// with the refusal's code. Outbound connections join the default room.
pub fn join_path(ws: &mut WebSocket<'_>) {
    let Some(path) = ws.request_path() else {
        ws.subscribe();
        return;
    };
    let room = path.split('?').next().unwrap_or_default().to_owned();
    if let Err(e) = ws.join(&room) {
        // A join refusal's code (1008 or 1013) is always sendable.
        let _ = ws.close(e.close_code(), &e.to_string());
    }
}

//! The built-in modes, written on the public handler API (they double as examples).

use crate::handler::{Handler, Message, OwnedMessage, PreparedMessage, WebSocket};

/// Echoes every message back to its sender. A peer that does not read its echoes stops being
/// read from until its queue drains (backpressure), so memory stays bounded.
#[derive(Debug, Default, Clone, Copy)]
pub struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, ws: &mut WebSocket<'_>, msg: Message<'_>) {
        match msg {
            Message::Text(t) => ws.send_text(t),
            Message::Binary(b) => ws.send_binary(b),
        };
    }

    /// A message assembled from several receives goes back from its own buffer, uncopied.
    fn on_message_owned(&mut self, ws: &mut WebSocket<'_>, msg: OwnedMessage) {
        ws.send_owned(msg);
    }
}

/// Every connection subscribes; every message is framed once and delivered to every
/// subscriber on every worker (the sender included), in order per publisher.
#[derive(Debug, Default, Clone, Copy)]
pub struct Broadcast;

impl Handler for Broadcast {
    fn on_open(&mut self, ws: &mut WebSocket<'_>) {
        ws.subscribe();
    }

    fn on_message(&mut self, ws: &mut WebSocket<'_>, msg: Message<'_>) {
        let prepared = match msg {
            Message::Text(t) => PreparedMessage::text(t),
            Message::Binary(b) => PreparedMessage::binary(b),
        };
        ws.publish(&prepared);
    }
}

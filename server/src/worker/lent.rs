//! What the worker lends a handler callback: one connection of this worker and the
//! parts of the worker it may use ([`Io`]), as the API's engine-neutral `Connection`.

use super::*;
use crate::handler::Connection;

/// One connection of this worker, lent to a handler callback.
pub(super) struct Lent<'a> {
    pub(super) id: ConnId,
    pub(super) conn: &'a mut Conn,
    pub(super) io: &'a mut Io,
}

impl Connection for Lent<'_> {
    fn id(&self) -> ConnId {
        self.id
    }

    fn token(&self) -> Option<u64> {
        if !self.conn.outbound() {
            return None;
        }
        self.io.client(self.id).map(|c| c.token)
    }

    #[inline]
    fn send(&mut self, msg: Message<'_>) -> SendStatus {
        self.io.send_data(self.id, self.conn, msg)
    }

    fn send_owned(&mut self, msg: OwnedMessage) -> SendStatus {
        self.io.send_owned(self.id, self.conn, msg)
    }

    fn send_prepared(&mut self, msg: &Prepared) -> SendStatus {
        self.io.send_prepared(self.id, self.conn, msg)
    }

    fn ping(&mut self, payload: &[u8]) -> SendStatus {
        self.io.send_control(self.id, self.conn, true, payload)
    }

    fn close(&mut self, close: Close<'_>) {
        self.io.start_close(self.id, self.conn, close);
    }

    fn close_now(&mut self) {
        self.io.teardown(self.conn);
    }

    fn subprotocol(&self) -> Option<&str> {
        self.io.subprotocol(self.id, self.conn)
    }

    fn compressed(&self) -> bool {
        self.conn.compressed()
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.conn.peer_addr()
    }

    fn request(&self) -> Option<&[u8]> {
        self.io.request()
    }

    fn set_read_limit(&mut self, bytes: u64) {
        self.conn.set_read_limit(bytes);
    }

    fn buffered_amount(&self) -> usize {
        self.conn.buffered_amount()
    }

    fn publish(&mut self, msg: &Prepared) -> bool {
        self.io.publish(self.conn, msg.clone())
    }

    fn publish_to(&mut self, room: &str, msg: &Prepared) -> bool {
        self.io.publish_to(room, msg.clone())
    }

    fn join(&mut self, room: &str) -> Result<(), JoinError> {
        self.io.join(self.id, self.conn, room)
    }

    fn leave(&mut self) {
        self.io.leave(self.conn);
    }

    fn subscribed(&self) -> bool {
        self.conn.subscribed()
    }
}

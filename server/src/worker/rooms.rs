//! A worker's members of each room: join, leave, publish.

use super::*;

impl Io {
    /// Publishes to the connection's room; false (and nothing sent) if it is in none.
    pub(crate) fn publish(&mut self, conn: &Conn, frame: Prepared) -> bool {
        if conn.sub == 0 {
            return false;
        }
        let room = &self.rooms[conn.room as usize];
        let key = RoomKey {
            id: conn.room,
            generation: room.generation,
        };
        let name = room.name.clone();
        self.turn.to_publish.push((key, frame, name));
        true
    }

    /// Publishes to the room named `name`; false if it has no members in this process (when
    /// clustered, the other nodes get it all the same).
    pub(crate) fn publish_to(&mut self, name: &str, frame: Prepared) -> bool {
        let Some(key) = self.hub.rooms.find(name) else {
            self.hub
                .forward_from_worker(&Arc::from(name), &frame, self.stats());
            return false;
        };
        self.turn.to_publish.push((key, frame, Arc::from(name)));
        true
    }

    /// Moves the connection into room `name` (out of the one it was in).
    pub(crate) fn join(
        &mut self,
        id: ConnId,
        conn: &mut Conn,
        name: &str,
    ) -> Result<(), JoinError> {
        let (key, name) = self.hub.rooms.acquire(name)?;
        self.leave(conn);
        let i = key.id as usize;
        if self.rooms.len() <= i {
            self.rooms.resize_with(i + 1, LocalRoom::default);
        }
        let room = &mut self.rooms[i];
        if room.generation != key.generation {
            // The slot's previous room emptied on every worker, so none of it is left here.
            debug_assert_eq!(room.live(), 0);
            *room = LocalRoom {
                generation: key.generation,
                ..LocalRoom::default()
            };
        }
        room.name = name;
        let pos = match room.free.pop() {
            Some(p) => {
                room.members[p as usize] = id;
                p
            }
            None => {
                room.members.push(id);
                room.members.len() as u32 - 1
            }
        };
        conn.room = key.id;
        conn.sub = pos + 1;
        Ok(())
    }

    /// Takes the connection out of its room, if it is in one.
    pub(crate) fn leave(&mut self, conn: &mut Conn) {
        if conn.sub == 0 {
            return;
        }
        let room = &mut self.rooms[conn.room as usize];
        let pos = conn.sub - 1;
        room.members[pos as usize] = VACANT;
        room.free.push(pos);
        if room.live() == 0 {
            // Nothing kept for an empty room but its generation and name.
            room.members = Vec::new();
            room.free = Vec::new();
        }
        let key = RoomKey {
            id: conn.room,
            generation: room.generation,
        };
        conn.sub = 0;
        self.hub.rooms.release(key);
    }
}

/// A worker's members of one room. Leaving leaves a vacant place that the next member to join
/// takes, so no other member moves (and none needs to be found to be told); an empty room
/// holds no memory.
#[derive(Default)]
pub(super) struct LocalRoom {
    pub(super) generation: u32,
    /// The room's name (for the cluster bridge's subject).
    pub(super) name: Arc<str>,
    pub(super) members: Vec<ConnId>,
    /// Vacant places in `members`.
    pub(super) free: Vec<u32>,
}

impl LocalRoom {
    /// Members on this worker.
    pub(super) fn live(&self) -> usize {
        self.members.len() - self.free.len()
    }
}

/// A vacant place in a room's member list (matches no connection).
pub(super) const VACANT: ConnId = ConnId {
    worker: u16::MAX,
    epoch: u32::MAX,
    slot: u32::MAX,
};

//! A hashed timer wheel per worker, advanced by the worker's single multishot timeout.
//!
//! Entries are never removed when a timer becomes moot (a handshake that completed, a connection
//! that spoke again): each entry names its connection and generation, and the worker checks,
//! when the entry fires, whether it still applies. Scheduling is one push; a tick visits one
//! slot. Deadlines further away than one revolution stay in their slot until due.

/// What a timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimerKind {
    /// The upgrade request must be complete by now.
    Handshake,
    /// A deadline of the connection's session clock may be due (keepalive ping, the idle
    /// close, the close handshake's end); the clock says which, or when to come back.
    Session,
    /// A refused request's response had its time to go out.
    Close,
}

/// One timer: 12 bytes, as every open connection holds one or two (the kind rides in the top
/// byte of the epoch, which uses 24 bits: `EPOCH_MASK`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    pub(crate) slot: u32,
    epoch_and_kind: u32,
    due: u32,
}

impl Entry {
    fn new(slot: u32, epoch: u32, kind: TimerKind, due: u32) -> Entry {
        let kind = match kind {
            TimerKind::Handshake => 0,
            TimerKind::Session => 1,
            TimerKind::Close => 2,
        };
        Entry {
            slot,
            epoch_and_kind: (epoch & crate::id::EPOCH_MASK) | kind << 24,
            due,
        }
    }

    /// The epoch of the connection it was set for.
    pub(crate) fn epoch(&self) -> u32 {
        self.epoch_and_kind & crate::id::EPOCH_MASK
    }

    pub(crate) fn kind(&self) -> TimerKind {
        match self.epoch_and_kind >> 24 {
            0 => TimerKind::Handshake,
            1 => TimerKind::Session,
            _ => TimerKind::Close,
        }
    }
}

/// The wheel: `SLOTS` buckets of entries, one bucket per tick.
pub(crate) struct Wheel {
    slots: Vec<Vec<Entry>>,
    now: u32,
}

const SLOTS: usize = 512;

impl Wheel {
    pub(crate) fn new() -> Wheel {
        Wheel {
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            now: 0,
        }
    }

    /// The current tick.
    pub(crate) fn now(&self) -> u32 {
        self.now
    }

    /// Schedules `kind` for connection (`slot`, `epoch`) `ticks` from now (at least one tick).
    pub(crate) fn schedule(&mut self, slot: u32, epoch: u32, kind: TimerKind, ticks: u32) {
        let due = self.now.wrapping_add(ticks.max(1));
        self.slots[due as usize % SLOTS].push(Entry::new(slot, epoch, kind, due));
    }

    /// Advances one tick and moves the entries now due into `fired`.
    pub(crate) fn advance(&mut self, fired: &mut Vec<Entry>) {
        self.now = self.now.wrapping_add(1);
        let now = self.now;
        let bucket = &mut self.slots[now as usize % SLOTS];
        let mut i = 0;
        while i < bucket.len() {
            // Due when `now` has reached `due` (wrapping-safe for deadlines < 2^31 ticks).
            if now.wrapping_sub(bucket[i].due) < u32::MAX / 2 {
                fired.push(bucket.swap_remove(i));
            } else {
                i += 1;
            }
        }
        if bucket.is_empty() && bucket.capacity() > 64 {
            *bucket = Vec::new(); // give back memory after a burst
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_at_the_due_tick_including_beyond_one_revolution() {
        let mut w = Wheel::new();
        w.schedule(1, 0, TimerKind::Session, 3);
        w.schedule(2, 0, TimerKind::Close, SLOTS as u32 + 3);
        w.schedule(3, 0, TimerKind::Handshake, 0); // at least one tick
        let mut fired = Vec::new();
        let mut when = Vec::new();
        for _ in 0..SLOTS + 10 {
            fired.clear();
            w.advance(&mut fired);
            for e in &fired {
                when.push((e.slot, w.now()));
            }
        }
        assert_eq!(when, vec![(3, 1), (1, 3), (2, SLOTS as u32 + 3)]);
    }

    #[test]
    fn an_entry_keeps_its_epoch_and_kind_in_12_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 12);
        let max = crate::id::EPOCH_MASK;
        for kind in [TimerKind::Handshake, TimerKind::Session, TimerKind::Close] {
            for epoch in [0, 1, max / 2, max] {
                let e = Entry::new(7, epoch, kind, 9);
                assert_eq!((e.slot, e.epoch(), e.kind()), (7, epoch, kind));
            }
        }
    }
}

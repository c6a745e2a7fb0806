//! Connection ids and the connection table: a slab with generations.

use super::*;

/// Epochs are 24 bits: with the ring's 8-bit operation tag and the 32-bit slot they fill a
/// completion's 64-bit user data. A slot would have to be reused 16.7 million times while a stale timer entry
/// or task for it is pending before an old id could match a new connection.
pub(super) const EPOCH_MASK: u32 = 0x00ff_ffff;

/// Identifies a connection across the server: worker, slot and generation (a slot is reused by
/// later connections with a higher generation, so a stale id never reaches the wrong one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub(super) worker: u16,
    pub(super) epoch: u32,
    pub(super) slot: u32,
}

impl ConnId {
    /// The worker that owns the connection.
    pub fn worker(&self) -> usize {
        usize::from(self.worker)
    }

    /// The connection's part of a request's user data (the ring adds the operation).
    pub(super) fn data(self) -> u64 {
        u64::from(self.epoch & EPOCH_MASK) << 32 | u64::from(self.slot)
    }
}

/// The connection table: a slab with generations.
pub(super) struct Slab {
    pub(super) conns: Vec<Option<Conn>>,
    pub(super) free: Vec<u32>,
    pub(super) epochs: Vec<u32>,
    pub(super) open: usize,
}

impl Slab {
    pub(super) fn get(&mut self, slot: u32, epoch: u32) -> Option<&mut Conn> {
        self.conns
            .get_mut(slot as usize)?
            .as_mut()
            .filter(|c| c.epoch == epoch)
    }

    pub(super) fn insert(&mut self, make: impl FnOnce(u32) -> Conn) -> (u32, u32) {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.epochs.push(0);
            (self.conns.len() - 1) as u32
        });
        let epoch = self.epochs[slot as usize].wrapping_add(1) & EPOCH_MASK;
        self.epochs[slot as usize] = epoch;
        self.conns[slot as usize] = Some(make(epoch));
        self.open += 1;
        (slot, epoch)
    }

    pub(super) fn remove(&mut self, slot: u32) -> Option<Conn> {
        let c = self.conns.get_mut(slot as usize)?.take()?;
        self.free.push(slot);
        self.open -= 1;
        Some(c)
    }
}

//! The connection table: a slab with generations.

use super::*;

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

//! Connection ids: a leaf module, so that the worker, the hub and the compression state can all
//! name a connection without importing one another.

/// Epochs are 24 bits: with the ring's 8-bit operation tag and the 32-bit slot they fill a
/// completion's 64-bit user data. A slot would have to be reused 16.7 million times while a
/// stale timer entry or task for it is pending before an old id could match a new connection.
pub(crate) const EPOCH_MASK: u32 = 0x00ff_ffff;

/// Identifies a connection across the server: worker, slot and generation (a slot is reused by
/// later connections with a higher generation, so a stale id never reaches the wrong one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub(crate) worker: u16,
    pub(crate) epoch: u32,
    pub(crate) slot: u32,
}

impl ConnId {
    /// The worker that owns the connection.
    pub fn worker(&self) -> usize {
        usize::from(self.worker)
    }

    /// The connection's part of a request's user data (the ring adds the operation).
    #[inline]
    pub(crate) fn data(self) -> u64 {
        u64::from(self.epoch & EPOCH_MASK) << 32 | u64::from(self.slot)
    }
}

//! Masking keys for frames this end sends as a client (RFC 6455 §5.3: "derived from a strong
//! source of entropy", a fresh key per frame).

/// Keys from the operating system's random source (`getrandom`), fetched 64 at a time so a
/// small frame does not pay a system call for its key.
pub(crate) struct MaskKeys {
    pool: [u8; 256],
    used: usize,
}

impl MaskKeys {
    pub(crate) fn new() -> MaskKeys {
        MaskKeys {
            pool: [0; 256],
            used: 256,
        }
    }

    /// The next key; every key is used once.
    pub(crate) fn next_key(&mut self) -> [u8; 4] {
        if self.used == self.pool.len() {
            getrandom::fill(&mut self.pool).expect("the OS random source is available");
            self.used = 0;
        }
        let key = [
            self.pool[self.used],
            self.pool[self.used + 1],
            self.pool[self.used + 2],
            self.pool[self.used + 3],
        ];
        self.used += 4;
        key
    }
}

impl sockeye_codec::session::MaskKeys for MaskKeys {
    fn next_key(&mut self) -> [u8; 4] {
        MaskKeys::next_key(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fresh() {
        let mut keys = MaskKeys::new();
        let mut seen: Vec<[u8; 4]> = (0..1000).map(|_| keys.next_key()).collect();
        seen.sort_unstable();
        seen.dedup();
        // 1000 draws from 2^32 collide with probability ~1e-4; a stuck pool repeats at once.
        assert!(seen.len() >= 999, "{} distinct keys of 1000", seen.len());
    }
}

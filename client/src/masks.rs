//! Masking keys for frames this end sends as a client (RFC 6455 §5.3: "derived from a strong
//! source of entropy", a fresh key per frame).

/// Masking keys from the operating system's random source (`getrandom`), fetched 64 at a
/// time so a small frame does not pay a system call for its key: what a driver of the
/// codec's client-role session hands it as its
/// [`MaskKeys`](sockeye_codec::session::MaskKeys).
///
/// ```
/// use sockeye_client::OsMaskKeys;
/// let mut keys = OsMaskKeys::new();
/// assert_ne!(keys.next_key(), keys.next_key()); // equal with probability 2^-32
/// ```
///
/// # Panics
///
/// When the operating system's random source fails (`getrandom` reports it only where
/// none exists); sending a frame with a predictable key is not an option.
#[derive(Debug, Clone)]
pub struct OsMaskKeys {
    pool: [u8; 256],
    used: usize,
}

impl Default for OsMaskKeys {
    fn default() -> Self {
        OsMaskKeys::new()
    }
}

impl OsMaskKeys {
    /// A pool that fills at the first key.
    #[must_use]
    pub fn new() -> OsMaskKeys {
        OsMaskKeys {
            pool: [0; 256],
            used: 256,
        }
    }

    /// The next key; every key is used once.
    pub fn next_key(&mut self) -> [u8; 4] {
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

impl sockeye_codec::session::MaskKeys for OsMaskKeys {
    fn next_key(&mut self) -> [u8; 4] {
        OsMaskKeys::next_key(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fresh() {
        let mut keys = OsMaskKeys::new();
        let mut seen: Vec<[u8; 4]> = (0..1000).map(|_| keys.next_key()).collect();
        seen.sort_unstable();
        seen.dedup();
        // 1000 draws from 2^32 collide with probability ~1e-4; a stuck pool repeats at once.
        assert!(seen.len() >= 999, "{} distinct keys of 1000", seen.len());
    }
}

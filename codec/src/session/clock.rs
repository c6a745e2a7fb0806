//! A connection's deadlines (idle ping, pong wait, close handshake) with the time passed in:
//! the session has no clock of its own.

use core::time::Duration;

/// The timeouts of a connection (one value serves every connection of a driver).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// After this long without receiving anything, a ping goes out; after as long again
    /// without an answer (or any other byte) the connection is closed with 1001. `None`: no
    /// keepalive.
    pub idle: Option<Duration>,
    /// How long our close frame waits for the peer's before the transport is closed anyway.
    pub close: Duration,
}

impl Default for Timeouts {
    /// No keepalive; 5 s for the close handshake (coder/websocket's figure).
    fn default() -> Self {
        Timeouts {
            idle: None,
            close: Duration::from_secs(5),
        }
    }
}

/// What a deadline that passed asks of the driver ([`Clock::on_timeout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Nothing arrived for the idle timeout: send a ping ([`Sender::ping`](super::Sender::ping)).
    Ping,
    /// The ping went unanswered (nothing arrived for another idle timeout): close with 1001
    /// ([`Sender::close`](super::Sender::close)); the close deadline has started.
    IdleClose,
    /// Our close frame got no answer in time: close the transport now.
    CloseTimeout,
}

/// Where the connection is, for its deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Open; the mark is when bytes last arrived.
    Open = 0,
    /// Open, a keepalive ping out; the mark is when bytes last arrived.
    Pinged = 1,
    /// Our close frame is out; the mark is when it was queued.
    Closing = 2,
    /// Nothing more is due.
    Done = 3,
}

/// Times are kept as milliseconds modulo 2^30 (with the phase in the top two bits), compared
/// by difference: a driver's clock may start anywhere and run for years.
const MS_MASK: u32 = (1 << 30) - 1;

/// The longest deadline kept (about 6 days); longer timeouts are cut to it.
const MAX_MS: u32 = (1 << 29) - 1;

fn ms(t: Duration) -> u32 {
    t.as_millis() as u32 & MS_MASK
}

fn span(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).map_or(MAX_MS, |m| m.min(MAX_MS))
}

/// A connection's deadlines in four bytes: when bytes last arrived (or our close frame went
/// out) and what is due next. The driver passes the time (any monotonic clock, as a
/// `Duration` since an epoch of its choice) to every call, asks [`Clock::poll_timeout`] when
/// to come back and calls [`Clock::on_timeout`] then.
///
/// ```
/// use core::time::Duration;
/// use sockeye_codec::session::{Clock, Due, Timeouts};
///
/// let t = Timeouts { idle: Some(Duration::from_secs(30)), close: Duration::from_secs(5) };
/// let s = Duration::from_secs;
/// let mut clock = Clock::new(s(100));
/// assert_eq!(clock.poll_timeout(s(110), &t), Some(s(20)));
/// assert_eq!(clock.on_timeout(s(130), &t), Some(Due::Ping));
/// assert_eq!(clock.on_timeout(s(150), &t), None); // the pong has until 160
/// assert_eq!(clock.on_timeout(s(160), &t), Some(Due::IdleClose));
/// assert_eq!(clock.on_timeout(s(165), &t), Some(Due::CloseTimeout));
/// assert_eq!(clock.poll_timeout(s(165), &t), None);
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// The phase in the top two bits, the mark (milliseconds modulo 2^30) below.
    bits: u32,
}

impl core::fmt::Debug for Clock {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Clock")
            .field("phase", &self.phase())
            .field("mark_ms", &self.mark())
            .finish()
    }
}

impl Clock {
    /// A clock for a connection that opened at `now`.
    #[must_use]
    pub fn new(now: Duration) -> Self {
        Clock::at(Phase::Open, ms(now))
    }

    const fn at(phase: Phase, mark: u32) -> Self {
        Clock {
            bits: (phase as u32) << 30 | mark,
        }
    }

    const fn phase(&self) -> Phase {
        match self.bits >> 30 {
            0 => Phase::Open,
            1 => Phase::Pinged,
            2 => Phase::Closing,
            _ => Phase::Done,
        }
    }

    const fn mark(&self) -> u32 {
        self.bits & MS_MASK
    }

    /// Bytes arrived at `now`: the peer is alive (any byte answers a keepalive ping).
    #[inline]
    pub fn received(&mut self, now: Duration) {
        if matches!(self.phase(), Phase::Open | Phase::Pinged) {
            *self = Clock::at(Phase::Open, ms(now));
        }
    }

    /// Our close frame was queued at `now`: the close deadline starts (once).
    pub fn closing(&mut self, now: Duration) {
        if matches!(self.phase(), Phase::Open | Phase::Pinged) {
            *self = Clock::at(Phase::Closing, ms(now));
        }
    }

    /// The connection is over: nothing more is due.
    pub fn finish(&mut self) {
        *self = Clock::at(Phase::Done, self.mark());
    }

    /// Whether a keepalive ping is waiting for an answer.
    #[must_use]
    pub fn pinged(&self) -> bool {
        self.phase() == Phase::Pinged
    }

    /// Milliseconds after the mark at which the next deadline falls, if any.
    fn due_after(&self, t: &Timeouts) -> Option<u32> {
        match self.phase() {
            Phase::Open => t.idle.map(span),
            Phase::Pinged => t.idle.map(|d| span(d).saturating_mul(2).min(MAX_MS)),
            Phase::Closing => Some(span(t.close)),
            Phase::Done => None,
        }
    }

    /// How long from `now` until the next deadline (zero if it passed); `None` when nothing
    /// is due.
    #[must_use]
    pub fn poll_timeout(&self, now: Duration, t: &Timeouts) -> Option<Duration> {
        let after = self.due_after(t)?;
        let elapsed = ms(now).wrapping_sub(self.mark()) & MS_MASK;
        Some(Duration::from_millis(u64::from(
            after.saturating_sub(elapsed.min(MAX_MS)),
        )))
    }

    /// What is due at `now`, if a deadline passed; the clock moves on to the next one.
    pub fn on_timeout(&mut self, now: Duration, t: &Timeouts) -> Option<Due> {
        if !self.poll_timeout(now, t)?.is_zero() {
            return None;
        }
        match self.phase() {
            Phase::Open => {
                *self = Clock::at(Phase::Pinged, self.mark());
                Some(Due::Ping)
            }
            Phase::Pinged => {
                *self = Clock::at(Phase::Closing, ms(now));
                Some(Due::IdleClose)
            }
            Phase::Closing => {
                self.finish();
                Some(Due::CloseTimeout)
            }
            Phase::Done => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_hold_across_the_wrap_and_long_timeouts_are_cut() {
        let t = Timeouts {
            idle: Some(Duration::from_secs(10)),
            close: Duration::from_secs(1),
        };
        // Starting just before the millisecond counter wraps.
        let start = Duration::from_millis(u64::from(MS_MASK) - 3000);
        let mut c = Clock::new(start);
        assert_eq!(c.on_timeout(start + Duration::from_millis(9999), &t), None);
        assert_eq!(
            c.on_timeout(start + Duration::from_secs(10), &t),
            Some(Due::Ping)
        );
        c.received(start + Duration::from_secs(11));
        assert!(!c.pinged());
        assert_eq!(
            c.poll_timeout(start + Duration::from_secs(12), &t),
            Some(Duration::from_secs(9))
        );
        let forever = Timeouts {
            idle: Some(Duration::MAX),
            close: Duration::MAX,
        };
        let c = Clock::new(Duration::ZERO);
        assert_eq!(
            c.poll_timeout(Duration::ZERO, &forever),
            Some(Duration::from_millis(u64::from(MAX_MS)))
        );
    }
}

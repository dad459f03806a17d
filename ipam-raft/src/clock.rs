//! The leader's stamp clock: the only place this crate reads wall-clock time for the log.
//! Every replica applies an entry with the stamp the leader gave it, so the core stays pure.
//! The time source is pluggable ([`StampClock`]): the wall clock, or a clock a test moves by
//! hand ([`ManualClock`]) so that lease expiry and cooldown run in simulated minutes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ipam_core::Stamp;

/// Milliseconds since the Unix epoch, as the leader stamps entries with them.
#[derive(Clone)]
pub struct StampClock(Arc<dyn Fn() -> u64 + Send + Sync>);

impl StampClock {
    /// The wall clock.
    pub fn system() -> StampClock {
        StampClock(Arc::new(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .unwrap_or(0)
        }))
    }

    /// A clock read through `f`.
    pub fn from_fn(f: impl Fn() -> u64 + Send + Sync + 'static) -> StampClock {
        StampClock(Arc::new(f))
    }

    /// The current time in milliseconds.
    pub fn now_ms(&self) -> u64 {
        (self.0)()
    }
}

impl Default for StampClock {
    fn default() -> StampClock {
        StampClock::system()
    }
}

impl std::fmt::Debug for StampClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StampClock({} ms)", self.now_ms())
    }
}

/// A clock that only moves when told: share one between the nodes of a test cluster.
#[derive(Clone, Debug, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock reading `ms`.
    pub fn new(ms: u64) -> ManualClock {
        ManualClock(Arc::new(AtomicU64::new(ms)))
    }

    /// Moves the clock `ms` forward.
    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    /// The time it reads.
    pub fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    /// A [`StampClock`] reading this clock.
    pub fn stamp_clock(&self) -> StampClock {
        let c = self.clone();
        StampClock::from_fn(move || c.now_ms())
    }
}

/// Stamps from a [`StampClock`] that never go backwards on this node (a clock stepped back
/// keeps the last stamp until it catches up).
#[derive(Debug, Default)]
pub(crate) struct Stamper {
    source: StampClock,
    last: AtomicU64,
}

impl Stamper {
    /// Stamps read from `source`.
    pub(crate) fn new(source: StampClock) -> Stamper {
        Stamper {
            source,
            last: AtomicU64::new(0),
        }
    }

    /// The next stamp: now, or the last stamp if the clock went back.
    pub(crate) fn next(&self) -> Stamp {
        self.next_at(self.source.now_ms())
    }

    fn next_at(&self, now_ms: u64) -> Stamp {
        let prev = self.last.fetch_max(now_ms, Ordering::Relaxed);
        Stamp(prev.max(now_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_never_go_backwards() {
        let clock = Stamper::default();
        assert_eq!(clock.next_at(100), Stamp(100));
        assert_eq!(clock.next_at(90), Stamp(100));
        assert_eq!(clock.next_at(101), Stamp(101));
    }

    #[test]
    fn stamps_follow_a_manual_clock() {
        let manual = ManualClock::new(1_000);
        let clock = Stamper::new(manual.stamp_clock());
        assert_eq!(clock.next(), Stamp(1_000));
        manual.advance(500);
        assert_eq!(clock.next(), Stamp(1_500));
    }
}

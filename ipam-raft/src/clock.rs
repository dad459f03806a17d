//! Where the leader's stamps come from: the wall clock, or a clock a test moves by hand so that
//! lease expiry and cooldown run in simulated minutes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

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

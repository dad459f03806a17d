//! The leader's stamp clock: the only place this crate reads wall-clock time for the log.
//! Every replica applies an entry with the stamp the leader gave it, so the core stays pure.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use ipam_core::Stamp;

/// Wall-clock milliseconds that never go backwards on this node (a clock stepped back keeps
/// the last stamp until it catches up).
#[derive(Debug, Default)]
pub(crate) struct StampClock {
    last: AtomicU64,
}

impl StampClock {
    /// The next stamp: now, or the last stamp if the clock went back.
    pub(crate) fn next(&self) -> Stamp {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        self.next_at(now)
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
        let clock = StampClock::default();
        assert_eq!(clock.next_at(100), Stamp(100));
        assert_eq!(clock.next_at(90), Stamp(100));
        assert_eq!(clock.next_at(101), Stamp(101));
    }
}

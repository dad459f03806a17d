//! The leader's view of replication: how far each member's log matches the leader's. Read-only,
//! from openraft's metrics; dashboards use it to show per-member lag.

use crate::Ipam;

/// One member's replication progress as the leader sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Replication {
    /// Member id.
    pub id: u64,
    /// Highest log index known to match the leader's log; `None` before the first successful
    /// append.
    pub matched: Option<u64>,
}

impl Ipam {
    /// Replication progress of every member (the leader included), by id. `None` unless this
    /// node currently leads: only the leader tracks it.
    pub fn replication(&self) -> Option<Vec<Replication>> {
        let metrics = self.core.raft.metrics();
        let m = metrics.borrow();
        let progress = m.replication.as_ref()?;
        Some(
            progress
                .iter()
                .map(|(id, log)| Replication {
                    id: *id,
                    matched: log.map(|l| l.index),
                })
                .collect(),
        )
    }
}

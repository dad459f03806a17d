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

    /// Highest log index this node has purged from its log (covered by its snapshot), if any:
    /// a member that is behind it can only catch up from a snapshot.
    pub fn purged_index(&self) -> Option<u64> {
        self.core.raft.metrics().borrow().purged.map(|l| l.index)
    }

    /// Last log index of this node's newest snapshot (built or installed), if any. With no log
    /// kept behind snapshots, a node that holds no purge for a member has purged up to it.
    pub fn snapshot_index(&self) -> Option<u64> {
        self.core.raft.metrics().borrow().snapshot.map(|l| l.index)
    }
}

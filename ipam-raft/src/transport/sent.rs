//! Snapshots this node has sent, by receiver: the leader's log purge (`crate::purge`) keeps the
//! entries that follow the snapshot a member is receiving or has just installed. A leaf.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::types::NodeId;

/// The last snapshot sent to one member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sent {
    /// The snapshot's last log index: the member continues from the entry after it.
    pub(crate) index: u64,
    /// When its last chunk went out.
    pub(crate) at: Instant,
}

/// Snapshot sends by receiver; one entry per member, the newest send.
#[derive(Default)]
pub(crate) struct SnapshotsSent {
    by_member: Mutex<BTreeMap<NodeId, Sent>>,
}

impl SnapshotsSent {
    /// Records a chunk of the snapshot ending at `index` going to `target`.
    pub(crate) fn chunk(&self, target: NodeId, index: u64, at: Instant) {
        crate::poison::lock(&self.by_member).insert(target, Sent { index, at });
    }

    pub(crate) fn list(&self) -> Vec<(NodeId, Sent)> {
        let map = crate::poison::lock(&self.by_member);
        map.iter().map(|(id, s)| (*id, *s)).collect()
    }

    /// Forgets the members `done` picks (caught up, or gone).
    pub(crate) fn forget(&self, mut done: impl FnMut(NodeId, &Sent) -> bool) {
        crate::poison::lock(&self.by_member).retain(|id, s| !done(*id, s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn keeps_the_newest_send_per_member_and_forgets_what_it_is_told() {
        let sent = SnapshotsSent::default();
        let t = Instant::now();
        sent.chunk(4, 299, t);
        sent.chunk(4, 399, t + Duration::from_secs(1));
        sent.chunk(5, 399, t);
        let list = sent.list();
        assert_eq!(list.len(), 2);
        assert_eq!(
            list[0],
            (
                4,
                Sent {
                    index: 399,
                    at: t + Duration::from_secs(1)
                }
            )
        );
        sent.forget(|id, _| id == 5);
        assert_eq!(
            sent.list().iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            [4]
        );
    }
}

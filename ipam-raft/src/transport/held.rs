//! Commit indexes the leader cut from its append requests (`client::commit_to_send`: never past
//! its own log on disk) and owes each follower until it has sent them.
//!
//! openraft believes the commit index went out with the request; only the transport knows it
//! was cut. openraft sends it again with its next request to that follower: at once under load,
//! but after a lone write only at the next heartbeat tick. So the transport pays the debt
//! itself: once the log's sync covers it and no request to that follower is in flight (one in
//! flight carries it, or owes it again when it is answered), it sends a commit-only append
//! request, the request openraft's heartbeat is: the leader's vote, the last entry the follower
//! accepted as `prev_log_id`, no entries. A follower takes it like any heartbeat; sent late (a
//! newer leader, more entries accepted since) it changes nothing, as commits only grow and a
//! stale vote is refused before the log is looked at.
//!
//! This replaced a single held-back index released through openraft's
//! `trigger().heartbeat()`, which skips a follower with a request in flight: a follower whose
//! append was in flight when the sync landed heard the commit only at the next tick
//! (`ipam-raft/tests/it/leader_sync.rs`, heartbeats 60 s apart, failed about one run in twenty).

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::poison::lock;
use crate::types::{LogId, NodeId, Vote};

/// A commit index owed to one follower, and what the request that pays it carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Owed {
    pub(crate) addr: String,
    pub(crate) vote: Vote,
    /// The last entry the follower accepted: the paying request's `prev_log_id`.
    pub(crate) last: Option<LogId>,
    pub(crate) commit: LogId,
}

/// One answered append request, as [`HeldCommits::answered`] needs it.
pub(crate) struct Answered<'a> {
    pub(crate) addr: &'a str,
    pub(crate) vote: Vote,
    pub(crate) last: Option<LogId>,
    /// What openraft asked to send, and what went out.
    pub(crate) wanted: Option<LogId>,
    pub(crate) sent: Option<LogId>,
}

#[derive(Default)]
struct PeerState {
    inflight: u32,
    owed: Option<Owed>,
}

/// What is owed to whom, and which followers have a request in flight.
#[derive(Default)]
pub(crate) struct HeldCommits {
    peers: Mutex<BTreeMap<NodeId, PeerState>>,
    /// Wakes the task that pays (`tasks::pay_held_commits`): something became owed, or a
    /// follower that is owed something has no request in flight any more.
    pub(crate) changed: tokio::sync::Notify,
}

/// What a follower is owed after a successful append request: the commit the request cut
/// (the newest debt: commits only grow), else the earlier debt unless the request paid it.
fn settle(owed: Option<Owed>, a: &Answered<'_>) -> Option<Owed> {
    if let Some(commit) = a.wanted.filter(|_| a.sent < a.wanted) {
        return Some(Owed {
            addr: a.addr.to_string(),
            vote: a.vote,
            last: a.last,
            commit,
        });
    }
    owed.filter(|o| a.sent < Some(o.commit))
}

/// Whether to pay now: the leader's log is on disk up to the debt, and no request is in flight
/// to that follower (it would carry the commit, or owe it again).
fn payable(inflight: u32, owed: &Owed, on_disk: Option<LogId>) -> bool {
    inflight == 0 && Some(owed.commit) <= on_disk
}

/// Counts a request to one follower as in flight until dropped.
pub(crate) struct InFlight<'a> {
    held: &'a HeldCommits,
    target: NodeId,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let owed = self.held.with_peer(self.target, |p| {
            p.inflight = p.inflight.saturating_sub(1);
            p.inflight == 0 && p.owed.is_some()
        });
        if owed {
            self.held.changed.notify_one();
        }
    }
}

impl HeldCommits {
    fn with_peer<T>(&self, target: NodeId, f: impl FnOnce(&mut PeerState) -> T) -> T {
        f(lock(&self.peers).entry(target).or_default())
    }

    /// Marks an append request to `target` in flight until the guard drops.
    pub(crate) fn start(&self, target: NodeId) -> InFlight<'_> {
        self.with_peer(target, |p| p.inflight += 1);
        InFlight { held: self, target }
    }

    /// Records a successful append request to `target`.
    pub(crate) fn answered(&self, target: NodeId, a: &Answered<'_>) {
        let owes = self.with_peer(target, |p| {
            p.owed = settle(p.owed.take(), a);
            p.owed.is_some()
        });
        if owes {
            self.changed.notify_one();
        }
    }

    /// Whether anything is owed to anyone.
    pub(crate) fn any(&self) -> bool {
        lock(&self.peers).values().any(|p| p.owed.is_some())
    }

    /// Takes out the debts to pay now, with the log on disk up to `on_disk`.
    pub(crate) fn due(&self, on_disk: Option<LogId>) -> Vec<Owed> {
        lock(&self.peers)
            .values_mut()
            .filter(|p| {
                p.owed
                    .as_ref()
                    .is_some_and(|o| payable(p.inflight, o, on_disk))
            })
            .filter_map(|p| p.owed.take())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::CommittedLeaderId;

    fn id(index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    fn answered(sent: u64, wanted: u64, last: u64) -> Answered<'static> {
        Answered {
            addr: "b",
            vote: Vote::new_committed(1, 1),
            last: Some(id(last)),
            wanted: Some(id(wanted)),
            sent: Some(id(sent)),
        }
    }

    fn owed(commit: u64, last: u64) -> Owed {
        Owed {
            addr: "b".to_string(),
            vote: Vote::new_committed(1, 1),
            last: Some(id(last)),
            commit: id(commit),
        }
    }

    #[test]
    fn a_cut_commit_is_owed_with_the_entry_the_follower_accepted() {
        assert_eq!(settle(None, &answered(3, 4, 4)), Some(owed(4, 4)));
        // A newer cut replaces an older debt.
        assert_eq!(
            settle(Some(owed(4, 4)), &answered(4, 6, 6)),
            Some(owed(6, 6))
        );
    }

    #[test]
    fn a_request_that_carries_the_commit_pays_the_debt() {
        assert_eq!(settle(Some(owed(4, 4)), &answered(4, 4, 5)), None);
        assert_eq!(settle(Some(owed(4, 4)), &answered(5, 5, 5)), None);
        // One that carries less leaves it owed.
        assert_eq!(
            settle(Some(owed(4, 4)), &answered(3, 3, 4)),
            Some(owed(4, 4))
        );
        assert_eq!(settle(None, &answered(4, 4, 4)), None);
    }

    #[test]
    fn a_debt_is_paid_once_on_disk_and_with_nothing_in_flight() {
        let o = owed(4, 4);
        assert!(!payable(0, &o, Some(id(3))));
        assert!(!payable(0, &o, None));
        assert!(!payable(1, &o, Some(id(4))));
        assert!(payable(0, &o, Some(id(4))));
        assert!(payable(0, &o, Some(id(9))));
    }

    #[test]
    fn a_debt_waits_for_the_request_in_flight_and_is_taken_once() {
        let held = HeldCommits::default();
        let guard = held.start(2);
        held.answered(2, &answered(3, 4, 4));
        assert!(held.any());
        assert!(held.due(Some(id(4))).is_empty(), "a request is in flight");
        drop(guard);
        assert!(held.due(Some(id(3))).is_empty(), "not on disk yet");
        assert_eq!(held.due(Some(id(4))), vec![owed(4, 4)]);
        assert!(held.due(Some(id(4))).is_empty(), "taken once");
        assert!(!held.any());
    }
}

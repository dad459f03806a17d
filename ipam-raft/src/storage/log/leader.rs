//! What the log decides about a leader's own appends, which it acknowledges before they are on
//! disk: which appends may skip the sync, and what a start hands openraft so that an unsynced
//! tail lost in a power cut is neither claimed committed nor rewritten under the same log ids.
//! Plain functions over the vote and the entries; `LogStore` does the I/O.

use crate::types::{Entry, LogId, NodeId, Vote};

/// The committed id read at a start, never past `end`, the last entry the log holds (or its
/// last purged one). A leader counts its own copy of an entry toward a commit before that copy
/// is on disk ([`own_leader_append`]), so a recorded commit can name an entry a power cut took
/// from this log; openraft would then fail its start applying an entry it cannot read
/// (`LogIndexNotFound`). What this log holds up to the recorded commit is committed: the
/// leader's log, or a follower's that matched it, minus an unsynced tail.
pub(super) fn committed_within(committed: Option<LogId>, end: Option<LogId>) -> Option<LogId> {
    match (committed, end) {
        (Some(c), Some(e)) if c.index > e.index => Some(e),
        (Some(_), None) => None,
        (c, _) => c,
    }
}

/// The vote openraft resumes with after a start. openraft 0.9.25 restores a node whose saved
/// vote is committed and names it as leader at once, in the same term (`Engine::startup`). But
/// a leader's own appends are acknowledged before they are on disk ([`own_leader_append`]):
/// after a power cut its log may lack entries a follower holds, and leading on in that term
/// would write other entries under the same log ids — the follower keeps its own (same id, same
/// entry, by raft's log matching), applies them, and the replicas differ. So a committed vote
/// naming this node comes back uncommitted: the node waits as a candidate of that term, and an
/// election in a higher term decides the leader. Anyone else's vote comes back as saved.
pub(super) fn restart_vote(own: Option<NodeId>, vote: Vote) -> Vote {
    let leader = vote.leader_id();
    match (own, leader.voted_for()) {
        (Some(own), Some(voted)) if vote.is_committed() && voted == own => {
            Vote::new(leader.get_term(), own)
        }
        _ => vote,
    }
}

/// Whether `entries` are this node's own as the leader of the current term: the vote is
/// committed, names this node, and every entry was made in that term by it. Only those may be
/// acknowledged to openraft before they are on disk; anything else (a follower's append, a
/// leader's vote not yet saved) is synced first.
pub(super) fn own_leader_append(own: NodeId, vote: Option<&Vote>, entries: &[Entry]) -> bool {
    let Some(vote) = vote else { return false };
    let leader = vote.leader_id();
    vote.is_committed()
        && leader.voted_for() == Some(own)
        && !entries.is_empty()
        && entries
            .iter()
            .all(|e| e.log_id.committed_leader_id() == leader)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_commit_never_passes_the_end_of_the_log() {
        let id = |index| Some(LogId::new(openraft::CommittedLeaderId::new(3, 1), index));
        assert_eq!(committed_within(id(519), id(510)), id(510));
        assert_eq!(committed_within(id(500), id(510)), id(500));
        assert_eq!(committed_within(id(500), None), None);
        assert_eq!(committed_within(None, id(510)), None);
    }

    #[test]
    fn a_restarted_leader_does_not_resume_its_term() {
        let mine = Vote::new_committed(7, 1);
        assert_eq!(restart_vote(Some(1), mine), Vote::new(7, 1));
        assert!(!restart_vote(Some(1), mine).is_committed());
        // Another leader's vote, or a vote not committed, is kept as saved.
        let theirs = Vote::new_committed(7, 2);
        assert_eq!(restart_vote(Some(1), theirs), theirs);
        assert_eq!(restart_vote(Some(1), Vote::new(8, 1)), Vote::new(8, 1));
        assert_eq!(restart_vote(None, mine), mine);
    }

    fn entry(term: u64, node: NodeId, index: u64) -> Entry {
        Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(term, node), index),
            payload: openraft::EntryPayload::Blank,
        }
    }

    #[test]
    fn only_the_leaders_own_entries_of_its_term_skip_the_sync() {
        let mut leader = Vote::new(3, 1);
        leader.commit();
        let own = [entry(3, 1, 10), entry(3, 1, 11)];
        assert!(own_leader_append(1, Some(&leader), &own));
        // A follower of node 1 appends node 1's entries: synced.
        assert!(!own_leader_append(2, Some(&leader), &own));
        // A candidate's vote (not committed) or none at all: synced.
        assert!(!own_leader_append(1, Some(&Vote::new(3, 1)), &own));
        assert!(!own_leader_append(1, None, &own));
        // Entries of an earlier term among them: synced.
        assert!(!own_leader_append(
            1,
            Some(&leader),
            &[entry(2, 1, 9), entry(3, 1, 10)]
        ));
        assert!(!own_leader_append(1, Some(&leader), &[]));
    }
}

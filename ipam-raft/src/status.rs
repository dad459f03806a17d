//! What a node reports about itself and its cluster: [`ClusterStatus`] from openraft's
//! metrics, a wait on it, and the allocate cache's counters.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::error::IpamError;
use crate::handle::Ipam;
use crate::types::NodeId;

/// Role of a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberRole {
    /// Votes.
    Voter,
    /// Receives the log, does not vote.
    Learner,
}

/// One member of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Node id.
    pub id: u64,
    /// `host:port`.
    pub addr: String,
    /// Voter or learner.
    pub role: MemberRole,
    /// The feature level it reported to this node (`None`: not heard from yet).
    pub feature_level: Option<u32>,
}

/// What `/api/v1/cluster` reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterStatus {
    /// This node's id.
    pub id: u64,
    /// The current leader, if known.
    pub leader: Option<u64>,
    /// Current term.
    pub term: u64,
    /// Index of the last log entry.
    pub last_log_index: u64,
    /// Commit index as this node knows it.
    pub committed_index: u64,
    /// Last applied index.
    pub applied_index: u64,
    /// Whether this node is initialized (has a membership).
    pub initialized: bool,
    /// Members, by id.
    pub members: Vec<Member>,
    /// The cluster's feature level as this node knows it: the lowest level among the members
    /// (one not heard from counts as 1). The leader proposes only commands of this level.
    pub feature_level: u32,
}

impl Ipam {
    /// Waits until `cond` holds for [`Ipam::status`], re-checking on every metrics change.
    /// Returns the status that satisfied it, or `DeadlineExceeded` after `timeout`.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut cond: impl FnMut(&ClusterStatus) -> bool,
    ) -> Result<ClusterStatus, IpamError> {
        let start = Instant::now();
        let deadline = start + timeout;
        let mut rx = self.core.metrics.clone();
        loop {
            let status = self.status();
            if cond(&status) {
                return Ok(status);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(IpamError::DeadlineExceeded {
                    waited_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
                });
            }
            let step = (deadline - now).min(self.core.config.heartbeat);
            if let Ok(Err(_)) = tokio::time::timeout(step, rx.changed()).await {
                return Err(IpamError::ShuttingDown);
            }
        }
    }

    /// Current status from openraft's metrics.
    pub fn status(&self) -> ClusterStatus {
        // Before the metrics borrow below: it reads the metrics too.
        let (feature_level, _) = crate::feature::cluster_level(&self.core.shared);
        let m = self.core.metrics.borrow();
        let mem = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = mem.voter_ids().collect();
        let members = mem
            .nodes()
            .map(|(id, node)| Member {
                id: *id,
                addr: node.addr.clone(),
                role: if voters.contains(id) {
                    MemberRole::Voter
                } else {
                    MemberRole::Learner
                },
                feature_level: crate::feature::member_level(&self.core.shared, *id, &node.addr),
            })
            .collect();
        let applied = m.last_applied.map(|l| l.index).unwrap_or(0);
        ClusterStatus {
            id: self.core.id,
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            // Applied entries are committed, whatever the cached value says yet.
            committed_index: self.core.committed.load(Ordering::Relaxed).max(applied),
            applied_index: applied,
            initialized: !voters.is_empty(),
            members,
            feature_level,
        }
    }

    /// Calls this node made to its peers since start, by transport.
    pub fn peer_calls(&self) -> PeerCalls {
        self.core.net.peer_calls()
    }

    /// Writes this node answered from its own apply since start, before openraft's answer
    /// came back (`docs/architecture.md`, "Early answers"); the node exports it as
    /// `ipam_raft_early_answers_total`. It counts proposals:
    /// its own while it leads, and each list a follower forwarded to it (many writes, once).
    pub fn early_answers(&self) -> u64 {
        self.core.sm.early.answered()
    }

    /// Snapshots this node installed from a leader since start; the node exports it as
    /// `ipam_raft_snapshot_installs_total`. A member that joins or falls behind the leader's
    /// purged log needs one; more than one per catch-up means the log it then needed was
    /// purged meanwhile.
    pub fn snapshots_installed(&self) -> u64 {
        self.core.sm.installs.load(Ordering::Relaxed)
    }

    /// Cache (hits, misses) of the allocate path since start.
    pub fn cache_stats(&self) -> (u64, u64) {
        (
            self.core.hits.load(Ordering::Relaxed),
            self.core.misses.load(Ordering::Relaxed),
        )
    }
}

/// Calls a node made to its peers since it started (openraft's RPCs and the forwarding calls),
/// by transport: peer streams, or one HTTP request per call (peers that take no stream: an
/// older release, or an embedder's server without upgrades).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerCalls {
    /// Calls made over peer streams.
    pub stream: u64,
    /// Calls made as HTTP requests.
    pub http: u64,
    /// Peer streams opened (each one upgrade).
    pub streams_opened: u64,
}

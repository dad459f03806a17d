//! [`Shared`]: what the handle, the proposer, membership changes, the background tasks and the
//! `/raft/*` routes all need — the raft handle, the transport, the state machine's readers,
//! leader knowledge, the stamp clock and the commit index.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use openraft::{RaftMetrics, ServerState};
use tokio::sync::watch;

use crate::clock::Stamper;
use crate::config::Config;
use crate::route::{leader_of, Target};
use crate::storage::state_db::SmShared;
use crate::transport::client::NetShared;
use crate::types::{Node, NodeId, Raft};

/// State shared by every part of a running node.
pub(crate) struct Shared {
    pub(crate) id: NodeId,
    pub(crate) config: Config,
    pub(crate) raft: Raft,
    pub(crate) net: Arc<NetShared>,
    pub(crate) sm: Arc<SmShared>,
    pub(crate) metrics: watch::Receiver<RaftMetrics<NodeId, Node>>,
    pub(crate) clock: Stamper,
    /// The commit index, as openraft's core saves it in the log store before each apply
    /// (its metrics carry none).
    pub(crate) committed: Arc<AtomicU64>,
    /// Ids of this node's proposals.
    pub(crate) ids: crate::requests::RequestIds,
    /// `(term, last log index)` when this node restarted as the leader of its recorded vote
    /// (see `handle::restored_lead`).
    pub(crate) restored_lead: Option<(u64, u64)>,
}

impl Shared {
    /// The lowest read index a read barrier on this leader may answer: the last log index it
    /// restarted with, while it still leads the term it restarted in.
    pub(crate) fn read_floor(&self) -> Option<u64> {
        let (term, last) = self.restored_lead?;
        let m = self.metrics.borrow();
        (m.state == ServerState::Leader && m.current_term == term).then_some(last)
    }

    /// Where a request must go right now, from the latest metrics.
    pub(crate) fn target(&self) -> Target {
        let m = self.metrics.borrow();
        let addr = m.current_leader.and_then(|l| {
            m.membership_config
                .membership()
                .get_node(&l)
                .map(|n| n.addr.clone())
        });
        leader_of(
            self.id,
            m.current_leader,
            m.state == ServerState::Leader,
            addr,
        )
    }

    /// Waits until some leader is known, at most until `deadline` and two election timeouts.
    pub(crate) async fn wait_for_leader(&self, deadline: Instant) -> bool {
        let until = deadline.min(Instant::now() + self.config.election_timeout.1 * 2);
        let mut rx = self.metrics.clone();
        loop {
            if self.target() != Target::Unknown {
                return true;
            }
            let now = Instant::now();
            if now >= until {
                return false;
            }
            match tokio::time::timeout(until - now, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return false,
                Err(_) => return self.target() != Target::Unknown,
            }
        }
    }

    /// The commit index.
    pub(crate) fn committed_index(&self) -> u64 {
        self.committed.load(Ordering::Relaxed)
    }
}

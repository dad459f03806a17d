//! Where a request goes: this node, the leader, or nowhere yet.
//!
//! [`leader_of`] turns openraft's leader knowledge into a [`Target`]; [`decide`] is the one
//! retry policy of the write path (`proposer`), the read barrier (`proposer`) and membership
//! changes (`membership`). Both are pure, so the policy is tested without a cluster.

use std::time::Duration;

use crate::types::NodeId;

/// Pause between retries against a leader that is changing.
pub(crate) const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Where a request must go right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// This node leads.
    Local,
    /// Another node leads: its id and `host:port`.
    Remote(NodeId, String),
    /// No leader is known.
    Unknown,
}

/// The target from openraft's metrics: `own` is this node, `leader` the leader it knows,
/// `leading` whether this node's raft state is `Leader`, `addr` the leader's address in the
/// membership. A node that names itself leader but is not yet (or no longer) in the leader
/// state knows no leader; a leader without an address cannot be reached.
pub(crate) fn leader_of(
    own: NodeId,
    leader: Option<NodeId>,
    leading: bool,
    addr: Option<String>,
) -> Target {
    match leader {
        Some(l) if l == own && leading => Target::Local,
        Some(l) if l == own => Target::Unknown,
        Some(l) => match addr {
            Some(a) => Target::Remote(l, a),
            None => Target::Unknown,
        },
        None => Target::Unknown,
    }
}

//! Where a request goes: this node, the leader, or nowhere yet.
//!
//! [`leader_of`] turns openraft's leader knowledge into a [`Target`]; [`decide`] is the one
//! retry policy of the write path (`proposer`), the read barrier (`proposer`) and membership
//! changes (`membership`). Both are pure, so the policy is tested without a cluster.

use std::time::{Duration, Instant};

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

/// How the previous attempt of a request ended, as far as routing cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// No attempt yet, or the caller already waited: go at once.
    Fresh,
    /// The last attempt failed in a way worth retrying (not the leader, the leader unreachable
    /// before delivery): pause first, the leader may be changing.
    Failed,
}

/// What to do next with a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Run it here: this node leads.
    Local,
    /// Send it to the leader. A request that was itself forwarded is never forwarded again:
    /// its caller answers "not the leader" and the sending node retries.
    Forward(NodeId, String),
    /// No leader is known: wait for one (until the deadline), then decide again. A forwarded
    /// request answers "no leader" instead.
    WaitForLeader,
    /// Sleep this long, then decide again with [`Attempt::Fresh`].
    Pause(Duration),
    /// The deadline passed: fail with the caller's own deadline error.
    Expired,
}

/// The one retry policy: from where the request must go (`target`), the time (`now`,
/// `deadline`) and how the last attempt ended.
pub(crate) fn decide(target: Target, now: Instant, deadline: Instant, last: Attempt) -> Step {
    if now >= deadline {
        return Step::Expired;
    }
    if last == Attempt::Failed {
        return Step::Pause(RETRY_PAUSE.min(deadline - now));
    }
    match target {
        Target::Local => Step::Local,
        Target::Remote(id, addr) => Step::Forward(id, addr),
        Target::Unknown => Step::WaitForLeader,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote() -> Target {
        Target::Remote(2, "10.0.0.2:7000".into())
    }

    #[test]
    fn the_leader_is_local_only_in_the_leader_state() {
        assert_eq!(leader_of(1, Some(1), true, None), Target::Local);
        // Elected but not yet leading (or stepping down): nobody to send to yet.
        assert_eq!(leader_of(1, Some(1), false, None), Target::Unknown);
        assert_eq!(leader_of(1, None, false, None), Target::Unknown);
    }

    #[test]
    fn another_leader_is_remote_only_with_an_address() {
        assert_eq!(
            leader_of(1, Some(2), false, Some("10.0.0.2:7000".into())),
            remote()
        );
        assert_eq!(leader_of(1, Some(2), false, None), Target::Unknown);
    }

    #[test]
    fn a_fresh_attempt_goes_where_the_leader_is() {
        let now = Instant::now();
        let deadline = now + Duration::from_secs(1);
        assert_eq!(
            decide(Target::Local, now, deadline, Attempt::Fresh),
            Step::Local
        );
        assert_eq!(
            decide(remote(), now, deadline, Attempt::Fresh),
            Step::Forward(2, "10.0.0.2:7000".into())
        );
        assert_eq!(
            decide(Target::Unknown, now, deadline, Attempt::Fresh),
            Step::WaitForLeader
        );
    }

    #[test]
    fn a_failed_attempt_pauses_at_most_until_the_deadline() {
        let now = Instant::now();
        let far = now + Duration::from_secs(1);
        let near = now + Duration::from_millis(10);
        assert_eq!(
            decide(Target::Local, now, far, Attempt::Failed),
            Step::Pause(RETRY_PAUSE)
        );
        assert_eq!(
            decide(remote(), now, near, Attempt::Failed),
            Step::Pause(Duration::from_millis(10))
        );
    }

    #[test]
    fn nothing_goes_out_after_the_deadline() {
        let now = Instant::now();
        for target in [Target::Local, remote(), Target::Unknown] {
            for last in [Attempt::Fresh, Attempt::Failed] {
                assert_eq!(decide(target.clone(), now, now, last), Step::Expired);
            }
        }
    }
}

//! The cluster-wide feature level. Every node reports the highest level its release knows in
//! the `x-ipam-feature-level` header of every `/raft/*` answer and request (a release that
//! predates the header is level 1; a request also names its sender's address, so a follower
//! knows its leader's level and a new leader knows the old one's even if it is down); the
//! transport remembers what each peer address last reported. Before
//! the leader proposes an entry it computes the lowest level among the current members and
//! answers every command that needs more with `FeatureUnavailable` instead of proposing it,
//! so no member ever has to apply an entry it cannot decode.

use std::time::{Duration, Instant};

use ipam_core::feature::{lower, required_level, LEVEL_0_1_0};
use ipam_core::{Command, CommandResult, OpError};

use crate::shared::Shared;

/// Header of every `/raft/*` request and answer: the level the sender's release knows.
pub(crate) const LEVEL_HEADER: &str = "x-ipam-feature-level";
/// Header of every `/raft/*` request: the sender's advertised address, which its level is
/// recorded under.
pub(crate) const FROM_HEADER: &str = "x-ipam-from";

/// How long the leader waits to hear from a member it has no level for (a new leader before
/// its first round of heartbeats) before treating it as the oldest release.
const UNKNOWN_WAIT: Duration = Duration::from_secs(2);

/// The level a peer reported in `header` (absent: a release before levels, level 1).
pub(crate) fn parse_level(header: Option<&reqwest::header::HeaderValue>) -> u32 {
    header
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(LEVEL_0_1_0)
}

/// The lowest level among the members as this node knows it, and whether some member has not
/// reported one yet (counted as level 1).
pub(crate) fn cluster_level(shared: &Shared) -> (u32, bool) {
    let own = shared.config.feature_level;
    let m = shared.metrics.borrow();
    let mut level = own;
    let mut unknown = false;
    for (id, node) in m.membership_config.membership().nodes() {
        if *id == shared.id {
            continue;
        }
        match shared.net.level_of(&node.addr) {
            Some(l) => level = level.min(l),
            None => {
                unknown = true;
                level = level.min(LEVEL_0_1_0);
            }
        }
    }
    (level, unknown)
}

/// The level of one member as this node knows it (its own for itself).
pub(crate) fn member_level(shared: &Shared, id: u64, addr: &str) -> Option<u32> {
    if id == shared.id {
        Some(shared.config.feature_level)
    } else {
        shared.net.level_of(addr)
    }
}

/// The level to propose at: waits up to [`UNKNOWN_WAIT`] (and `deadline`) for members that
/// have not reported, when a command needs more than the level known so far.
pub(crate) async fn level_for(shared: &Shared, commands: &[Command], deadline: Instant) -> u32 {
    let needed = commands
        .iter()
        .map(required_level)
        .max()
        .unwrap_or(LEVEL_0_1_0);
    let until = tokio::time::Instant::from_std(deadline.min(Instant::now() + UNKNOWN_WAIT));
    // Woken by what can settle it: a member's first report, or a membership change. (It
    // once slept half a heartbeat between looks: with heartbeats a minute apart, a first
    // write waited 30 s for a follower whose report had come in meanwhile.)
    let mut reported = shared.net.levels_changed();
    let mut metrics = shared.metrics.clone();
    loop {
        reported.borrow_and_update();
        metrics.borrow_and_update();
        let (level, unknown) = cluster_level(shared);
        if needed <= level || !unknown || tokio::time::Instant::now() >= until {
            return level;
        }
        let woken = tokio::time::timeout_at(until, async {
            tokio::select! {
                r = reported.changed() => r.is_ok(),
                m = metrics.changed() => m.is_ok(),
            }
        })
        .await;
        if !matches!(woken, Ok(true)) {
            return cluster_level(shared).0;
        }
    }
}

/// Splits an entry's commands at `level`: each is lowered to the oldest form with the same
/// effect; the ones that still need more come back as their refusal, the others to propose.
pub(crate) fn gate(
    commands: Vec<Command>,
    level: u32,
) -> (Vec<Command>, Vec<Option<CommandResult>>) {
    let mut keep = Vec::with_capacity(commands.len());
    let mut refused = Vec::with_capacity(commands.len());
    for c in commands {
        let c = lower(c, level);
        let required = required_level(&c);
        if required > level {
            let error = OpError::FeatureUnavailable {
                required,
                cluster: level,
            };
            refused.push(Some(match ipam_core::requests::untagged(&c) {
                Command::Op(_) => CommandResult::Op(Err(error)),
                _ => CommandResult::Batch(Err(ipam_core::BatchError { index: 0, error })),
            }));
        } else {
            keep.push(c);
            refused.push(None);
        }
    }
    (keep, refused)
}

/// Puts the proposed commands' results back between the refusals. A count that does not
/// match comes back as it is (the caller's count check reports it).
pub(crate) fn merge(
    refused: Vec<Option<CommandResult>>,
    results: Vec<CommandResult>,
) -> Vec<CommandResult> {
    let proposed = refused.iter().filter(|r| r.is_none()).count();
    if proposed == refused.len() || results.len() != proposed {
        return results;
    }
    let mut results = results.into_iter();
    refused
        .into_iter()
        .map(|r| r.or_else(|| results.next()))
        .collect::<Option<Vec<_>>>()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipam_core::{Op, OpOutput};

    fn renew() -> Command {
        Command::Op(Op::RenewOwner { owner: "o".into() })
    }

    fn old() -> Command {
        Command::Op(Op::ReleaseOwner {
            pool: "p".into(),
            owner: "o".into(),
        })
    }

    #[test]
    fn a_lower_level_refuses_new_kinds_and_keeps_old_ones_in_order() {
        let (keep, refused) = gate(vec![old(), renew(), old()], 1);
        assert_eq!(keep, vec![old(), old()]);
        assert!(refused[0].is_none() && refused[2].is_none());
        assert!(matches!(
            refused[1],
            Some(CommandResult::Op(Err(OpError::FeatureUnavailable {
                required: 2,
                cluster: 1
            })))
        ));
        let ok = |n| CommandResult::Op(Ok(OpOutput::PoolDeleted { released: n }));
        let merged = merge(refused.clone(), vec![ok(1), ok(2)]);
        assert_eq!(merged.len(), 3);
        assert_eq!(merged[0], ok(1));
        assert_eq!(merged[2], ok(2));
        // A wrong count stays wrong, for the caller to report.
        assert_eq!(merge(refused, vec![ok(1)]).len(), 1);
        let (keep, refused) = gate(vec![old(), renew()], 2);
        assert_eq!(keep.len(), 2);
        assert!(refused.iter().all(Option::is_none));
    }

    #[test]
    fn headers_parse_with_level_1_as_the_default() {
        let v = reqwest::header::HeaderValue::from_static("7");
        assert_eq!(parse_level(Some(&v)), 7);
        assert_eq!(parse_level(None), 1);
        let bad = reqwest::header::HeaderValue::from_static("x");
        assert_eq!(parse_level(Some(&bad)), 1);
    }
}

//! Feature levels: which release's replicas can decode a command.
//!
//! Every release knows the highest level it can apply ([`FEATURE_LEVEL`]); a command whose
//! kind needs a higher level than the lowest level among the current members must not be
//! proposed, because a member that cannot decode a committed entry has to stop. The leader
//! compares [`required_level`] with the members' reported levels before it proposes.

use crate::command::{Command, Op};

/// Level of everything release 0.1.0 had: pools (create, delete), allocate, release,
/// release by owner, atomic batches of those.
pub const LEVEL_0_1_0: u32 = 1;

/// The highest level this release knows: leases and renewal, second-round pools (settings,
/// updates, ranges), reconcile, selection, prefix pools.
pub const FEATURE_LEVEL: u32 = 2;

/// The level an op needs. Exhaustive on purpose: a new op must say which release can apply it.
pub fn op_level(op: &Op) -> u32 {
    match op {
        Op::CreatePool(_)
        | Op::DeletePool { .. }
        | Op::Allocate { .. }
        | Op::Release { .. }
        | Op::ReleaseOwner { .. } => LEVEL_0_1_0,
        Op::AllocateV2 { .. }
        | Op::Renew { .. }
        | Op::RenewOwner { .. }
        | Op::CreatePoolV2(_)
        | Op::UpdatePool { .. }
        | Op::AddRange { .. }
        | Op::RemoveRange { .. }
        | Op::Reconcile(_)
        | Op::AllocateAny { .. }
        | Op::CreatePoolV3(_)
        | Op::SetFeatureLevel(_) => 2,
    }
}

/// The level a command needs: its op's, or a batch's highest.
pub fn required_level(command: &Command) -> u32 {
    // A loop, not a recursion: rustc 1.95 at opt-level 2 and 3 compiled the recursive form so
    // that its result compared unequal to 1 when it was 1 (`docs/architecture.md`, "A
    // miscompiled level"); this module's tests caught it in a release build.
    let mut floor = LEVEL_0_1_0;
    let mut command = command;
    loop {
        match command {
            Command::Op(op) => return op_level(op).max(floor),
            Command::Batch(ops) => {
                let level = ops.iter().map(op_level).max().unwrap_or(LEVEL_0_1_0);
                return level.max(floor);
            }
            // Request ids and idempotency keys came with level 2.
            Command::Tagged { command: inner, .. } => {
                floor = floor.max(2);
                command = inner;
            }
        }
    }
}

/// `op` in the form a cluster at `level` can apply, when one with the same effect exists:
/// an allocation with the pool's default lease is the 0.1.0 allocate (a cluster below level 2
/// has no pool with a default lease, since its pools were all created at level 1).
pub fn lower_op(op: Op, level: u32) -> Op {
    match op {
        Op::AllocateV2 {
            pool,
            owner,
            ip,
            labels,
            ttl_seconds: None,
        } if level < 2 => Op::Allocate {
            pool,
            owner,
            ip,
            labels,
        },
        other => other,
    }
}

/// [`lower_op`] over a command.
pub fn lower(command: Command, level: u32) -> Command {
    match command {
        Command::Op(op) => Command::Op(lower_op(op, level)),
        Command::Batch(ops) => {
            Command::Batch(ops.into_iter().map(|o| lower_op(o, level)).collect())
        }
        // Below level 2 a request id cannot be sent: the command goes without it (at most
        // once is lost only while releases are mixed). A caller's idempotency key is a
        // promise that cannot be kept without it, so a keyed command stays tagged and is
        // refused as unavailable.
        Command::Tagged {
            id,
            key: Some(key),
            command,
        } => Command::Tagged {
            id,
            key: Some(key),
            command: Box::new(lower(*command, level)),
        },
        Command::Tagged {
            id,
            key: None,
            command,
        } => {
            if level < 2 {
                lower(*command, level)
            } else {
                Command::Tagged {
                    id,
                    key: None,
                    command: Box::new(lower(*command, level)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc_v2(ttl: Option<u32>) -> Op {
        Op::AllocateV2 {
            pool: "p".into(),
            owner: "o".into(),
            ip: None,
            labels: Default::default(),
            ttl_seconds: ttl,
        }
    }

    #[test]
    fn release_0_1_0_commands_are_level_1_and_new_kinds_level_2() {
        let old = Op::ReleaseOwner {
            pool: "p".into(),
            owner: "o".into(),
        };
        assert_eq!(required_level(&Command::Op(old.clone())), 1);
        assert_eq!(required_level(&Command::Op(alloc_v2(Some(60)))), 2);
        assert_eq!(required_level(&Command::Batch(vec![old.clone()])), 1);
        assert_eq!(
            required_level(&Command::Batch(vec![
                old,
                Op::RenewOwner { owner: "o".into() }
            ])),
            2
        );
        const { assert!(FEATURE_LEVEL >= 2) };
    }

    #[test]
    fn an_allocation_with_the_default_lease_lowers_to_the_old_allocate() {
        let lowered = lower(Command::Op(alloc_v2(None)), 1);
        assert_eq!(required_level(&lowered), 1);
        assert!(matches!(lowered, Command::Op(Op::Allocate { .. })));
        // A lease cannot be lowered, and a cluster at level 2 keeps the new form.
        assert_eq!(
            required_level(&lower(Command::Op(alloc_v2(Some(60))), 1)),
            2
        );
        assert_eq!(
            lower(Command::Op(alloc_v2(None)), 2),
            Command::Op(alloc_v2(None))
        );
    }
}

//! The write operations of [`Ipam`], typed: each public write is an [`OpKind`] whose
//! `Output` the compiler ties to the method's return type, validated once here ([`Valid`]) and
//! once more by the state machine's `apply` (which must, for determinism), then proposed as one
//! `Command` through the proposer queue. `allocate` first answers an owner's existing
//! allocation from the local replica behind a read barrier.

use std::marker::PhantomData;
use std::net::IpAddr;
use std::sync::atomic::Ordering;

use ipam_core::{
    Allocation, Command, CommandResult, Labels, Op, OpError, OpOutput, PoolInfo, PoolSpec,
};

use tracing::Instrument as _;

use crate::error::{InternalError, IpamError};
use crate::handle::Ipam;

/// One kind of operation and the output it produces.
pub(crate) trait OpKind {
    /// What the public method returns.
    type Output;
    /// Its name in an internal error.
    const NAME: &'static str;
    /// The core operation.
    fn into_op(self) -> Op;
    /// This kind's output out of an applied result; `None` for another kind's output, which
    /// only a bug in the state machine produces.
    fn take(out: OpOutput) -> Option<Self::Output>;
}

/// An operation of kind `K` that passed validation: the only thing [`Ipam::write`] proposes.
pub(crate) struct Valid<K> {
    op: Op,
    kind: PhantomData<K>,
}

impl<K: OpKind> Valid<K> {
    /// Validates `kind` (bad input never reaches the log).
    pub(crate) fn new(kind: K) -> Result<Self, OpError> {
        let op = kind.into_op();
        ipam_core::validate::check_op(&op)?;
        Ok(Valid {
            op,
            kind: PhantomData,
        })
    }
}

pub(crate) struct CreatePool(pub(crate) PoolSpec);

impl OpKind for CreatePool {
    type Output = PoolInfo;
    const NAME: &'static str = "create pool";
    fn into_op(self) -> Op {
        Op::CreatePool(self.0)
    }
    fn take(out: OpOutput) -> Option<PoolInfo> {
        match out {
            OpOutput::PoolCreated(info) => Some(info),
            _ => None,
        }
    }
}

pub(crate) struct DeletePool {
    pub(crate) pool: String,
    pub(crate) force: bool,
}

impl OpKind for DeletePool {
    type Output = u64;
    const NAME: &'static str = "delete pool";
    fn into_op(self) -> Op {
        Op::DeletePool {
            pool: self.pool,
            force: self.force,
        }
    }
    fn take(out: OpOutput) -> Option<u64> {
        match out {
            OpOutput::PoolDeleted { released } => Some(released),
            _ => None,
        }
    }
}

pub(crate) struct Allocate {
    pub(crate) pool: String,
    pub(crate) owner: String,
    pub(crate) ip: Option<IpAddr>,
    pub(crate) labels: Labels,
    /// Lease length: `None` the pool's default, `Some(0)` permanent.
    pub(crate) ttl_seconds: Option<u32>,
}

impl OpKind for Allocate {
    type Output = (Allocation, bool);
    const NAME: &'static str = "allocate";
    fn into_op(self) -> Op {
        Op::AllocateV2 {
            pool: self.pool,
            owner: self.owner,
            ip: self.ip,
            labels: self.labels,
            ttl_seconds: self.ttl_seconds,
        }
    }
    fn take(out: OpOutput) -> Option<(Allocation, bool)> {
        match out {
            OpOutput::Allocated {
                allocation,
                existing,
            }
            | OpOutput::AllocatedV2 {
                allocation,
                existing,
            } => Some((allocation, existing)),
            _ => None,
        }
    }
}

pub(crate) struct Release {
    pub(crate) pool: String,
    pub(crate) ip: IpAddr,
    pub(crate) generation: Option<u64>,
}

impl OpKind for Release {
    type Output = Allocation;
    const NAME: &'static str = "release";
    fn into_op(self) -> Op {
        Op::Release {
            pool: self.pool,
            ip: self.ip,
            generation: self.generation,
        }
    }
    fn take(out: OpOutput) -> Option<Allocation> {
        match out {
            OpOutput::Released(a) => Some(a),
            _ => None,
        }
    }
}

pub(crate) struct ReleaseOwner {
    pub(crate) pool: String,
    pub(crate) owner: String,
}

impl OpKind for ReleaseOwner {
    type Output = Vec<IpAddr>;
    const NAME: &'static str = "release owner";
    fn into_op(self) -> Op {
        Op::ReleaseOwner {
            pool: self.pool,
            owner: self.owner,
        }
    }
    fn take(out: OpOutput) -> Option<Vec<IpAddr>> {
        match out {
            OpOutput::ReleasedOwner { released } => Some(released),
            _ => None,
        }
    }
}

impl Ipam {
    /// Proposes one command (coalesced with concurrent ones) and returns its result.
    ///
    /// # Errors
    ///
    /// Every write (this and the typed methods) fails with a domain error ([`IpamError::Op`],
    /// [`IpamError::Batch`]; nothing applied, retrying gives the same answer) or a cluster
    /// error, which tells whether a retry is safe:
    ///
    /// - [`IpamError::NoLeader`], [`IpamError::Overloaded`]: the write was not applied;
    ///   retry after a pause.
    /// - [`IpamError::DeadlineExceeded`], [`IpamError::ShuttingDown`]: the write may still
    ///   apply. Retry only in an idempotent form — an allocation by the same owner (which
    ///   answers the existing address), a release fenced by its generation.
    /// - [`IpamError::Internal`]: a bug or a broken disk; do not retry blindly.
    pub async fn submit(&self, command: Command) -> Result<CommandResult, IpamError> {
        // Bad input never reaches the log.
        if let Err(e) = ipam_core::validate::check_command(&command) {
            return Err(match ipam_core::requests::untagged(&command) {
                Command::Op(_) => IpamError::Op(e.error),
                _ => IpamError::Batch(e),
            });
        }
        let name = match ipam_core::requests::untagged(&command) {
            Command::Op(_) => "command",
            _ => "batch",
        };
        self.propose_one(command, name).await
    }

    /// Proposes one already validated command (with this handle's idempotency key) and
    /// returns its result. `name` names the operation in its `ipam.write` trace span.
    async fn propose_one(
        &self,
        command: Command,
        name: &'static str,
    ) -> Result<CommandResult, IpamError> {
        let command = self.keyed(command);
        let key = match &command {
            Command::Tagged { key: Some(k), .. } => k.key.clone(),
            _ => String::new(),
        };
        let span = tracing::info_span!("ipam.write", op = name, ops = command.op_count());
        let mut results = self
            .core
            .proposer
            .propose(vec![command], false)
            .instrument(span)
            .await?;
        match results.pop() {
            Some(CommandResult::IdempotencyKeyReused) if results.is_empty() => {
                Err(IpamError::IdempotencyKeyReused { key })
            }
            Some(r) if results.is_empty() => Ok(r),
            _ => Err(InternalError::ResultCount {
                results: results.len() + 1,
                commands: 1,
            }
            .into()),
        }
    }

    /// Proposes a validated op and returns its typed output.
    pub(crate) async fn write<K: OpKind>(&self, op: Valid<K>) -> Result<K::Output, IpamError> {
        let wrong = || InternalError::WrongResult { op: K::NAME }.into();
        match self.propose_one(Command::Op(op.op), K::NAME).await? {
            CommandResult::Op(Ok(out)) => K::take(out).ok_or_else(wrong),
            CommandResult::Op(Err(e)) => Err(IpamError::Op(e)),
            _ => Err(wrong()),
        }
    }

    /// Creates a pool.
    pub async fn create_pool(&self, spec: PoolSpec) -> Result<PoolInfo, IpamError> {
        self.write(Valid::new(CreatePool(spec))?).await
    }

    /// Deletes a pool; returns the number of allocations dropped (force).
    pub async fn delete_pool(&self, pool: &str, force: bool) -> Result<u64, IpamError> {
        let pool = pool.to_string();
        self.write(Valid::new(DeletePool { pool, force })?).await
    }

    /// Allocates for `owner`; returns the allocation and whether it is the owner's existing
    /// one. A cache hit answers after a read barrier without a log entry.
    ///
    /// The owner is the idempotency key: retrying after an ambiguous error
    /// ([`IpamError::DeadlineExceeded`]) returns the address the first attempt got, with
    /// `true`, so a retry never leaks a second address. See [`Ipam::submit`] for which
    /// errors to retry.
    pub async fn allocate(
        &self,
        pool: &str,
        owner: &str,
        ip: Option<IpAddr>,
        labels: Labels,
    ) -> Result<(Allocation, bool), IpamError> {
        self.allocate_lease(pool, owner, ip, labels, None).await
    }

    /// Allocates for `owner` with a lease of `ttl_seconds` (`None`: the pool's default,
    /// `Some(0)`: permanent). Returns the allocation and whether the owner held it already
    /// (a held lease is renewed). Only a permanent allocation is answered from the local
    /// replica without a log entry: a repeated allocate of a lease must renew it.
    pub async fn allocate_lease(
        &self,
        pool: &str,
        owner: &str,
        ip: Option<IpAddr>,
        labels: Labels,
        ttl_seconds: Option<u32>,
    ) -> Result<(Allocation, bool), IpamError> {
        let op = Valid::new(Allocate {
            pool: pool.to_string(),
            owner: owner.to_string(),
            ip,
            labels,
            ttl_seconds,
        })?;
        let hit = |a: &Allocation| ip.is_none_or(|want| want == a.ip) && a.expires_at.is_none();
        // A keyed request is recorded by the state machine: it always goes through the log.
        // A fresh owner — nearly every allocate — is known absent from memory, without a read
        // transaction (3 % of a loaded node's CPU). A wrong "absent" (two owners sharing a
        // hash) only costs a log entry: the apply looks the owner up in its tables.
        if self.idempotency_key().is_none()
            && self.core.sm.owner_may_hold(pool, owner)
            && matches!(self.cached_owner(pool, owner), Some(a) if hit(&a))
        {
            // The local replica may lag or the owner may have released since: confirm behind a
            // barrier before answering from it.
            self.linearize().await?;
            if let Some(a) = self.cached_owner(pool, owner).filter(|a| hit(a)) {
                self.core.hits.fetch_add(1, Ordering::Relaxed);
                return Ok((a, true));
            }
        }
        self.core.misses.fetch_add(1, Ordering::Relaxed);
        self.write(op).await
    }

    /// The owner's allocation in the local replica, if any (errors count as a miss).
    ///
    /// Three point lookups on cached pages, on the calling task: every allocate asks this, and
    /// a `spawn_blocking` round trip per request cost more CPU than the lookup (about a tenth
    /// of a follower's CPU at 256 clients).
    fn cached_owner(&self, pool: &str, owner: &str) -> Option<Allocation> {
        let db = self.core.sm.db().ok()?;
        let rtx = redb::ReadableDatabase::begin_read(&db.db).ok()?;
        ipam_core::query::owner_allocation(&rtx, pool, owner)
            .ok()
            .flatten()
    }

    /// Releases an address, optionally fenced by generation.
    ///
    /// With `generation`, a release meant for an allocation that was already released and
    /// the address handed to someone else is refused instead of freeing the new holder's
    /// address; retrying after an ambiguous error is then safe (a `NotAllocated` or
    /// generation-mismatch answer means the first attempt applied).
    pub async fn release(
        &self,
        pool: &str,
        ip: IpAddr,
        generation: Option<u64>,
    ) -> Result<Allocation, IpamError> {
        let pool = pool.to_string();
        self.write(Valid::new(Release {
            pool,
            ip,
            generation,
        })?)
        .await
    }

    /// Releases what `owner` holds in `pool`.
    pub async fn release_owner(&self, pool: &str, owner: &str) -> Result<Vec<IpAddr>, IpamError> {
        let (pool, owner) = (pool.to_string(), owner.to_string());
        self.write(Valid::new(ReleaseOwner { pool, owner })?).await
    }

    /// Applies `ops` atomically, in order.
    pub async fn batch(&self, ops: Vec<Op>) -> Result<Vec<OpOutput>, IpamError> {
        let command = Command::Batch(ops);
        ipam_core::validate::check_command(&command)?;
        match self.propose_one(command, "batch").await? {
            CommandResult::Batch(Ok(outputs)) => Ok(outputs),
            CommandResult::Batch(Err(e)) => Err(IpamError::Batch(e)),
            _ => Err(InternalError::WrongResult { op: "batch" }.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipam_core::{AllocateError, InputError};

    #[test]
    fn bad_input_is_refused_before_it_is_proposed() {
        let op = Allocate {
            pool: "p".into(),
            owner: String::new(),
            ip: None,
            labels: Labels::new(),
            ttl_seconds: None,
        };
        assert!(matches!(
            Valid::new(op),
            Err(OpError::Allocate(AllocateError::Input(
                InputError::InvalidOwner { len: 0 }
            )))
        ));
    }

    #[test]
    fn each_kind_takes_only_its_own_output() {
        let deleted = || OpOutput::PoolDeleted { released: 3 };
        assert_eq!(DeletePool::take(deleted()), Some(3));
        assert_eq!(ReleaseOwner::take(deleted()), None);
        assert!(Allocate::take(deleted()).is_none());
        assert!(Release::take(deleted()).is_none());
        assert!(CreatePool::take(deleted()).is_none());
    }
}

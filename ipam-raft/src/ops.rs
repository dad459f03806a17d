//! The write operations of [`Ipam`]: every public write becomes one `Command` in the proposer
//! queue; `allocate` first answers an owner's existing allocation from the local replica
//! behind a read barrier.

use std::net::IpAddr;
use std::sync::atomic::Ordering;

use ipam_core::{Allocation, Command, CommandResult, Labels, Op, OpOutput, PoolInfo, PoolSpec};

use crate::error::IpamError;
use crate::handle::Ipam;

fn op_output(r: CommandResult) -> Result<OpOutput, IpamError> {
    match r {
        CommandResult::Op(Ok(o)) => Ok(o),
        CommandResult::Op(Err(e)) => Err(IpamError::Op(e)),
        CommandResult::Batch(_) => Err(IpamError::Internal(
            "a batch result for a single op".to_string(),
        )),
    }
}

fn unexpected(what: &str, got: &OpOutput) -> IpamError {
    IpamError::Internal(format!("expected {what}, got {got:?}"))
}

impl Ipam {
    /// Proposes one command (coalesced with concurrent ones) and returns its result.
    pub async fn submit(&self, command: Command) -> Result<CommandResult, IpamError> {
        // Bad input never reaches the log.
        if let Err(e) = ipam_core::validate::check_command(&command) {
            return Err(match command {
                Command::Op(_) => IpamError::Op(e.error),
                Command::Batch(_) => IpamError::Batch(e),
            });
        }
        let mut results = self.core.proposer.propose(vec![command], false).await?;
        match results.pop() {
            Some(r) if results.is_empty() => Ok(r),
            _ => Err(IpamError::Internal("wrong number of results".into())),
        }
    }

    async fn submit_op(&self, op: Op) -> Result<OpOutput, IpamError> {
        op_output(self.submit(Command::Op(op)).await?)
    }

    /// Creates a pool.
    pub async fn create_pool(&self, spec: PoolSpec) -> Result<PoolInfo, IpamError> {
        match self.submit_op(Op::CreatePool(spec)).await? {
            OpOutput::PoolCreated(info) => Ok(info),
            other => Err(unexpected("a created pool", &other)),
        }
    }

    /// Deletes a pool; returns the number of allocations dropped (force).
    pub async fn delete_pool(&self, pool: &str, force: bool) -> Result<u64, IpamError> {
        let op = Op::DeletePool {
            pool: pool.to_string(),
            force,
        };
        match self.submit_op(op).await? {
            OpOutput::PoolDeleted { released } => Ok(released),
            other => Err(unexpected("a deleted pool", &other)),
        }
    }

    /// Allocates for `owner`; returns the allocation and whether it is the owner's existing
    /// one. A cache hit answers after a read barrier without a log entry.
    pub async fn allocate(
        &self,
        pool: &str,
        owner: &str,
        ip: Option<IpAddr>,
        labels: Labels,
    ) -> Result<(Allocation, bool), IpamError> {
        let op = Op::Allocate {
            pool: pool.to_string(),
            owner: owner.to_string(),
            ip,
            labels,
        };
        ipam_core::validate::check_op(&op)?;
        let hit = |a: &Allocation| ip.is_none_or(|want| want == a.ip);
        if matches!(self.cached_owner(pool, owner), Some(a) if hit(&a)) {
            // The local replica may lag or the owner may have released since: confirm behind a
            // barrier before answering from it.
            self.linearize().await?;
            if let Some(a) = self.cached_owner(pool, owner).filter(|a| hit(a)) {
                self.core.hits.fetch_add(1, Ordering::Relaxed);
                return Ok((a, true));
            }
        }
        self.core.misses.fetch_add(1, Ordering::Relaxed);
        match self.submit_op(op).await? {
            OpOutput::Allocated {
                allocation,
                existing,
            } => Ok((allocation, existing)),
            other => Err(unexpected("an allocation", &other)),
        }
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
    pub async fn release(
        &self,
        pool: &str,
        ip: IpAddr,
        generation: Option<u64>,
    ) -> Result<Allocation, IpamError> {
        let op = Op::Release {
            pool: pool.to_string(),
            ip,
            generation,
        };
        match self.submit_op(op).await? {
            OpOutput::Released(a) => Ok(a),
            other => Err(unexpected("a released allocation", &other)),
        }
    }

    /// Releases what `owner` holds in `pool`.
    pub async fn release_owner(&self, pool: &str, owner: &str) -> Result<Vec<IpAddr>, IpamError> {
        let op = Op::ReleaseOwner {
            pool: pool.to_string(),
            owner: owner.to_string(),
        };
        match self.submit_op(op).await? {
            OpOutput::ReleasedOwner { released } => Ok(released),
            other => Err(unexpected("released addresses", &other)),
        }
    }

    /// Applies `ops` atomically, in order.
    pub async fn batch(&self, ops: Vec<Op>) -> Result<Vec<OpOutput>, IpamError> {
        match self.submit(Command::Batch(ops)).await? {
            CommandResult::Batch(Ok(outputs)) => Ok(outputs),
            CommandResult::Batch(Err(e)) => Err(IpamError::Batch(e)),
            CommandResult::Op(_) => {
                Err(IpamError::Internal("an op result for a batch".to_string()))
            }
        }
    }
}

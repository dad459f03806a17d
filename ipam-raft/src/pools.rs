//! Pool updates, ranges and the preview on [`Ipam`]: thin wrappers that propose the core's
//! ops ([`Op::CreatePoolV2`], [`Op::UpdatePool`], [`Op::AddRange`], [`Op::RemoveRange`]) or
//! run the core's [`ipam_core::query::next_free`] behind the read barrier.

use std::net::IpAddr;

use ipam_core::{
    Cidr, Command, CommandResult, GatewayChoice, Op, OpOutput, PoolInfo, PoolSpecV2, PoolUpdate,
};

use crate::error::IpamError;
use crate::node::{Consistency, Ipam};

impl Ipam {
    async fn pool_op(&self, op: Op) -> Result<PoolInfo, IpamError> {
        match self.submit(Command::Op(op)).await? {
            CommandResult::Op(Ok(OpOutput::PoolUpdated(p) | OpOutput::PoolCreated(p))) => Ok(p),
            CommandResult::Op(Ok(other)) => Err(IpamError::Internal(format!(
                "expected a pool, got {other:?}"
            ))),
            CommandResult::Op(Err(e)) => Err(IpamError::Op(e)),
            CommandResult::Batch(_) => Err(IpamError::Internal(
                "a batch result for a single op".to_string(),
            )),
        }
    }

    /// Creates a pool with the second-round settings (network config, freeze, lease and
    /// selection fields).
    pub async fn create_pool_v2(&self, spec: PoolSpecV2) -> Result<PoolInfo, IpamError> {
        self.pool_op(Op::CreatePoolV2(Box::new(spec))).await
    }

    /// Changes a pool's fields; with `revision`, only if the pool is at that revision.
    pub async fn update_pool(
        &self,
        pool: &str,
        revision: Option<u64>,
        update: PoolUpdate,
    ) -> Result<PoolInfo, IpamError> {
        self.pool_op(Op::UpdatePool {
            pool: pool.to_string(),
            revision,
            update: Box::new(update),
        })
        .await
    }

    /// Adds a range to a pool.
    pub async fn add_range(
        &self,
        pool: &str,
        cidr: Cidr,
        gateway: GatewayChoice,
    ) -> Result<PoolInfo, IpamError> {
        self.pool_op(Op::AddRange {
            pool: pool.to_string(),
            cidr,
            gateway,
        })
        .await
    }

    /// Removes an empty range (not the first) from a pool.
    pub async fn remove_range(&self, pool: &str, cidr: Cidr) -> Result<PoolInfo, IpamError> {
        self.pool_op(Op::RemoveRange {
            pool: pool.to_string(),
            cidr,
        })
        .await
    }

    /// The addresses the next `count` (1..=1000) allocations without an address by new
    /// owners would get, in order; nothing is written.
    pub async fn next_free(
        &self,
        pool: &str,
        count: usize,
        consistency: Consistency,
    ) -> Result<Vec<IpAddr>, IpamError> {
        let pool = pool.to_string();
        self.read(consistency, move |rtx| {
            Ok(ipam_core::query::next_free(rtx, &pool, count)?)
        })
        .await
    }
}

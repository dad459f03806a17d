//! Pool updates, ranges and the preview on [`Ipam`]: typed writes ([`OpKind`]s proposing the
//! core's [`Op::CreatePoolV2`], [`Op::UpdatePool`], [`Op::AddRange`], [`Op::RemoveRange`]) and
//! the core's [`ipam_core::query::next_free`] behind the read barrier.

use std::net::IpAddr;

use ipam_core::{Cidr, GatewayChoice, Op, OpOutput, PoolInfo, PoolSpecV2, PoolUpdate};

use crate::config::Consistency;
use crate::error::IpamError;
use crate::handle::Ipam;
use crate::ops::{OpKind, Valid};

/// Every pool op answers the pool as it is after the op.
fn pool_info(out: OpOutput) -> Option<PoolInfo> {
    match out {
        OpOutput::PoolUpdated(p) | OpOutput::PoolCreated(p) => Some(p),
        _ => None,
    }
}

struct CreatePoolV2(PoolSpecV2);

impl OpKind for CreatePoolV2 {
    type Output = PoolInfo;
    const NAME: &'static str = "create pool";
    fn into_op(self) -> Op {
        Op::CreatePoolV2(Box::new(self.0))
    }
    fn take(out: OpOutput) -> Option<PoolInfo> {
        pool_info(out)
    }
}

struct UpdatePool {
    pool: String,
    revision: Option<u64>,
    update: PoolUpdate,
}

impl OpKind for UpdatePool {
    type Output = PoolInfo;
    const NAME: &'static str = "update pool";
    fn into_op(self) -> Op {
        Op::UpdatePool {
            pool: self.pool,
            revision: self.revision,
            update: Box::new(self.update),
        }
    }
    fn take(out: OpOutput) -> Option<PoolInfo> {
        pool_info(out)
    }
}

struct AddRange {
    pool: String,
    cidr: Cidr,
    gateway: GatewayChoice,
}

impl OpKind for AddRange {
    type Output = PoolInfo;
    const NAME: &'static str = "add range";
    fn into_op(self) -> Op {
        Op::AddRange {
            pool: self.pool,
            cidr: self.cidr,
            gateway: self.gateway,
        }
    }
    fn take(out: OpOutput) -> Option<PoolInfo> {
        pool_info(out)
    }
}

struct RemoveRange {
    pool: String,
    cidr: Cidr,
}

impl OpKind for RemoveRange {
    type Output = PoolInfo;
    const NAME: &'static str = "remove range";
    fn into_op(self) -> Op {
        Op::RemoveRange {
            pool: self.pool,
            cidr: self.cidr,
        }
    }
    fn take(out: OpOutput) -> Option<PoolInfo> {
        pool_info(out)
    }
}

impl Ipam {
    /// Creates a pool with the second-round settings (network config, freeze, lease and
    /// selection fields).
    pub async fn create_pool_v2(&self, spec: PoolSpecV2) -> Result<PoolInfo, IpamError> {
        self.write(Valid::new(CreatePoolV2(spec))?).await
    }

    /// Changes a pool's fields; with `revision`, only if the pool is at that revision.
    pub async fn update_pool(
        &self,
        pool: &str,
        revision: Option<u64>,
        update: PoolUpdate,
    ) -> Result<PoolInfo, IpamError> {
        let pool = pool.to_string();
        self.write(Valid::new(UpdatePool {
            pool,
            revision,
            update,
        })?)
        .await
    }

    /// Adds a range to a pool.
    pub async fn add_range(
        &self,
        pool: &str,
        cidr: Cidr,
        gateway: GatewayChoice,
    ) -> Result<PoolInfo, IpamError> {
        let pool = pool.to_string();
        self.write(Valid::new(AddRange {
            pool,
            cidr,
            gateway,
        })?)
        .await
    }

    /// Removes an empty range (not the first) from a pool.
    pub async fn remove_range(&self, pool: &str, cidr: Cidr) -> Result<PoolInfo, IpamError> {
        let pool = pool.to_string();
        self.write(Valid::new(RemoveRange { pool, cidr })?).await
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

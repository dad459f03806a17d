//! `Ipam`'s lease operations: allocate with a ttl, renew one allocation, renew everything an
//! owner holds, a pool's lease settings, and the reads that go with them.

use std::net::IpAddr;

use ipam_core::state::Expired;
use ipam_core::{Allocation, Labels, Op, OpOutput, PoolLifecycle, Stamp};

use crate::node::{Consistency, Ipam};
use crate::IpamError;

fn unexpected(what: &str, got: &OpOutput) -> IpamError {
    IpamError::Internal(format!("expected {what}, got {got:?}"))
}

fn internal(e: impl std::fmt::Display) -> IpamError {
    IpamError::Internal(e.to_string())
}

impl Ipam {
    /// Allocates for `owner` with a lease of `ttl_seconds` (`None`: the pool's default,
    /// `Some(0)`: permanent). Returns the allocation and whether the owner held it already
    /// (a held lease is renewed). Only a permanent allocation is answered from the local
    /// replica without a log entry.
    pub async fn allocate_lease(
        &self,
        pool: &str,
        owner: &str,
        ip: Option<IpAddr>,
        labels: Labels,
        ttl_seconds: Option<u32>,
    ) -> Result<(Allocation, bool), IpamError> {
        let op = Op::AllocateV2 {
            pool: pool.to_string(),
            owner: owner.to_string(),
            ip,
            labels,
            ttl_seconds,
        };
        self.allocate_op(op, pool, owner, ip).await
    }

    /// Renews the allocation at `ip`: `expires_at` = now + `ttl_seconds` (default: its own
    /// ttl; 0 makes it permanent). Fenced by `generation` when given.
    pub async fn renew(
        &self,
        pool: &str,
        ip: IpAddr,
        generation: Option<u64>,
        ttl_seconds: Option<u32>,
    ) -> Result<Allocation, IpamError> {
        let op = Op::Renew {
            pool: pool.to_string(),
            ip,
            generation,
            ttl_seconds,
        };
        match self.submit_op(op).await? {
            OpOutput::Renewed(a) => Ok(a),
            other => Err(unexpected("a renewed allocation", &other)),
        }
    }

    /// Renews every lease `owner` holds, in every pool (an agent's heartbeat).
    pub async fn renew_owner(&self, owner: &str) -> Result<Vec<Allocation>, IpamError> {
        let op = Op::RenewOwner {
            owner: owner.to_string(),
        };
        match self.submit_op(op).await? {
            OpOutput::RenewedOwner { renewed } => Ok(renewed),
            other => Err(unexpected("renewed allocations", &other)),
        }
    }

    /// Sets a pool's default lease length and reuse cooldown.
    pub async fn set_pool_lifecycle(
        &self,
        pool: &str,
        lifecycle: PoolLifecycle,
    ) -> Result<(), IpamError> {
        let op = Op::SetPoolLifecycle {
            pool: pool.to_string(),
            lifecycle,
        };
        match self.submit_op(op).await? {
            OpOutput::LifecycleSet => Ok(()),
            other => Err(unexpected("settings set", &other)),
        }
    }

    /// Cooling addresses of `pool` as of the latest applied log time.
    pub async fn cooling(&self, pool: &str, consistency: Consistency) -> Result<u128, IpamError> {
        let pool = pool.to_string();
        self.read(consistency, move |rtx| {
            ipam_core::state::cooling_count(rtx, &pool).map_err(internal)
        })
        .await
    }

    /// Log time of this replica: the largest stamp it has applied.
    pub async fn log_now(&self) -> Result<Stamp, IpamError> {
        self.read(Consistency::Local, |rtx| {
            ipam_core::state::log_now(rtx).map_err(internal)
        })
        .await
    }

    /// The earliest lease end in this replica, if any lease exists.
    pub async fn next_expiry(&self) -> Result<Option<Stamp>, IpamError> {
        self.read(Consistency::Local, |rtx| {
            ipam_core::state::next_expiry(rtx).map_err(internal)
        })
        .await
    }
}

/// Adds the leases an entry released on expiry to the node's per-pool counts.
pub(crate) fn count_expired(shared: &crate::state_machine::SmShared, expired: &[Expired]) {
    if expired.is_empty() {
        return;
    }
    if let Ok(mut counts) = shared.expirations.lock() {
        for e in expired {
            *counts.entry(e.pool.clone()).or_default() += 1;
        }
    }
}

impl Ipam {
    /// Leases this node's state machine released on expiry since start, by pool.
    pub fn lease_expirations(&self) -> std::collections::BTreeMap<String, u64> {
        self.core
            .sm
            .expirations
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }
}

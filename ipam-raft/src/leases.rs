//! `Ipam`'s lease operations: renew one allocation, renew everything an owner holds, and the
//! reads that go with them (a pool's lease settings are pool settings: `create_pool_v2`,
//! `update_pool`; allocating with a ttl is `Ipam::allocate_lease`, next to `allocate` in `ops`).

use std::net::IpAddr;

use ipam_core::state::Expired;
use ipam_core::{Allocation, Op, OpOutput, Stamp};

use crate::config::Consistency;
use crate::error::IpamError;
use crate::handle::Ipam;
use crate::ops::{OpKind, Valid};
use crate::storage::state_db::SmShared;

struct Renew {
    pool: String,
    ip: IpAddr,
    generation: Option<u64>,
    ttl_seconds: Option<u32>,
}

impl OpKind for Renew {
    type Output = Allocation;
    const NAME: &'static str = "renew";
    fn into_op(self) -> Op {
        Op::Renew {
            pool: self.pool,
            ip: self.ip,
            generation: self.generation,
            ttl_seconds: self.ttl_seconds,
        }
    }
    fn take(out: OpOutput) -> Option<Allocation> {
        match out {
            OpOutput::Renewed(a) => Some(a),
            _ => None,
        }
    }
}

struct RenewOwner {
    owner: String,
}

impl OpKind for RenewOwner {
    type Output = Vec<Allocation>;
    const NAME: &'static str = "renew owner";
    fn into_op(self) -> Op {
        Op::RenewOwner { owner: self.owner }
    }
    fn take(out: OpOutput) -> Option<Vec<Allocation>> {
        match out {
            OpOutput::RenewedOwner { renewed } => Some(renewed),
            _ => None,
        }
    }
}

impl Ipam {
    /// Renews the allocation at `ip`: `expires_at` = now + `ttl_seconds` (default: its own
    /// ttl; 0 makes it permanent). Fenced by `generation` when given.
    pub async fn renew(
        &self,
        pool: &str,
        ip: IpAddr,
        generation: Option<u64>,
        ttl_seconds: Option<u32>,
    ) -> Result<Allocation, IpamError> {
        self.write(Valid::new(Renew {
            pool: pool.to_string(),
            ip,
            generation,
            ttl_seconds,
        })?)
        .await
    }

    /// Renews every lease `owner` holds, in every pool (an agent's heartbeat).
    pub async fn renew_owner(&self, owner: &str) -> Result<Vec<Allocation>, IpamError> {
        self.write(Valid::new(RenewOwner {
            owner: owner.to_string(),
        })?)
        .await
    }

    /// Cooling addresses of `pool` as of the latest applied log time.
    pub async fn cooling(&self, pool: &str, consistency: Consistency) -> Result<u128, IpamError> {
        let pool = pool.to_string();
        self.read(consistency, move |rtx| {
            ipam_core::state::cooling_count(rtx, &pool).map_err(|e| IpamError::Query(e.into()))
        })
        .await
    }

    /// Log time of this replica: the largest stamp it has applied.
    pub async fn log_now(&self) -> Result<Stamp, IpamError> {
        self.read(Consistency::Local, |rtx| {
            ipam_core::state::log_now(rtx).map_err(|e| IpamError::Query(e.into()))
        })
        .await
    }

    /// The earliest lease end in this replica, if any lease exists.
    pub async fn next_expiry(&self) -> Result<Option<Stamp>, IpamError> {
        self.read(Consistency::Local, |rtx| {
            ipam_core::state::next_expiry(rtx).map_err(|e| IpamError::Query(e.into()))
        })
        .await
    }

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

/// Adds the leases an entry released on expiry to the node's per-pool counts.
pub(crate) fn count_expired(shared: &SmShared, expired: &[Expired]) {
    if expired.is_empty() {
        return;
    }
    if let Ok(mut counts) = shared.expirations.lock() {
        for e in expired {
            *counts.entry(e.pool.clone()).or_default() += 1;
        }
    }
}

//! Leases and reuse cooldown: the per-pool settings and the in-memory cooling index.
//!
//! Time is log time ([`crate::tables::MetaRecord::now`]): the largest entry stamp applied.
//! A lease's end lives in the allocation row and in the `core_expiry` index; a cooling address
//! lives in `core_cooling` and, while it cools, stays out of the pool's free index.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::types::Stamp;

/// Shortest lease, in seconds.
pub const MIN_TTL_SECONDS: u32 = 10;
/// Longest lease and longest cooldown, in seconds (365 days).
pub const MAX_TTL_SECONDS: u32 = 31_536_000;

/// A pool's lease and cooldown settings, as `state::expire::lifecycle` reads them from the pool
/// record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolLifecycle {
    /// Lease length of an allocation that names no `ttl_seconds`; `None`: permanent.
    pub default_ttl_seconds: Option<u32>,
    /// How long a released address stays reserved for its last owner (0: no cooldown).
    pub reuse_cooldown_seconds: u32,
}

/// The lease an allocate request asks for: `None` = the pool default, `Some(0)` = permanent.
pub fn resolve_ttl(requested: Option<u32>, lifecycle: &PoolLifecycle) -> Option<u32> {
    match requested {
        Some(0) => None,
        Some(t) => Some(t),
        None => lifecycle.default_ttl_seconds.filter(|t| *t > 0),
    }
}

/// `now + ttl` seconds, saturating.
pub fn expiry(now: Stamp, ttl_seconds: u32) -> Stamp {
    Stamp(now.0.saturating_add(u64::from(ttl_seconds) * 1000))
}

/// Whether `ttl` is a valid lease length (0 = permanent, else 10..=31,536,000 s).
pub fn ttl_ok(ttl: u32) -> bool {
    ttl == 0 || (MIN_TTL_SECONDS..=MAX_TTL_SECONDS).contains(&ttl)
}

/// One pool's cooling addresses, indexed three ways (all kept in step).
#[derive(Clone, Debug, Default)]
pub(crate) struct Cooling {
    /// (released_at, position) → last owner: release order, oldest first.
    pub(crate) by_time: BTreeMap<(u64, u128), String>,
    /// position → released_at.
    pub(crate) by_pos: BTreeMap<u128, u64>,
    /// (owner, released_at, position): an owner's newest cooling address is the last one.
    pub(crate) by_owner: BTreeSet<(String, u64, u128)>,
}

impl Cooling {
    pub(crate) fn insert(&mut self, at: u64, pos: u128, owner: String) {
        self.by_pos.insert(pos, at);
        self.by_owner.insert((owner.clone(), at, pos));
        self.by_time.insert((at, pos), owner);
    }

    /// Removes `pos`; returns its (released_at, last owner).
    pub(crate) fn remove(&mut self, pos: u128) -> Option<(u64, String)> {
        let at = self.by_pos.remove(&pos)?;
        let owner = self.by_time.remove(&(at, pos))?;
        self.by_owner.remove(&(owner.clone(), at, pos));
        Some((at, owner))
    }

    /// The last owner of a cooling `pos`.
    pub(crate) fn owner_of(&self, pos: u128) -> Option<&str> {
        let at = self.by_pos.get(&pos)?;
        self.by_time.get(&(*at, pos)).map(String::as_str)
    }

    /// The newest address `owner` released that still cools.
    pub(crate) fn newest_of(&self, owner: &str) -> Option<u128> {
        let lo = (owner.to_string(), 0, 0);
        let hi = (owner.to_string(), u64::MAX, u128::MAX);
        self.by_owner.range(lo..=hi).next_back().map(|(_, _, p)| *p)
    }

    /// The address released earliest.
    pub(crate) fn oldest(&self) -> Option<u128> {
        self.by_time.keys().next().map(|(_, p)| *p)
    }

    pub(crate) fn len(&self) -> usize {
        self.by_pos.len()
    }
}

//! JSON bodies of drift and reconcile (`../shared/api.md`, "Drift and reconcile").

use serde::{Deserialize, Serialize};

use super::Allocation;

/// One address seen on a host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservedEntry {
    /// The address.
    pub ip: String,
    /// Who uses it, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// `POST /api/v1/drift` body.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftRequest {
    /// Pools to compare, 1–100.
    pub pools: Vec<String>,
    /// The inventory, at most 20,000 entries.
    pub observed: Vec<ObservedEntry>,
}

/// Observed in a pool, not allocated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnknownEntry {
    /// Address.
    pub ip: String,
    /// Pool containing it.
    pub pool: String,
    /// Observed owner.
    #[serde(default)]
    pub owner: Option<String>,
}

/// Allocated to another owner than observed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MismatchedEntry {
    /// Address.
    pub ip: String,
    /// Pool.
    pub pool: String,
    /// Owner of the allocation.
    pub expected_owner: String,
    /// Owner the inventory names.
    pub observed_owner: String,
    /// The allocation's generation.
    pub generation: u64,
}

/// `POST /api/v1/drift` answer (and a reconcile's `drift`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftReport {
    /// The applied log index the report was computed at.
    pub as_of: u64,
    /// Observed entries matching an allocation.
    pub in_sync: u64,
    /// Observed in a pool, not allocated.
    pub unknown: Vec<UnknownEntry>,
    /// Allocated, not observed.
    pub missing: Vec<Allocation>,
    /// Allocated to another owner.
    pub mismatched: Vec<MismatchedEntry>,
    /// In none of the pools.
    pub outside: Vec<String>,
}

impl DriftReport {
    /// No drift at all.
    pub fn is_clean(&self) -> bool {
        self.unknown.is_empty()
            && self.missing.is_empty()
            && self.mismatched.is_empty()
            && self.outside.is_empty()
    }
}

fn yes() -> bool {
    true
}

/// `POST /api/v1/reconcile` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileRequest {
    /// Pools to compare, 1–100.
    pub pools: Vec<String>,
    /// The inventory, at most 20,000 entries.
    pub observed: Vec<ObservedEntry>,
    /// Allocate unknown addresses to their observed owners (default true).
    #[serde(default = "yes")]
    pub adopt_unknown: bool,
    /// Release allocations not observed (default false).
    #[serde(default)]
    pub release_missing: bool,
    /// Give mismatched addresses to their observed owners (default false).
    #[serde(default)]
    pub fix_mismatched: bool,
    /// Only report the plan (default true).
    #[serde(default = "yes")]
    pub dry_run: bool,
    /// The reviewed dry run's `as_of`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<u64>,
    /// Grace period in seconds of log time (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_seconds: Option<u32>,
}

impl Default for ReconcileRequest {
    fn default() -> Self {
        ReconcileRequest {
            pools: Vec::new(),
            observed: Vec::new(),
            adopt_unknown: true,
            release_missing: false,
            fix_mismatched: false,
            dry_run: true,
            as_of: None,
            grace_seconds: None,
        }
    }
}

/// A change a reconcile left out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedEntry {
    /// Address.
    pub ip: String,
    /// `owner_conflict`, `address_cooling_down`, `invalid_argument`, `no_owner` or `in_grace`.
    pub reason: String,
}

/// `POST /api/v1/reconcile` answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileResponse {
    /// Whether nothing was written.
    pub dry_run: bool,
    /// Dry run: the applied index it read (pass it back to apply this plan); real run: the
    /// log index it was applied at.
    pub as_of: u64,
    /// Allocations made for unknown addresses (a dry run shows generation 0).
    pub adopted: Vec<Allocation>,
    /// Allocations released as missing.
    pub released: Vec<Allocation>,
    /// New allocations of mismatched addresses.
    pub reassigned: Vec<Allocation>,
    /// Left out, with reasons.
    pub skipped: Vec<SkippedEntry>,
    /// The drift the plan was computed from.
    pub drift: DriftReport,
}

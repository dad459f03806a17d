//! `Ipam`'s selection: allocate in a pool that the state machine chooses by labels, family,
//! weight and utilization cap (`Op::AllocateAny`, decided in `apply` so concurrent selections
//! through any node never race each other).

use ipam_core::{Allocation, Family, Labels, Op, OpOutput};

use crate::error::IpamError;
use crate::handle::Ipam;
use crate::ops::{OpKind, Valid};

struct AllocateAny {
    owner: String,
    selector: Labels,
    family: Option<Family>,
    labels: Labels,
    ttl_seconds: Option<u32>,
}

impl OpKind for AllocateAny {
    type Output = (Allocation, bool);
    const NAME: &'static str = "allocate any";
    fn into_op(self) -> Op {
        Op::AllocateAny {
            owner: self.owner,
            selector: self.selector,
            family: self.family,
            labels: self.labels,
            ttl_seconds: self.ttl_seconds,
        }
    }
    fn take(out: OpOutput) -> Option<(Allocation, bool)> {
        match out {
            OpOutput::AllocatedV2 {
                allocation,
                existing,
            } => Some((allocation, existing)),
            _ => None,
        }
    }
}

impl Ipam {
    /// Allocates for `owner` in the pool the state machine chooses among the address pools
    /// whose labels contain every `selector` pair (of `family` if given): the owner's held
    /// address (lowest pool name), else its cooling address, else the lowest
    /// `(allocated / capacity) / weight` among pools that are not frozen and stay within
    /// `max_utilization`. Returns the allocation (its `pool` names the choice) and whether the
    /// owner held it already. Always one log entry: the choice depends on every pool's counts,
    /// which only `apply` sees exactly.
    ///
    /// Errors: `no_matching_pool` when no pool matches, `pool_exhausted` when none can take
    /// an address; see [`Ipam::submit`] for cluster errors. Retrying after an ambiguous error
    /// is safe: the owner's held address is answered first.
    pub async fn allocate_any(
        &self,
        owner: &str,
        selector: Labels,
        family: Option<Family>,
        labels: Labels,
        ttl_seconds: Option<u32>,
    ) -> Result<(Allocation, bool), IpamError> {
        self.write(Valid::new(AllocateAny {
            owner: owner.to_string(),
            selector,
            family,
            labels,
            ttl_seconds,
        })?)
        .await
    }
}

//! `Ipam`'s prefix pools: creating a pool that hands out aligned blocks
//! (`delegation_prefix_len`). Allocating, renewing and releasing a block are the ordinary
//! calls; their allocations carry `prefix`.

use ipam_core::{Op, OpOutput, PoolInfo, PoolSpecV3};

use crate::error::IpamError;
use crate::handle::Ipam;
use crate::ops::{OpKind, Valid};

struct CreatePoolV3(PoolSpecV3);

impl OpKind for CreatePoolV3 {
    type Output = PoolInfo;
    const NAME: &'static str = "create pool";
    fn into_op(self) -> Op {
        Op::CreatePoolV3(Box::new(self.0))
    }
    fn take(out: OpOutput) -> Option<PoolInfo> {
        match out {
            OpOutput::PoolCreated(info) => Some(info),
            _ => None,
        }
    }
}

impl Ipam {
    /// Creates a pool with every field: with `delegation_prefix_len` = L it is a prefix pool
    /// that hands out aligned /L blocks (no gateway, counts in blocks, a block overlapping a
    /// reserved entry is never handed out).
    pub async fn create_pool_v3(&self, spec: PoolSpecV3) -> Result<PoolInfo, IpamError> {
        self.write(Valid::new(CreatePoolV3(spec))?).await
    }
}

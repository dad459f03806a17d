//! The pool most tests of this crate allocate from.

use std::collections::BTreeMap;

use ipam_core::{GatewayChoice, PoolSpec};

/// Pool `vms` on `cidr`, default gateway, no reservations or labels.
pub fn vms(cidr: &str) -> PoolSpec {
    PoolSpec {
        name: "vms".into(),
        cidr: cidr.parse().expect("cidr"),
        gateway: GatewayChoice::Default,
        reserved: Vec::new(),
        labels: BTreeMap::new(),
        description: String::new(),
    }
}

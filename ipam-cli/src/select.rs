//! `ip allocate --selector k=v[,k=v] [--family ipv4|ipv6] --owner X`: an address from the
//! pool the cluster chooses (`POST /api/v1/allocations`).

use ipam_client::types::{AddressFamily, AllocateAnyRequest};
use ipam_client::Client;

use crate::args::Output;
use crate::commands::emit;
use crate::render;

/// Parses `--family`.
pub(crate) fn parse_family(s: &str) -> Result<AddressFamily, String> {
    match s {
        "ipv4" | "4" => Ok(AddressFamily::Ipv4),
        "ipv6" | "6" => Ok(AddressFamily::Ipv6),
        _ => Err(format!("expected ipv4 or ipv6, got {s:?}")),
    }
}

/// Allocates in the pool the cluster chooses and prints the allocation (its pool first).
pub(crate) async fn allocate_any(
    client: &Client,
    out: Output,
    owner: String,
    selector: Vec<(String, String)>,
    family: Option<AddressFamily>,
    labels: Vec<(String, String)>,
    ttl_seconds: Option<u32>,
) -> anyhow::Result<()> {
    let req = AllocateAnyRequest {
        owner,
        selector: selector.into_iter().collect(),
        family,
        labels: labels.into_iter().collect(),
        ttl_seconds,
    };
    let (allocation, created) = client.allocate_any(&req).await?;
    emit(out, &allocation, || {
        let what = if created {
            format!("allocated in pool {}", allocation.pool)
        } else {
            format!(
                "existing allocation in pool {} (the owner already held it)",
                allocation.pool
            )
        };
        format!("{what}\n{}", render::allocation_details(&allocation))
    })
}

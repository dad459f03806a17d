//! The address layout of a pool: which positions of its CIDR are allocatable.
//!
//! Derived from the CIDR, the resolved gateway and the reserved entries only, so it is
//! computed identically when a pool is created and when [`crate::State::open`] rebuilds it.

use std::net::IpAddr;

use crate::alloc::FreeIndex;
use crate::error::{CreatePoolError, Unallocatable};
use crate::types::{addr_to_u128, Cidr, Family, GatewayChoice, Reserved};

/// Which positions of a pool's CIDR can be allocated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolLayout {
    /// The CIDR.
    pub cidr: Cidr,
    /// First position of the CIDR.
    pub start: u128,
    /// Last position of the CIDR.
    pub end: u128,
    /// The gateway's position, if any.
    pub gateway: Option<u128>,
    /// Reserved positions as sorted, merged, disjoint inclusive intervals.
    reserved: Vec<(u128, u128)>,
    /// Allocatable addresses of the empty pool (blocks, in a prefix pool).
    pub capacity: u128,
    /// A prefix pool's block size as log2 of its addresses (`width - delegation_prefix_len`):
    /// it hands out aligned blocks, has no gateway and no network/broadcast exclusion.
    pub block_shift: Option<u8>,
}

/// What excluding network/broadcast/anycast means for a CIDR.
fn edge_reason(cidr: &Cidr, pos: u128, start: u128, end: u128) -> Option<Unallocatable> {
    match cidr.family() {
        // A /31 or /32 has no network or broadcast address (RFC 3021).
        Family::V4 if cidr.prefix() <= 30 => {
            if pos == start {
                Some(Unallocatable::Network)
            } else if pos == end {
                Some(Unallocatable::Broadcast)
            } else {
                None
            }
        }
        // A /127 or /128 has no subnet-router anycast address (RFC 6164).
        Family::V6 if cidr.prefix() <= 126 && pos == start => {
            Some(Unallocatable::SubnetRouterAnycast)
        }
        _ => None,
    }
}

/// Resolves a gateway choice to an address (or none), refusing an unusable one.
pub fn resolve_gateway(
    cidr: &Cidr,
    choice: GatewayChoice,
) -> Result<Option<IpAddr>, CreatePoolError> {
    let gateway = match choice {
        GatewayChoice::None => None,
        GatewayChoice::Default => match cidr.family() {
            Family::V4 if cidr.prefix() <= 30 => Some(cidr.family().addr(cidr.first() + 1)),
            _ => None,
        },
        GatewayChoice::Addr(a) => Some(a),
    };
    if let Some(g) = gateway {
        if let Some(reason) = position_reason(cidr, g) {
            return Err(CreatePoolError::InvalidGateway {
                gateway: g,
                cidr: *cidr,
                reason,
            });
        }
    }
    Ok(gateway)
}

/// Why `ip` is structurally unusable in `cidr` (other family, outside, network, broadcast,
/// anycast), ignoring gateway and reserved entries.
fn position_reason(cidr: &Cidr, ip: IpAddr) -> Option<Unallocatable> {
    if Family::of(ip) != cidr.family() {
        return Some(Unallocatable::WrongFamily);
    }
    if !cidr.contains(ip) {
        return Some(Unallocatable::OutsideCidr);
    }
    edge_reason(cidr, addr_to_u128(ip), cidr.first(), cidr.last())
}

/// The inclusive position range of a reserved entry, or `None` when it is not inside `cidr`.
fn reserved_bounds(cidr: &Cidr, entry: &Reserved) -> Option<(u128, u128)> {
    let (lo, hi) = match entry {
        Reserved::Addr(a) => (*a, *a),
        Reserved::Range(a, b) => (*a, *b),
        Reserved::Cidr(c) => (c.network(), c.family().addr(c.last())),
    };
    let inside = |ip: IpAddr| Family::of(ip) == cidr.family() && cidr.contains(ip);
    if !inside(lo) || !inside(hi) {
        return None;
    }
    let (lo, hi) = (addr_to_u128(lo), addr_to_u128(hi));
    (lo <= hi).then_some((lo, hi))
}

impl PoolLayout {
    /// Builds the layout of a pool with an already-resolved gateway. Fails when a reserved
    /// entry is outside the CIDR, the gateway is unusable, or nothing is left to allocate.
    pub fn build(
        cidr: Cidr,
        gateway: Option<IpAddr>,
        reserved: &[Reserved],
    ) -> Result<PoolLayout, CreatePoolError> {
        PoolLayout::build_with(cidr, gateway, reserved, None)
    }

    /// The layout of a prefix pool handing out aligned `/len` blocks; a block that overlaps a
    /// reserved entry is never handed out. `len` must be longer than the CIDR's prefix and at
    /// most its family's width (checked by the caller).
    pub fn delegating(
        cidr: Cidr,
        reserved: &[Reserved],
        len: u8,
    ) -> Result<PoolLayout, CreatePoolError> {
        let shift = cidr.family().bits().saturating_sub(len);
        PoolLayout::build_with(cidr, None, reserved, Some(shift))
    }

    fn build_with(
        cidr: Cidr,
        gateway: Option<IpAddr>,
        reserved: &[Reserved],
        block_shift: Option<u8>,
    ) -> Result<PoolLayout, CreatePoolError> {
        let (start, end) = (cidr.first(), cidr.last());
        let gateway = match gateway {
            None => None,
            Some(g) => {
                if let Some(reason) = position_reason(&cidr, g) {
                    return Err(CreatePoolError::InvalidGateway {
                        gateway: g,
                        cidr,
                        reason,
                    });
                }
                Some(addr_to_u128(g))
            }
        };
        let mut bounds = Vec::with_capacity(reserved.len());
        for entry in reserved {
            match reserved_bounds(&cidr, entry) {
                Some(b) => bounds.push(b),
                None => {
                    return Err(CreatePoolError::ReservedOutsideCidr {
                        entry: entry.to_string(),
                        cidr,
                    })
                }
            }
        }
        bounds.sort_unstable();
        let mut merged: Vec<(u128, u128)> = Vec::with_capacity(bounds.len());
        for (lo, hi) in bounds {
            match merged.last_mut() {
                Some((_, last_hi)) if lo <= last_hi.saturating_add(1) => {
                    *last_hi = (*last_hi).max(hi);
                }
                _ => merged.push((lo, hi)),
            }
        }
        let mut layout = PoolLayout {
            cidr,
            start,
            end,
            gateway,
            reserved: merged,
            capacity: 0,
            block_shift,
        };
        let free = layout.initial_free();
        layout.capacity = free.free_count();
        if layout.capacity == 0 {
            return Err(CreatePoolError::NoAllocatableAddress { cidr });
        }
        Ok(layout)
    }

    /// The free index of the empty pool: the CIDR minus network/broadcast (or anycast),
    /// gateway and reserved addresses. O(reserved entries).
    pub fn initial_free(&self) -> FreeIndex {
        if let Some(shift) = self.block_shift {
            // Every block touched by a reserved entry leaves the index.
            let mut free = FreeIndex::in_blocks(shift);
            free.insert_interval(self.start, self.end);
            for (lo, hi) in &self.reserved {
                free.remove_range(*lo, *hi);
            }
            return free;
        }
        let mut free = FreeIndex::with_range(self.start, self.end);
        for pos in [self.start, self.end] {
            if edge_reason(&self.cidr, pos, self.start, self.end).is_some() {
                free.take(pos);
            }
        }
        if let Some(g) = self.gateway {
            free.take(g);
        }
        for (lo, hi) in &self.reserved {
            free.remove_range(*lo, *hi);
        }
        free
    }

    /// Why `ip` can never be allocated in this pool, or `None` when it can be.
    pub fn unallocatable(&self, ip: IpAddr) -> Option<Unallocatable> {
        if let Some(shift) = self.block_shift {
            return self.unallocatable_block(ip, shift);
        }
        if let Some(reason) = position_reason(&self.cidr, ip) {
            return Some(reason);
        }
        let pos = addr_to_u128(ip);
        if self.gateway == Some(pos) {
            return Some(Unallocatable::Gateway);
        }
        let i = self.reserved.partition_point(|(_, hi)| *hi < pos);
        match self.reserved.get(i) {
            Some((lo, _)) if *lo <= pos => Some(Unallocatable::Reserved),
            _ => None,
        }
    }
}

impl PoolLayout {
    /// Why the block starting at `ip` cannot be handed out by this prefix pool.
    fn unallocatable_block(&self, ip: IpAddr, shift: u8) -> Option<Unallocatable> {
        if Family::of(ip) != self.cidr.family() {
            return Some(Unallocatable::WrongFamily);
        }
        if !self.cidr.contains(ip) {
            return Some(Unallocatable::OutsideCidr);
        }
        let pos = addr_to_u128(ip);
        let mask = (1u128 << shift) - 1;
        if pos & mask != 0 {
            return Some(Unallocatable::Misaligned);
        }
        let last = pos | mask;
        let i = self.reserved.partition_point(|(_, hi)| *hi < pos);
        match self.reserved.get(i) {
            Some((lo, _)) if *lo <= last => Some(Unallocatable::Reserved),
            _ => None,
        }
    }
}

//! Prefix delegation rows of the core benchmark: the lowest free aligned block, in memory, on
//! the block-counting free index a prefix pool uses.

use std::hint::black_box;
use std::time::{Duration, Instant};

use ipam_core::layout::PoolLayout;

/// `n` lowest-free block decisions in `cidr` delegating `/len`; a pool that runs out is
/// refilled (its index rebuilt, not timed). Returns decisions per second.
pub fn blocks(cidr: &str, len: u8, n: usize) -> f64 {
    let layout =
        PoolLayout::delegating(cidr.parse().expect("cidr"), &[], len).expect("prefix pool");
    let mut free = layout.initial_free();
    let mut taken = 0usize;
    let mut timed = Duration::ZERO;
    while taken < n {
        let t = Instant::now();
        let mut got = 0;
        while taken + got < n {
            match free.take_lowest() {
                Some(b) => {
                    black_box(b);
                    got += 1;
                }
                None => break,
            }
        }
        timed += t.elapsed();
        taken += got;
        if taken < n {
            free = layout.initial_free();
        }
    }
    let r = super::rate(n, timed);
    println!(
        "  blocks in memory      {cidr:<14} /{len}: {n} lowest-free blocks {:>10}/s  ({:.0} ns each)",
        super::human(r),
        timed.as_nanos() as f64 / n as f64
    );
    r
}

/// Interleaved release and take on a fragmented prefix pool (every other block held).
pub fn fragmented_blocks(cidr: &str, len: u8, n: usize) -> f64 {
    let layout =
        PoolLayout::delegating(cidr.parse().expect("cidr"), &[], len).expect("prefix pool");
    let mut free = layout.initial_free();
    let held: Vec<u128> = (0..n).filter_map(|_| free.take_lowest()).collect();
    for b in held.iter().step_by(2) {
        free.release(*b);
    }
    let t = Instant::now();
    for b in held.iter().step_by(2) {
        black_box(free.take_lowest());
        free.release(*b);
    }
    let ops = held.len().div_ceil(2);
    let r = super::rate(ops, t.elapsed());
    println!(
        "  block take+release    {cidr:<14} /{len}: {} intervals {:>10} pairs/s",
        free.interval_count(),
        super::human(r)
    );
    r
}

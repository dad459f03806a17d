//! Core benchmark: the allocator's decisions in memory and allocations applied through
//! `State::apply` to a real redb file, for an IPv4 /8 and an IPv6 /64.
//!
//! A custom `harness = false` main that times fixed workloads with `Instant` and prints
//! figures: one pass of a million allocations is long enough to be stable and short enough
//! to keep the run to well under a minute on a shared 2-core machine.
//!
//! `cargo bench -p ipam-bench --bench core` (set `IPAM_BENCH_ALLOCATIONS` to change the
//! count, `IPAM_BENCH_SELECTIONS` for the selection rows of `core/select.rs`,
//! `IPAM_BENCH_SELECTIONS_ALL` for its row where every pool matches).

use std::hint::black_box;
use std::time::{Duration, Instant};

use ipam_core::command::{Command, CommandResult, Op, OpOutput};
use ipam_core::layout::PoolLayout;
use ipam_core::validate::pool_layout;
use ipam_core::{query, GatewayChoice, Labels, PoolSpec, Stamp, State};
use redb::{Durability, ReadableDatabase};

#[path = "core/delegate.rs"]
mod delegate;
#[path = "core/requests.rs"]
mod requests;
#[path = "core/select.rs"]
mod select;

const BATCH: usize = 1_000;

fn spec(name: &str, cidr: &str) -> PoolSpec {
    PoolSpec {
        name: name.to_string(),
        cidr: cidr.parse().expect("benchmark CIDR"),
        gateway: GatewayChoice::Default,
        reserved: Vec::new(),
        labels: Labels::new(),
        description: String::new(),
    }
}

fn layout(cidr: &str) -> PoolLayout {
    pool_layout(&spec("p", cidr)).expect("benchmark pool").1
}

/// CPU time this process has used (user + system), from `/proc/self/stat`; `None` where that
/// file does not exist. On a shared machine wall-clock rates drop with the neighbours' load;
/// CPU-time rates show what the code itself costs (fsync waits excluded).
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // Linux reports in USER_HZ, 100 on every mainstream configuration.
    Some(Duration::from_millis((utime + stime) * 10))
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn human(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M", r / 1e6)
    } else {
        format!("{:.1} k", r / 1e3)
    }
}

/// Lowest-free decisions alone, on the free-interval index.
fn decisions(cidr: &str, n: usize) -> f64 {
    let mut free = layout(cidr).initial_free();
    let start = Instant::now();
    for _ in 0..n {
        black_box(free.take_lowest());
    }
    let elapsed = start.elapsed();
    assert_eq!(
        free.interval_count(),
        1,
        "sequential allocation keeps one interval"
    );
    let r = rate(n, elapsed);
    println!(
        "  decisions in memory   {cidr:<14} {n} lowest-free in {:>7.1} ms  {:>10}/s  ({:.0} ns each)",
        elapsed.as_secs_f64() * 1e3,
        human(r),
        elapsed.as_nanos() as f64 / n as f64
    );
    r
}

/// Interleaved take/release on a fragmented index: the cost with many intervals.
fn fragmented(cidr: &str, n: usize) -> f64 {
    let mut free = layout(cidr).initial_free();
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        if let Some(a) = free.take_lowest() {
            held.push(a);
        }
    }
    // Free every other address: n/2 intervals.
    for a in held.iter().step_by(2) {
        free.release(*a);
    }
    let intervals = free.interval_count();
    let start = Instant::now();
    for a in held.iter().step_by(2) {
        let got = free.take_lowest();
        black_box(got);
        free.release(*a);
    }
    let elapsed = start.elapsed();
    let ops = held.len().div_ceil(2);
    let r = rate(ops, elapsed);
    println!(
        "  take+release          {cidr:<14} {intervals} intervals: {:>10} pairs/s",
        human(r)
    );
    r
}

struct Applied {
    allocs_per_s: f64,
    rows_per_s: f64,
}

/// `n` allocations through `State::apply`, `BATCH` commands per write transaction, on a file.
fn apply(cidr: &str, n: usize, durability: Durability, as_batch: bool) -> Applied {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = redb::Database::create(dir.path().join("state.redb")).expect("create db");
    let mut state = State::open(&db).expect("open state");
    let txn = db.begin_write().expect("txn");
    let created = state
        .apply(
            &txn,
            Stamp(1),
            &[
                // As a new cluster's first entry does: the event log is on from here.
                Command::Op(Op::SetFeatureLevel(ipam_core::feature::FEATURE_LEVEL)),
                Command::Op(Op::CreatePool(spec("bench", cidr))),
            ],
        )
        .expect("apply");
    txn.commit().expect("commit");
    assert!(matches!(created[1], CommandResult::Op(Ok(_))));

    let mut owner = 0u64;
    let mut commands: Vec<Command> = Vec::with_capacity(BATCH);
    let mut apply_time = Duration::ZERO;
    let start = Instant::now();
    let cpu_start = cpu_time();
    let mut done = 0;
    let label = match durability {
        Durability::None => "None",
        _ => "Immediate",
    };
    while done < n {
        let k = BATCH.min(n - done);
        let ops = (0..k).map(|_| {
            owner += 1;
            Op::Allocate {
                pool: "bench".to_string(),
                owner: format!("vm-{owner}/eth0"),
                ip: None,
                labels: Labels::new(),
            }
        });
        commands.clear();
        if as_batch {
            commands.push(Command::Batch(ops.collect()));
        } else {
            commands.extend(ops.map(Command::Op));
        }
        let mut txn = db.begin_write().expect("txn");
        txn.set_durability(durability).expect("durability");
        let t = Instant::now();
        let results = state.apply(&txn, Stamp(2), &commands).expect("apply");
        apply_time += t.elapsed();
        txn.commit().expect("commit");
        let ok = match &results[..] {
            [CommandResult::Batch(Ok(outs))] => outs.len(),
            rs => rs
                .iter()
                .filter(|r| matches!(r, CommandResult::Op(Ok(OpOutput::Allocated { .. }))))
                .count(),
        };
        assert_eq!(ok, k, "every allocation succeeds");
        done += k;
    }
    let elapsed = start.elapsed();
    let cpu = cpu_start.and_then(|c0| cpu_time().map(|c1| c1.saturating_sub(c0)));
    // Persist once durably so the check below reads what a restart would.
    let mut txn = db.begin_write().expect("txn");
    txn.set_durability(Durability::Immediate)
        .expect("durability");
    txn.commit().expect("commit");
    let rtx = db.begin_read().expect("read");
    let pool = query::pool(&rtx, "bench").expect("pool");
    assert_eq!(pool.stats.allocated, n as u128);
    // Two rows per allocation (allocation + owner index), plus the pool record and the meta
    // row once per transaction.
    let txns = n.div_ceil(BATCH);
    let rows = 2 * n + 2 * txns;
    let r = rate(n, elapsed);
    let kind = if as_batch {
        "1 Batch of 1000 ops"
    } else {
        "1000 Op commands"
    };
    let per_cpu = cpu.map_or_else(|| "n/a".to_string(), |c| format!("{}/s", human(rate(n, c))));
    println!(
        "  apply to redb {label:<9} {cidr:<14} {n} allocs, {kind}/txn: {:>6.2} s  {:>9} allocs/s  {:>9} rows/s  (apply alone {:>9}/s, per CPU-second {per_cpu})",
        elapsed.as_secs_f64(),
        human(r),
        human(rate(rows, elapsed)),
        human(rate(n, apply_time)),
    );
    // The read-through cache's lookup on the same data: one call per read transaction's
    // worth of opened tables (free function) and many calls through one `Reader`.
    let lookups = 100_000.min(n);
    let owners: Vec<String> = (0..lookups)
        .map(|i| format!("vm-{}/eth0", (i * 7919) % n + 1))
        .collect();
    let t = Instant::now();
    for owner in &owners {
        black_box(query::owner_allocation(&rtx, "bench", owner).expect("lookup"));
    }
    let free_fn = rate(lookups, t.elapsed());
    let reader = query::Reader::new(&rtx);
    let t = Instant::now();
    for owner in &owners {
        black_box(reader.owner_allocation("bench", owner).expect("lookup"));
    }
    let with_reader = rate(lookups, t.elapsed());
    println!(
        "  owner_allocation      {cidr:<14} {lookups} random lookups: {:>9}/s (query fn), {:>9}/s (one Reader)",
        human(free_fn),
        human(with_reader)
    );
    Applied {
        allocs_per_s: r,
        rows_per_s: rate(rows, elapsed),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is accepted and ignored.
    let n: usize = std::env::var("IPAM_BENCH_ALLOCATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    println!("ipam-core benchmark: {n} allocations per run, {BATCH} per write transaction");
    if std::env::var("IPAM_BENCH_ONLY").as_deref() == Ok("requests") {
        // The request-row pair alone (for profiling it).
        requests::tagged_vs_untagged("10.0.0.0/8", n);
        return;
    }
    println!("allocator index (free intervals):");
    let d4 = decisions("10.0.0.0/8", n);
    let d6 = decisions("fd00::/64", n);
    fragmented("10.0.0.0/8", n.min(200_000));
    fragmented("fd00::/64", n.min(200_000));
    let sel_n: usize = std::env::var("IPAM_BENCH_SELECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    println!("prefix delegation (free index in blocks):");
    let blk4 = delegate::blocks("10.0.0.0/8", 24, n);
    let blk6 = delegate::blocks("fd00::/32", 64, n);
    delegate::fragmented_blocks("fd00::/32", 64, n.min(200_000));
    let (dec_zone, dec_all) = select::decisions(sel_n);
    let (sel_zone, sel_all) = select::selection(sel_n);
    println!("State::apply on a redb file:");
    let a4 = apply("10.0.0.0/8", n, Durability::Immediate, false);
    let a6 = apply("fd00::/64", n, Durability::Immediate, false);
    let n4 = apply("10.0.0.0/8", n, Durability::None, false);
    let b4 = apply("10.0.0.0/8", n, Durability::Immediate, true);
    println!("request rows (every proposal is Command::Tagged):");
    let (untagged, tagged) = requests::tagged_vs_untagged("10.0.0.0/8", n.min(200_000));
    println!("summary:");
    println!(
        "  block decisions/s  /8 by /24 {}  /32 by /64 {}  (target ≥ 1 M)",
        human(blk4),
        human(blk6)
    );
    println!(
        "  selection decisions/s among 10000 pools, in memory: {} with 100 matching, {} with all matching (target ≥ 50 k)",
        human(dec_zone),
        human(dec_all)
    );
    println!(
        "  selections/s among 10000 pools, applied with the allocation: {} with 100 matching, {} with all matching",
        human(sel_zone),
        human(sel_all)
    );
    println!(
        "  decisions/s  /8 {}  /64 {}  (target ≥ 5 M)",
        human(d4),
        human(d6)
    );
    println!(
        "  /64 cost per allocation vs /8: {:.2}× in memory, {:.2}× applied (target ≤ 2×)",
        d4 / d6,
        a4.allocs_per_s / a6.allocs_per_s
    );
    println!(
        "  applied allocs/s  /8 {} ({} rows/s)  /64 {}  /8 Durability::None {}  /8 as Batch {}  (target ≥ 150 k)",
        human(a4.allocs_per_s),
        human(a4.rows_per_s),
        human(a6.allocs_per_s),
        human(n4.allocs_per_s),
        human(b4.allocs_per_s),
    );
    println!(
        "  applied allocs/s untagged {}  tagged {}  (request rows cost {:.0} % of the time)",
        human(untagged),
        human(tagged),
        (untagged / tagged - 1.0) * 100.0
    );
}

//! Request-row rows of the core benchmark: the same allocations applied untagged and as
//! `Command::Tagged` (what every proposal of the raft layer is), so the difference is the cost
//! of recording each request's id and result (`core_requests`, `core_request_ids`).
//! `Durability::None` on an in-memory redb: the CPU cost of the rows, not of the disk. Timed in
//! CPU seconds of the process (wall time on a shared machine swings with the neighbours), the
//! best of three alternating runs each.

use std::time::{Duration, Instant};

use ipam_core::command::{Command, CommandResult, Op, OpOutput};
use ipam_core::requests::RequestId;
use ipam_core::{Labels, Stamp, State};
use redb::Durability;

/// Commands per write transaction: 1,000 by default; `IPAM_BENCH_PER_TXN=15` gives the size
/// of a log entry at 64 clients (15–16 ops), where each transaction's fixed cost shows.
fn per_txn() -> usize {
    std::env::var("IPAM_BENCH_PER_TXN")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or(1_000)
}

/// Allocations per second applied untagged and tagged; prints both and the cost.
pub fn tagged_vs_untagged(cidr: &str, n: usize) -> (f64, f64) {
    // Alternate short runs so both see the same machine load; keep the best of each.
    let mut untagged = Duration::MAX;
    let mut tagged = Duration::MAX;
    for _ in 0..3 {
        untagged = untagged.min(run(cidr, n, false));
        tagged = tagged.min(run(cidr, n, true));
    }
    let (u, t) = (
        n as f64 / untagged.as_secs_f64(),
        n as f64 / tagged.as_secs_f64(),
    );
    println!(
        "  apply untagged        {cidr:<14} {n} allocs, {} per txn: {:>9.1} k/s",
        per_txn(),
        u / 1e3
    );
    println!(
        "  apply tagged (ids)    {cidr:<14} {n} allocs: {:>9.1} k/s  ({:+.1} % time per alloc; {:.2} µs each)",
        t / 1e3,
        (tagged.as_secs_f64() / untagged.as_secs_f64() - 1.0) * 100.0,
        (tagged.as_secs_f64() - untagged.as_secs_f64()) * 1e6 / n as f64,
    );
    (u, t)
}

/// `n` allocations through `State::apply`, [`per_txn`] commands per transaction; the time of
/// the applies and commits.
fn run(cidr: &str, n: usize, tag: bool) -> Duration {
    let db = redb::Database::builder()
        .create_with_backend(redb::backends::InMemoryBackend::new())
        .expect("in-memory db");
    let mut state = State::open(&db).expect("open state");
    let txn = db.begin_write().expect("txn");
    state
        .apply(
            &txn,
            Stamp(1),
            &[
                Command::Op(Op::SetFeatureLevel(ipam_core::feature::FEATURE_LEVEL)),
                Command::Op(Op::CreatePool(super::spec("bench", cidr))),
            ],
        )
        .expect("apply");
    txn.commit().expect("commit");
    // Built up front, so the timed loop is the applies and commits alone.
    let mut seq = 0u64;
    let per_txn = per_txn();
    let batches: Vec<Vec<Command>> = (0..n.div_ceil(per_txn))
        .map(|i| {
            let k = per_txn.min(n - i * per_txn);
            (0..k)
                .map(|_| {
                    seq += 1;
                    let op = Command::Op(Op::Allocate {
                        pool: "bench".to_string(),
                        owner: format!("vm-{seq}/eth0"),
                        ip: None,
                        labels: Labels::new(),
                    });
                    if tag {
                        Command::Tagged {
                            id: RequestId {
                                node: 1,
                                incarnation: 1,
                                seq,
                            },
                            key: None,
                            command: Box::new(op),
                        }
                    } else {
                        op
                    }
                })
                .collect()
        })
        .collect();
    let wall = Instant::now();
    let cpu = super::cpu_time();
    let mut ok = 0;
    for commands in &batches {
        let mut txn = db.begin_write().expect("txn");
        txn.set_durability(Durability::None).expect("durability");
        let results = state.apply(&txn, Stamp(2), commands).expect("apply");
        txn.commit().expect("commit");
        ok += results
            .iter()
            .filter(|r| matches!(r, CommandResult::Op(Ok(OpOutput::Allocated { .. }))))
            .count();
    }
    let elapsed = match (cpu, super::cpu_time()) {
        (Some(c0), Some(c1)) => c1.saturating_sub(c0),
        _ => wall.elapsed(),
    };
    assert_eq!(ok, n, "every allocation succeeds");
    let rtx = redb::ReadableDatabase::begin_read(&db).expect("read");
    let recorded = ipam_core::requests::count(&rtx).expect("count");
    assert_eq!(recorded, if tag { n as u64 } else { 0 });
    elapsed
}

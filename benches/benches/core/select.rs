//! Selection rows of the core benchmark: `Op::AllocateAny` decided by `State::apply` among
//! 10,000 pools, on an in-memory redb (the cost of the choice, not of the disk).

use std::time::Instant;

use ipam_core::command::{Command, CommandResult, Op, OpOutput};
use ipam_core::{GatewayChoice, Labels, PoolSpec, Stamp, State};

const POOLS: usize = 10_000;
const ZONES: usize = 100;
const PER_TXN: usize = 1_000;

fn labels(pairs: &[(&str, String)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// 10,000 IPv6 /64 pools, `zone` = one of 100 (100 pools each), all `region=r1`.
fn setup() -> (redb::Database, State) {
    let db = redb::Database::builder()
        .create_with_backend(redb::backends::InMemoryBackend::new())
        .expect("in-memory db");
    let mut state = State::open(&db).expect("open state");
    let ops: Vec<Command> = (0..POOLS)
        .map(|i| {
            Command::Op(Op::CreatePool(PoolSpec {
                name: format!("p{i:05}"),
                cidr: format!("fd00:0:{:x}:{:x}::/64", i / 65536, i % 65536)
                    .parse()
                    .expect("cidr"),
                gateway: GatewayChoice::Default,
                reserved: Vec::new(),
                labels: labels(&[
                    ("zone", format!("z{}", i % ZONES)),
                    ("region", "r1".to_string()),
                ]),
                description: String::new(),
            }))
        })
        .collect();
    let txn = db.begin_write().expect("txn");
    // As a new cluster's first entry does: the event log is on from here.
    let level = Command::Op(Op::SetFeatureLevel(ipam_core::feature::FEATURE_LEVEL));
    state.apply(&txn, Stamp(1), &[level]).expect("apply");
    let results = state.apply(&txn, Stamp(1), &ops).expect("apply");
    txn.commit().expect("commit");
    assert!(results
        .iter()
        .all(|r| matches!(r, CommandResult::Op(Ok(OpOutput::PoolCreated(_))))));
    (db, state)
}

/// What a row asks for: a selection, or (the floor) an allocation naming its pool.
enum Ask<'a> {
    Select(&'a Labels),
    /// Round-robin over the pools of zone z7, as the zone row fills them.
    Named,
}

/// `n` selections (or named allocations) by new owners; returns decisions per second.
fn run(db: &redb::Database, state: &mut State, what: &str, ask: Ask<'_>, n: usize) -> f64 {
    let mut done = 0;
    let mut owner = 0u64;
    let cpu0 = super::cpu_time();
    let start = Instant::now();
    while done < n {
        let k = PER_TXN.min(n - done);
        let commands: Vec<Command> = (0..k)
            .map(|_| {
                owner += 1;
                let who = format!("{what}-{owner}");
                Command::Op(match &ask {
                    Ask::Select(selector) => Op::AllocateAny {
                        owner: who,
                        selector: (*selector).clone(),
                        family: None,
                        labels: Labels::new(),
                        ttl_seconds: None,
                    },
                    Ask::Named => Op::AllocateV2 {
                        pool: format!("p{:05}", 7 + ZONES * (owner as usize % (POOLS / ZONES))),
                        owner: who,
                        ip: None,
                        labels: Labels::new(),
                        ttl_seconds: None,
                    },
                })
            })
            .collect();
        let txn = db.begin_write().expect("txn");
        let results = state.apply(&txn, Stamp(2), &commands).expect("apply");
        txn.commit().expect("commit");
        let ok = results
            .iter()
            .filter(|r| matches!(r, CommandResult::Op(Ok(OpOutput::AllocatedV2 { .. }))))
            .count();
        assert_eq!(ok, k, "every selection gives an address");
        done += k;
    }
    let elapsed = start.elapsed();
    let cpu = cpu0.and_then(|c0| super::cpu_time().map(|c1| c1.saturating_sub(c0)));
    let r = super::rate(n, elapsed);
    // On a shared machine the wall-clock rate drops with the neighbours' load; the rate per
    // CPU-second is what the code costs.
    let per_cpu = cpu.filter(|c| !c.is_zero()).map(|c| super::rate(n, c));
    println!(
        "  selection             {what:<24} {n} in {:>7.1} ms  {:>10}/s  ({:.1} µs each; per CPU-second {})",
        elapsed.as_secs_f64() * 1e3,
        super::human(r),
        elapsed.as_secs_f64() * 1e6 / n as f64,
        per_cpu.map_or_else(|| "n/a".to_string(), |c| format!("{}/s", super::human(c)))
    );
    per_cpu.unwrap_or(r)
}

/// The selection rows; returns (100 candidates, 10,000 candidates) decisions per second.
/// The second row makes `IPAM_BENCH_SELECTIONS_ALL` selections (default `n`; a build with the
/// scan of every candidate needs it low, at about 2.5 ms per selection).
pub fn selection(n: usize) -> (f64, f64) {
    let n_all: usize = std::env::var("IPAM_BENCH_SELECTIONS_ALL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(n);
    println!("selection among {POOLS} pools (State::apply, in-memory redb, {PER_TXN} per txn):");
    let (db, mut state) = setup();
    let zone = run(
        &db,
        &mut state,
        "zone=z7 (100 match)",
        Ask::Select(&labels(&[("zone", "z7".to_string())])),
        n,
    );
    let all = run(
        &db,
        &mut state,
        "region=r1 (10000 match)",
        Ask::Select(&labels(&[("region", "r1".to_string())])),
        n_all.max(1),
    );
    // The same allocations naming their pool: what the choice adds is the difference.
    run(&db, &mut state, "named pool (no choice)", Ask::Named, n);
    (zone, all)
}

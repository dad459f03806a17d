//! Power loss, not SIGKILL: the data dir (redb stores, the log's segments, snapshot files,
//! `current.meta`, the small id files) is on a simulated disk (`support/power_cut.rs`) that
//! drops every write not yet synced (or keeps a random subset of its pages) when the power is
//! cut, after a random number of disk operations or at a random call in the snapshot dir or on
//! a small file. After the restart every acknowledged write must be there and the state must
//! pass the integrity check. Every other data dir has 512-byte log segments, so the log rolls
//! over to a new segment every few entries and purges remove whole segments between cut
//! points.
//!
//! The seed is printed; `IPAM_POWER_SEED=<seed>` replays its cut points and modes (which
//! operation a cut hits still depends on thread scheduling), `IPAM_POWER_CYCLES` changes the
//! number of cut points, `IPAM_POWER_DEBUG=1` prints each start's status.

use crate::support;
use crate::support::nodes::SERIAL;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipam_core::PoolSpec;
use ipam_raft::{Config, Consistency, Ipam, IpamError};
use support::power_cut::{is_small_file, is_snapshot, kind, Cut, PowerCutDisk, Rng};

/// Cut points of the one-node test.
const CYCLES: u64 = 1_000;
/// Power cycles on one data dir before a fresh one, so the state (and each reopen) stays small.
const LIFE: u64 = 25;
/// Concurrent writers and allocations each per power cycle.
const WRITERS: usize = 3;
const WRITES: usize = 3;
const WAIT: Duration = Duration::from_secs(20);

fn seed() -> u64 {
    std::env::var("IPAM_POWER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}

fn cycles() -> u64 {
    std::env::var("IPAM_POWER_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(CYCLES)
}

fn spec() -> PoolSpec {
    support::pools::vms("10.0.0.0/16")
}

/// How a data dir's node is set up for all its power cycles.
#[derive(Clone, Copy)]
struct Life {
    /// Entries per durable apply.
    durable_every: u64,
    /// Size of a new log segment (`None`: the simulated disk's default).
    segment_bytes: Option<u64>,
}

/// A single-voter node on `disk`: fast elections, frequent snapshots (so builds and log
/// purges fall between cut points).
fn config(dir: &std::path::Path, disk: &Arc<PowerCutDisk>, life: Life) -> Config {
    let mut c = Config::new(1, dir, "127.0.0.1:9");
    c.set_disk(disk.disk());
    if let Some(bytes) = life.segment_bytes {
        c.set_wal_segment_bytes(bytes);
    }
    c.heartbeat = Duration::from_millis(5);
    c.election_timeout = (Duration::from_millis(10), Duration::from_millis(20));
    c.snapshot_logs = 20;
    c.max_in_snapshot_log_to_keep = 2;
    c.durable_every_entries = life.durable_every;
    c.durable_interval = Duration::from_secs(3600);
    c.write_deadline = Duration::from_secs(5);
    c.read_deadline = Duration::from_secs(5);
    c
}

/// Polls `cond` until it holds (`Ok(true)`), the power is off (`Ok(false)`) or the deadline.
async fn until(disk: &PowerCutDisk, what: &str, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + WAIT;
    loop {
        if cond() {
            return true;
        }
        if disk.is_off() {
            return false;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Every allocation of pool `vms`, by owner.
async fn allocations(ipam: &Ipam) -> Result<BTreeMap<String, Vec<IpAddr>>, IpamError> {
    let mut out: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
    let mut after = None;
    loop {
        let page = ipam
            .allocations("vms", None, after, 1000, Consistency::Linearizable)
            .await?;
        for a in page.allocations {
            out.entry(a.owner).or_default().push(a.ip);
        }
        match page.next {
            Some(n) => after = Some(n),
            None => return Ok(out),
        }
    }
}

/// What one data dir has acknowledged so far.
#[derive(Default)]
struct Acked {
    initialized: bool,
    pool: bool,
    allocations: BTreeMap<String, IpAddr>,
}

/// Checks that every acknowledged allocation is there, once, and the state is sound. `Ok(false)`
/// when the power went off during the check.
async fn verify(ipam: &Ipam, acked: &Acked, ctx: &str) -> bool {
    if !acked.pool {
        return true;
    }
    let held = match allocations(ipam).await {
        Ok(h) => h,
        Err(_) => return false,
    };
    for (owner, ip) in &acked.allocations {
        assert_eq!(
            held.get(owner).map(Vec::as_slice),
            Some(std::slice::from_ref(ip)),
            "{ctx}: acknowledged allocation {owner} -> {ip} lost or duplicated"
        );
    }
    match ipam.check(false).await {
        Ok(report) => assert!(
            report.problems.is_empty(),
            "{ctx}: integrity check: {:?}",
            report.problems
        ),
        Err(_) => return false,
    }
    true
}

/// One power cycle: start on what survived, check it, write until the armed cut (or the end of
/// the writes, then cut), stop.
async fn power_cycle(
    dir: &std::path::Path,
    disk: &Arc<PowerCutDisk>,
    life: Life,
    acked: &mut Acked,
    ctx: &str,
) {
    let ipam = match Ipam::start(config(dir, disk, life)).await {
        Ok(i) => i,
        Err(e) => {
            assert!(
                disk.is_off(),
                "{ctx}: start failed with the power on: {e:?}"
            );
            return;
        }
    };
    let run = async {
        if !acked.initialized {
            match ipam.init(Vec::new()).await {
                Ok(()) | Err(IpamError::AlreadyInitialized) => acked.initialized = true,
                Err(_) => return,
            }
        }
        let leader = format!("{ctx}: a leader");
        if std::env::var("IPAM_POWER_DEBUG").is_ok() {
            eprintln!(
                "{ctx}: started, ops {} status {:?}",
                disk.ops(),
                ipam.status()
            );
        }
        if !until(disk, &leader, || ipam.status().leader == Some(1)).await {
            return;
        }
        if !verify(&ipam, acked, ctx).await {
            return;
        }
        if !acked.pool {
            match ipam.create_pool(spec()).await {
                Ok(_) => acked.pool = true,
                Err(IpamError::Op(e)) => {
                    // Created before the last cut, answered after it: it survived.
                    assert!(e.to_string().contains("exists"), "{ctx}: create pool: {e}");
                    acked.pool = true;
                }
                Err(_) => return,
            }
        }
        let got = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let (ipam, got) = (ipam.clone(), got.clone());
            let prefix = format!("{ctx}-w{w}");
            tasks.push(tokio::spawn(async move {
                for i in 0..WRITES {
                    let owner = format!("{prefix}-{i}");
                    match ipam.allocate("vms", &owner, None, BTreeMap::new()).await {
                        Ok((a, _)) => got.lock().expect("lock").push((owner, a.ip)),
                        Err(_) => return,
                    }
                }
            }));
        }
        for t in tasks {
            t.await.expect("writer");
        }
        let got = std::mem::take(&mut *got.lock().expect("lock"));
        acked.allocations.extend(got);
    };
    run.await;
    disk.cut(Cut::AllPendingLost);
    let _ = ipam.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_1000_power_cuts() {
    let _serial = SERIAL.lock().await;
    let seed = seed();
    let cycles = cycles();
    println!("power-loss seed {seed} ({cycles} cut points); replay: IPAM_POWER_SEED={seed}");
    let mut rng = Rng::new(seed);
    let started = Instant::now();
    let mut done = 0;
    let mut total_acks = 0;
    let mut hit: BTreeMap<&'static str, u64> = BTreeMap::new();
    while done < cycles {
        let dir = tempfile::tempdir().expect("tmp");
        let disk = PowerCutDisk::new(rng.next_u64());
        let life = Life {
            durable_every: [1, 4, 1_000_000][rng.range(0, 2) as usize],
            segment_bytes: (done / LIFE).is_multiple_of(2).then_some(512),
        };
        let mut acked = Acked::default();
        for _ in 0..LIFE.min(cycles - done) {
            let how = if rng.coin() {
                Cut::AllPendingLost
            } else {
                Cut::RandomPages
            };
            // A quarter of the cuts land in a snapshot build or publish, an eighth in a small
            // file's atomic write (most at start: the incarnation).
            let (k, on) = match rng.range(0, 7) {
                0 | 1 => (rng.range(1, 12), "snapshot "),
                2 => (rng.range(1, 6), "small-file "),
                _ => (rng.range(1, 400), ""),
            };
            match on {
                "snapshot " => disk.arm_on(is_snapshot, k, how),
                "small-file " => disk.arm_on(is_small_file, k, how),
                _ => disk.arm(k, how),
            }
            let ctx = format!("seed {seed} cycle {done} (cut after {k} {on}ops, {how:?})");
            power_cycle(dir.path(), &disk, life, &mut acked, &ctx).await;
            disk.power_on();
            done += 1;
        }
        // Last look at this data dir with the power staying on.
        let ipam = Ipam::start(config(dir.path(), &disk, life))
            .await
            .expect("final start");
        if acked.initialized {
            let ok = until(&disk, "a leader", || ipam.status().leader == Some(1)).await;
            assert!(ok, "seed {seed}: power off at the final check");
            assert!(
                verify(&ipam, &acked, &format!("seed {seed} final")).await,
                "seed {seed}: power off at the final check"
            );
        }
        ipam.shutdown().await.expect("shutdown");
        total_acks += acked.allocations.len();
        for p in disk.cut_paths() {
            *hit.entry(kind(&p)).or_default() += 1;
        }
    }
    println!(
        "{done} power cuts, {total_acks} acknowledged allocations checked in {:?}; armed cuts \
         hit {hit:?}",
        started.elapsed()
    );
    assert!(total_acks > 0, "no write was ever acknowledged");
    if cycles >= 100 {
        for what in ["snapshot", "small file", "wal", "log", "state"] {
            assert!(
                hit.get(what).is_some_and(|n| *n > 0),
                "no cut hit a {what} file: {hit:?}"
            );
        }
    }
}

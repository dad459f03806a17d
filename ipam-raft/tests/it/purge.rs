//! The log purge holds for a member a snapshot was sent to: a learner joining while the leader
//! keeps writing — and building a newer snapshot every few entries, keeping no log behind it —
//! installs one snapshot and catches up from the log after it, instead of finding the entries
//! after its snapshot purged and needing another.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipam_core::Op;
use ipam_raft::Config;
use tempfile::TempDir;

use crate::support::nodes::{lone_leader, start_with, TestNode, SERIAL, WAIT};

/// A snapshot every 5 entries, no log kept behind it, 1 KiB chunks: the join's snapshot takes
/// thousands of chunks, and the leader builds several newer ones meanwhile.
fn small_snapshots(c: &mut Config) {
    c.snapshot_logs = 5;
    c.max_in_snapshot_log_to_keep = 0;
    c.snapshot_max_chunk_size = 1024;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_joining_under_writes_installs_one_snapshot() {
    let _serial = SERIAL.lock().await;
    let dir = TempDir::new().expect("tempdir");
    let n1 = lone_leader(dir.path(), "10.0.0.0/16", small_snapshots).await;
    // ~10,000 allocations: a snapshot of a few MiB.
    for b in 0..20 {
        let ops = (0..500)
            .map(|k| Op::Allocate {
                pool: "vms".to_owned(),
                owner: format!("vm-{b}-{k}"),
                ip: None,
                labels: BTreeMap::new(),
            })
            .collect();
        n1.ipam.batch(ops).await.expect("batch");
    }
    // Its purge (up to the newest snapshot) comes within a tick of the build.
    let deadline = Instant::now() + WAIT;
    while n1.ipam.purged_index().is_none() {
        assert!(Instant::now() < deadline, "the leader never purged its log");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // One entry per write until the learner has caught up (at most 3,000).
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let ipam = n1.ipam.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < 3_000 {
                ipam.allocate("vms", &format!("w-{n}"), None, BTreeMap::new())
                    .await
                    .expect("allocate");
                n += 1;
            }
            n
        })
    };
    let n2: TestNode = start_with(2, dir.path(), small_snapshots).await;
    n1.ipam
        .add_learner(2, n2.addr.clone())
        .await
        .expect("add learner");
    stop.store(true, Ordering::Relaxed);
    let writes = writer.await.expect("writer");
    let target = n1.ipam.status().last_log_index;
    n2.ipam
        .wait_for(WAIT, |s| s.applied_index >= target)
        .await
        .expect("learner caught up");

    let installs = n2.ipam.snapshots_installed();
    let purged = n1.ipam.purged_index();
    eprintln!("{writes} writes during the join; learner installs: {installs}; leader purged to {purged:?}");
    assert_eq!(
        installs, 1,
        "the learner needed another snapshot: the log after its first was purged"
    );
    // The hold ends once the learner has passed the newest snapshot: with no log kept, the
    // leader purges up to its newest snapshot.
    let deadline = Instant::now() + WAIT;
    while n1.ipam.purged_index() != n1.ipam.snapshot_index() {
        assert!(
            Instant::now() < deadline,
            "the leader's purge stayed at {:?}, its snapshot is at {:?}",
            n1.ipam.purged_index(),
            n1.ipam.snapshot_index()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

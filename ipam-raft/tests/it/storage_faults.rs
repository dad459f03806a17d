//! Issue 12's defects 6 and 7, provoked through the simulated disk (`support/power_cut.rs`):
//!
//! - defect 7: a write whose append fails on the disk stops raft with a fatal error; the entry
//!   may be in the log, so the caller hears `DeadlineExceeded` (may have committed), never
//!   `ShuttingDown`.
//! - defect 6: installing a snapshot must not hold the state lock through file I/O. On a
//!   single-threaded runtime a local read must complete while the install's directory fsync is
//!   held; with the lock held through it, the read blocks the only executor thread.

use crate::support;
use crate::support::nodes::SERIAL;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ipam_core::PoolSpec;
use ipam_raft::{Config, Ipam, IpamError};
use support::power_cut::{Cut, PowerCutDisk};

const WAIT: Duration = Duration::from_secs(20);

fn spec() -> PoolSpec {
    support::pools::vms("10.0.0.0/16")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_cut_by_a_disk_failure_may_have_committed() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tmp");
    let disk = PowerCutDisk::new(7);
    let mut c = Config::new(1, dir.path(), "127.0.0.1:9");
    c.set_disk(disk.disk());
    // No background flush: the next disk write is the allocation's append.
    c.durable_interval = Duration::from_secs(3600);
    c.durable_every_entries = 1_000_000;
    let ipam = Ipam::start(c).await.expect("start");
    ipam.init(Vec::new()).await.expect("init");
    ipam.wait_for(WAIT, |s| s.leader == Some(1))
        .await
        .expect("leader");
    ipam.create_pool(spec()).await.expect("pool");
    disk.arm(1, Cut::AllPendingLost);
    let res = ipam.allocate("vms", "vm-1", None, BTreeMap::new()).await;
    assert!(disk.is_off(), "the allocation did not reach the disk");
    assert!(
        matches!(res, Err(IpamError::DeadlineExceeded { .. })),
        "a write that may be in the log must say it may apply: {res:?}"
    );
    let _ = ipam.shutdown().await;
}

/// A node serving its raft routes on an ephemeral port; returns it and its address.
async fn node(id: u64, root: &std::path::Path, tweak: impl FnOnce(&mut Config)) -> (Ipam, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let mut c = Config::new(id, root.join(format!("n{id}")), addr.clone());
    c.heartbeat = Duration::from_millis(50);
    c.election_timeout = (Duration::from_millis(300), Duration::from_millis(600));
    tweak(&mut c);
    let ipam = Ipam::start(c).await.expect("start");
    let router = ipam.raft_router();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (ipam, addr)
}

/// Current-thread runtime: every task, the reader included, runs on one executor thread.
#[tokio::test(flavor = "current_thread")]
async fn a_local_read_completes_while_a_snapshot_install_syncs() {
    let _serial = SERIAL.lock().await;
    let root = tempfile::tempdir().expect("tmp");
    // The leader purges its log behind each snapshot, so a new learner needs one.
    let (leader, _) = node(1, root.path(), |c| {
        c.snapshot_logs = 10;
        c.max_in_snapshot_log_to_keep = 0;
    })
    .await;
    leader.init(Vec::new()).await.expect("init");
    leader
        .wait_for(WAIT, |s| s.leader == Some(1))
        .await
        .expect("leader");
    leader.create_pool(spec()).await.expect("pool");
    for i in 0..30 {
        leader
            .allocate("vms", &format!("vm-{i}"), None, BTreeMap::new())
            .await
            .expect("allocate");
    }
    let disk = PowerCutDisk::new(6);
    let (learner, learner_addr) = node(2, root.path(), |c| c.set_disk(disk.disk())).await;
    // The install's directory fsync, after the new state file is renamed into place.
    let gate = disk.gate_sync_dir_after_rename(|p| p.ends_with("state.redb"));
    let adding = {
        let (leader, addr) = (leader.clone(), learner_addr);
        tokio::spawn(async move { leader.add_learner(2, addr).await })
    };
    let deadline = Instant::now() + WAIT;
    while !gate.entered() {
        assert!(
            Instant::now() < deadline,
            "the learner never installed a snapshot"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A watchdog off the runtime: lets the install through once the read is done, or after a
    // deadline if the read cannot run (which fails the test below instead of hanging it).
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let watchdog = {
        let gate = gate.clone();
        std::thread::spawn(move || {
            let in_time = done_rx.recv_timeout(Duration::from_secs(10)).is_ok();
            gate.release();
            in_time
        })
    };
    learner
        .digest()
        .await
        .expect("a local read during the install");
    let _ = done_tx.send(());
    let in_time = tokio::task::spawn_blocking(move || watchdog.join().expect("watchdog"))
        .await
        .expect("join");
    assert!(
        in_time,
        "the local read waited for the install's directory fsync (state lock held through I/O)"
    );
    adding.await.expect("task").expect("learner added");
    learner.shutdown().await.expect("shutdown");
    leader.shutdown().await.expect("shutdown");
}

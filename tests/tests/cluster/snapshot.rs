//! Catching up from a snapshot, when the logs a node needs are purged: a learner joins after
//! 20,000 allocations, is promoted to voter, then a voter is removed and the cluster keeps
//! allocating; and a restarted node installs a snapshot over its old state while serving
//! reads.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use ipam_core::{Labels, Op, OpOutput};
use ipam_raft::MemberRole;
use ipam_raft::{Consistency, Ipam};
use ipam_tests::{bounded, wait_until, Cluster, WAIT};

const POOL: &str = "vms";
const BATCHES: usize = 20;
const BATCH_OPS: usize = 1_000;
const LEARNER: u64 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learner_catches_up_from_a_snapshot_is_promoted_and_a_voter_is_removed() {
    bounded(Duration::from_secs(180), async {
        // The learner's logs are gone; it never builds a snapshot itself, so a snapshot it has
        // is one it installed.
        let mut cluster = snapshotting_cluster(LEARNER).await;
        let leader = cluster.leader_with_pool(POOL, "10.0.0.0/16").await;

        let mut acked = allocate_batches(cluster.ipam(leader), "vm", BATCHES).await;
        assert_eq!(acked.len(), BATCHES * BATCH_OPS);
        cluster.converge().await;

        wait_snapshot(&cluster, leader).await;
        let ipam = cluster.ipam(leader).clone();
        wait_until("the leader to purge its first logs", WAIT, || async {
            match ipam.purged_index() {
                Some(p) if p > 0 => Ok(()),
                other => Err(format!("purged {other:?}")),
            }
        })
        .await;

        let addr = cluster.add_node(LEARNER).await;
        cluster
            .ipam(leader)
            .add_learner(LEARNER, addr)
            .await
            .expect("add learner");
        cluster.wait_role(LEARNER, Some(MemberRole::Learner)).await;
        assert!(
            has_snapshot(&cluster, LEARNER),
            "the learner caught up without installing a snapshot"
        );
        cluster.converge().await;
        assert_eq!(
            cluster.assert_holds(POOL, &acked).await,
            BATCHES * BATCH_OPS
        );

        cluster
            .ipam(leader)
            .promote_voter(LEARNER)
            .await
            .expect("promote learner");
        cluster.wait_role(LEARNER, Some(MemberRole::Voter)).await;

        let leader = cluster.wait_leader().await;
        let removed = *cluster
            .followers(leader)
            .iter()
            .find(|id| **id != LEARNER)
            .expect("a follower that is not the new voter");
        cluster
            .ipam(leader)
            .remove_member(removed)
            .await
            .expect("remove member");
        cluster.wait_role(removed, None).await;
        cluster.stop(removed).await;

        let remaining = cluster.running();
        assert_eq!(remaining.len(), 3);
        acked.extend(cluster.allocate_many(&remaining, POOL, "after", 100).await);
        cluster.converge().await;
        assert_eq!(cluster.assert_holds(POOL, &acked).await, acked.len());
        cluster.shutdown().await;
    })
    .await
}

/// Waits until node `id` has built (or installed) a snapshot.
async fn wait_snapshot(cluster: &Cluster, id: u64) {
    wait_until(&format!("node {id} to hold a snapshot"), WAIT, || async {
        match has_snapshot(cluster, id) {
            true => Ok(()),
            false => Err("no snapshot yet".to_owned()),
        }
    })
    .await
}

/// Whether node `id` holds a snapshot. No public API reports snapshots yet, so this looks
/// where ipam-raft's state machine keeps the current one: `<data dir>/snapshots/current.meta`.
fn has_snapshot(cluster: &Cluster, id: u64) -> bool {
    cluster
        .data_dir(id)
        .join("snapshots")
        .join("current.meta")
        .is_file()
}

/// Three voters that snapshot every 10 logs, keep none after a snapshot and send snapshots in
/// 64 KiB chunks; node `installer` never builds one itself (it may not exist yet).
async fn snapshotting_cluster(installer: u64) -> Cluster {
    Cluster::builder(3)
        .config(move |c| {
            c.snapshot_logs = if c.id == installer { 1_000_000 } else { 10 };
            c.max_in_snapshot_log_to_keep = 0;
            // Small chunks: a snapshot of 20,000 allocations (about 1 MiB) crosses in many
            // requests.
            c.snapshot_max_chunk_size = 64 * 1024;
        })
        .start()
        .await
}

/// Allocates `batches` × 1,000 owners `{prefix}-{n}` on `ipam`, one `batch` call (one log
/// entry) per 1,000; asserts each op made a new allocation. Returns owner → address.
async fn allocate_batches(ipam: &Ipam, prefix: &str, batches: usize) -> BTreeMap<String, IpAddr> {
    let mut acked = BTreeMap::new();
    for b in 0..batches {
        let ops = (0..BATCH_OPS)
            .map(|k| Op::Allocate {
                pool: POOL.to_owned(),
                owner: format!("{prefix}-{}", b * BATCH_OPS + k),
                ip: None,
                labels: Labels::new(),
            })
            .collect();
        let outputs = ipam.batch(ops).await.expect("batch");
        assert_eq!(outputs.len(), BATCH_OPS);
        for output in outputs {
            match output {
                OpOutput::Allocated {
                    allocation,
                    existing: false,
                } => {
                    acked.insert(allocation.owner, allocation.ip);
                }
                other => panic!("batch op answered {other:?}"),
            }
        }
    }
    acked
}

/// A node stopped while the others write and purge comes back with its old state, installs a
/// snapshot over it, and answers local reads throughout without an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_node_installs_a_snapshot_over_its_old_state_while_serving_reads() {
    const BEHIND: u64 = 3;
    bounded(Duration::from_secs(120), async {
        // Node 3 may be leader or follower: either way the others snapshot and purge while
        // it is down.
        let mut cluster = snapshotting_cluster(BEHIND).await;
        cluster.leader_with_pool(POOL, "10.0.0.0/16").await;
        let mut acked = cluster
            .allocate_many(&cluster.running(), POOL, "before", 100)
            .await;
        cluster.converge().await;
        assert!(!has_snapshot(&cluster, BEHIND));

        let behind_at = cluster.stop(BEHIND).await.last_log_index;
        let leader = cluster.wait_leader().await;
        acked.extend(allocate_batches(cluster.ipam(leader), "while-down", 12).await);
        wait_snapshot(&cluster, leader).await;
        // The leader purges behind its snapshot once the state it covers is durable (at most
        // `durable_interval` later): only then can the stopped node not catch up from the log.
        let ipam = cluster.ipam(leader).clone();
        wait_until(
            "the leader to purge past the stopped node's log",
            WAIT,
            || async {
                match ipam.purged_index() {
                    Some(p) if p > behind_at => Ok(()),
                    other => Err(format!(
                        "purged {other:?}, the stopped node has {behind_at}"
                    )),
                }
            },
        )
        .await;

        cluster.restart(BEHIND).await;
        let reader = {
            let ipam = cluster.ipam(BEHIND).clone();
            let done = tokio::sync::watch::channel(false);
            let (stop, mut stopped) = done;
            let task = tokio::spawn(async move {
                let (mut reads, mut errors) = (0usize, Vec::new());
                while !*stopped.borrow_and_update() {
                    let pool = ipam.pool(POOL, Consistency::Local).await;
                    let page = ipam
                        .allocations(POOL, None, None, 10, Consistency::Local)
                        .await;
                    reads += 2;
                    errors.extend(pool.err().into_iter().map(|e| format!("pool: {e:?}")));
                    errors.extend(
                        page.err()
                            .into_iter()
                            .map(|e| format!("allocations: {e:?}")),
                    );
                    tokio::task::yield_now().await;
                }
                (reads, errors)
            });
            (stop, task)
        };
        cluster.converge().await;
        let (stop, task) = reader;
        stop.send(true).expect("reader alive");
        let (reads, errors) = task.await.expect("reader task");
        assert!(reads > 0);
        assert!(
            errors.is_empty(),
            "{} of {reads} local reads failed during catch-up: {:?}",
            errors.len(),
            &errors[..errors.len().min(5)]
        );
        assert!(
            has_snapshot(&cluster, BEHIND),
            "the node caught up without installing a snapshot"
        );
        assert_eq!(cluster.assert_holds(POOL, &acked).await, acked.len());
        cluster.shutdown().await;
    })
    .await
}

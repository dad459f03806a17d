//! Nodes stop and restart from their files. The leader stops while writers are busy; the
//! survivors elect a new leader and keep allocating; the old leader restarts and catches up.
//! The whole cluster stops and comes back with the same state. No acknowledged allocation is
//! lost.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipam_core::Labels;
use ipam_raft::{Config, Consistency, Ipam, IpamError, StartError};
use ipam_tests::{
    allocate_retrying, bounded, is_unavailable, owner_map, pool_spec, scan, wait_until, Cluster,
    WAIT,
};

const POOL: &str = "vms";
/// Writer tasks per surviving node, and allocations each makes one after the other.
const WRITERS_PER_NODE: usize = 4;
const PER_WRITER: usize = 40;
/// Allocations made one after the other (one log entry each) before a whole-cluster restart.
const SEQUENTIAL: usize = 45;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_stop_elects_a_new_leader_and_the_old_one_catches_up_from_its_files() {
    bounded(Duration::from_secs(150), async {
        let mut cluster = Cluster::builder(3)
            .config(|c| c.write_deadline = Duration::from_secs(3))
            .start()
            .await;
        let old_leader = cluster.wait_leader().await;
        let old_term = cluster.ipam(old_leader).status().term;
        cluster
            .ipam(old_leader)
            .create_pool(pool_spec(POOL, "10.0.0.0/16"))
            .await
            .expect("create pool");
        let before = cluster
            .allocate_many(&cluster.running(), POOL, "before", 300)
            .await;
        let mut acked = before.clone();

        // Writers on the future survivors, running across the stop. Each retries an owner
        // until it is acknowledged: allocation is idempotent by owner, so a write that timed
        // out but committed comes back as the owner's existing allocation.
        let survivors = cluster.followers(old_leader);
        let progress = Arc::new(AtomicUsize::new(0));
        let mut writers = Vec::new();
        for (n, &id) in survivors.iter().enumerate() {
            for w in 0..WRITERS_PER_NODE {
                let ipam = cluster.ipam(id).clone();
                let progress = progress.clone();
                writers.push(tokio::spawn(async move {
                    let mut acked = BTreeMap::new();
                    let (mut write_errors, mut read_errors) = (Vec::new(), Vec::new());
                    for k in 0..PER_WRITER {
                        let owner = format!("during-{n}-{w}-{k}");
                        let (allocation, retried) =
                            allocate_retrying(&ipam, POOL, &owner, WAIT).await;
                        assert_eq!(allocation.owner, owner);
                        write_errors.extend(retried);
                        // Read-your-writes across the failover: a linearizable read after the
                        // acknowledgement sees it (retrying unavailability like the write).
                        let failed = std::sync::Mutex::new(Vec::new());
                        let (failed_ref, ipam_ref, owner_ref) = (&failed, &ipam, &owner);
                        let seen = wait_until(&format!("a read of {owner}"), WAIT, || async move {
                            ipam_ref
                                .owner_allocations(owner_ref, Consistency::Linearizable)
                                .await
                                .map_err(|error| {
                                    let observed = format!("{error:?}");
                                    failed_ref.lock().unwrap().push(error);
                                    observed
                                })
                        })
                        .await;
                        read_errors.extend(failed.into_inner().unwrap());
                        assert_eq!(seen, vec![allocation.clone()], "read after ack of {owner}");
                        acked.insert(owner, allocation.ip);
                        progress.fetch_add(1, Ordering::Relaxed);
                    }
                    (acked, write_errors, read_errors)
                }));
            }
        }
        wait_until("writers to make progress", WAIT, || async {
            match progress.load(Ordering::Relaxed) {
                n if n >= 40 => Ok(()),
                n => Err(format!("{n} acknowledged")),
            }
        })
        .await;
        let at_stop = cluster.stop(old_leader).await;
        assert!(at_stop.applied_index > 0);

        let new_leader = cluster.wait_new_leader(old_leader).await;
        assert!(
            cluster.ipam(new_leader).status().term > old_term,
            "a new leader needs a new term"
        );
        let (mut write_errors, mut read_errors) = (Vec::new(), Vec::new());
        for writer in futures::future::join_all(writers).await {
            let (written, write_retried, read_retried) = writer.expect("writer task");
            acked.extend(written);
            write_errors.extend(write_retried);
            read_errors.extend(read_retried);
        }
        let after = cluster.allocate_many(&survivors, POOL, "after", 200).await;
        acked.extend(after);

        // Back from its own files first: cut off, it recovers everything it had applied.
        cluster.restart_isolated(old_leader).await;
        cluster
            .wait_applied(old_leader, at_stop.applied_index)
            .await;
        let recovered = owner_map(&scan(cluster.ipam(old_leader), POOL, Consistency::Local).await);
        for (owner, ip) in &before {
            assert_eq!(
                recovered.get(owner),
                Some(ip),
                "{owner} lost across the restart"
            );
        }
        cluster.isolate(old_leader, false);
        cluster.converge().await;
        let expected = 300 + survivors.len() * WRITERS_PER_NODE * PER_WRITER + 200;
        assert_eq!(acked.len(), expected);
        // Every owner was retried until acknowledged, so the replicas hold exactly these.
        assert_eq!(cluster.assert_holds(POOL, &acked).await, expected);
        // The survivors stayed up throughout: while the leader went away they may say "no
        // leader" or "deadline exceeded", nothing else (not, say, that they are shutting down).
        let wrong_reads: Vec<_> = read_errors.iter().filter(|e| !is_unavailable(e)).collect();
        let wrong_writes: Vec<_> = write_errors.iter().filter(|e| !is_unavailable(e)).collect();
        assert!(
            wrong_reads.is_empty() && wrong_writes.is_empty(),
            "survivors answered errors other than NoLeader, DeadlineExceeded or Overloaded: \
             linearizable reads {wrong_reads:?}, writes {wrong_writes:?}"
        );
        cluster.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_cluster_restart_recovers_the_same_state_from_files() {
    bounded(Duration::from_secs(90), async {
        // Frequent snapshots and no logs kept after them: recovery must combine a snapshot,
        // the state file and the remaining logs correctly.
        let mut cluster = Cluster::builder(3)
            .config(|c| {
                c.snapshot_logs = 10;
                c.max_in_snapshot_log_to_keep = 0;
            })
            .start()
            .await;
        cluster.leader_with_pool(POOL, "10.0.0.0/16").await;
        let mut acked = cluster
            .allocate_many(&cluster.running(), POOL, "before", 500)
            .await;
        // One entry each: enough entries for several snapshots and purges.
        for k in 0..SEQUENTIAL {
            let ipam = cluster.ipam(cluster.running()[k % 3]);
            let owner = format!("seq-{k}");
            let (allocation, _) = ipam
                .allocate(POOL, &owner, None, Default::default())
                .await
                .expect("sequential allocation");
            acked.insert(owner, allocation.ip);
        }
        let digest = cluster.converge().await;

        let stopped = cluster.ipam(1).clone();
        let mut at_stop = Vec::new();
        for id in cluster.running() {
            at_stop.push(cluster.stop(id).await);
        }

        // A stopped handle answers at once that it is shutting down; shutdown is idempotent.
        let started = Instant::now();
        let error = stopped
            .allocate(POOL, "after-stop", None, Labels::new())
            .await
            .expect_err("a stopped node cannot allocate");
        assert!(matches!(error, IpamError::ShuttingDown), "{error:?}");
        let error = stopped
            .pool(POOL, Consistency::Local)
            .await
            .expect_err("a stopped node cannot read");
        assert!(matches!(error, IpamError::ShuttingDown), "{error:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        stopped.shutdown().await.expect("a second shutdown");
        drop(stopped);

        // A data dir belongs to its node id.
        let wrong_id = Config::new(99, cluster.data_dir(1), cluster.addr(1));
        match Ipam::start(wrong_id).await {
            Err(StartError::NodeIdMismatch {
                recorded: 1,
                configured: 99,
                ..
            }) => {}
            Err(error) => panic!("starting node 99 on node 1's data dir: {error:?}"),
            Ok(_) => panic!("node 99 started on node 1's data dir"),
        }

        // Each node alone, from its own files, gets back to the state it had.
        for status in &at_stop {
            cluster.restart_isolated(status.id).await;
        }
        for status in &at_stop {
            cluster.wait_applied(status.id, status.applied_index).await;
            let recovered = cluster.ipam(status.id).digest().await.expect("digest");
            assert_eq!(
                recovered, digest,
                "node {} recovered another state",
                status.id
            );
        }

        for status in &at_stop {
            cluster.isolate(status.id, false);
        }
        cluster.wait_leader().await;
        acked.extend(
            cluster
                .allocate_many(&cluster.running(), POOL, "after", 100)
                .await,
        );
        cluster.converge().await;
        assert_eq!(cluster.assert_holds(POOL, &acked).await, 600 + SEQUENTIAL);
        cluster.shutdown().await;
    })
    .await
}

//! A learner joins after 20,000 allocations whose logs are already purged, so it can only
//! catch up from a snapshot; it is promoted to voter; then a voter is removed and the cluster
//! keeps allocating.

use std::collections::BTreeMap;
use std::time::Duration;

use ipam_core::{Labels, Op, OpOutput};
use ipam_raft::MemberRole;
use ipam_tests::{bounded, pool_spec, wait_until, Cluster, WAIT};

const POOL: &str = "vms";
const BATCHES: usize = 20;
const BATCH_OPS: usize = 1_000;
const LEARNER: u64 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learner_catches_up_from_a_snapshot_is_promoted_and_a_voter_is_removed() {
    bounded(Duration::from_secs(180), async {
        // A snapshot every 10 logs, none kept after it: the learner's logs are gone. The
        // learner itself never builds one, so a snapshot it has must be one it installed.
        let mut cluster = Cluster::builder(3)
            .config(|c| {
                c.snapshot_logs = if c.id == LEARNER { 1_000_000 } else { 10 };
                c.max_in_snapshot_log_to_keep = 0;
            })
            .start()
            .await;
        let leader = cluster.wait_leader().await;
        cluster
            .ipam(leader)
            .create_pool(pool_spec(POOL, "10.0.0.0/16"))
            .await
            .expect("create pool");

        let mut acked = BTreeMap::new();
        for b in 0..BATCHES {
            let ops = (0..BATCH_OPS)
                .map(|k| Op::Allocate {
                    pool: POOL.to_owned(),
                    owner: format!("vm-{}", b * BATCH_OPS + k),
                    ip: None,
                    labels: Labels::new(),
                })
                .collect();
            let outputs = cluster.ipam(leader).batch(ops).await.expect("batch");
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
        assert_eq!(acked.len(), BATCHES * BATCH_OPS);
        cluster.converge().await;

        wait_until("the leader to build a snapshot", WAIT, || async {
            match has_snapshot(&cluster, leader) {
                true => Ok(()),
                false => Err("no snapshot yet".to_owned()),
            }
        })
        .await;

        let addr = cluster.add_node(LEARNER).await;
        cluster
            .ipam(leader)
            .add_learner(LEARNER, addr)
            .await
            .expect("add learner");
        assert_role(&cluster, LEARNER, Some(MemberRole::Learner)).await;
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
        assert_role(&cluster, LEARNER, Some(MemberRole::Voter)).await;

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
        assert_role(&cluster, removed, None).await;
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

/// Waits until every reachable node lists `id` with `role` (`None`: not a member; the
/// removed node itself is not asked, it need not learn of its removal).
async fn assert_role(cluster: &Cluster, id: u64, role: Option<MemberRole>) {
    wait_until(
        &format!("every node to list node {id} as {role:?}"),
        WAIT,
        || async {
            let statuses: Vec<_> = cluster
                .statuses()
                .into_iter()
                .filter(|s| role.is_some() || s.id != id)
                .collect();
            let agreed = statuses
                .iter()
                .all(|s| s.members.iter().find(|m| m.id == id).map(|m| m.role) == role);
            if agreed {
                Ok(())
            } else {
                Err(format!("{statuses:?}"))
            }
        },
    )
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

//! Nodes that must never be joined: one with another cluster token, and one that already
//! belongs to another cluster. Adding either is refused at once with a membership error,
//! leaves that node's state untouched, and the cluster keeps allocating.

use std::time::{Duration, Instant};

use ipam_raft::IpamError;
use ipam_tests::{bounded, pool_spec, Cluster};

const OUTSIDER: u64 = 4;
/// Bounds `add_learner`, should a refused node be waited for as if it could catch up.
const MEMBERSHIP_DEADLINE: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_token_is_never_joined() {
    refuse_outsider("theirs", false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_another_cluster_is_never_joined() {
    // Same token, but node 4 has formed its own one-node cluster and holds a pool there.
    refuse_outsider("ours", true).await
}

/// Three voters with the cluster token `ours` and pool `vms`; node 4 runs with
/// `outsider_token` and, with `own_cluster`, has formed its own cluster with pool `theirs`.
/// Asking the leader to add node 4 must be refused at once and change nothing on node 4 or in
/// the membership; the voters keep allocating.
async fn refuse_outsider(outsider_token: &'static str, own_cluster: bool) {
    bounded(Duration::from_secs(60), async {
        let mut cluster = Cluster::builder(3)
            .config(move |c| {
                let token = if c.id == OUTSIDER {
                    outsider_token
                } else {
                    "ours"
                };
                c.token = Some(token.to_owned());
                c.membership_deadline = MEMBERSHIP_DEADLINE;
            })
            .start()
            .await;
        let leader = cluster.leader_with_pool("vms", "10.0.0.0/16").await;

        let addr = cluster.add_node(OUTSIDER).await;
        let outsider = cluster.ipam(OUTSIDER).clone();
        if own_cluster {
            outsider.init(vec![]).await.expect("init its own cluster");
            outsider
                .wait_for(Duration::from_secs(10), |s| s.leader == Some(OUTSIDER))
                .await
                .expect("node 4 leads its own cluster");
            outsider
                .create_pool(pool_spec("theirs", "10.200.0.0/24"))
                .await
                .expect("pool in the other cluster");
        }
        // The status is openraft's metrics, which may trail the apply that answered the pool
        // creation: wait until they show everything applied, or the baseline is stale.
        let status = outsider
            .wait_for(Duration::from_secs(10), |s| {
                s.applied_index == s.last_log_index
            })
            .await
            .expect("the outsider's metrics settle");
        let digest = outsider.digest().await.expect("digest");

        // Refused up front, with a membership error that says why, long before the deadline.
        let started = Instant::now();
        let result = cluster.ipam(leader).add_learner(OUTSIDER, addr).await;
        let elapsed = started.elapsed();
        match result {
            Err(IpamError::Membership(reason)) => eprintln!("refused: {reason}"),
            other => panic!("adding node {OUTSIDER} answered {other:?}"),
        }
        assert!(elapsed < MEMBERSHIP_DEADLINE, "refusing took {elapsed:?}");
        assert!(
            !cluster
                .ipam(leader)
                .status()
                .members
                .iter()
                .any(|m| m.id == OUTSIDER),
            "a refused node entered the membership"
        );

        assert_eq!(outsider.digest().await.expect("digest"), digest);
        let after = outsider.status();
        assert_eq!(
            (after.members, after.applied_index),
            (status.members, status.applied_index),
            "the outsider's membership or log changed"
        );
        cluster.stop(OUTSIDER).await;

        let acked = cluster
            .allocate_many(&cluster.running(), "vms", "after", 50)
            .await;
        cluster.converge().await;
        assert_eq!(cluster.assert_holds("vms", &acked).await, 50);
        cluster.shutdown().await;
    })
    .await
}

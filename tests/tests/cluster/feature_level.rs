//! The cluster-wide feature level: a member that reports a lower level (acting as an older
//! release) makes the leader refuse new kinds of commands with `FeatureUnavailable` while old
//! kinds still commit; the status shows every member's level and the cluster's.

use std::time::Duration;

use ipam_core::{ErrorCode, Labels, OpError};
use ipam_raft::IpamError;
use ipam_tests::{bounded, wait_until, Cluster};

const POOL: &str = "lvl";

fn feature_unavailable(e: &IpamError) -> bool {
    matches!(e, IpamError::Op(op @ OpError::FeatureUnavailable { .. }) if op.code() == ErrorCode::FeatureUnavailable)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_reporting_a_lower_level_blocks_new_kinds_not_old_ones() {
    bounded(Duration::from_secs(90), async {
        let cluster = Cluster::builder(3)
            .config(|c| {
                if c.id == 3 {
                    c.feature_level = 1;
                }
            })
            .start()
            .await;
        let leader = cluster.leader_with_pool(POOL, "10.30.0.0/24").await;
        let status = wait_until("every member reported", Duration::from_secs(20), || async {
            let s = cluster.ipam(leader).status();
            if s.members.iter().all(|m| m.feature_level.is_some()) {
                Ok(s)
            } else {
                Err(format!("{:?}", s.members))
            }
        })
        .await;
        assert_eq!(status.feature_level, 1);
        let old_member = status.members.iter().find(|m| m.id == 3).expect("member 3");
        assert_eq!(old_member.feature_level, Some(1));

        for id in cluster.running() {
            let ipam = cluster.ipam(id);
            // New kinds are refused before they reach the log, from any node...
            let lease = ipam
                .allocate_lease(POOL, &format!("lease-{id}"), None, Labels::new(), Some(60))
                .await
                .expect_err("a lease needs level 2");
            assert!(feature_unavailable(&lease), "{lease:?}");
            let renew = ipam.renew_owner("anyone").await.expect_err("level 2");
            assert!(feature_unavailable(&renew), "{renew:?}");
            // ...old kinds commit; an allocation with the default lease is the 0.1.0 allocate.
            let (a, _) = ipam
                .allocate(POOL, &format!("vm-{id}"), None, Labels::new())
                .await
                .expect("allocate at level 1");
            ipam.release(POOL, a.ip, Some(a.generation))
                .await
                .expect("release at level 1");
        }
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_of_one_release_runs_at_its_level() {
    bounded(Duration::from_secs(90), async {
        let cluster = Cluster::builder(3).start().await;
        let leader = cluster.leader_with_pool(POOL, "10.31.0.0/24").await;
        let s = wait_until("every member reported", Duration::from_secs(20), || async {
            let s = cluster.ipam(leader).status();
            if s.feature_level == ipam_core::feature::FEATURE_LEVEL {
                Ok(s)
            } else {
                Err(format!("level {} of {:?}", s.feature_level, s.members))
            }
        })
        .await;
        assert!(s
            .members
            .iter()
            .all(|m| m.feature_level == Some(s.feature_level)));
        cluster
            .ipam(leader)
            .allocate_lease(POOL, "lease", None, Labels::new(), Some(60))
            .await
            .expect("a lease at level 2");
        cluster.shutdown().await;
    })
    .await;
}

//! Membership safety (contract "Membership safety"): an id in use is never evicted by a join,
//! a removal never undoes a promotion that committed meanwhile, and a learner that is down is
//! never promoted (its vote would be needed by the joint configuration).

use std::collections::BTreeSet;
use std::time::Duration;

use ipam_raft::{IpamError, MemberRole};
use ipam_tests::{bounded, wait_until, Cluster, WAIT};

const POOL: &str = "vms";

fn voters(cluster: &Cluster, on: u64) -> BTreeSet<u64> {
    cluster
        .ipam(on)
        .status()
        .members
        .iter()
        .filter(|m| m.role == MemberRole::Voter)
        .map(|m| m.id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_with_an_id_in_use_is_refused_and_the_member_keeps_its_place() {
    bounded(Duration::from_secs(90), async {
        let mut cluster = Cluster::builder(3).start().await;
        let leader = cluster.leader_with_pool(POOL, "10.0.0.0/16").await;
        let victim = cluster.followers(leader)[0];
        let victim_addr = cluster.addr(victim);
        // Another process claims the victim's id from another address.
        let impostor_addr = cluster.add_node(9).await;
        match cluster
            .ipam(leader)
            .add_learner(victim, impostor_addr)
            .await
        {
            Err(IpamError::NodeIdInUse { id, addr }) => {
                assert_eq!(id, victim);
                assert_eq!(addr, victim_addr);
            }
            other => panic!("expected node_id_in_use, got {other:?}"),
        }
        let member = cluster
            .ipam(leader)
            .status()
            .members
            .into_iter()
            .find(|m| m.id == victim)
            .expect("still a member");
        assert_eq!(member.addr, victim_addr);
        assert_eq!(member.role, MemberRole::Voter);
        // The same id and address again is idempotent.
        cluster
            .ipam(leader)
            .add_learner(victim, victim_addr)
            .await
            .expect("same id, same address");
        cluster.allocate_many(&[victim], POOL, "after", 20).await;
        cluster.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_voter_while_a_learner_is_promoted_keeps_the_promotion() {
    bounded(Duration::from_secs(120), async {
        let mut cluster = Cluster::builder(3).start().await;
        let leader = cluster.leader_with_pool(POOL, "10.0.0.0/16").await;
        let addr = cluster.add_node(4).await;
        cluster
            .ipam(leader)
            .add_learner(4, addr)
            .await
            .expect("add learner");
        let removed = cluster.followers(leader)[0];
        let (a, b) = (cluster.ipam(leader).clone(), cluster.ipam(leader).clone());
        let (promoted, removal) = tokio::join!(a.promote_voter(4), b.remove_member(removed));
        promoted.expect("promote");
        removal.expect("remove");
        let expected: BTreeSet<u64> = [1, 2, 3, 4]
            .into_iter()
            .filter(|&id| id != removed)
            .collect();
        wait_until("both changes in the voter set", WAIT, || async {
            let now = voters(&cluster, leader);
            if now == expected {
                Ok(())
            } else {
                Err(format!("voters {now:?}"))
            }
        })
        .await;
        cluster.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_that_is_down_is_not_promoted_and_writes_go_on() {
    bounded(Duration::from_secs(90), async {
        let mut cluster = Cluster::builder(3).start().await;
        let leader = cluster.leader_with_pool(POOL, "10.0.0.0/16").await;
        let addr = cluster.add_node(4).await;
        cluster
            .ipam(leader)
            .add_learner(4, addr)
            .await
            .expect("add learner");
        cluster.stop(4).await;
        // The log moves on without it.
        cluster
            .allocate_many(&[leader], POOL, "while-down", 20)
            .await;
        match cluster.ipam(leader).promote_voter(4).await {
            Err(IpamError::LearnerNotCaughtUp { id, target, .. }) => {
                assert_eq!(id, 4);
                assert!(target > 0);
            }
            other => panic!("expected learner_not_caught_up, got {other:?}"),
        }
        assert_eq!(voters(&cluster, leader), BTreeSet::from([1, 2, 3]));
        cluster.allocate_many(&[leader], POOL, "after", 20).await;
        cluster.shutdown().await;
    })
    .await
}

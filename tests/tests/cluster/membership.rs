//! Membership changes through the handle: a voter set changed at once, the leader removing
//! itself, a voter demoted to learner, a member back on a new address; the cluster keeps
//! allocating after each.

use std::collections::BTreeSet;
use std::time::Duration;

use ipam_raft::MemberRole;
use ipam_tests::{bounded, pool_spec, wait_until, Cluster, WAIT};

const POOL: &str = "vms";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_removes_itself_and_voters_change_while_allocating() {
    bounded(Duration::from_secs(120), async {
        let mut cluster = Cluster::builder(3).start().await;
        let old_leader = cluster.wait_leader().await;
        cluster
            .ipam(old_leader)
            .create_pool(pool_spec(POOL, "10.0.0.0/16"))
            .await
            .expect("create pool");
        let mut acked = cluster
            .allocate_many(&cluster.running(), POOL, "three", 100)
            .await;

        // A fourth voter through change_voters (the learner first).
        let addr = cluster.add_node(4).await;
        cluster
            .ipam(old_leader)
            .add_learner(4, addr)
            .await
            .expect("add learner");
        cluster
            .ipam(old_leader)
            .change_voters(BTreeSet::from([1, 2, 3, 4]))
            .await
            .expect("four voters");
        cluster.wait_role(4, Some(MemberRole::Voter)).await;

        // The leader removes itself (asked through a follower); the others carry on.
        let follower = cluster.followers(old_leader)[0];
        cluster
            .ipam(follower)
            .remove_member(old_leader)
            .await
            .expect("remove the leader");
        cluster.wait_role(old_leader, None).await;
        cluster.stop(old_leader).await;
        let new_leader = cluster.wait_new_leader(old_leader).await;
        let remaining = cluster.running();
        assert_eq!(remaining.len(), 3);
        acked.extend(
            cluster
                .allocate_many(&remaining, POOL, "after-removal", 100)
                .await,
        );

        // Demote one voter: it stays a learner, still replicating.
        let demoted = *remaining
            .iter()
            .find(|id| **id != new_leader)
            .expect("a follower");
        let voters: BTreeSet<u64> = remaining
            .iter()
            .copied()
            .filter(|id| *id != demoted)
            .collect();
        cluster
            .ipam(demoted)
            .change_voters(voters)
            .await
            .expect("demote a voter");
        cluster.wait_role(demoted, Some(MemberRole::Learner)).await;
        acked.extend(
            cluster
                .allocate_many(&remaining, POOL, "demoted", 100)
                .await,
        );

        cluster.converge().await;
        assert_eq!(cluster.assert_holds(POOL, &acked).await, acked.len());
        cluster.shutdown().await;
    })
    .await
}

/// A member that comes back on another address is re-added under it (`add_learner` with its
/// id updates the address in place) and replicates again, still a voter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_back_on_a_new_address_is_updated_in_place() {
    bounded(Duration::from_secs(90), async {
        let mut cluster = Cluster::builder(3).start().await;
        let leader = cluster.leader_with_pool(POOL, "10.0.0.0/16").await;
        let moved = cluster.followers(leader)[0];
        cluster.stop(moved).await;
        let mut acked = cluster
            .allocate_many(&cluster.running(), POOL, "while-away", 100)
            .await;

        let addr = cluster.restart_on_new_port(moved).await;
        cluster
            .ipam(leader)
            .add_learner(moved, addr.clone())
            .await
            .expect("update the member's address");
        let what = format!("every node to know node {moved} as a voter at {addr}");
        wait_until(&what, WAIT, || async {
            let statuses = cluster.statuses();
            let updated = statuses.iter().all(|s| {
                s.members
                    .iter()
                    .any(|m| m.id == moved && m.addr == addr && m.role == MemberRole::Voter)
            });
            if updated {
                Ok(())
            } else {
                Err(format!("{statuses:?}"))
            }
        })
        .await;
        acked.extend(
            cluster
                .allocate_many(&cluster.running(), POOL, "back", 100)
                .await,
        );
        cluster.converge().await;
        assert_eq!(cluster.assert_holds(POOL, &acked).await, 200);
        cluster.shutdown().await;
    })
    .await
}

/// Nodes joining at the same moment (several `--join`s started together): one node's
/// promotion and another's learner change overlap, and both succeed — the second change waits
/// for the first instead of being refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_joins_all_succeed() {
    bounded(Duration::from_secs(120), async {
        let mut cluster = Cluster::builder(1).start().await;
        let leader = cluster.wait_leader().await;
        let addr2 = cluster.add_node(2).await;
        let addr3 = cluster.add_node(3).await;
        let addr4 = cluster.add_node(4).await;
        cluster
            .ipam(leader)
            .add_learner(2, addr2)
            .await
            .expect("learner 2");
        let (a, b, c) = tokio::join!(
            cluster.ipam(leader).promote_voter(2),
            cluster.ipam(leader).add_learner(3, addr3),
            cluster.ipam(leader).add_learner(4, addr4),
        );
        a.expect("promote 2");
        b.expect("learner 3");
        c.expect("learner 4");
        let (a, b) = tokio::join!(
            cluster.ipam(leader).promote_voter(3),
            cluster.ipam(leader).promote_voter(4),
        );
        a.expect("promote 3");
        b.expect("promote 4");
        for id in 2..=4 {
            cluster.wait_role(id, Some(MemberRole::Voter)).await;
        }
        cluster.shutdown().await;
    })
    .await;
}

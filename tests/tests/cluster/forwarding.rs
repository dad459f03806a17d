//! Writes on a follower are forwarded to the leader; the read-through cache answers an owner's
//! existing allocation without a log entry, and only behind a read barrier.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ipam_core::{BatchError, Command, CommandResult, Labels, Op, OpOutput, QueryError};
use ipam_raft::{Consistency, IpamError, MemberRole};
use ipam_tests::{
    allocate_retrying, assert_only_unavailable, bounded, pool_spec, scan, Cluster, WAIT,
};

const LOCAL: Consistency = Consistency::Local;

fn ip(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn allocate_op(pool: &str, owner: &str) -> Op {
    Op::Allocate {
        pool: pool.to_owned(),
        owner: owner.to_owned(),
        ip: None,
        labels: Labels::new(),
    }
}

/// Each write API called on a follower succeeds, and its effect is in the leader's replica
/// at once (a leader acknowledges only what it has applied, so a local read there suffices).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_api_on_a_follower_is_forwarded_to_the_leader() {
    bounded(Duration::from_secs(90), async {
        let mut cluster = Cluster::builder(3).start().await;
        let leader_id = cluster.wait_leader().await;
        let follower_id = cluster.followers(leader_id)[0];
        let (follower, leader) = (cluster.ipam(follower_id), cluster.ipam(leader_id));

        let created = follower
            .create_pool(pool_spec("fwd", "10.1.0.0/24"))
            .await
            .expect("create_pool on a follower");
        assert_eq!(created.name, "fwd");
        assert_eq!(
            leader.pool("fwd", LOCAL).await.expect("pool on leader"),
            created
        );

        let labels = Labels::from([("nic".to_owned(), "eth0".to_owned())]);
        let (a, existing) = follower
            .allocate("fwd", "vm-a", None, labels.clone())
            .await
            .expect("allocate on a follower");
        assert!(!existing);
        assert_eq!((a.ip, &a.labels), (ip(10, 1, 0, 2), &labels));
        let seen = leader
            .address(a.ip, LOCAL)
            .await
            .expect("address on leader");
        assert_eq!(seen.pool.as_deref(), Some("fwd"));
        assert_eq!(seen.allocation.as_ref(), Some(&a));

        let wanted = ip(10, 1, 0, 50);
        let (b, _) = follower
            .allocate("fwd", "vm-b", Some(wanted), Labels::new())
            .await
            .expect("allocate a given address on a follower");
        assert_eq!(b.ip, wanted);
        assert_eq!(
            leader
                .owner_allocations("vm-b", LOCAL)
                .await
                .expect("owner on leader"),
            vec![b.clone()]
        );

        let released = follower
            .release("fwd", wanted, Some(b.generation))
            .await
            .expect("fenced release on a follower");
        assert_eq!(released, b);
        let seen = leader
            .address(wanted, LOCAL)
            .await
            .expect("address on leader");
        assert_eq!(seen.allocation, None);

        let released = follower
            .release_owner("fwd", "vm-a")
            .await
            .expect("release_owner on a follower");
        assert_eq!(released, vec![a.ip]);
        assert!(leader
            .owner_allocations("vm-a", LOCAL)
            .await
            .expect("owner on leader")
            .is_empty());

        let outputs = follower
            .batch(vec![
                Op::CreatePool(pool_spec("fwd2", "10.2.0.0/24")),
                allocate_op("fwd2", "vm-c"),
                allocate_op("fwd", "vm-d"),
            ])
            .await
            .expect("batch on a follower");
        assert!(
            matches!(
                outputs.as_slice(),
                [
                    OpOutput::PoolCreated(_),
                    OpOutput::Allocated {
                        existing: false,
                        ..
                    },
                    OpOutput::Allocated {
                        existing: false,
                        ..
                    },
                ]
            ),
            "{outputs:?}"
        );
        assert_eq!(scan(leader, "fwd2", LOCAL).await.len(), 1);

        // A failing batch through a follower reports the failing op and applies nothing.
        let error = follower
            .batch(vec![
                allocate_op("fwd", "vm-e"),
                allocate_op("missing", "vm-e"),
            ])
            .await
            .expect_err("a batch with an unknown pool fails");
        assert!(
            matches!(error, IpamError::Batch(BatchError { index: 1, .. })),
            "{error:?}"
        );
        assert!(leader
            .owner_allocations("vm-e", LOCAL)
            .await
            .expect("owner on leader")
            .is_empty());

        let result = follower
            .submit(Command::Op(allocate_op("fwd", "vm-f")))
            .await
            .expect("submit on a follower");
        let CommandResult::Op(Ok(OpOutput::Allocated { allocation, .. })) = result else {
            panic!("submit answered {result:?}");
        };
        assert_eq!(
            leader
                .address(allocation.ip, LOCAL)
                .await
                .expect("address")
                .allocation,
            Some(allocation)
        );

        let dropped = follower
            .delete_pool("fwd2", true)
            .await
            .expect("forced delete_pool on a follower");
        assert_eq!(dropped, 1);
        let error = leader.pool("fwd2", LOCAL).await.expect_err("pool is gone");
        assert!(
            matches!(error, IpamError::Query(QueryError::PoolNotFound { .. })),
            "{error:?}"
        );

        // Membership changes are forwarded too.
        let addr = cluster.add_node(4).await;
        let follower = cluster.ipam(follower_id);
        follower
            .add_learner(4, addr)
            .await
            .expect("add_learner on a follower");
        cluster.wait_role(4, Some(MemberRole::Learner)).await;
        follower
            .remove_member(4)
            .await
            .expect("remove_member on a follower");
        cluster.wait_role(4, None).await;
        cluster.stop(4).await;

        cluster.converge().await;
        cluster.shutdown().await;
    })
    .await
}

/// Allocating again for an owner that holds an address is a cache hit on any node: the same
/// allocation, `existing`, a hit counted, and no log entry. A miss, by contrast, is counted
/// as one and does append.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_hit_returns_the_existing_allocation_without_a_log_entry() {
    bounded(Duration::from_secs(90), async {
        let cluster = Cluster::builder(3).start().await;
        let leader = cluster.leader_with_pool("vms", "10.0.0.0/24").await;
        let follower = cluster.followers(leader)[0];
        let (first, existing) = cluster
            .ipam(follower)
            .allocate("vms", "vm-a", None, Labels::new())
            .await
            .expect("first allocation");
        assert!(!existing);
        // Every replica has applied it, so every node's cache knows vm-a.
        cluster.converge().await;

        // An election appends a blank entry; measure again if one happens meanwhile.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let leader = cluster.wait_leader().await;
            let before = cluster.ipam(leader).status();
            for id in cluster.running() {
                let ipam = cluster.ipam(id);
                let (hits, misses) = ipam.cache_stats();
                let (again, existing) = ipam
                    .allocate("vms", "vm-a", None, Labels::new())
                    .await
                    .expect("allocate for an owner that holds an address");
                assert_eq!(again, first, "node {id}");
                assert!(existing, "node {id}: the owner's allocation is not new");
                assert_eq!(ipam.cache_stats(), (hits + 1, misses), "node {id}: a hit");
            }
            let after = cluster.ipam(leader).status();
            if after.term != before.term && attempts < 3 {
                continue;
            }
            assert_eq!(after.term, before.term, "elections kept interfering");
            assert_eq!(
                after.last_log_index, before.last_log_index,
                "a cache hit appended a log entry"
            );
            break;
        }

        let ipam = cluster.ipam(follower);
        let leader = cluster.wait_leader().await;
        let before = cluster.ipam(leader).status().last_log_index;
        let (hits, misses) = ipam.cache_stats();
        let (_, existing) = ipam
            .allocate("vms", "vm-b", None, Labels::new())
            .await
            .expect("allocation for a new owner");
        assert!(!existing);
        assert_eq!(ipam.cache_stats(), (hits, misses + 1), "a miss");
        assert!(cluster.ipam(leader).status().last_log_index > before);
        cluster.shutdown().await;
    })
    .await
}

/// A follower that forwarded a release and allocates again for the same owner at once must not
/// answer from its own replica, which may not have applied the release yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_never_returns_what_it_just_released() {
    const ROUNDS: usize = 20;
    bounded(Duration::from_secs(90), async {
        let cluster = Cluster::builder(3).start().await;
        let leader = cluster.leader_with_pool("vms", "10.0.0.0/24").await;
        let follower = cluster.ipam(cluster.followers(leader)[0]);
        let (mut held, _) = follower
            .allocate("vms", "vm-a", None, Labels::new())
            .await
            .expect("allocate");
        for round in 0..ROUNDS {
            let released = follower
                .release_owner("vms", "vm-a")
                .await
                .expect("release");
            assert_eq!(released, vec![held.ip], "round {round}");
            let (next, existing) = follower
                .allocate("vms", "vm-a", None, Labels::new())
                .await
                .expect("allocate again");
            assert!(
                !existing && next.generation > held.generation,
                "round {round}: got {next:?} (existing: {existing}) after releasing {held:?}"
            );
            held = next;
        }
        cluster.shutdown().await;
    })
    .await
}

/// A follower's cache, cut off from the leader, never returns a released address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_follower_cache_never_returns_a_released_address() {
    stale_cache_never_returns_a_released_address(false).await
}

/// A deposed leader's cache (it still believes it leads) never returns a released address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leader_cache_never_returns_a_released_address() {
    stale_cache_never_returns_a_released_address(true).await
}

/// A replica that holds owner A → X in its stale state must not hand X back to A after X was
/// released and given to B elsewhere: while cut off it cannot pass the read barrier, and right
/// after healing (still lagging) the barrier makes it see the release. The stale replica is
/// the leader when `cut_leader`, else a follower.
async fn stale_cache_never_returns_a_released_address(cut_leader: bool) {
    bounded(Duration::from_secs(90), async {
        let mut cluster = Cluster::builder(3)
            .config(|c| {
                c.write_deadline = Duration::from_secs(2);
                c.read_deadline = Duration::from_secs(2);
            })
            .start()
            .await;
        let leader = cluster.leader_with_pool("vms", "10.0.0.0/24").await;
        let stale = if cut_leader {
            leader
        } else {
            cluster.followers(leader)[0]
        };
        let (x, _) = cluster
            .ipam(stale)
            .allocate("vms", "vm-a", None, Labels::new())
            .await
            .expect("allocate for A");
        cluster.converge().await;

        cluster.isolate(stale, true);
        let leader = cluster.wait_leader().await;
        let majority = cluster.ipam(leader);
        majority
            .release("vms", x.ip, Some(x.generation))
            .await
            .expect("release A's address");
        let (to_b, _) = majority
            .allocate("vms", "vm-b", Some(x.ip), Labels::new())
            .await
            .expect("give X to B");
        assert_eq!(to_b.ip, x.ip);

        // Precondition: the cut-off replica still believes A holds X.
        let ipam = cluster.ipam(stale);
        assert_eq!(
            ipam.owner_allocations("vm-a", LOCAL)
                .await
                .expect("local read"),
            vec![x.clone()],
            "the cut-off replica should still be stale"
        );
        match ipam.allocate("vms", "vm-a", None, Labels::new()).await {
            Ok((allocation, existing)) => panic!(
                "a cut-off replica answered {allocation:?} (existing: {existing}) from stale state"
            ),
            Err(IpamError::NoLeader | IpamError::DeadlineExceeded { .. }) => {}
            Err(error) => panic!("unexpected error {error:?}"),
        }

        cluster.isolate(stale, false);
        let (again, retried) = allocate_retrying(cluster.ipam(stale), "vms", "vm-a", WAIT).await;
        assert_only_unavailable("the healed replica", &retried);
        assert_ne!(again.ip, x.ip, "A got back the address now held by B");
        assert!(again.generation > to_b.generation);
        let leader = cluster.wait_leader().await;
        let holder = cluster
            .ipam(leader)
            .address(x.ip, Consistency::Linearizable)
            .await
            .expect("address read");
        assert_eq!(holder.allocation.map(|a| a.owner).as_deref(), Some("vm-b"));
        cluster.converge().await;
        assert_eq!(
            cluster
                .assert_holds(
                    "vms",
                    &[("vm-a".to_owned(), again.ip), ("vm-b".to_owned(), x.ip)].into()
                )
                .await,
            2
        );
        cluster.shutdown().await;
    })
    .await
}

//! Many callers on every node racing for the same thing: one owner, the last addresses of a
//! pool, one release. Apply decides each race once, identically on every replica.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use futures::future::join_all;
use ipam_core::{ErrorCode, Labels};
use ipam_raft::{Consistency, Ipam, IpamError};
use ipam_tests::{bounded, pool_spec, Cluster};

/// Concurrent callers per race, spread over the nodes.
const RACERS: usize = 30;

/// Runs `call` on `RACERS` tasks spread round-robin over the cluster's nodes.
async fn race<T, F, Fut>(cluster: &Cluster, call: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(Ipam, usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let nodes = cluster.running();
    let tasks =
        (0..RACERS).map(|i| tokio::spawn(call(cluster.ipam(nodes[i % nodes.len()]).clone(), i)));
    join_all(tasks)
        .await
        .into_iter()
        .map(|joined| joined.expect("racing task"))
        .collect()
}

fn op_code(error: &IpamError) -> Option<ErrorCode> {
    match error {
        IpamError::Op(op) => Some(op.code()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn races_between_nodes_are_decided_once_and_identically() {
    bounded(Duration::from_secs(90), async {
        let cluster = Cluster::builder(3).start().await;
        let leader = cluster.leader_with_pool("vms", "10.0.0.0/24").await;
        // A /29: network .0, gateway .1, broadcast .7 leave five addresses.
        cluster
            .ipam(leader)
            .create_pool(pool_spec("tiny", "10.9.0.0/29"))
            .await
            .expect("create pool");

        // One owner asked for by everyone at once: one allocation, made once.
        let answers = race(&cluster, |ipam, _| async move {
            ipam.allocate("vms", "vm-same", None, Labels::new()).await
        })
        .await;
        let answers: Vec<_> = answers
            .into_iter()
            .map(|r| r.expect("allocate the same owner"))
            .collect();
        let (first, _) = &answers[0];
        assert!(answers.iter().all(|(a, _)| a == first), "{answers:?}");
        assert_eq!(
            answers.iter().filter(|(_, existing)| !existing).count(),
            1,
            "exactly one caller made the allocation"
        );

        // More owners than addresses: exactly the capacity is handed out, each address once.
        let answers = race(&cluster, |ipam, i| async move {
            ipam.allocate("tiny", &format!("vm-{i}"), None, Labels::new())
                .await
        })
        .await;
        let mut granted = BTreeSet::new();
        for answer in &answers {
            match answer {
                Ok((allocation, false)) => assert!(granted.insert(allocation.ip)),
                Err(error) if op_code(error) == Some(ErrorCode::PoolExhausted) => {}
                other => panic!("allocating in a small pool answered {other:?}"),
            }
        }
        let expected: BTreeSet<IpAddr> = (2..=6)
            .map(|d| IpAddr::V4(Ipv4Addr::new(10, 9, 0, d)))
            .collect();
        assert_eq!(granted, expected);

        // Everyone releases the same allocation, fenced: exactly one succeeds.
        let (held, _) = cluster
            .ipam(leader)
            .allocate("vms", "vm-release", None, Labels::new())
            .await
            .expect("allocate");
        let target = held.clone();
        let answers = race(&cluster, move |ipam, _| {
            let target = target.clone();
            async move {
                ipam.release("vms", target.ip, Some(target.generation))
                    .await
            }
        })
        .await;
        let mut released = 0;
        for answer in &answers {
            match answer {
                Ok(allocation) => {
                    assert_eq!(allocation, &held);
                    released += 1;
                }
                Err(error) if op_code(error) == Some(ErrorCode::AllocationNotFound) => {}
                Err(error) => panic!("racing release answered {error:?}"),
            }
        }
        assert_eq!(released, 1, "one release wins");

        // The address goes to someone else; the stale fence no longer frees it.
        let (next, _) = cluster
            .ipam(leader)
            .allocate("vms", "vm-next", Some(held.ip), Labels::new())
            .await
            .expect("reallocate");
        assert!(next.generation > held.generation);
        let follower = cluster.followers(leader)[0];
        let error = cluster
            .ipam(follower)
            .release("vms", held.ip, Some(held.generation))
            .await
            .expect_err("a stale generation cannot release");
        assert_eq!(
            op_code(&error),
            Some(ErrorCode::GenerationMismatch),
            "{error:?}"
        );

        cluster.converge().await;
        for id in cluster.running() {
            let tiny = cluster
                .ipam(id)
                .pool("tiny", Consistency::Local)
                .await
                .expect("pool");
            assert_eq!(
                (tiny.stats.allocated, tiny.stats.free()),
                (5, 0),
                "node {id}"
            );
            let holder = cluster
                .ipam(id)
                .address(held.ip, Consistency::Local)
                .await
                .expect("address");
            assert_eq!(holder.allocation, Some(next.clone()), "node {id}");
        }
        cluster.shutdown().await;
    })
    .await
}

/// A full proposer queue refuses with `Overloaded`, and a refused write never applies: after
/// convergence every replica holds exactly the acknowledged allocations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_write_is_refused_and_never_applied() {
    const OWNERS: usize = 300;
    bounded(Duration::from_secs(90), async {
        let cluster = Cluster::builder(3)
            .config(|c| c.queue_capacity = 2)
            .start()
            .await;
        cluster.leader_with_pool("vms", "10.0.0.0/16").await;

        let nodes = cluster.running();
        let tasks = (0..OWNERS).map(|i| {
            let ipam = cluster.ipam(nodes[i % nodes.len()]).clone();
            tokio::spawn(async move {
                let owner = format!("vm-{i}");
                let answer = ipam.allocate("vms", &owner, None, Labels::new()).await;
                (owner, answer)
            })
        });
        let mut acked = BTreeMap::new();
        let mut refused = Vec::new();
        for joined in join_all(tasks).await {
            match joined.expect("allocation task") {
                (owner, Ok((allocation, false))) => {
                    acked.insert(owner, allocation.ip);
                }
                (owner, Err(IpamError::Overloaded)) => refused.push(owner),
                (owner, other) => panic!("allocate {owner}: {other:?}"),
            }
        }
        assert!(
            !refused.is_empty(),
            "{OWNERS} concurrent writes never filled a queue of 2"
        );
        eprintln!("{} acknowledged, {} overloaded", acked.len(), refused.len());

        cluster.converge().await;
        assert_eq!(cluster.assert_holds("vms", &acked).await, acked.len());
        cluster.shutdown().await;
    })
    .await
}

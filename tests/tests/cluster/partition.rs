//! One node cut off from its peers (`set_isolated`): it cannot write and says so with a typed
//! error, within its write deadline; the majority keeps allocating; after healing, the node
//! converges to the majority's state.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipam_core::Labels;
use ipam_raft::{Consistency, IpamError};
use ipam_tests::{
    allocate_retrying, assert_only_unavailable, bounded, owner_map, scan, Cluster, WAIT,
};

const POOL: &str = "vms";
/// Short deadlines keep the cut-off node's failures fast.
const WRITE_DEADLINE: Duration = Duration::from_secs(2);
const READ_DEADLINE: Duration = Duration::from_secs(2);
/// Allowed beyond a deadline before the answer counts as late.
const SLACK: Duration = Duration::from_secs(2);

async fn partitioned_cluster() -> (Cluster, BTreeMap<String, IpAddr>) {
    let cluster = Cluster::builder(3)
        .config(|c| {
            c.write_deadline = WRITE_DEADLINE;
            c.read_deadline = READ_DEADLINE;
        })
        .start()
        .await;
    cluster.leader_with_pool(POOL, "10.0.0.0/16").await;
    let acked = cluster
        .allocate_many(&cluster.running(), POOL, "before", 100)
        .await;
    cluster.converge().await;
    (cluster, acked)
}

fn assert_unavailable(what: &str, error: &IpamError) {
    assert!(
        matches!(
            error,
            IpamError::NoLeader | IpamError::DeadlineExceeded { .. }
        ),
        "{what}: expected NoLeader or DeadlineExceeded, got {error:?}"
    );
}

/// The cut-off node refuses a write and a linearizable read with a typed error within its
/// deadlines, and still answers a local read. Returns the refused write's error.
async fn assert_cut_off(cluster: &Cluster, id: u64, owner: &str) -> IpamError {
    let ipam = cluster.ipam(id);
    let started = Instant::now();
    let error = ipam
        .allocate(POOL, owner, None, Labels::new())
        .await
        .expect_err("a cut-off node must not acknowledge an allocation");
    assert_unavailable("allocate on the cut-off node", &error);
    assert!(
        started.elapsed() < WRITE_DEADLINE + SLACK,
        "the refusal took {:?}",
        started.elapsed()
    );

    let started = Instant::now();
    let error_read = ipam
        .pool(POOL, Consistency::Linearizable)
        .await
        .expect_err("a cut-off node cannot serve a linearizable read");
    assert_unavailable("linearizable read on the cut-off node", &error_read);
    assert!(
        started.elapsed() < READ_DEADLINE + SLACK,
        "the refusal took {:?}",
        started.elapsed()
    );
    let local = ipam
        .pool(POOL, Consistency::Local)
        .await
        .expect("a local read needs no peer");
    assert_eq!(local.name, POOL);
    error
}

/// After healing: one converged state holding every acknowledged allocation. The refused
/// write may only have applied if it ended in `DeadlineExceeded` ("may still commit"), and
/// then at most once.
async fn assert_healed(
    cluster: &Cluster,
    acked: &BTreeMap<String, IpAddr>,
    refused_owner: &str,
    refused: &IpamError,
) {
    cluster.converge().await;
    let held = cluster.assert_holds(POOL, acked).await;
    let leader = cluster.wait_leader().await;
    let on_leader = owner_map(&scan(cluster.ipam(leader), POOL, Consistency::Local).await);
    if on_leader.contains_key(refused_owner) {
        assert!(
            matches!(refused, IpamError::DeadlineExceeded { .. }),
            "a write refused with {refused:?} applied after all"
        );
        assert_eq!(held, acked.len() + 1);
    } else {
        assert_eq!(held, acked.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_follower_refuses_writes_and_converges_after_healing() {
    bounded(Duration::from_secs(120), async {
        let (mut cluster, mut acked) = partitioned_cluster().await;
        let leader = cluster.wait_leader().await;
        let cut = cluster.followers(leader)[0];

        cluster.isolate(cut, true);
        let refused = assert_cut_off(&cluster, cut, "minority").await;

        let majority = cluster.reachable();
        acked.extend(cluster.allocate_many(&majority, POOL, "during", 200).await);

        cluster.isolate(cut, false);
        // The healed node writes again (retrying while the cluster settles).
        let (healed, retried) = allocate_retrying(cluster.ipam(cut), POOL, "healed", WAIT).await;
        assert_only_unavailable("the healed node", &retried);
        acked.insert(healed.owner, healed.ip);
        assert_healed(&cluster, &acked, "minority", &refused).await;
        cluster.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_leader_refuses_writes_and_the_majority_elects_another() {
    bounded(Duration::from_secs(120), async {
        let (mut cluster, mut acked) = partitioned_cluster().await;
        let old_leader = cluster.wait_leader().await;

        cluster.isolate(old_leader, true);
        // A leader that cannot reach a quorum cannot commit: its write runs into the deadline.
        let refused = assert_cut_off(&cluster, old_leader, "stale-leader").await;

        let new_leader = cluster.wait_new_leader(old_leader).await;
        let majority = cluster.reachable();
        assert!(majority.contains(&new_leader));
        acked.extend(cluster.allocate_many(&majority, POOL, "during", 200).await);

        cluster.isolate(old_leader, false);
        let (healed, retried) =
            allocate_retrying(cluster.ipam(old_leader), POOL, "healed", WAIT).await;
        assert_only_unavailable("the healed node", &retried);
        acked.insert(healed.owner, healed.ip);
        assert_healed(&cluster, &acked, "stale-leader", &refused).await;
        cluster.shutdown().await;
    })
    .await
}

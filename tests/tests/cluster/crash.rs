//! A real crash: the only replica besides the leader that holds a set of acknowledged
//! allocations is killed with SIGKILL right after the acknowledgements, the leader is stopped,
//! and the killed node, restarted from its files, must hand every one of them to the rest;
//! killed once more and reopened in this process, its own state matches the others'.

use std::time::Duration;

use ipam_raft::Consistency;
use ipam_tests::child::{child_main, ChildNode};
use ipam_tests::{bounded, owner_map, scan, Cluster, WAIT};

const POOL: &str = "vms";
const CHILD: u64 = 3;
/// The test that runs a child node (see `ipam_tests::child`).
const CHILD_ENTRY: &str = "crash::child_node";

#[test]
#[ignore = "entry point of the child node process that crash tests start; does nothing alone"]
fn child_node() {
    child_main()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_allocations_survive_a_sigkill_of_the_replica_that_holds_them() {
    bounded(Duration::from_secs(120), async {
        let mut cluster = Cluster::builder(2).start().await;
        let leader = cluster.leader_with_pool(POOL, "10.0.0.0/16").await;
        let mut child = ChildNode::spawn(CHILD_ENTRY, CHILD, &cluster.scratch_dir("child-3")).await;
        cluster
            .ipam(leader)
            .add_learner(CHILD, child.addr())
            .await
            .expect("add the child as learner");
        cluster
            .ipam(leader)
            .promote_voter(CHILD)
            .await
            .expect("promote the child");

        // Cut the other in-process node off: from now on only the leader and the child can
        // commit, so the child's log is the only other copy of what is acknowledged.
        let leader = cluster.wait_leader().await;
        let other = cluster.followers(leader)[0];
        cluster.isolate(other, true);
        let acked = cluster.allocate_many(&[leader], POOL, "crash", 300).await;
        child.kill();
        cluster.stop(leader).await;

        // The child comes back from its files and, with `other`, forms the majority. (Only the
        // child can lead it, unless it lost entries: then the check below names them.)
        cluster.isolate(other, false);
        child.restart().await;
        cluster
            .ipam(other)
            .wait_for(WAIT, |s| s.leader.is_some_and(|l| l != leader))
            .await
            .expect("a new leader");
        let held = owner_map(&scan(cluster.ipam(other), POOL, Consistency::Linearizable).await);
        for (owner, ip) in &acked {
            assert_eq!(
                held.get(owner),
                Some(ip),
                "acknowledged {owner} -> {ip} lost with the crash"
            );
        }

        cluster.restart(leader).await;
        let more = cluster
            .allocate_many(&cluster.running(), POOL, "after", 50)
            .await;
        cluster.converge().await;
        let mut all = acked;
        all.extend(more);
        assert_eq!(cluster.assert_holds(POOL, &all).await, all.len());

        // The child's own state after two crashes: kill it again, reopen its files in this
        // process, and it must converge to the same digest as the others.
        child.kill();
        cluster.adopt_stopped(CHILD, &child.addr(), child.data_dir());
        cluster.restart(CHILD).await;
        cluster.converge().await;
        assert_eq!(cluster.assert_holds(POOL, &all).await, all.len());
        cluster.shutdown().await;
    })
    .await
}

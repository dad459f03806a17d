//! Linearizable reads: a write acknowledged by one node is visible to a default-consistency
//! read on any other node right after the acknowledgement.

use std::time::Duration;

use ipam_core::Labels;
use ipam_raft::Consistency;
use ipam_tests::{bounded, pool_spec, Cluster};

const ROUNDS: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_acknowledged_on_one_node_is_read_on_every_other() {
    bounded(Duration::from_secs(90), async {
        let cluster = Cluster::builder(3).start().await;
        let nodes = cluster.running();
        let pairs: Vec<(u64, u64)> = nodes
            .iter()
            .flat_map(|&w| nodes.iter().filter(move |&&r| r != w).map(move |&r| (w, r)))
            .collect();
        // How often a local read would have missed the write: evidence that the barrier, not
        // luck, made the default reads pass.
        let mut stale_local_reads = 0;

        for (w, r) in &pairs {
            let (writer, reader) = (cluster.ipam(*w), cluster.ipam(*r));
            let pool = format!("p{w}{r}");
            let created = writer
                .create_pool(pool_spec(&pool, &format!("10.{w}.{r}.0/24")))
                .await
                .expect("create pool");
            let seen = reader
                .pool(&pool, Consistency::default())
                .await
                .expect("a pool created on another node is readable");
            assert_eq!(seen.name, created.name);
        }

        for round in 0..ROUNDS {
            for (w, r) in &pairs {
                let (writer, reader) = (cluster.ipam(*w), cluster.ipam(*r));
                let pool = format!("p{w}{r}");
                let owner = format!("vm-{round}");
                let (allocation, _) = writer
                    .allocate(&pool, &owner, None, Labels::new())
                    .await
                    .expect("allocate");
                let seen = reader
                    .address(allocation.ip, Consistency::default())
                    .await
                    .expect("read");
                assert_eq!(
                    seen.allocation.as_ref(),
                    Some(&allocation),
                    "node {r} did not see what node {w} acknowledged"
                );

                reader
                    .release(&pool, allocation.ip, Some(allocation.generation))
                    .await
                    .expect("release");
                // This node applies the release a little later; a local read may miss it.
                let local = writer
                    .owner_allocations(&owner, Consistency::Local)
                    .await
                    .expect("local read");
                if !local.is_empty() {
                    stale_local_reads += 1;
                }
                let seen = writer
                    .owner_allocations(&owner, Consistency::default())
                    .await
                    .expect("read");
                assert!(
                    seen.is_empty(),
                    "node {w} still sees a release acked by {r}"
                );
            }
        }
        eprintln!(
            "{stale_local_reads} of {} local reads were stale",
            ROUNDS * pairs.len()
        );
        cluster.shutdown().await;
    })
    .await
}

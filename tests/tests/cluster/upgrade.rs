//! A data dir written by an earlier release opens and keeps serving: every pool and allocation
//! it holds is there, new writes are accepted, and its snapshot (written in that release's
//! format) brings a new learner up to date.
//!
//! The fixture `tests/fixtures/release-0.1.0/` was written by release 0.1.0's `ipam-node`: three
//! pools (one IPv6), allocations with labels, releases, a batch and a forced pool deletion; a
//! snapshot at log index 49 and the log up to 92 (purged below 30), so a learner cannot catch
//! up from the log alone. `expected.jsonl` holds that node's allocation listings, one pool per
//! line, as its API answered them.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use ipam_core::{Labels, Op, OpOutput};
use ipam_raft::{Consistency, MemberRole};
use ipam_tests::{bounded, scan, Cluster};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/release-0.1.0");

/// (pool, ip, owner, generation, labels) of every allocation the fixture's node listed.
fn expected() -> BTreeSet<(String, IpAddr, String, u64, Labels)> {
    let text = std::fs::read_to_string(Path::new(FIXTURE).join("expected.jsonl")).expect("read");
    let mut all = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let page: serde_json::Value = serde_json::from_str(line).expect("a listing");
        for a in page["allocations"].as_array().expect("allocations") {
            let labels: Labels = serde_json::from_value(a["labels"].clone()).expect("labels");
            all.insert((
                a["pool"].as_str().expect("pool").to_string(),
                a["ip"].as_str().expect("ip").parse().expect("an address"),
                a["owner"].as_str().expect("owner").to_string(),
                a["generation"].as_u64().expect("generation"),
                labels,
            ));
        }
    }
    all
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read fixture dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy fixture file");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_and_snapshot_of_release_0_1_0_open_and_keep_serving() {
    bounded(Duration::from_secs(120), async {
        let mut cluster = Cluster::builder(0).start().await;
        let dir = cluster.scratch_dir("fixture-node-1");
        copy_dir(&Path::new(FIXTURE).join("data"), &dir);
        cluster.adopt_stopped(1, "127.0.0.1:0", &dir);
        cluster.restart_on_new_port(1).await;
        cluster.wait_leader().await;
        let node = cluster.ipam(1);

        let pools: Vec<String> = node
            .pools(&Labels::new(), Consistency::Linearizable)
            .await
            .expect("pools")
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(pools, ["net-a", "net-b", "net-c"]);

        let expected = expected();
        assert_eq!(expected.len(), 36 + 20 + 20, "the fixture's own listing");
        let mut found = BTreeSet::new();
        for pool in &pools {
            for a in scan(node, pool, Consistency::Linearizable).await {
                found.insert((a.pool, a.ip, a.owner, a.generation, a.labels));
            }
        }
        assert_eq!(found, expected);
        let last_generation = expected.iter().map(|a| a.3).max().expect("allocations");

        // New writes: a new owner gets a new generation and a free address; a fenced release
        // of an old allocation works with its old generation.
        let (fresh, existing) = node
            .allocate("net-a", "after-upgrade", None, Labels::new())
            .await
            .expect("allocate after upgrade");
        assert!(!existing);
        assert!(fresh.generation > last_generation);
        assert!(
            !expected.iter().any(|a| a.1 == fresh.ip),
            "{} was held",
            fresh.ip
        );
        let old = expected
            .iter()
            .find(|a| a.0 == "net-b")
            .expect("a net-b allocation");
        node.release("net-b", old.1, Some(old.3))
            .await
            .expect("fenced release of an old allocation");
        let outputs = node
            .batch(vec![Op::Allocate {
                pool: "net-c".into(),
                owner: "batch-after-upgrade".into(),
                ip: None,
                labels: Labels::new(),
            }])
            .await
            .expect("batch after upgrade");
        assert!(matches!(outputs[..], [OpOutput::Allocated { .. }]));

        // The log below index 30 is purged: a new learner needs the old release's snapshot.
        let addr = cluster.add_node(2).await;
        cluster
            .ipam(1)
            .add_learner(2, addr)
            .await
            .expect("add learner");
        cluster.wait_role(2, Some(MemberRole::Learner)).await;
        cluster.converge().await;
        assert!(
            cluster
                .data_dir(2)
                .join("snapshots")
                .join("current.meta")
                .is_file(),
            "the learner caught up without installing the old release's snapshot"
        );
        let on_learner: usize = {
            let mut n = 0;
            for pool in &pools {
                n += scan(cluster.ipam(2), pool, Consistency::Local).await.len();
            }
            n
        };
        // One old allocation released, two new ones made.
        assert_eq!(on_learner, expected.len() + 1);
    })
    .await
}

//! `Ipam::check` on a running node: a clean replica reports no problem and the digest of its
//! applied index; a deliberately corrupted in-memory index is found, and with `repair` rebuilt
//! from the tables, after which allocation hands out the address the corruption hid.

use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use ipam_core::check::Problem;
use ipam_raft::{Config, Ipam};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_index_is_found_and_repaired() {
    let dir = tempfile::tempdir().expect("tmp");
    let ipam = Ipam::start(Config::new(1, dir.path(), "127.0.0.1:9"))
        .await
        .expect("start");
    ipam.init(Vec::new()).await.expect("init");
    ipam.wait_for(Duration::from_secs(30), |s| s.leader == Some(1))
        .await
        .expect("leader");
    ipam.create_pool(support::pools::vms("10.0.0.0/24"))
        .await
        .expect("pool");
    for owner in ["a", "b"] {
        ipam.allocate("vms", owner, None, BTreeMap::new())
            .await
            .expect("allocate");
    }

    let clean = ipam.check(false).await.expect("check");
    assert_eq!(clean.problems, vec![]);
    assert!(!clean.repaired);
    assert!(clean.applied_index > 0);
    assert_eq!(clean.digest, ipam.digest().await.expect("digest"));

    assert!(ipam.corrupt_index_for_tests("vms"));
    let found = ipam.check(false).await.expect("check");
    assert_eq!(
        found.problems,
        vec![Problem::FreeIndexMismatch {
            pool: "vms".into(),
            memory_free: "250".into(),
            expected_free: "251".into(),
        }]
    );
    // The tables are untouched: the digest does not see the in-memory damage.
    assert_eq!(found.digest, clean.digest);
    assert!(!found.repaired);
    // Without repair it stays broken.
    assert_eq!(ipam.check(false).await.expect("check").problems.len(), 1);

    let repaired = ipam.check(true).await.expect("check");
    assert_eq!(repaired.problems.len(), 1);
    assert!(repaired.repaired);
    assert_eq!(ipam.check(false).await.expect("check").problems, vec![]);
    let (next, _) = ipam
        .allocate("vms", "c", None, BTreeMap::new())
        .await
        .expect("allocate");
    assert_eq!(next.ip.to_string(), "10.0.0.4");
    ipam.shutdown().await.expect("shutdown");
}

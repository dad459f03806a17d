//! Backup and restore end to end: `ipam-cli backup` while allocations keep arriving, the
//! source destroyed, `--restore` on one new node, two more joining it; the new cluster agrees
//! (`ipam-cli check`) and holds exactly the allocations the backup's log position had.

use crate::common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{block_on, TestNode};
use ipam_client::types::{AllocateRequest, Allocation, BatchOp};
use ipam_client::AllocationQuery;

fn all(node: &TestNode) -> Vec<Allocation> {
    let query = AllocationQuery {
        limit: Some(1000),
        ..Default::default()
    };
    block_on(node.client().list_all_allocations("vms", &query)).expect("listing")
}

#[test]
fn a_backup_taken_under_load_restores_into_a_new_cluster() {
    let _serial = common::serial();
    let source = TestNode::start(None);
    source.ok(&["ip-pool", "create", "vms", "10.0.0.0/16"]);
    let ops = (0..500)
        .map(|i| BatchOp::Allocate {
            pool: "vms".into(),
            owner: format!("seed-{i}"),
            ip: None,
            labels: BTreeMap::from([("i".to_string(), i.to_string())]),
            ttl_seconds: None,
        })
        .collect();
    block_on(source.client().batch(ops)).expect("seed");

    // Load: allocations one after another until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let made = Arc::new(AtomicUsize::new(0));
    let load = {
        let (client, stop, made) = (source.client(), stop.clone(), made.clone());
        std::thread::spawn(move || {
            block_on(async {
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    let req = AllocateRequest {
                        owner: format!("load-{i}"),
                        ..Default::default()
                    };
                    client.allocate("vms", &req).await.expect("load allocation");
                    made.fetch_add(1, Ordering::SeqCst);
                    i += 1;
                }
            })
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while made.load(Ordering::SeqCst) < 20 {
        assert!(Instant::now() < deadline, "the load made no progress");
        std::thread::sleep(Duration::from_millis(10));
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("ipam.backup");
    let text = source.ok(&["backup", file.to_str().unwrap()]);
    assert!(text.contains("checksum verified"), "{text}");
    let before_stop = made.load(Ordering::SeqCst);
    // Keep the load going past the backup, so the copy is not simply the final state.
    while made.load(Ordering::SeqCst) < before_stop + 20 {
        assert!(Instant::now() < deadline, "the load stalled");
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::SeqCst);
    load.join().expect("load thread");
    let source_listing = all(&source);
    drop(source);

    let file_arg = file.clone();
    let mut restored = TestNode::start_with(
        None,
        move |c| {
            c.id = 11;
            c.restore = Some(file_arg);
        },
        true,
    );
    let join = restored.endpoint();
    let mut joined = Vec::new();
    for id in [12, 13] {
        let join = join.clone();
        joined.push(TestNode::start_with(
            None,
            move |c| {
                c.id = id;
                c.join = Some(join);
            },
            true,
        ));
    }
    restored.wait_for_voters(3);
    let report = restored.json(&["check"]);
    assert_eq!(report["consistent"], true, "{report}");
    assert_eq!(report["members"].as_array().unwrap().len(), 3);

    // A consistent copy: exactly the source's allocations up to some generation — every seed
    // row, some but not all of the load, and nothing torn in between.
    let listing = all(&restored);
    let newest = listing
        .iter()
        .map(|a| a.generation)
        .max()
        .expect("allocations");
    let mut expected: Vec<&Allocation> = source_listing
        .iter()
        .filter(|a| a.generation <= newest)
        .collect();
    expected.sort_by(|a, b| a.ip.cmp(&b.ip));
    let mut got: Vec<&Allocation> = listing.iter().collect();
    got.sort_by(|a, b| a.ip.cmp(&b.ip));
    assert_eq!(got, expected);
    assert!(listing.len() > 500 && listing.len() < source_listing.len());

    // The new cluster takes writes, continuing the generations.
    let after = restored.json(&["ip", "allocate", "vms", "--owner", "after-restore"]);
    assert!(after["generation"].as_u64().unwrap() > newest);
    let text = joined[0].ok(&["check"]);
    assert!(text.contains("consistent: 3 member(s) agree"), "{text}");
}

#[test]
fn restore_refuses_a_non_empty_data_dir_and_a_damaged_file() {
    let source = TestNode::start(None);
    source.ok(&["ip-pool", "create", "vms", "10.0.0.0/24"]);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("ipam.backup");
    source.ok(&["backup", file.to_str().unwrap()]);
    drop(source);

    let run = |data_dir: &std::path::Path, backup: &std::path::Path| {
        let config = ipam_node::NodeConfig {
            data_dir: data_dir.to_path_buf(),
            restore: Some(backup.to_path_buf()),
            ..Default::default()
        };
        block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            ipam_node::run(listener, config, std::future::pending())
                .await
                .expect_err("restore must be refused")
                .to_string()
        })
    };
    let busy = dir.path().join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("keep"), "x").unwrap();
    let err = run(&busy, &file);
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(std::fs::read_dir(&busy).unwrap().count(), 1);

    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let bad = dir.path().join("bad.backup");
    std::fs::write(&bad, bytes).unwrap();
    let fresh = dir.path().join("fresh");
    let err = run(&fresh, &bad);
    assert!(err.contains("checksum"), "{err}");
    assert!(!fresh.exists());
}

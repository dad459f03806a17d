//! `ipam-cli import --freeze`: the import's pools are frozen while it writes and unfrozen
//! after, except a pool that was frozen before, which stays frozen.

use crate::common::TestNode;

fn frozen(node: &TestNode, pool: &str) -> bool {
    node.json(&["ip-pool", "show", pool])["frozen"]
        .as_bool()
        .expect("frozen field")
}

#[test]
fn import_freeze_unfreezes_what_it_froze_and_keeps_what_was_frozen() {
    let node = TestNode::start(None);
    node.ok(&["ip-pool", "create", "a", "10.0.0.0/24"]);
    node.ok(&["ip-pool", "create", "b", "10.0.1.0/24"]);
    node.ok(&["ip-pool", "freeze", "b"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("rows.csv");
    std::fs::write(
        &file,
        "pool,ip,owner\na,10.0.0.10,vm-1\na,10.0.0.11,vm-2\nb,10.0.1.10,vm-3\n",
    )
    .expect("write");
    let path = file.to_str().expect("utf-8");
    let report = node.json(&["import", path, "--freeze"]);
    assert_eq!(report["written"], 3, "{report}");
    assert!(!frozen(&node, "a"), "the import unfroze the pool it froze");
    assert!(frozen(&node, "b"), "a pool frozen before stays frozen");
    let listing = node.json(&["ip-pool", "allocations", "a", "--all"]);
    assert_eq!(listing["allocations"].as_array().map(Vec::len), Some(2));
    // A blocked import (a conflicting row) writes nothing and leaves the pools as they were.
    std::fs::write(&file, "pool,ip,owner\na,10.0.0.10,vm-other\n").expect("write");
    node.fails(4, &["import", path, "--freeze"]);
    assert!(!frozen(&node, "a"));
}

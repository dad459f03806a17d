//! `--idempotency-key`: the same command with the same key gets the first answer and changes
//! nothing; another command with the key fails; a malformed key is a usage error.

use crate::common::TestNode;

/// `ipam-cli --idempotency-key KEY ip allocate vms --owner OWNER`.
fn allocate_keyed<'a>(key: &'a str, owner: &'a str) -> [&'a str; 7] {
    [
        "--idempotency-key",
        key,
        "ip",
        "allocate",
        "vms",
        "--owner",
        owner,
    ]
}

#[test]
fn the_same_key_gets_the_first_answer() {
    let node = TestNode::start(None);
    node.ok(&["ip-pool", "create", "vms", "10.0.0.0/29", "--no-gateway"]);
    let first = node.json(&allocate_keyed("k1", "vm-1"));
    assert_eq!(first["ip"], "10.0.0.1");
    // Released meanwhile: without the key, a repeat would allocate again.
    node.ok(&["ip", "release", "vms", "10.0.0.1"]);
    let again = node.json(&allocate_keyed("k1", "vm-1"));
    assert_eq!(again, first, "the recorded answer");
    let pool = node.json(&["ip-pool", "show", "vms"]);
    assert_eq!(pool["stats"]["allocated"], "0", "{pool}");

    let err = node.fails(1, &allocate_keyed("k1", "vm-2"));
    assert!(err.contains("idempotency_key_reused"), "{err}");
    let err = node.fails(2, &allocate_keyed("has space", "x"));
    assert!(err.contains("--idempotency-key"), "{err}");
}

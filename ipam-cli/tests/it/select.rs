//! `ip allocate --selector` through the real binary: the chosen pool in the table and in
//! `-o json`, the family filter, and the exit statuses of its errors.

use crate::common::TestNode;

#[test]
fn allocate_by_selector() {
    let node = TestNode::start(None);
    for (name, cidr, weight) in [("a", "10.0.0.0/24", "100"), ("b", "10.0.1.0/24", "300")] {
        node.ok(&[
            "ip-pool",
            "create",
            name,
            cidr,
            "--label",
            "zone=x",
            "--label",
            "tier=1",
            "--weight",
            weight,
            "--max-utilization",
            "0.9",
        ]);
    }
    node.ok(&["ip-pool", "create", "v6", "fd00::/64", "--label", "zone=x"]);
    node.ok(&["ip", "allocate", "a", "--owner", "f1"]);

    let table = node.ok(&[
        "ip",
        "allocate",
        "--selector",
        "zone=x,tier=1",
        "--owner",
        "vm-1",
    ]);
    assert!(table.starts_with("allocated in pool b\n"), "{table}");
    assert!(table.contains("10.0.1.2"), "{table}");
    let again = node.json(&[
        "ip",
        "allocate",
        "--selector",
        "zone=x",
        "--family",
        "ipv4",
        "--owner",
        "vm-1",
    ]);
    assert_eq!(again["pool"], "b");
    assert_eq!(again["ip"], "10.0.1.2");
    let v6 = node.json(&[
        "ip",
        "allocate",
        "--selector",
        "zone=x",
        "--family",
        "ipv6",
        "--owner",
        "vm-2",
    ]);
    assert_eq!(v6["pool"], "v6");

    // 404 no_matching_pool exits 3; usage errors exit 2.
    node.fails(
        3,
        &["ip", "allocate", "--selector", "zone=y", "--owner", "o"],
    );
    node.fails(2, &["ip", "allocate", "--owner", "o"]);
    node.fails(
        2,
        &[
            "ip",
            "allocate",
            "a",
            "--selector",
            "zone=x",
            "--owner",
            "o",
        ],
    );
    node.fails(
        2,
        &[
            "ip",
            "allocate",
            "--selector",
            "zone=x",
            "--family",
            "ipv5",
            "--owner",
            "o",
        ],
    );
}

#[test]
fn prefix_pools_print_their_blocks() {
    let node = TestNode::start(None);
    let created = node.ok(&[
        "ip-pool",
        "create",
        "mesh",
        "10.42.0.0/16",
        "--delegate",
        "24",
    ]);
    assert!(created.contains("delegates"), "{created}");
    let got = node.ok(&["ip", "allocate", "mesh", "--owner", "host-3"]);
    assert!(
        got.contains("prefix      10.42.0.0/24") || got.contains("10.42.0.0/24"),
        "{got}"
    );
    let json = node.json(&["ip", "allocate", "mesh", "--owner", "host-4"]);
    assert_eq!(json["prefix"], "10.42.1.0/24");
    assert!(json["network"].is_null());
    let pool = node.json(&["ip-pool", "show", "mesh"]);
    assert_eq!(pool["delegation_prefix_len"], 24);
    assert_eq!(pool["stats"]["capacity"], "256");
}

#[test]
fn the_mesh_recipe() {
    let node = TestNode::start(None);
    node.ok(&[
        "ip-pool",
        "create",
        "mesh",
        "10.42.0.0/16",
        "--delegate",
        "24",
    ]);
    for h in 0..4 {
        node.ok(&["ip", "allocate", "mesh", "--owner", &format!("host-{h}")]);
    }
    let child = node.ok(&[
        "ip-pool",
        "create",
        "host-3",
        "10.42.3.0/24",
        "--parent",
        "mesh",
    ]);
    assert!(child.contains("parent"), "{child}");
    let vm = node.json(&["ip", "allocate", "host-3", "--owner", "vm-1"]);
    assert_eq!(vm["ip"], "10.42.3.2");
    // 409 prefix_in_use exits 4.
    node.fails(4, &["ip", "release", "mesh", "10.42.3.0"]);
    node.fails(
        4,
        &[
            "ip-pool",
            "create",
            "host-9",
            "10.42.9.0/24",
            "--parent",
            "mesh",
        ],
    );
}

//! `ipam-cli export` and `ipam-cli import` against nodes started in this process: an export
//! imports into a fresh node as is, conflicts are reported before anything is written, a dry
//! run writes nothing, and a second run changes nothing.

use crate::common::TestNode;
use serde_json::Value;

/// The (ip, owner, labels) of every allocation of `pool`, in address order.
fn listing(node: &TestNode, pool: &str) -> Vec<(String, String, Value)> {
    let json = node.json(&["ip-pool", "allocations", pool, "--all"]);
    json["allocations"]
        .as_array()
        .expect("allocations")
        .iter()
        .map(|a| {
            (
                a["ip"].as_str().unwrap().to_string(),
                a["owner"].as_str().unwrap().to_string(),
                a["labels"].clone(),
            )
        })
        .collect()
}

fn create_pools(node: &TestNode) {
    node.ok(&[
        "ip-pool",
        "create",
        "vms",
        "10.0.0.0/24",
        "--reserve",
        "10.0.0.200-10.0.0.209",
    ]);
    node.ok(&["ip-pool", "create", "v6", "fd00::/64"]);
}

fn write_file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write file");
    path.to_str().expect("utf-8 path").to_string()
}

#[test]
fn an_export_imports_into_a_fresh_node_as_is() {
    let source = TestNode::start(None);
    create_pools(&source);
    source.ok(&[
        "ip", "allocate", "vms", "--owner", "vm-1", "--label", "env=prod",
    ]);
    source.ok(&[
        "ip",
        "allocate",
        "vms",
        "--owner",
        "vm,2 \"quoted\"",
        "--ip",
        "10.0.0.77",
        "--label",
        "odd;key=x",
        "--label",
        "b=c=d",
    ]);
    source.ok(&[
        "ip",
        "allocate",
        "vms",
        "--owner",
        "vm-3",
        "--ip",
        "10.0.0.250",
    ]);
    source.ok(&["ip", "allocate", "v6", "--owner", "vm-1", "--label", "n="]);
    let csv = source.ok(&["export"]);
    assert!(csv.starts_with("pool,ip,owner,labels\n"), "{csv}");
    assert!(csv.contains("vms,10.0.0.2,vm-1,env=prod\n"), "{csv}");
    assert_eq!(csv.lines().count(), 5, "{csv}");
    let json_lines = source.ok(&["-o", "json", "export", "--pool", "vms"]);
    assert_eq!(json_lines.lines().count(), 3, "{json_lines}");
    // Every line is one allocation object.
    for line in json_lines.lines() {
        let a: Value = serde_json::from_str(line).expect(line);
        assert_eq!(a["pool"], "vms");
    }

    let target = TestNode::start(None);
    create_pools(&target);
    let dir = tempfile::tempdir().expect("temp dir");
    let csv_file = write_file(&dir, "all.csv", &csv);
    let report = target.json(&["import", &csv_file]);
    assert_eq!(report["rows"], 4, "{report}");
    assert_eq!(report["written"], 4, "{report}");
    assert_eq!(report["conflicts"], Value::Array(vec![]), "{report}");
    for pool in ["vms", "v6"] {
        assert_eq!(listing(&target, pool), listing(&source, pool), "{pool}");
    }

    // The JSON form of the same allocations is already there: nothing to write.
    let json_file = write_file(&dir, "vms.jsonl", &json_lines);
    let text = target.ok(&["import", &json_file]);
    assert!(
        text.contains("3 row(s): wrote 0, 3 already present, 0 conflicting"),
        "{text}"
    );
    let again = target.json(&["import", &csv_file]);
    assert_eq!(again["written"], 0, "{again}");
    assert_eq!(again["already_present"], 4, "{again}");
    assert_eq!(target.ok(&["export"]), csv);
}

#[test]
fn conflicts_are_reported_before_anything_is_written() {
    let node = TestNode::start(None);
    create_pools(&node);
    node.ok(&[
        "ip", "allocate", "vms", "--owner", "held", "--ip", "10.0.0.5",
    ]);
    let before = listing(&node, "vms");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write_file(
        &dir,
        "rows.csv",
        "pool,ip,owner,labels\n\
         vms,10.0.0.10,new-1,a=1\n\
         vms,10.0.0.5,other,\n\
         vms,10.0.0.11,held,\n\
         vms,192.168.9.9,x,\n\
         vms,fd00::9,y,\n\
         nope,10.0.0.12,z,\n\
         vms,10.0.0.205,r,\n\
         vms,10.0.0.10,dup,\n\
         v6,fd00::10,new-2,\n",
    );

    let err = node.fails(4, &["import", &file]);
    assert!(
        err.contains("7 conflicting row(s); nothing was written"),
        "{err}"
    );
    assert_eq!(listing(&node, "vms"), before);
    assert!(listing(&node, "v6").is_empty());

    let out = node
        .cli()
        .args(["-o", "json", "import", &file])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json report");
    let conflicts: Vec<(u64, &str)> = report["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["line"].as_u64().unwrap(), c["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        conflicts,
        vec![
            (3, "address_in_use"),
            (4, "owner_conflict"),
            (5, "outside_pool"),
            (6, "outside_pool"),
            (7, "pool_not_found"),
            (8, "invalid_argument"),
            (9, "address_in_use"),
        ]
    );

    // A dry run that skips conflicts says what it would write and writes nothing.
    let text = node.ok(&["import", &file, "--dry-run", "--skip-conflicts"]);
    assert!(
        text.contains("9 row(s): would write 2, 0 already present, 7 conflicting (dry run)"),
        "{text}"
    );
    assert!(text.contains("CONFLICT"), "{text}");
    assert_eq!(listing(&node, "vms"), before);
    assert!(listing(&node, "v6").is_empty());

    let report = node.json(&["import", &file, "--skip-conflicts"]);
    assert_eq!(report["written"], 2, "{report}");
    let vms = listing(&node, "vms");
    assert_eq!(vms.len(), 2);
    assert_eq!(vms[1].0, "10.0.0.10");
    assert_eq!(vms[1].1, "new-1");
    assert_eq!(vms[1].2, serde_json::json!({"a": "1"}));
    assert_eq!(listing(&node, "v6")[0].0, "fd00::10");

    // Running it again changes nothing: the two rows are present, the others still conflict.
    let report = node.json(&["import", &file, "--skip-conflicts"]);
    assert_eq!(report["written"], 0, "{report}");
    assert_eq!(report["already_present"], 2, "{report}");
    assert_eq!(listing(&node, "vms"), vms);
}

#[test]
fn an_unreadable_file_is_an_error_naming_the_line() {
    let node = TestNode::start(None);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write_file(&dir, "bad.csv", "pool,ip,owner\nvms,10.0.0.5\n");
    let err = node.fails(1, &["import", &file]);
    assert!(err.contains("line 2"), "{err}");
    let missing = dir.path().join("missing.csv");
    let err = node.fails(1, &["import", missing.to_str().unwrap()]);
    assert!(err.contains("reading"), "{err}");
}

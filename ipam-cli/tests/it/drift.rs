//! `ipam-cli drift` and `ipam-cli reconcile` against a node started in this process: the
//! inventory as CSV or JSON, the drift table, a dry run that writes nothing, `--apply` of the
//! reviewed plan, and usage errors.

use crate::common::TestNode;

fn write_file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write file");
    path.to_str().expect("utf-8 path").to_string()
}

fn owners(node: &TestNode) -> Vec<(String, String)> {
    let json = node.json(&["ip-pool", "allocations", "vms", "--all"]);
    json["allocations"]
        .as_array()
        .expect("allocations")
        .iter()
        .map(|a| {
            (
                a["ip"].as_str().unwrap().to_string(),
                a["owner"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn setup() -> (TestNode, tempfile::TempDir) {
    let node = TestNode::start(None);
    node.ok(&["ip-pool", "create", "vms", "10.0.0.0/24"]);
    for owner in ["vm-1", "vm-2", "vm-3"] {
        node.ok(&["ip", "allocate", "vms", "--owner", owner]);
    }
    (node, tempfile::tempdir().expect("tempdir"))
}

#[test]
fn drift_reads_csv_and_json_and_prints_every_class() {
    let (node, dir) = setup();
    let csv = write_file(
        &dir,
        "seen.csv",
        "ip,owner\n10.0.0.2,vm-1\n10.0.0.3,vm-x\n10.0.0.50,vm-new\n172.16.0.1,\n",
    );
    let table = node.ok(&["drift", "--pool", "vms", "--observed", &csv]);
    assert!(
        table.contains("1 in sync, 1 unknown, 1 missing, 1 mismatched, 1 outside"),
        "{table}"
    );
    for needle in [
        "unknown",
        "10.0.0.50",
        "missing",
        "10.0.0.4",
        "mismatched",
        "vm-x",
        "outside",
    ] {
        assert!(table.contains(needle), "{needle} in {table}");
    }
    let json = write_file(
        &dir,
        "seen.json",
        r#"[{"ip": "10.0.0.2", "owner": "vm-1"}, {"ip": "10.0.0.3"}, {"ip": "10.0.0.4"}]"#,
    );
    let report = node.json(&["drift", "--pool", "vms", "--observed", &json]);
    assert_eq!(report["in_sync"], 3);
    assert!(report["as_of"].as_u64().unwrap() > 0);
    let clean = node.ok(&["drift", "--pool", "vms", "--observed", &json]);
    assert!(clean.contains("3 in sync, 0 unknown"), "{clean}");
}

#[test]
fn reconcile_dry_runs_by_default_and_applies_the_reviewed_plan() {
    let (node, dir) = setup();
    let before = owners(&node);
    let csv = write_file(
        &dir,
        "seen.csv",
        "ip,owner\n10.0.0.2,vm-1\n10.0.0.3,vm-x\n10.0.0.50,vm-new\n10.0.0.51,\n",
    );
    let args = [
        "reconcile",
        "--pool",
        "vms",
        "--observed",
        &csv,
        "--release-missing",
        "--fix-mismatched",
        "--grace-seconds",
        "0",
    ];
    let plan = node.ok(&args);
    assert!(plan.contains("dry run: nothing was written"), "{plan}");
    assert!(
        plan.contains("1 adopt, 1 release, 1 reassign, 1 skipped"),
        "{plan}"
    );
    assert!(plan.contains("no_owner"), "{plan}");
    assert_eq!(owners(&node), before, "a dry run writes nothing");
    let mut apply = vec!["-o", "json"];
    apply.extend_from_slice(&args);
    apply.push("--apply");
    let text = node.ok(&apply);
    let out: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(out["plan"]["dry_run"], true);
    assert_eq!(out["applied"]["dry_run"], false);
    assert_eq!(out["applied"]["adopted"][0]["owner"], "vm-new");
    assert_eq!(
        owners(&node),
        vec![
            ("10.0.0.2".to_string(), "vm-1".to_string()),
            ("10.0.0.3".to_string(), "vm-x".to_string()),
            ("10.0.0.50".to_string(), "vm-new".to_string()),
        ]
    );
}

#[test]
fn reconcile_without_flags_only_adopts_and_keeps_recent_allocations() {
    let (node, dir) = setup();
    let csv = write_file(&dir, "seen.csv", "ip,owner\n10.0.0.60,vm-9\n");
    // Missing addresses are never released unless asked; with --release-missing the fresh
    // ones are within the default 300 s grace period.
    node.ok(&["reconcile", "--pool", "vms", "--observed", &csv, "--apply"]);
    assert_eq!(owners(&node).len(), 4);
    let out = node.json(&[
        "reconcile",
        "--pool",
        "vms",
        "--observed",
        &csv,
        "--release-missing",
        "--no-adopt",
        "--apply",
    ]);
    assert_eq!(out["applied"]["released"], serde_json::json!([]));
    assert_eq!(out["applied"]["skipped"][0]["reason"], "in_grace");
    assert_eq!(owners(&node).len(), 4);
}

#[test]
fn bad_inventories_and_unknown_pools_fail_with_their_exit_status() {
    let (node, dir) = setup();
    let bad = write_file(&dir, "bad.csv", "address,who\n10.0.0.1,x\n");
    let err = node.fails(1, &["drift", "--pool", "vms", "--observed", &bad]);
    assert!(err.contains("ip,owner"), "{err}");
    let ok = write_file(&dir, "ok.csv", "ip,owner\n10.0.0.2,vm-1\n");
    node.fails(3, &["drift", "--pool", "nope", "--observed", &ok]);
    let dup = write_file(&dir, "dup.csv", "ip,owner\n10.0.0.2,vm-1\n10.0.0.2,vm-2\n");
    node.fails(1, &["reconcile", "--pool", "vms", "--observed", &dup]);
}

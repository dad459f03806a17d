//! A backup written by the second-round release (`tests/fixtures/backup-round2/`) restores and
//! serves: every pool, allocation (leases included) and event it held, as that release listed
//! them (`expected.json`), and new writes continue its generations and event ids.
//!
//! The fixture holds what this round added to the stored state: pool settings, a lease, a
//! cooling address, a prefix pool with a child pool in its block, the event log, request ids
//! and an idempotency key, the replicated feature level. It was written by this test itself
//! with `IPAM_WRITE_FIXTURE=1 cargo test -p ipam-raft --test it backup_fixture::`; every later
//! release must keep restoring it (see `docs/architecture.md`, "Formats and upgrades").

use crate::support::nodes::SERIAL;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipam_core::pools::PoolSettings;
use ipam_core::requests::KeyedRequest;
use ipam_core::{GatewayChoice, Labels, PoolSpec, PoolSpecV2, PoolSpecV3};
use ipam_raft::{Config, Consistency, Ipam, ManualClock};
use serde_json::{json, Value};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/backup-round2")
}

fn spec(name: &str, cidr: &str) -> PoolSpec {
    PoolSpec {
        name: name.into(),
        cidr: cidr.parse().expect("cidr"),
        gateway: GatewayChoice::Default,
        reserved: Vec::new(),
        labels: Labels::from([("zone".to_string(), "a".to_string())]),
        description: String::new(),
    }
}

/// What a node holds, as plain JSON: pools, every allocation, every event.
async fn listing(ipam: &Ipam) -> Value {
    let mut pools = Vec::new();
    let mut allocations = Vec::new();
    for p in ipam
        .pools(&Labels::new(), Consistency::Linearizable)
        .await
        .expect("pools")
    {
        pools.push(json!({
            "name": p.name, "cidr": p.cidr.to_string(), "revision": p.revision,
            "allocated": p.stats.allocated.to_string(),
        }));
        let page = ipam
            .allocations(&p.name, None, None, 1_000, Consistency::Linearizable)
            .await
            .expect("allocations");
        for a in page.allocations {
            allocations.push(json!({
                "pool": a.pool, "ip": a.ip.to_string(), "owner": a.owner,
                "generation": a.generation, "labels": a.labels,
                "expires_at": a.expires_at.map(|s| s.0),
                "prefix": a.prefix.map(|c| c.to_string()),
            }));
        }
    }
    let events: Vec<Value> = ipam
        .events(None, None, 1_000, Consistency::Linearizable)
        .await
        .expect("events")
        .events
        .into_iter()
        .map(|e| json!({"id": e.id, "kind": e.kind.as_str(), "owner": e.owner}))
        .collect();
    json!({"pools": pools, "allocations": allocations, "events": events})
}

/// Node `id` on `dir`, stamping entries with a clock that reads `now_ms`, once it leads.
async fn leader(dir: &Path, id: u64, now_ms: u64) -> Ipam {
    let mut config = Config::new(id, dir, "127.0.0.1:9");
    config.clock = ManualClock::new(now_ms).stamp_clock();
    let ipam = Ipam::start(config).await.expect("start");
    ipam.wait_for(Duration::from_secs(30), |s| s.leader == Some(id))
        .await
        .expect("leader");
    ipam
}

/// Writes the fixture: a node holding one of everything this round stores, its backup and
/// its listing.
async fn write_fixture(dir: &Path) {
    let ipam = Ipam::start(Config::new(1, dir.join("source"), "127.0.0.1:9"))
        .await
        .expect("start");
    ipam.init(Vec::new()).await.expect("init");
    ipam.wait_for(Duration::from_secs(30), |s| s.leader == Some(1))
        .await
        .expect("leader");
    let settings = PoolSettings {
        dns: vec!["10.0.0.53".parse().expect("dns")],
        mtu: Some(9000),
        reuse_cooldown_seconds: 600,
        default_ttl_seconds: Some(3600),
        ..PoolSettings::default()
    };
    ipam.create_pool_v2(PoolSpecV2 {
        base: spec("vms", "10.0.0.0/24"),
        settings,
    })
    .await
    .expect("pool");
    for owner in ["vm-1", "vm-2", "vm-3"] {
        ipam.allocate_lease("vms", owner, None, Labels::new(), Some(0))
            .await
            .expect("allocate");
    }
    ipam.allocate_lease("vms", "agent", None, Labels::new(), None)
        .await
        .expect("lease");
    let released = ipam
        .allocate_lease("vms", "gone", None, Labels::new(), Some(0))
        .await
        .expect("allocate")
        .0;
    ipam.release("vms", released.ip, Some(released.generation))
        .await
        .expect("release: the address cools");
    ipam.create_pool_v3(PoolSpecV3 {
        base: spec("mesh", "10.42.0.0/16"),
        settings: PoolSettings::default(),
        delegation_prefix_len: Some(24),
        parent: None,
    })
    .await
    .expect("prefix pool");
    let block = ipam
        .allocate_lease("mesh", "host-1", None, Labels::new(), Some(0))
        .await
        .expect("block")
        .0;
    let mut child = spec("host-1", &block.prefix.expect("a block").to_string());
    child.labels = Labels::new();
    ipam.create_pool_v3(PoolSpecV3 {
        base: child,
        settings: PoolSettings::default(),
        delegation_prefix_len: None,
        parent: Some("mesh".into()),
    })
    .await
    .expect("child pool");
    let keyed = ipam.with_idempotency_key(KeyedRequest {
        key: "fixture-key".into(),
        fingerprint: [7; 32],
    });
    keyed
        .allocate("host-1", "ctr-1", None, BTreeMap::new())
        .await
        .expect("keyed allocate");
    std::fs::create_dir_all(fixture()).expect("fixture dir");
    let out = std::fs::File::create(fixture().join("backup.bin")).expect("create");
    ipam.backup(out).await.expect("backup");
    let listing = listing(&ipam).await;
    std::fs::write(
        fixture().join("expected.json"),
        serde_json::to_string_pretty(&listing).expect("json"),
    )
    .expect("write listing");
    ipam.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_of_the_second_round_restores_and_serves() {
    let _serial = SERIAL.lock().await;
    let tmp = tempfile::tempdir().expect("tmp");
    if std::env::var_os("IPAM_WRITE_FIXTURE").is_some() {
        write_fixture(tmp.path()).await;
    }
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture().join("expected.json")).expect("expected.json"),
    )
    .expect("json");
    let target = tmp.path().join("restored");
    ipam_raft::restore(&fixture().join("backup.bin"), &target, 5, "127.0.0.1:9")
        .expect("restore the fixture");
    // The fixture's lease must not run out on the wall clock while this test reads it: the
    // restored node's log time is one minute before it ends, whenever the test runs.
    let lease_end = expected["allocations"]
        .as_array()
        .expect("allocations")
        .iter()
        .filter_map(|a| a["expires_at"].as_u64())
        .min()
        .expect("the fixture holds a lease");
    let ipam = leader(&target, 5, lease_end - 60_000).await;
    assert_eq!(listing(&ipam).await, expected);
    assert!(ipam.check(false).await.expect("check").problems.is_empty());

    // It keeps serving: a new allocation continues the generations and the event ids.
    let last_generation = expected["allocations"]
        .as_array()
        .expect("allocations")
        .iter()
        .filter_map(|a| a["generation"].as_u64())
        .max()
        .expect("some");
    let last_event = expected["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["id"].as_u64())
        .max()
        .expect("some");
    let (a, existing) = ipam
        .allocate("vms", "after-restore", None, BTreeMap::new())
        .await
        .expect("allocate");
    assert!(!existing);
    assert!(a.generation > last_generation);
    let events = ipam
        .events(Some(last_event), None, 10, Consistency::Linearizable)
        .await
        .expect("events")
        .events;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].id, last_event + 1);
    ipam.shutdown().await.expect("shutdown");
}

//! `POST /api/v1/drift` and `POST /api/v1/reconcile` against a real single-node `Ipam`, with
//! the leader's clock injected so the grace period moves on log time without waiting.

use axum::http::StatusCode;
use ipam_raft::ManualClock;
use serde_json::{json, Value};

use crate::common::{start_with, TestNode};

async fn node(clock: &ManualClock) -> TestNode {
    let stamp = clock.stamp_clock();
    let n = start_with(None, true, move |c| c.clock = stamp).await;
    let r = n
        .post("/api/v1/pools", json!({"name": "p", "cidr": "10.0.0.0/24"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    for owner in ["a", "b", "c"] {
        let r = n
            .post("/api/v1/pools/p/allocations", json!({ "owner": owner }))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    n
}

async fn listing(n: &TestNode) -> Vec<(String, String)> {
    let r = n.get("/api/v1/pools/p/allocations").await;
    r.json()["allocations"]
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

fn inventory() -> Value {
    json!([
        {"ip": "10.0.0.2", "owner": "a"},
        {"ip": "10.0.0.3", "owner": "x"},
        {"ip": "10.0.0.9", "owner": "n"},
        {"ip": "10.0.0.10"},
        {"ip": "192.168.1.1"}
    ])
}

#[tokio::test]
async fn drift_reports_every_class_in_address_order() {
    let clock = ManualClock::new(1_700_000_000_000);
    let n = node(&clock).await;
    let r = n
        .post(
            "/api/v1/drift",
            json!({"pools": ["p"], "observed": inventory()}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let d = r.json();
    assert!(d["as_of"].as_u64().unwrap() > 0);
    assert_eq!(d["in_sync"], 1);
    assert_eq!(
        d["unknown"],
        json!([
            {"ip": "10.0.0.9", "pool": "p", "owner": "n"},
            {"ip": "10.0.0.10", "pool": "p", "owner": null}
        ])
    );
    assert_eq!(d["missing"][0]["ip"], "10.0.0.4");
    assert_eq!(d["missing"][0]["owner"], "c");
    assert_eq!(d["mismatched"][0]["expected_owner"], "b");
    assert_eq!(d["mismatched"][0]["observed_owner"], "x");
    assert!(d["mismatched"][0]["generation"].as_u64().is_some());
    assert_eq!(d["outside"], json!(["192.168.1.1"]));
    // In sync: nothing in any list.
    let r = n
        .post(
            "/api/v1/drift",
            json!({"pools": ["p"], "observed": [
                {"ip": "10.0.0.2", "owner": "a"}, {"ip": "10.0.0.3"}, {"ip": "10.0.0.4"}
            ]}),
        )
        .await;
    let d = r.json();
    assert_eq!(d["in_sync"], 3);
    assert_eq!(d["unknown"], json!([]));
    assert_eq!(d["missing"], json!([]));
}

#[tokio::test]
async fn bad_drift_requests_are_400_and_404() {
    let clock = ManualClock::new(1_700_000_000_000);
    let n = node(&clock).await;
    n.post("/api/v1/drift", json!({"pools": [], "observed": []}))
        .await
        .expect(400, "invalid_argument");
    n.post("/api/v1/drift", json!({"pools": ["nope"], "observed": []}))
        .await
        .expect(404, "pool_not_found");
    n.post(
        "/api/v1/drift",
        json!({"pools": ["p"], "observed": [{"ip": "10.0.0.300"}]}),
    )
    .await
    .expect(400, "invalid_argument");
    n.post(
        "/api/v1/drift",
        json!({"pools": ["p"], "observed": [{"ip": "10.0.0.2"}, {"ip": "10.0.0.2"}]}),
    )
    .await
    .expect(400, "invalid_argument");
    let many: Vec<Value> = (0..20_001u32)
        .map(|i| json!({"ip": std::net::Ipv4Addr::from(0x0b00_0000 + i).to_string()}))
        .collect();
    n.post("/api/v1/drift", json!({"pools": ["p"], "observed": many}))
        .await
        .expect(400, "invalid_argument");
    let ok: Vec<Value> = many[..20_000]
        .iter()
        .cloned()
        .map(|mut v| {
            v["owner"] = json!("an-owner-name-of-some-length/eth0");
            v
        })
        .collect();
    let r = n
        .post("/api/v1/drift", json!({"pools": ["p"], "observed": ok}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "20,000 entries with owners fit");
    assert_eq!(r.json()["outside"].as_array().unwrap().len(), 20_000);
}

#[tokio::test]
async fn reconcile_is_a_dry_run_by_default_then_applies_the_reviewed_plan() {
    let clock = ManualClock::new(1_700_000_000_000);
    let n = node(&clock).await;
    clock.advance(600_000);
    let before = listing(&n).await;
    let body = json!({"pools": ["p"], "observed": inventory(),
                      "release_missing": true, "fix_mismatched": true});
    let r = n.post("/api/v1/reconcile", body.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let plan = r.json();
    assert_eq!(plan["dry_run"], true);
    assert_eq!(listing(&n).await, before, "a dry run writes nothing");
    assert_eq!(plan["adopted"][0]["ip"], "10.0.0.9");
    assert_eq!(plan["released"][0]["ip"], "10.0.0.4");
    assert_eq!(plan["reassigned"][0]["owner"], "x");
    assert_eq!(
        plan["skipped"],
        json!([{"ip": "10.0.0.10", "reason": "no_owner"}])
    );
    let mut apply = body.clone();
    apply["dry_run"] = json!(false);
    apply["as_of"] = plan["as_of"].clone();
    let r = n.post("/api/v1/reconcile", apply).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let done = r.json();
    assert_eq!(done["dry_run"], false);
    assert_eq!(done["adopted"][0]["owner"], "n");
    assert!(done["adopted"][0]["generation"].as_u64().unwrap() > 0);
    assert_eq!(
        listing(&n).await,
        vec![
            ("10.0.0.2".to_string(), "a".to_string()),
            ("10.0.0.3".to_string(), "x".to_string()),
            ("10.0.0.9".to_string(), "n".to_string()),
        ]
    );
    let metrics = n.get("/metrics").await.text;
    assert!(
        metrics.contains("ipam_reconcile_changes_total{kind=\"adopted\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn plan_stale_when_an_allocation_changes_between_review_and_apply() {
    let clock = ManualClock::new(1_700_000_000_000);
    let n = node(&clock).await;
    let body = json!({"pools": ["p"], "observed": inventory()});
    let plan = n.post("/api/v1/reconcile", body.clone()).await.json();
    let r = n
        .post("/api/v1/pools/p/allocations", json!({"owner": "late"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let mut apply = body;
    apply["dry_run"] = json!(false);
    apply["as_of"] = plan["as_of"].clone();
    n.post("/api/v1/reconcile", apply.clone())
        .await
        .expect(409, "plan_stale");
    assert_eq!(listing(&n).await.len(), 4, "nothing applied");
    // A dry run with the stale index is refused the same way.
    let mut dry = apply;
    dry["dry_run"] = json!(true);
    n.post("/api/v1/reconcile", dry)
        .await
        .expect(409, "plan_stale");
}

#[tokio::test]
async fn recent_allocations_are_in_grace_on_log_time() {
    let clock = ManualClock::new(1_700_000_000_000);
    let n = node(&clock).await;
    let body = json!({"pools": ["p"], "observed": [], "release_missing": true,
                      "dry_run": false, "adopt_unknown": false});
    let r = n.post("/api/v1/reconcile", body.clone()).await.json();
    assert_eq!(r["released"], json!([]));
    assert_eq!(r["skipped"].as_array().unwrap().len(), 3);
    assert_eq!(r["skipped"][0]["reason"], "in_grace");
    clock.advance(300_000);
    let r = n.post("/api/v1/reconcile", body).await.json();
    assert_eq!(r["released"].as_array().unwrap().len(), 3, "{r}");
    assert!(listing(&n).await.is_empty());
}

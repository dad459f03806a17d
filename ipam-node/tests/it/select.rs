//! `POST /api/v1/allocations` and the batch op `allocate_any` against a real single-node
//! `Ipam`: the chosen pool, 201/200, `no_matching_pool`, `pool_exhausted`, input errors, the
//! selection counter.

use crate::common;

use serde_json::{json, Value};

use common::{start, TestNode};

async fn pool(n: &TestNode, body: Value) {
    let r = n.post("/api/v1/pools", body).await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.text);
}

async fn select(n: &TestNode, body: Value) -> common::Reply {
    n.post("/api/v1/allocations", body).await
}

#[tokio::test]
async fn selection_picks_the_least_loaded_pool_and_answers_200_when_held() {
    let n = start(None, true).await;
    pool(
        &n,
        json!({"name": "a", "cidr": "10.0.0.0/24", "labels": {"zone": "x"}}),
    )
    .await;
    pool(
        &n,
        json!({"name": "b", "cidr": "10.0.1.0/24", "labels": {"zone": "x"}, "weight": 300}),
    )
    .await;
    pool(
        &n,
        json!({"name": "c", "cidr": "fd00::/64", "labels": {"zone": "x"}}),
    )
    .await;
    for i in 0..3 {
        let r = n
            .post(
                "/api/v1/pools/a/allocations",
                json!({"owner": format!("f{i}")}),
            )
            .await;
        assert_eq!(r.status.as_u16(), 201);
    }
    let r = select(
        &n,
        json!({"owner": "vm-1", "selector": {"zone": "x"}, "family": "ipv4"}),
    )
    .await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.text);
    let a = r.json();
    assert_eq!(a["pool"], "b");
    assert_eq!(a["network"]["prefix"], "10.0.1.2/24");
    let r = select(
        &n,
        json!({"owner": "vm-1", "selector": {"zone": "x"}, "family": "ipv4"}),
    )
    .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
    assert_eq!(r.json()["ip"], a["ip"]);
    let r = select(
        &n,
        json!({"owner": "vm-6", "selector": {"zone": "x"}, "family": "ipv6", "ttl_seconds": 60}),
    )
    .await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.text);
    assert_eq!(r.json()["pool"], "c");
    assert!(r.json()["expires_at"].is_string());

    let m = n.get("/metrics").await.text;
    assert!(
        m.contains("ipam_selections_total{pool=\"b\",result=\"new\"} 1"),
        "{m}"
    );
    assert!(m.contains("ipam_selections_total{pool=\"b\",result=\"existing\"} 1"));
}

#[tokio::test]
async fn selection_errors_have_their_codes() {
    let n = start(None, true).await;
    pool(&n, json!({"name": "tiny", "cidr": "10.0.0.0/30", "labels": {"zone": "x"}, "max_utilization": 0.5})).await;
    select(&n, json!({"owner": "o", "selector": {"zone": "y"}}))
        .await
        .expect(404, "no_matching_pool");
    select(
        &n,
        json!({"owner": "o", "selector": {"zone": "x"}, "family": "ipv6"}),
    )
    .await
    .expect(404, "no_matching_pool");
    // A /30 has one address after the gateway; a cap of 0.5 refuses it to selection.
    select(&n, json!({"owner": "o", "selector": {"zone": "x"}}))
        .await
        .expect(409, "pool_exhausted");
    // ... but not to an allocation naming the pool.
    let r = n
        .post("/api/v1/pools/tiny/allocations", json!({"owner": "o"}))
        .await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.text);
    select(&n, json!({"owner": "", "selector": {}}))
        .await
        .expect(400, "invalid_argument");
    select(&n, json!({"owner": "o", "family": "ipv5"}))
        .await
        .expect(400, "invalid_argument");
    select(&n, json!({"owner": "o", "pool": "tiny"}))
        .await
        .expect(400, "invalid_argument");
    let m = n.get("/metrics").await.text;
    assert!(
        m.contains("ipam_allocation_errors_total{pool=\"\",reason=\"no_matching_pool\"} 2"),
        "{m}"
    );
}

#[tokio::test]
async fn batch_allocate_any_sees_earlier_ops_and_fails_atomically() {
    let n = start(None, true).await;
    let r = n
        .post(
            "/api/v1/batch",
            json!({"ops": [
                {"op": "create_pool", "name": "p", "cidr": "10.1.0.0/24", "labels": {"k": "v"}},
                {"op": "allocate_any", "owner": "vm-1", "selector": {"k": "v"}},
                {"op": "allocate_any", "owner": "vm-2", "selector": {"k": "v"}, "labels": {"nic": "eth0"}}
            ]}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
    let results = r.json()["results"].clone();
    assert_eq!(results[1]["ip"], "10.1.0.2");
    assert_eq!(results[2]["ip"], "10.1.0.3");
    assert_eq!(results[2]["labels"]["nic"], "eth0");
    let r = n
        .post(
            "/api/v1/batch",
            json!({"ops": [
                {"op": "allocate_any", "owner": "vm-3", "selector": {"k": "v"}},
                {"op": "allocate_any", "owner": "vm-4", "selector": {"k": "nope"}}
            ]}),
        )
        .await;
    r.expect(404, "no_matching_pool");
    assert_eq!(r.json()["error"]["index"], 1);
    let r = n.get("/api/v1/allocations?owner=vm-3").await;
    assert_eq!(r.json()["allocations"], json!([]));
}

//! Prefix pools over HTTP: `delegation_prefix_len` on create, blocks with `"prefix"` and
//! `"network": null`, counts in blocks, misaligned blocks, immutable layout.

use axum::http::Method;
use serde_json::json;

use crate::common::start;

#[tokio::test]
async fn a_prefix_pool_hands_out_blocks() {
    let n = start(None, true).await;
    let r = n
        .post(
            "/api/v1/pools",
            json!({"name": "mesh", "cidr": "10.42.0.0/16", "delegation_prefix_len": 24,
                   "reserved": ["10.42.0.0/24"]}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.text);
    let p = r.json();
    assert_eq!(p["delegation_prefix_len"], 24);
    assert_eq!(p["gateway"], serde_json::Value::Null);
    assert_eq!(p["stats"]["capacity"], "255");

    let r = n
        .post(
            "/api/v1/pools/mesh/allocations",
            json!({"owner": "host-1", "ttl_seconds": 60}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.text);
    let a = r.json();
    assert_eq!(a["ip"], "10.42.1.0");
    assert_eq!(a["prefix"], "10.42.1.0/24");
    assert_eq!(a["network"], serde_json::Value::Null);
    let r = n.get("/api/v1/pools/mesh").await;
    assert_eq!(r.json()["stats"]["allocated"], "1");
    assert_eq!(r.json()["stats"]["free"], "254");
    n.post(
        "/api/v1/pools/mesh/allocations",
        json!({"owner": "h", "ip": "10.42.7.1"}),
    )
    .await
    .expect(400, "invalid_argument");
    let r = n.get("/api/v1/pools/mesh/next-free?count=2").await;
    assert_eq!(r.json()["addresses"], json!(["10.42.2.0", "10.42.3.0"]));
    let r = n
        .call(
            Method::PATCH,
            "/api/v1/pools/mesh",
            Some(json!({"reserved": []})),
        )
        .await;
    r.expect(400, "invalid_argument");
    n.post(
        "/api/v1/pools",
        json!({"name": "bad", "cidr": "10.50.0.0/16", "delegation_prefix_len": 8}),
    )
    .await
    .expect(400, "invalid_argument");
    // IPv6: a /48 delegating /64s.
    let r = n
        .post(
            "/api/v1/pools",
            json!({"name": "v6", "cidr": "fd00:9::/48", "delegation_prefix_len": 64}),
        )
        .await;
    assert_eq!(r.json()["stats"]["capacity"], "65536");
    let r = n
        .post("/api/v1/pools/v6/allocations", json!({"owner": "h"}))
        .await;
    assert_eq!(r.json()["prefix"], "fd00:9::/64");
    // Releasing the block frees it.
    n.delete("/api/v1/pools/mesh/allocations/10.42.1.0").await;
    let r = n.get("/api/v1/pools/mesh").await;
    assert_eq!(r.json()["stats"]["allocated"], "0");
}

#[tokio::test]
async fn a_child_pool_in_a_block_and_the_innermost_lookup() {
    let n = start(None, true).await;
    let r = n
        .post(
            "/api/v1/pools",
            json!({"name": "mesh", "cidr": "10.42.0.0/16", "delegation_prefix_len": 24}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.text);
    let r = n
        .post("/api/v1/pools/mesh/allocations", json!({"owner": "host-3"}))
        .await;
    assert_eq!(r.json()["prefix"], "10.42.0.0/24");
    n.post(
        "/api/v1/pools",
        json!({"name": "stray", "cidr": "10.42.1.0/24", "parent": "mesh"}),
    )
    .await
    .expect(409, "pool_overlap");
    n.post(
        "/api/v1/pools",
        json!({"name": "stray", "cidr": "10.42.0.0/24", "parent": "nope"}),
    )
    .await
    .expect(404, "pool_not_found");
    n.post(
        "/api/v1/pools",
        json!({"name": "stray", "cidr": "10.42.0.0/24"}),
    )
    .await
    .expect(409, "pool_overlap");
    let r = n
        .post(
            "/api/v1/pools",
            json!({"name": "host-3", "cidr": "10.42.0.0/24", "parent": "mesh"}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.text);
    assert_eq!(r.json()["parent"], "mesh");
    let r = n
        .post("/api/v1/pools/host-3/allocations", json!({"owner": "vm-1"}))
        .await;
    assert_eq!(r.json()["ip"], "10.42.0.2");
    assert_eq!(r.json()["network"]["prefix"], "10.42.0.2/24");

    let r = n.get("/api/v1/addresses/10.42.0.2").await;
    let body = r.json();
    assert_eq!(body["pool"], "host-3");
    assert_eq!(body["allocation"]["owner"], "vm-1");
    assert_eq!(body["block"]["owner"], "host-3");
    assert_eq!(body["block"]["prefix"], "10.42.0.0/24");

    n.delete("/api/v1/pools/mesh/allocations/10.42.0.0")
        .await
        .expect(409, "prefix_in_use");
    n.delete("/api/v1/pools/mesh?force=true")
        .await
        .expect(409, "prefix_in_use");
    let r = n.delete("/api/v1/pools/host-3?force=true").await;
    assert_eq!(r.status.as_u16(), 204, "{}", r.text);
    let r = n.delete("/api/v1/pools/mesh/allocations/10.42.0.0").await;
    assert_eq!(r.status.as_u16(), 204, "{}", r.text);
}

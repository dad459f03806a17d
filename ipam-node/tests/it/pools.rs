//! The second-round pool endpoints against a real single-node `Ipam`: network configuration
//! on every allocation answer, `PATCH` with revision fencing, ranges, freezing and the
//! next-free preview — every new status and code.

use crate::common;

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use common::{start, TestNode};

trait StatusIs {
    fn status_is(&self, status: u16);
}

impl StatusIs for common::Reply {
    #[track_caller]
    fn status_is(&self, status: u16) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
    }
}

async fn patch(n: &TestNode, uri: &str, body: Value) -> common::Reply {
    n.call(Method::PATCH, uri, Some(body)).await
}

async fn alloc(n: &TestNode, pool: &str, owner: &str) -> common::Reply {
    n.post(
        &format!("/api/v1/pools/{pool}/allocations"),
        json!({ "owner": owner }),
    )
    .await
}

#[tokio::test]
async fn create_with_settings_and_network_on_every_answer() {
    let n = start(None, true).await;
    let r = n
        .post(
            "/api/v1/pools",
            json!({
                "name": "vms", "cidr": "10.0.0.0/24",
                "dns": ["10.0.0.2", "fd00::53"], "mtu": 9000,
                "routes": [{"dst": "192.168.0.0/16", "via": "10.0.0.254"}],
                "domain": "vms.example", "reuse_cooldown_seconds": 600,
                "default_ttl_seconds": 3600, "weight": 5, "max_utilization": 0.9
            }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let p = r.json();
    assert_eq!(p["revision"], 1);
    assert_eq!(
        p["ranges"],
        json!([{"cidr": "10.0.0.0/24", "gateway": "10.0.0.1"}])
    );
    assert_eq!(p["mtu"], 9000);
    assert_eq!(p["weight"], 5);
    assert_eq!(p["max_utilization"], 0.9);
    assert_eq!(p["reuse_cooldown_seconds"], 600);
    assert_eq!(p["default_ttl_seconds"], 3600);
    assert_eq!(p["frozen"], false);

    let want = json!({
        "prefix": "10.0.0.2/24", "gateway": "10.0.0.1",
        "dns": ["10.0.0.2", "fd00::53"], "mtu": 9000,
        "routes": [{"dst": "192.168.0.0/16", "via": "10.0.0.254"}],
        "domain": "vms.example"
    });
    let r = alloc(&n, "vms", "vm-1").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json()["network"], want);
    // The existing-owner answer, the listing, the lookup and the owner query carry it too.
    let r = alloc(&n, "vms", "vm-1").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["network"], want);
    let r = n.get("/api/v1/pools/vms/allocations").await;
    assert_eq!(r.json()["allocations"][0]["network"], want);
    let r = n.get("/api/v1/addresses/10.0.0.2").await;
    assert_eq!(r.json()["allocation"]["network"], want);
    let r = n.get("/api/v1/allocations?owner=vm-1").await;
    assert_eq!(r.json()["allocations"][0]["network"], want);
    let r = n
        .post(
            "/api/v1/batch",
            json!({"ops": [{"op": "allocate", "pool": "vms", "owner": "vm-2"}]}),
        )
        .await;
    assert_eq!(r.json()["results"][0]["network"]["prefix"], "10.0.0.3/24");

    // Computed from the pool as it is now.
    let r = patch(&n, "/api/v1/pools/vms", json!({"mtu": null, "dns": []})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = n.get("/api/v1/addresses/10.0.0.2").await;
    assert_eq!(r.json()["allocation"]["network"]["mtu"], Value::Null);
    assert_eq!(r.json()["allocation"]["network"]["dns"], json!([]));

    // Bounds of the new fields.
    for (field, value) in [
        ("mtu", json!(500)),
        ("weight", json!(0)),
        ("weight", json!(1001)),
        ("max_utilization", json!(0)),
        ("max_utilization", json!(1.5)),
        ("default_ttl_seconds", json!(5)),
        ("reuse_cooldown_seconds", json!(31_536_001)),
        ("dns", json!(vec!["1.1.1.1"; 9])),
        ("domain", json!("")),
        ("routes", json!([{"dst": "10.9.0.1/16", "via": "10.0.0.1"}])),
    ] {
        let mut body = json!({"name": "bad", "cidr": "10.50.0.0/24"});
        body[field] = value.clone();
        let r = n.post("/api/v1/pools", body).await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{field}={value}: {}",
            r.text
        );
        assert_eq!(r.code(), "invalid_argument");
    }
    let r = n
        .post(
            "/api/v1/pools",
            json!({"name": "v6", "cidr": "fd00::/64", "mtu": 1000}),
        )
        .await;
    r.expect(400, "invalid_argument");
}

#[tokio::test]
async fn patch_fences_and_refuses_covering_an_allocation() {
    let n = start(None, true).await;
    n.post("/api/v1/pools", json!({"name": "p", "cidr": "10.1.0.0/24"}))
        .await
        .status_is(201);
    alloc(&n, "p", "a").await; // 10.1.0.2
    let r = patch(
        &n,
        "/api/v1/pools/p?revision=1",
        json!({"labels": {"env": "prod"}, "description": "d", "reserved": ["10.1.0.200-10.1.0.209"]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["revision"], 2);
    assert_eq!(r.json()["labels"]["env"], "prod");
    assert_eq!(r.json()["stats"]["capacity"], "243");
    patch(
        &n,
        "/api/v1/pools/p?revision=1",
        json!({"description": "x"}),
    )
    .await
    .expect(409, "revision_mismatch");
    let r = patch(&n, "/api/v1/pools/p", json!({"gateway": "10.1.0.2"})).await;
    r.expect(409, "address_in_use");
    assert!(r.text.contains("10.1.0.2"), "{}", r.text);
    let r = patch(&n, "/api/v1/pools/p", json!({"reserved": ["10.1.0.0/28"]})).await;
    r.expect(409, "address_in_use");
    assert!(r.text.contains("10.1.0.2"), "{}", r.text);
    // Nothing changed.
    assert_eq!(n.get("/api/v1/pools/p").await.json()["revision"], 2);
    patch(&n, "/api/v1/pools/p", json!({"cidr": "10.2.0.0/24"}))
        .await
        .expect(400, "invalid_argument");
    patch(&n, "/api/v1/pools/p", json!({"name": "q"}))
        .await
        .expect(400, "invalid_argument");
    patch(&n, "/api/v1/pools/p", json!({"reserved": ["10.9.0.1"]}))
        .await
        .expect(400, "invalid_argument");
    patch(&n, "/api/v1/pools/p?revision=x", json!({}))
        .await
        .expect(400, "invalid_argument");
    patch(&n, "/api/v1/pools/nope", json!({"frozen": true}))
        .await
        .expect(404, "pool_not_found");
    let r = patch(&n, "/api/v1/pools/p", json!({"gateway": null})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["gateway"], Value::Null);
    assert_eq!(r.json()["stats"]["capacity"], "244");
}

#[tokio::test]
async fn ranges_extend_a_full_pool() {
    let n = start(None, true).await;
    n.post("/api/v1/pools", json!({"name": "p", "cidr": "10.2.0.0/30"}))
        .await
        .status_is(201);
    n.post("/api/v1/pools", json!({"name": "q", "cidr": "10.3.0.0/24"}))
        .await
        .status_is(201);
    assert_eq!(alloc(&n, "p", "a").await.json()["ip"], "10.2.0.2");
    alloc(&n, "p", "b").await.expect(409, "pool_exhausted");

    let r = n
        .post("/api/v1/pools/p/ranges", json!({"cidr": "10.2.1.0/29"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(
        r.json()["ranges"],
        json!([
            {"cidr": "10.2.0.0/30", "gateway": "10.2.0.1"},
            {"cidr": "10.2.1.0/29", "gateway": "10.2.1.1"}
        ])
    );
    assert_eq!(r.json()["stats"]["capacity"], "6");
    assert_eq!(r.json()["revision"], 2);
    let r = alloc(&n, "p", "b").await;
    assert_eq!(r.json()["ip"], "10.2.1.2");
    assert_eq!(r.json()["network"]["prefix"], "10.2.1.2/29");
    assert_eq!(r.json()["network"]["gateway"], "10.2.1.1");
    assert_eq!(
        n.get("/api/v1/addresses/10.2.1.2").await.json()["pool"],
        "p"
    );

    n.post("/api/v1/pools/p/ranges", json!({"cidr": "10.3.0.128/25"}))
        .await
        .expect(409, "pool_overlap");
    n.post("/api/v1/pools/p/ranges", json!({"cidr": "10.2.1.0/29"}))
        .await
        .expect(409, "pool_overlap");
    n.post("/api/v1/pools/p/ranges", json!({"cidr": "fd00::/64"}))
        .await
        .expect(400, "invalid_argument");
    n.post("/api/v1/pools/p/ranges", json!({"cidr": "10.2.2.1/24"}))
        .await
        .expect(400, "invalid_argument");
    n.post("/api/v1/pools/nope/ranges", json!({"cidr": "10.2.2.0/24"}))
        .await
        .expect(404, "pool_not_found");
    // A new pool cannot overlap an added range either.
    n.post("/api/v1/pools", json!({"name": "r", "cidr": "10.2.1.0/24"}))
        .await
        .expect(409, "pool_overlap");

    n.delete("/api/v1/pools/p/ranges?cidr=10.2.1.0/29")
        .await
        .expect(409, "range_not_empty");
    n.delete("/api/v1/pools/p/ranges?cidr=10.2.0.0/30")
        .await
        .expect(400, "invalid_argument");
    n.delete("/api/v1/pools/p/ranges?cidr=10.2.9.0/24")
        .await
        .expect(400, "invalid_argument");
    n.delete("/api/v1/pools/p/ranges")
        .await
        .expect(400, "invalid_argument");
    n.delete("/api/v1/pools/p/allocations/10.2.1.2")
        .await
        .status_is(204);
    let r = n.delete("/api/v1/pools/p/ranges?cidr=10.2.1.0/29").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["stats"]["capacity"], "1");
    assert_eq!(
        n.get("/api/v1/addresses/10.2.1.2").await.json()["pool"],
        Value::Null
    );
}

#[tokio::test]
async fn frozen_pools_take_only_named_addresses() {
    let n = start(None, true).await;
    n.post(
        "/api/v1/pools",
        json!({"name": "p", "cidr": "10.4.0.0/24", "frozen": true}),
    )
    .await
    .status_is(201);
    alloc(&n, "p", "a").await.expect(409, "pool_frozen");
    let metrics = n.get("/metrics").await.text;
    assert!(
        metrics.contains("ipam_pool_frozen{pool=\"p\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ipam_pool_ranges{pool=\"p\"} 1"),
        "{metrics}"
    );
    let r = n
        .post(
            "/api/v1/pools/p/allocations",
            json!({"owner": "a", "ip": "10.4.0.9"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    n.delete("/api/v1/pools/p").await.expect(409, "pool_frozen");
    n.delete("/api/v1/pools/p?force=true")
        .await
        .expect(409, "pool_frozen");
    assert_eq!(
        n.get("/api/v1/pools/p/next-free").await.json()["addresses"],
        json!([])
    );
    n.delete("/api/v1/pools/p/allocations/10.4.0.9")
        .await
        .status_is(204);
    let r = patch(&n, "/api/v1/pools/p", json!({"frozen": false})).await;
    assert_eq!(r.json()["frozen"], false);
    assert_eq!(alloc(&n, "p", "b").await.json()["ip"], "10.4.0.2");
    n.delete("/api/v1/pools/p?force=true").await.status_is(204);
}

#[tokio::test]
async fn next_free_previews_without_writing() {
    let n = start(None, true).await;
    n.post(
        "/api/v1/pools",
        json!({"name": "p", "cidr": "10.5.0.0/29", "reserved": ["10.5.0.3"]}),
    )
    .await
    .status_is(201);
    n.post("/api/v1/pools/p/ranges", json!({"cidr": "10.5.1.0/30"}))
        .await
        .status_is(201);
    alloc(&n, "p", "a").await; // 10.5.0.2
    let r = n.get("/api/v1/pools/p/next-free?count=10").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let preview = r.json()["addresses"].clone();
    assert_eq!(
        preview,
        json!(["10.5.0.4", "10.5.0.5", "10.5.0.6", "10.5.1.2"])
    );
    assert_eq!(
        n.get("/api/v1/pools/p/next-free").await.json()["addresses"],
        json!(["10.5.0.4"])
    );
    // Nothing was written; the next allocations get exactly the preview.
    assert_eq!(
        n.get("/api/v1/pools/p").await.json()["stats"]["allocated"],
        "1"
    );
    for (i, want) in preview.as_array().unwrap().iter().enumerate() {
        assert_eq!(&alloc(&n, "p", &format!("n{i}")).await.json()["ip"], want);
    }
    for bad in ["0", "1001", "x"] {
        n.get(&format!("/api/v1/pools/p/next-free?count={bad}"))
            .await
            .expect(400, "invalid_argument");
    }
    n.get("/api/v1/pools/nope/next-free")
        .await
        .expect(404, "pool_not_found");
}

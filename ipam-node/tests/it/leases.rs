//! Lease endpoints over the router: ttl on allocate, renew one, renew by owner, batch renew,
//! the lease fields of an allocation, `cooling` in pool stats and 409 `address_cooling_down`.

use axum::http::StatusCode;
use serde_json::json;

use crate::common::start;

#[tokio::test]
async fn leases_over_http() {
    let n = start(None, true).await;
    n.create_pool("vms", "10.0.0.0/24").await;

    let r = n
        .post(
            "/api/v1/pools/vms/allocations",
            json!({"owner": "agent", "ttl_seconds": 30}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let a = r.json();
    assert_eq!(a["ttl_seconds"], 30);
    assert!(a["expires_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(a["renewed_at"], a["allocated_at"]);
    let ip = a["ip"].as_str().unwrap().to_string();
    let generation = a["generation"].as_u64().unwrap();

    let r = n
        .post("/api/v1/pools/vms/allocations", json!({"owner": "pinned"}))
        .await;
    assert_eq!(r.json()["expires_at"], serde_json::Value::Null);
    assert_eq!(r.json()["ttl_seconds"], serde_json::Value::Null);

    // Bad lengths are 400 before anything else.
    for ttl in [5, 31_536_001] {
        n.post(
            "/api/v1/pools/vms/allocations",
            json!({"owner": "x", "ttl_seconds": ttl}),
        )
        .await
        .expect(400, "invalid_argument");
    }

    let uri = format!("/api/v1/pools/vms/allocations/{ip}/renew");
    let r = n
        .post(&uri, json!({"generation": generation, "ttl_seconds": 60}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["ttl_seconds"], 60);
    n.post(&uri, json!({"generation": generation + 100}))
        .await
        .expect(409, "generation_mismatch");
    n.post("/api/v1/pools/vms/allocations/10.0.0.200/renew", json!({}))
        .await
        .expect(404, "allocation_not_found");
    n.post("/api/v1/pools/nope/allocations/10.0.0.2/renew", json!({}))
        .await
        .expect(404, "pool_not_found");
    n.post(&uri, json!({"ttl_seconds": 3}))
        .await
        .expect(400, "invalid_argument");

    let r = n
        .post("/api/v1/leases/renew", json!({"owner": "agent"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let renewed = r.json()["renewed"].as_array().unwrap().clone();
    assert_eq!(renewed.len(), 1);
    assert_eq!(renewed[0]["ip"], ip.as_str());
    let r = n
        .post("/api/v1/leases/renew", json!({"owner": "pinned"}))
        .await;
    assert_eq!(
        r.json()["renewed"],
        json!([]),
        "permanent ones are not leases"
    );
    n.post("/api/v1/leases/renew", json!({"owner": ""}))
        .await
        .expect(400, "invalid_argument");

    let r = n
        .post(
            "/api/v1/batch",
            json!({"ops": [
                {"op": "allocate", "pool": "vms", "owner": "b", "ttl_seconds": 20},
                {"op": "renew", "pool": "vms", "ip": ip, "ttl_seconds": 0}
            ]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let results = r.json()["results"].clone();
    assert_eq!(results[0]["ttl_seconds"], 20);
    assert_eq!(results[1]["expires_at"], serde_json::Value::Null);

    let r = n.get("/api/v1/pools/vms").await;
    assert_eq!(r.json()["stats"]["cooling"], "0");
}

#[tokio::test]
async fn cooling_shows_in_stats_and_refuses_other_owners() {
    let n = start(None, true).await;
    let r = n
        .post(
            "/api/v1/pools",
            json!({"name": "vms", "cidr": "10.0.0.0/24", "reuse_cooldown_seconds": 600}),
        )
        .await;
    assert_eq!(r.json()["reuse_cooldown_seconds"], 600, "{}", r.text);
    let r = n
        .post("/api/v1/pools/vms/allocations", json!({"owner": "a"}))
        .await;
    let ip = r.json()["ip"].as_str().unwrap().to_string();
    let r = n
        .delete(&format!("/api/v1/pools/vms/allocations/{ip}"))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = n.get("/api/v1/pools/vms").await;
    assert_eq!(r.json()["stats"]["cooling"], "1");
    assert_eq!(r.json()["stats"]["allocated"], "0");
    let r = n.get("/api/v1/pools").await;
    assert_eq!(r.json()["pools"][0]["stats"]["cooling"], "1");
    let m = n.get("/metrics").await;
    assert!(
        m.text.contains("ipam_pool_cooling{pool=\"vms\"} 1\n"),
        "{}",
        m.text
    );
    n.post(
        "/api/v1/pools/vms/allocations",
        json!({"owner": "b", "ip": ip}),
    )
    .await
    .expect(409, "address_cooling_down");
    let r = n
        .post("/api/v1/pools/vms/allocations", json!({"owner": "a"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.json()["ip"], ip.as_str());
}

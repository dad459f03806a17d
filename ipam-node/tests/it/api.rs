//! `router(state)` driven with `tower::ServiceExt::oneshot` against a real single-node `Ipam`:
//! every endpoint and every error code of the contract.

use crate::common;

use axum::http::{header, Method, StatusCode};
use serde_json::{json, Value};

use common::start;

fn pool_body(name: &str, cidr: &str) -> Value {
    json!({ "name": name, "cidr": cidr })
}

#[tokio::test]
async fn pools_lifecycle() {
    let n = start(None, true).await;
    let r = n
        .post(
            "/api/v1/pools",
            json!({
                "name": "vms", "cidr": "10.0.0.0/24",
                "reserved": ["10.0.0.2-10.0.0.9", "10.0.0.100"],
                "labels": {"env": "prod", "zone": "a"}, "description": "VM network"
            }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let p = r.json();
    assert_eq!(p["name"], "vms");
    assert_eq!(p["cidr"], "10.0.0.0/24");
    assert_eq!(p["gateway"], "10.0.0.1");
    assert_eq!(p["reserved"], json!(["10.0.0.2-10.0.0.9", "10.0.0.100"]));
    assert_eq!(p["labels"]["env"], "prod");
    assert_eq!(p["description"], "VM network");
    // 256 - network - broadcast - gateway - 8 - 1 reserved.
    assert_eq!(p["stats"]["capacity"], "244");
    assert_eq!(p["stats"]["allocated"], "0");
    assert_eq!(p["stats"]["free"], "244");
    assert_eq!(p["stats"]["utilization"], 0.0);
    let created = p["created_at"].as_str().unwrap();
    assert!(
        time::OffsetDateTime::parse(created, &time::format_description::well_known::Rfc3339)
            .is_ok()
            && created.ends_with('Z'),
        "{created}"
    );

    // IPv6: counts beyond 2^53 are exact decimal strings; no default gateway.
    let r = n.post("/api/v1/pools", pool_body("v6", "fd00::/64")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json()["stats"]["capacity"], "18446744073709551615");
    assert_eq!(r.json()["gateway"], Value::Null);
    let r = n
        .post(
            "/api/v1/pools",
            json!({"name": "nogw", "cidr": "10.1.0.0/24", "gateway": null, "labels": {"env": "dev"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json()["gateway"], Value::Null);
    assert_eq!(r.json()["stats"]["capacity"], "254");

    n.post("/api/v1/pools", pool_body("vms", "10.9.0.0/24"))
        .await
        .expect(409, "pool_exists");
    let r = n
        .post("/api/v1/pools", pool_body("other", "10.0.0.128/25"))
        .await;
    r.expect(409, "pool_overlap");
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("vms"));
    let r = n
        .post("/api/v1/pools", pool_body("hb", "10.2.0.5/24"))
        .await;
    r.expect(400, "invalid_argument");
    assert!(r.text.contains("10.2.0.0/24"), "{}", r.text);
    n.post("/api/v1/pools", pool_body("Bad_Name", "10.3.0.0/24"))
        .await
        .expect(400, "invalid_argument");
    n.post("/api/v1/pools", pool_body("x", "10.3.0.0/33"))
        .await
        .expect(400, "invalid_argument");
    n.post(
        "/api/v1/pools",
        json!({"name": "gw", "cidr": "10.4.0.0/24", "gateway": "10.5.0.1"}),
    )
    .await
    .expect(400, "invalid_argument");
    n.post(
        "/api/v1/pools",
        json!({"name": "rs", "cidr": "10.4.0.0/24", "reserved": ["10.5.0.1"]}),
    )
    .await
    .expect(400, "invalid_argument");
    n.post(
        "/api/v1/pools",
        json!({"name": "rs", "cidr": "10.4.0.0/24", "reserved": ["nonsense"]}),
    )
    .await
    .expect(400, "invalid_argument");

    // Reads.
    let r = n.get("/api/v1/pools/vms").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["cidr"], "10.0.0.0/24");
    let r = n.get("/api/v1/pools/vms?consistency=local").await;
    assert_eq!(r.status, StatusCode::OK);
    n.get("/api/v1/pools/vms?consistency=eventual")
        .await
        .expect(400, "invalid_argument");
    n.get("/api/v1/pools/nope")
        .await
        .expect(404, "pool_not_found");
    n.get("/api/v1/pools/NOPE")
        .await
        .expect(400, "invalid_argument");
    let names = |r: &common::Reply| -> Vec<String> {
        r.json()["pools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    let r = n.get("/api/v1/pools").await;
    assert_eq!(names(&r), ["nogw", "v6", "vms"]);
    let r = n.get("/api/v1/pools?label=env=prod").await;
    assert_eq!(names(&r), ["vms"]);
    let r = n.get("/api/v1/pools?label=env=prod&label=zone=b").await;
    assert!(names(&r).is_empty());
    let r = n
        .get("/api/v1/pools?label=env=prod&label=zone=a&consistency=local")
        .await;
    assert_eq!(names(&r), ["vms"]);
    n.get("/api/v1/pools?label=env")
        .await
        .expect(400, "invalid_argument");
    n.get("/api/v1/pools?colour=red")
        .await
        .expect(400, "invalid_argument");

    // Deletion.
    let r = n
        .post("/api/v1/pools/vms/allocations", json!({"owner": "vm-1"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    n.delete("/api/v1/pools/vms")
        .await
        .expect(409, "pool_not_empty");
    n.delete("/api/v1/pools/vms?force=maybe")
        .await
        .expect(400, "invalid_argument");
    let r = n.delete("/api/v1/pools/vms?force=true").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert!(r.text.is_empty());
    n.get("/api/v1/pools/vms")
        .await
        .expect(404, "pool_not_found");
    n.delete("/api/v1/pools/vms")
        .await
        .expect(404, "pool_not_found");
    let r = n.delete("/api/v1/pools/nogw").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(n.get("/api/v1/addresses/10.0.0.10").await.json()["pool"].is_null());

    // Input limits are the core's and come back as 400.
    let labels: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("k{i}"), json!("v"))).collect();
    n.post(
        "/api/v1/pools",
        json!({"name": "many", "cidr": "10.6.0.0/24", "labels": labels}),
    )
    .await
    .expect(400, "invalid_argument");
    n.post(
        "/api/v1/pools",
        json!({"name": "desc", "cidr": "10.6.0.0/24", "description": "x".repeat(1025)}),
    )
    .await
    .expect(400, "invalid_argument");
}

#[tokio::test]
async fn allocations() {
    let n = start(None, true).await;
    assert_eq!(
        n.post("/api/v1/pools", pool_body("vms", "10.0.0.0/24"))
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        n.post("/api/v1/pools", pool_body("tiny", "10.1.0.0/30"))
            .await
            .status,
        StatusCode::CREATED
    );

    let r = n
        .post(
            "/api/v1/pools/vms/allocations",
            json!({"owner": "vm-1/eth0", "labels": {"vm": "1"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let a = r.json();
    assert_eq!(a["ip"], "10.0.0.2");
    assert_eq!(a["pool"], "vms");
    assert_eq!(a["owner"], "vm-1/eth0");
    assert_eq!(a["labels"]["vm"], "1");
    let generation = a["generation"].as_u64().unwrap();
    assert!(a["allocated_at"].as_str().unwrap().ends_with('Z'));

    // The owner's existing allocation: 200, same address and generation.
    let r = n
        .post(
            "/api/v1/pools/vms/allocations",
            json!({"owner": "vm-1/eth0"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["ip"], "10.0.0.2");
    assert_eq!(r.json()["generation"], generation);
    n.post(
        "/api/v1/pools/vms/allocations",
        json!({"owner": "vm-1/eth0", "ip": "10.0.0.50"}),
    )
    .await
    .expect(409, "owner_conflict");

    let r = n
        .post(
            "/api/v1/pools/vms/allocations",
            json!({"owner": "vm-2", "ip": "10.0.0.50"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json()["ip"], "10.0.0.50");
    let gen50 = r.json()["generation"].as_u64().unwrap();
    assert_ne!(gen50, generation);
    n.post(
        "/api/v1/pools/vms/allocations",
        json!({"owner": "vm-3", "ip": "10.0.0.50"}),
    )
    .await
    .expect(409, "address_in_use");
    for ip in [
        "10.0.0.0",
        "10.0.0.255",
        "10.0.0.1",
        "10.9.0.1",
        "fd00::1",
        "10.0.0.300",
    ] {
        n.post(
            "/api/v1/pools/vms/allocations",
            json!({"owner": "vm-3", "ip": ip}),
        )
        .await
        .expect(400, "invalid_argument");
    }
    n.post("/api/v1/pools/nope/allocations", json!({"owner": "vm-3"}))
        .await
        .expect(404, "pool_not_found");
    // Syntax is checked before existence.
    n.post("/api/v1/pools/nope/allocations", json!({"owner": ""}))
        .await
        .expect(400, "invalid_argument");
    n.post(
        "/api/v1/pools/vms/allocations",
        json!({"owner": "x".repeat(254)}),
    )
    .await
    .expect(400, "invalid_argument");

    // A /30 has one allocatable address besides the gateway.
    let r = n
        .post("/api/v1/pools/tiny/allocations", json!({"owner": "a"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json()["ip"], "10.1.0.2");
    n.post("/api/v1/pools/tiny/allocations", json!({"owner": "b"}))
        .await
        .expect(409, "pool_exhausted");

    // Paging in address order.
    for i in 3..=6 {
        let r = n
            .post(
                "/api/v1/pools/vms/allocations",
                json!({"owner": format!("p{i}")}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let ips = |r: &common::Reply| -> Vec<String> {
        r.json()["allocations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["ip"].as_str().unwrap().to_string())
            .collect()
    };
    let r = n.get("/api/v1/pools/vms/allocations?limit=2").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(ips(&r), ["10.0.0.2", "10.0.0.3"]);
    assert_eq!(r.json()["next"], "10.0.0.3");
    let r = n
        .get("/api/v1/pools/vms/allocations?limit=2&after=10.0.0.3")
        .await;
    assert_eq!(ips(&r), ["10.0.0.4", "10.0.0.5"]);
    let r = n
        .get("/api/v1/pools/vms/allocations?after=10.0.0.5&consistency=local")
        .await;
    assert_eq!(ips(&r), ["10.0.0.6", "10.0.0.50"]);
    assert!(r.json().get("next").is_none(), "{}", r.text);
    let r = n.get("/api/v1/pools/vms/allocations").await;
    assert_eq!(ips(&r).len(), 6);
    let r = n.get("/api/v1/pools/vms/allocations?owner=vm-2").await;
    assert_eq!(ips(&r), ["10.0.0.50"]);
    for q in [
        "limit=0",
        "limit=1001",
        "limit=ten",
        "limit=-1",
        "after=banana",
        "owner=",
    ] {
        n.get(&format!("/api/v1/pools/vms/allocations?{q}"))
            .await
            .expect(400, "invalid_argument");
    }
    n.get("/api/v1/pools/nope/allocations")
        .await
        .expect(404, "pool_not_found");

    // Addresses and owners.
    let r = n.get("/api/v1/addresses/10.0.0.50").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["pool"], "vms");
    assert_eq!(r.json()["allocation"]["owner"], "vm-2");
    let r = n.get("/api/v1/addresses/10.0.0.77?consistency=local").await;
    assert_eq!(r.json()["pool"], "vms");
    assert!(r.json()["allocation"].is_null());
    let r = n.get("/api/v1/addresses/192.168.0.1").await;
    assert!(r.json()["pool"].is_null() && r.json()["allocation"].is_null());
    n.get("/api/v1/addresses/not-an-ip")
        .await
        .expect(400, "invalid_argument");
    n.post("/api/v1/pools/tiny/allocations", json!({"owner": "vm-2"}))
        .await;
    let r = n.get("/api/v1/allocations?owner=vm-2").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let body = r.json();
    let pools: Vec<&str> = body["allocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["pool"].as_str().unwrap())
        .collect();
    assert_eq!(pools, ["vms"], "tiny is exhausted: {}", r.text);
    n.get("/api/v1/allocations")
        .await
        .expect(400, "invalid_argument");
    let r = n.get("/api/v1/allocations?owner=nobody").await;
    assert_eq!(r.json()["allocations"], json!([]));

    // Releases.
    n.delete(&format!(
        "/api/v1/pools/vms/allocations/10.0.0.50?generation={}",
        gen50 + 1000
    ))
    .await
    .expect(409, "generation_mismatch");
    n.delete("/api/v1/pools/vms/allocations/10.0.0.50?generation=x")
        .await
        .expect(400, "invalid_argument");
    let r = n
        .delete(&format!(
            "/api/v1/pools/vms/allocations/10.0.0.50?generation={gen50}"
        ))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    n.delete("/api/v1/pools/vms/allocations/10.0.0.50")
        .await
        .expect(404, "allocation_not_found");
    n.delete(&format!(
        "/api/v1/pools/vms/allocations/10.0.0.50?generation={gen50}"
    ))
    .await
    .expect(404, "allocation_not_found");
    n.delete("/api/v1/pools/vms/allocations/10.7.0.1")
        .await
        .expect(400, "invalid_argument");
    n.delete("/api/v1/pools/vms/allocations/zzz")
        .await
        .expect(400, "invalid_argument");
    n.delete("/api/v1/pools/nope/allocations/10.0.0.2")
        .await
        .expect(404, "pool_not_found");
    let r = n.delete("/api/v1/pools/vms/allocations/10.0.0.3").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);

    n.delete("/api/v1/pools/vms/allocations")
        .await
        .expect(400, "invalid_argument");
    let r = n
        .delete("/api/v1/pools/vms/allocations?owner=vm-1/eth0")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json(), json!({"released": ["10.0.0.2"]}));
    let r = n
        .delete("/api/v1/pools/vms/allocations?owner=vm-1/eth0")
        .await;
    assert_eq!(r.json(), json!({"released": []}));
    n.delete("/api/v1/pools/nope/allocations?owner=a")
        .await
        .expect(404, "pool_not_found");
    // The lowest free address is reused.
    let r = n
        .post("/api/v1/pools/vms/allocations", json!({"owner": "new"}))
        .await;
    assert_eq!(r.json()["ip"], "10.0.0.2");
}

#[tokio::test]
async fn batches() {
    let n = start(None, true).await;
    let r = n
        .post(
            "/api/v1/batch",
            json!({"ops": [
                {"op": "create_pool", "name": "b", "cidr": "10.0.0.0/29"},
                {"op": "allocate", "pool": "b", "owner": "o1"},
                {"op": "allocate", "pool": "b", "owner": "o2", "ip": "10.0.0.5"},
                {"op": "release", "pool": "b", "ip": "10.0.0.5"},
                {"op": "release_owner", "pool": "b", "owner": "o1"},
                {"op": "create_pool", "name": "c", "cidr": "10.1.0.0/29"},
                {"op": "delete_pool", "pool": "c"}
            ]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let results = r.json()["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 7);
    assert_eq!(results[0]["name"], "b");
    assert_eq!(results[1]["ip"], "10.0.0.2");
    assert_eq!(results[2]["ip"], "10.0.0.5");
    assert_eq!(results[3], json!({}));
    assert_eq!(results[4], json!({"released": ["10.0.0.2"]}));
    assert_eq!(results[6], json!({}));

    // A failing op: its own status and code, its index, and nothing of the batch applied.
    let r = n
        .post(
            "/api/v1/batch",
            json!({"ops": [
                {"op": "allocate", "pool": "b", "owner": "x"},
                {"op": "allocate", "pool": "missing", "owner": "y"}
            ]}),
        )
        .await;
    r.expect(404, "pool_not_found");
    assert_eq!(r.json()["error"]["index"], 1);
    let r = n.get("/api/v1/pools/b/allocations").await;
    assert_eq!(r.json()["allocations"], json!([]), "nothing applied");
    let r = n
        .post(
            "/api/v1/batch",
            json!({"ops": [
                {"op": "allocate", "pool": "b", "owner": "x"},
                {"op": "allocate", "pool": "b", "owner": "y", "ip": "10.0.0.2"}
            ]}),
        )
        .await;
    r.expect(409, "address_in_use");
    assert_eq!(r.json()["error"]["index"], 1);
    let r = n
        .post(
            "/api/v1/batch",
            json!({"ops": [
                {"op": "allocate", "pool": "b", "owner": "x"},
                {"op": "release", "pool": "b", "ip": "not-an-ip"}
            ]}),
        )
        .await;
    r.expect(400, "invalid_argument");
    assert_eq!(r.json()["error"]["index"], 1);
    n.post("/api/v1/batch", json!({"ops": []}))
        .await
        .expect(400, "invalid_argument");
    let ops: Vec<Value> = (0..1001)
        .map(|i| json!({"op": "release_owner", "pool": "b", "owner": format!("o{i}")}))
        .collect();
    n.post("/api/v1/batch", json!({ "ops": ops }))
        .await
        .expect(400, "invalid_argument");
    let r = n
        .post(
            "/api/v1/batch",
            json!({"ops": [{"op": "allocate", "pool": "b", "owner": "x", "colour": "red"}]}),
        )
        .await;
    r.expect(400, "invalid_argument");
    n.post(
        "/api/v1/batch",
        json!({"ops": [{"op": "create_pool", "name": "q", "cidr": "10.9.0.0/24", "colour": "red"}]}),
    )
    .await
    .expect(400, "invalid_argument");
    n.post("/api/v1/batch", json!({"ops": [{"op": "explode"}]}))
        .await
        .expect(400, "invalid_argument");
    n.post(
        "/api/v1/batch",
        json!({"ops": [{"op": "allocate", "pool": "b"}]}),
    )
    .await
    .expect(400, "invalid_argument");
}

#[tokio::test]
async fn http_layer_errors() {
    let n = start(None, true).await;
    let pools = "/api/v1/pools";
    let r = n
        .raw(Method::POST, pools, Some("application/json"), "{\"name\": ")
        .await;
    r.expect(400, "invalid_argument");
    assert!(r.text.contains("JSON"), "{}", r.text);
    n.raw(
        Method::POST,
        pools,
        None,
        &pool_body("a", "10.0.0.0/24").to_string(),
    )
    .await
    .expect(400, "invalid_argument");
    n.raw(
        Method::POST,
        pools,
        Some("text/plain"),
        &pool_body("a", "10.0.0.0/24").to_string(),
    )
    .await
    .expect(400, "invalid_argument");
    n.post(pools, json!({"name": 5, "cidr": "10.0.0.0/24"}))
        .await
        .expect(400, "invalid_argument");
    n.post(
        pools,
        json!({"name": "a", "cidr": "10.0.0.0/24", "colour": "red"}),
    )
    .await
    .expect(400, "invalid_argument");
    n.post(pools, json!({"name": "a"}))
        .await
        .expect(400, "invalid_argument");
    n.post(pools, json!([1, 2]))
        .await
        .expect(400, "invalid_argument");

    let big = format!(
        "{{\"name\": \"a\", \"cidr\": \"10.0.0.0/24\", \"description\": \"{}\"}}",
        "x".repeat(1024 * 1024 + 1)
    );
    n.raw(Method::POST, pools, Some("application/json"), &big)
        .await
        .expect(413, "payload_too_large");
    // Size comes before syntax: a wrong type, a bad query or malformed JSON, oversized, is 413.
    n.raw(Method::POST, pools, Some("text/plain"), &big)
        .await
        .expect(413, "payload_too_large");
    n.raw(
        Method::POST,
        "/api/v1/pools?colour=red",
        Some("application/json"),
        &big,
    )
    .await
    .expect(413, "payload_too_large");
    // A declared length over the limit is refused before anything else is looked at.
    let req = axum::http::Request::post("/api/v1/pools/Bad_Name/allocations?x=y")
        .header(header::CONTENT_LENGTH, big.len())
        .body(axum::body::Body::from(big.clone()))
        .unwrap();
    n.send(req).await.expect(413, "payload_too_large");
    // A body without a declared length is cut at the same limit.
    let chunks: Vec<Result<String, std::io::Error>> = vec![
        Ok("{\"name\": \"".to_string()),
        Ok("x".repeat(1024 * 1024 + 1)),
    ];
    let req = axum::http::Request::post(pools)
        .header(header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from_stream(futures::stream::iter(chunks)))
        .unwrap();
    n.send(req).await.expect(413, "payload_too_large");

    n.get("/api/v1/nothing-here").await.expect(404, "not_found");
    n.get("/nope").await.expect(404, "not_found");
    n.call(Method::PUT, pools, None)
        .await
        .expect(405, "method_not_allowed");
    // PATCH updates a pool (second round); PUT is still not a method of it.
    n.call(Method::PUT, "/api/v1/pools/a", None)
        .await
        .expect(405, "method_not_allowed");
    n.call(Method::POST, "/healthz", None)
        .await
        .expect(405, "method_not_allowed");
    n.post(
        "/api/v1/pools/a/allocations?colour=red",
        json!({"owner": "o"}),
    )
    .await
    .expect(400, "invalid_argument");

    // Every response carries a request id; a given one is echoed.
    let r = n.get("/healthz").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers.contains_key("x-request-id"));
    let req = axum::http::Request::get("/healthz")
        .header("x-request-id", "abc-123")
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(n.send(req).await.headers["x-request-id"], "abc-123");
    // Made-up ids differ from request to request, on every kind of route.
    let mut made = std::collections::BTreeSet::new();
    for path in ["/healthz", "/api/v1/pools", "/nope", "/healthz"] {
        let id = n.get(path).await.headers["x-request-id"].clone();
        let id = id.to_str().expect("ascii").to_string();
        assert!(made.insert(id.clone()), "{id} given twice");
    }
}

#[tokio::test]
async fn authentication() {
    let n = start(Some("s3cret"), true).await;
    let protected: &[(Method, &str)] = &[
        (Method::POST, "/api/v1/pools"),
        (Method::GET, "/api/v1/pools"),
        (Method::GET, "/api/v1/pools/a"),
        (Method::DELETE, "/api/v1/pools/a"),
        (Method::POST, "/api/v1/pools/a/allocations"),
        (Method::GET, "/api/v1/pools/a/allocations"),
        (Method::DELETE, "/api/v1/pools/a/allocations?owner=o"),
        (Method::DELETE, "/api/v1/pools/a/allocations/10.0.0.1"),
        (Method::GET, "/api/v1/addresses/10.0.0.1"),
        (Method::GET, "/api/v1/allocations?owner=o"),
        (Method::POST, "/api/v1/batch"),
        (Method::GET, "/api/v1/cluster"),
        (Method::POST, "/api/v1/cluster/init"),
        (Method::POST, "/api/v1/cluster/learners"),
        (Method::POST, "/api/v1/cluster/voters"),
        (Method::POST, "/api/v1/cluster/voters/2"),
        (Method::DELETE, "/api/v1/cluster/members/2"),
        (Method::GET, "/api/v1/unknown"),
        (Method::POST, "/raft/append"),
        (Method::POST, "/raft/vote"),
        (Method::POST, "/raft/snapshot"),
        (Method::POST, "/raft/propose"),
        (Method::POST, "/raft/read-index"),
    ];
    for (method, uri) in protected {
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("s3cret"),
            Some("Basic s3cret"),
        ] {
            let mut b = axum::http::Request::builder()
                .method(method.clone())
                .uri(*uri)
                .header(header::CONTENT_TYPE, "application/json");
            if let Some(a) = auth {
                b = b.header(header::AUTHORIZATION, a);
            }
            let r = n.send(b.body(axum::body::Body::from("{}")).unwrap()).await;
            assert_eq!(
                r.status,
                StatusCode::UNAUTHORIZED,
                "{method} {uri} {auth:?}: {}",
                r.text
            );
            if uri.starts_with("/api/") {
                r.expect(401, "unauthorized");
            }
        }
    }
    // Authentication comes before the body size check.
    let big = "x".repeat(2 * 1024 * 1024);
    let req = axum::http::Request::post("/api/v1/pools")
        .header(header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from(big))
        .unwrap();
    n.send(req).await.expect(401, "unauthorized");

    n.wait_ready().await;
    for uri in ["/healthz", "/metrics", "/openapi.yaml"] {
        let req = axum::http::Request::get(uri)
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(n.send(req).await.status, StatusCode::OK, "{uri}");
    }
    // /raft/* keeps its own 64 MiB limit: a 2 MiB body with the token is not 413.
    let req = axum::http::Request::post("/raft/append")
        .header(header::AUTHORIZATION, "Bearer s3cret")
        .body(axum::body::Body::from(vec![0xffu8; 2 * 1024 * 1024]))
        .unwrap();
    let r = n.send(req).await;
    assert_ne!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);
    assert_ne!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);

    // With the token everything works.
    let r = n.post("/api/v1/pools", pool_body("a", "10.0.0.0/24")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(n.get("/api/v1/pools/a").await.status, StatusCode::OK);
}

#[tokio::test]
async fn cluster_endpoints() {
    let n = start(None, true).await;
    let r = n.get("/api/v1/cluster").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let c = r.json();
    assert_eq!(c["id"], 1);
    assert_eq!(c["leader"], 1);
    assert!(c["term"].as_u64().unwrap() >= 1);
    assert!(c["last_log_index"].as_u64().unwrap() >= 1);
    assert!(c["applied_index"].is_u64());
    let level = ipam_core::feature::FEATURE_LEVEL;
    assert_eq!(
        c["members"],
        json!([{"id": 1, "addr": "127.0.0.1:1", "role": "voter", "feature_level": level}])
    );
    assert_eq!(
        c["feature_level"], level,
        "a cluster of one release runs at its level"
    );
    n.call(Method::POST, "/api/v1/cluster/init", None)
        .await
        .expect(409, "already_initialized");
    n.post(
        "/api/v1/cluster/init",
        json!({"members": [{"id": 1, "addr": "127.0.0.1:1"}]}),
    )
    .await
    .expect(409, "already_initialized");
    n.post("/api/v1/cluster/learners", json!({"id": "two"}))
        .await
        .expect(400, "invalid_argument");
    n.post("/api/v1/cluster/voters", json!({"ids": []}))
        .await
        .expect(400, "invalid_argument");
    n.call(Method::POST, "/api/v1/cluster/voters/abc", None)
        .await
        .expect(400, "invalid_argument");
    n.call(Method::DELETE, "/api/v1/cluster/members/abc", None)
        .await
        .expect(400, "invalid_argument");
    // Promoting a node that is not a learner is refused as a client error.
    let r = n.call(Method::POST, "/api/v1/cluster/voters/9", None).await;
    assert!(r.status.is_client_error(), "{} {}", r.status, r.text);
    let r = n.post("/api/v1/cluster/voters", json!({"ids": [1]})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = n
        .call(Method::DELETE, "/api/v1/cluster/members/9", None)
        .await;
    assert!(r.status.is_client_error(), "{} {}", r.status, r.text);

    n.wait_ready().await;
}

#[tokio::test]
async fn uninitialised_node_has_no_leader() {
    let n = start(None, false).await;
    let r = n.get("/readyz").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert_eq!(n.get("/healthz").await.status, StatusCode::OK);
    let r = n.post("/api/v1/pools", pool_body("a", "10.0.0.0/24")).await;
    r.expect(503, "no_leader");
    assert_eq!(r.headers[header::RETRY_AFTER], "1");
    let r = n.get("/api/v1/cluster").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.json()["leader"].is_null());
    // Initialising through the API makes it a working single-node cluster.
    let r = n.call(Method::POST, "/api/v1/cluster/init", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    n.wait_ready().await;
    let r = n.post("/api/v1/pools", pool_body("a", "10.0.0.0/24")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

#[tokio::test]
async fn metrics_move() {
    let n = start(None, true).await;
    let scrape = || async {
        let r = n.get("/metrics").await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain"));
        prometheus_parse::Scrape::parse(r.text.lines().map(|l| Ok(l.to_string()))).unwrap()
    };
    let value = |s: &prometheus_parse::Scrape,
                 name: &str,
                 labels: &[(&str, &str)]|
     -> Option<f64> {
        s.samples
            .iter()
            .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
            .map(|x| match x.value {
                prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Untyped(v) => v,
                prometheus_parse::Value::Histogram(ref h) => {
                    h.iter().map(|c| c.count).fold(0.0, f64::max)
                }
                prometheus_parse::Value::Summary(_) => f64::NAN,
            })
    };
    assert_eq!(
        n.post("/api/v1/pools", pool_body("m", "10.0.0.0/24"))
            .await
            .status,
        StatusCode::CREATED
    );
    let before = scrape().await;
    assert_eq!(
        value(&before, "ipam_pool_capacity_total", &[("pool", "m")]),
        Some(253.0)
    );
    assert_eq!(
        value(&before, "ipam_pool_allocated", &[("pool", "m")]),
        Some(0.0)
    );
    assert_eq!(value(&before, "ipam_raft_is_leader", &[]), Some(1.0));
    assert!(value(&before, "ipam_raft_term", &[]).unwrap() >= 1.0);
    let applied_before = value(&before, "ipam_raft_applied_index", &[]).unwrap();
    assert!(value(&before, "ipam_raft_commit_index", &[]).unwrap() >= applied_before - 1.0);

    for owner in ["a", "b", "c"] {
        let r = n
            .post("/api/v1/pools/m/allocations", json!({ "owner": owner }))
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    n.post("/api/v1/pools/m/allocations", json!({"owner": "a"}))
        .await;
    n.post(
        "/api/v1/pools/m/allocations",
        json!({"owner": "d", "ip": "10.0.0.2"}),
    )
    .await
    .expect(409, "address_in_use");
    let after = scrape().await;
    assert_eq!(
        value(&after, "ipam_pool_allocated", &[("pool", "m")]),
        Some(3.0)
    );
    assert!(value(&after, "ipam_raft_applied_index", &[]).unwrap() > applied_before);
    assert_eq!(
        value(&after, "ipam_allocation_duration_seconds_count", &[]).or_else(|| value(
            &after,
            "ipam_allocation_duration_seconds",
            &[]
        )),
        Some(5.0)
    );
    assert_eq!(
        value(
            &after,
            "ipam_allocation_errors_total",
            &[("pool", "m"), ("reason", "address_in_use")]
        ),
        Some(1.0)
    );
    let hits = value(&after, "ipam_cache_hits_total", &[]).unwrap();
    let misses = value(&after, "ipam_cache_misses_total", &[]).unwrap();
    assert!(hits + misses >= 1.0, "hits {hits} misses {misses}");
    // The node leads alone: its apply answers each write before openraft does.
    let early = value(&after, "ipam_raft_early_answers_total", &[]).unwrap();
    assert!(early >= 3.0, "early answers {early}");
    // A lone leader installs no snapshot, and has built none to purge behind yet.
    assert_eq!(
        value(&after, "ipam_raft_snapshot_installs_total", &[]),
        Some(0.0)
    );
    assert_eq!(value(&after, "ipam_raft_purged_index", &[]), Some(0.0));
    // prometheus-parse skips samples whose label values hold braces: check the text itself.
    let text = n.get("/metrics").await.text;
    assert!(
        text.lines().any(
            |l| l.starts_with("ipam_http_request_duration_seconds_count")
                && l.contains(r#"route="/api/v1/pools/{name}/allocations""#)
                && l.contains(r#"status="201""#)
        ),
        "route template label:\n{text}"
    );
    assert!(!after
        .samples
        .iter()
        .any(|s| s.labels.get("route").is_some_and(|r| r.contains("/m/"))));
}

#[tokio::test]
async fn openapi_document_lists_every_route() {
    let n = start(None, true).await;
    let r = n.get("/openapi.yaml").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text.starts_with("openapi: 3."));
    for path in [
        "/api/v1/pools",
        "/api/v1/pools/{name}",
        "/api/v1/pools/{name}/allocations",
        "/api/v1/pools/{name}/allocations/{ip}",
        "/api/v1/pools/{name}/ranges",
        "/api/v1/pools/{name}/next-free",
        "/api/v1/pools/{name}/allocations/{ip}/renew",
        "/api/v1/leases/renew",
        "/api/v1/addresses/{ip}",
        "/api/v1/allocations",
        "/api/v1/batch",
        "/api/v1/check",
        "/api/v1/backup",
        "/api/v1/drift",
        "/api/v1/reconcile",
        "/api/v1/cluster",
        "/api/v1/cluster/init",
        "/api/v1/cluster/learners",
        "/api/v1/cluster/voters",
        "/api/v1/cluster/voters/{id}",
        "/api/v1/cluster/members/{id}",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(r.text.contains(&format!("\n  {path}:\n")), "{path} missing");
        // And the route is served (not the 404 fallback).
        let concrete = path
            .replace("{name}", "p")
            .replace("{ip}", "10.0.0.1")
            .replace("{id}", "9");
        for method in [Method::GET, Method::POST, Method::DELETE] {
            let reply = n.call(method.clone(), &concrete, None).await;
            if reply.status == StatusCode::NOT_FOUND {
                assert_ne!(reply.code(), "not_found", "{method} {concrete}");
            }
        }
    }
}

#[tokio::test]
async fn request_timeout_is_deadline_exceeded() {
    // A node with no cluster yet: a write waits for a leader (up to the write deadline, or
    // twice the election timeout, both far beyond any scheduling delay), so the request's
    // zero timeout certainly expires first. On a leader a zero timeout raced the write.
    let wait = std::time::Duration::from_secs(600);
    let n = common::start_with(None, false, |c| {
        c.write_deadline = wait;
        c.election_timeout = (wait, wait * 2);
    })
    .await;
    let state = ipam_node::AppState::new(n.ipam.clone(), None, std::time::Duration::ZERO).unwrap();
    let hurried = common::TestNode {
        dir: tempfile::tempdir().unwrap(),
        ipam: n.ipam.clone(),
        router: ipam_node::router(state),
        token: None,
    };
    // Bounded, so a timeout that never fires fails the test instead of hanging it.
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        hurried.post("/api/v1/pools", pool_body("late", "10.0.0.0/24")),
    )
    .await
    .expect("the request timeout did not cut the write");
    r.expect(503, "deadline_exceeded");
    assert_eq!(r.json()["error"]["may_have_committed"], true);
    assert_eq!(r.headers[header::RETRY_AFTER], "1");
    // Membership calls and the operations endpoints are not cut by it: `init` waits for its
    // entry to commit, which takes longer than zero.
    assert_eq!(hurried.get("/api/v1/cluster").await.status, StatusCode::OK);
    assert_eq!(hurried.get("/healthz").await.status, StatusCode::OK);
    let r = hurried.post("/api/v1/cluster/init", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // The timed-out write was queued and may still apply; a retry of the same request is
    // answered by the domain.
    let retry = || async {
        let r = n
            .post("/api/v1/pools", pool_body("late", "10.0.0.0/24"))
            .await;
        match r.status {
            StatusCode::CREATED | StatusCode::CONFLICT => Ok(()),
            _ => Err(r.text),
        }
    };
    ipam_tests::wait_until("a domain answer", std::time::Duration::from_secs(20), retry).await;
}

#[tokio::test]
async fn calls_after_shutdown_are_shutting_down() {
    let n = start(None, true).await;
    n.ipam.shutdown().await.unwrap();
    let r = n.post("/api/v1/pools", pool_body("a", "10.0.0.0/24")).await;
    r.expect(503, "shutting_down");
    assert_eq!(r.headers[header::RETRY_AFTER], "1");
}

#[tokio::test]
async fn ipv6_addresses_travel_as_strings() {
    let n = start(None, true).await;
    let r = n.post("/api/v1/pools", pool_body("v6", "fd00::/120")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json()["stats"]["capacity"], "255");
    let r = n
        .post("/api/v1/pools/v6/allocations", json!({"owner": "a"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json()["ip"], "fd00::1");
    let r = n
        .post(
            "/api/v1/pools/v6/allocations",
            json!({"owner": "b", "ip": "FD00:0:0::00ff"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json()["ip"], "fd00::ff", "canonical form");
    n.post(
        "/api/v1/pools/v6/allocations",
        json!({"owner": "c", "ip": "fd00::"}),
    )
    .await
    .expect(400, "invalid_argument");
    let r = n.get("/api/v1/addresses/fd00::ff").await;
    assert_eq!(r.json()["allocation"]["owner"], "b");
    let r = n.get("/api/v1/pools/v6/allocations?after=fd00::1").await;
    assert_eq!(r.json()["allocations"][0]["ip"], "fd00::ff");
    let r = n.delete("/api/v1/pools/v6/allocations/fd00::ff").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    n.delete("/api/v1/pools/v6/allocations/10.0.0.1")
        .await
        .expect(400, "invalid_argument");
}

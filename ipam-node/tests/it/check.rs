//! `GET /api/v1/check` and the `--check-interval` timer: a clean node reports its digest and
//! no problem; a deliberately corrupted in-memory index is reported (and counted in
//! `ipam_integrity_problems`) until the timer rebuilds it from redb.

use crate::common;

use std::time::{Duration, Instant};

use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_a_corrupted_index_until_the_timer_repairs_it() {
    let node = common::start(None, true).await;
    node.post(
        "/api/v1/pools",
        json!({"name": "vms", "cidr": "10.0.0.0/24"}),
    )
    .await;
    node.post("/api/v1/pools/vms/allocations", json!({"owner": "a"}))
        .await;

    let clean = node.get("/api/v1/check").await;
    assert_eq!(clean.status.as_u16(), 200, "{}", clean.text);
    let clean = clean.json();
    assert_eq!(clean["node"], 1);
    assert!(clean["applied_index"].as_u64().unwrap() > 0);
    let digest = clean["digest"].as_str().unwrap().to_string();
    assert_eq!(digest.len(), 64);
    assert_eq!(
        digest,
        node.ipam
            .digest()
            .await
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    assert_eq!(clean["problems"], json!([]));
    node.get("/api/v1/check?x=1")
        .await
        .expect(400, "invalid_argument");

    assert!(node.ipam.corrupt_index_for_tests("vms"));
    let found = node.get("/api/v1/check").await.json();
    assert_eq!(found["digest"], digest.as_str());
    let problems = found["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{found}");
    assert_eq!(problems[0]["kind"], "free_index_mismatch");
    assert_eq!(problems[0]["pool"], "vms");
    assert!(problems[0]["message"].as_str().unwrap().contains("vms"));
    let metrics = node.get("/metrics").await.text;
    assert!(
        metrics.contains("\nipam_integrity_problems 1\n"),
        "{metrics}"
    );

    // The timer repairs it. Its own AppState shares the node's Ipam (metrics are separate).
    let state = ipam_node::AppState::new(node.ipam.clone(), None, Duration::from_secs(30)).unwrap();
    let metrics = state.metrics.clone();
    let timer = tokio::spawn(ipam_node::check::run_timer(
        state,
        Duration::from_millis(20),
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = node.get("/api/v1/check").await.json();
        if now["problems"] == json!([]) {
            break;
        }
        assert!(Instant::now() < deadline, "not repaired: {now}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    timer.abort();
    assert_eq!(metrics.integrity_problems.get(), 0);
    // The address the corruption hid is handed out again.
    let next = node
        .post("/api/v1/pools/vms/allocations", json!({"owner": "b"}))
        .await
        .json();
    assert_eq!(next["ip"], "10.0.0.3");
}

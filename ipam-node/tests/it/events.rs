//! The event endpoints through `router(state)` with `oneshot`: listing and paging, the pool
//! filter, an address's history, `history_truncated` past retention, and the server-sent
//! event stream's framing, keep-alive comments, `Last-Event-ID` resume, watcher gauge and end
//! on shutdown.

use crate::common;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use futures::StreamExt;
use ipam_node::{router, AppState};
use serde_json::{json, Value};
use tower::ServiceExt;

use common::start;

const WAIT: Duration = Duration::from_secs(20);

async fn setup(n: &common::TestNode) {
    n.create_pool("vms", "10.0.0.0/24").await;
    let r = n
        .post(
            "/api/v1/pools",
            json!({"name": "db", "cidr": "10.1.0.0/24"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    for owner in ["a", "b"] {
        let r = n
            .post("/api/v1/pools/vms/allocations", json!({"owner": owner}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let r = n
        .post("/api/v1/pools/db/allocations", json!({"owner": "c"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = n
        .call(
            axum::http::Method::DELETE,
            "/api/v1/pools/vms/allocations/10.0.0.2",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let r = n
        .post("/api/v1/pools/vms/allocations", json!({"owner": "d"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

fn kinds(events: &Value) -> Vec<(String, String)> {
    events
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            (
                e["id"].as_str().expect("id is a string").to_string(),
                e["kind"].as_str().expect("kind").to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn list_page_filter_history_and_truncation() {
    let n = start(None, true).await;
    setup(&n).await;
    let r = n.get("/api/v1/events").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let all = r.json();
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert_eq!(
        kinds(&all["events"]),
        pairs(&[
            ("1", "pool_created"),
            ("2", "pool_created"),
            ("3", "allocated"),
            ("4", "allocated"),
            ("5", "allocated"),
            ("6", "released"),
            ("7", "allocated"),
        ])
    );
    assert!(all.get("next").is_none(), "{all}");
    let released = &all["events"][5];
    assert_eq!(released["pool"], "vms");
    assert_eq!(released["ip"], "10.0.0.2");
    assert_eq!(released["owner"], "a");
    assert_eq!(released["generation"], 1);
    assert!(released["at"].as_str().unwrap().ends_with('Z'));
    // A pool event carries no address fields at all.
    assert!(all["events"][0].get("ip").is_none(), "{}", all["events"][0]);

    // Paging: `next` is the last id of a full page when more follow.
    let r = n.get("/api/v1/events?limit=3").await;
    assert_eq!(r.json()["next"], "3");
    let r = n.get("/api/v1/events?after=3&limit=3").await;
    assert_eq!(kinds(&r.json()["events"])[0].0, "4");
    assert_eq!(r.json()["next"], "6");
    let r = n.get("/api/v1/events?after=6&limit=3").await;
    assert!(r.json().get("next").is_none());
    let r = n.get("/api/v1/events?pool=db").await;
    assert_eq!(
        kinds(&r.json()["events"]),
        pairs(&[("2", "pool_created"), ("5", "allocated")])
    );
    for bad in [
        "/api/v1/events?limit=0",
        "/api/v1/events?limit=1001",
        "/api/v1/events?after=x",
        "/api/v1/events?pool=Bad_Name",
        "/api/v1/events?color=red",
        "/api/v1/addresses/10.0.0.300/history",
        "/api/v1/addresses/10.0.0.2/history?limit=0",
    ] {
        n.get(bad).await.expect(400, "invalid_argument");
    }

    // History of one address, newest first: the second holder, the release, the first.
    let r = n.get("/api/v1/addresses/10.0.0.2/history").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let h = r.json();
    assert_eq!(
        kinds(&h["events"]),
        pairs(&[("7", "allocated"), ("6", "released"), ("3", "allocated")])
    );
    assert_eq!(h["events"][0]["owner"], "d");
    let r = n.get("/api/v1/addresses/10.0.0.2/history?limit=1").await;
    assert_eq!(r.json()["events"].as_array().unwrap().len(), 1);
    let r = n.get("/api/v1/addresses/10.9.9.9/history").await;
    assert_eq!(r.json()["events"], json!([]));

    // Retention: keep 3, then one more write prunes down to 6..=8.
    n.ipam.set_event_retention(3);
    let r = n
        .post("/api/v1/pools/db/allocations", json!({"owner": "e"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = n.get("/api/v1/events").await;
    assert_eq!(
        kinds(&r.json()["events"]),
        pairs(&[("6", "released"), ("7", "allocated"), ("8", "allocated")])
    );
    n.get("/api/v1/events?after=4")
        .await
        .expect(410, "history_truncated");
    n.get("/api/v1/events/watch?after=0")
        .await
        .expect(410, "history_truncated");
    // `after` = the oldest kept minus one loses nothing.
    assert_eq!(n.get("/api/v1/events?after=5").await.status, StatusCode::OK);
    // The history index was pruned with the events.
    let r = n.get("/api/v1/addresses/10.0.0.2/history").await;
    assert_eq!(
        kinds(&r.json()["events"]),
        pairs(&[("7", "allocated"), ("6", "released")])
    );
}

/// Reads SSE lines from `body` until `done` says so, failing after `WAIT`.
async fn read_until(
    body: &mut (impl futures::Stream<Item = Result<axum::body::Bytes, axum::Error>> + Unpin),
    text: &mut String,
    done: impl Fn(&str) -> bool,
) {
    let until = Instant::now() + WAIT;
    while !done(text) {
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, body.next()).await {
            Ok(Some(chunk)) => text.push_str(&String::from_utf8_lossy(&chunk.expect("chunk"))),
            Ok(None) => panic!("stream ended early: {text}"),
            Err(_) => panic!("timed out; so far: {text}"),
        }
    }
}

/// The `data:` JSON of every complete event frame of `text`, with its `id:`.
fn frames(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter_map(|frame| {
            let id = frame.lines().find_map(|l| l.strip_prefix("id: "))?;
            let data = frame.lines().find_map(|l| l.strip_prefix("data: "))?;
            Some((
                id.to_string(),
                serde_json::from_str(data).expect("data is JSON"),
            ))
        })
        .collect()
}

#[tokio::test]
async fn watch_streams_framed_events_with_keep_alive_and_resume() {
    let n = start(None, true).await;
    setup(&n).await;
    let state = AppState::new(n.ipam.clone(), None, Duration::from_secs(30))
        .unwrap()
        .with_sse_keep_alive(Duration::from_millis(50));
    let closing = state.closing.clone();
    let app = router(state);

    // `Last-Event-ID` wins over `after`: resumes after 5, not after 1.
    let req = Request::get("/api/v1/events/watch?after=1&pool=vms")
        .header("last-event-id", "5")
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()[header::CONTENT_TYPE],
        "text/event-stream",
        "{:?}",
        resp.headers()
    );
    let mut body = resp.into_body().into_data_stream();
    let mut text = String::new();
    read_until(&mut body, &mut text, |t| frames(t).len() >= 2).await;
    let got = frames(&text);
    assert_eq!(got[0].0, "6");
    assert_eq!(got[0].1["kind"], "released");
    assert_eq!(got[0].1["id"], "6");
    assert_eq!(got[1].0, "7");
    // Idle: keep-alive comment lines arrive.
    read_until(&mut body, &mut text, |t| {
        t.lines().any(|l| l.starts_with(':'))
    })
    .await;

    let metrics = n.get("/metrics").await.text;
    assert!(
        metrics.lines().any(|l| l == "ipam_event_watchers 1"),
        "{metrics}"
    );

    // A new write reaches the open stream; another pool's does not.
    let r = n
        .post("/api/v1/pools/db/allocations", json!({"owner": "x"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = n
        .post("/api/v1/pools/vms/allocations", json!({"owner": "y"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    read_until(&mut body, &mut text, |t| frames(t).len() >= 3).await;
    let got = frames(&text);
    assert_eq!(got[2].0, "9", "{text}");
    assert_eq!(got[2].1["owner"], "y");

    // Shutdown of the node's listener ends the stream.
    closing.send_replace(true);
    let until = Instant::now() + WAIT;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, body.next()).await {
            Ok(None) => break,
            Ok(Some(_)) => continue,
            Err(_) => panic!("stream still open after closing"),
        }
    }
    let until = Instant::now() + WAIT;
    while n.ipam.event_watchers() != 0 {
        assert!(Instant::now() < until, "watch task still running");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // A bad Last-Event-ID is a 400 before any stream starts.
    let req = Request::get("/api/v1/events/watch")
        .header("last-event-id", "seven")
        .body(Body::empty())
        .unwrap();
    let resp = app.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn dashboard_shows_recent_events_and_an_address_history() {
    let n = start(None, true).await;
    setup(&n).await;
    // A hostile owner renders as text.
    let r = n
        .post(
            "/api/v1/pools/db/allocations",
            json!({"owner": "<script>x</script>"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = n.get("/ui").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.text.contains(r#"<table id="events">"#), "{}", r.text);
    // Newest first.
    let first = r.text.find(r#"data-event="8""#).expect("event 8");
    let last = r.text.find(r#"data-event="1""#).expect("event 1");
    assert!(first < last);
    assert!(!r.text.contains("<script>x</script>"));
    assert!(r.text.contains("&lt;script&gt;x&lt;/script&gt;"));

    let r = n.get("/ui/addresses/10.0.0.2").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let history = &r.text[r.text.find(r#"<table id="history">"#).expect("history")..];
    let rows: Vec<&str> = history
        .match_indices("data-event=\"")
        .map(|(i, _)| &history[i + 12..i + 13])
        .collect();
    assert_eq!(rows, ["7", "6", "3"]);
    let r = n.get("/ui/addresses/10.9.9.9").await;
    assert!(r.text.contains("No recorded events for this address."));
}

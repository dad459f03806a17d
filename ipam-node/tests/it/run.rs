//! `run` in-process: a node with default settings on a port-0 listener serves, self-initialises,
//! shuts down gracefully, and resumes from its data dir.

use std::time::Duration;

use ipam_node::{run, NodeConfig, NodeError};
use serde_json::{json, Value};

struct Running {
    addr: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), NodeError>>,
}

async fn start(config: NodeConfig) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(run(listener, config, async move {
        let _ = stopped.await;
    }));
    Running { addr, stop, task }
}

async fn wait_ready(http: &reqwest::Client, addr: &str) {
    let ready = || async {
        match http.get(format!("http://{addr}/readyz")).send().await {
            Ok(r) if r.status() == 200 => Ok(()),
            Ok(r) => Err(r.status().to_string()),
            Err(e) => Err(e.to_string()),
        }
    };
    ipam_tests::wait_until(
        &format!("{addr} to be ready"),
        Duration::from_secs(30),
        ready,
    )
    .await
}

impl Running {
    async fn stop(self) -> Result<(), NodeError> {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("node did not stop within 30 s")
            .expect("node task panicked")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_node_serves_and_resumes_from_its_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let config = NodeConfig {
        data_dir: dir.path().join("data"),
        ..Default::default()
    };
    let http = reqwest::Client::new();

    let node = start(config.clone()).await;
    wait_ready(&http, &node.addr).await;
    let r = http
        .post(format!("http://{}/api/v1/pools", node.addr))
        .json(&json!({"name": "p", "cidr": "10.0.0.0/24"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = http
        .post(format!("http://{}/api/v1/pools/p/allocations", node.addr))
        .json(&json!({"owner": "vm-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let first: Value = r.json().await.unwrap();
    let c: Value = http
        .get(format!("http://{}/api/v1/cluster", node.addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(c["members"][0]["addr"], node.addr.as_str());
    node.stop().await.unwrap();

    // The same data dir: the pool and the allocation are back, and it does not re-initialise.
    let node = start(config.clone()).await;
    wait_ready(&http, &node.addr).await;
    let r = http
        .post(format!("http://{}/api/v1/pools/p/allocations", node.addr))
        .json(&json!({"owner": "vm-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the owner's existing allocation");
    let again: Value = r.json().await.unwrap();
    assert_eq!(again, first);
    node.stop().await.unwrap();

    // Another id on the same data dir is refused with a clear error.
    let node = start(NodeConfig { id: 2, ..config }).await;
    let e = node.stop().await.unwrap_err();
    assert!(matches!(e, NodeError::Start(_)), "{e}");
    assert!(e.to_string().contains("node 1"), "{e}");
}

#[tokio::test]
async fn no_init_node_waits_to_be_initialised() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(NodeConfig {
        data_dir: dir.path().to_path_buf(),
        no_init: true,
        token: Some("t0ken".into()),
        ..Default::default()
    })
    .await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", node.addr);
    // Serving, but not ready: no leader.
    let healthy = || async {
        match http.get(format!("{base}/healthz")).send().await {
            Ok(r) if r.status() == 200 => Ok(()),
            Ok(r) => Err(r.status().to_string()),
            Err(e) => Err(e.to_string()),
        }
    };
    ipam_tests::wait_until("/healthz to answer 200", Duration::from_secs(30), healthy).await;
    let r = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let r = http
        .post(format!("{base}/api/v1/cluster/init"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .post(format!("{base}/api/v1/cluster/init"))
        .bearer_auth("t0ken")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_ready(&http, &node.addr).await;
    node.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_gives_up_or_is_refused_with_a_clear_error() {
    // Nothing listens on a port that was just released: the joiner retries until its deadline.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let node = start(NodeConfig {
        id: 2,
        data_dir: dir.path().join("j"),
        join: Some(format!("http://{closed_addr}")),
        join_timeout: Duration::from_millis(800),
        ..Default::default()
    })
    .await;
    let e = tokio::time::timeout(Duration::from_secs(30), node.task)
        .await
        .expect("the joiner did not give up")
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(
            e,
            NodeError::Join(ipam_node::join::JoinError::Timeout { .. })
        ),
        "{e}"
    );

    // A member that refuses (wrong token): the joiner stops at once with the reason.
    let member = start(NodeConfig {
        data_dir: dir.path().join("m"),
        token: Some("right".into()),
        ..Default::default()
    })
    .await;
    let node = start(NodeConfig {
        id: 2,
        data_dir: dir.path().join("j2"),
        token: Some("wrong".into()),
        join: Some(format!("http://{}", member.addr)),
        ..Default::default()
    })
    .await;
    let e = tokio::time::timeout(Duration::from_secs(30), node.task)
        .await
        .expect("the joiner did not stop")
        .unwrap()
        .unwrap_err();
    match &e {
        NodeError::Join(ipam_node::join::JoinError::Refused { source, .. }) => {
            assert_eq!(
                source.code(),
                Some(&ipam_client::ErrorCode::Unauthorized),
                "{e}"
            )
        }
        other => panic!("{other}"),
    }
    member.stop().await.unwrap();
}

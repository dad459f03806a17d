//! Real `ipam-node` processes on loopback for the process-level tests: spawn one on port 0
//! (its `listening on` line gives the address), call its API with retries through elections,
//! wait for a cluster to form.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
pub const TOKEN: &str = "cluster-test-token";

/// Tests that run several node processes take this first, so that they run one at a time, as
/// when each test file was its own binary: they share two cores with the rest of the binary.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct Proc {
    pub child: Child,
    pub addr: String,
    pub dir: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts node `id` with the test cluster's timing flags plus `extra`.
pub fn spawn(id: u64, listen: &str, dir: &Path, extra: &[&str]) -> Proc {
    spawn_with_env(id, listen, dir, extra, &[])
}

/// [`spawn`] with extra environment variables.
pub fn spawn_with_env(
    id: u64,
    listen: &str,
    dir: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Proc {
    std::fs::create_dir_all(dir).unwrap();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("node.log"))
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ipam-node"))
        .args(["--id", &id.to_string(), "--listen", listen])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--token", TOKEN])
        .args(["--heartbeat-ms", "100"])
        .args(["--election-timeout-min-ms", "500"])
        .args(["--election-timeout-max-ms", "1000"])
        .args(["--log-level", "info"])
        .args(extra)
        .env_remove("IPAM_CONFIG")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn ipam-node");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("no `listening on` line within 30 s");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}; log in {}", dir.display()))
        .to_string();
    Proc {
        child,
        addr,
        dir: dir.to_path_buf(),
    }
}

#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    /// `http` or `https` (nodes started with `--tls-cert`).
    pub scheme: &'static str,
}

impl Api {
    /// Calls nodes over plain HTTP.
    pub fn http() -> Api {
        Api {
            http: reqwest::Client::new(),
            scheme: "http",
        }
    }

    /// Calls nodes over HTTPS with `http`, a client that trusts their CA.
    pub fn https(http: reqwest::Client) -> Api {
        Api {
            http,
            scheme: "https",
        }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        addr: &str,
        path: &str,
        body: Option<Value>,
    ) -> Option<(u16, Value)> {
        let mut req = self
            .http
            .request(method, format!("{}://{addr}{path}", self.scheme))
            .bearer_auth(TOKEN)
            .timeout(Duration::from_secs(20));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.ok()?;
        let status = r.status().as_u16();
        let text = r.text().await.ok()?;
        Some((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// Retries while the node is unreachable or answers 503, until `deadline`.
    pub async fn until_ok(
        &self,
        method: reqwest::Method,
        addr: &str,
        path: &str,
        body: Option<Value>,
        deadline: Instant,
    ) -> (u16, Value) {
        loop {
            let last = self.call(method.clone(), addr, path, body.clone()).await;
            match &last {
                Some((s, v)) if *s != 503 => return (*s, v.clone()),
                _ => {}
            }
            assert!(
                Instant::now() < deadline,
                "{method} {addr}{path}: still failing: {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn cluster(&self, addr: &str) -> Option<Value> {
        match self
            .call(reqwest::Method::GET, addr, "/api/v1/cluster", None)
            .await
        {
            Some((200, v)) => Some(v),
            _ => None,
        }
    }

    /// Allocates for `owner` through `addr`, retrying through elections (same owner: a retry
    /// returns the allocation if an earlier attempt committed).
    pub async fn allocate(&self, addr: &str, owner: &str, deadline: Instant) -> Value {
        let (status, v) = self
            .until_ok(
                reqwest::Method::POST,
                addr,
                "/api/v1/pools/p/allocations",
                Some(json!({ "owner": owner })),
                deadline,
            )
            .await;
        assert!(
            status == 201 || status == 200,
            "allocate {owner} via {addr}: {status} {v}"
        );
        v
    }

    pub async fn local_allocations(&self, addr: &str) -> Option<Vec<Value>> {
        match self
            .call(
                reqwest::Method::GET,
                addr,
                "/api/v1/pools/p/allocations?consistency=local&limit=1000",
                None,
            )
            .await
        {
            Some((200, v)) => v["allocations"].as_array().cloned(),
            _ => None,
        }
    }
}

pub fn voters(c: &Value) -> BTreeSet<u64> {
    c["members"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter(|m| m["role"] == "voter")
                .filter_map(|m| m["id"].as_u64())
                .collect()
        })
        .unwrap_or_default()
}

pub async fn wait_cluster(
    api: &Api,
    nodes: &[&Proc],
    ids: &BTreeSet<u64>,
    deadline: Instant,
) -> u64 {
    loop {
        let mut leaders = BTreeSet::new();
        let mut ok = true;
        for n in nodes {
            match api.cluster(&n.addr).await {
                Some(c) if voters(&c) == *ids && c["leader"].is_u64() => {
                    leaders.insert(c["leader"].as_u64().unwrap());
                }
                _ => ok = false,
            }
        }
        if ok && leaders.len() == 1 {
            return leaders.into_iter().next().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "cluster did not form with voters {ids:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

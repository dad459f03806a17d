//! Three real `ipam-node` processes with mTLS (certificates from `ipam-node certs`): the
//! cluster forms through `--join https://…`, replicates, and keeps accepting writes after the
//! leader is SIGKILLed; a client without a certificate is refused.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const TOKEN: &str = "tls-cluster-token";

struct Proc {
    child: Child,
    addr: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn node_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ipam-node"))
}

fn spawn(id: u64, dir: &Path, certs: &Path, extra: &[&str]) -> Proc {
    std::fs::create_dir_all(dir).unwrap();
    let log = std::fs::File::create(dir.join("node.log")).unwrap();
    let mut child = node_bin()
        .args(["--id", &id.to_string(), "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--tls-cert")
        .arg(certs.join("127.0.0.1.pem"))
        .arg("--tls-key")
        .arg(certs.join("127.0.0.1-key.pem"))
        .arg("--tls-ca")
        .arg(certs.join("ca.pem"))
        .arg("--tls-client-auth")
        .args(["--heartbeat-ms", "100"])
        .args(["--election-timeout-min-ms", "500"])
        .args(["--election-timeout-max-ms", "1000"])
        .args(extra)
        .env("IPAM_TOKEN", TOKEN)
        .env_remove("IPAM_CONFIG")
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
    Proc { child, addr }
}

struct Api {
    http: reqwest::Client,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        addr: &str,
        path: &str,
        body: Option<Value>,
    ) -> Option<(u16, Value)> {
        let mut req = self
            .http
            .request(method, format!("https://{addr}{path}"))
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

    async fn until_ok(
        &self,
        method: reqwest::Method,
        addr: &str,
        path: &str,
        body: Option<Value>,
        deadline: Instant,
    ) -> (u16, Value) {
        loop {
            let last = self.call(method.clone(), addr, path, body.clone()).await;
            if let Some((s, v)) = &last {
                if *s != 503 {
                    return (*s, v.clone());
                }
            }
            assert!(
                Instant::now() < deadline,
                "{method} {addr}{path}: still failing: {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// (leader, voters) as `addr` sees them.
    async fn cluster(&self, addr: &str) -> Option<(Option<u64>, BTreeSet<u64>)> {
        let (s, v) = self
            .call(reqwest::Method::GET, addr, "/api/v1/cluster", None)
            .await?;
        if s != 200 {
            return None;
        }
        let voters = v["members"]
            .as_array()?
            .iter()
            .filter(|m| m["role"] == "voter")
            .filter_map(|m| m["id"].as_u64())
            .collect();
        Some((v["leader"].as_u64(), voters))
    }

    async fn wait_leader(
        &self,
        nodes: &[(u64, &str)],
        voters: &BTreeSet<u64>,
        deadline: Instant,
    ) -> u64 {
        loop {
            let mut leaders = BTreeSet::new();
            let mut ok = true;
            for (_, addr) in nodes {
                match self.cluster(addr).await {
                    Some((Some(l), v)) if v == *voters => {
                        leaders.insert(l);
                    }
                    _ => ok = false,
                }
            }
            if ok && leaders.len() == 1 {
                let leader = leaders.into_iter().next().unwrap();
                if nodes.iter().any(|(id, _)| *id == leader) {
                    return leader;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader among {nodes:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn allocate(&self, addr: &str, owner: &str, deadline: Instant) -> String {
        let (s, v) = self
            .until_ok(
                reqwest::Method::POST,
                addr,
                "/api/v1/pools/p/allocations",
                Some(json!({ "owner": owner })),
                deadline,
            )
            .await;
        assert!(s == 200 || s == 201, "allocate {owner} via {addr}: {s} {v}");
        v["ip"].as_str().unwrap().to_string()
    }

    async fn local_count(&self, addr: &str) -> Option<usize> {
        let (s, v) = self
            .call(
                reqwest::Method::GET,
                addr,
                "/api/v1/pools/p/allocations?consistency=local&limit=1000",
                None,
            )
            .await?;
        (s == 200).then(|| v["allocations"].as_array().map_or(0, Vec::len))
    }
}

fn tls_client(certs: &Path, with_cert: bool) -> reqwest::Client {
    let tls = ipam_client::TlsOptions::from_files(
        Some(&certs.join("ca.pem")),
        with_cert.then(|| certs.join("client.pem")).as_deref(),
        with_cert.then(|| certs.join("client-key.pem")).as_deref(),
    )
    .unwrap();
    tls.apply(reqwest::Client::builder())
        .unwrap()
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_node_mtls_cluster_forms_replicates_and_survives_a_leader_kill() {
    let _serial = crate::procs::SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let certs: PathBuf = tmp.path().join("certs");
    let out = node_bin()
        .args(["certs", "--nodes", "127.0.0.1"])
        .arg("--out")
        .arg(&certs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let api = Api {
        http: tls_client(&certs, true),
    };
    let deadline = Instant::now() + Duration::from_secs(240);

    let n1 = spawn(1, &tmp.path().join("n1"), &certs, &[]);
    let join = format!("https://{}", n1.addr);
    let n2 = spawn(2, &tmp.path().join("n2"), &certs, &["--join", &join]);
    let n3 = spawn(3, &tmp.path().join("n3"), &certs, &["--join", &join]);
    let mut nodes = vec![(1u64, n1), (2, n2), (3, n3)];
    let all: BTreeSet<u64> = [1, 2, 3].into();
    let addrs = |nodes: &[(u64, Proc)]| -> Vec<(u64, String)> {
        nodes.iter().map(|(id, p)| (*id, p.addr.clone())).collect()
    };
    let a = addrs(&nodes);
    let refs: Vec<(u64, &str)> = a.iter().map(|(id, s)| (*id, s.as_str())).collect();
    let leader = api.wait_leader(&refs, &all, deadline).await;

    let follower = refs.iter().find(|(id, _)| *id != leader).unwrap().1;
    let (s, v) = api
        .until_ok(
            reqwest::Method::POST,
            follower,
            "/api/v1/pools",
            Some(json!({"name": "p", "cidr": "10.0.0.0/24"})),
            deadline,
        )
        .await;
    assert_eq!(s, 201, "{v}");
    for i in 0..9 {
        api.allocate(refs[i % 3].1, &format!("before-{i}"), deadline)
            .await;
    }

    // Nodes of one release reach each other over peer streams (upgraded inside the TLS
    // connections, with client certificates), never one HTTP request per call.
    let leader_addr = refs.iter().find(|(id, _)| *id == leader).unwrap().1;
    let metrics = api
        .http
        .get(format!("https://{leader_addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let calls = |transport: &str| -> u64 {
        let prefix = format!("ipam_peer_calls_total{{transport=\"{transport}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in /metrics"))
    };
    assert!(calls("stream") > 0, "the leader made no stream calls");
    assert_eq!(calls("http"), 0, "the leader called a peer over HTTP");

    // Without a client certificate the handshake fails; the nodes keep serving.
    let certless = tls_client(&certs, false);
    assert!(certless
        .get(format!("https://{}/readyz", refs[0].1))
        .send()
        .await
        .is_err());

    // SIGKILL the leader; the survivors elect another and keep allocating.
    let idx = nodes.iter().position(|(id, _)| *id == leader).unwrap();
    let (_, mut dead) = nodes.remove(idx);
    dead.child.kill().unwrap();
    let _ = dead.child.wait();
    let a = addrs(&nodes);
    let survivors: Vec<(u64, &str)> = a.iter().map(|(id, s)| (*id, s.as_str())).collect();
    for i in 0..6 {
        api.allocate(survivors[i % 2].1, &format!("after-{i}"), deadline)
            .await;
    }
    // Both survivors hold all 15 allocations.
    for (_, addr) in &survivors {
        loop {
            if api.local_count(addr).await == Some(15) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{addr} never replicated all 15 allocations"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

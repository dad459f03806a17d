//! Three real `ipam-node` processes with mTLS (certificates from `ipam-node certs`): the
//! cluster forms through `--join https://…`, replicates, and keeps accepting writes after the
//! leader is SIGKILLed; a client without a certificate is refused.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::procs::{spawn, wait_cluster, Api, Proc};

/// Node `id` serving HTTPS that asks every client, peers included, for a certificate.
fn spawn_tls(id: u64, dir: &Path, certs: &Path, extra: &[&str]) -> Proc {
    let cert = certs.join("127.0.0.1.pem");
    let key = certs.join("127.0.0.1-key.pem");
    let ca = certs.join("ca.pem");
    let mut args = vec![
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--tls-ca",
        ca.to_str().unwrap(),
        "--tls-client-auth",
    ];
    args.extend_from_slice(extra);
    spawn(id, "127.0.0.1:0", dir, &args)
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
    let out = Command::new(env!("CARGO_BIN_EXE_ipam-node"))
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
    let api = Api::https(tls_client(&certs, true));
    let deadline = Instant::now() + Duration::from_secs(240);

    let n1 = spawn_tls(1, &tmp.path().join("n1"), &certs, &[]);
    let join = format!("https://{}", n1.addr);
    let n2 = spawn_tls(2, &tmp.path().join("n2"), &certs, &["--join", &join]);
    let n3 = spawn_tls(3, &tmp.path().join("n3"), &certs, &["--join", &join]);
    let all: BTreeSet<u64> = [1, 2, 3].into();
    let leader = wait_cluster(&api, &[&n1, &n2, &n3], &all, deadline).await;
    let mut nodes = vec![(1u64, n1), (2, n2), (3, n3)];
    let addrs = |nodes: &[(u64, Proc)]| -> Vec<(u64, String)> {
        nodes.iter().map(|(id, p)| (*id, p.addr.clone())).collect()
    };
    let a = addrs(&nodes);
    let refs: Vec<(u64, &str)> = a.iter().map(|(id, s)| (*id, s.as_str())).collect();

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
            if api.local_allocations(addr).await.map(|a| a.len()) == Some(15) {
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

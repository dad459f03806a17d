//! A node killed with SIGKILL (a child process running this same test binary) loses no
//! acknowledged write: the restarted node re-applies its log from the state machine's durable
//! point.

use crate::support;
use crate::support::nodes::SERIAL;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use ipam_raft::{Config, Consistency, Ipam};
use tempfile::TempDir;

const CHILD_DIR: &str = "IPAM_RAFT_CRASH_CHILD_DIR";
/// The child runs this test alone; its name is the path from the test crate's root.
const TEST_NAME: &str = "crash::acknowledged_writes_survive_sigkill";
/// Acknowledged allocations to see before the kill.
const ACKS: usize = 400;

fn config(dir: &std::path::Path) -> Config {
    let mut c = Config::new(1, dir, "127.0.0.1:9");
    // Keep applies non-durable for the whole run, so recovery must re-apply from the log.
    c.durable_every_entries = 1_000_000;
    c.durable_interval = Duration::from_secs(3600);
    c
}

fn child(dir: &str) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let ipam = Ipam::start(config(std::path::Path::new(dir)))
            .await
            .expect("start");
        ipam.init(Vec::new()).await.expect("init");
        ipam.wait_for(Duration::from_secs(20), |s| s.leader == Some(1))
            .await
            .expect("leader");
        ipam.create_pool(support::pools::vms("10.0.0.0/16"))
            .await
            .expect("pool");
        let mut round = 0u64;
        loop {
            let mut tasks = Vec::new();
            for j in 0..16 {
                let ipam = ipam.clone();
                let owner = format!("vm-{round}-{j}");
                tasks.push(tokio::spawn(async move {
                    let (a, _) = ipam
                        .allocate("vms", &owner, None, BTreeMap::new())
                        .await
                        .expect("allocate");
                    println!("ACK {owner} {}", a.ip);
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
            round += 1;
        }
    });
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        child(&dir);
        return;
    }
    let _serial = SERIAL.blocking_lock();
    let dir = TempDir::new().expect("tmp");
    let mut proc = Command::new(std::env::current_exe().expect("exe"))
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = proc.stdout.take().expect("stdout");
    let mut acked: Vec<(String, IpAddr)> = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let mut parts = line.split_whitespace();
        if parts.next() != Some("ACK") {
            continue;
        }
        let (Some(owner), Some(ip)) = (parts.next(), parts.next()) else {
            continue;
        };
        acked.push((owner.to_string(), ip.parse().expect("ip")));
        if acked.len() >= ACKS {
            break;
        }
    }
    // SIGKILL: no destructor, no final commit.
    proc.kill().expect("kill");
    let _ = proc.wait();
    assert!(
        acked.len() >= ACKS,
        "the child acknowledged only {} writes",
        acked.len()
    );

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let ipam = Ipam::start(config(dir.path())).await.expect("restart");
        ipam.wait_for(Duration::from_secs(20), |s| s.leader == Some(1))
            .await
            .expect("leader again");
        for (owner, ip) in &acked {
            let held = ipam
                .owner_allocations(owner, Consistency::Linearizable)
                .await
                .expect("read");
            assert!(
                held.iter().any(|a| a.ip == *ip),
                "acknowledged allocation {owner} -> {ip} lost after SIGKILL"
            );
        }
        let pool = ipam
            .pool("vms", Consistency::Linearizable)
            .await
            .expect("pool");
        assert!(pool.stats.allocated >= acked.len() as u128);
        ipam.shutdown().await.expect("shutdown");
    });
}

//! Latency of one durable log append (the leader's per-entry cost), and of one applied entry
//! of 1,000 allocations.
//!
//! `cargo run --release -p ipam-raft --example log_append`

use std::collections::BTreeMap;
use std::time::Instant;

use ipam_core::{Command, GatewayChoice, Op, PoolSpec, Stamp};
use ipam_raft::log_store::LogStore;
use ipam_raft::state_machine::{Durable, StateMachineStore};
use ipam_raft::types::{Entry, LogId, Request};
use openraft::storage::{RaftLogStorageExt, RaftStateMachine};
use openraft::{CommittedLeaderId, EntryPayload};

fn entry(index: u64, commands: Vec<Command>) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Request {
            stamp: Stamp(index),
            commands,
        }),
    }
}

fn allocations(from: u64, n: u64) -> Vec<Command> {
    (from..from + n)
        .map(|i| {
            Command::Op(Op::Allocate {
                pool: "vms".into(),
                owner: format!("vm-{i}"),
                ip: None,
                labels: BTreeMap::new(),
            })
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let dir = tempfile::TempDir::new().expect("tmp");
    let (_tx, limit) = tokio::sync::watch::channel(Some(u64::MAX));
    let mut log = LogStore::open(&dir.path().join("log.redb"), limit).expect("log");
    let rounds = 300u64;
    let t = Instant::now();
    for i in 1..=rounds {
        log.blocking_append(vec![entry(i, allocations(i * 1000, 1000))])
            .await
            .expect("append");
    }
    println!(
        "durable append of one 1,000-op entry: {:?} each",
        t.elapsed() / rounds as u32
    );

    let t = Instant::now();
    for i in rounds + 1..=rounds * 2 {
        log.blocking_append(vec![entry(i, allocations(i * 1000, 1))])
            .await
            .expect("append");
    }
    println!(
        "durable append of one 1-op entry: {:?} each",
        t.elapsed() / rounds as u32
    );

    let (durable_tx, _rx) = tokio::sync::watch::channel(None);
    let mut sm = StateMachineStore::open(dir.path(), Durable::default(), durable_tx).expect("sm");
    let pool = Command::Op(Op::CreatePool(PoolSpec {
        name: "vms".into(),
        cidr: "10.0.0.0/8".parse().expect("cidr"),
        gateway: GatewayChoice::Default,
        reserved: Vec::new(),
        labels: BTreeMap::new(),
        description: String::new(),
    }));
    sm.apply(vec![entry(1, vec![pool])]).await.expect("pool");
    let t = Instant::now();
    for i in 2..=rounds {
        sm.apply(vec![entry(i, allocations(i * 1000, 1000))])
            .await
            .expect("apply");
    }
    let per = t.elapsed() / (rounds - 1) as u32;
    println!(
        "apply of one 1,000-allocation entry: {per:?} each ({:.0} allocations/s)",
        1000.0 / per.as_secs_f64()
    );
}

//! Helpers shared by the integration tests: an in-memory database with a [`State`].
#![allow(dead_code)]

use std::net::IpAddr;

use ipam_core::{
    query, BatchError, Command, CommandResult, GatewayChoice, Labels, Op, OpError, OpOutput,
    PoolSpec, Reserved, Stamp, State,
};
use redb::{Database, ReadTransaction, ReadableDatabase};

/// A database plus the state applied to it, committing after every `apply`.
pub struct Db {
    pub db: Database,
    pub state: State,
    pub stamp: u64,
}

impl Db {
    pub fn mem() -> Db {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .expect("in-memory database");
        Db::with(db)
    }

    /// A fresh in-memory state at level 1: a replica before it applies the entry that raised
    /// the level (or a data dir written by release 0.1.0).
    pub fn mem_at_level_1() -> Db {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .expect("in-memory database");
        let state = State::open(&db).expect("open state");
        Db {
            db,
            state,
            stamp: 1_000,
        }
    }

    /// A state on `db` at this release's feature level, as a new cluster's first entry sets it
    /// (the event log is on).
    pub fn with(db: Database) -> Db {
        let state = State::open(&db).expect("open state");
        let mut db = Db {
            db,
            state,
            stamp: 1_000,
        };
        let level = ipam_core::feature::FEATURE_LEVEL;
        assert_eq!(
            db.op(Op::SetFeatureLevel(level)),
            Ok(OpOutput::FeatureLevel(level))
        );
        db
    }

    /// Moves the stamp of the next entries `ms` forward: log time only moves when a test says
    /// so, so an op that fails leaves the state (log time included) as it was.
    pub fn advance(&mut self, ms: u64) {
        self.stamp += ms;
    }

    pub fn apply(&mut self, commands: &[Command]) -> Vec<CommandResult> {
        let txn = self.db.begin_write().expect("write txn");
        let results = self
            .state
            .apply(&txn, Stamp(self.stamp), commands)
            .expect("apply");
        txn.commit().expect("commit");
        assert_eq!(results.len(), commands.len(), "one result per command");
        results
    }

    pub fn op(&mut self, op: Op) -> Result<OpOutput, OpError> {
        match self.apply(&[Command::Op(op)]).pop() {
            Some(CommandResult::Op(r)) => r,
            other => panic!("unexpected result {other:?}"),
        }
    }

    pub fn batch(&mut self, ops: Vec<Op>) -> Result<Vec<OpOutput>, BatchError> {
        match self.apply(&[Command::Batch(ops)]).pop() {
            Some(CommandResult::Batch(r)) => r,
            other => panic!("unexpected result {other:?}"),
        }
    }

    pub fn rtx(&self) -> ReadTransaction {
        self.db.begin_read().expect("read txn")
    }

    pub fn digest(&self) -> [u8; 32] {
        query::digest(&self.rtx()).expect("digest")
    }

    /// Reopens the state from the tables, as after a restart.
    pub fn reopen(&mut self) {
        self.state = State::open(&self.db).expect("reopen state");
    }

    pub fn create(&mut self, name: &str, cidr: &str) -> ipam_core::PoolInfo {
        match self.op(Op::CreatePool(spec(name, cidr))) {
            Ok(OpOutput::PoolCreated(p)) => p,
            other => panic!("create {name} {cidr}: {other:?}"),
        }
    }

    pub fn alloc(&mut self, pool: &str, owner: &str) -> IpAddr {
        match self.op(allocate(pool, owner, None)) {
            Ok(OpOutput::Allocated { allocation, .. }) => allocation.ip,
            other => panic!("allocate {pool} {owner}: {other:?}"),
        }
    }
}

pub fn spec(name: &str, cidr: &str) -> PoolSpec {
    PoolSpec {
        name: name.to_string(),
        cidr: cidr.parse().expect("cidr"),
        gateway: GatewayChoice::Default,
        reserved: Vec::new(),
        labels: Labels::new(),
        description: String::new(),
    }
}

pub fn spec_with(name: &str, cidr: &str, gateway: GatewayChoice, reserved: &[&str]) -> PoolSpec {
    PoolSpec {
        gateway,
        reserved: reserved
            .iter()
            .map(|r| r.parse::<Reserved>().expect("reserved"))
            .collect(),
        ..spec(name, cidr)
    }
}

pub fn allocate(pool: &str, owner: &str, ip: Option<&str>) -> Op {
    Op::Allocate {
        pool: pool.to_string(),
        owner: owner.to_string(),
        ip: ip.map(|i| i.parse().expect("ip")),
        labels: Labels::new(),
    }
}

pub fn release(pool: &str, ip: &str, generation: Option<u64>) -> Op {
    Op::Release {
        pool: pool.to_string(),
        ip: ip.parse().expect("ip"),
        generation,
    }
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

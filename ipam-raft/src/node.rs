//! [`Ipam`]: the embeddable handle a VM orchestrator (or `ipam-node`) links.
//!
//! STUB SIGNATURES (to be implemented by the raft work): the shape other crates code against.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipam_core::{
    AddressInfo, Allocation, AllocationPage, Command, CommandResult, Labels, Op, OpOutput,
    PoolInfo, PoolSpec,
};

use crate::error::{IpamError, StartError};

/// How a read is served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Consistency {
    /// Reflects every write acknowledged before the read, on any node (read barrier).
    #[default]
    Linearizable,
    /// This node's replica at once, possibly stale.
    Local,
}

/// Configuration of a node.
#[derive(Clone, Debug)]
pub struct Config {
    /// Raft node id; never reuse one of a removed node.
    pub id: u64,
    /// Directory of `log.redb` and `state.redb`.
    pub data_dir: PathBuf,
    /// `host:port` peers use to reach this node's `/raft/*` routes.
    pub advertise: String,
    /// Cluster token sent and required as `Authorization: Bearer` on `/raft/*`.
    pub token: Option<String>,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// Election timeout range.
    pub election_timeout: (Duration, Duration),
    /// Build a snapshot after this many logs since the last one.
    pub snapshot_logs: u64,
    /// Logs kept after a snapshot.
    pub max_in_snapshot_log_to_keep: u64,
    /// Timeout of one snapshot chunk and of the final install.
    pub install_snapshot_timeout: Duration,
    /// Deadline of a write (proposal until acknowledged).
    pub write_deadline: Duration,
    /// Deadline of a read barrier.
    pub read_deadline: Duration,
    /// Bound of the proposer queue (commands); beyond it callers get `Overloaded`.
    pub queue_capacity: usize,
    /// Cap of ops in one log entry.
    pub max_ops_per_entry: usize,
}

impl Config {
    /// Defaults for `id` and `data_dir`, advertising `advertise`.
    pub fn new(id: u64, data_dir: impl Into<PathBuf>, advertise: impl Into<String>) -> Config {
        Config {
            id,
            data_dir: data_dir.into(),
            advertise: advertise.into(),
            token: None,
            heartbeat: Duration::from_millis(100),
            election_timeout: (Duration::from_millis(500), Duration::from_millis(1000)),
            snapshot_logs: 5_000,
            max_in_snapshot_log_to_keep: 1_000,
            install_snapshot_timeout: Duration::from_secs(30),
            write_deadline: Duration::from_secs(10),
            read_deadline: Duration::from_secs(5),
            queue_capacity: 100_000,
            max_ops_per_entry: 1_000,
        }
    }
}

/// Role of a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberRole {
    /// Votes.
    Voter,
    /// Receives the log, does not vote.
    Learner,
}

/// One member of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Node id.
    pub id: u64,
    /// `host:port`.
    pub addr: String,
    /// Voter or learner.
    pub role: MemberRole,
}

/// What `/api/v1/cluster` reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterStatus {
    /// This node's id.
    pub id: u64,
    /// The current leader, if known.
    pub leader: Option<u64>,
    /// Current term.
    pub term: u64,
    /// Index of the last log entry.
    pub last_log_index: u64,
    /// Commit index as this node knows it.
    pub committed_index: u64,
    /// Last applied index.
    pub applied_index: u64,
    /// Whether this node is initialized (has a membership).
    pub initialized: bool,
    /// Members, by id.
    pub members: Vec<Member>,
}

/// The embeddable node handle. Cheap to clone; every method works on any node (writes and
/// membership changes are forwarded to the leader).
#[derive(Clone)]
pub struct Ipam {}

#[allow(unused_variables)]
impl Ipam {
    /// Opens the stores in `config.data_dir` and starts raft. Binds nothing: mount
    /// [`Ipam::raft_router`] on a listener that `config.advertise` reaches.
    pub async fn start(config: Config) -> Result<Ipam, StartError> {
        todo!("RAFT-HELPER")
    }

    /// The `/raft/*` routes (token-checked, 64 MiB body limit) to mount on the node's listener.
    pub fn raft_router(&self) -> axum::Router {
        todo!("RAFT-HELPER")
    }

    /// Stops raft and closes the stores.
    pub async fn shutdown(&self) -> Result<(), IpamError> {
        todo!("RAFT-HELPER")
    }

    /// Proposes one command (coalesced with concurrent ones) and returns its result.
    pub async fn submit(&self, command: Command) -> Result<CommandResult, IpamError> {
        todo!("RAFT-HELPER")
    }

    /// Creates a pool.
    pub async fn create_pool(&self, spec: PoolSpec) -> Result<PoolInfo, IpamError> {
        todo!("RAFT-HELPER")
    }

    /// Deletes a pool; returns the number of allocations dropped (force).
    pub async fn delete_pool(&self, pool: &str, force: bool) -> Result<u64, IpamError> {
        todo!("RAFT-HELPER")
    }

    /// Allocates for `owner`; returns the allocation and whether it is the owner's existing
    /// one. A cache hit answers after a read barrier without a log entry.
    pub async fn allocate(
        &self,
        pool: &str,
        owner: &str,
        ip: Option<IpAddr>,
        labels: Labels,
    ) -> Result<(Allocation, bool), IpamError> {
        todo!("RAFT-HELPER")
    }

    /// Releases an address, optionally fenced by generation.
    pub async fn release(
        &self,
        pool: &str,
        ip: IpAddr,
        generation: Option<u64>,
    ) -> Result<Allocation, IpamError> {
        todo!("RAFT-HELPER")
    }

    /// Releases what `owner` holds in `pool`.
    pub async fn release_owner(&self, pool: &str, owner: &str) -> Result<Vec<IpAddr>, IpamError> {
        todo!("RAFT-HELPER")
    }

    /// Applies `ops` atomically, in order.
    pub async fn batch(&self, ops: Vec<Op>) -> Result<Vec<OpOutput>, IpamError> {
        todo!("RAFT-HELPER")
    }

    /// One pool.
    pub async fn pool(&self, name: &str, consistency: Consistency) -> Result<PoolInfo, IpamError> {
        todo!("RAFT-HELPER")
    }

    /// Pools matching every label of `filter`, by name.
    pub async fn pools(
        &self,
        filter: &Labels,
        consistency: Consistency,
    ) -> Result<Vec<PoolInfo>, IpamError> {
        todo!("RAFT-HELPER")
    }

    /// A page of a pool's allocations.
    pub async fn allocations(
        &self,
        pool: &str,
        owner: Option<&str>,
        after: Option<IpAddr>,
        limit: usize,
        consistency: Consistency,
    ) -> Result<AllocationPage, IpamError> {
        todo!("RAFT-HELPER")
    }

    /// The pool and allocation of an address.
    pub async fn address(
        &self,
        ip: IpAddr,
        consistency: Consistency,
    ) -> Result<AddressInfo, IpamError> {
        todo!("RAFT-HELPER")
    }

    /// An owner's allocations in every pool.
    pub async fn owner_allocations(
        &self,
        owner: &str,
        consistency: Consistency,
    ) -> Result<Vec<Allocation>, IpamError> {
        todo!("RAFT-HELPER")
    }

    /// Digest of this replica's core state (local, no barrier).
    pub async fn digest(&self) -> Result<[u8; 32], IpamError> {
        todo!("RAFT-HELPER")
    }

    /// Current status from openraft's metrics.
    pub fn status(&self) -> ClusterStatus {
        todo!("RAFT-HELPER")
    }

    /// Cache (hits, misses) of the allocate path since start.
    pub fn cache_stats(&self) -> (u64, u64) {
        todo!("RAFT-HELPER")
    }

    /// Initializes a cluster of `members` (id, addr); empty = this node alone.
    pub async fn init(&self, members: Vec<(u64, String)>) -> Result<(), IpamError> {
        todo!("RAFT-HELPER")
    }

    /// Adds a learner and returns once it has caught up.
    pub async fn add_learner(&self, id: u64, addr: String) -> Result<(), IpamError> {
        todo!("RAFT-HELPER")
    }

    /// Promotes one learner to voter.
    pub async fn promote_voter(&self, id: u64) -> Result<(), IpamError> {
        todo!("RAFT-HELPER")
    }

    /// Sets the voter set.
    pub async fn change_voters(&self, ids: BTreeSet<u64>) -> Result<(), IpamError> {
        todo!("RAFT-HELPER")
    }

    /// Removes a member (voter or learner).
    pub async fn remove_member(&self, id: u64) -> Result<(), IpamError> {
        todo!("RAFT-HELPER")
    }
}

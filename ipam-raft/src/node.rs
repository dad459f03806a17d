//! [`Ipam`]: the embeddable handle a VM orchestrator (or `ipam-node`) links.
//!
//! Reads come from this node's `state.redb` behind a read barrier (linearizable by default);
//! writes go through the proposer queue (coalesced into one entry) and are forwarded to the
//! leader when this node is not it; membership changes are forwarded the same way.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ipam_core::{
    AddressInfo, Allocation, AllocationPage, Command, CommandResult, Labels, Op, OpOutput,
    PoolInfo, PoolSpec,
};
use openraft::error::{ChangeMembershipError, ClientWriteError, InitializeError, RaftError};
use openraft::{ChangeMembers, RaftMetrics, ServerState, SnapshotPolicy};
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::{IpamError, StartError};
use crate::log_store::{DropSignal, LogStore};
use crate::network::{AdminRequest, NetShared, NetworkFactory, PostError, WireError};
use crate::proposer::{run_barrier, run_proposer, BarrierRequest, Proposal};
use crate::state_machine::{Durable, SmShared, StateMachineStore};
use crate::types::{Node, NodeId, Raft};

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
    /// Cap of the encoded size of the commands in one log entry (bytes).
    pub max_entry_bytes: usize,
    /// Entries the proposer keeps in flight at once; more queue for the next entry.
    pub max_inflight_entries: usize,
    /// Largest snapshot chunk sent in one `/raft/snapshot` request (bytes).
    pub snapshot_max_chunk_size: u64,
    /// Timeout of one append/vote RPC and connect timeout of the HTTP client.
    pub rpc_timeout: Duration,
    /// Deadline of a membership change, including a new learner catching up.
    pub membership_deadline: Duration,
    /// The state machine makes its applies durable after at most this many entries...
    pub durable_every_entries: u64,
    /// ...and at least this often while any are pending.
    pub durable_interval: Duration,
    /// Source of the leader's stamps (log time); tests inject a [`crate::ManualClock`].
    pub clock: crate::clock::StampClock,
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
            max_entry_bytes: 1 << 20,
            max_inflight_entries: 2,
            snapshot_max_chunk_size: 3 << 20,
            rpc_timeout: Duration::from_secs(2),
            membership_deadline: Duration::from_secs(120),
            durable_every_entries: 1_000,
            durable_interval: Duration::from_secs(1),
            clock: crate::clock::StampClock::system(),
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

/// Where a request must go right now.
pub(crate) enum Target {
    /// This node leads.
    Local,
    /// Another node leads: its id and `host:port`.
    Remote(NodeId, String),
    /// No leader is known.
    Unknown,
}

const NODE_ID_FILE: &str = "node_id";
const LOG_FILE: &str = "log.redb";

/// State shared by the handle, the background tasks and the `/raft/*` routes.
pub(crate) struct Core {
    pub(crate) id: NodeId,
    pub(crate) config: Config,
    pub(crate) raft: Raft,
    pub(crate) net: Arc<NetShared>,
    pub(crate) sm: Arc<SmShared>,
    metrics: watch::Receiver<RaftMetrics<NodeId, Node>>,
    queue: mpsc::Sender<Proposal>,
    barrier: mpsc::Sender<BarrierRequest>,
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    committed: AtomicU64,
    last_stamp: AtomicU64,
    shutdown_tx: watch::Sender<bool>,
    /// Sees `None` once every redb handle is closed.
    closed_rx: tokio::sync::Mutex<Option<mpsc::Receiver<()>>>,
}

/// The embeddable node handle. Cheap to clone; every method works on any node (writes and
/// membership changes are forwarded to the leader).
///
/// The node runs until [`Ipam::shutdown`]: dropping the handles does not stop it (its
/// background tasks hold it), and only `shutdown` closes the data dir for reopening.
#[derive(Clone)]
pub struct Ipam {
    pub(crate) core: Arc<Core>,
}

impl std::fmt::Debug for Ipam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ipam")
            .field("id", &self.core.id)
            .finish_non_exhaustive()
    }
}

fn storage(e: impl std::fmt::Display) -> StartError {
    StartError::Storage(e.to_string())
}

/// Records the node id in the data dir, or checks it against the recorded one.
fn check_node_id(dir: &Path, id: NodeId) -> Result<(), StartError> {
    let path = dir.join(NODE_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            let recorded: u64 = s.trim().parse().map_err(|_| {
                StartError::Storage(format!("{} is corrupt: {s:?}", path.display()))
            })?;
            if recorded != id {
                return Err(StartError::NodeIdMismatch {
                    dir: dir.display().to_string(),
                    recorded,
                    configured: id,
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, id.to_string()).map_err(storage)?;
            std::fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(storage)?;
            std::fs::rename(&tmp, &path).map_err(storage)?;
            std::fs::File::open(dir)
                .and_then(|f| f.sync_all())
                .map_err(storage)?;
            Ok(())
        }
        Err(e) => Err(storage(e)),
    }
}

/// A fresh cluster id: 128 bits from the process's randomly keyed hasher, time and node id.
fn new_cluster_id(node: NodeId) -> String {
    use std::hash::{BuildHasher, Hasher};
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut parts = [0u64; 2];
    for (i, part) in parts.iter_mut().enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(now);
        h.write_u64(node);
        h.write_usize(i);
        *part = h.finish();
    }
    format!("{:016x}{:016x}", parts[0], parts[1])
}

fn wire_from_write(e: RaftError<NodeId, ClientWriteError<NodeId, Node>>) -> WireError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => WireError::NotLeader {
            leader: f.leader_id.zip(f.leader_node.map(|n| n.addr)),
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(
            ChangeMembershipError::LearnerNotFound(l),
        )) => WireError::UnknownNode(l.node_id),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            WireError::Membership(e.to_string())
        }
        RaftError::Fatal(_) => WireError::ShuttingDown,
    }
}

fn op_output(r: CommandResult) -> Result<OpOutput, IpamError> {
    match r {
        CommandResult::Op(Ok(o)) => Ok(o),
        CommandResult::Op(Err(e)) => Err(IpamError::Op(e)),
        CommandResult::Batch(_) => Err(IpamError::Internal(
            "a batch result for a single op".to_string(),
        )),
    }
}

fn unexpected(what: &str, got: &OpOutput) -> IpamError {
    IpamError::Internal(format!("expected {what}, got {got:?}"))
}

impl Core {
    pub(crate) fn target(&self) -> Target {
        let m = self.metrics.borrow();
        match m.current_leader {
            Some(l) if l == self.id && m.state == ServerState::Leader => Target::Local,
            Some(l) if l == self.id => Target::Unknown,
            Some(l) => match m.membership_config.membership().get_node(&l) {
                Some(n) => Target::Remote(l, n.addr.clone()),
                None => Target::Unknown,
            },
            None => Target::Unknown,
        }
    }

    /// Waits until some leader is known, at most until `deadline` and two election timeouts.
    pub(crate) async fn wait_for_leader(&self, deadline: Instant) -> bool {
        let until = deadline.min(Instant::now() + self.config.election_timeout.1 * 2);
        let mut rx = self.metrics.clone();
        loop {
            if !matches!(self.target(), Target::Unknown) {
                return true;
            }
            let now = Instant::now();
            if now >= until {
                return false;
            }
            match tokio::time::timeout(until - now, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return false,
                Err(_) => return !matches!(self.target(), Target::Unknown),
            }
        }
    }

    /// The leader's stamp: wall-clock milliseconds, never going backwards on this node.
    pub(crate) fn next_stamp(&self) -> ipam_core::Stamp {
        let now = self.config.clock.now_ms();
        let prev = self.last_stamp.fetch_max(now, Ordering::Relaxed);
        ipam_core::Stamp(prev.max(now))
    }

    /// Queues `commands` for the next entry and waits for their results.
    pub(crate) async fn propose(
        &self,
        commands: Vec<Command>,
        forwarded: bool,
    ) -> Result<Vec<CommandResult>, WireError> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let ops = commands.iter().map(Command::op_count).sum();
        let bytes = commands
            .iter()
            .map(|c| {
                postcard::serialize_with_flavor(c, postcard::ser_flavors::Size::default())
                    .unwrap_or(0)
            })
            .sum();
        let (tx, rx) = oneshot::channel();
        let proposal = Proposal {
            commands,
            ops,
            bytes,
            forwarded,
            reply: tx,
        };
        match self.queue.try_send(proposal) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => return Err(WireError::Overloaded),
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(WireError::ShuttingDown),
        }
        rx.await.unwrap_or(Err(WireError::ShuttingDown))
    }

    /// The log index a linearizable read must wait for (coalesced with concurrent callers).
    pub(crate) async fn read_index(&self, forwarded: bool) -> Result<Option<u64>, WireError> {
        let (tx, rx) = oneshot::channel();
        self.barrier
            .send(BarrierRequest {
                forwarded,
                reply: tx,
            })
            .await
            .map_err(|_| WireError::ShuttingDown)?;
        rx.await.unwrap_or(Err(WireError::ShuttingDown))
    }

    /// Waits until this node has applied everything acknowledged before the call.
    pub(crate) async fn linearize(&self) -> Result<(), IpamError> {
        let start = Instant::now();
        let index = self.read_index(false).await.map_err(IpamError::from)?;
        let Some(index) = index else {
            return Ok(());
        };
        let remaining = self
            .config
            .read_deadline
            .saturating_sub(start.elapsed())
            .max(Duration::from_millis(1));
        self.raft
            .wait(Some(remaining))
            .applied_index_at_least(Some(index), "read barrier")
            .await
            .map(|_| ())
            .map_err(|e| match e {
                openraft::metrics::WaitError::Timeout(..) => IpamError::DeadlineExceeded {
                    waited_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
                },
                _ => IpamError::ShuttingDown,
            })
    }

    /// Runs a membership change on the leader, forwarding it there from any other node.
    pub(crate) async fn admin(&self, req: AdminRequest, forwarded: bool) -> Result<(), WireError> {
        let start = Instant::now();
        let deadline = start + self.config.membership_deadline;
        loop {
            match self.target() {
                Target::Local => match self.admin_local(&req, deadline).await {
                    Err(WireError::NotLeader { .. }) if !forwarded && Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    other => return other,
                },
                Target::Remote(id, addr) => {
                    if forwarded {
                        return Err(WireError::NotLeader {
                            leader: Some((id, addr)),
                        });
                    }
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    let res: Result<Result<(), WireError>, PostError> =
                        self.net.post(&addr, "/raft/admin", &req, remaining).await;
                    match res {
                        Ok(Err(WireError::NotLeader { .. } | WireError::NoLeader))
                        | Err(PostError::Connect { .. } | PostError::Status { .. }) => {
                            if Instant::now() >= deadline {
                                return Err(WireError::NoLeader);
                            }
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Ok(other) => return other,
                        Err(PostError::Isolated) => return Err(WireError::NoLeader),
                        Err(_) => {
                            return Err(WireError::DeadlineExceeded {
                                waited_ms: u64::try_from(start.elapsed().as_millis())
                                    .unwrap_or(u64::MAX),
                            })
                        }
                    }
                }
                Target::Unknown => {
                    if forwarded || !self.wait_for_leader(deadline).await {
                        return Err(WireError::NoLeader);
                    }
                }
            }
        }
    }

    async fn change(
        &self,
        changes: ChangeMembers<NodeId, Node>,
        retain: bool,
        deadline: Instant,
    ) -> Result<(), WireError> {
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let res = tokio::time::timeout(
                remaining,
                self.raft.change_membership(changes.clone(), retain),
            )
            .await;
            match res {
                Err(_) => return Err(self.membership_expired()),
                Ok(Ok(_)) => return Ok(()),
                // Another change (for example a concurrent join) is still in progress.
                Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                    ChangeMembershipError::InProgress(_),
                )))) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(Err(e)) => return Err(wire_from_write(e)),
            }
        }
    }

    /// Refuses to add a learner that answers at `addr` as another node, or refuses this
    /// cluster's token or id; one that does not answer yet is added (it may still be starting)
    /// and the catch-up wait bounds the call.
    async fn check_newcomer(&self, id: NodeId, addr: &str) -> Result<(), WireError> {
        let res: Result<NodeId, PostError> = self
            .net
            .post(addr, "/raft/hello", &(), self.config.rpc_timeout)
            .await;
        match res {
            Ok(answered) if answered == id => Ok(()),
            Ok(answered) => Err(WireError::Membership(format!(
                "the node at {addr} is node {answered}, not {id}"
            ))),
            Err(PostError::Status {
                status, message, ..
            }) if status == 401 || status == 409 => Err(WireError::Membership(format!(
                "node {id} at {addr} refused this cluster: {message}"
            ))),
            Err(e) => {
                tracing::warn!(node = id, addr, error = %e, "adding a learner that does not answer yet");
                Ok(())
            }
        }
    }

    /// The error of a membership change whose deadline passed (it may still complete).
    fn membership_expired(&self) -> WireError {
        WireError::DeadlineExceeded {
            waited_ms: u64::try_from(self.config.membership_deadline.as_millis())
                .unwrap_or(u64::MAX),
        }
    }

    fn membership(&self) -> (BTreeSet<NodeId>, BTreeSet<NodeId>) {
        let m = self.metrics.borrow();
        let mem = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = mem.voter_ids().collect();
        let nodes: BTreeSet<NodeId> = mem.nodes().map(|(id, _)| *id).collect();
        (voters, nodes)
    }

    async fn admin_local(&self, req: &AdminRequest, deadline: Instant) -> Result<(), WireError> {
        match req {
            AdminRequest::AddLearner { id, addr } => {
                let commit_at_call = self.committed_index().await;
                let known_addr = {
                    let m = self.metrics.borrow();
                    m.membership_config
                        .membership()
                        .get_node(id)
                        .map(|n| n.addr.clone())
                };
                match known_addr {
                    // A member that comes back on another address: update it in place (a
                    // plain add would keep the old address).
                    Some(old) if old != *addr => {
                        let nodes = std::collections::BTreeMap::from([(*id, Node::new(addr))]);
                        self.change(ChangeMembers::SetNodes(nodes), true, deadline)
                            .await?;
                    }
                    Some(_) => {}
                    None => {
                        if *id != self.id {
                            self.check_newcomer(*id, addr).await?;
                        }
                        // Through `change`, so a concurrent join's change in progress is
                        // waited out rather than refused.
                        let nodes = std::collections::BTreeMap::from([(*id, Node::new(addr))]);
                        self.change(ChangeMembers::AddNodes(nodes), true, deadline)
                            .await?;
                    }
                }
                if *id == self.id {
                    return Ok(());
                }
                // Caught up = matched everything committed when the call came, including the
                // membership change itself.
                let target = commit_at_call.max(self.committed_index().await);
                let remaining = deadline.saturating_duration_since(Instant::now());
                let target_id = *id;
                self.raft
                    .wait(Some(remaining))
                    .metrics(
                        move |m| {
                            m.replication
                                .as_ref()
                                .and_then(|r| r.get(&target_id))
                                .and_then(|l| l.as_ref())
                                .is_some_and(|l| l.index >= target)
                        },
                        "learner caught up",
                    )
                    .await
                    .map_err(|_| self.membership_expired())?;
                Ok(())
            }
            AdminRequest::PromoteVoter(id) => {
                let (voters, nodes) = self.membership();
                if !nodes.contains(id) {
                    return Err(WireError::UnknownNode(*id));
                }
                if voters.contains(id) {
                    return Ok(());
                }
                // Adding one id to whatever the voter set is when the change runs keeps
                // concurrent joins from overwriting each other.
                self.change(
                    ChangeMembers::AddVoterIds(BTreeSet::from([*id])),
                    false,
                    deadline,
                )
                .await
            }
            AdminRequest::ChangeVoters(ids) => {
                if ids.is_empty() {
                    return Err(WireError::Membership(
                        "the voter set cannot be empty".into(),
                    ));
                }
                let (_, nodes) = self.membership();
                if let Some(missing) = ids.iter().find(|id| !nodes.contains(id)) {
                    return Err(WireError::UnknownNode(*missing));
                }
                self.change(ChangeMembers::ReplaceAllVoters(ids.clone()), true, deadline)
                    .await
            }
            AdminRequest::RemoveMember(id) => {
                let (voters, nodes) = self.membership();
                if !nodes.contains(id) {
                    return Err(WireError::UnknownNode(*id));
                }
                if voters.contains(id) {
                    let rest: BTreeSet<NodeId> =
                        voters.iter().copied().filter(|v| v != id).collect();
                    if rest.is_empty() {
                        return Err(WireError::Membership(format!(
                            "removing node {id} would leave no voter"
                        )));
                    }
                    self.change(ChangeMembers::ReplaceAllVoters(rest), false, deadline)
                        .await?;
                }
                let (_, nodes) = self.membership();
                if nodes.contains(id) {
                    self.change(
                        ChangeMembers::RemoveNodes(BTreeSet::from([*id])),
                        false,
                        deadline,
                    )
                    .await?;
                }
                Ok(())
            }
        }
    }

    async fn committed_index(&self) -> u64 {
        match self
            .raft
            .with_raft_state(|s| s.committed.map(|l| l.index))
            .await
        {
            Ok(c) => {
                let c = c.unwrap_or(0);
                self.committed.fetch_max(c, Ordering::Relaxed);
                c
            }
            Err(_) => self.committed.load(Ordering::Relaxed),
        }
    }
}

/// Keeps `Core::committed` fresh: openraft's metrics carry no commit index.
async fn track_committed(core: std::sync::Weak<Core>, mut shutdown: watch::Receiver<bool>) {
    let Some(c) = core.upgrade() else { return };
    let mut metrics = c.metrics.clone();
    let tick = c.config.heartbeat;
    drop(c);
    let mut seen = (None, None);
    loop {
        tokio::select! {
            changed = metrics.changed() => {
                if changed.is_err() {
                    return;
                }
                // openraft 0.9.25 publishes metrics after every turn of its core loop,
                // including the turn that answers our own `with_raft_state`: reacting to each
                // publication made an idle node spin at half a core. Only an append or an
                // apply can come with a new commit index.
                let now = {
                    let m = metrics.borrow_and_update();
                    (m.last_log_index, m.last_applied.map(|l| l.index))
                };
                if now == seen {
                    continue;
                }
                seen = now;
            }
            _ = tokio::time::sleep(tick) => {}
            _ = shutdown.changed() => return,
        }
        let Some(c) = core.upgrade() else { return };
        c.committed_index().await;
        drop(c);
        // Metrics change on every apply: asking the raft core more often than this would only
        // load it under heavy writes.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Makes non-durable applies durable at least every `durable_interval`.
async fn flush_state(sm: Arc<SmShared>, mut shutdown: watch::Receiver<bool>) {
    // Checking twice per interval bounds the non-durable window to about 1.5 intervals.
    let tick = (sm.durable_interval() / 2).max(Duration::from_millis(10));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = shutdown.changed() => return,
        }
        if sm.flush_due() {
            let sm = sm.clone();
            let res = tokio::task::spawn_blocking(move || sm.make_durable()).await;
            if let Ok(Err(e)) = res {
                tracing::warn!(error = %e, "periodic state flush failed");
            }
        }
    }
}

impl Ipam {
    /// Opens the stores in `config.data_dir` and starts raft. Binds nothing: mount
    /// [`Ipam::raft_router`] on a listener that `config.advertise` reaches.
    pub async fn start(config: Config) -> Result<Ipam, StartError> {
        if config.advertise.is_empty() {
            return Err(StartError::Config("advertise address is empty".into()));
        }
        let authorization = config
            .token
            .as_deref()
            .map(crate::network::bearer)
            .transpose()
            .map_err(StartError::Config)?;
        if config.queue_capacity == 0 || config.max_ops_per_entry == 0 {
            return Err(StartError::Config(
                "queue_capacity and max_ops_per_entry must be positive".into(),
            ));
        }
        let dir = config.data_dir.clone();
        std::fs::create_dir_all(&dir).map_err(storage)?;
        check_node_id(&dir, config.id)?;

        let raft_config = openraft::Config {
            cluster_name: "raft-ipam".to_string(),
            heartbeat_interval: config.heartbeat.as_millis() as u64,
            election_timeout_min: config.election_timeout.0.as_millis() as u64,
            election_timeout_max: config.election_timeout.1.as_millis() as u64,
            install_snapshot_timeout: config.install_snapshot_timeout.as_millis() as u64,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_logs.max(1)),
            max_in_snapshot_log_to_keep: config.max_in_snapshot_log_to_keep,
            snapshot_max_chunk_size: config.snapshot_max_chunk_size.max(1024),
            // Entries hold up to ~1 MiB of commands: keep an append request well under the
            // 64 MiB body limit of `/raft/append`.
            max_payload_entries: 32,
            ..Default::default()
        };
        let raft_config = Arc::new(
            raft_config
                .validate()
                .map_err(|e| StartError::Config(e.to_string()))?,
        );

        let (closing_tx, closed_rx) = mpsc::channel::<()>(1);
        let (durable_tx, purge_limit) = watch::channel(None);
        let durable = Durable {
            every_entries: config.durable_every_entries.max(1),
            interval: config.durable_interval,
        };
        let d = dir.clone();
        let c1 = DropSignal(closing_tx.clone());
        let c2 = DropSignal(closing_tx);
        let (log, sm) = tokio::task::spawn_blocking(move || {
            let sm = StateMachineStore::open_with(&d, durable, durable_tx, Some(c1))?;
            let log = LogStore::open_with(&d.join(LOG_FILE), purge_limit, Some(c2))?;
            Ok::<_, crate::types::StorageError>((log, sm))
        })
        .await
        .map_err(storage)?
        .map_err(storage)?;
        let sm_shared = sm.shared();

        let net = Arc::new(
            NetShared::new(
                config.token.clone(),
                authorization,
                &dir,
                config.rpc_timeout,
            )
            .map_err(StartError::Storage)?,
        );
        let network = NetworkFactory { net: net.clone() };
        let raft = Raft::new(config.id, raft_config, network, log, sm)
            .await
            .map_err(|e| StartError::Storage(e.to_string()))?;

        let (queue_tx, queue_rx) = mpsc::channel(config.queue_capacity);
        let (barrier_tx, barrier_rx) = mpsc::channel(config.queue_capacity);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let core = Arc::new(Core {
            id: config.id,
            config,
            metrics: raft.metrics(),
            raft,
            net,
            sm: sm_shared.clone(),
            queue: queue_tx,
            barrier: barrier_tx,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            committed: AtomicU64::new(0),
            last_stamp: AtomicU64::new(0),
            shutdown_tx,
            closed_rx: tokio::sync::Mutex::new(Some(closed_rx)),
        });
        tokio::spawn(run_proposer(core.clone(), queue_rx, shutdown_rx.clone()));
        tokio::spawn(run_barrier(core.clone(), barrier_rx, shutdown_rx.clone()));
        tokio::spawn(track_committed(Arc::downgrade(&core), shutdown_rx.clone()));
        tokio::spawn(crate::tick::run_expiry_tick(
            Arc::downgrade(&core),
            shutdown_rx.clone(),
        ));
        tokio::spawn(flush_state(sm_shared, shutdown_rx));
        Ok(Ipam { core })
    }

    /// The `/raft/*` routes (token-checked, 64 MiB body limit) to mount on the node's listener.
    pub fn raft_router(&self) -> axum::Router {
        crate::network::router(self.core.clone())
    }

    /// Stops raft and closes the stores. Returns once the redb files are closed (or after a
    /// deadline), so the data dir can be reopened in-process. Idempotent.
    pub async fn shutdown(&self) -> Result<(), IpamError> {
        let mut closed = self.core.closed_rx.lock().await;
        let Some(mut rx) = closed.take() else {
            return Ok(());
        };
        let _ = self.core.shutdown_tx.send(true);
        self.core
            .raft
            .shutdown()
            .await
            .map_err(|e| IpamError::Internal(format!("raft shutdown: {e}")))?;
        // Closing may run the final durable commit: keep it off the async threads.
        let sm = self.core.sm.clone();
        let _ = tokio::task::spawn_blocking(move || sm.close()).await;
        // openraft's state machine worker exits after its core: wait for the stores' drop.
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(_) => Ok(()),
            Err(_) => Err(IpamError::Internal(
                "the stores were not closed within 10 s of shutdown".into(),
            )),
        }
    }

    /// This node's id.
    pub fn id(&self) -> u64 {
        self.core.id
    }

    /// Whether this node currently leads.
    pub fn is_leader(&self) -> bool {
        matches!(self.core.target(), Target::Local)
    }

    /// The cluster id recorded in the data dir (set at `init`, or adopted from the first raft
    /// RPC), if any.
    pub fn cluster_id(&self) -> Option<String> {
        self.core.net.cluster_id()
    }

    /// Fault injection: while isolated, this node's transport drops every outgoing RPC and its
    /// `/raft/*` routes refuse incoming ones.
    #[cfg(feature = "testing")]
    pub fn set_isolated(&self, isolated: bool) {
        self.core.net.set_isolated(isolated);
    }

    /// Waits until `cond` holds for [`Ipam::status`], re-checking on every metrics change.
    /// Returns the status that satisfied it, or `DeadlineExceeded` after `timeout`.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut cond: impl FnMut(&ClusterStatus) -> bool,
    ) -> Result<ClusterStatus, IpamError> {
        let start = Instant::now();
        let deadline = start + timeout;
        let mut rx = self.core.metrics.clone();
        loop {
            // The commit index is refreshed outside the metrics: read it fresh.
            self.core.committed_index().await;
            let status = self.status();
            if cond(&status) {
                return Ok(status);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(IpamError::DeadlineExceeded {
                    waited_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
                });
            }
            let step = (deadline - now).min(self.core.config.heartbeat);
            if let Ok(Err(_)) = tokio::time::timeout(step, rx.changed()).await {
                return Err(IpamError::ShuttingDown);
            }
        }
    }

    /// Proposes one command (coalesced with concurrent ones) and returns its result.
    pub async fn submit(&self, command: Command) -> Result<CommandResult, IpamError> {
        // Bad input never reaches the log.
        if let Err(e) = ipam_core::validate::check_command(&command) {
            return Err(match command {
                Command::Op(_) => IpamError::Op(e.error),
                Command::Batch(_) => IpamError::Batch(e),
            });
        }
        let mut results = self.core.propose(vec![command], false).await?;
        match results.pop() {
            Some(r) if results.is_empty() => Ok(r),
            _ => Err(IpamError::Internal("wrong number of results".into())),
        }
    }

    pub(crate) async fn submit_op(&self, op: Op) -> Result<OpOutput, IpamError> {
        op_output(self.submit(Command::Op(op)).await?)
    }

    /// Creates a pool.
    pub async fn create_pool(&self, spec: PoolSpec) -> Result<PoolInfo, IpamError> {
        match self.submit_op(Op::CreatePool(spec)).await? {
            OpOutput::PoolCreated(info) => Ok(info),
            other => Err(unexpected("a created pool", &other)),
        }
    }

    /// Deletes a pool; returns the number of allocations dropped (force).
    pub async fn delete_pool(&self, pool: &str, force: bool) -> Result<u64, IpamError> {
        let op = Op::DeletePool {
            pool: pool.to_string(),
            force,
        };
        match self.submit_op(op).await? {
            OpOutput::PoolDeleted { released } => Ok(released),
            other => Err(unexpected("a deleted pool", &other)),
        }
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
        self.allocate_lease(pool, owner, ip, labels, None).await
    }

    /// The v1 allocate: only the read-through cache hit needs it apart from leases.
    pub(crate) async fn allocate_op(
        &self,
        op: Op,
        pool: &str,
        owner: &str,
        ip: Option<IpAddr>,
    ) -> Result<(Allocation, bool), IpamError> {
        ipam_core::validate::check_op(&op)?;
        // A lease is renewed by a repeated allocate: only a permanent one may be answered
        // without a log entry.
        let hit = |a: &Allocation| ip.is_none_or(|want| want == a.ip) && a.expires_at.is_none();
        if matches!(self.cached_owner(pool, owner), Some(a) if hit(&a)) {
            // The local replica may lag or the owner may have released since: confirm behind a
            // barrier before answering from it.
            self.core.linearize().await?;
            if let Some(a) = self.cached_owner(pool, owner).filter(|a| hit(a)) {
                self.core.hits.fetch_add(1, Ordering::Relaxed);
                return Ok((a, true));
            }
        }
        self.core.misses.fetch_add(1, Ordering::Relaxed);
        match self.submit_op(op).await? {
            OpOutput::Allocated {
                allocation,
                existing,
            }
            | OpOutput::AllocatedV2 {
                allocation,
                existing,
            } => Ok((allocation, existing)),
            other => Err(unexpected("an allocation", &other)),
        }
    }

    /// The owner's allocation in the local replica, if any (errors count as a miss).
    ///
    /// Three point lookups on cached pages, on the calling task: every allocate asks this, and
    /// a `spawn_blocking` round trip per request cost more CPU than the lookup (about a tenth
    /// of a follower's CPU at 256 clients).
    fn cached_owner(&self, pool: &str, owner: &str) -> Option<Allocation> {
        let db = self.core.sm.db().ok()?;
        let rtx = redb::ReadableDatabase::begin_read(&db.db).ok()?;
        ipam_core::query::owner_allocation(&rtx, pool, owner)
            .ok()
            .flatten()
    }

    /// Releases an address, optionally fenced by generation.
    pub async fn release(
        &self,
        pool: &str,
        ip: IpAddr,
        generation: Option<u64>,
    ) -> Result<Allocation, IpamError> {
        let op = Op::Release {
            pool: pool.to_string(),
            ip,
            generation,
        };
        match self.submit_op(op).await? {
            OpOutput::Released(a) => Ok(a),
            other => Err(unexpected("a released allocation", &other)),
        }
    }

    /// Releases what `owner` holds in `pool`.
    pub async fn release_owner(&self, pool: &str, owner: &str) -> Result<Vec<IpAddr>, IpamError> {
        let op = Op::ReleaseOwner {
            pool: pool.to_string(),
            owner: owner.to_string(),
        };
        match self.submit_op(op).await? {
            OpOutput::ReleasedOwner { released } => Ok(released),
            other => Err(unexpected("released addresses", &other)),
        }
    }

    /// Applies `ops` atomically, in order.
    pub async fn batch(&self, ops: Vec<Op>) -> Result<Vec<OpOutput>, IpamError> {
        match self.submit(Command::Batch(ops)).await? {
            CommandResult::Batch(Ok(outputs)) => Ok(outputs),
            CommandResult::Batch(Err(e)) => Err(IpamError::Batch(e)),
            CommandResult::Op(_) => {
                Err(IpamError::Internal("an op result for a batch".to_string()))
            }
        }
    }

    /// Runs `f` on a read transaction of the local replica, off the async threads.
    async fn local_read<T, F>(&self, f: F) -> Result<T, IpamError>
    where
        T: Send + 'static,
        F: FnOnce(&redb::ReadTransaction) -> Result<T, IpamError> + Send + 'static,
    {
        let db = self.core.sm.db().map_err(|_| IpamError::ShuttingDown)?;
        tokio::task::spawn_blocking(move || {
            let rtx = redb::ReadableDatabase::begin_read(&db.db)
                .map_err(|e| IpamError::Internal(format!("state read: {e}")))?;
            f(&rtx)
        })
        .await
        .map_err(|e| IpamError::Internal(format!("read task: {e}")))?
    }

    pub(crate) async fn read<T, F>(&self, consistency: Consistency, f: F) -> Result<T, IpamError>
    where
        T: Send + 'static,
        F: FnOnce(&redb::ReadTransaction) -> Result<T, IpamError> + Send + 'static,
    {
        if consistency == Consistency::Linearizable {
            self.core.linearize().await?;
        }
        self.local_read(f).await
    }

    /// One pool.
    pub async fn pool(&self, name: &str, consistency: Consistency) -> Result<PoolInfo, IpamError> {
        let name = name.to_string();
        self.read(consistency, move |rtx| {
            Ok(ipam_core::query::pool(rtx, &name)?)
        })
        .await
    }

    /// Pools matching every label of `filter`, by name.
    pub async fn pools(
        &self,
        filter: &Labels,
        consistency: Consistency,
    ) -> Result<Vec<PoolInfo>, IpamError> {
        let filter = filter.clone();
        self.read(consistency, move |rtx| {
            ipam_core::query::pools(rtx, &filter).map_err(|e| IpamError::Query(e.into()))
        })
        .await
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
        let (pool, owner) = (pool.to_string(), owner.map(str::to_string));
        self.read(consistency, move |rtx| {
            Ok(ipam_core::query::allocations(
                rtx,
                &pool,
                owner.as_deref(),
                after,
                limit,
            )?)
        })
        .await
    }

    /// The pool and allocation of an address.
    pub async fn address(
        &self,
        ip: IpAddr,
        consistency: Consistency,
    ) -> Result<AddressInfo, IpamError> {
        self.read(consistency, move |rtx| {
            ipam_core::query::address(rtx, ip).map_err(|e| IpamError::Query(e.into()))
        })
        .await
    }

    /// An owner's allocations in every pool.
    pub async fn owner_allocations(
        &self,
        owner: &str,
        consistency: Consistency,
    ) -> Result<Vec<Allocation>, IpamError> {
        let owner = owner.to_string();
        self.read(consistency, move |rtx| {
            ipam_core::query::owner_allocations(rtx, &owner).map_err(|e| IpamError::Query(e.into()))
        })
        .await
    }

    /// Digest of this replica's core state (local, no barrier).
    pub async fn digest(&self) -> Result<[u8; 32], IpamError> {
        self.local_read(|rtx| ipam_core::query::digest(rtx).map_err(|e| IpamError::Query(e.into())))
            .await
    }

    /// Current status from openraft's metrics.
    pub fn status(&self) -> ClusterStatus {
        let m = self.core.metrics.borrow();
        let mem = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = mem.voter_ids().collect();
        let members = mem
            .nodes()
            .map(|(id, node)| Member {
                id: *id,
                addr: node.addr.clone(),
                role: if voters.contains(id) {
                    MemberRole::Voter
                } else {
                    MemberRole::Learner
                },
            })
            .collect();
        let applied = m.last_applied.map(|l| l.index).unwrap_or(0);
        ClusterStatus {
            id: self.core.id,
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            // Applied entries are committed, whatever the cached value says yet.
            committed_index: self.core.committed.load(Ordering::Relaxed).max(applied),
            applied_index: applied,
            initialized: !voters.is_empty(),
            members,
        }
    }

    /// Cache (hits, misses) of the allocate path since start.
    pub fn cache_stats(&self) -> (u64, u64) {
        (
            self.core.hits.load(Ordering::Relaxed),
            self.core.misses.load(Ordering::Relaxed),
        )
    }

    /// Initializes a cluster of `members` (id, addr); empty = this node alone.
    pub async fn init(&self, members: Vec<(u64, String)>) -> Result<(), IpamError> {
        let core = &self.core;
        if core
            .raft
            .is_initialized()
            .await
            .map_err(|_| IpamError::ShuttingDown)?
        {
            return Err(IpamError::AlreadyInitialized);
        }
        let nodes: std::collections::BTreeMap<NodeId, Node> = if members.is_empty() {
            [(core.id, Node::new(&core.config.advertise))].into()
        } else {
            members
                .into_iter()
                .map(|(id, addr)| (id, Node::new(addr)))
                .collect()
        };
        if !nodes.contains_key(&core.id) {
            return Err(IpamError::Membership(format!(
                "the initial members must include this node ({})",
                core.id
            )));
        }
        if core.net.cluster_id().is_none() {
            core.net
                .set_cluster_id(&new_cluster_id(core.id))
                .map_err(|e| IpamError::Internal(format!("recording the cluster id: {e}")))?;
        }
        match core.raft.initialize(nodes).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
                Err(IpamError::AlreadyInitialized)
            }
            Err(RaftError::APIError(e)) => Err(IpamError::Membership(e.to_string())),
            Err(RaftError::Fatal(_)) => Err(IpamError::ShuttingDown),
        }
    }

    /// Adds a learner and returns once it has caught up (its matched log index ≥ the leader's
    /// commit index at the call).
    pub async fn add_learner(&self, id: u64, addr: String) -> Result<(), IpamError> {
        Ok(self
            .core
            .admin(AdminRequest::AddLearner { id, addr }, false)
            .await?)
    }

    /// Promotes one learner to voter.
    pub async fn promote_voter(&self, id: u64) -> Result<(), IpamError> {
        Ok(self
            .core
            .admin(AdminRequest::PromoteVoter(id), false)
            .await?)
    }

    /// Sets the voter set; voters left out stay as learners.
    pub async fn change_voters(&self, ids: BTreeSet<u64>) -> Result<(), IpamError> {
        Ok(self
            .core
            .admin(AdminRequest::ChangeVoters(ids), false)
            .await?)
    }

    /// Removes a member (voter or learner).
    pub async fn remove_member(&self, id: u64) -> Result<(), IpamError> {
        Ok(self
            .core
            .admin(AdminRequest::RemoveMember(id), false)
            .await?)
    }
}

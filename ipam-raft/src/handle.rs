//! [`Ipam`]: the embeddable handle a VM orchestrator (or `ipam-node`) links — start,
//! shutdown, identity, and cluster set-up (init and the membership calls). Its writes are in
//! `ops`, its reads in `reads`, its status in `status`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InitializeError, RaftError};
use openraft::SnapshotPolicy;
use tokio::sync::{mpsc, watch};

use crate::clock::Stamper;
use crate::config::Config;
use crate::error::{InternalError, IpamError, StartError};
use crate::files;
use crate::proposer::Proposer;
use crate::route::Target;
use crate::shared::Shared;
use crate::storage::log::{DropSignal, LogStore};
use crate::storage::state_machine::{Durable, StateMachineStore};
use crate::tasks;
use crate::transport::client::{bearer, NetShared, NetworkFactory};
use crate::transport::rpc::AdminRequest;
use crate::transport::server::{self, ServerState};
use crate::types::{Node, NodeId, Raft};

const LOG_FILE: &str = "log.redb";
/// How long shutdown waits for openraft to drop the stores.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// What a handle holds: the node's shared state (reached through `Deref`, so `self.core.raft`
/// and friends read as before), its proposer, the cache counters and the shutdown machinery.
pub(crate) struct Core {
    pub(crate) shared: Arc<Shared>,
    pub(crate) proposer: Proposer,
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) shutdown_tx: watch::Sender<bool>,
    /// Open event watches (`Ipam::watch`).
    pub(crate) watchers: AtomicU64,
    /// Sees `None` once every redb handle is closed.
    closed_rx: tokio::sync::Mutex<Option<mpsc::Receiver<()>>>,
}

impl std::ops::Deref for Core {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.shared
    }
}

/// The embeddable node handle. Cheap to clone; every method works on any node (writes and
/// membership changes are forwarded to the leader).
///
/// The node runs until [`Ipam::shutdown`]: dropping the handles does not stop it (its
/// background tasks hold it), and only `shutdown` closes the data dir for reopening.
///
/// # Example
///
/// A one-node cluster on a temporary data dir: the raft routes go on the embedder's own
/// listener (port 0 here; `advertise` must be the address peers reach), `init` makes the node
/// its own leader, then the typed writes work as on any cluster.
///
/// ```
/// use std::collections::BTreeMap;
/// use std::time::Duration;
///
/// use ipam_core::{GatewayChoice, PoolSpec};
/// use ipam_raft::{Config, Ipam};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let advertise = listener.local_addr()?.to_string();
///
/// let ipam = Ipam::start(Config::new(1, dir.path().join("node-1"), advertise)).await?;
/// // Peers (and this node's own forwarding) reach it through these routes; an orchestrator
/// // merges them into the router of its own API.
/// let router = ipam.raft_router();
/// let server = tokio::spawn(async move { axum::serve(listener, router).await });
///
/// // No members = this node alone. Writes issued before a leader is elected retry until
/// // `write_deadline`; waiting first only makes the example's timing explicit.
/// ipam.init(Vec::new()).await?;
/// ipam.wait_for(Duration::from_secs(20), |s| s.leader == Some(1)).await?;
///
/// ipam.create_pool(PoolSpec {
///     name: "vms".to_string(),
///     cidr: "10.0.0.0/24".parse()?,
///     gateway: GatewayChoice::Default, // 10.0.0.1
///     reserved: Vec::new(),
///     labels: BTreeMap::new(),
///     description: "VM NICs".to_string(),
/// })
/// .await?;
///
/// // The owner is the idempotency key: asking again for `vm/web-1/eth0` returns the same
/// // address with `existing == true` instead of allocating a second one.
/// let (allocation, existing) = ipam
///     .allocate("vms", "vm/web-1/eth0", None, BTreeMap::new())
///     .await?;
/// assert_eq!(allocation.ip.to_string(), "10.0.0.2");
/// assert!(!existing);
///
/// // Fencing by generation: a stale release (of an address re-allocated since) is refused.
/// let released = ipam.release("vms", allocation.ip, Some(allocation.generation)).await?;
/// assert_eq!(released.owner, "vm/web-1/eth0");
///
/// // Closes the redb files; the data dir can then be reopened by a new `Ipam::start`.
/// ipam.shutdown().await?;
/// server.abort();
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Ipam {
    pub(crate) core: Arc<Core>,
    /// The idempotency key this handle's writes carry (`requests.rs`).
    pub(crate) key: Option<Arc<ipam_core::requests::KeyedRequest>>,
}

impl std::fmt::Debug for Ipam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ipam")
            .field("id", &self.core.id)
            .finish_non_exhaustive()
    }
}

impl Ipam {
    /// Opens the stores in `config.data_dir` and starts raft. Binds nothing: mount
    /// [`Ipam::raft_router`] on a listener that `config.advertise` reaches.
    ///
    /// # Errors
    ///
    /// [`StartError::NodeIdMismatch`] when the data dir was written by another node id (a
    /// reused id would corrupt raft's votes), [`StartError::Config`] for an unusable setting,
    /// and the I/O, corrupt-file and store variants when the data dir cannot be opened or
    /// recovered; none of them is worth retrying without an operator.
    pub async fn start(config: Config) -> Result<Ipam, StartError> {
        if config.advertise.is_empty() {
            return Err(StartError::Config("advertise address is empty"));
        }
        let authorization = config.token.as_deref().map(bearer).transpose()?;
        config.validate().map_err(StartError::Config)?;
        let dir = config.data_dir.clone();
        std::fs::create_dir_all(&dir).map_err(|source| StartError::Io {
            path: dir.clone(),
            source,
        })?;
        // The data dir's own entry should survive a power cut like the files in it; a parent
        // this process may not open (e.g. mode 711) must not stop the node, though.
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            if let Err(e) = files::sync_dir(parent) {
                tracing::warn!(dir = %parent.display(), error = %e, "could not fsync the data dir's parent");
            }
        }
        files::check_node_id(&config.disk, &dir, config.id)?;
        let incarnation = crate::requests::next_incarnation(&config.disk, &dir)?;

        let raft_config = openraft::Config {
            cluster_name: "raft-ipam".to_string(),
            heartbeat_interval: config.heartbeat.as_millis() as u64,
            election_timeout_min: config.election_timeout.0.as_millis() as u64,
            election_timeout_max: config.election_timeout.1.as_millis() as u64,
            install_snapshot_timeout: config.install_snapshot_timeout.as_millis() as u64,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_logs.max(1)),
            // openraft's own purge off (it never gets past `snapshot - u64::MAX`):
            // `crate::purge` applies `config.max_in_snapshot_log_to_keep` and spares the log a
            // member sent a snapshot still needs.
            max_in_snapshot_log_to_keep: u64::MAX,
            snapshot_max_chunk_size: config.snapshot_max_chunk_size.max(1024),
            // Entries hold up to ~1 MiB of commands: keep an append request well under the
            // 64 MiB body limit of `/raft/append`.
            max_payload_entries: 32,
            ..Default::default()
        };
        let raft_config = Arc::new(
            raft_config
                .validate()
                .map_err(|e| StartError::RaftConfig(Box::new(e)))?,
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
        let disk = config.disk.clone();
        let segment_bytes = config.wal_segment_bytes;
        let cache_bytes = config.state_cache_bytes;
        let (log, mut sm) = tokio::task::spawn_blocking(move || {
            let sm = StateMachineStore::open_with(
                &d,
                durable,
                durable_tx,
                Some(c1),
                disk.clone(),
                cache_bytes,
            )?;
            let log = LogStore::open_with(
                &d.join(LOG_FILE),
                purge_limit,
                Some(c2),
                &disk,
                segment_bytes,
            )?;
            // A new file's name is durable only once its directory is synced: without this a
            // power cut could lose a fresh `log.redb` whole, acknowledged entries included.
            disk.sync_dir(&d)
                .map_err(crate::storage::state_db::sm_write)?;
            Ok::<_, crate::types::StorageError>((log, sm))
        })
        .await
        .map_err(StartError::Task)?
        .map_err(|e| StartError::Storage(Box::new(e)))?;
        // This node's own appends as leader are acknowledged before their sync: the state
        // machine and the transport's commit index wait for the log's disk instead.
        log.set_own_id(config.id);
        let _ = sm.shared().log_durable.set(log.durable());
        let sm_shared = sm.shared();
        if config.traces {
            sm_shared.applies.enable();
        }

        let net = Arc::new(NetShared::new(
            config.token.clone(),
            authorization,
            &dir,
            config.disk.clone(),
            config.rpc_timeout,
            config.http_client.clone(),
            config.peer_scheme,
        )?);
        net.set_identity(&config.advertise, config.feature_level);
        net.set_log_durable(log.durable());
        let network = NetworkFactory { net: net.clone() };
        let restored_lead = restored_lead(config.id, &log).await?;
        let log_state = {
            use openraft::storage::RaftLogStorage;
            log.clone().get_log_state().await
        }
        .map_err(|e| StartError::Storage(Box::new(e)))?;
        let snapshot = sm
            .finish_interrupted_install(log_state.last_log_id, log_state.last_purged_log_id)
            .await
            .map_err(|e| StartError::Storage(Box::new(e)))?;
        log.close_hole_at_start(snapshot)
            .await
            .map_err(|e| StartError::Storage(Box::new(e)))?;
        let committed = log.committed_index();
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        log.set_stopping(shutdown_rx.clone());
        let raft = Raft::new(config.id, raft_config, network, log, sm)
            .await
            .map_err(|e| StartError::Raft(Box::new(e)))?;

        let clock = Stamper::new(config.clock.clone());
        let id = config.id;
        let shared = Arc::new(Shared {
            id,
            config,
            metrics: raft.metrics(),
            raft,
            net,
            sm: sm_shared,
            clock,
            committed,
            ids: crate::requests::RequestIds::new(id, incarnation),
            restored_lead,
        });
        let proposer = Proposer::spawn(shared.clone(), &shutdown_rx);
        tasks::spawn(&shared, &shutdown_rx);
        let core = Arc::new(Core {
            shared,
            proposer,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            shutdown_tx,
            watchers: AtomicU64::new(0),
            closed_rx: tokio::sync::Mutex::new(Some(closed_rx)),
        });
        Ok(Ipam { core, key: None })
    }

    /// The `/raft/*` routes (token-checked, 64 MiB body limit) to mount on the node's listener.
    pub fn raft_router(&self) -> axum::Router {
        server::router(ServerState {
            shared: self.core.shared.clone(),
            proposer: self.core.proposer.clone(),
            shutdown: self.core.shutdown_tx.subscribe(),
        })
    }

    /// Stops raft and closes the stores. Returns once the redb files are closed (or after a
    /// deadline), so the data dir can be reopened in-process. Idempotent.
    ///
    /// # Errors
    ///
    /// [`IpamError::Internal`] when openraft failed while stopping or the stores were still
    /// open after a deadline; the node is stopped either way, but reopening the data dir in
    /// this process may then fail on the lock.
    pub async fn shutdown(&self) -> Result<(), IpamError> {
        let mut closed = self.core.closed_rx.lock().await;
        let Some(mut rx) = closed.take() else {
            return Ok(());
        };
        let _ = self.core.shutdown_tx.send(true);
        // After a fatal error raft's shutdown fails, but the stores must still close before
        // this returns: a restart in this process must not race the old instance's files.
        let stopped = self.core.raft.shutdown().await;
        // Closing may run the final durable commit: keep it off the async threads.
        let sm = self.core.sm.clone();
        let _ = tokio::task::spawn_blocking(move || sm.close()).await;
        // openraft's state machine worker exits after its core: wait for the stores' drop.
        match tokio::time::timeout(CLOSE_WAIT, rx.recv()).await {
            Ok(_) => stopped.map_err(|e| InternalError::RaftShutdown(e).into()),
            Err(_) => Err(InternalError::CloseTimeout {
                secs: CLOSE_WAIT.as_secs(),
            }
            .into()),
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

    /// Initializes a cluster of `members` (id, addr); empty = this node alone.
    ///
    /// Call it once, on one node, when the cluster is first created; the other members learn
    /// the membership from the leader.
    ///
    /// # Errors
    ///
    /// [`IpamError::AlreadyInitialized`] on a node that already has a membership (safe to
    /// ignore when an orchestrator calls `init` on every start), [`IpamError::Membership`]
    /// when `members` does not include this node.
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
        let nodes: BTreeMap<NodeId, Node> = if members.is_empty() {
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
                .set_cluster_id(&files::new_cluster_id(core.id))
                .map_err(InternalError::ClusterId)?;
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
        self.membership_change(AdminRequest::AddLearner { id, addr })
            .await
    }

    /// Promotes one learner to voter.
    pub async fn promote_voter(&self, id: u64) -> Result<(), IpamError> {
        self.membership_change(AdminRequest::PromoteVoter(id)).await
    }

    /// Sets the voter set; voters left out stay as learners.
    pub async fn change_voters(&self, ids: BTreeSet<u64>) -> Result<(), IpamError> {
        self.membership_change(AdminRequest::ChangeVoters(ids))
            .await
    }

    /// Runs a membership change (on the leader, forwarded there if need be), then waits until
    /// this node has applied it, so that its status right after shows the change — unless
    /// the change removed this node: the leader may stop replicating to it before it applies
    /// its removal, and the wait would last the whole read deadline.
    async fn membership_change(&self, req: AdminRequest) -> Result<(), IpamError> {
        let removes_self = matches!(req, AdminRequest::RemoveMember(id) if id == self.core.id);
        self.core.admin(req, false).await?;
        if removes_self {
            return Ok(());
        }
        // The change is committed whatever this wait says: a timeout here only means this
        // node's own view may lag a moment behind, which is no reason to report a failure.
        if let Err(e) = self.linearize().await {
            tracing::debug!(error = %e, "a membership change is not applied here yet");
        }
        Ok(())
    }

    /// Removes a member (voter or learner).
    pub async fn remove_member(&self, id: u64) -> Result<(), IpamError> {
        self.membership_change(AdminRequest::RemoveMember(id)).await
    }
}

/// `(term, last log index)` when this node restarts as the leader of its recorded vote. Since
/// `storage::log::leader::restart_vote` hands openraft such a vote uncommitted, it no longer does: a
/// guard kept in case openraft ever restores a leader otherwise.
///
/// openraft 0.9 then resumes leading at once, and its read index is the larger of the commit
/// index (restored from an unsynced record, so it may lag) and this leader's first entry of the
/// term (long committed): a read barrier could pass before entries acknowledged before the
/// restart are committed again. Everything such a leader acknowledged is in its log, so its
/// read barriers wait for the last index it restarted with (`Shared::read_floor`).
async fn restored_lead(id: NodeId, log: &LogStore) -> Result<Option<(u64, u64)>, StartError> {
    use openraft::storage::RaftLogStorage;
    let mut log = log.clone();
    let storage = |e| StartError::Storage(Box::new(e));
    let vote = log.read_vote().await.map_err(storage)?;
    let Some(vote) = vote.filter(|v| v.committed && v.leader_id.node_id == id) else {
        return Ok(None);
    };
    let last = log.get_log_state().await.map_err(storage)?.last_log_id;
    Ok(last.map(|l| (vote.leader_id.term, l.index)))
}

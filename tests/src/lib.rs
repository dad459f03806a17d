//! `ipam-tests` holds raft-ipam's cross-crate integration tests: clusters of the embeddable
//! [`ipam_raft::Ipam`] handle running in one process, on real redb files in temporary
//! directories, talking HTTP over loopback, and the failures they must survive (a stopped
//! leader, a partitioned node, a learner that needs a snapshot, a node killed with SIGKILL).
//!
//! This library is the shared harness; the scenarios live in `tests/cluster/`.
//!
//! # Layout
//!
//! - [`Cluster`] / [`ClusterBuilder`] — start N nodes, stop and restart one from its files on
//!   the same port, isolate one, wait for a leader or for convergence, compare digests.
//! - [`wait_until`] — the one polling loop: a condition, a deadline, and on timeout a panic
//!   that says what was last observed. Tests never use a bare sleep as synchronisation.
//! - [`bounded`] — an overall deadline around a whole test body.
//! - [`child`] — a node in a child process, for crashes by SIGKILL and pauses by SIGSTOP.
//! - [`history`] — the history checker: every client operation with its invocation and
//!   completion time, checked for two holders of one address, lost allocations and undone
//!   releases.
//! - Helpers: [`pool_spec`], [`scan`], [`owner_map`], [`is_unavailable`],
//!   [`allocate_retrying`], [`assert_only_unavailable`].
//!
//! Multi-node tests must not overlap on a 2-core machine (elections would time out under
//! load): [`ClusterBuilder::start`] takes a process-wide lock that the [`Cluster`] holds until
//! it is dropped, so the tests of one binary run one at a time whatever `--test-threads` is.

pub mod child;
pub mod history;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipam_core::{validate, Allocation, GatewayChoice, Labels, PoolSpec};
use ipam_raft::{ClusterStatus, Config, Consistency, Ipam, IpamError, MemberRole};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Mutex, MutexGuard};
use tokio::task::JoinHandle;

/// How long the harness waits for a leader, a catch-up or a convergence before it fails.
pub const WAIT: Duration = Duration::from_secs(30);

/// Interval between two probes of a polled condition.
const POLL: Duration = Duration::from_millis(20);

/// Serialises multi-node tests inside one test binary (see the crate docs).
static SERIAL: Mutex<()> = Mutex::const_new(());

/// A change applied to every node's [`Config`] (it sees `config.id`, so it can single a
/// node out), after the harness's own defaults.
pub type ConfigTweak = Arc<dyn Fn(&mut Config) + Send + Sync>;

/// Runs `body` under an overall deadline; panics naming `limit` when it is exceeded.
pub async fn bounded<F: Future>(limit: Duration, body: F) -> F::Output {
    match tokio::time::timeout(limit, body).await {
        Ok(output) => output,
        Err(_) => panic!("test exceeded its overall deadline of {limit:?}"),
    }
}

/// Polls `probe` until it returns `Ok`, at most `timeout`. `Err` carries what was observed
/// instead; the panic on timeout shows the last one, so a failure says why.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let observed = match probe().await {
            Ok(value) => return value,
            Err(observed) => observed,
        };
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last observed: {observed}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A pool spec with the default gateway, no reservations and no labels.
pub fn pool_spec(name: &str, cidr: &str) -> PoolSpec {
    PoolSpec {
        name: name.to_owned(),
        cidr: validate::parse_cidr(cidr).expect("test CIDR parses"),
        gateway: GatewayChoice::Default,
        reserved: vec![],
        labels: Labels::new(),
        description: format!("integration test pool {name}"),
    }
}

/// Every allocation of `pool` on `ipam`, following pages to the end.
pub async fn scan(ipam: &Ipam, pool: &str, consistency: Consistency) -> Vec<Allocation> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = ipam
            .allocations(pool, None, after, 1_000, consistency)
            .await
            .expect("allocations scan");
        all.extend(page.allocations);
        match page.next {
            Some(next) => after = Some(next),
            None => return all,
        }
    }
}

/// owner → address of `allocations`; panics if an owner appears twice (an owner holds at most
/// one address per pool) or an address does (one address, one owner).
pub fn owner_map(allocations: &[Allocation]) -> BTreeMap<String, IpAddr> {
    let mut by_owner = BTreeMap::new();
    let mut addresses = BTreeSet::new();
    for allocation in allocations {
        assert!(
            addresses.insert(allocation.ip),
            "address {} appears twice in one pool",
            allocation.ip
        );
        let previous = by_owner.insert(allocation.owner.clone(), allocation.ip);
        assert!(
            previous.is_none(),
            "owner {} holds two addresses in pool {}: {:?} and {}",
            allocation.owner,
            allocation.pool,
            previous,
            allocation.ip
        );
    }
    by_owner
}

/// Errors a caller must expect while the cluster has no usable leader: the write was not
/// acknowledged and may be retried (allocation is idempotent by owner).
pub fn is_unavailable(error: &IpamError) -> bool {
    matches!(
        error,
        IpamError::NoLeader | IpamError::DeadlineExceeded { .. } | IpamError::Overloaded
    )
}

/// Allocates for `owner` on `ipam`, retrying every cluster-level error until `timeout`, and
/// returns the acknowledged allocation with the errors it retried through (for the caller to
/// judge: see [`assert_only_unavailable`]). A domain error (`IpamError::Op`) fails at once.
/// Retrying the same owner is safe: a write that failed but committed anyway comes back as the
/// owner's existing allocation.
pub async fn allocate_retrying(
    ipam: &Ipam,
    pool: &str,
    owner: &str,
    timeout: Duration,
) -> (Allocation, Vec<IpamError>) {
    let deadline = Instant::now() + timeout;
    let mut retried = Vec::new();
    loop {
        match ipam.allocate(pool, owner, None, Labels::new()).await {
            Ok((allocation, _existing)) => return (allocation, retried),
            Err(error @ IpamError::Op(_)) => panic!("allocate {owner} in {pool}: {error:?}"),
            Err(error) => retried.push(error),
        }
        if Instant::now() >= deadline {
            panic!(
                "no allocation for {owner} in {pool} acknowledged within {timeout:?}: {retried:?}"
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Asserts that every error in `errors` is one a healthy node may answer while the cluster
/// has no usable leader ([`is_unavailable`]).
pub fn assert_only_unavailable(context: &str, errors: &[IpamError]) {
    let wrong: Vec<_> = errors.iter().filter(|e| !is_unavailable(e)).collect();
    assert!(
        wrong.is_empty(),
        "{context}: a node that is up answered errors other than NoLeader, DeadlineExceeded \
         or Overloaded: {wrong:?}"
    );
}

/// A node that is running: its handle and the HTTP server carrying its `/raft/*` routes.
struct Running {
    ipam: Ipam,
    stop_server: oneshot::Sender<()>,
    server: JoinHandle<std::io::Result<()>>,
}

/// One node of the cluster, running or stopped. Its address and data dir outlive a stop, so
/// a restart comes back on the same port with the same files.
struct Slot {
    addr: SocketAddr,
    data_dir: PathBuf,
    running: Option<Running>,
    isolated: bool,
}

/// Builds a [`Cluster`].
pub struct ClusterBuilder {
    voters: u64,
    tweak: ConfigTweak,
}

impl ClusterBuilder {
    /// Applies `tweak` to every node's config (initial nodes, later ones and restarts).
    pub fn config(mut self, tweak: impl Fn(&mut Config) + Send + Sync + 'static) -> Self {
        self.tweak = Arc::new(tweak);
        self
    }

    /// Starts nodes `1..=voters`, initialises them as one cluster of voters through node 1, and
    /// waits until they agree on a leader. Waits for any other multi-node test of this binary
    /// to finish first.
    pub async fn start(self) -> Cluster {
        let serial = SERIAL.lock().await;
        let root = tempfile::Builder::new()
            .prefix("ipam-tests-")
            .tempdir()
            .expect("temp dir");
        let mut cluster = Cluster {
            slots: BTreeMap::new(),
            tweak: self.tweak,
            root,
            _serial: serial,
        };
        for id in 1..=self.voters {
            cluster.add_node(id).await;
        }
        // Zero voters: an empty cluster whose nodes come from elsewhere (`adopt_stopped`).
        if self.voters > 0 {
            let members = (1..=self.voters).map(|id| (id, cluster.addr(id))).collect();
            cluster.ipam(1).init(members).await.expect("init cluster");
            cluster.wait_leader().await;
        }
        cluster
    }
}

/// N nodes of raft-ipam in this process, each with its own data dir and loopback listener.
pub struct Cluster {
    slots: BTreeMap<u64, Slot>,
    tweak: ConfigTweak,
    root: tempfile::TempDir,
    _serial: MutexGuard<'static, ()>,
}

impl Cluster {
    /// A cluster of `voters` nodes with ids `1..=voters`, election timeout 500–1000 ms and
    /// heartbeat 100 ms (the config defaults), unless a tweak says otherwise.
    pub fn builder(voters: u64) -> ClusterBuilder {
        ClusterBuilder {
            voters,
            tweak: Arc::new(|_| {}),
        }
    }

    /// The config node `id` starts with (also on restart).
    fn config(&self, id: u64, addr: SocketAddr, data_dir: PathBuf) -> Config {
        let mut config = Config::new(id, data_dir, addr.to_string());
        config.heartbeat = Duration::from_millis(100);
        config.election_timeout = (Duration::from_millis(500), Duration::from_millis(1000));
        (self.tweak)(&mut config);
        config
    }

    /// Starts a new, empty node `id` on a fresh port. It is not a member of anything until
    /// added (`add_learner`) or initialised. Returns its advertised address.
    pub async fn add_node(&mut self, id: u64) -> String {
        assert!(!self.slots.contains_key(&id), "node {id} exists already");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let data_dir = self.root.path().join(format!("node-{id}"));
        std::fs::create_dir_all(&data_dir).expect("create data dir");
        let running = self.launch(id, listener, data_dir.clone(), false).await;
        self.slots.insert(
            id,
            Slot {
                addr,
                data_dir,
                running: Some(running),
                isolated: false,
            },
        );
        addr.to_string()
    }

    /// Starts the node on a bound listener: bind first, then start, so the advertised
    /// address is the real one.
    /// With `isolated`, the node is cut off before it serves anything, so what it holds comes
    /// from its own files only.
    async fn launch(
        &self,
        id: u64,
        listener: TcpListener,
        data_dir: PathBuf,
        isolated: bool,
    ) -> Running {
        let addr = listener.local_addr().expect("local addr");
        let config = self.config(id, addr, data_dir);
        let ipam = Ipam::start(config)
            .await
            .unwrap_or_else(|e| panic!("start node {id}: {e}"));
        ipam.set_isolated(isolated);
        let router = ipam.raft_router();
        let (stop_server, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        Running {
            ipam,
            stop_server,
            server,
        }
    }

    /// The handle of running node `id`.
    pub fn ipam(&self, id: u64) -> &Ipam {
        &self
            .slots
            .get(&id)
            .and_then(|slot| slot.running.as_ref())
            .unwrap_or_else(|| panic!("node {id} is not running"))
            .ipam
    }

    /// The `host:port` node `id` advertises (kept across restarts).
    pub fn addr(&self, id: u64) -> String {
        self.slots[&id].addr.to_string()
    }

    /// A fresh directory inside the cluster's temporary directory (for a child node's data).
    pub fn scratch_dir(&self, name: &str) -> PathBuf {
        let dir = self.root.path().join(name);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        dir
    }

    /// The data dir of node `id` (kept across restarts).
    pub fn data_dir(&self, id: u64) -> &Path {
        &self.slots[&id].data_dir
    }

    /// Ids of the running nodes.
    pub fn running(&self) -> Vec<u64> {
        self.slots
            .iter()
            .filter(|(_, slot)| slot.running.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    /// Ids of the running nodes that are not isolated: the ones expected to agree.
    pub fn reachable(&self) -> Vec<u64> {
        self.slots
            .iter()
            .filter(|(_, slot)| slot.running.is_some() && !slot.isolated)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Stops node `id` with `shutdown()` and stops its server; its files stay. Returns its
    /// last status (as of the shutdown).
    pub async fn stop(&mut self, id: u64) -> ClusterStatus {
        let slot = self.slots.get_mut(&id).expect("known node");
        let running = slot
            .running
            .take()
            .unwrap_or_else(|| panic!("node {id} is not running"));
        slot.isolated = false;
        running
            .ipam
            .shutdown()
            .await
            .unwrap_or_else(|e| panic!("shutdown node {id}: {e}"));
        // Graceful: connections from peers are closed, so nothing reaches the stopped node.
        let _ = running.stop_server.send(());
        let mut server = running.server;
        match tokio::time::timeout(Duration::from_secs(5), &mut server).await {
            Ok(joined) => joined
                .expect("server task")
                .unwrap_or_else(|e| panic!("server of node {id}: {e}")),
            Err(_) => server.abort(),
        }
        running.ipam.status()
    }

    /// Takes over node `id` that ran elsewhere (a killed child process) as a stopped node of
    /// this cluster: [`Cluster::restart`] then starts it here from `data_dir` on `addr`.
    pub fn adopt_stopped(&mut self, id: u64, addr: &str, data_dir: &Path) {
        assert!(!self.slots.contains_key(&id), "node {id} exists already");
        let slot = Slot {
            addr: addr.parse().expect("a socket address"),
            data_dir: data_dir.to_owned(),
            running: None,
            isolated: false,
        };
        self.slots.insert(id, slot);
    }

    /// Restarts stopped node `id` from its data dir on the same address.
    pub async fn restart(&mut self, id: u64) {
        self.relaunch(id, false).await
    }

    /// Restarts stopped node `id` like [`Cluster::restart`], but cut off from its peers from
    /// the start (heal it with [`Cluster::isolate`]): until then its state is what it
    /// recovered from its own files.
    pub async fn restart_isolated(&mut self, id: u64) {
        self.relaunch(id, true).await
    }

    /// Restarts stopped node `id` from its data dir on a new port (its peers still know the
    /// old address until told). Returns the new address.
    pub async fn restart_on_new_port(&mut self, id: u64) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        self.start_stopped(id, listener, false).await;
        self.slots.get_mut(&id).expect("known node").addr = addr;
        addr.to_string()
    }

    async fn relaunch(&mut self, id: u64, isolated: bool) {
        let addr = self.slots[&id].addr;
        // The port was ours a moment ago; rebinding can fail briefly if another process
        // raced for it, so retry under a deadline rather than once.
        let listener = wait_until(&format!("rebinding {addr}"), WAIT, || async {
            TcpListener::bind(addr).await.map_err(|e| e.to_string())
        })
        .await;
        self.start_stopped(id, listener, isolated).await
    }

    async fn start_stopped(&mut self, id: u64, listener: TcpListener, isolated: bool) {
        let slot = &self.slots[&id];
        assert!(slot.running.is_none(), "node {id} is running");
        let data_dir = slot.data_dir.clone();
        let running = self.launch(id, listener, data_dir, isolated).await;
        let slot = self.slots.get_mut(&id).expect("known node");
        slot.running = Some(running);
        slot.isolated = isolated;
    }

    /// Cuts node `id` off (`true`) from every peer or heals it (`false`).
    pub fn isolate(&mut self, id: u64, isolated: bool) {
        self.ipam(id).set_isolated(isolated);
        self.slots.get_mut(&id).expect("known node").isolated = isolated;
    }

    /// Statuses of the reachable nodes.
    pub fn statuses(&self) -> Vec<ClusterStatus> {
        self.reachable()
            .into_iter()
            .map(|id| self.ipam(id).status())
            .collect()
    }

    /// Waits until every reachable node names the same leader, in the same term, and that
    /// leader is reachable and considers itself leader. Returns its id.
    pub async fn wait_leader(&self) -> u64 {
        self.wait_leader_where("an agreed leader", |_| true).await
    }

    /// Waits for the leader and creates pool `name` (`cidr`) through it; returns the leader.
    pub async fn leader_with_pool(&self, name: &str, cidr: &str) -> u64 {
        let leader = self.wait_leader().await;
        self.ipam(leader)
            .create_pool(pool_spec(name, cidr))
            .await
            .expect("create pool");
        leader
    }

    /// Like [`Cluster::wait_leader`], for a leader other than `old`.
    pub async fn wait_new_leader(&self, old: u64) -> u64 {
        self.wait_leader_where(&format!("a leader other than {old}"), |id| id != old)
            .await
    }

    async fn wait_leader_where(&self, what: &str, accept: impl Fn(u64) -> bool) -> u64 {
        wait_until(what, WAIT, || async {
            let statuses = self.statuses();
            let leader = statuses[0].leader;
            let agreed = statuses
                .iter()
                .all(|s| s.leader == leader && s.term == statuses[0].term);
            match leader {
                Some(id) if agreed && accept(id) && self.reachable().contains(&id) => Ok(id),
                _ => Err(format!("{statuses:?}")),
            }
        })
        .await
    }

    /// Waits until every reachable node lists node `id` with `role`; `None` means not a member
    /// (then `id` itself is not asked: a removed node need not learn of its removal).
    pub async fn wait_role(&self, id: u64, role: Option<MemberRole>) {
        wait_until(&format!("node {id} to be {role:?}"), WAIT, || async {
            let statuses: Vec<_> = self
                .statuses()
                .into_iter()
                .filter(|s| role.is_some() || s.id != id)
                .collect();
            let agreed = statuses
                .iter()
                .all(|s| s.members.iter().find(|m| m.id == id).map(|m| m.role) == role);
            if agreed {
                Ok(())
            } else {
                Err(format!("{statuses:?}"))
            }
        })
        .await
    }

    /// Waits until node `id` has applied at least `index`.
    pub async fn wait_applied(&self, id: u64, index: u64) {
        wait_until(
            &format!("node {id} to apply index {index}"),
            WAIT,
            || async {
                let status = self.ipam(id).status();
                if status.applied_index >= index {
                    Ok(())
                } else {
                    Err(format!("{status:?}"))
                }
            },
        )
        .await
    }

    /// Waits until the reachable nodes agree on a leader whose whole log is committed and
    /// applied on every one of them (for a leader in a child process: everything they know
    /// committed), then asserts that their state digests are equal and
    /// returns the digest. Call it when no write is in flight.
    pub async fn converge(&self) -> [u8; 32] {
        wait_until(
            "the reachable nodes to apply the whole log",
            WAIT,
            || async {
                let statuses = self.statuses();
                let Some(leader) = statuses[0].leader else {
                    return Err(format!("no leader: {statuses:?}"));
                };
                let agreed = statuses.iter().all(|s| s.leader == Some(leader));
                let done = match statuses.iter().find(|s| s.id == leader) {
                    // The leader's whole log, committed and applied everywhere.
                    Some(l) => {
                        let target = l.last_log_index;
                        l.committed_index >= target
                            && statuses.iter().all(|s| s.applied_index >= target)
                    }
                    // The leader runs elsewhere (a child process), so its log is not visible
                    // here: every node here holds the same log, all of it committed and
                    // applied. (Whatever the leader acknowledged is on one of them at least,
                    // so on all of them once they agree.)
                    None => statuses.iter().all(|s| {
                        s.last_log_index == statuses[0].last_log_index
                            && s.committed_index >= s.last_log_index
                            && s.applied_index >= s.last_log_index
                    }),
                };
                let done = agreed && done;
                if done {
                    Ok(())
                } else {
                    Err(format!("{statuses:?}"))
                }
            },
        )
        .await;
        let mut digests = BTreeMap::new();
        for id in self.reachable() {
            let digest = self.ipam(id).digest().await.expect("digest");
            digests.insert(id, digest);
        }
        let first = *digests.values().next().expect("a reachable node");
        assert!(
            digests.values().all(|d| *d == first),
            "replicas diverge after applying the same log: {:?}",
            digests
                .iter()
                .map(|(id, d)| (id, hex(d)))
                .collect::<Vec<_>>()
        );
        first
    }

    /// Asserts that every reachable node's replica holds each `(owner, ip)` of `acked` in
    /// `pool` (a local scan; call after [`Cluster::converge`]), and that no address or owner
    /// is doubled. Returns the number of allocations on the replicas.
    pub async fn assert_holds(&self, pool: &str, acked: &BTreeMap<String, IpAddr>) -> usize {
        let mut count = None;
        for id in self.reachable() {
            let held = owner_map(&scan(self.ipam(id), pool, Consistency::Local).await);
            for (owner, ip) in acked {
                assert_eq!(
                    held.get(owner),
                    Some(ip),
                    "node {id} lost acknowledged allocation {owner} -> {ip}"
                );
            }
            let n = *count.get_or_insert(held.len());
            assert_eq!(
                n,
                held.len(),
                "node {id} holds another number of allocations"
            );
        }
        count.unwrap_or(0)
    }

    /// The reachable nodes other than `leader`.
    pub fn followers(&self, leader: u64) -> Vec<u64> {
        self.reachable()
            .into_iter()
            .filter(|id| *id != leader)
            .collect()
    }

    /// Allocates `count` owners `{prefix}-{i}` in `pool` concurrently (one task each), spread
    /// round-robin over `nodes`. Asserts every one is acknowledged as a new allocation for its
    /// owner and that no address is acknowledged twice. Returns owner → address.
    ///
    /// An attempt that ends in unavailability (a deadline missed on a loaded machine, an
    /// election) is retried for the same owner, and only such errors are accepted; a retried
    /// owner may then legitimately get its allocation back as `existing`.
    pub async fn allocate_many(
        &self,
        nodes: &[u64],
        pool: &str,
        prefix: &str,
        count: usize,
    ) -> BTreeMap<String, IpAddr> {
        let tasks: Vec<_> = (0..count)
            .map(|i| {
                let ipam = self.ipam(nodes[i % nodes.len()]).clone();
                let pool = pool.to_owned();
                let owner = format!("{prefix}-{i}");
                tokio::spawn(async move {
                    match ipam.allocate(&pool, &owner, None, Labels::new()).await {
                        Ok((allocation, existing)) => (owner, allocation, existing, vec![]),
                        Err(error) if is_unavailable(&error) => {
                            let (allocation, mut retried) =
                                allocate_retrying(&ipam, &pool, &owner, WAIT).await;
                            retried.insert(0, error);
                            (owner, allocation, false, retried)
                        }
                        Err(error) => panic!("allocate {owner} in {pool}: {error:?}"),
                    }
                })
            })
            .collect();
        let mut acked = BTreeMap::new();
        let mut addresses = BTreeSet::new();
        let mut retried = Vec::new();
        for task in futures::future::join_all(tasks).await {
            let (owner, allocation, existing, errors) = task.expect("allocation task");
            assert!(!existing, "{owner} is new, yet got an existing allocation");
            assert_eq!(allocation.owner, owner);
            assert_eq!(allocation.pool, pool);
            assert!(
                addresses.insert(allocation.ip),
                "{} acknowledged to two owners",
                allocation.ip
            );
            acked.insert(owner, allocation.ip);
            retried.extend(errors);
        }
        assert_only_unavailable(&format!("allocating {prefix}-*"), &retried);
        if !retried.is_empty() {
            eprintln!(
                "allocate_many({prefix}): {} attempts retried: {:?}",
                retried.len(),
                &retried[..retried.len().min(5)]
            );
        }
        acked
    }

    /// Stops every running node cleanly, checking that shutdown succeeds.
    pub async fn shutdown(mut self) {
        for id in self.running() {
            self.stop(id).await;
        }
    }
}

/// Hex rendering of a digest for failure messages.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

//! Writers on every node allocate and release without pause while the leader or a follower is
//! cut off and healed, round after round. Afterwards every replica holds exactly what the writers were
//! last told: each acknowledged allocation that was not released, at its address, and nothing
//! released.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ipam_raft::{Ipam, IpamError};
use ipam_tests::history::{reader, History, Op};
use ipam_tests::{allocate_retrying, assert_only_unavailable, bounded, wait_until, Cluster, WAIT};

const POOL: &str = "vms";
const WRITERS_PER_NODE: usize = 2;
const ROUNDS: usize = 3;
/// Acknowledged operations between two steps of the schedule.
const STEP: usize = 30;

/// What one writer was told: owners it holds (and where), and the errors it retried through.
pub(crate) struct Outcome {
    pub(crate) held: BTreeMap<String, IpAddr>,
    pub(crate) errors: Vec<IpamError>,
}

/// Allocates fresh owners until `stop`, releasing every third one it got on the first try
/// (an owner retried after an error could still be allocated later by the earlier attempt,
/// which the contract allows, so only those are released).
pub(crate) async fn writer(
    ipam: Ipam,
    name: String,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    history: Arc<History>,
) -> Outcome {
    let mut outcome = Outcome {
        held: BTreeMap::new(),
        errors: Vec::new(),
    };
    let mut k = 0;
    while !stop.load(Ordering::Relaxed) {
        let owner = format!("{name}-{k}");
        k += 1;
        let invoked = std::time::Instant::now();
        let (allocation, retried) = allocate_retrying(&ipam, POOL, &owner, WAIT).await;
        assert_eq!(allocation.owner, owner);
        history.record(
            invoked,
            Op::Allocated {
                owner: owner.clone(),
                ip: allocation.ip,
                failed_attempts: retried.len(),
            },
        );
        let first_try = retried.is_empty();
        outcome.errors.extend(retried);
        if first_try && k % 3 == 0 {
            let invoked = std::time::Instant::now();
            release_retrying(&ipam, &owner, &mut outcome.errors).await;
            history.record(
                invoked,
                Op::Release {
                    owner: owner.clone(),
                    acked: true,
                },
            );
        } else {
            outcome.held.insert(owner, allocation.ip);
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
    outcome
}

/// Releases what `owner` holds, retrying unavailability; idempotent, so a retry after a
/// release that applied anyway finds nothing left.
async fn release_retrying(ipam: &Ipam, owner: &str, errors: &mut Vec<IpamError>) {
    let seen = std::sync::Mutex::new(std::mem::take(errors));
    let seen_ref = &seen;
    wait_until(&format!("a release of {owner}"), WAIT, || async move {
        match ipam.release_owner(POOL, owner).await {
            Ok(_) => Ok(()),
            Err(error @ IpamError::Op(_)) => panic!("release {owner}: {error:?}"),
            Err(error) => {
                let observed = format!("{error:?}");
                seen_ref.lock().unwrap().push(error);
                Err(observed)
            }
        }
    })
    .await;
    *errors = seen.into_inner().unwrap();
}

/// Writers on every running node (`per_node` each) and a reader, recording one history,
/// from [`Workload::start`] until [`Workload::finish`] checks what they were told.
pub(crate) struct Workload {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    history: Arc<History>,
    writers: Vec<tokio::task::JoinHandle<Outcome>>,
    reads: tokio::task::JoinHandle<()>,
}

impl Workload {
    pub(crate) fn start(cluster: &Cluster, per_node: usize) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let history = Arc::new(History::new());
        let mut writers = Vec::new();
        for id in cluster.running() {
            for w in 0..per_node {
                writers.push(tokio::spawn(writer(
                    cluster.ipam(id).clone(),
                    format!("n{id}w{w}"),
                    stop.clone(),
                    done.clone(),
                    history.clone(),
                )));
            }
        }
        let nodes = cluster
            .running()
            .iter()
            .map(|&id| cluster.ipam(id).clone())
            .collect();
        let reads = tokio::spawn(reader(nodes, POOL.into(), history.clone(), stop.clone()));
        Workload {
            stop,
            done,
            history,
            writers,
            reads,
        }
    }

    /// Waits until the writers have acknowledged `n` more operations.
    pub(crate) async fn step(&self, n: usize) {
        let target = self.done.load(Ordering::Relaxed) + n;
        wait_until("the writers to make progress", WAIT, || async {
            match self.done.load(Ordering::Relaxed) {
                d if d >= target => Ok(()),
                d => Err(format!("{d} of {target} operations")),
            }
        })
        .await
    }

    /// Stops the writers and the reader, then checks: only unavailability was retried
    /// (`what` names the disruption), the history has no anomaly, and once the replicas
    /// converge each holds exactly what the writers hold — nothing released came back, nothing
    /// is missing.
    pub(crate) async fn finish(self, cluster: &mut Cluster, what: &str) {
        self.stop.store(true, Ordering::Relaxed);
        self.reads.await.expect("reader task");
        let mut held = BTreeMap::new();
        let mut errors = Vec::new();
        for joined in futures::future::join_all(self.writers).await {
            let outcome = joined.expect("writer task");
            held.extend(outcome.held);
            errors.extend(outcome.errors);
        }
        eprintln!(
            "{} operations, {} allocations held, {} errors retried",
            self.done.load(Ordering::Relaxed),
            held.len(),
            errors.len()
        );
        assert_only_unavailable(what, &errors);
        let summary = self
            .history
            .check()
            .unwrap_or_else(|p| panic!("history check: {p:#?}"));
        eprintln!("history: {summary:?}");
        cluster.converge().await;
        assert_eq!(cluster.assert_holds(POOL, &held).await, held.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_survive_repeated_isolation_of_leader_and_follower() {
    bounded(Duration::from_secs(150), async {
        let mut cluster = Cluster::builder(3)
            .config(|c| c.write_deadline = Duration::from_secs(2))
            .start()
            .await;
        cluster.leader_with_pool(POOL, "10.0.0.0/16").await;
        let work = Workload::start(&cluster, WRITERS_PER_NODE);
        work.step(STEP).await;
        // Cut off the leader, then a follower, then the leader again.
        for round in 0..ROUNDS {
            let leader = cluster.wait_leader().await;
            let cut = if round % 2 == 0 {
                leader
            } else {
                cluster.followers(leader)[0]
            };
            cluster.isolate(cut, true);
            if cut == leader {
                cluster.wait_new_leader(leader).await;
            }
            work.step(STEP).await;
            cluster.isolate(cut, false);
            cluster.wait_leader().await;
            work.step(STEP).await;
        }
        work.finish(&mut cluster, "writers during leader changes")
            .await;
        cluster.shutdown().await;
    })
    .await
}

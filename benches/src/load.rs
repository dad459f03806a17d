//! The load: N concurrent clients allocating for fresh owners, until a deadline or a count.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ipam_client::types::{AllocateRequest, Allocation, BatchOp};
use ipam_client::{Client, ClientError};

/// What each client does in a loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// One `POST .../allocations` per request, each for a fresh owner.
    Allocate,
    /// Allocate for fresh owners; once a client holds `--hold` addresses, release its oldest
    /// (fenced by generation) after each allocation.
    Mixed,
    /// `POST /api/v1/batch` of `--batch-size` allocate ops, each for a fresh owner.
    Batch,
}

/// When a run stops.
#[derive(Clone, Copy, Debug)]
pub enum Stop {
    /// After this long (requests in flight finish).
    Duration(Duration),
    /// After this many allocations in total.
    Count(u64),
}

/// One run's parameters.
#[derive(Clone, Debug)]
pub struct Load {
    /// What clients do.
    pub mode: Mode,
    /// Concurrent clients.
    pub clients: usize,
    /// Pool to allocate in.
    pub pool: String,
    /// When to stop.
    pub stop: Stop,
    /// Ops per batch request.
    pub batch_size: usize,
    /// Addresses a `mixed` client keeps before releasing its oldest.
    pub hold: usize,
    /// Prefix that keeps owners of different runs apart.
    pub owner_prefix: String,
}

/// What a run did.
pub struct Outcome {
    /// Wall time from the first request to the last answer.
    pub elapsed: Duration,
    /// Successful HTTP requests.
    pub requests: u64,
    /// Allocations acknowledged (201 or 200).
    pub allocations: u64,
    /// Releases acknowledged.
    pub releases: u64,
    /// Latency of every successful request, in microseconds.
    pub latency: Histogram<u64>,
    /// Failed requests by error code (`unreachable`, `timeout`, `decode` for transport ones).
    pub errors: BTreeMap<String, u64>,
    /// Allocations acknowledged and not released since: what every node must hold.
    pub live: Vec<Allocation>,
    /// Owners whose state is unknown (a write that may or may not have applied).
    pub uncertain: Vec<String>,
}

struct Worker {
    client: Client,
    load: Arc<Load>,
    id: usize,
    seq: u64,
    latency: Histogram<u64>,
    requests: u64,
    allocations: u64,
    releases: u64,
    errors: BTreeMap<String, u64>,
    held: VecDeque<Allocation>,
    uncertain: Vec<String>,
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 10 minutes at 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

impl Worker {
    fn owner(&mut self) -> String {
        self.seq += 1;
        format!("{}-c{}-{}", self.load.owner_prefix, self.id, self.seq)
    }

    fn record(&mut self, started: Instant) {
        let micros = started.elapsed().as_micros().clamp(1, 600_000_000) as u64;
        self.latency.saturating_record(micros);
        self.requests += 1;
    }

    fn failed(&mut self, err: &ClientError, owners: &[String]) {
        let code = match err {
            ClientError::Api { code, .. } => code.clone(),
            ClientError::Unreachable { .. } => "unreachable".into(),
            ClientError::Timeout { .. } => "timeout".into(),
            ClientError::Decode { .. } => "decode".into(),
            _ => "other".into(),
        };
        *self.errors.entry(code).or_default() += 1;
        if err.may_have_committed() {
            self.uncertain.extend_from_slice(owners);
        }
    }

    async fn run(mut self, remaining: Arc<AtomicI64>, deadline: Option<Instant>) -> Worker {
        loop {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            let want = match self.load.mode {
                Mode::Batch => self.load.batch_size as i64,
                Mode::Allocate | Mode::Mixed => 1,
            };
            let before = remaining.fetch_sub(want, Ordering::Relaxed);
            if before <= 0 {
                break;
            }
            let n = want.min(before) as usize;
            match self.load.mode {
                Mode::Allocate => self.allocate().await,
                Mode::Mixed => {
                    self.allocate().await;
                    if self.held.len() > self.load.hold {
                        self.release_oldest().await;
                    }
                }
                Mode::Batch => self.batch(n).await,
            }
        }
        self
    }

    async fn allocate(&mut self) {
        let owner = self.owner();
        let req = AllocateRequest {
            owner: owner.clone(),
            ..Default::default()
        };
        let started = Instant::now();
        match self.client.allocate(&self.load.pool, &req).await {
            Ok((allocation, _)) => {
                self.record(started);
                self.allocations += 1;
                self.held.push_back(allocation);
            }
            Err(e) => self.failed(&e, &[owner]),
        }
    }

    async fn release_oldest(&mut self) {
        let Some(oldest) = self.held.pop_front() else {
            return;
        };
        let started = Instant::now();
        match self
            .client
            .release(&self.load.pool, &oldest.ip, Some(oldest.generation))
            .await
        {
            Ok(()) => {
                self.record(started);
                self.releases += 1;
            }
            Err(e) => {
                // Not released (or unknown): it stays what the nodes should hold, unless the
                // outcome is unknown.
                self.failed(&e, std::slice::from_ref(&oldest.owner));
                if !e.may_have_committed() {
                    self.held.push_front(oldest);
                }
            }
        }
    }

    async fn batch(&mut self, n: usize) {
        let owners: Vec<String> = (0..n).map(|_| self.owner()).collect();
        let ops = owners
            .iter()
            .map(|owner| BatchOp::Allocate {
                pool: self.load.pool.clone(),
                owner: owner.clone(),
                ip: None,
                labels: Default::default(),
            })
            .collect();
        let started = Instant::now();
        match self.client.batch(ops).await {
            Ok(resp) => {
                self.record(started);
                for result in resp.results {
                    match serde_json::from_value::<Allocation>(result) {
                        Ok(a) => {
                            self.allocations += 1;
                            self.held.push_back(a);
                        }
                        Err(_) => *self.errors.entry("decode".into()).or_default() += 1,
                    }
                }
            }
            Err(e) => self.failed(&e, &owners),
        }
    }
}

/// Runs `load` with client `i` talking to `clients[i % clients.len()]`.
pub async fn run(load: Load, clients: &[Client]) -> Outcome {
    let load = Arc::new(load);
    let (remaining, deadline) = match load.stop {
        Stop::Count(n) => (i64::try_from(n).unwrap_or(i64::MAX), None),
        Stop::Duration(d) => (i64::MAX, Some(Instant::now() + d)),
    };
    let remaining = Arc::new(AtomicI64::new(remaining));
    let started = Instant::now();
    let tasks: Vec<_> = (0..load.clients)
        .map(|id| {
            let worker = Worker {
                client: clients[id % clients.len()].clone(),
                load: load.clone(),
                id,
                seq: 0,
                latency: histogram(),
                requests: 0,
                allocations: 0,
                releases: 0,
                errors: BTreeMap::new(),
                held: VecDeque::new(),
                uncertain: Vec::new(),
            };
            tokio::spawn(worker.run(remaining.clone(), deadline))
        })
        .collect();
    let mut outcome = Outcome {
        elapsed: Duration::ZERO,
        requests: 0,
        allocations: 0,
        releases: 0,
        latency: histogram(),
        errors: BTreeMap::new(),
        live: Vec::new(),
        uncertain: Vec::new(),
    };
    for task in tasks {
        match task.await {
            Ok(w) => {
                outcome.requests += w.requests;
                outcome.allocations += w.allocations;
                outcome.releases += w.releases;
                // Same bounds on both sides, so adding cannot fail.
                let _ = outcome.latency.add(&w.latency);
                for (code, n) in w.errors {
                    *outcome.errors.entry(code).or_default() += n;
                }
                outcome.live.extend(w.held);
                outcome.uncertain.extend(w.uncertain);
            }
            Err(e) => *outcome.errors.entry(format!("panic: {e}")).or_default() += 1,
        }
    }
    outcome.elapsed = started.elapsed();
    outcome
}

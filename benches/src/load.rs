//! One load run: `clients` tasks sending requests as fast as their answers come back, until
//! the duration has passed or the request count is reached, each recording the latency of
//! every request it sent and every allocation acknowledged to it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use ipam_client::types::{AllocateRequest, Allocation, BatchOp};
use ipam_client::{Client, ClientError};

/// What each client sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `POST /pools/{pool}/allocations` for a fresh owner, again and again.
    Allocate,
    /// Allocate for a fresh owner, then release that address (fenced by its generation).
    Mixed,
    /// `POST /batch` of `--batch-size` allocations for fresh owners.
    Batch,
    /// `GET /healthz` and nothing else: no raft, no storage. The ceiling of the HTTP stack
    /// (generator's client + node's server) on this machine, to read the other modes against.
    Healthz,
    /// Each client takes one 1 h lease, then heartbeats `POST /leases/renew` for its owner
    /// again and again (the agents' traffic).
    Renew,
}

/// Where the clients send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Targets {
    /// Client i talks to endpoint i mod n (followers forward writes to the leader).
    Spread,
    /// Every client talks to the leader.
    Leader,
    /// Every client shares one client of all the endpoints (listed from the last, so the
    /// leader is not simply the first), which finds the leader and sends everything to it.
    Cluster,
}

/// The parameters of one run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Concurrent clients.
    pub clients: usize,
    /// Mode.
    pub mode: Mode,
    /// Ops per batch request (batch mode).
    pub batch_size: usize,
    /// Pool name.
    pub pool: String,
    /// Measured time (the run ends at the first of duration and count).
    pub duration: Duration,
    /// Measured requests at most.
    pub count: Option<u64>,
    /// Unmeasured time before (connections open, the cluster warms up).
    pub warmup: Duration,
    /// Prefix making this run's owners unique in the pool.
    pub owner_prefix: String,
    /// Keep every measured answer's completion time and latency (`--timeline`).
    pub timeline: bool,
}

/// An allocation acknowledged to a client, and whether the client released it since.
#[derive(Clone, Debug)]
pub struct Acked {
    /// The allocation as the node answered it.
    pub allocation: Allocation,
    /// `Some(true)`: the release was acknowledged; `Some(false)`: its outcome is unknown
    /// (an error that may have committed); `None`: not released.
    pub released: Option<bool>,
}

/// What one run produced.
pub struct Outcome {
    /// Latency of every measured request, µs.
    pub latency: Histogram<u64>,
    /// The same by endpoint (client i's under `i % endpoints`): where a spread run's tail is.
    pub by_endpoint: Vec<Histogram<u64>>,
    /// Every measured success as (completion µs after the measured time began, latency µs),
    /// when the plan asks for a timeline.
    pub samples: Vec<(u64, u64)>,
    /// Measured requests that succeeded.
    pub ok_requests: u64,
    /// New allocations acknowledged in the measured window.
    pub allocations: u64,
    /// Releases acknowledged in the measured window.
    pub releases: u64,
    /// Owner's existing allocation returned (200 instead of 201): should be none.
    pub existing: u64,
    /// Failed measured requests by error code.
    pub errors: BTreeMap<String, u64>,
    /// From the start of the measured window until the last measured request ended.
    pub elapsed: Duration,
    /// Every allocation acknowledged during the run (warm-up included), for verification.
    pub acked: Vec<Acked>,
    /// Renewals acknowledged during the run (warm-up included): ops, like the allocations
    /// and releases in `acked`, for the ops per entry.
    pub renewals: u64,
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 600_000_000, 3).context("histogram bounds")
}

/// The error code to count a failed request under.
pub fn error_code(e: &ClientError) -> String {
    match e {
        ClientError::Api { code, .. } => code.to_string(),
        ClientError::Timeout { .. } => "client_timeout".to_string(),
        ClientError::Unreachable { .. } => "unreachable".to_string(),
        ClientError::Decode { status, .. } => format!("decode_{}", status.as_u16()),
        _ => "client_error".to_string(),
    }
}

struct Shared {
    plan: Plan,
    measure_from: Instant,
    measure_until: Instant,
    /// Measured requests started so far (for `--count`).
    started: AtomicU64,
}

impl Shared {
    /// Whether the next request is measured; `None` when the run is over.
    fn next(&self) -> Option<bool> {
        let now = Instant::now();
        if now >= self.measure_until {
            return None;
        }
        if now < self.measure_from {
            return Some(false);
        }
        let n = self.started.fetch_add(1, Ordering::Relaxed);
        match self.plan.count {
            Some(limit) if n >= limit => None,
            _ => Some(true),
        }
    }
}

struct ClientResult {
    index: usize,
    latency: Histogram<u64>,
    ok_requests: u64,
    allocations: u64,
    releases: u64,
    existing: u64,
    errors: BTreeMap<String, u64>,
    last_end: Option<Instant>,
    acked: Vec<Acked>,
    renewals: u64,
    /// Start of the measured time, when the plan asks for a timeline.
    timeline_from: Option<Instant>,
    samples: Vec<(u64, u64)>,
}

impl ClientResult {
    /// Counts a request answered with success; returns whether it was measured.
    fn succeeded(
        &mut self,
        measured: bool,
        started: Instant,
        ended: Instant,
    ) -> anyhow::Result<bool> {
        if measured {
            self.latency.record(micros(ended - started))?;
            if let Some(from) = self.timeline_from {
                self.samples.push((
                    micros(ended.saturating_duration_since(from)),
                    micros(ended - started),
                ));
            }
            self.ok_requests += 1;
            self.last_end = Some(ended);
        }
        Ok(measured)
    }

    /// Counts a failed request under its error code.
    fn failed(&mut self, measured: bool, ended: Instant, e: &ClientError) {
        if measured {
            *self.errors.entry(error_code(e)).or_default() += 1;
            self.last_end = Some(ended);
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

async fn client_loop(
    shared: Arc<Shared>,
    client: Client,
    index: usize,
) -> anyhow::Result<ClientResult> {
    let plan = &shared.plan;
    let mut r = ClientResult {
        index,
        latency: histogram()?,
        ok_requests: 0,
        allocations: 0,
        releases: 0,
        existing: 0,
        errors: BTreeMap::new(),
        last_end: None,
        acked: Vec::new(),
        renewals: 0,
        timeline_from: plan.timeline.then_some(shared.measure_from),
        samples: Vec::new(),
    };
    let mut seq: u64 = 0;
    let owner = |seq: &mut u64| {
        *seq += 1;
        format!("{}-{index}-{seq}", plan.owner_prefix)
    };
    while let Some(measured) = shared.next() {
        match plan.mode {
            Mode::Allocate | Mode::Mixed => {
                let req = AllocateRequest {
                    owner: owner(&mut seq),
                    ..Default::default()
                };
                let started = Instant::now();
                let res = client.allocate(&plan.pool, &req).await;
                let ended = Instant::now();
                let held = match res {
                    Ok((allocation, created)) => {
                        if r.succeeded(measured, started, ended)? {
                            if created {
                                r.allocations += 1;
                            } else {
                                r.existing += 1;
                            }
                        }
                        r.acked.push(Acked {
                            allocation,
                            released: None,
                        });
                        true
                    }
                    Err(e) => {
                        r.failed(measured, ended, &e);
                        false
                    }
                };
                if plan.mode == Mode::Mixed && held {
                    // The release is a request of its own: measured if the window still runs.
                    let Some(measured) = shared.next() else { break };
                    let Some(acked) = r.acked.last_mut() else {
                        break;
                    };
                    let (ip, generation) =
                        (acked.allocation.ip.clone(), acked.allocation.generation);
                    let started = Instant::now();
                    let res = client.release(&plan.pool, &ip, Some(generation)).await;
                    let ended = Instant::now();
                    match res {
                        Ok(()) => {
                            acked.released = Some(true);
                            if r.succeeded(measured, started, ended)? {
                                r.releases += 1;
                            }
                        }
                        Err(e) => {
                            acked.released = e.may_have_committed().then_some(false);
                            r.failed(measured, ended, &e);
                        }
                    }
                }
            }
            Mode::Renew if r.acked.is_empty() => {
                let req = AllocateRequest {
                    owner: format!("{}-{index}", plan.owner_prefix),
                    ttl_seconds: Some(3600),
                    ..Default::default()
                };
                let started = Instant::now();
                let res = client.allocate(&plan.pool, &req).await;
                let ended = Instant::now();
                match res {
                    Ok((allocation, created)) => {
                        if r.succeeded(measured, started, ended)? {
                            if created {
                                r.allocations += 1;
                            } else {
                                r.existing += 1;
                            }
                        }
                        r.acked.push(Acked {
                            allocation,
                            released: None,
                        });
                    }
                    Err(e) => r.failed(measured, ended, &e),
                }
            }
            Mode::Renew => {
                let owner = format!("{}-{index}", plan.owner_prefix);
                let started = Instant::now();
                let res = client.renew_owner(&owner).await;
                let ended = Instant::now();
                match res {
                    Ok(renewed) if renewed.len() == 1 => {
                        r.renewals += 1;
                        r.succeeded(measured, started, ended)?;
                    }
                    Ok(renewed) => {
                        anyhow::bail!("{owner} renewed {} leases, not its one", renewed.len())
                    }
                    Err(e) => r.failed(measured, ended, &e),
                }
            }
            Mode::Healthz => {
                let started = Instant::now();
                let res = client.healthz().await;
                let ended = Instant::now();
                match res {
                    Ok(()) => {
                        r.succeeded(measured, started, ended)?;
                    }
                    Err(e) => {
                        r.failed(measured, ended, &e);
                    }
                }
            }
            Mode::Batch => {
                let ops: Vec<BatchOp> = (0..plan.batch_size)
                    .map(|_| BatchOp::Allocate {
                        pool: plan.pool.clone(),
                        owner: owner(&mut seq),
                        ip: None,
                        labels: Default::default(),
                        ttl_seconds: None,
                    })
                    .collect();
                let started = Instant::now();
                let res = client.batch(ops).await;
                let ended = Instant::now();
                match res {
                    Ok(resp) => {
                        let mut n = 0;
                        for value in resp.results {
                            let allocation: Allocation = serde_json::from_value(value)
                                .context("a batch allocate result is not an allocation")?;
                            r.acked.push(Acked {
                                allocation,
                                released: None,
                            });
                            n += 1;
                        }
                        if r.succeeded(measured, started, ended)? {
                            r.allocations += n;
                        }
                    }
                    Err(e) => {
                        r.failed(measured, ended, &e);
                    }
                }
            }
        }
    }
    Ok(r)
}

/// Runs `plan` with client i sending to `clients[i % clients.len()]`.
pub async fn run(plan: Plan, clients: &[Client]) -> anyhow::Result<Outcome> {
    anyhow::ensure!(!clients.is_empty(), "no endpoint to send to");
    let start = Instant::now();
    let measure_from = start + plan.warmup;
    let shared = Arc::new(Shared {
        measure_from,
        measure_until: measure_from + plan.duration,
        plan: plan.clone(),
        started: AtomicU64::new(0),
    });
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..plan.clients {
        let client = clients[i % clients.len()].clone();
        tasks.spawn(client_loop(shared.clone(), client, i));
    }
    let endpoints = clients.len();
    let mut out = Outcome {
        latency: histogram()?,
        by_endpoint: (0..clients.len())
            .map(|_| histogram())
            .collect::<anyhow::Result<_>>()?,
        ok_requests: 0,
        allocations: 0,
        releases: 0,
        existing: 0,
        errors: BTreeMap::new(),
        elapsed: Duration::ZERO,
        acked: Vec::new(),
        renewals: 0,
        samples: Vec::new(),
    };
    let mut last_end = measure_from;
    while let Some(joined) = tasks.join_next().await {
        let r = joined.context("client task")??;
        out.latency.add(&r.latency).context("merge histograms")?;
        out.by_endpoint[r.index % endpoints]
            .add(&r.latency)
            .context("merge histograms")?;
        out.ok_requests += r.ok_requests;
        out.allocations += r.allocations;
        out.releases += r.releases;
        out.existing += r.existing;
        for (code, n) in r.errors {
            *out.errors.entry(code).or_default() += n;
        }
        if let Some(end) = r.last_end {
            last_end = last_end.max(end);
        }
        out.acked.extend(r.acked);
        out.samples.extend(r.samples);
        out.renewals += r.renewals;
    }
    out.elapsed = last_end.saturating_duration_since(measure_from);
    Ok(out)
}

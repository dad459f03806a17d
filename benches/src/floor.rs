//! The latency floor of one replicated write on this machine, measured from its parts.
//!
//! openraft 0.9.25 sends an entry to the followers only after the leader's log append is
//! acknowledged; the leader acknowledges its own before the flush and flushes while it
//! replicates (`docs/architecture.md`, "The leader's append"), and the entry applies once the
//! leader and a follower have flushed it: a lone write costs at least one durable commit (the
//! two overlap), plus the client's HTTP round trip to the node (and, beyond that floor, the
//! leader → follower `/raft/append` round trip and the apply). This module measures the parts:
//!
//! - one redb commit of one ~200-byte log-entry-sized row with `Durability::Immediate`, on a
//!   file in `dir` (put it on the disk the nodes' data dirs are on);
//! - one loopback HTTP round trip through the node's full middleware stack (`GET /healthz`
//!   with the same `ipam-client` the load runs use), when an endpoint is given.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use ipam_client::Client;
use redb::{Database, Durability, TableDefinition};
use serde::Serialize;

const LOG: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("log");

/// Quantiles of one measured step, in microseconds.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    /// Samples taken.
    pub samples: u64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Largest.
    pub max_us: u64,
}

impl Step {
    fn of(h: &Histogram<u64>) -> Step {
        Step {
            samples: h.len(),
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            max_us: h.max(),
        }
    }
}

/// The floor and its parts.
#[derive(Clone, Debug, Serialize)]
pub struct Floor {
    /// One `Durability::Immediate` redb commit of one row.
    pub commit: Step,
    /// CPU time (user + system) of one such commit, µs.
    pub commit_cpu_us: Option<f64>,
    /// One `Durability::None` commit of one row (how the state machine commits applies).
    pub commit_none: Step,
    /// CPU time of one such commit, µs.
    pub commit_none_cpu_us: Option<f64>,
    /// One `GET /healthz` round trip, if an endpoint was given.
    pub http: Option<Step>,
    /// Commit p50 + HTTP p50: the floor of a lone write's p50 (two commits in series until the
    /// leader's flush overlapped the replication).
    pub floor_us: u64,
    /// The floor plus the leader → follower append round trip (one more HTTP p50).
    pub floor_with_append_rtt_us: u64,
    /// 1-minute load average when the measurement ended.
    pub load: Option<f64>,
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 60_000_000, 3).context("histogram bounds")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// `samples` durable one-row commits to a fresh redb file in `dir`, appended as a raft log
/// would be (increasing keys).
pub fn commit_latency(
    dir: &Path,
    samples: u64,
    durability: Durability,
) -> anyhow::Result<(Step, Option<f64>)> {
    let tmp = tempfile::Builder::new()
        .prefix("ipam-floor-")
        .tempdir_in(dir)
        .with_context(|| format!("cannot create a temp dir in {}", dir.display()))?;
    let db = Database::create(tmp.path().join("floor.redb")).context("redb create")?;
    let value = vec![0x5a_u8; 200];
    let mut h = histogram()?;
    let mut cpu_before = None;
    // A few commits first: the file's first pages are allocated then.
    for i in 0..(samples + 10) {
        if i == 10 {
            cpu_before = crate::sys::cpu_time(None);
        }
        let started = Instant::now();
        let mut txn = db.begin_write().context("begin_write")?;
        txn.set_durability(durability).context("set_durability")?;
        {
            let mut t = txn.open_table(LOG).context("open_table")?;
            t.insert(i, value.as_slice()).context("insert")?;
        }
        txn.commit().context("commit")?;
        if i >= 10 {
            h.record(micros(started.elapsed()))?;
        }
    }
    // The process is otherwise idle while this runs on one thread: its CPU time is the
    // commits'.
    let cpu = crate::sys::cpu_time(None)
        .zip(cpu_before)
        .map(|(after, before)| (after - before).as_secs_f64() * 1e6 / samples.max(1) as f64);
    Ok((Step::of(&h), cpu))
}

/// `samples` sequential `GET /healthz` round trips over one pooled connection.
pub async fn http_latency(client: &Client, samples: u64) -> anyhow::Result<Step> {
    let mut h = histogram()?;
    for i in 0..(samples + 10) {
        let started = Instant::now();
        client
            .healthz()
            .await
            .with_context(|| format!("GET {}/healthz", client.endpoint()))?;
        if i >= 10 {
            h.record(micros(started.elapsed()))?;
        }
    }
    Ok(Step::of(&h))
}

/// Measures the floor's parts.
pub async fn measure(dir: &Path, client: Option<&Client>, samples: u64) -> anyhow::Result<Floor> {
    let dir = dir.to_path_buf();
    let (commit, commit_cpu_us, commit_none, commit_none_cpu_us) =
        tokio::task::spawn_blocking(move || {
            let (immediate, immediate_cpu) = commit_latency(&dir, samples, Durability::Immediate)?;
            let (none, none_cpu) = commit_latency(&dir, samples * 10, Durability::None)?;
            anyhow::Ok((immediate, immediate_cpu, none, none_cpu))
        })
        .await
        .context("commit task")??;
    let http = match client {
        Some(c) => Some(http_latency(c, samples.max(100) * 5).await?),
        None => None,
    };
    let rtt = http.as_ref().map_or(0, |h| h.p50_us);
    Ok(Floor {
        floor_us: commit.p50_us + rtt,
        floor_with_append_rtt_us: commit.p50_us + 2 * rtt,
        commit,
        commit_cpu_us,
        commit_none,
        commit_none_cpu_us,
        http,
        load: crate::sys::load_average(),
    })
}

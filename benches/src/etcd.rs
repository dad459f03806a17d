//! The same load loop against etcd (`--target etcd`, built with `--features etcd`): how
//! etcd-backed IPAMs allocate, measured on the same machine as raft-ipam.
//!
//! One key per address under a run's prefix (`/ipam-bench/<run>/<address index>`). Allocating
//! is a compare-and-swap transaction: "if the candidate key was never created, put the owner
//! there"; a lost race moves the client's cursor to the next candidate and tries again, and the
//! whole loop is one allocation's latency. Every client starts at its own region of a /8
//! (`client × 2^24 / clients`), as a Calico host starts in its own affine block, so clients
//! rarely meet: the most favourable case for etcd. `mixed` releases each allocation right after
//! it is made with a transaction fenced by the key's revision (a generation fence). `renew`
//! has each client allocate one key, then rewrite its expiry again and again with a transaction
//! fenced by the key's revision — the durable heartbeat raft-ipam's `POST /leases/renew` is.
//! (etcd's own leases are not compared: a keep-alive is answered from the leader's memory, not
//! written to the log, so it survives no leader change as it was.) Writes are durable on both
//! sides: etcd fsyncs its WAL before it answers.
//!
//! After each run the keys under the prefix are counted against what was acknowledged.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};
use hdrhistogram::Histogram;

use crate::load::Mode;

/// What one run of the etcd loop measured.
pub struct Outcome {
    /// Allocations acknowledged in the measured window.
    pub allocations: u64,
    /// Releases acknowledged in the measured window.
    pub releases: u64,
    /// Renewals acknowledged in the measured window.
    pub renewals: u64,
    /// Requests answered with success in the window (an allocation and a release count one each).
    pub ok_requests: u64,
    /// Failed requests by reason.
    pub errors: BTreeMap<String, u64>,
    /// Measured window.
    pub elapsed: Duration,
    /// Latency of every measured request, µs.
    pub latency: Histogram<u64>,
    /// CAS attempts that lost a race (each retried on the next candidate).
    pub conflicts: u64,
}

/// One client's tally.
struct Tally {
    allocations: u64,
    releases: u64,
    renewals: u64,
    errors: BTreeMap<String, u64>,
    latency: Histogram<u64>,
    conflicts: u64,
    /// Keys this client left allocated (all acknowledged allocations minus releases).
    held: u64,
}

/// Connects to the etcd members (loopback only, checked by the caller).
pub async fn connect(endpoints: &[String]) -> anyhow::Result<Client> {
    Client::connect(endpoints, None)
        .await
        .context("connecting to etcd")
}

/// Runs `clients` loops of `mode` for `warmup + duration` and verifies the held keys.
pub async fn run(
    client: &Client,
    mode: Mode,
    clients: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Outcome> {
    if !matches!(mode, Mode::Allocate | Mode::Mixed | Mode::Renew) {
        bail!("--target etcd runs the allocate, mixed and renew modes only");
    }
    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let prefix = format!("/ipam-bench/{run}/");
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let stride = (1u64 << 24) / clients.max(1) as u64;
    let mut tasks = Vec::with_capacity(clients);
    for c in 0..clients {
        let client = client.clone();
        let prefix = prefix.clone();
        tasks.push(tokio::spawn(client_loop(
            client,
            prefix,
            mode,
            c as u64 * stride,
            measure_from,
            end,
        )));
    }
    let mut outcome = Outcome {
        allocations: 0,
        releases: 0,
        renewals: 0,
        ok_requests: 0,
        errors: BTreeMap::new(),
        elapsed: duration,
        latency: Histogram::new(3)?,
        conflicts: 0,
    };
    let mut held = 0;
    for task in tasks {
        let tally = task.await.context("etcd client task")??;
        outcome.allocations += tally.allocations;
        outcome.releases += tally.releases;
        outcome.renewals += tally.renewals;
        outcome.ok_requests += tally.allocations + tally.releases + tally.renewals;
        outcome.conflicts += tally.conflicts;
        outcome.latency.add(&tally.latency)?;
        for (k, v) in tally.errors {
            *outcome.errors.entry(k).or_default() += v;
        }
        held += tally.held;
    }
    let mut kv = client.clone();
    let counted = kv
        .get(
            prefix.as_str(),
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .context("counting keys")?
        .count();
    if counted as u64 != held {
        bail!("etcd holds {counted} keys under {prefix}, the clients were told {held}");
    }
    Ok(outcome)
}

async fn client_loop(
    mut client: Client,
    prefix: String,
    mode: Mode,
    mut cursor: u64,
    measure_from: Instant,
    end: Instant,
) -> anyhow::Result<Tally> {
    let mut t = Tally {
        allocations: 0,
        releases: 0,
        renewals: 0,
        errors: BTreeMap::new(),
        latency: Histogram::new(3)?,
        conflicts: 0,
        held: 0,
    };
    let mut seq = 0u64;
    // renew: the client's one key, its owner and the revision its last write left.
    let mut lease: Option<(String, String, i64)> = None;
    loop {
        let began = Instant::now();
        if began >= end {
            return Ok(t);
        }
        let measured = began >= measure_from;
        if let Some((key, owner, revision)) = &mut lease {
            match renew(&mut client, key, owner, *revision).await {
                Ok(Some(next)) => {
                    *revision = next;
                    if measured {
                        t.renewals += 1;
                        t.latency.record(micros(began.elapsed()))?;
                    }
                }
                Ok(None) => bail!("renewal of {key} lost its fence: someone else changed it"),
                Err(e) => {
                    if measured {
                        *t.errors.entry(error_kind(&e)).or_default() += 1;
                    }
                }
            }
            continue;
        }
        seq += 1;
        let owner = format!("c{cursor}-{seq}");
        let value = if mode == Mode::Renew {
            with_expiry(&owner)
        } else {
            owner.clone()
        };
        // One allocation: CAS on candidates until one is won.
        let won = loop {
            let key = format!("{prefix}{cursor:08x}");
            let txn = Txn::new()
                .when(vec![Compare::create_revision(
                    key.as_str(),
                    CompareOp::Equal,
                    0,
                )])
                .and_then(vec![TxnOp::put(key.as_str(), value.as_str(), None)]);
            match client.txn(txn).await {
                Ok(r) if r.succeeded() => {
                    let revision = r.header().map_or(0, |h| h.revision());
                    break Some((key, revision));
                }
                Ok(_) => {
                    t.conflicts += 1;
                    cursor += 1;
                }
                Err(e) => {
                    if measured {
                        *t.errors.entry(error_kind(&e)).or_default() += 1;
                    }
                    break None;
                }
            }
        };
        let Some((key, revision)) = won else { continue };
        cursor += 1;
        t.held += 1;
        if measured {
            t.allocations += 1;
            t.latency.record(micros(began.elapsed()))?;
        }
        if mode == Mode::Renew {
            lease = Some((key, owner, revision));
            continue;
        }
        if mode == Mode::Mixed {
            let began = Instant::now();
            let txn = Txn::new()
                .when(vec![Compare::mod_revision(
                    key.as_str(),
                    CompareOp::Equal,
                    revision,
                )])
                .and_then(vec![TxnOp::delete(key.as_str(), None)]);
            match client.txn(txn).await {
                Ok(r) if r.succeeded() => {
                    t.held -= 1;
                    if measured {
                        t.releases += 1;
                        t.latency.record(micros(began.elapsed()))?;
                    }
                }
                Ok(_) => bail!("release of {key} lost its fence: someone else changed it"),
                Err(e) => {
                    if measured {
                        *t.errors.entry(error_kind(&e)).or_default() += 1;
                    }
                }
            }
        }
    }
}

/// An owner's key value: the owner and when its allocation expires (1 h from now, in ms since
/// the epoch), as an etcd-backed IPAM with expiring allocations would keep it.
fn with_expiry(owner: &str) -> String {
    let expires = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() + 3_600_000)
        .unwrap_or(0);
    format!("{owner} {expires}")
}

/// One heartbeat: rewrites the key's expiry if nobody changed the key since `revision`.
/// The new revision, or `None` when the fence failed.
async fn renew(
    client: &mut Client,
    key: &str,
    owner: &str,
    revision: i64,
) -> Result<Option<i64>, etcd_client::Error> {
    let txn = Txn::new()
        .when(vec![Compare::mod_revision(key, CompareOp::Equal, revision)])
        .and_then(vec![TxnOp::put(key, with_expiry(owner), None)]);
    let r = client.txn(txn).await?;
    Ok(r.succeeded()
        .then(|| r.header().map_or(0, |h| h.revision())))
}

fn error_kind(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) => format!("grpc_{:?}", s.code()).to_lowercase(),
        other => format!("{other}")
            .split(':')
            .next()
            .unwrap_or("error")
            .to_string(),
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

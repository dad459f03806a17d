//! After a run: every acknowledged allocation is on every node, and no address is held twice.
//!
//! Waits until the cluster has converged (every node has applied the same index, at least the
//! commit index the nodes report), then pages through the pool's allocations on each node with
//! `?consistency=local` — each node's own replica, not the leader's view.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use ipam_client::{AllocationQuery, Client, Consistency};

use crate::load::Acked;

/// The verdict.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Verdict {
    /// Allocations acknowledged during the run.
    pub acknowledged: usize,
    /// Of them, not released (or release outcome unknown).
    pub held: usize,
    /// Allocations in the pool on each node.
    pub pool_sizes: Vec<usize>,
    /// Applied index every node reached.
    pub applied_index: u64,
    /// What is wrong; empty: nothing.
    pub violations: Vec<String>,
    /// How long verification took.
    pub took_ms: u64,
}

impl Verdict {
    /// No violation.
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

fn ip_key(ip: &str) -> anyhow::Result<u128> {
    let addr: IpAddr = ip.parse().with_context(|| format!("bad address {ip:?}"))?;
    Ok(match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    })
}

/// Waits until every node has applied the same index, and at least the highest commit index
/// any of them reports; returns that index.
pub async fn converge(nodes: &[Client], deadline: Duration) -> anyhow::Result<u64> {
    let until = Instant::now() + deadline;
    loop {
        let mut applied = Vec::new();
        let mut committed = 0;
        for n in nodes {
            let s = n
                .cluster_status()
                .await
                .with_context(|| format!("cluster status of {}", n.endpoint()))?;
            applied.push(s.applied_index);
            committed = committed.max(s.commit_index).max(s.applied_index);
        }
        if applied.iter().all(|&a| a == committed) {
            return Ok(committed);
        }
        if Instant::now() >= until {
            anyhow::bail!(
                "the cluster did not converge within {deadline:?}: applied {applied:?}, commit {committed}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Checks `acked` against every node's replica of `pool`.
pub async fn verify(
    nodes: &[Client],
    pool: &str,
    acked: &[Acked],
    converge_deadline: Duration,
) -> anyhow::Result<Verdict> {
    let started = Instant::now();
    let mut violations = Vec::new();

    // What the clients were told must itself be consistent.
    let mut generations = HashSet::with_capacity(acked.len());
    let mut held_by_ip: HashMap<u128, &Acked> = HashMap::with_capacity(acked.len());
    let mut held = 0;
    for a in acked {
        if !generations.insert(a.allocation.generation) {
            violations.push(format!(
                "generation {} acknowledged twice",
                a.allocation.generation
            ));
        }
        if a.released.is_some() {
            continue;
        }
        held += 1;
        if let Some(other) = held_by_ip.insert(ip_key(&a.allocation.ip)?, a) {
            violations.push(format!(
                "{} acknowledged to {} and to {}",
                a.allocation.ip, other.allocation.owner, a.allocation.owner
            ));
        }
    }

    let applied_index = converge(nodes, converge_deadline).await?;

    let mut pool_sizes = Vec::new();
    let mut first: Option<BTreeMap<u128, (String, u64)>> = None;
    for node in nodes {
        let local = node.clone().with_consistency(Consistency::Local);
        let query = AllocationQuery {
            limit: Some(1000),
            ..Default::default()
        };
        let list = local
            .list_all_allocations(pool, &query)
            .await
            .with_context(|| format!("listing {pool} on {}", node.endpoint()))?;
        let mut by_ip: BTreeMap<u128, (String, u64)> = BTreeMap::new();
        let mut owners = HashSet::with_capacity(list.len());
        for a in &list {
            if by_ip
                .insert(ip_key(&a.ip)?, (a.owner.clone(), a.generation))
                .is_some()
            {
                violations.push(format!("{}: {} listed twice", node.endpoint(), a.ip));
            }
            if !owners.insert(a.owner.as_str()) {
                violations.push(format!(
                    "{}: owner {} holds two addresses",
                    node.endpoint(),
                    a.owner
                ));
            }
        }
        pool_sizes.push(by_ip.len());
        let mut missing = 0;
        for a in acked {
            let key = ip_key(&a.allocation.ip)?;
            let here = by_ip.get(&key);
            let same = here
                .is_some_and(|(o, g)| *o == a.allocation.owner && *g == a.allocation.generation);
            match a.released {
                None if !same => {
                    missing += 1;
                    if missing <= 5 {
                        violations.push(format!(
                            "{}: acknowledged {} (owner {}, generation {}) is {}",
                            node.endpoint(),
                            a.allocation.ip,
                            a.allocation.owner,
                            a.allocation.generation,
                            match here {
                                None => "missing".to_string(),
                                Some((o, g)) => format!("held by {o} (generation {g})"),
                            }
                        ));
                    }
                }
                Some(true) if same => violations.push(format!(
                    "{}: released {} (generation {}) is still allocated",
                    node.endpoint(),
                    a.allocation.ip,
                    a.allocation.generation
                )),
                _ => {}
            }
        }
        if missing > 5 {
            violations.push(format!(
                "{}: {missing} acknowledged allocations missing or different in all",
                node.endpoint()
            ));
        }
        match &first {
            None => first = Some(by_ip),
            Some(f) if *f != by_ip => violations.push(format!(
                "{} and {} hold different allocations ({} vs {})",
                nodes[0].endpoint(),
                node.endpoint(),
                f.len(),
                by_ip.len()
            )),
            Some(_) => {}
        }
    }
    Ok(Verdict {
        acknowledged: acked.len(),
        held,
        pool_sizes,
        applied_index,
        violations,
        took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

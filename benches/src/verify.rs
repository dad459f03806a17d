//! After a run: wait until every node has applied what the leader committed, then read each
//! node's replica (`?consistency=local`) and check that every acknowledged allocation is
//! there, that no address or owner appears twice, and that the replicas agree.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ipam_client::types::Allocation;
use ipam_client::{AllocationQuery, Client, Consistency};

/// What the check found; `problems` is empty when it passed.
#[derive(Debug, Default, serde::Serialize)]
pub struct Verdict {
    /// Nodes whose replica was read.
    pub nodes: usize,
    /// Allocations each replica holds in the pool.
    pub held: usize,
    /// Acknowledged allocations checked.
    pub acknowledged: usize,
    /// Human descriptions of every violation (capped).
    pub problems: Vec<String>,
}

/// A replica's allocations of the pool: address → (owner, generation).
type Replica = BTreeMap<String, (String, u64)>;

const MAX_PROBLEMS: usize = 20;

impl Verdict {
    fn problem(&mut self, text: String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(text);
        }
    }
}

/// Waits until every node's applied index reaches the highest commit index any of them
/// reports, within `deadline`.
pub async fn converge(nodes: &[Client], deadline: Duration) -> anyhow::Result<()> {
    let until = Instant::now() + deadline;
    let mut target = 0;
    for node in nodes {
        let s = node
            .cluster_status()
            .await
            .with_context(|| format!("status of {}", node.endpoint()))?;
        target = target.max(s.commit_index).max(s.applied_index);
    }
    for node in nodes {
        loop {
            let s = node.cluster_status().await?;
            if s.applied_index >= target {
                break;
            }
            if Instant::now() >= until {
                bail!(
                    "{} applied {} of {target} within {deadline:?}",
                    node.endpoint(),
                    s.applied_index
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// Checks every node's replica of `pool` against the acknowledged `live` allocations. Owners
/// in `uncertain` (writes whose outcome is unknown) may be present or absent.
pub async fn check(
    nodes: &[Client],
    pool: &str,
    live: &[Allocation],
    uncertain: &[String],
) -> anyhow::Result<Verdict> {
    let mut verdict = Verdict {
        nodes: nodes.len(),
        acknowledged: live.len(),
        ..Default::default()
    };
    let uncertain: HashSet<&str> = uncertain.iter().map(String::as_str).collect();

    // Acknowledged and still held: each address at most once.
    let mut acked_by_ip: HashMap<&str, &Allocation> = HashMap::new();
    for a in live {
        if let Some(other) = acked_by_ip.insert(&a.ip, a) {
            verdict.problem(format!(
                "{} acknowledged to both {} (generation {}) and {} (generation {})",
                a.ip, other.owner, other.generation, a.owner, a.generation
            ));
        }
    }

    let mut first: Option<(String, Replica)> = None;
    for node in nodes {
        let local = node.clone().with_consistency(Consistency::Local);
        let query = AllocationQuery {
            limit: Some(1000),
            ..Default::default()
        };
        let held = local
            .list_all_allocations(pool, &query)
            .await
            .with_context(|| format!("allocations of {pool} on {}", node.endpoint()))?;
        let endpoint = node.endpoint();
        let mut by_ip = Replica::new();
        let mut owners = HashSet::new();
        for a in &held {
            if by_ip
                .insert(a.ip.clone(), (a.owner.clone(), a.generation))
                .is_some()
            {
                verdict.problem(format!("{endpoint}: {} listed twice", a.ip));
            }
            if !owners.insert(a.owner.as_str()) {
                verdict.problem(format!("{endpoint}: owner {} holds two addresses", a.owner));
            }
        }
        for a in live {
            match by_ip.get(&a.ip) {
                Some((owner, generation)) if *owner == a.owner && *generation == a.generation => {}
                _ if uncertain.contains(a.owner.as_str()) => {}
                Some((owner, generation)) => verdict.problem(format!(
                    "{endpoint}: acknowledged {} for {} (generation {}) is held by {owner} \
                     (generation {generation})",
                    a.ip, a.owner, a.generation
                )),
                None => verdict.problem(format!(
                    "{endpoint}: acknowledged {} for {} (generation {}) is missing",
                    a.ip, a.owner, a.generation
                )),
            }
        }
        for (ip, (owner, _)) in &by_ip {
            if !acked_by_ip.contains_key(ip.as_str()) && !uncertain.contains(owner.as_str()) {
                verdict.problem(format!(
                    "{endpoint}: {ip} held by {owner}, which no acknowledged write explains"
                ));
            }
        }
        verdict.held = by_ip.len();
        match &first {
            None => first = Some((endpoint.to_string(), by_ip)),
            Some((first_endpoint, first_map)) if *first_map != by_ip => {
                verdict.problem(format!(
                    "replicas differ: {first_endpoint} holds {}, {endpoint} holds {}",
                    first_map.len(),
                    by_ip.len()
                ));
            }
            Some(_) => {}
        }
    }
    Ok(verdict)
}

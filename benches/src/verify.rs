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

/// Reads every node's replica of `pool` (`?consistency=local`) and [`judge`]s them.
pub async fn check(
    nodes: &[Client],
    pool: &str,
    live: &[Allocation],
    uncertain: &[String],
) -> anyhow::Result<Verdict> {
    let mut replicas = Vec::with_capacity(nodes.len());
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
        replicas.push((node.endpoint().to_string(), held));
    }
    Ok(judge(&replicas, live, uncertain))
}

/// Checks each replica — (endpoint, its allocations of the pool) — against the acknowledged
/// `live` allocations. Owners in `uncertain` (writes whose outcome is unknown) may be present
/// or absent.
pub fn judge(
    replicas: &[(String, Vec<Allocation>)],
    live: &[Allocation],
    uncertain: &[String],
) -> Verdict {
    let mut verdict = Verdict {
        nodes: replicas.len(),
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

    let mut first: Option<(&str, Replica)> = None;
    for (endpoint, held) in replicas {
        let endpoint = endpoint.as_str();
        let mut by_ip = Replica::new();
        let mut owners = HashSet::new();
        for a in held {
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
            None => first = Some((endpoint, by_ip)),
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
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc(ip: &str, owner: &str, generation: u64) -> Allocation {
        Allocation {
            ip: ip.into(),
            pool: "p".into(),
            owner: owner.into(),
            generation,
            allocated_at: "2026-01-01T00:00:00Z".into(),
            labels: Default::default(),
        }
    }

    fn replicas(sets: &[&[Allocation]]) -> Vec<(String, Vec<Allocation>)> {
        sets.iter()
            .enumerate()
            .map(|(i, s)| (format!("n{i}"), s.to_vec()))
            .collect()
    }

    #[test]
    fn equal_replicas_holding_every_acknowledged_allocation_pass() {
        let live = [alloc("10.0.0.1", "a", 1), alloc("10.0.0.2", "b", 2)];
        let v = judge(&replicas(&[&live, &live, &live]), &live, &[]);
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        assert_eq!((v.nodes, v.held, v.acknowledged), (3, 2, 2));
    }

    #[test]
    fn a_missing_acknowledged_allocation_fails() {
        let live = [alloc("10.0.0.1", "a", 1), alloc("10.0.0.2", "b", 2)];
        let v = judge(&replicas(&[&live, &live[..1]]), &live, &[]);
        assert!(v
            .problems
            .iter()
            .any(|p| p.contains("n1") && p.contains("missing")));
        assert!(v.problems.iter().any(|p| p.contains("replicas differ")));
    }

    #[test]
    fn an_address_acknowledged_twice_fails() {
        let live = [alloc("10.0.0.1", "a", 1), alloc("10.0.0.1", "b", 2)];
        let v = judge(&replicas(&[&live[1..]]), &live, &[]);
        assert!(v
            .problems
            .iter()
            .any(|p| p.contains("acknowledged to both")));
        assert!(v.problems.iter().any(|p| p.contains("held by b")));
    }

    #[test]
    fn unexplained_and_duplicate_holdings_fail() {
        let held = [alloc("10.0.0.1", "a", 1), alloc("10.0.0.2", "a", 2)];
        let v = judge(&replicas(&[&held]), &held[..1], &[]);
        assert!(v.problems.iter().any(|p| p.contains("holds two addresses")));
        assert!(v
            .problems
            .iter()
            .any(|p| p.contains("no acknowledged write")));
    }

    #[test]
    fn uncertain_owners_may_be_present_or_absent() {
        let live = [alloc("10.0.0.1", "a", 1)];
        let held = [alloc("10.0.0.2", "u", 2)];
        let v = judge(&replicas(&[&held]), &live, &["a".into(), "u".into()]);
        assert!(v.problems.is_empty(), "{:?}", v.problems);
    }
}

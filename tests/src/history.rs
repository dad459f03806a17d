//! A history checker: every client operation of a test is recorded with its invocation and
//! completion time and its result, and the history is checked afterwards against what the
//! contract promises a client:
//!
//! 1. at no instant do two owners hold one address: the intervals in which each owner
//!    certainly held an address (from its allocation's acknowledgement to the invocation of
//!    its first release attempt) never overlap for one address;
//! 2. an acknowledged allocation is seen by every read that starts after the acknowledgement
//!    and ends before any release of it was invoked;
//! 3. no acknowledged release is undone: a read that starts after a release of an owner was
//!    acknowledged never shows that owner again (checked for owners whose allocation
//!    succeeded at its first attempt: an earlier failed attempt may legitimately apply later).
//!
//! Times come from one monotonic clock in the test process, so "after" is real time.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// One recorded operation.
#[derive(Clone, Debug)]
pub enum Op {
    /// An allocation of `owner` acknowledged with `ip`; `failed_attempts` earlier attempts of
    /// it failed (they may still apply).
    Allocated {
        /// The owner.
        owner: String,
        /// Its address.
        ip: IpAddr,
        /// Failed attempts before the acknowledged one.
        failed_attempts: usize,
    },
    /// A release of `owner` was invoked; `acked` when it was acknowledged.
    Release {
        /// The owner.
        owner: String,
        /// Acknowledged (else it failed, and may still apply).
        acked: bool,
    },
    /// A linearizable read of the whole pool: owner → address.
    Read(BTreeMap<String, IpAddr>),
}

/// An operation with its times.
#[derive(Clone, Debug)]
pub struct Event {
    /// When the client invoked it (its first attempt).
    pub invoked: Instant,
    /// When the client saw its result.
    pub completed: Instant,
    /// What it was.
    pub op: Op,
}

/// The recorded history of a test; shared by every client task.
#[derive(Debug, Default)]
pub struct History {
    events: Mutex<Vec<Event>>,
}

impl History {
    /// A new, empty history.
    pub fn new() -> History {
        History::default()
    }

    /// Records `op`, invoked at `invoked` and completed now.
    pub fn record(&self, invoked: Instant, op: Op) {
        let event = Event {
            invoked,
            completed: Instant::now(),
            op,
        };
        if let Ok(mut events) = self.events.lock() {
            events.push(event);
        }
    }

    /// The recorded events.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Checks the history; `Err` lists every violation found (at most 20).
    pub fn check(&self) -> Result<Summary, Vec<String>> {
        check(&self.events())
    }
}

/// What a passing check looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Acknowledged allocations.
    pub allocations: usize,
    /// Release attempts.
    pub releases: usize,
    /// Reads.
    pub reads: usize,
}

struct Holding {
    ip: IpAddr,
    acked: Instant,
    first_try: bool,
    /// Invocation of the first release attempt: the owner may stop holding from here.
    release_invoked: Option<Instant>,
    /// Completion of the first acknowledged release.
    release_acked: Option<Instant>,
}

/// Checks `events` (see the module docs).
pub fn check(events: &[Event]) -> Result<Summary, Vec<String>> {
    let mut holdings: BTreeMap<String, Holding> = BTreeMap::new();
    let mut problems = Vec::new();
    for e in events {
        if let Op::Allocated {
            owner,
            ip,
            failed_attempts,
        } = &e.op
        {
            if holdings.contains_key(owner) {
                problems.push(format!(
                    "owner {owner} allocated twice: the check needs unique owners"
                ));
            }
            holdings.insert(
                owner.clone(),
                Holding {
                    ip: *ip,
                    acked: e.completed,
                    first_try: *failed_attempts == 0,
                    release_invoked: None,
                    release_acked: None,
                },
            );
        }
    }
    let mut releases = 0;
    for e in events {
        if let Op::Release { owner, acked } = &e.op {
            releases += 1;
            let Some(h) = holdings.get_mut(owner) else {
                continue;
            };
            h.release_invoked = Some(h.release_invoked.map_or(e.invoked, |t| t.min(e.invoked)));
            if *acked {
                h.release_acked = Some(h.release_acked.map_or(e.completed, |t| t.min(e.completed)));
            }
        }
    }

    // 1. One holder per address at any instant.
    let mut by_ip: BTreeMap<IpAddr, Vec<(&String, &Holding)>> = BTreeMap::new();
    for (owner, h) in &holdings {
        by_ip.entry(h.ip).or_default().push((owner, h));
    }
    for (ip, hs) in &by_ip {
        for (i, (a, ha)) in hs.iter().enumerate() {
            for (b, hb) in &hs[i + 1..] {
                let a_end = ha.release_invoked;
                let b_end = hb.release_invoked;
                // [acked, end) intervals overlap?
                let a_before_b_ends = b_end.is_none_or(|end| ha.acked < end);
                let b_before_a_ends = a_end.is_none_or(|end| hb.acked < end);
                if a_before_b_ends && b_before_a_ends {
                    problems.push(format!("{ip} held by {a} and {b} at once"));
                }
            }
        }
    }

    let mut reads = 0;
    for e in events {
        let Op::Read(seen) = &e.op else { continue };
        reads += 1;
        for (owner, h) in &holdings {
            // 2. Visible from its acknowledgement until a release of it is invoked.
            let must_see = e.invoked > h.acked && h.release_invoked.is_none_or(|r| e.completed < r);
            if must_see && seen.get(owner) != Some(&h.ip) {
                problems.push(format!(
                    "a read started {:?} after {owner} -> {} was acknowledged shows {:?}",
                    e.invoked - h.acked,
                    h.ip,
                    seen.get(owner)
                ));
            }
            // 3. An acknowledged release is never undone.
            if let Some(done) = h.release_acked {
                if h.first_try && e.invoked > done && seen.contains_key(owner) {
                    problems.push(format!(
                        "a read started {:?} after the release of {owner} was acknowledged still shows it",
                        e.invoked - done
                    ));
                }
            }
        }
        // Two owners on one address in one read.
        let mut ips = BTreeMap::new();
        for (owner, ip) in seen {
            if let Some(other) = ips.insert(*ip, owner) {
                problems.push(format!("one read shows {ip} held by {other} and {owner}"));
            }
        }
    }
    if problems.is_empty() {
        Ok(Summary {
            allocations: holdings.len(),
            releases,
            reads,
        })
    } else {
        problems.truncate(20);
        Err(problems)
    }
}

/// A linearizable read of every allocation of `pool` on `ipam` (owner → address), or `None`
/// when the cluster could not answer it (a failed read tells nothing).
pub async fn read_pool(ipam: &ipam_raft::Ipam, pool: &str) -> Option<BTreeMap<String, IpAddr>> {
    let mut all = BTreeMap::new();
    let mut after = None;
    loop {
        let page = ipam
            .allocations(
                pool,
                None,
                after,
                1_000,
                ipam_raft::Consistency::Linearizable,
            )
            .await
            .ok()?;
        all.extend(page.allocations.iter().map(|a| (a.owner.clone(), a.ip)));
        match page.next {
            Some(next) => after = Some(next),
            None => return Some(all),
        }
    }
}

/// Reads `pool` round-robin on `nodes` until `stop`, recording each answered read.
pub async fn reader(
    nodes: Vec<ipam_raft::Ipam>,
    pool: String,
    history: std::sync::Arc<History>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let mut i = 0usize;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let ipam = &nodes[i % nodes.len()];
        i += 1;
        let invoked = Instant::now();
        if let Some(seen) = read_pool(ipam, &pool).await {
            history.record(invoked, Op::Read(seen));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    fn ev(base: Instant, from: u64, to: u64, op: Op) -> Event {
        Event {
            invoked: at(base, from),
            completed: at(base, to),
            op,
        }
    }

    fn alloc(owner: &str, ip: &str) -> Op {
        Op::Allocated {
            owner: owner.into(),
            ip: ip.parse().unwrap(),
            failed_attempts: 0,
        }
    }

    fn read(pairs: &[(&str, &str)]) -> Op {
        Op::Read(
            pairs
                .iter()
                .map(|(o, ip)| (o.to_string(), ip.parse().unwrap()))
                .collect(),
        )
    }

    fn release(owner: &str) -> Op {
        Op::Release {
            owner: owner.into(),
            acked: true,
        }
    }

    #[test]
    fn a_clean_history_passes() {
        let b = Instant::now();
        let events = vec![
            ev(b, 0, 10, alloc("a", "10.0.0.2")),
            ev(b, 20, 30, read(&[("a", "10.0.0.2")])),
            ev(b, 40, 50, release("a")),
            ev(b, 60, 70, alloc("b", "10.0.0.2")),
            ev(b, 80, 90, read(&[("b", "10.0.0.2")])),
        ];
        assert!(check(&events).is_ok());
    }

    #[test]
    fn two_holders_are_found() {
        let b = Instant::now();
        let events = vec![
            ev(b, 0, 10, alloc("a", "10.0.0.2")),
            ev(b, 20, 30, alloc("b", "10.0.0.2")),
        ];
        assert!(check(&events).is_err());
    }

    #[test]
    fn a_lost_allocation_is_found() {
        let b = Instant::now();
        let events = vec![
            ev(b, 0, 10, alloc("a", "10.0.0.2")),
            ev(b, 20, 30, read(&[])),
        ];
        assert!(check(&events).is_err());
        // A read concurrent with the allocation may miss it.
        let events = vec![
            ev(b, 0, 10, alloc("a", "10.0.0.2")),
            ev(b, 5, 30, read(&[])),
        ];
        assert!(check(&events).is_ok());
    }

    #[test]
    fn an_undone_release_is_found() {
        let b = Instant::now();
        let events = vec![
            ev(b, 0, 10, alloc("a", "10.0.0.2")),
            ev(b, 20, 30, release("a")),
            ev(b, 40, 50, read(&[("a", "10.0.0.2")])),
        ];
        assert!(check(&events).is_err());
        // Concurrent with the release, either answer is fine.
        let events = vec![
            ev(b, 0, 10, alloc("a", "10.0.0.2")),
            ev(b, 20, 30, release("a")),
            ev(b, 25, 50, read(&[("a", "10.0.0.2")])),
        ];
        assert!(check(&events).is_ok());
    }
}

//! Leases through `Ipam`: expiry driven by the leader's stamps (an injected clock for
//! simulated minutes, the wall clock for the idle-expiry bound), renewals, cooldown, and a
//! leader change.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::support::nodes::{spec, stop, voters, TestNode, SERIAL, WAIT};
use ipam_core::PoolUpdate;
use ipam_raft::{Consistency, Ipam, ManualClock, StampClock};
use tempfile::TempDir;

/// `n` voters on `clock`, with pool `vms` (10.0.0.0/24).
async fn cluster(n: u64, dir: &std::path::Path, clock: &StampClock) -> Vec<TestNode> {
    let (nodes, _) = voters(n, dir, 0, |c| c.clock = clock.clone()).await;
    nodes[0]
        .ipam
        .create_pool(spec("vms", "10.0.0.0/24"))
        .await
        .expect("pool");
    nodes
}

async fn holder(ipam: &Ipam, ip: IpAddr) -> Option<String> {
    ipam.address(ip, Consistency::Local)
        .await
        .expect("address")
        .allocation
        .map(|a| a.owner)
}

/// Polls until `ip` is free on `ipam`'s replica; returns when it was first seen free.
async fn wait_free(ipam: &Ipam, ip: IpAddr, deadline: Duration) -> Instant {
    let until = Instant::now() + deadline;
    loop {
        if holder(ipam, ip).await.is_none() {
            return Instant::now();
        }
        assert!(Instant::now() < until, "{ip} still held after {deadline:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_expire_on_simulated_time_with_no_traffic() {
    let _serial = SERIAL.lock().await;
    let dir = TempDir::new().expect("tempdir");
    let clock = ManualClock::new(1_700_000_000_000);
    let nodes = cluster(1, dir.path(), &clock.stamp_clock()).await;
    let ipam = &nodes[0].ipam;
    let (a, existing) = ipam
        .allocate_lease("vms", "agent", None, BTreeMap::new(), Some(30))
        .await
        .expect("lease");
    assert!(!existing);
    assert!(a.expires_at.is_some());
    let (p, _) = ipam
        .allocate_lease("vms", "pinned", None, BTreeMap::new(), None)
        .await
        .expect("permanent");
    clock.advance(20_000);
    let r = ipam
        .renew("vms", a.ip, Some(a.generation), None)
        .await
        .expect("renew");
    assert_eq!(r.expires_at.map(|s| s.0), Some(clock.now_ms() + 30_000));
    let renewed = ipam.renew_owner("agent").await.expect("renew owner");
    assert_eq!(renewed.len(), 1);
    // A repeated allocate by the holder renews through the log, not the cache.
    let (again, existing) = ipam
        .allocate("vms", "agent", None, BTreeMap::new())
        .await
        .expect("again");
    assert!(existing);
    assert_eq!(again.expires_at.map(|s| s.0), Some(clock.now_ms() + 30_000));
    clock.advance(29_000);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(holder(ipam, a.ip).await.as_deref(), Some("agent"));
    clock.advance(1_000);
    assert!(ipam.lease_expirations().is_empty());
    wait_free(ipam, a.ip, Duration::from_secs(5)).await;
    assert_eq!(ipam.lease_expirations().get("vms"), Some(&1));
    assert_eq!(holder(ipam, p.ip).await.as_deref(), Some("pinned"));
    assert_eq!(ipam.next_expiry().await.expect("next"), None);
    assert!(ipam.log_now().await.expect("now").0 >= clock.now_ms());
    for n in nodes {
        stop(n).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooldown_keeps_an_expired_address_for_its_owner() {
    let _serial = SERIAL.lock().await;
    let dir = TempDir::new().expect("tempdir");
    let clock = ManualClock::new(1_700_000_000_000);
    let nodes = cluster(1, dir.path(), &clock.stamp_clock()).await;
    let ipam = &nodes[0].ipam;
    ipam.update_pool(
        "vms",
        None,
        PoolUpdate {
            default_ttl_seconds: Some(Some(30)),
            reuse_cooldown_seconds: Some(600),
            ..PoolUpdate::default()
        },
    )
    .await
    .expect("settings");
    let (a, _) = ipam
        .allocate_lease("vms", "agent", None, BTreeMap::new(), None)
        .await
        .expect("lease");
    assert_eq!(a.ttl_seconds, Some(30));
    clock.advance(31_000);
    wait_free(ipam, a.ip, Duration::from_secs(5)).await;
    assert_eq!(
        ipam.cooling("vms", Consistency::Linearizable)
            .await
            .unwrap(),
        1
    );
    let err = ipam
        .allocate("vms", "intruder", Some(a.ip), BTreeMap::new())
        .await
        .expect_err("cooling");
    match err {
        ipam_raft::IpamError::Op(e) => {
            assert_eq!(e.code(), ipam_core::ErrorCode::AddressCoolingDown)
        }
        other => panic!("{other:?}"),
    }
    let (other, _) = ipam
        .allocate("vms", "other", None, BTreeMap::new())
        .await
        .expect("other");
    assert_ne!(other.ip, a.ip);
    clock.advance(60_000);
    let (back, existing) = ipam
        .allocate("vms", "agent", None, BTreeMap::new())
        .await
        .expect("back");
    assert_eq!((back.ip, existing), (a.ip, false));
    for n in nodes {
        stop(n).await;
    }
}

/// The wall clock, shifted by a test so that a 10 s lease ends a second from now.
fn shifted_clock() -> (StampClock, Arc<AtomicU64>) {
    let offset = Arc::new(AtomicU64::new(0));
    let o = offset.clone();
    let clock = StampClock::from_fn(move || wall_ms() + o.load(Ordering::SeqCst));
    (clock, offset)
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after the epoch")
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_lease_is_gone_within_two_seconds_of_its_end_in_real_time() {
    let _serial = SERIAL.lock().await;
    let dir = TempDir::new().expect("tempdir");
    let (clock, offset) = shifted_clock();
    let nodes = cluster(3, dir.path(), &clock).await;
    let (a, _) = nodes[1]
        .ipam
        .allocate_lease("vms", "agent", None, BTreeMap::new(), Some(10))
        .await
        .expect("lease");
    let end = a.expires_at.expect("a lease").0;
    // Jump 9 s ahead: the lease now ends about a second from now, real time.
    offset.fetch_add(9_000, Ordering::SeqCst);
    wait_free(&nodes[2].ipam, a.ip, Duration::from_secs(10)).await;
    let gone_ms = wall_ms() + offset.load(Ordering::SeqCst);
    assert!(
        gone_ms <= end + 2_000,
        "released {} ms after its end",
        gone_ms.saturating_sub(end)
    );
    for n in nodes {
        stop(n).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_change_neither_loses_nor_repeats_an_expiry() {
    let _serial = SERIAL.lock().await;
    let dir = TempDir::new().expect("tempdir");
    let clock = ManualClock::new(1_700_000_000_000);
    let mut nodes = cluster(3, dir.path(), &clock.stamp_clock()).await;
    let mut leases = Vec::new();
    for i in 0..20 {
        let ttl = if i % 2 == 0 { 30 } else { 90 };
        let (a, _) = nodes[i % 3]
            .ipam
            .allocate_lease("vms", &format!("vm-{i}"), None, BTreeMap::new(), Some(ttl))
            .await
            .expect("lease");
        leases.push((a, ttl));
    }
    let status = nodes[0].ipam.status();
    let leader = status.leader.expect("leader");
    let idx = nodes
        .iter()
        .position(|n| n.ipam.id() == leader)
        .expect("leader node");
    stop(nodes.remove(idx)).await;
    clock.advance(31_000);
    // The new leader releases the short leases; the long ones stay.
    for (a, ttl) in &leases {
        if *ttl == 30 {
            wait_free(&nodes[0].ipam, a.ip, WAIT).await;
        }
    }
    // Re-allocated addresses are not expired a second time by a stale index entry.
    let mut fresh = Vec::new();
    for (i, (a, ttl)) in leases.iter().enumerate() {
        if *ttl == 30 {
            let (b, _) = nodes[1]
                .ipam
                .allocate("vms", &format!("new-{i}"), Some(a.ip), BTreeMap::new())
                .await
                .expect("reuse");
            assert!(b.generation > a.generation);
            fresh.push(b);
        }
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for n in &nodes {
        for (a, ttl) in &leases {
            let want = if *ttl == 30 {
                None
            } else {
                Some(a.owner.clone())
            };
            if want.is_some() {
                assert_eq!(holder(&n.ipam, a.ip).await, want);
            }
        }
        for b in &fresh {
            assert_eq!(
                holder(&n.ipam, b.ip).await.as_deref(),
                Some(b.owner.as_str())
            );
        }
    }
    let pool = nodes[0]
        .ipam
        .pool("vms", Consistency::Linearizable)
        .await
        .expect("pool");
    assert_eq!(pool.stats.allocated, 20);
    clock.advance(60_000);
    for (a, ttl) in &leases {
        if *ttl == 90 {
            wait_free(&nodes[1].ipam, a.ip, WAIT).await;
        }
    }
    // The last expiry entries may still be reaching one replica: compare the two at one common
    // applied index (a divergence never settles, and fails at the deadline).
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let index = |i: usize| nodes[i].ipam.status().applied_index;
        let (i0, i1) = (index(0), index(1));
        if i0 == i1 {
            let d0 = nodes[0].ipam.digest().await.expect("digest");
            let d1 = nodes[1].ipam.digest().await.expect("digest");
            if d0 == d1 && index(0) == i0 && index(1) == i1 {
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "replicas differ at applied indexes {i0} and {i1}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for n in nodes {
        stop(n).await;
    }
}

/// The agents' case: 1,000 agents heartbeat every 10 s with 30 s leases for a minute of
/// simulated time; a third stop and their leases expire while the rest keep their addresses;
/// a stopped agent back within the cooldown gets its old address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_of_agents_heartbeats_and_a_third_stops() {
    let _serial = SERIAL.lock().await;
    let dir = TempDir::new().expect("tempdir");
    let clock = ManualClock::new(1_700_000_000_000);
    let nodes = cluster(1, dir.path(), &clock.stamp_clock()).await;
    let ipam = nodes[0].ipam.clone();
    ipam.create_pool(spec("fleet", "10.1.0.0/20"))
        .await
        .expect("pool");
    ipam.update_pool(
        "fleet",
        None,
        PoolUpdate {
            default_ttl_seconds: Some(Some(30)),
            reuse_cooldown_seconds: Some(600),
            ..PoolUpdate::default()
        },
    )
    .await
    .expect("settings");
    const AGENTS: usize = 1000;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..AGENTS {
        let ipam = ipam.clone();
        set.spawn(async move {
            let (a, _) = ipam
                .allocate("fleet", &format!("agent-{i}"), None, BTreeMap::new())
                .await
                .expect("allocate");
            (i, a.ip)
        });
    }
    let mut addr = vec![None; AGENTS];
    while let Some(r) = set.join_next().await {
        let (i, ip) = r.expect("task");
        addr[i] = Some(ip);
    }
    let addr: Vec<IpAddr> = addr.into_iter().map(|a| a.expect("every agent")).collect();
    let stopped = |i: usize| i.is_multiple_of(3);
    let heartbeat = |round: usize| {
        let ipam = ipam.clone();
        async move {
            let mut set = tokio::task::JoinSet::new();
            for i in (0..AGENTS).filter(|i| round < 6 || !stopped(*i)) {
                let ipam = ipam.clone();
                set.spawn(async move {
                    let renewed = ipam.renew_owner(&format!("agent-{i}")).await;
                    (i, renewed)
                });
            }
            let mut n = 0;
            while let Some(r) = set.join_next().await {
                let (i, renewed) = r.expect("task");
                let renewed = renewed.expect("renew");
                assert_eq!(
                    renewed.len(),
                    1,
                    "agent-{i} lost its lease in round {round}"
                );
                n += 1;
            }
            n
        }
    };
    // A minute of heartbeats by everyone, then 40 s with a third stopped.
    for round in 0..10 {
        clock.advance(10_000);
        let n = heartbeat(round).await;
        assert_eq!(n, if round < 6 { AGENTS } else { AGENTS - 334 });
    }
    // The stopped agents' leases ended 30 s after their last heartbeat (round 5).
    for i in (0..AGENTS).filter(|i| stopped(*i)) {
        wait_free(&ipam, addr[i], Duration::from_secs(5)).await;
    }
    for i in (0..AGENTS).filter(|i| !stopped(*i)) {
        assert_eq!(
            holder(&ipam, addr[i]).await.as_deref(),
            Some(format!("agent-{i}").as_str())
        );
    }
    assert_eq!(
        ipam.cooling("fleet", Consistency::Linearizable)
            .await
            .unwrap(),
        334
    );
    // A newcomer does not get a cooling address; a returning agent gets its own back.
    let (newcomer, _) = ipam
        .allocate("fleet", "newcomer", None, BTreeMap::new())
        .await
        .expect("newcomer");
    assert!(!addr.contains(&newcomer.ip));
    let (back, existing) = ipam
        .allocate("fleet", "agent-3", None, BTreeMap::new())
        .await
        .expect("back");
    assert_eq!((back.ip, existing), (addr[3], false));
    for n in nodes {
        stop(n).await;
    }
}

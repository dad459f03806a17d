//! Leases, renewal, expiry on log time and reuse cooldown, driven by entry stamps.

use crate::common;

use std::net::IpAddr;

use common::{release, Db};
use ipam_core::error::{AllocateError, ReleaseError};
use ipam_core::tables::{self, decode, AllocationRecord};
use ipam_core::{
    query, Allocation, Command, ErrorCode, Labels, Op, OpError, OpOutput, PoolUpdate, Stamp,
};
use redb::{ReadableTable, ReadableTableMetadata};

const S: u64 = 1000;

fn lease(pool: &str, owner: &str, ip: Option<&str>, ttl: Option<u32>) -> Op {
    Op::AllocateV2 {
        pool: pool.into(),
        owner: owner.into(),
        ip: ip.map(|i| i.parse().unwrap()),
        labels: Labels::new(),
        ttl_seconds: ttl,
    }
}

/// A pool's lease settings, set the way an operator does (PATCH).
fn settings(pool: &str, ttl: Option<u32>, cooldown: u32) -> Op {
    Op::UpdatePool {
        pool: pool.into(),
        revision: None,
        update: Box::new(PoolUpdate {
            default_ttl_seconds: Some(ttl.filter(|t| *t > 0)),
            reuse_cooldown_seconds: Some(cooldown),
            ..PoolUpdate::default()
        }),
    }
}

fn got(db: &mut Db, op: Op) -> (Allocation, bool) {
    match db.op(op.clone()) {
        Ok(OpOutput::AllocatedV2 {
            allocation,
            existing,
        }) => (allocation, existing),
        Ok(OpOutput::Allocated {
            allocation,
            existing,
        }) => (allocation, existing),
        Ok(OpOutput::Renewed(a)) => (a, true),
        other => panic!("{op:?}: {other:?}"),
    }
}

fn err(db: &mut Db, op: Op) -> OpError {
    db.op(op).expect_err("an error")
}

fn holder(db: &Db, pool: &str, ip: &str) -> Option<String> {
    query::address(&db.rtx(), ip.parse().unwrap())
        .unwrap()
        .allocation
        .filter(|a| a.pool == pool)
        .map(|a| a.owner)
}

/// Applies an entry with no command, as the leader's tick does.
fn tick(db: &mut Db) {
    db.apply(&[]);
}

#[test]
fn a_lease_ends_at_the_first_entry_stamped_at_or_after_its_end() {
    let mut db = Db::mem();
    db.create("p", "10.0.0.0/29");
    let (a, existing) = got(&mut db, lease("p", "vm", None, Some(30)));
    assert!(!existing);
    assert_eq!(a.ttl_seconds, Some(30));
    assert_eq!(a.expires_at, Some(Stamp(db.stamp + 30 * S)));
    assert_eq!(a.renewed_at, a.allocated_at);
    db.advance(30 * S - 1);
    tick(&mut db);
    assert!(db.state.expired().is_empty());
    assert_eq!(holder(&db, "p", "10.0.0.2").as_deref(), Some("vm"));
    db.advance(1);
    tick(&mut db);
    assert_eq!(db.state.expired().len(), 1);
    assert_eq!(db.state.expired()[0].allocation.owner, "vm");
    assert_eq!(holder(&db, "p", "10.0.0.2"), None);
    assert_eq!(db.state.pool("p").unwrap().stats.allocated, 0);
    // The index is empty again: nothing more is due.
    assert_eq!(ipam_core::state::next_expiry(&db.rtx()).unwrap(), None);
}

#[test]
fn expiry_runs_before_the_entrys_own_commands() {
    let mut db = Db::mem();
    db.create("p", "10.0.0.0/30"); // one allocatable address: .2 (gateway .1)
    got(&mut db, lease("p", "old", None, Some(10)));
    assert_eq!(
        err(&mut db, lease("p", "new", None, None)).code(),
        ErrorCode::PoolExhausted
    );
    db.advance(10 * S);
    let (a, _) = got(&mut db, lease("p", "new", None, None));
    assert_eq!(a.ip, "10.0.0.2".parse::<IpAddr>().unwrap());
    assert_eq!(a.owner, "new");
    assert_eq!(a.expires_at, None, "no ttl and no pool default: permanent");
}

#[test]
fn log_time_never_goes_back_and_survives_reopen() {
    let mut db = Db::mem();
    db.create("p", "10.0.0.0/29");
    db.advance(5 * S);
    tick(&mut db);
    let now = db.state.now();
    assert_eq!(now, Stamp(db.stamp));
    db.stamp -= 3 * S; // a new leader whose clock is behind
    let (a, _) = got(&mut db, lease("p", "vm", None, Some(10)));
    assert_eq!(
        a.allocated_at, now,
        "an older stamp does not move log time back"
    );
    assert_eq!(a.expires_at, Some(Stamp(now.0 + 10 * S)));
    db.reopen();
    assert_eq!(db.state.now(), now);
    assert_eq!(ipam_core::state::log_now(&db.rtx()).unwrap(), now);
}

#[test]
fn renewals_move_the_end_and_keep_the_generation() {
    let mut db = Db::mem();
    db.create("p", "10.0.0.0/29");
    let (a, _) = got(&mut db, lease("p", "vm", None, Some(20)));
    let ip = a.ip;
    db.advance(15 * S);
    let renew = |generation, ttl| Op::Renew {
        pool: "p".into(),
        ip,
        generation,
        ttl_seconds: ttl,
    };
    let (r, _) = got(&mut db, renew(Some(a.generation), None));
    assert_eq!(r.generation, a.generation);
    assert_eq!(r.expires_at, Some(Stamp(db.stamp + 20 * S)));
    assert_eq!(r.renewed_at, Stamp(db.stamp));
    assert_eq!(r.allocated_at, a.allocated_at);
    assert_eq!(
        err(&mut db, renew(Some(a.generation + 1), None)).code(),
        ErrorCode::GenerationMismatch
    );
    // Past the first end, still held.
    db.advance(10 * S);
    tick(&mut db);
    assert_eq!(holder(&db, "p", "10.0.0.2").as_deref(), Some("vm"));
    // A new length; then 0 makes it permanent.
    let (r, _) = got(&mut db, renew(None, Some(60)));
    assert_eq!(r.ttl_seconds, Some(60));
    let (r, _) = got(&mut db, renew(None, Some(0)));
    assert_eq!((r.ttl_seconds, r.expires_at), (None, None));
    db.advance(100 * S);
    tick(&mut db);
    assert_eq!(holder(&db, "p", "10.0.0.2").as_deref(), Some("vm"));
    // Renewing a permanent allocation only moves renewed_at.
    let (r, _) = got(&mut db, renew(None, None));
    assert_eq!((r.expires_at, r.renewed_at), (None, Stamp(db.stamp)));
    assert_eq!(
        err(
            &mut db,
            Op::Renew {
                pool: "p".into(),
                ip: "10.0.0.5".parse().unwrap(),
                generation: None,
                ttl_seconds: None
            }
        ),
        OpError::Release(ReleaseError::NotAllocated {
            pool: "p".into(),
            ip: "10.0.0.5".parse().unwrap()
        })
    );
    assert_eq!(
        err(&mut db, renew(None, Some(5))).code(),
        ErrorCode::InvalidArgument,
        "a ttl under 10 s"
    );
}

#[test]
fn allocating_again_as_the_holder_renews_the_lease() {
    let mut db = Db::mem();
    db.create("p", "10.0.0.0/29");
    let (a, _) = got(&mut db, lease("p", "vm", None, Some(30)));
    db.advance(20 * S);
    let (b, existing) = got(&mut db, lease("p", "vm", None, None));
    assert!(existing);
    assert_eq!(b.generation, a.generation);
    assert_eq!(b.expires_at, Some(Stamp(db.stamp + 30 * S)));
    // A v1 allocate renews too, with the lease's own length.
    db.advance(20 * S);
    let (c, existing) = got(&mut db, common::allocate("p", "vm", None));
    assert!(existing);
    assert_eq!(c.expires_at, Some(Stamp(db.stamp + 30 * S)));
    db.advance(29 * S);
    tick(&mut db);
    assert_eq!(holder(&db, "p", "10.0.0.2").as_deref(), Some("vm"));
}

#[test]
fn renew_owner_renews_every_lease_in_every_pool_and_leaves_permanent_ones() {
    let mut db = Db::mem();
    db.create("a", "10.0.0.0/29");
    db.create("b", "10.0.1.0/29");
    db.create("c", "10.0.2.0/29");
    got(&mut db, lease("a", "agent", None, Some(30)));
    got(&mut db, lease("b", "agent", None, Some(60)));
    got(&mut db, lease("c", "agent", None, None));
    got(&mut db, lease("a", "other", None, Some(30)));
    db.advance(25 * S);
    let renewed = match db.op(Op::RenewOwner {
        owner: "agent".into(),
    }) {
        Ok(OpOutput::RenewedOwner { renewed }) => renewed,
        other => panic!("{other:?}"),
    };
    let pools: Vec<_> = renewed.iter().map(|a| a.pool.as_str()).collect();
    assert_eq!(pools, ["a", "b"]);
    assert_eq!(renewed[0].expires_at, Some(Stamp(db.stamp + 30 * S)));
    assert_eq!(renewed[1].expires_at, Some(Stamp(db.stamp + 60 * S)));
    db.advance(10 * S);
    tick(&mut db);
    assert_eq!(holder(&db, "a", "10.0.0.2").as_deref(), Some("agent"));
    assert_eq!(
        holder(&db, "a", "10.0.0.3"),
        None,
        "the other owner's lease ended"
    );
    match db.op(Op::RenewOwner {
        owner: "nobody".into(),
    }) {
        Ok(OpOutput::RenewedOwner { renewed }) => assert!(renewed.is_empty()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_pool_default_ttl_applies_unless_the_request_names_one() {
    let mut db = Db::mem();
    db.create("p", "10.0.0.0/29");
    db.op(settings("p", Some(3600), 0)).unwrap();
    let (a, _) = got(&mut db, lease("p", "x", None, None));
    assert_eq!(a.ttl_seconds, Some(3600));
    let (b, _) = got(&mut db, common::allocate("p", "y", None));
    assert_eq!(
        b.ttl_seconds,
        Some(3600),
        "a v1 allocate gets the default too"
    );
    let (c, _) = got(&mut db, lease("p", "z", None, Some(0)));
    assert_eq!(c.expires_at, None);
    let (d, _) = got(&mut db, lease("p", "w", None, Some(10)));
    assert_eq!(d.ttl_seconds, Some(10));
    assert_eq!(
        err(&mut db, lease("p", "v", None, Some(9))).code(),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        err(&mut db, lease("p", "v", None, Some(31_536_001))).code(),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        err(&mut db, settings("p", None, 31_536_001)).code(),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        err(&mut db, settings("nope", None, 0)).code(),
        ErrorCode::PoolNotFound
    );
    db.reopen();
    let (e, _) = got(&mut db, lease("p", "u", None, None));
    assert_eq!(e.ttl_seconds, Some(3600), "settings survive a restart");
}

#[test]
fn cooling_addresses_wait_for_their_last_owner() {
    let mut db = Db::mem();
    db.create("p", "10.0.0.0/29"); // .2 to .6 allocatable
    db.op(settings("p", None, 600)).unwrap();
    let a = db.alloc("p", "a"); // .2
    let b = db.alloc("p", "b"); // .3
    db.op(release("p", &a.to_string(), None)).unwrap();
    assert_eq!(db.state.cooling("p"), Some(1));
    assert_eq!(ipam_core::state::cooling_count(&db.rtx(), "p").unwrap(), 1);
    // Another owner skips it while anything else is free.
    let c = db.alloc("p", "c");
    assert_eq!(c.to_string(), "10.0.0.4");
    // Naming it is refused for another owner.
    assert_eq!(
        err(&mut db, common::allocate("p", "d", Some("10.0.0.2"))),
        OpError::Allocate(AllocateError::CoolingDown {
            pool: "p".into(),
            ip: a,
            last_owner: "a".into()
        })
    );
    // The last owner gets it back by selection, as a new allocation.
    let (back, existing) = got(&mut db, common::allocate("p", "a", None));
    assert_eq!((back.ip, existing), (a, false));
    assert_eq!(db.state.cooling("p"), Some(0));
    // ... and by name.
    db.op(release("p", &b.to_string(), None)).unwrap();
    let (back, _) = got(&mut db, common::allocate("p", "b", Some("10.0.0.3")));
    assert_eq!(back.ip, b);
}

#[test]
fn the_oldest_cooling_address_is_used_only_when_nothing_else_is_free() {
    let mut db = Db::mem();
    db.create("p", "10.0.0.0/29"); // 5 addresses
    db.op(settings("p", None, 600)).unwrap();
    let ips: Vec<IpAddr> = (0..5).map(|i| db.alloc("p", &format!("o{i}"))).collect();
    db.advance(S);
    db.op(release("p", &ips[3].to_string(), None)).unwrap();
    db.advance(S);
    db.op(release("p", &ips[1].to_string(), None)).unwrap();
    assert_eq!(
        err(
            &mut db,
            common::allocate("p", "n1", Some(&ips[1].to_string()))
        )
        .code(),
        ErrorCode::AddressCoolingDown
    );
    assert_eq!(db.alloc("p", "n1"), ips[3], "released earliest goes first");
    assert_eq!(db.alloc("p", "n2"), ips[1]);
    assert_eq!(
        err(&mut db, common::allocate("p", "n3", None)).code(),
        ErrorCode::PoolExhausted
    );
}

#[test]
fn cooldown_ends_on_log_time_and_survives_reopen() {
    let mut db = Db::mem();
    db.create("p", "10.0.0.0/29");
    db.op(settings("p", None, 60)).unwrap();
    let a = db.alloc("p", "a");
    db.op(release("p", &a.to_string(), None)).unwrap();
    db.reopen();
    assert_eq!(db.state.cooling("p"), Some(1), "rebuilt from the table");
    assert_eq!(db.alloc("p", "x").to_string(), "10.0.0.3");
    db.advance(60 * S - 1);
    tick(&mut db);
    assert_eq!(db.state.cooling("p"), Some(1));
    db.advance(1);
    tick(&mut db);
    assert_eq!(db.state.cooling("p"), Some(0));
    assert_eq!(db.alloc("p", "y"), a, "free again: the lowest");
}

#[test]
fn an_expired_lease_cools_for_its_owner() {
    let mut db = Db::mem();
    db.create("p", "10.0.0.0/29");
    db.op(settings("p", Some(30), 300)).unwrap();
    let (a, _) = got(&mut db, lease("p", "agent", None, None));
    db.advance(30 * S);
    tick(&mut db);
    assert_eq!(db.state.expired().len(), 1);
    assert_eq!(db.state.cooling("p"), Some(1));
    assert_ne!(db.alloc("p", "other"), a.ip);
    db.advance(100 * S);
    let (back, existing) = got(&mut db, lease("p", "agent", None, None));
    assert_eq!((back.ip, existing), (a.ip, false));
    assert!(back.generation > a.generation);
}

#[test]
fn a_failed_batch_undoes_cooling_and_lease_changes() {
    let mut db = Db::mem();
    db.create("p", "10.0.0.0/29");
    db.op(settings("p", None, 600)).unwrap();
    let (a, _) = got(&mut db, lease("p", "a", None, Some(30)));
    let b = db.alloc("p", "b");
    db.op(release("p", &b.to_string(), None)).unwrap();
    let before = db.digest();
    let failed = db.batch(vec![
        release("p", &a.ip.to_string(), None),
        common::allocate("p", "b", None),
        lease("p", "c", None, Some(20)),
        Op::Renew {
            pool: "p".into(),
            ip: "10.0.0.6".parse().unwrap(),
            generation: None,
            ttl_seconds: None,
        },
    ]);
    assert_eq!(failed.unwrap_err().index, 3);
    assert_eq!(db.digest(), before);
    assert_eq!(db.state.cooling("p"), Some(1));
    let digest = db.digest();
    db.reopen();
    assert_eq!(db.digest(), digest);
    // The in-memory index matches the tables: same choices as a fresh open.
    assert_eq!(db.alloc("p", "z").to_string(), "10.0.0.4");
}

#[test]
fn deleting_a_pool_drops_its_leases_and_cooling_rows() {
    let mut db = Db::mem();
    db.create("p", "10.0.0.0/29");
    db.op(settings("p", None, 600)).unwrap();
    got(&mut db, lease("p", "a", None, Some(30)));
    let b = db.alloc("p", "b");
    db.op(release("p", &b.to_string(), None)).unwrap();
    db.op(Op::DeletePool {
        pool: "p".into(),
        force: true,
    })
    .unwrap();
    let rtx = db.rtx();
    for def in [tables::EXPIRY, tables::COOLING] {
        assert_eq!(rtx.open_table(def).unwrap().len().unwrap(), 0, "{def}");
    }
    db.advance(60 * S);
    tick(&mut db);
    // Recreated under the same name: a fresh pool, no settings, nothing cooling.
    db.create("p", "10.0.0.0/29");
    assert_eq!(db.alloc("p", "b").to_string(), "10.0.0.2");
    assert_eq!(db.state.cooling("p"), Some(0));
}

#[test]
fn version_1_allocation_bytes_read_as_permanent() {
    #[derive(serde::Serialize)]
    struct V1 {
        owner: String,
        generation: u64,
        allocated_at: Stamp,
        labels: Labels,
    }
    let mut bytes = vec![1u8];
    bytes.extend(
        postcard::to_stdvec(&V1 {
            owner: "vm".into(),
            generation: 4,
            allocated_at: Stamp(77),
            labels: Labels::new(),
        })
        .unwrap(),
    );
    let rec: AllocationRecord = decode("core_allocations", &bytes).unwrap();
    assert_eq!(
        (rec.ttl_seconds, rec.expires_at, rec.renewed_at),
        (None, None, Stamp(77))
    );
    assert_eq!(tables::encode(&rec).unwrap()[0], 2);
}

#[test]
fn results_carry_the_whole_allocation() {
    // Results are sent (leader to follower), never stored: they carry the lease fields and the
    // network configuration in every variant (docs/architecture.md, "Formats and upgrades").
    let a = Allocation {
        ip: "10.0.0.2".parse().unwrap(),
        pool: "p".into(),
        owner: "o".into(),
        generation: 1,
        allocated_at: Stamp(5),
        labels: Labels::new(),
        ttl_seconds: Some(30),
        expires_at: Some(Stamp(30_005)),
        renewed_at: Stamp(5),
        network: None,
        prefix: None,
    };
    for out in [
        OpOutput::Allocated {
            allocation: a.clone(),
            existing: false,
        },
        OpOutput::AllocatedV2 {
            allocation: a.clone(),
            existing: true,
        },
        OpOutput::Released(a.clone()),
        OpOutput::Renewed(a.clone()),
    ] {
        let back: OpOutput = postcard::from_bytes(&postcard::to_stdvec(&out).unwrap()).unwrap();
        assert_eq!(back, out);
    }
    let cmd = Command::Op(lease("p", "o", None, Some(30)));
    let back: Command = postcard::from_bytes(&postcard::to_stdvec(&cmd).unwrap()).unwrap();
    assert_eq!(back, cmd);
}

#[test]
fn the_digest_reads_version_1_rows_as_this_release_writes_them() {
    let mut old = Db::mem();
    old.create("p", "10.0.0.0/29");
    old.alloc("p", "vm");
    let new_digest = old.digest();
    // Rewrite the allocation row in release 0.1.0's format, as a data dir of that release holds.
    #[derive(serde::Serialize)]
    struct V1 {
        owner: String,
        generation: u64,
        allocated_at: Stamp,
        labels: Labels,
    }
    let txn = old.db.begin_write().unwrap();
    {
        let mut t = txn.open_table(tables::ALLOCATIONS).unwrap();
        let key = tables::allocation_key(0, 0x0a00_0002);
        let current: AllocationRecord = {
            let v = t.get(key.as_slice()).unwrap().expect("the row");
            decode("core_allocations", v.value()).unwrap()
        };
        let mut bytes = vec![1u8];
        bytes.extend(
            postcard::to_stdvec(&V1 {
                owner: current.owner,
                generation: current.generation,
                allocated_at: current.allocated_at,
                labels: current.labels,
            })
            .unwrap(),
        );
        t.insert(key.as_slice(), bytes.as_slice()).unwrap();
        // And the pool row as release 0.1.0 wrote it (pool record version 1).
        let mut pools = txn.open_table(tables::POOLS).unwrap();
        let key = tables::pool_key(0);
        let pool: tables::PoolRecord = {
            let v = pools.get(key.as_slice()).unwrap().expect("the pool row");
            decode("core_pools", v.value()).unwrap()
        };
        let mut bytes = vec![1u8];
        bytes.extend(
            postcard::to_stdvec(&tables::PoolRecordV1 {
                name: pool.name,
                cidr: pool.cidr,
                gateway: pool.gateway,
                reserved: pool.reserved,
                labels: pool.labels,
                description: pool.description,
                created_at: pool.created_at,
                capacity: pool.capacity,
                allocated: pool.allocated,
            })
            .unwrap(),
        );
        pools.insert(key.as_slice(), bytes.as_slice()).unwrap();
    }
    txn.commit().unwrap();
    assert_eq!(old.digest(), new_digest);
    old.reopen();
    assert_eq!(old.digest(), new_digest);
}

#[test]
fn next_free_lists_cooling_addresses_last_and_the_check_accepts_them() {
    let mut db = Db::mem();
    db.create("p", "10.0.0.0/29");
    db.op(settings("p", None, 600)).unwrap();
    let before = query::next_free(&db.rtx(), "p", 10).unwrap();
    let a = db.alloc("p", "a");
    assert_eq!(a, before[0]);
    got(&mut db, lease("p", "l", None, Some(30)));
    db.op(release("p", &a.to_string(), None)).unwrap();
    let after = query::next_free(&db.rtx(), "p", 10).unwrap();
    // The lease holds before[1]; the cooling address comes after every free one.
    let mut want: Vec<_> = before[2..].to_vec();
    want.push(a);
    assert_eq!(after, want);
    assert_eq!(
        query::next_free(&db.rtx(), "p", 1).unwrap(),
        vec![before[2]]
    );
    // A lease and a cooling address are consistent state, not problems.
    let problems = ipam_core::check::check(&db.state, &db.rtx()).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    // Once the cooldown ends, the address is free again, in address order.
    db.advance(601 * S);
    tick(&mut db);
    let free = query::next_free(&db.rtx(), "p", 10).unwrap();
    assert_eq!(free[0], a);
}

//! Reconcile through `apply`: a dry run (a read) writes nothing, a real run fixes exactly the
//! chosen classes in one command, a stale plan is refused, and the grace period is log time.

use std::net::IpAddr;

use crate::common::{allocate, ip, release, Db};
use ipam_core::drift::{Observed, ReconcileOptions, ReconcileReport, ReconcileSpec, SkipReason};
use ipam_core::{ErrorCode, Op, OpError, OpOutput};

fn seen(list: &[(&str, Option<&str>)]) -> Vec<Observed> {
    list.iter()
        .map(|(a, o)| Observed {
            ip: ip(a),
            owner: o.map(str::to_string),
        })
        .collect()
}

fn opts(adopt: bool, release: bool, fix: bool) -> ReconcileOptions {
    ReconcileOptions {
        adopt_unknown: adopt,
        release_missing: release,
        fix_mismatched: fix,
        grace_seconds: 300,
    }
}

fn run(
    db: &mut Db,
    observed: &[Observed],
    options: ReconcileOptions,
    as_of: Option<u64>,
) -> Result<ReconcileReport, OpError> {
    let spec = ReconcileSpec {
        pools: vec!["p".into()],
        observed: observed.to_vec(),
        options,
        as_of,
    };
    match db.op(Op::Reconcile(Box::new(spec)))? {
        OpOutput::Reconciled(r) => Ok(*r),
        other => panic!("unexpected {other:?}"),
    }
}

fn dry(db: &Db, observed: &[Observed], options: ReconcileOptions) -> ReconcileReport {
    ipam_core::state::dry_run(&db.rtx(), &["p".into()], observed, &options, None, None)
        .expect("storage")
        .expect("dry run")
}

fn holders(db: &Db) -> Vec<(IpAddr, String)> {
    let page = ipam_core::query::allocations(&db.rtx(), "p", None, None, 1000).expect("list");
    page.allocations
        .into_iter()
        .map(|a| (a.ip, a.owner))
        .collect()
}

/// Pool `p` 10.0.0.0/24 with a at .2, b at .3, c at .4, allocated 10 minutes of log time ago.
fn setup() -> Db {
    let mut db = Db::mem();
    db.create("p", "10.0.0.0/24");
    for o in ["a", "b", "c"] {
        db.alloc("p", o);
    }
    db.advance(600_000);
    // An entry with no command moves log time, as the leader's tick does.
    db.apply(&[]);
    db
}

#[test]
fn no_drift_plans_nothing() {
    let mut db = setup();
    let obs = seen(&[
        ("10.0.0.2", Some("a")),
        ("10.0.0.3", Some("b")),
        ("10.0.0.4", None),
    ]);
    let r = run(&mut db, &obs, opts(true, true, true), None).expect("run");
    assert_eq!(r.drift.in_sync, 3);
    assert!(r.adopted.is_empty() && r.released.is_empty() && r.reassigned.is_empty());
    assert!(r.skipped.is_empty());
}

#[test]
fn a_dry_run_writes_nothing_and_matches_the_real_run() {
    let mut db = setup();
    let obs = seen(&[
        ("10.0.0.2", Some("a")),
        ("10.0.0.3", Some("x")),
        ("10.0.0.9", Some("n")),
        ("10.9.9.9", None),
    ]);
    let before = db.digest();
    let plan = dry(&db, &obs, opts(true, true, true));
    assert_eq!(db.digest(), before, "a dry run is a read");
    assert_eq!(plan.adopted.len(), 1);
    assert_eq!(plan.released.len(), 1);
    assert_eq!(plan.reassigned.len(), 1);
    assert_eq!(plan.drift.outside, vec![ip("10.9.9.9")]);
    let real = run(&mut db, &obs, opts(true, true, true), None).expect("run");
    let key = |r: &ReconcileReport| {
        (
            r.adopted
                .iter()
                .map(|a| (a.ip, a.owner.clone()))
                .collect::<Vec<_>>(),
            r.released.iter().map(|a| a.ip).collect::<Vec<_>>(),
            r.reassigned
                .iter()
                .map(|a| (a.ip, a.owner.clone()))
                .collect::<Vec<_>>(),
            r.skipped.clone(),
            r.drift.clone(),
        )
    };
    assert_eq!(key(&plan), key(&real));
    assert_eq!(
        holders(&db),
        vec![
            (ip("10.0.0.2"), "a".to_string()),
            (ip("10.0.0.3"), "x".to_string()),
            (ip("10.0.0.9"), "n".to_string()),
        ]
    );
}

#[test]
fn each_class_alone_is_fixed_only_when_chosen() {
    // Unknown: adopted by default.
    let mut db = setup();
    let all = [
        ("10.0.0.2", Some("a")),
        ("10.0.0.3", Some("b")),
        ("10.0.0.4", Some("c")),
    ];
    let mut obs = seen(&all);
    obs.extend(seen(&[("10.0.0.20", Some("d"))]));
    let none = run(&mut db, &obs, opts(false, false, false), None).expect("run");
    assert_eq!(none.drift.unknown.len(), 1);
    assert!(none.adopted.is_empty());
    assert_eq!(holders(&db).len(), 3);
    let r = run(&mut db, &obs, ReconcileOptions::default(), None).expect("run");
    assert_eq!(r.adopted.len(), 1);
    assert_eq!(r.adopted[0].owner, "d");
    assert_eq!(r.adopted[0].expires_at, None);
    assert_eq!(holders(&db).len(), 4);

    // Missing: never released by default.
    let mut db = setup();
    let obs = seen(&all[..2]);
    let r = run(&mut db, &obs, ReconcileOptions::default(), None).expect("run");
    assert_eq!(r.drift.missing.len(), 1);
    assert!(r.released.is_empty());
    assert_eq!(holders(&db).len(), 3);
    let r = run(&mut db, &obs, opts(true, true, false), None).expect("run");
    assert_eq!(r.released.len(), 1);
    assert_eq!(r.released[0].ip, ip("10.0.0.4"));
    assert_eq!(holders(&db).len(), 2);

    // Mismatched: only with fix_mismatched; the new holder gets a new generation.
    let mut db = setup();
    let obs = seen(&[
        ("10.0.0.2", Some("a")),
        ("10.0.0.3", Some("z")),
        ("10.0.0.4", Some("c")),
    ]);
    let r = run(&mut db, &obs, opts(true, true, false), None).expect("run");
    assert_eq!(r.drift.mismatched.len(), 1);
    assert!(r.reassigned.is_empty());
    let old_generation = r.drift.mismatched[0].generation;
    let r = run(&mut db, &obs, opts(false, false, true), None).expect("run");
    assert_eq!(r.reassigned.len(), 1);
    assert_eq!(r.reassigned[0].owner, "z");
    assert!(r.reassigned[0].generation > old_generation);
    assert!(holders(&db).contains(&(ip("10.0.0.3"), "z".to_string())));
}

#[test]
fn all_classes_at_once_fixed_atomically() {
    let mut db = setup();
    let obs = seen(&[
        ("10.0.0.3", Some("q")),
        ("10.0.0.30", Some("a")),
        ("10.0.0.31", None),
        ("192.168.0.1", Some("far")),
    ]);
    let r = run(&mut db, &obs, opts(true, true, true), None).expect("run");
    assert_eq!(r.drift.unknown.len(), 2);
    assert_eq!(r.drift.missing.len(), 2);
    assert_eq!(r.drift.mismatched.len(), 1);
    assert_eq!(r.drift.outside.len(), 1);
    // a's stale .2 is released so it can adopt .30; .31 names no owner.
    assert_eq!(r.skipped.len(), 1);
    assert_eq!(r.skipped[0].reason, SkipReason::NoOwner);
    assert_eq!(
        holders(&db),
        vec![
            (ip("10.0.0.3"), "q".to_string()),
            (ip("10.0.0.30"), "a".to_string()),
        ]
    );
    // Fixed: the same inventory shows no drift but the unowned and the outside entry.
    let again = run(&mut db, &obs, opts(true, true, true), None).expect("run");
    assert!(again.drift.missing.is_empty() && again.drift.mismatched.is_empty());
    assert_eq!(again.drift.in_sync, 2);
}

#[test]
fn a_plan_is_stale_once_a_pool_changes_after_its_index() {
    let mut db = setup();
    let obs = seen(&[("10.0.0.2", Some("a"))]);
    let as_of = db.state.last_index();
    let plan = dry(&db, &obs, opts(true, true, false));
    assert_eq!(plan.released.len(), 2);
    // An unrelated pool changing does not make the plan stale...
    db.create("other", "10.1.0.0/24");
    db.alloc("other", "z");
    // ...an allocation in `p` between review and apply does.
    db.op(allocate("p", "late", None)).expect("allocate");
    let err = run(&mut db, &obs, opts(true, true, false), Some(as_of)).expect_err("stale");
    assert_eq!(err.code(), ErrorCode::PlanStale);
    assert_eq!(holders(&db).len(), 4, "a refused plan changes nothing");
    // A fresh review's index is accepted, and the new allocation is in grace.
    let as_of = db.state.last_index();
    let r = run(&mut db, &obs, opts(true, true, false), Some(as_of)).expect("fresh");
    assert_eq!(r.released.len(), 2);
    assert_eq!(r.skipped.len(), 1);
    assert_eq!(r.skipped[0].reason, SkipReason::InGrace);
    // A release is a change too; the index survives a restart.
    let as_of = db.state.last_index();
    db.op(release("p", "10.0.0.5", None)).expect("release");
    db.reopen();
    let err = run(&mut db, &obs, ReconcileOptions::default(), Some(as_of)).expect_err("stale");
    assert_eq!(err.code(), ErrorCode::PlanStale);
}

#[test]
fn grace_is_measured_on_log_time() {
    let mut db = Db::mem();
    db.create("p", "10.0.0.0/24");
    db.alloc("p", "young");
    let obs = seen(&[]);
    let r = run(&mut db, &obs, opts(false, true, false), None).expect("run");
    assert_eq!(r.skipped[0].reason, SkipReason::InGrace);
    db.advance(299_999);
    let r = run(&mut db, &obs, opts(false, true, false), None).expect("run");
    assert_eq!(r.skipped.len(), 1, "still within 300 s of log time");
    db.advance(1);
    let r = run(&mut db, &obs, opts(false, true, false), None).expect("run");
    assert_eq!(r.released.len(), 1);
}

#[test]
fn adoption_skips_what_allocation_would_refuse() {
    let mut db = setup();
    let obs = seen(&[
        ("10.0.0.0", Some("net")),
        ("10.0.0.1", Some("gw")),
        ("10.0.0.40", Some("a")),
        ("10.0.0.2", Some("a")),
    ]);
    let r = run(&mut db, &obs, ReconcileOptions::default(), None).expect("run");
    let reasons: Vec<SkipReason> = r.skipped.iter().map(|s| s.reason).collect();
    assert_eq!(
        reasons,
        vec![
            SkipReason::InvalidArgument,
            SkipReason::InvalidArgument,
            SkipReason::OwnerConflict
        ]
    );
    assert!(r.adopted.is_empty());
}

#[test]
fn bad_requests_are_refused_and_a_reconcile_is_no_batch_op() {
    let mut db = setup();
    let spec = |pools: Vec<String>| {
        Op::Reconcile(Box::new(ReconcileSpec {
            pools,
            observed: vec![],
            options: ReconcileOptions::default(),
            as_of: None,
        }))
    };
    let e = db.op(spec(vec!["nope".into()])).expect_err("no pool");
    assert_eq!(e.code(), ErrorCode::PoolNotFound);
    let e = db.op(spec(vec![])).expect_err("no pools");
    assert_eq!(e.code(), ErrorCode::InvalidArgument);
    let e = db.batch(vec![spec(vec!["p".into()])]).expect_err("batch");
    assert_eq!(e.error.code(), ErrorCode::InvalidArgument);
}

use ipam_core::{
    query, Command, CommandResult, GatewayChoice, Op, OpOutput, PoolSpec, Stamp, State,
};
use redb::ReadableDatabase;

#[test]
fn smoke() {
    let db = redb::Database::builder()
        .create_with_backend(redb::backends::InMemoryBackend::new())
        .unwrap();
    let mut st = State::open(&db).unwrap();
    let spec = PoolSpec {
        name: "vms".into(),
        cidr: "10.0.0.0/29".parse().unwrap(),
        gateway: GatewayChoice::Default,
        reserved: vec![],
        labels: Default::default(),
        description: String::new(),
    };
    let txn = db.begin_write().unwrap();
    let mut cmds = vec![Command::Op(Op::CreatePool(spec))];
    for i in 0..7 {
        cmds.push(Command::Op(Op::Allocate {
            pool: "vms".into(),
            owner: format!("o{i}"),
            ip: None,
            labels: Default::default(),
        }));
    }
    let r = st.apply(&txn, Stamp(5), &cmds).unwrap();
    txn.commit().unwrap();
    println!("{r:#?}");
    assert!(matches!(
        r[0],
        CommandResult::Op(Ok(OpOutput::PoolCreated(_)))
    ));
    let rtx = db.begin_read().unwrap();
    let p = query::pool(&rtx, "vms").unwrap();
    assert_eq!(p.stats.capacity, 5);
    assert_eq!(p.stats.allocated, 5);
    let page = query::allocations(&rtx, "vms", None, None, 2).unwrap();
    println!("{page:?}");
    println!(
        "{:?}",
        query::address(&rtx, "10.0.0.3".parse().unwrap()).unwrap()
    );
    println!("{:?}", query::owner_allocation(&rtx, "vms", "o1").unwrap());
    println!("{:?}", query::owner_allocations(&rtx, "o1").unwrap());
    let d = query::digest(&rtx).unwrap();
    drop(rtx);
    let st2 = State::open(&db).unwrap();
    assert_eq!(st2.generation(), 5);
    let _ = d;
}

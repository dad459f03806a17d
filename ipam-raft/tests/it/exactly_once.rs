//! Defect 1 of issue 12 at the raft layer: a follower resends its proposal to the leader after
//! `NotLeader` or a lost answer while the first copy commits anyway. The resend carries the
//! same request ids, so the leader's state machine answers it with the recorded result: an
//! unfenced release applied "twice" does not free the address of its next holder.

use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use ipam_core::requests::RequestId;
use ipam_core::{Command, Op};
use ipam_raft::{Config, Consistency, Ipam};
use tower::ServiceExt;

async fn leader(dir: &tempfile::TempDir) -> Ipam {
    let ipam = Ipam::start(Config::new(1, dir.path().join("n1"), "127.0.0.1:9"))
        .await
        .expect("start");
    ipam.init(Vec::new()).await.expect("init");
    ipam.wait_for(Duration::from_secs(20), |s| s.leader == Some(1))
        .await
        .expect("leader");
    ipam
}

/// What a follower sends to `/raft/propose` for `commands` (postcard of the command list).
async fn propose(ipam: &Ipam, commands: &[Command]) {
    let body = postcard::to_allocvec(&commands).expect("encode");
    let req = Request::post("/raft/propose")
        .body(Body::from(body))
        .expect("request");
    let resp = ipam.raft_router().oneshot(req).await.expect("call");
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_resent_proposal_applies_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let ipam = leader(&dir).await;
    ipam.create_pool(support::pools::vms("10.0.0.0/24"))
        .await
        .expect("pool");
    let (a, _) = ipam
        .allocate("vms", "a", None, BTreeMap::new())
        .await
        .expect("allocate a");
    let release = Command::Tagged {
        id: RequestId {
            node: 2,
            incarnation: 7,
            seq: 41,
        },
        key: None,
        command: Box::new(Command::Op(Op::Release {
            pool: "vms".into(),
            ip: a.ip,
            generation: None,
        })),
    };
    propose(&ipam, std::slice::from_ref(&release)).await;
    let (b, _) = ipam
        .allocate("vms", "b", None, BTreeMap::new())
        .await
        .expect("allocate b");
    assert_eq!(b.ip, a.ip, "the lowest free address again");
    // The follower's resend of the same proposal.
    propose(&ipam, &[release]).await;
    let held = ipam
        .address(a.ip, Consistency::Linearizable)
        .await
        .expect("address");
    assert_eq!(held.allocation.map(|x| x.owner).as_deref(), Some("b"));
    ipam.shutdown().await.expect("shutdown");
}

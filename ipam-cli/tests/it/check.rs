//! `ipam-cli check` against a 3-node cluster of in-process nodes: every member answers, the
//! digests agree at one applied index, and the exit status is 0; a member that cannot be
//! reached fails the check.

use crate::common;

use common::TestNode;

#[test]
fn every_member_agrees_at_one_applied_index() {
    let _serial = common::serial();
    let mut first = TestNode::start(None);
    let join = first.endpoint();
    let mut others = Vec::new();
    for id in [2, 3] {
        let join = join.clone();
        others.push(TestNode::start_with(
            None,
            move |c| {
                c.id = id;
                c.join = Some(join);
            },
            true,
        ));
    }
    first.ok(&["ip-pool", "create", "vms", "10.0.0.0/24"]);
    for owner in ["a", "b", "c"] {
        first.ok(&["ip", "allocate", "vms", "--owner", owner]);
    }
    // Wait until both joiners are voters (the check asks every member of the membership).
    first.wait_for_voters(3);

    let report = first.json(&["check"]);
    assert_eq!(report["consistent"], true, "{report}");
    let members = report["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{report}");
    let index = report["applied_index"].as_u64().unwrap();
    for m in members {
        assert_eq!(m["applied_index"].as_u64(), Some(index), "{report}");
        assert_eq!(m["digest"], members[0]["digest"], "{report}");
        assert_eq!(m["problems"], serde_json::json!([]), "{report}");
    }
    let text = others[0].ok(&["check"]);
    assert!(text.contains("consistent: 3 member(s) agree"), "{text}");

    // A member that is down: the check cannot pass.
    drop(others.pop());
    let err = first.fails(5, &["check", "--timeout", "5"]);
    assert!(err.contains("cannot reach"), "{err}");
}

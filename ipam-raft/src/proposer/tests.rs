//! The proposer's pure parts: filling entries, handing back results, bouncing forwarded lists,
//! the byte bound.

use super::*;
use ipam_core::{InputError, OpError};

fn result(i: usize) -> CommandResult {
    CommandResult::Op(Err(OpError::Input(InputError::InvalidLimit {
        limit: i as u64,
    })))
}

fn proposal(
    n: usize,
    forwarded: bool,
) -> (
    Proposal,
    oneshot::Receiver<Result<Vec<CommandResult>, WireError>>,
) {
    let (reply, rx) = Reply::new();
    let commands = vec![Command::Batch(Vec::new()); n];
    let p = Proposal {
        ops: n,
        bytes: 0,
        commands,
        forwarded,
        reply,
        span: tracing::Span::none(),
        _queued: QueuedBytes {
            counter: None,
            bytes: 0,
        },
    };
    (p, rx)
}

fn sizes(batch: &[Proposal]) -> Vec<(usize, bool)> {
    batch.iter().map(|p| (p.ops, p.forwarded)).collect()
}

#[test]
fn local_proposals_join_an_entry_up_to_the_op_cap() {
    let (tx, mut rx) = mpsc::channel(8);
    let (first, _r0) = proposal(2, false);
    let mut receivers = Vec::new();
    for n in [3, 4, 1] {
        let (p, r) = proposal(n, false);
        receivers.push(r);
        let _ = tx.try_send(p);
    }
    let (batch, carry) = fill_entry(first, &mut rx, 6, usize::MAX);
    assert_eq!(sizes(&batch), vec![(2, false), (3, false)]);
    assert_eq!(carry.map(|p| p.ops), Some(4));
}

#[test]
fn forwarded_lists_join_an_entry_whole() {
    let (tx, mut rx) = mpsc::channel(8);
    let (local, _r0) = proposal(1, false);
    let mut receivers = Vec::new();
    for (n, fwd) in [(3, true), (2, true), (1, false), (9, true)] {
        let (p, r) = proposal(n, fwd);
        receivers.push(r);
        let _ = tx.try_send(p);
    }
    let (batch, carry) = fill_entry(local, &mut rx, 8, usize::MAX);
    assert_eq!(
        sizes(&batch),
        vec![(1, false), (3, true), (2, true), (1, false)],
        "lists of both followers merged with the leader's own"
    );
    let big = carry.expect("the list that does not fit starts the next entry, unsplit");
    let (batch, carry) = fill_entry(big, &mut rx, 8, usize::MAX);
    assert_eq!(
        sizes(&batch),
        vec![(9, true)],
        "over the cap alone, not refused"
    );
    assert!(carry.is_none());
}

#[test]
fn each_caller_gets_its_own_results_in_order() {
    let (a, mut ra) = proposal(2, false);
    let (b, mut rb) = proposal(1, false);
    let (c, mut rc) = proposal(3, false);
    distribute(vec![a, b, c], (0..6).map(result).collect());
    assert_eq!(ra.try_recv().ok(), Some(Ok(vec![result(0), result(1)])));
    assert_eq!(rb.try_recv().ok(), Some(Ok(vec![result(2)])));
    assert_eq!(
        rc.try_recv().ok(),
        Some(Ok(vec![result(3), result(4), result(5)]))
    );
}

#[test]
fn a_wrong_result_count_fails_everyone() {
    let (a, mut ra) = proposal(2, false);
    let (b, mut rb) = proposal(1, false);
    distribute(vec![a, b], (0..2).map(result).collect());
    assert!(matches!(ra.try_recv(), Ok(Err(WireError::Internal(_)))));
    assert!(matches!(rb.try_recv(), Ok(Err(WireError::Internal(_)))));
}

#[test]
fn forwarded_proposals_are_sent_back_to_their_node() {
    let (a, mut ra) = proposal(1, true);
    let (b, mut rb) = proposal(1, false);
    let leader = Some((7, "127.0.0.1:7".to_string()));
    let kept = bounce_forwarded(vec![a, b], leader.clone());
    assert_eq!(kept.len(), 1);
    assert!(!kept[0].forwarded);
    assert_eq!(
        ra.try_recv().ok(),
        Some(Err(WireError::NotLeader { leader }))
    );
    assert!(rb.try_recv().is_err(), "the local one is still pending");
}

#[test]
fn the_queue_is_bounded_by_bytes() {
    let counter = Arc::new(AtomicUsize::new(0));
    let a = QueuedBytes::take(&counter, 600, 1000).expect("fits");
    assert!(
        QueuedBytes::take(&counter, 500, 1000).is_none(),
        "over the cap"
    );
    let b = QueuedBytes::take(&counter, 400, 1000).expect("exactly the cap");
    drop(a);
    assert_eq!(
        counter.load(Ordering::Relaxed),
        400,
        "given back when answered"
    );
    drop(b);
    let big = QueuedBytes::take(&counter, 5000, 1000);
    assert!(big.is_some(), "alone, a proposal over the cap still goes");
}

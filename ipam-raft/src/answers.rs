//! Early answers: a write's caller hears its results from this node's state machine as soon as
//! the transaction that applied them commits, instead of after openraft's round trip from the
//! state machine worker to the core and from the core to the proposer (two task hand-offs and
//! a core-loop turn on every write's serial path).
//!
//! The proposer registers the first request id of each proposal of an entry, with the number
//! of commands the proposal has (a proposal's commands are contiguous in the entry and never
//! split); once an apply's transaction committed, the state machine worker's task (not the
//! blocking thread that applied: a wake from there costs each waiter a trip through the
//! runtime's shared queue) hands every entry's commands and results to
//! [`EarlyAnswers::answer`], which sends a registered proposal its slice of the results. The
//! reply is a [`Reply`], shared with the proposer's own answer once openraft returns: whichever
//! comes first is the caller's, the other is dropped. Both are the result the state machine
//! decided for that request id, so they cannot differ.
//!
//! What a caller may observe after an early answer is what it observed before: the redb
//! transaction is committed, so a read of this replica sees the write; a linearizable read
//! waits for the applied index in openraft's metrics, published a moment later.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use ipam_core::requests::RequestId;
use ipam_core::{Command, CommandResult};
use tokio::sync::oneshot;

use crate::transport::rpc::WireError;

/// What a proposal's caller receives.
pub(crate) type Outcome = Result<Vec<CommandResult>, WireError>;

/// The one answer of a proposal, which whoever knows it first sends.
#[derive(Clone)]
pub(crate) struct Reply(Arc<Mutex<Option<oneshot::Sender<Outcome>>>>);

impl Reply {
    pub(crate) fn new() -> (Reply, oneshot::Receiver<Outcome>) {
        let (tx, rx) = oneshot::channel();
        (Reply(Arc::new(Mutex::new(Some(tx)))), rx)
    }

    /// Sends `outcome` unless the proposal was answered already.
    pub(crate) fn send(&self, outcome: Outcome) {
        let tx = self.0.lock().ok().and_then(|mut g| g.take());
        if let Some(tx) = tx {
            let _ = tx.send(outcome);
        }
    }
}

/// The proposals waiting on this node for their entry to be applied, by their first
/// request id.
#[derive(Default)]
pub(crate) struct EarlyAnswers {
    waiting: Mutex<HashMap<RequestId, (usize, Reply)>>,
    /// Registrations, read without the lock: most applies (every follower's, under a leader's
    /// load) have nobody to answer.
    count: AtomicUsize,
    /// Proposals answered here since start.
    answered: AtomicU64,
}

impl EarlyAnswers {
    /// Registers proposals — each its commands and its reply — until the returned guard drops.
    /// A proposal whose first command carries no request id is left to the proposer.
    pub(crate) fn register<'c>(
        &self,
        proposals: impl IntoIterator<Item = (&'c [Command], &'c Reply)>,
    ) -> Registration<'_> {
        let mut ids = Vec::new();
        if let Ok(mut waiting) = self.waiting.lock() {
            for (commands, reply) in proposals {
                if let Some(Command::Tagged { id, .. }) = commands.first() {
                    waiting.insert(*id, (commands.len(), reply.clone()));
                    ids.push(*id);
                }
            }
            self.count.store(waiting.len(), Ordering::Release);
        }
        Registration { early: self, ids }
    }

    /// Answers the registered proposals among an applied entry's `commands` with their share
    /// of `results` (one per command, in order).
    pub(crate) fn answer(&self, commands: &[Command], results: &[CommandResult]) {
        if self.count.load(Ordering::Acquire) == 0 || commands.len() != results.len() {
            return;
        }
        let mut found = Vec::new();
        if let Ok(mut waiting) = self.waiting.lock() {
            for (i, command) in commands.iter().enumerate() {
                if let Command::Tagged { id, .. } = command {
                    if let Some((n, reply)) = waiting.remove(id) {
                        if let Some(mine) = results.get(i..i + n) {
                            found.push((reply, mine.to_vec()));
                        }
                    }
                }
            }
            self.count.store(waiting.len(), Ordering::Release);
        }
        // Outside the lock: a send wakes the caller's task.
        self.answered
            .fetch_add(found.len() as u64, Ordering::Relaxed);
        for (reply, mine) in found {
            reply.send(Ok(mine));
        }
    }
}

impl EarlyAnswers {
    /// Proposals answered by this node's apply since start.
    pub(crate) fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }
}

/// Removes its proposals' registrations when dropped (answered or not).
pub(crate) struct Registration<'a> {
    early: &'a EarlyAnswers,
    ids: Vec<RequestId>,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        if self.ids.is_empty() {
            return;
        }
        if let Ok(mut waiting) = self.early.waiting.lock() {
            for id in &self.ids {
                waiting.remove(id);
            }
            self.early.count.store(waiting.len(), Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipam_core::{InputError, Op, OpError};

    fn tagged(seq: u64) -> Command {
        Command::Tagged {
            id: RequestId {
                node: 1,
                incarnation: 1,
                seq,
            },
            key: None,
            command: Box::new(Command::Batch(Vec::new())),
        }
    }

    fn result(i: u64) -> CommandResult {
        CommandResult::Op(Err(OpError::Input(InputError::InvalidLimit { limit: i })))
    }

    #[test]
    fn each_registered_proposal_gets_its_slice_once() {
        let early = EarlyAnswers::default();
        let a = [tagged(1), tagged(2)];
        let b = [tagged(3)];
        let (ra, mut rxa) = Reply::new();
        let (rb, mut rxb) = Reply::new();
        let guard = early.register([(&a[..], &ra), (&b[..], &rb)]);
        // The entry: a level raise first (untagged), then both proposals and a stranger's.
        let entry = [
            Command::Op(Op::SetFeatureLevel(2)),
            a[0].clone(),
            a[1].clone(),
            b[0].clone(),
            tagged(9),
        ];
        let results: Vec<_> = (0..5).map(result).collect();
        early.answer(&entry, &results);
        assert_eq!(rxa.try_recv().ok(), Some(Ok(vec![result(1), result(2)])));
        assert_eq!(rxb.try_recv().ok(), Some(Ok(vec![result(3)])));
        // The proposer's own answer comes later and is dropped.
        ra.send(Err(WireError::NoLeader));
        assert!(rxa.try_recv().is_err());
        assert_eq!(early.count.load(Ordering::Relaxed), 0);
        assert_eq!(early.answered(), 2);
        drop(guard);
    }

    #[test]
    fn the_guard_removes_what_was_never_applied() {
        let early = EarlyAnswers::default();
        let a = [tagged(1)];
        let (ra, mut rxa) = Reply::new();
        drop(early.register([(&a[..], &ra)]));
        assert_eq!(early.count.load(Ordering::Relaxed), 0);
        early.answer(&a, &[result(0)]);
        assert!(rxa.try_recv().is_err(), "nobody waits any more");
        ra.send(Err(WireError::NoLeader));
        assert_eq!(rxa.try_recv().ok(), Some(Err(WireError::NoLeader)));
    }

    #[test]
    fn a_result_count_that_does_not_match_answers_nobody() {
        let early = EarlyAnswers::default();
        let a = [tagged(1), tagged(2)];
        let (ra, mut rxa) = Reply::new();
        let _guard = early.register([(&a[..], &ra)]);
        early.answer(&a, &[result(0)]);
        assert!(rxa.try_recv().is_err());
    }
}

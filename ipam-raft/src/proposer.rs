//! Coalescing: many concurrent requests become one log entry, and many concurrent read
//! barriers one leadership check.
//!
//! openraft 0.9.25's leader appends and fsyncs one entry at a time, so throughput comes only
//! from putting many commands in one entry. Callers push [`Proposal`]s into a bounded queue;
//! one task takes everything queued (up to the op and byte caps) and proposes it as one entry
//! — with `client_write` on the leader, or as one `/raft/propose` call to the leader on a
//! follower. A lone request goes out at once; requests arriving meanwhile wait for the next
//! entry (up to `max_inflight_entries` entries are in flight). On the leader, a follower's
//! forwarded list joins the next entry whole — never split or re-checked command by command
//! (it was sized and coalesced on the follower) — beside the leader's own proposals and the
//! other followers' lists: with clients spread over three nodes, an entry per list would
//! triple the entries (each a fsync on every replica and four RPCs) for the same work.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ipam_core::{Command, CommandResult, Op};
use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tracing::Instrument as _;

use crate::answers::Reply;
use crate::route::{self, Attempt, Step};
use crate::shared::Shared;
use crate::transport::client::PostError;
use crate::transport::rpc::{ProposeRequest, WireError, PROPOSE};
use crate::types::Request;

mod barrier;

use barrier::BarrierRequest;

/// The queues of the proposer and barrier tasks. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Proposer {
    queue: mpsc::Sender<Proposal>,
    barrier: mpsc::Sender<BarrierRequest>,
    shared: Arc<Shared>,
    /// Encoded bytes of the proposals queued or in flight (bounded by `queue_bytes`).
    queued_bytes: Arc<AtomicUsize>,
    /// Entries in flight (`max_inflight_entries` permits), shared with the proposer task.
    inflight: Arc<Semaphore>,
    /// The node's stop signal: a stopped node answers `ShuttingDown` at once, also to a
    /// lone request that would otherwise look for a leader on its own.
    shutdown: watch::Receiver<bool>,
}

/// A proposal's share of [`Proposer::queued_bytes`], given back when the proposal is dropped
/// (answered).
pub(crate) struct QueuedBytes {
    counter: Option<Arc<AtomicUsize>>,
    bytes: usize,
}

impl Drop for QueuedBytes {
    fn drop(&mut self) {
        if let Some(c) = &self.counter {
            c.fetch_sub(self.bytes, Ordering::Relaxed);
        }
    }
}

impl QueuedBytes {
    /// Takes `bytes` of `counter` unless that would pass `cap` (a lone proposal always fits,
    /// so one larger than the cap is not refused forever).
    fn take(counter: &Arc<AtomicUsize>, bytes: usize, cap: usize) -> Option<QueuedBytes> {
        let mut cur = counter.load(Ordering::Relaxed);
        loop {
            if cur > 0 && cur.saturating_add(bytes) > cap {
                return None;
            }
            match counter.compare_exchange_weak(
                cur,
                cur + bytes,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Some(QueuedBytes {
                        counter: Some(counter.clone()),
                        bytes,
                    })
                }
                Err(now) => cur = now,
            }
        }
    }
}

impl Proposer {
    /// Starts the proposer and barrier tasks; they stop at `shutdown`.
    pub(crate) fn spawn(shared: Arc<Shared>, shutdown: &watch::Receiver<bool>) -> Proposer {
        let capacity = shared.config.queue_capacity;
        let (queue, queue_rx) = mpsc::channel(capacity);
        let (barrier, barrier_rx) = mpsc::channel(capacity);
        let inflight = Arc::new(Semaphore::new(shared.config.max_inflight_entries.max(1)));
        tokio::spawn(run_proposer(
            shared.clone(),
            queue_rx,
            inflight.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(barrier::run_barrier(
            shared.clone(),
            barrier_rx,
            shutdown.clone(),
        ));
        Proposer {
            queue,
            barrier,
            shared,
            queued_bytes: Arc::new(AtomicUsize::new(0)),
            inflight,
            shutdown: shutdown.clone(),
        }
    }

    /// Queues `commands` for the next entry and waits for their results. `forwarded` commands
    /// (a follower's `/raft/propose`) are proposed as one entry of their own.
    ///
    /// A local command gets its request id here, once: every resend of it (to another leader,
    /// after a lost forward) carries the same id, so the state machine applies it at most
    /// once. A forwarded list carries its node's ids already.
    pub(crate) async fn propose(
        &self,
        commands: Vec<Command>,
        forwarded: bool,
    ) -> Result<Vec<CommandResult>, WireError> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let commands = if forwarded {
            commands
        } else {
            commands
                .into_iter()
                .map(|c| self.shared.ids.tag(c))
                .collect()
        };
        let size: usize = commands
            .iter()
            .map(|c| {
                postcard::serialize_with_flavor(c, postcard::ser_flavors::Size::default())
                    .unwrap_or(0)
            })
            .sum();
        let queued = QueuedBytes::take(&self.queued_bytes, size, self.shared.config.queue_bytes)
            .ok_or(WireError::Overloaded)?;
        let ops = commands.iter().map(Command::op_count).sum();
        let (reply, mut rx) = Reply::new();
        let proposal = Proposal {
            commands,
            ops,
            bytes: size,
            forwarded,
            reply,
            span: tracing::Span::current(),
            _queued: queued,
        };
        // A lone request skips the queue: with nothing queued and an entry slot free, the
        // proposer task would make it an entry of its own at once anyway, so the caller's task
        // proposes it itself — two task hand-offs fewer on the serial path of a lone write
        // (1-client rate +2–7 %, `docs/performance.md`). A caller that goes away mid-write (a
        // closed connection, a timeout) may leave it unproposed or applied, as a lost answer
        // would; its slot is freed with it.
        if *self.shutdown.borrow() {
            return Err(WireError::ShuttingDown);
        }
        if self.queue.capacity() == self.queue.max_capacity() {
            if let Ok(permit) = self.inflight.clone().try_acquire_owned() {
                let batch = vec![proposal];
                let span = write_span(&batch);
                let shared = self.shared.clone();
                let mut write = Box::pin(
                    async move {
                        replicate(&shared, batch).await;
                        drop(permit);
                    }
                    .instrument(span),
                );
                tokio::select! {
                    biased;
                    () = &mut write => {}
                    // Answered by the apply before openraft returned (`crate::answers`): the
                    // rest of the write (openraft's answer, the slot) finishes on its own task.
                    answer = &mut rx => {
                        tokio::spawn(write);
                        return answer.unwrap_or(Err(WireError::ShuttingDown));
                    }
                }
                return rx.await.unwrap_or(Err(WireError::ShuttingDown));
            }
        }
        match self.queue.try_send(proposal) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => return Err(WireError::Overloaded),
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(WireError::ShuttingDown),
        }
        rx.await.unwrap_or(Err(WireError::ShuttingDown))
    }

    /// The log index a linearizable read must wait for (coalesced with concurrent callers).
    /// A full barrier queue is `Overloaded` at once: waiting for room would only queue the
    /// caller behind a backlog it cannot see.
    pub(crate) async fn read_index(&self, forwarded: bool) -> Result<Option<u64>, WireError> {
        let (tx, rx) = oneshot::channel();
        self.barrier
            .try_send(BarrierRequest {
                forwarded,
                reply: tx,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => WireError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => WireError::ShuttingDown,
            })?;
        rx.await.unwrap_or(Err(WireError::ShuttingDown))
    }
}

/// A caller's commands waiting in the proposer queue.
pub(crate) struct Proposal {
    pub(crate) commands: Vec<Command>,
    pub(crate) ops: usize,
    pub(crate) bytes: usize,
    /// Came from another node's `/raft/propose`: never forwarded again (the sender retries).
    pub(crate) forwarded: bool,
    /// Sent by whoever knows the results first: this node's apply (`crate::answers`) or the
    /// proposer once openraft returns.
    pub(crate) reply: Reply,
    /// The caller's span: the entry's `raft.write` span is its child (of the first proposal's;
    /// the others' follow from it).
    pub(crate) span: tracing::Span,
    pub(crate) _queued: QueuedBytes,
}

fn waited(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The proposer task: drains the queue into entries until shutdown.
async fn run_proposer(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Proposal>,
    inflight: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) {
    let max_ops = shared.config.max_ops_per_entry.max(1);
    let max_bytes = shared.config.max_entry_bytes.max(1);
    let mut carry: Option<Proposal> = None;
    loop {
        let first = match carry.take() {
            Some(p) => p,
            None => tokio::select! {
                p = rx.recv() => match p {
                    Some(p) => p,
                    None => return,
                },
                _ = shutdown.changed() => return,
            },
        };
        // Wait for a free slot before draining, so everything queued meanwhile joins this entry.
        let permit = tokio::select! {
            p = inflight.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = shutdown.changed() => return,
        };
        let (batch, rest) = fill_entry(first, &mut rx, max_ops, max_bytes);
        carry = rest;
        let shared = shared.clone();
        let span = write_span(&batch);
        tokio::spawn(
            async move {
                replicate(&shared, batch).await;
                drop(permit);
            }
            .instrument(span),
        );
    }
}

/// The proposals of one entry: `first` and whatever is queued behind it, up to the caps; the
/// first proposal that does not fit is returned to start the next entry. Proposals are never
/// split, so a follower's forwarded list goes into one entry whole (alone if it fills the
/// caps by itself).
fn fill_entry(
    first: Proposal,
    rx: &mut mpsc::Receiver<Proposal>,
    max_ops: usize,
    max_bytes: usize,
) -> (Vec<Proposal>, Option<Proposal>) {
    let (mut ops, mut bytes) = (first.ops, first.bytes);
    let mut batch = vec![first];
    while ops < max_ops && bytes < max_bytes {
        let Ok(p) = rx.try_recv() else { break };
        if ops + p.ops > max_ops || bytes + p.bytes > max_bytes {
            return (batch, Some(p));
        }
        ops += p.ops;
        bytes += p.bytes;
        batch.push(p);
    }
    (batch, None)
}

/// The span of one entry's write, a child of its first caller's span.
fn write_span(batch: &[Proposal]) -> tracing::Span {
    let Some(first) = batch.first() else {
        return tracing::Span::none();
    };
    let ops: usize = batch.iter().map(|p| p.ops).sum();
    let span = tracing::info_span!(
        parent: &first.span,
        "raft.write",
        proposals = batch.len(),
        ops,
        index = tracing::field::Empty,
    );
    for p in &batch[1..] {
        span.follows_from(&p.span);
    }
    span
}

fn fail_all(batch: Vec<Proposal>, err: WireError) {
    for p in batch {
        p.reply.send(Err(err.clone()));
    }
}

fn distribute(batch: Vec<Proposal>, mut results: Vec<CommandResult>) {
    let total: usize = batch.iter().map(|p| p.commands.len()).sum();
    if results.len() != total {
        let msg = format!(
            "entry returned {} results for {total} commands",
            results.len()
        );
        fail_all(batch, WireError::Internal(msg));
        return;
    }
    // Hand back from the end so each split is O(own length).
    for p in batch.into_iter().rev() {
        let mine = results.split_off(results.len() - p.commands.len());
        p.reply.send(Ok(mine));
    }
}

/// Sends back every forwarded proposal (the sending node retries against `leader`) and keeps
/// the local ones.
fn bounce_forwarded(batch: Vec<Proposal>, leader: Option<(u64, String)>) -> Vec<Proposal> {
    let (fwd, local): (Vec<_>, Vec<_>) = batch.into_iter().partition(|p| p.forwarded);
    fail_all(fwd, WireError::NotLeader { leader });
    local
}

fn commands_of(batch: &[Proposal]) -> Vec<Command> {
    batch
        .iter()
        .flat_map(|p| p.commands.iter().cloned())
        .collect()
}

/// Proposes `batch` as one entry, through whichever node leads, retrying across leader
/// changes until the write deadline ([`route::decide`]).
async fn replicate(shared: &Shared, mut batch: Vec<Proposal>) {
    let start = Instant::now();
    let deadline = start + shared.config.write_deadline;
    let expired = || WireError::DeadlineExceeded {
        waited_ms: waited(start),
    };
    let mut last = Attempt::Fresh;
    loop {
        if batch.is_empty() {
            return;
        }
        match route::decide(shared.target(), Instant::now(), deadline, last) {
            Step::Expired => return fail_all(batch, expired()),
            Step::Pause(d) => {
                tokio::time::sleep(d).await;
                last = Attempt::Fresh;
            }
            Step::Local => {
                let commands = commands_of(&batch);
                let level = crate::feature::level_for(shared, &commands, deadline).await;
                let (mut commands, refused) = crate::feature::gate(commands, level);
                if commands.is_empty() {
                    let all = refused.into_iter().flatten().collect();
                    return distribute(batch, all);
                }
                // Every member knows a higher level than the replicated one: raise it first
                // in this entry, so what the new level adds (the event log) starts here on every
                // replica. Two entries in flight may both carry it; the second changes nothing.
                let raise = level > shared.sm.applied_level.load(Ordering::Relaxed);
                if raise {
                    commands.insert(0, Command::Op(Op::SetFeatureLevel(level)));
                }
                let req = Request {
                    stamp: shared.clock.next(),
                    commands,
                };
                // Each proposal's commands are contiguous in the entry unless some were
                // refused here: only then can the apply tell a proposal's results apart.
                let _early = refused.iter().all(Option::is_none).then(|| {
                    shared
                        .sm
                        .early
                        .register(batch.iter().map(|p| (&p.commands[..], &p.reply)))
                });
                let remaining = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(remaining, shared.raft.client_write(req)).await {
                    Err(_) => return fail_all(batch, expired()),
                    Ok(Ok(resp)) => {
                        tracing::Span::current().record("index", resp.log_id.index);
                        crate::trace::emit_apply(&shared.sm.applies, resp.log_id.index);
                        let mut results = resp.data;
                        if raise && !results.is_empty() {
                            results.remove(0);
                        }
                        return distribute(batch, crate::feature::merge(refused, results));
                    }
                    Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
                        last = Attempt::Failed;
                    }
                    Ok(Err(RaftError::APIError(e))) => {
                        return fail_all(batch, WireError::Internal(e.to_string()));
                    }
                    Ok(Err(RaftError::Fatal(_))) => {
                        // This node stops; the entry may already be in the log and commit
                        // under the next leader: the caller must hear that it may apply.
                        return fail_all(batch, expired());
                    }
                }
            }
            Step::Forward(id, addr) => {
                batch = bounce_forwarded(batch, Some((id, addr.clone())));
                if batch.is_empty() {
                    return;
                }
                // A leader on an older release cannot even decode a newer command: lower or
                // refuse here what it reported it cannot take (it gates the rest itself).
                let own = shared.config.feature_level;
                let level = shared.net.level_of(&addr).unwrap_or(own).min(own);
                let (commands, refused) = crate::feature::gate(commands_of(&batch), level);
                if commands.is_empty() {
                    return distribute(batch, refused.into_iter().flatten().collect());
                }
                let req = ProposeRequest { commands };
                let remaining = deadline.saturating_duration_since(Instant::now());
                let res: Result<Result<Vec<CommandResult>, WireError>, PostError> =
                    shared.net.post(&addr, PROPOSE, &req, remaining).await;
                match res {
                    Ok(Ok(results)) => {
                        return distribute(batch, crate::feature::merge(refused, results));
                    }
                    Ok(Err(WireError::NotLeader { .. } | WireError::NoLeader)) => {
                        last = Attempt::Failed;
                    }
                    Ok(Err(e)) => return fail_all(batch, e),
                    // Never delivered: safe to retry, the leader may be changing.
                    Err(
                        PostError::Connect { .. } | PostError::Isolated | PostError::Status { .. },
                    ) => last = Attempt::Failed,
                    // Delivered or not, unknown: the write may still apply.
                    Err(_) => return fail_all(batch, expired()),
                }
            }
            Step::WaitForLeader => {
                batch = bounce_forwarded(batch, None);
                if batch.is_empty() {
                    return;
                }
                if !shared.wait_for_leader(deadline).await {
                    return fail_all(batch, WireError::NoLeader);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;

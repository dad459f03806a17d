//! The barrier task (of [`super::Proposer`]): many concurrent read barriers become one leadership check (on the
//! leader: openraft's read index; on a follower: one `/raft/read-index` call to the leader),
//! retried across leader changes until the read deadline ([`route::decide`]).

use std::sync::Arc;
use std::time::Instant;

use openraft::error::{CheckIsLeaderError, RaftError};
use tokio::sync::{mpsc, oneshot, watch};

use crate::route::{self, Attempt, Step};
use crate::shared::Shared;
use crate::transport::client::PostError;
use crate::transport::rpc::{WireError, READ_INDEX};

/// A caller waiting for a read index.
pub(crate) struct BarrierRequest {
    pub(crate) forwarded: bool,
    pub(crate) reply: oneshot::Sender<Result<Option<u64>, WireError>>,
}

/// The barrier task: one leadership check serves every barrier request queued before it.
pub(super) async fn run_barrier(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<BarrierRequest>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let first = tokio::select! {
            r = rx.recv() => match r {
                Some(r) => r,
                None => return,
            },
            _ = shutdown.changed() => return,
        };
        let mut group = vec![first];
        while let Ok(r) = rx.try_recv() {
            group.push(r);
        }
        fetch_read_index(&shared, group).await;
    }
}

fn answer(group: Vec<BarrierRequest>, res: Result<Option<u64>, WireError>) {
    for r in group {
        let _ = r.reply.send(res.clone());
    }
}

fn bounce_barriers(
    group: Vec<BarrierRequest>,
    leader: Option<(u64, String)>,
) -> Vec<BarrierRequest> {
    let (fwd, local): (Vec<_>, Vec<_>) = group.into_iter().partition(|r| r.forwarded);
    answer(fwd, Err(WireError::NotLeader { leader }));
    local
}

async fn fetch_read_index(shared: &Shared, mut group: Vec<BarrierRequest>) {
    let deadline = Instant::now() + shared.config.read_deadline;
    let mut last = Attempt::Fresh;
    loop {
        if group.is_empty() {
            return;
        }
        match route::decide(shared.target(), Instant::now(), deadline, last) {
            // No quorum confirmed this node's (or anyone's) leadership in time.
            Step::Expired => return answer(group, Err(WireError::NoLeader)),
            Step::Pause(d) => {
                tokio::time::sleep(d).await;
                last = Attempt::Fresh;
            }
            Step::Local => {
                let remaining = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(remaining, shared.raft.get_read_log_id()).await {
                    Err(_) => return answer(group, Err(WireError::NoLeader)),
                    Ok(Ok((read, _applied))) => {
                        let index = read.map(|l| l.index).max(shared.read_floor());
                        return answer(group, Ok(index));
                    }
                    Ok(Err(RaftError::APIError(
                        CheckIsLeaderError::ForwardToLeader(_)
                        | CheckIsLeaderError::QuorumNotEnough(_),
                    ))) => last = Attempt::Failed,
                    Ok(Err(RaftError::Fatal(_))) => {
                        return answer(group, Err(WireError::ShuttingDown));
                    }
                }
            }
            Step::Forward(id, addr) => {
                group = bounce_barriers(group, Some((id, addr.clone())));
                if group.is_empty() {
                    return;
                }
                let remaining = deadline.saturating_duration_since(Instant::now());
                let res: Result<Result<Option<u64>, WireError>, PostError> =
                    shared.net.post(&addr, READ_INDEX, &(), remaining).await;
                match res {
                    Ok(Ok(index)) => return answer(group, Ok(index)),
                    // A read changes nothing: every failure to reach the leader is retried.
                    Ok(Err(WireError::NotLeader { .. } | WireError::NoLeader)) | Err(_) => {
                        last = Attempt::Failed;
                    }
                    Ok(Err(e)) => return answer(group, Err(e)),
                }
            }
            Step::WaitForLeader => {
                group = bounce_barriers(group, None);
                if group.is_empty() {
                    return;
                }
                if !shared.wait_for_leader(deadline).await {
                    return answer(group, Err(WireError::NoLeader));
                }
            }
        }
    }
}

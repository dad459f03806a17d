//! Membership changes: add a learner (and wait until it caught up), promote, set the voters,
//! remove a member. They run on the leader; any other node forwards them there (`/raft/admin`)
//! and retries across leader changes until the membership deadline.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::ChangeMembers;

use crate::route::{self, Attempt, Step, RETRY_PAUSE};
use crate::shared::Shared;
use crate::transport::client::PostError;
use crate::transport::rpc::{AdminRequest, WireError, ADMIN, HELLO};
use crate::types::{Node, NodeId};

/// How long a promotion waits for the learner to catch up (the contract's 5 s).
const PROMOTE_CATCH_UP: Duration = Duration::from_secs(5);

fn wire_from_write(e: RaftError<NodeId, ClientWriteError<NodeId, Node>>) -> WireError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => WireError::NotLeader {
            leader: f.leader_id.zip(f.leader_node.map(|n| n.addr)),
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(
            ChangeMembershipError::LearnerNotFound(l),
        )) => WireError::UnknownNode(l.node_id),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            WireError::Membership(e.to_string())
        }
        RaftError::Fatal(_) => WireError::ShuttingDown,
    }
}

impl Shared {
    /// Runs a membership change on the leader, forwarding it there from any other node
    /// (retrying as [`route::decide`] says until the membership deadline).
    pub(crate) async fn admin(&self, req: AdminRequest, forwarded: bool) -> Result<(), WireError> {
        let start = Instant::now();
        let deadline = start + self.config.membership_deadline;
        let mut last = Attempt::Fresh;
        loop {
            match route::decide(self.target(), Instant::now(), deadline, last) {
                Step::Expired => return Err(WireError::NoLeader),
                Step::Pause(d) => {
                    tokio::time::sleep(d).await;
                    last = Attempt::Fresh;
                }
                Step::Local => match self.admin_local(&req, deadline).await {
                    Err(WireError::NotLeader { .. }) if !forwarded => last = Attempt::Failed,
                    other => return other,
                },
                Step::Forward(id, addr) => {
                    if forwarded {
                        return Err(WireError::NotLeader {
                            leader: Some((id, addr)),
                        });
                    }
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    let res: Result<Result<(), WireError>, PostError> =
                        self.net.post(&addr, ADMIN, &req, remaining).await;
                    match res {
                        Ok(Err(WireError::NotLeader { .. } | WireError::NoLeader))
                        | Err(PostError::Connect { .. } | PostError::Status { .. }) => {
                            last = Attempt::Failed;
                        }
                        Ok(other) => return other,
                        Err(PostError::Isolated) => return Err(WireError::NoLeader),
                        Err(_) => {
                            return Err(WireError::DeadlineExceeded {
                                waited_ms: u64::try_from(start.elapsed().as_millis())
                                    .unwrap_or(u64::MAX),
                            })
                        }
                    }
                }
                Step::WaitForLeader => {
                    if forwarded || !self.wait_for_leader(deadline).await {
                        return Err(WireError::NoLeader);
                    }
                }
            }
        }
    }

    async fn change(
        &self,
        changes: ChangeMembers<NodeId, Node>,
        retain: bool,
        deadline: Instant,
    ) -> Result<(), WireError> {
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let res = tokio::time::timeout(
                remaining,
                self.raft.change_membership(changes.clone(), retain),
            )
            .await;
            match res {
                Err(_) => return Err(self.membership_expired()),
                Ok(Ok(resp)) => {
                    // openraft answers before it publishes the metrics of that apply; the
                    // callers read the membership from the metrics right after (the next step
                    // of a removal, the status an API call returns), so wait for them.
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    return self
                        .raft
                        .wait(Some(remaining.max(Duration::from_millis(1))))
                        .applied_index_at_least(Some(resp.log_id.index), "membership applied")
                        .await
                        .map(|_| ())
                        .map_err(|_| self.membership_expired());
                }
                // Another change (for example a concurrent join) is still in progress.
                Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                    ChangeMembershipError::InProgress(_),
                )))) if Instant::now() < deadline => {
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Ok(Err(e)) => return Err(wire_from_write(e)),
            }
        }
    }

    /// Refuses to add a learner that answers at `addr` as another node, or refuses this
    /// cluster's token or id; one that does not answer yet is added (it may still be starting)
    /// and the catch-up wait bounds the call.
    async fn check_newcomer(&self, id: NodeId, addr: &str) -> Result<(), WireError> {
        let res: Result<NodeId, PostError> = self
            .net
            .post(addr, HELLO, &(), self.config.rpc_timeout)
            .await;
        match res {
            Ok(answered) if answered == id => Ok(()),
            Ok(answered) => Err(WireError::Membership(format!(
                "the node at {addr} is node {answered}, not {id}"
            ))),
            Err(PostError::Status {
                status, message, ..
            }) if status == 401 || status == 409 => Err(WireError::Membership(format!(
                "node {id} at {addr} refused this cluster: {message}"
            ))),
            Err(e) => {
                tracing::warn!(node = id, addr, error = %e, "adding a learner that does not answer yet");
                Ok(())
            }
        }
    }

    /// Whether a node answers at `addr` as node `id` (a live member there).
    async fn answers_as(&self, id: NodeId, addr: &str) -> bool {
        let res: Result<NodeId, PostError> = self
            .net
            .post(addr, HELLO, &(), self.config.rpc_timeout)
            .await;
        matches!(res, Ok(answered) if answered == id)
    }

    /// Waits up to `wait` until learner `id`'s matched log index reaches the commit index as
    /// of the call, as this (leading) node's replication progress shows.
    async fn wait_caught_up(&self, id: NodeId, wait: Duration) -> Result<(), WireError> {
        let target = self.committed_index();
        let matched = |m: &openraft::RaftMetrics<NodeId, Node>| {
            m.replication
                .as_ref()
                .and_then(|r| r.get(&id))
                .and_then(|l| l.as_ref())
                .map(|l| l.index)
        };
        let res = self
            .raft
            .wait(Some(wait))
            .metrics(
                move |m| matched(m).is_some_and(|i| i >= target),
                "learner caught up before promotion",
            )
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(_) => Err(WireError::LearnerNotCaughtUp {
                id,
                matched: matched(&self.metrics.borrow()),
                target,
            }),
        }
    }

    /// The error of a membership change whose deadline passed (it may still complete).
    fn membership_expired(&self) -> WireError {
        WireError::DeadlineExceeded {
            waited_ms: u64::try_from(self.config.membership_deadline.as_millis())
                .unwrap_or(u64::MAX),
        }
    }

    fn membership(&self) -> (BTreeSet<NodeId>, BTreeSet<NodeId>) {
        let m = self.metrics.borrow();
        let mem = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = mem.voter_ids().collect();
        let nodes: BTreeSet<NodeId> = mem.nodes().map(|(id, _)| *id).collect();
        (voters, nodes)
    }

    async fn admin_local(&self, req: &AdminRequest, deadline: Instant) -> Result<(), WireError> {
        match req {
            AdminRequest::AddLearner { id, addr } => {
                let commit_at_call = self.committed_index();
                let known_addr = {
                    let m = self.metrics.borrow();
                    m.membership_config
                        .membership()
                        .get_node(id)
                        .map(|n| n.addr.clone())
                };
                match known_addr {
                    // A member that comes back on another address: update it in place (a
                    // plain add would keep the old address) — but only when no live node
                    // answers as that id at the old address, else this would evict it.
                    Some(old) if old != *addr => {
                        if self.answers_as(*id, &old).await {
                            return Err(WireError::NodeIdInUse { id: *id, addr: old });
                        }
                        self.check_newcomer(*id, addr).await?;
                        let nodes = BTreeMap::from([(*id, Node::new(addr))]);
                        self.change(ChangeMembers::SetNodes(nodes), true, deadline)
                            .await?;
                    }
                    Some(_) => {}
                    None => {
                        if *id != self.id {
                            self.check_newcomer(*id, addr).await?;
                        }
                        // Through `change`, so a concurrent join's change in progress is
                        // waited out rather than refused.
                        let nodes = BTreeMap::from([(*id, Node::new(addr))]);
                        self.change(ChangeMembers::AddNodes(nodes), true, deadline)
                            .await?;
                    }
                }
                if *id == self.id {
                    return Ok(());
                }
                // Caught up = matched everything committed when the call came, including the
                // membership change itself.
                let target = commit_at_call.max(self.committed_index());
                let remaining = deadline.saturating_duration_since(Instant::now());
                let target_id = *id;
                self.raft
                    .wait(Some(remaining))
                    .metrics(
                        move |m| {
                            m.replication
                                .as_ref()
                                .and_then(|r| r.get(&target_id))
                                .and_then(|l| l.as_ref())
                                .is_some_and(|l| l.index >= target)
                        },
                        "learner caught up",
                    )
                    .await
                    .map_err(|_| self.membership_expired())?;
                Ok(())
            }
            AdminRequest::PromoteVoter(id) => {
                let (voters, nodes) = self.membership();
                if !nodes.contains(id) {
                    return Err(WireError::UnknownNode(*id));
                }
                if voters.contains(id) {
                    return Ok(());
                }
                // A voter that does not answer would be needed by the joint configuration:
                // promote only a learner that has the log up to the commit index of the call.
                self.wait_caught_up(*id, PROMOTE_CATCH_UP).await?;
                // Adding one id to whatever the voter set is when the change runs keeps
                // concurrent joins from overwriting each other.
                self.change(
                    ChangeMembers::AddVoterIds(BTreeSet::from([*id])),
                    false,
                    deadline,
                )
                .await
            }
            AdminRequest::ChangeVoters(ids) => {
                if ids.is_empty() {
                    return Err(WireError::Membership(
                        "the voter set cannot be empty".into(),
                    ));
                }
                let (_, nodes) = self.membership();
                if let Some(missing) = ids.iter().find(|id| !nodes.contains(id)) {
                    return Err(WireError::UnknownNode(*missing));
                }
                self.change(ChangeMembers::ReplaceAllVoters(ids.clone()), true, deadline)
                    .await
            }
            AdminRequest::RemoveMember(id) => {
                let (voters, nodes) = self.membership();
                if !nodes.contains(id) {
                    return Err(WireError::UnknownNode(*id));
                }
                if voters.contains(id) {
                    if voters.len() == 1 {
                        return Err(WireError::Membership(format!(
                            "removing node {id} would leave no voter"
                        )));
                    }
                    // By id, resolved against the configuration when the change runs: a set
                    // computed from a snapshot here would undo a join that committed since.
                    self.change(
                        ChangeMembers::RemoveVoters(BTreeSet::from([*id])),
                        false,
                        deadline,
                    )
                    .await?;
                }
                let (_, nodes) = self.membership();
                if nodes.contains(id) {
                    self.change(
                        ChangeMembers::RemoveNodes(BTreeSet::from([*id])),
                        false,
                        deadline,
                    )
                    .await?;
                }
                Ok(())
            }
        }
    }
}

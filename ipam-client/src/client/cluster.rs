//! Typed calls of the cluster's membership: `/api/v1/cluster` and below.

use reqwest::Method;

use super::Client;
use crate::error::ClientError;
use crate::types::{ClusterStatus, InitRequest, NodeAddr, VotersRequest};

impl Client {
    /// `GET /api/v1/cluster`.
    pub async fn cluster_status(&self) -> Result<ClusterStatus, ClientError> {
        let rb = self.request(Method::GET, &["api", "v1", "cluster"]);
        self.json(rb).await
    }

    /// `POST /api/v1/cluster/init` with `members` (empty: this node alone); the cluster status
    /// afterwards (as every membership call answers).
    pub async fn cluster_init(&self, members: Vec<NodeAddr>) -> Result<ClusterStatus, ClientError> {
        let body = InitRequest {
            members: (!members.is_empty()).then_some(members),
        };
        let rb = self
            .request(Method::POST, &["api", "v1", "cluster", "init"])
            .json(&body);
        self.json(rb).await
    }

    /// `POST /api/v1/cluster/learners`: returns once the learner has caught up.
    pub async fn add_learner(&self, id: u64, addr: &str) -> Result<ClusterStatus, ClientError> {
        let rb = self
            .request(Method::POST, &["api", "v1", "cluster", "learners"])
            .json(&NodeAddr {
                id,
                addr: addr.to_string(),
            });
        self.json(rb).await
    }

    /// `POST /api/v1/cluster/voters/{id}`: promotes one learner.
    pub async fn promote_voter(&self, id: u64) -> Result<ClusterStatus, ClientError> {
        let id = id.to_string();
        let rb = self.request(Method::POST, &["api", "v1", "cluster", "voters", &id]);
        self.json(rb).await
    }

    /// `POST /api/v1/cluster/voters`: replaces the voter set.
    pub async fn set_voters(&self, ids: Vec<u64>) -> Result<ClusterStatus, ClientError> {
        let rb = self
            .request(Method::POST, &["api", "v1", "cluster", "voters"])
            .json(&VotersRequest { ids });
        self.json(rb).await
    }

    /// `DELETE /api/v1/cluster/members/{id}`.
    pub async fn remove_member(&self, id: u64) -> Result<ClusterStatus, ClientError> {
        let id = id.to_string();
        let rb = self.request(Method::DELETE, &["api", "v1", "cluster", "members", &id]);
        self.json(rb).await
    }
}

//! Operations endpoints (`../shared/api.md`, "Consistency, backup, restore"): their JSON types
//! and the client calls. A child of `client` (declared there) so the calls share its plumbing.

use std::collections::BTreeMap;

use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::Client;
use crate::error::ClientError;

/// `GET /api/v1/check` response: one node's integrity check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckResponse {
    /// The node's id.
    pub node: u64,
    /// The log index of the checked state.
    pub applied_index: u64,
    /// SHA-256 of the state at that index, lowercase hex.
    pub digest: String,
    /// Broken invariants (empty when consistent).
    pub problems: Vec<CheckProblem>,
}

/// One problem an integrity check found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckProblem {
    /// `free_index_mismatch`, `counter_mismatch`, `owner_index_missing`, ...
    pub kind: String,
    /// What is wrong, for people.
    pub message: String,
    /// The kind's own fields (`pool`, `ip`, ...).
    #[serde(flatten)]
    pub detail: BTreeMap<String, serde_json::Value>,
}

impl Client {
    /// `GET /api/v1/check`: the contacted node's own integrity check and state digest.
    pub async fn check(&self) -> Result<CheckResponse, ClientError> {
        let rb = self.request(Method::GET, &["api", "v1", "check"]);
        self.json(rb).await
    }
}

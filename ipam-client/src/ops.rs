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
    /// `GET /api/v1/backup`: streams the node's backup into `out`; returns the bytes written.
    /// The file carries its own checksum; a transfer cut short fails here or at restore.
    pub async fn backup_to<W: std::io::Write>(&self, out: &mut W) -> Result<u64, ClientError> {
        let rb = self.request(Method::GET, &["api", "v1", "backup"]);
        let mut resp = self.checked(rb).await?;
        let status = resp.status();
        let mut written = 0u64;
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.body_error(status, e))? {
            out.write_all(&chunk).map_err(|e| ClientError::Decode {
                endpoint: self.endpoint().to_string(),
                status,
                detail: format!("writing the backup: {e}"),
            })?;
            written += chunk.len() as u64;
        }
        Ok(written)
    }

    /// `GET /api/v1/check`: the contacted node's own integrity check and state digest.
    pub async fn check(&self) -> Result<CheckResponse, ClientError> {
        let rb = self.request(Method::GET, &["api", "v1", "check"]);
        self.json(rb).await
    }
}

//! Typed calls of drift and reconcile.

use reqwest::Method;

use super::Client;
use crate::error::ClientError;
use crate::types::{DriftReport, DriftRequest, ReconcileRequest, ReconcileResponse};

impl Client {
    /// `POST /api/v1/drift`.
    pub async fn drift(&self, req: &DriftRequest) -> Result<DriftReport, ClientError> {
        let rb = self
            .request(Method::POST, &["api", "v1", "drift"])
            .json(req);
        self.json(rb).await
    }

    /// `POST /api/v1/reconcile` (a dry run unless `req.dry_run` is false).
    pub async fn reconcile(
        &self,
        req: &ReconcileRequest,
    ) -> Result<ReconcileResponse, ClientError> {
        let rb = self
            .request(Method::POST, &["api", "v1", "reconcile"])
            .json(req);
        self.json(rb).await
    }
}

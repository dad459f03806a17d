//! Typed calls of the second-round pool endpoints: update, ranges, preview.

use reqwest::Method;

use super::Client;
use crate::error::ClientError;
use crate::types::{AddRangeRequest, NextFree, Pool, UpdatePoolRequest};

impl Client {
    /// `PATCH /api/v1/pools/{name}`, fenced by `revision` when given.
    pub async fn update_pool(
        &self,
        name: &str,
        req: &UpdatePoolRequest,
        revision: Option<u64>,
    ) -> Result<Pool, ClientError> {
        let mut rb = self
            .request(Method::PATCH, &["api", "v1", "pools", name])
            .json(req);
        if let Some(r) = revision {
            rb = rb.query(&[("revision", r)]);
        }
        self.json(rb).await
    }

    /// `POST /api/v1/pools/{name}/ranges`.
    pub async fn add_range(&self, name: &str, req: &AddRangeRequest) -> Result<Pool, ClientError> {
        let rb = self
            .request(Method::POST, &["api", "v1", "pools", name, "ranges"])
            .json(req);
        self.json(rb).await
    }

    /// `DELETE /api/v1/pools/{name}/ranges?cidr=C`.
    pub async fn remove_range(&self, name: &str, cidr: &str) -> Result<Pool, ClientError> {
        let rb = self
            .request(Method::DELETE, &["api", "v1", "pools", name, "ranges"])
            .query(&[("cidr", cidr)]);
        self.json(rb).await
    }

    /// `GET /api/v1/pools/{name}/next-free?count=N`.
    pub async fn next_free(&self, name: &str, count: u64) -> Result<Vec<String>, ClientError> {
        let rb = self
            .read(&["api", "v1", "pools", name, "next-free"])
            .query(&[("count", count)]);
        let out: NextFree = self.json(rb).await?;
        Ok(out.addresses)
    }
}

//! Typed call of choosing the pool: `POST /api/v1/allocations`.

use reqwest::{Method, StatusCode};

use super::Client;
use crate::error::ClientError;
use crate::types::{AllocateAnyRequest, Allocation};

impl Client {
    /// `POST /api/v1/allocations`: an address from the pool the node chooses for the
    /// selector; the allocation and whether it is new (201) rather than the owner's existing
    /// one (200).
    pub async fn allocate_any(
        &self,
        req: &AllocateAnyRequest,
    ) -> Result<(Allocation, bool), ClientError> {
        let rb = self
            .request(Method::POST, &["api", "v1", "allocations"])
            .json(req);
        let (status, allocation) = self.json_with_status(rb).await?;
        Ok((allocation, status == StatusCode::CREATED))
    }
}

//! The reads of [`Ipam`]: a read barrier (unless `Consistency::Local`), then a redb read
//! transaction on this node's replica, off the async threads.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipam_core::{AddressInfo, Allocation, AllocationPage, Labels, PoolInfo};

use crate::config::Consistency;
use crate::error::{InternalError, IpamError};
use crate::handle::Ipam;

impl Ipam {
    /// Waits until this node has applied everything acknowledged before the call.
    pub(crate) async fn linearize(&self) -> Result<(), IpamError> {
        let start = Instant::now();
        let index = self.core.proposer.read_index(false).await?;
        let Some(index) = index else {
            return Ok(());
        };
        let remaining = self
            .core
            .config
            .read_deadline
            .saturating_sub(start.elapsed())
            .max(Duration::from_millis(1));
        self.core
            .raft
            .wait(Some(remaining))
            .applied_index_at_least(Some(index), "read barrier")
            .await
            .map(|_| ())
            .map_err(|e| match e {
                openraft::metrics::WaitError::Timeout(..) => IpamError::DeadlineExceeded {
                    waited_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
                },
                _ => IpamError::ShuttingDown,
            })
    }

    /// Runs `f` on a read transaction of the local replica, off the async threads.
    pub(crate) async fn local_read<T, F>(&self, f: F) -> Result<T, IpamError>
    where
        T: Send + 'static,
        F: FnOnce(&redb::ReadTransaction) -> Result<T, IpamError> + Send + 'static,
    {
        let db = self.core.sm.db().map_err(|_| IpamError::ShuttingDown)?;
        tokio::task::spawn_blocking(move || {
            let rtx =
                redb::ReadableDatabase::begin_read(&db.db).map_err(InternalError::StateRead)?;
            f(&rtx)
        })
        .await
        .map_err(InternalError::Task)?
    }

    pub(crate) async fn read<T, F>(&self, consistency: Consistency, f: F) -> Result<T, IpamError>
    where
        T: Send + 'static,
        F: FnOnce(&redb::ReadTransaction) -> Result<T, IpamError> + Send + 'static,
    {
        if consistency == Consistency::Linearizable {
            self.linearize().await?;
        }
        self.local_read(f).await
    }

    /// One pool.
    pub async fn pool(&self, name: &str, consistency: Consistency) -> Result<PoolInfo, IpamError> {
        let name = name.to_string();
        self.read(consistency, move |rtx| {
            Ok(ipam_core::query::pool(rtx, &name)?)
        })
        .await
    }

    /// Pools matching every label of `filter`, by name.
    pub async fn pools(
        &self,
        filter: &Labels,
        consistency: Consistency,
    ) -> Result<Vec<PoolInfo>, IpamError> {
        let filter = filter.clone();
        self.read(consistency, move |rtx| {
            ipam_core::query::pools(rtx, &filter).map_err(|e| IpamError::Query(e.into()))
        })
        .await
    }

    /// A page of a pool's allocations.
    pub async fn allocations(
        &self,
        pool: &str,
        owner: Option<&str>,
        after: Option<IpAddr>,
        limit: usize,
        consistency: Consistency,
    ) -> Result<AllocationPage, IpamError> {
        let (pool, owner) = (pool.to_string(), owner.map(str::to_string));
        self.read(consistency, move |rtx| {
            Ok(ipam_core::query::allocations(
                rtx,
                &pool,
                owner.as_deref(),
                after,
                limit,
            )?)
        })
        .await
    }

    /// The pool and allocation of an address.
    pub async fn address(
        &self,
        ip: IpAddr,
        consistency: Consistency,
    ) -> Result<AddressInfo, IpamError> {
        self.read(consistency, move |rtx| {
            ipam_core::query::address(rtx, ip).map_err(|e| IpamError::Query(e.into()))
        })
        .await
    }

    /// An owner's allocations in every pool.
    pub async fn owner_allocations(
        &self,
        owner: &str,
        consistency: Consistency,
    ) -> Result<Vec<Allocation>, IpamError> {
        let owner = owner.to_string();
        self.read(consistency, move |rtx| {
            ipam_core::query::owner_allocations(rtx, &owner).map_err(|e| IpamError::Query(e.into()))
        })
        .await
    }

    /// Digest of this replica's core state (local, no barrier).
    pub async fn digest(&self) -> Result<[u8; 32], IpamError> {
        self.local_read(|rtx| ipam_core::query::digest(rtx).map_err(|e| IpamError::Query(e.into())))
            .await
    }
}

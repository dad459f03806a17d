//! openraft's storage test suite against the redb stores.

use ipam_raft::log_store::LogStore;
use ipam_raft::state_machine::{Durable, StateMachineStore};
use ipam_raft::types::{StorageError, TypeConfig};
use openraft::testing::{StoreBuilder, Suite};
use tempfile::TempDir;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = TempDir::new().map_err(|e| openraft::StorageIOError::write(&e))?;
        // The suite purges logs no state machine applied: pin the purge limit open.
        let (_tx, limit) = tokio::sync::watch::channel(Some(u64::MAX));
        let log = LogStore::open(&dir.path().join("log.redb"), limit)?;
        let (durable_tx, _rx) = tokio::sync::watch::channel(None);
        let sm = StateMachineStore::open(dir.path(), Durable::default(), durable_tx)?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    if let Err(e) = Suite::test_all(Builder) {
        panic!("storage suite failed: {e}");
    }
}

//! [`State`]: the derived in-memory index and the deterministic `apply`.

use crate::command::{Command, CommandResult};
use crate::error::StorageError;
use crate::types::Stamp;

/// The in-memory index derived from the core's redb tables (pools by name, free intervals per
/// pool). Rebuilt from redb on open; never persisted.
#[derive(Debug, Default)]
pub struct State {}

impl State {
    /// Creates the core's tables if missing and rebuilds the index from them.
    pub fn open(db: &redb::Database) -> Result<State, StorageError> {
        let _ = db;
        todo!("CORE-HELPER")
    }

    /// Applies `commands` (one log entry's, or several entries' in order) in `txn`, returning
    /// one result per command. Deterministic: depends only on the tables, `stamp` and the
    /// commands. The caller commits `txn`; if it does not, it must reopen with [`State::open`].
    pub fn apply(
        &mut self,
        txn: &redb::WriteTransaction,
        stamp: Stamp,
        commands: &[Command],
    ) -> Result<Vec<CommandResult>, StorageError> {
        let _ = (txn, stamp, commands);
        todo!("CORE-HELPER")
    }
}

//! Reverting a failed atomic batch: the undo journal replayed newest first, on the rows and
//! on the in-memory index alike.

use super::{State, Tx, Undo};
use crate::error::StorageError;
use crate::tables;
use crate::types::PoolId;

impl Undo {
    /// The pool whose in-memory entry this undo changes (none for a row or the owner index).
    fn pool(&self) -> Option<PoolId> {
        match self {
            Undo::Row { .. } | Undo::OwnerIndex { .. } => None,
            Undo::Took { pool, .. }
            | Undo::Freed { pool, .. }
            | Undo::Created { pool }
            | Undo::TookCooling { pool, .. }
            | Undo::Cooled { pool, .. } => Some(*pool),
            Undo::Deleted { entry } | Undo::Replaced { entry } => Some(entry.id),
        }
    }
}

impl State {
    /// Reverts a batch's changes, newest first.
    pub(super) fn rollback(
        &mut self,
        tx: &mut Tx<'_>,
        journal: Vec<Undo>,
    ) -> Result<(), StorageError> {
        // The score index follows the pools once the journal is replayed.
        let mut changed = Vec::new();
        for undo in journal.into_iter().rev() {
            if let Some(pool) = undo.pool() {
                changed.push(pool);
            }
            match undo {
                Undo::Row { table, key, old } => {
                    let t = tx.table(table);
                    match old {
                        Some(v) => {
                            t.insert(key.as_slice(), v.as_slice())?;
                        }
                        None => {
                            t.remove(key.as_slice())?;
                        }
                    }
                }
                Undo::Took { pool, pos } => {
                    if let Some(e) = self.pools.get_mut(&pool) {
                        e.free.release(pos);
                        e.record.allocated = e.record.allocated.saturating_sub(1);
                    }
                }
                Undo::Freed { pool, pos } => {
                    if let Some(e) = self.pools.get_mut(&pool) {
                        e.free.take(pos);
                        e.record.allocated += 1;
                    }
                }
                Undo::Created { pool } => {
                    if let Some(e) = self.pools.remove(&pool) {
                        self.unindex_labels(pool, &e.record.labels);
                        self.names.remove(&e.record.name);
                        self.unindex_ranges(&e.layout, tables::range_tag(&e.record));
                    }
                }
                Undo::Deleted { entry } => {
                    self.index_labels(entry.id, &entry.record.labels);
                    self.names.insert(entry.record.name.clone(), entry.id);
                    self.index_ranges(entry.id, &entry.layout, tables::range_tag(&entry.record));
                    self.pools.insert(entry.id, *entry);
                }
                Undo::Replaced { entry } => {
                    if let Some(now) = self.pools.remove(&entry.id) {
                        self.unindex_ranges(&now.layout, tables::range_tag(&now.record));
                        self.unindex_labels(entry.id, &now.record.labels);
                    }
                    self.index_ranges(entry.id, &entry.layout, tables::range_tag(&entry.record));
                    self.index_labels(entry.id, &entry.record.labels);
                    self.pools.insert(entry.id, *entry);
                }
                Undo::TookCooling {
                    pool,
                    pos,
                    at,
                    owner,
                } => {
                    if let Some(e) = self.pools.get_mut(&pool) {
                        e.cooling.insert(at, pos, owner);
                        e.record.allocated = e.record.allocated.saturating_sub(1);
                    }
                }
                Undo::Cooled { pool, pos } => {
                    if let Some(e) = self.pools.get_mut(&pool) {
                        e.cooling.remove(pos);
                        e.record.allocated += 1;
                    }
                }
                Undo::OwnerIndex { hash, pool, added } => self.undo_owner_index(hash, pool, added),
            }
        }
        changed.sort_unstable();
        changed.dedup();
        for id in changed {
            self.rerank(id);
        }
        Ok(())
    }
}

//! The replicated feature level: stored in `core_meta`, raised only by
//! [`crate::Op::SetFeatureLevel`] entries, so every replica reads the same level at every log
//! index (`docs/architecture.md`, formats rule 4).

use super::{State, Tx};
use crate::command::OpOutput;
use crate::error::StorageError;
use crate::tables;

/// The replicated feature level as stored (absent: 1).
pub(super) fn load_level(rtx: &redb::ReadTransaction) -> Result<u32, StorageError> {
    let meta = rtx.open_table(tables::META)?;
    let Some(v) = meta.get(tables::FEATURE_LEVEL_KEY)? else {
        return Ok(crate::feature::LEVEL_0_1_0);
    };
    let bytes: [u8; 4] = v.value().try_into().map_err(|_| StorageError::Corrupt {
        table: "core_meta",
        reason: format!("feature level of {} bytes", v.value().len()),
    })?;
    Ok(u32::from_be_bytes(bytes))
}

impl State {
    /// The replicated feature level: what the entries applied so far allow (1 until an
    /// [`Op::SetFeatureLevel`] raised it). The event log is kept from level 2 on.
    pub fn feature_level(&self) -> u32 {
        self.level.max(crate::feature::LEVEL_0_1_0)
    }

    pub(super) fn set_feature_level(
        &mut self,
        tx: &mut Tx<'_>,
        level: u32,
    ) -> Result<OpOutput, StorageError> {
        if level > self.feature_level() {
            tx.meta
                .insert(tables::FEATURE_LEVEL_KEY, level.to_be_bytes().as_slice())?;
            self.level = level;
            // Commands after it in the same entry already record events.
            self.events.enabled = level >= 2;
        }
        Ok(OpOutput::FeatureLevel(self.feature_level()))
    }
}

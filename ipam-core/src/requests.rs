//! Exactly-once: the recent request ids and idempotency keys with the results the state
//! machine decided for them.
//!
//! Every proposal of the raft layer wraps its command in [`Command::Tagged`] with a
//! [`RequestId`] (node, incarnation, sequence) and, for an HTTP request with an
//! `Idempotency-Key`, a [`KeyedRequest`]. `apply` answers a repeat of a recorded id with the
//! recorded result and executes nothing, so a proposal resent after `ForwardToLeader` (whose
//! first copy may still commit from another node's log) applies at most once. A key seen with
//! the same fingerprint answers the recorded result too; with another fingerprint,
//! [`CommandResult::IdempotencyKeyReused`].
//!
//! Records are kept [`RequestLimits::retention_ms`] of log time (24 h) and at most
//! [`RequestLimits::max_entries`] (1,000,000), oldest dropped first. Pruning depends only on log
//! time and the tables, so every replica drops the same rows; the tables are core tables, so
//! snapshots, backups, the digest and the integrity check carry them.
//!
//! | table | key | value |
//! |---|---|---|
//! | `core_requests` | log time of the decision ++ record sequence (2 × u64 BE, oldest first) | [`RequestRecord`] |
//! | `core_request_ids` | node ++ incarnation ++ sequence (3 × u64 BE) | the record's key (`u128`) |
//! | `core_request_keys` | SHA-256 of the key (32 bytes) | the record's key (`u128`) |
//!
//! A record's key starts with its log time, so pruning by age reads keys only.

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::command::{Command, CommandResult};
use crate::error::StorageError;
use crate::tables::{decode, encode, CoreTable, Record};
use crate::types::Stamp;

/// Recorded results by (log time, record sequence), oldest first.
pub const REQUESTS: CoreTable = TableDefinition::new("core_requests");
/// Request id → the record's key.
pub const REQUEST_IDS: CoreTable = TableDefinition::new("core_request_ids");
/// SHA-256 of an idempotency key → the record's key.
pub const REQUEST_KEYS: CoreTable = TableDefinition::new("core_request_keys");

/// Who proposed a command: the node, its incarnation (rises on every start of the node, kept
/// in its data dir) and a sequence within the incarnation. Unique across the cluster's life.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct RequestId {
    /// Proposing node.
    pub node: u64,
    /// That node's incarnation.
    pub incarnation: u64,
    /// Sequence within the incarnation.
    pub seq: u64,
}

impl RequestId {
    /// Key of [`REQUEST_IDS`].
    pub fn key(&self) -> [u8; 24] {
        let mut k = [0u8; 24];
        k[..8].copy_from_slice(&self.node.to_be_bytes());
        k[8..16].copy_from_slice(&self.incarnation.to_be_bytes());
        k[16..].copy_from_slice(&self.seq.to_be_bytes());
        k
    }
}

/// A client's idempotency key and the fingerprint of the request it came with (method, path,
/// query and body for HTTP).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyedRequest {
    /// The key, 1..=128 visible ASCII characters.
    pub key: String,
    /// SHA-256 of the request.
    pub fingerprint: [u8; 32],
}

impl KeyedRequest {
    /// Key of [`REQUEST_KEYS`].
    pub fn table_key(&self) -> [u8; 32] {
        key_hash(&self.key)
    }
}

/// SHA-256 of an idempotency key: the fixed-width key of [`REQUEST_KEYS`].
pub fn key_hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Checks an idempotency key: 1..=128 visible ASCII characters.
pub fn check_key(key: &str) -> bool {
    (1..=MAX_KEY_LEN).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

/// Longest idempotency key.
pub const MAX_KEY_LEN: usize = 128;

/// One decided request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Log time when it was decided.
    pub at: Stamp,
    /// Its request id.
    pub id: RequestId,
    /// SHA-256 of its idempotency key and its fingerprint, when it had a key.
    pub key: Option<([u8; 32], [u8; 32])>,
    /// What the state machine decided.
    pub result: CommandResult,
}

impl Record for RequestRecord {}

/// How long and how many records are kept. Every replica must use the same limits (they
/// decide which rows are dropped); the raft layer always uses [`RequestLimits::default`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestLimits {
    /// Log time a record is kept (ms).
    pub retention_ms: u64,
    /// Records kept at most.
    pub max_entries: u64,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            retention_ms: 24 * 3600 * 1000,
            max_entries: 1_000_000,
        }
    }
}

/// Records dropped for age in one `apply` at most: a long idle period ends with a bounded
/// transaction; the rest go in the next entries (every replica drops the same ones).
const PRUNE_PER_APPLY: usize = 10_000;

/// The open request tables of one `apply`.
pub(crate) struct Requests<'t> {
    rows: redb::Table<'t, &'static [u8], &'static [u8]>,
    ids: redb::Table<'t, &'static [u8], &'static [u8]>,
    keys: redb::Table<'t, &'static [u8], &'static [u8]>,
    /// The newest record's position as the table orders them, once known (`None`: read the
    /// table): one read per `apply` instead of one per recorded command.
    newest: Option<Pos>,
}

/// A record's position: its log time in the high half, its sequence in the low half; the
/// big-endian bytes are its key in [`REQUESTS`].
type Pos = u128;

fn pos_of(table: &'static str, v: &[u8]) -> Result<Pos, StorageError> {
    decode::<u128>(table, v)
}

fn pos_at(pos: Pos) -> u64 {
    (pos >> 64) as u64
}

impl<'t> Requests<'t> {
    pub(crate) fn open(txn: &'t redb::WriteTransaction) -> Result<Requests<'t>, StorageError> {
        Ok(Requests {
            rows: txn.open_table(REQUESTS)?,
            ids: txn.open_table(REQUEST_IDS)?,
            keys: txn.open_table(REQUEST_KEYS)?,
            newest: None,
        })
    }

    fn record(&self, pos: Pos) -> Result<RequestRecord, StorageError> {
        match self.rows.get(pos.to_be_bytes().as_slice())? {
            Some(v) => decode("core_requests", v.value()),
            None => Err(StorageError::Corrupt {
                table: "core_requests",
                reason: format!("an index row names record {pos:#x}, which is missing"),
            }),
        }
    }

    /// The recorded answer for `id` or `key`, if any (`None`: execute the command).
    pub(crate) fn lookup(
        &self,
        id: &RequestId,
        key: Option<&KeyedRequest>,
    ) -> Result<Option<CommandResult>, StorageError> {
        if let Some(v) = self.ids.get(id.key().as_slice())? {
            let pos = pos_of("core_request_ids", v.value())?;
            return Ok(Some(self.record(pos)?.result));
        }
        if let Some(k) = key {
            if let Some(v) = self.keys.get(k.table_key().as_slice())? {
                let pos = pos_of("core_request_keys", v.value())?;
                let rec = self.record(pos)?;
                return Ok(Some(match rec.key {
                    Some((_, fp)) if fp == k.fingerprint => rec.result,
                    _ => CommandResult::IdempotencyKeyReused,
                }));
            }
        }
        Ok(None)
    }

    /// Records the `result` of an executed command under `id` (and `key`), then drops the
    /// oldest records beyond `limits.max_entries`. A repeat answered by [`Requests::lookup`] is
    /// not recorded again.
    pub(crate) fn insert(
        &mut self,
        now: Stamp,
        id: RequestId,
        key: Option<&KeyedRequest>,
        result: &CommandResult,
        limits: RequestLimits,
    ) -> Result<(), StorageError> {
        let newest = match self.newest {
            Some(pos) => Some(pos),
            None => match self.rows.last()? {
                Some((k, _)) => Some(pos_from_key(k.value())?),
                None => None,
            },
        };
        let seq = newest.map_or(0, |p| (p as u64).wrapping_add(1));
        let pos = (Pos::from(now.0) << 64) | Pos::from(seq);
        // The table's order, not the insertion's: a record stamped earlier than the newest
        // (log time from another leader's clock) does not become the newest.
        self.newest = Some(newest.map_or(pos, |n| n.max(pos)));
        let key = key
            .filter(|_| !matches!(result, CommandResult::IdempotencyKeyReused))
            .map(|k| (k.table_key(), k.fingerprint));
        let rec = RequestRecord {
            at: now,
            id,
            key,
            result: result.clone(),
        };
        let pos_bytes = encode(&pos)?;
        self.rows
            .insert(pos.to_be_bytes().as_slice(), encode(&rec)?.as_slice())?;
        self.ids.insert(id.key().as_slice(), pos_bytes.as_slice())?;
        if let Some((hash, _)) = key {
            self.keys.insert(hash.as_slice(), pos_bytes.as_slice())?;
        }
        while self.rows.len()? > limits.max_entries {
            if !self.drop_oldest(None)? {
                break;
            }
        }
        Ok(())
    }

    /// Drops records older than the retention (at most [`PRUNE_PER_APPLY`]).
    pub(crate) fn prune(&mut self, now: Stamp, limits: RequestLimits) -> Result<(), StorageError> {
        // Kept while younger than the retention: dropped once `at + retention <= now`.
        let Some(cutoff) = now.0.checked_sub(limits.retention_ms) else {
            return Ok(());
        };
        for _ in 0..PRUNE_PER_APPLY {
            if !self.drop_oldest(Some(cutoff))? {
                break;
            }
        }
        Ok(())
    }

    /// Removes the oldest record (only if decided at or before `before`, when given) and its
    /// index rows. False when nothing was removed.
    fn drop_oldest(&mut self, before: Option<u64>) -> Result<bool, StorageError> {
        let pos = match self.rows.first()? {
            Some((k, _)) => pos_from_key(k.value())?,
            None => return Ok(false),
        };
        // The age is in the key: the record is decoded only when it goes.
        if before.is_some_and(|b| pos_at(pos) > b) {
            return Ok(false);
        }
        let rec = self.record(pos)?;
        self.rows.remove(pos.to_be_bytes().as_slice())?;
        if self.newest == Some(pos) {
            // It was the only record.
            self.newest = None;
        }
        self.remove_index(true, &rec.id.key(), pos)?;
        if let Some((hash, _)) = rec.key {
            self.remove_index(false, &hash, pos)?;
        }
        Ok(true)
    }

    /// Removes an index row only if it still names record `pos`.
    fn remove_index(&mut self, ids: bool, key: &[u8], pos: Pos) -> Result<(), StorageError> {
        let (table, name) = if ids {
            (&mut self.ids, "core_request_ids")
        } else {
            (&mut self.keys, "core_request_keys")
        };
        let names_it = match table.get(key)? {
            Some(v) => pos_of(name, v.value())? == pos,
            None => false,
        };
        if names_it {
            table.remove(key)?;
        }
        Ok(())
    }
}

fn pos_from_key(k: &[u8]) -> Result<Pos, StorageError> {
    let b: [u8; 16] = k.try_into().map_err(|_| StorageError::Corrupt {
        table: "core_requests",
        reason: format!("key of {} bytes, expected 16", k.len()),
    })?;
    Ok(Pos::from_be_bytes(b))
}

/// Number of recorded requests as `rtx` sees them.
pub fn count(rtx: &redb::ReadTransaction) -> Result<u64, StorageError> {
    match rtx.open_table(REQUESTS) {
        Ok(t) => Ok(t.len()?),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// The command inside any number of tags.
pub fn untagged(command: &Command) -> &Command {
    match command {
        Command::Tagged { command, .. } => untagged(command),
        other => other,
    }
}

/// Integrity of the request tables: every record decodes and has its id row; every index row
/// names an existing record with that id or key.
pub fn check(rtx: &redb::ReadTransaction) -> Result<Vec<String>, StorageError> {
    let mut problems = Vec::new();
    let open = |def| match rtx.open_table(def) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(StorageError::from(e)),
    };
    let (Some(rows), Some(ids), Some(keys)) =
        (open(REQUESTS)?, open(REQUEST_IDS)?, open(REQUEST_KEYS)?)
    else {
        return Ok(problems);
    };
    let mut records = std::collections::BTreeMap::new();
    for row in rows.iter()? {
        let (k, v) = row?;
        let pos = match pos_from_key(k.value()) {
            Ok(p) => p,
            Err(e) => {
                problems.push(e.to_string());
                continue;
            }
        };
        match decode::<RequestRecord>("core_requests", v.value()) {
            Ok(rec) if pos_at(pos) == rec.at.0 => {
                records.insert(pos, rec);
            }
            Ok(rec) => problems.push(format!(
                "record {pos:#x} is keyed at log time {}, decided at {}",
                pos_at(pos),
                rec.at.0
            )),
            Err(e) => problems.push(e.to_string()),
        }
    }
    let mut with_id = 0usize;
    for row in ids.iter()? {
        let (k, v) = row?;
        match pos_of("core_request_ids", v.value()) {
            Ok(pos) => match records.get(&pos) {
                Some(rec) if rec.id.key().as_slice() == k.value() => with_id += 1,
                _ => problems.push(format!(
                    "request id row names record {pos:#x}, which is not its"
                )),
            },
            Err(e) => problems.push(e.to_string()),
        }
    }
    if with_id != records.len() {
        problems.push(format!(
            "{} request records, {with_id} of them indexed by id",
            records.len()
        ));
    }
    for row in keys.iter()? {
        let (k, v) = row?;
        match pos_of("core_request_keys", v.value()) {
            Ok(pos) => match records.get(&pos) {
                Some(RequestRecord {
                    key: Some((hash, _)),
                    ..
                }) if hash.as_slice() == k.value() => {}
                _ => problems.push(format!(
                    "idempotency key row names record {pos:#x}, which is not its"
                )),
            },
            Err(e) => problems.push(e.to_string()),
        }
    }
    Ok(problems)
}

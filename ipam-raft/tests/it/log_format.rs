//! The log store's formats: a `log.redb` with its entries in the `raft_log` table (every build
//! before the segment WAL, release 0.1.0 included) is migrated at open, a cut at any point of
//! the migration leaves one format or the other whole, and a newer format is refused.

use std::path::Path;
use std::sync::Arc;

use crate::support::power_cut::{Cut, PowerCutDisk};
use ipam_core::tables::encode_value;
use ipam_raft::log_store::LogStore;
use ipam_raft::types::{Entry, LogId, Vote};
use ipam_raft::{Disk, DiskIo};
use openraft::storage::RaftLogStorage;
use openraft::{CommittedLeaderId, EntryPayload, RaftLogReader};
use redb::TableDefinition;
use tokio::sync::watch;

const LOG: TableDefinition<'static, u64, &'static [u8]> = TableDefinition::new("raft_log");
const META: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("raft_log_meta");

fn log_id(index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(2, 1), index)
}

fn entry(index: u64) -> Entry {
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Blank,
    }
}

/// What the redb log store wrote: entries 11..=60 (10 purged), committed 55, a vote.
fn write_format_1(db: &redb::Database) {
    let txn = db.begin_write().expect("txn");
    {
        let mut log = txn.open_table(LOG).expect("log");
        for i in 11..=60 {
            let bytes = encode_value(&entry(i)).expect("encode");
            log.insert(i, bytes.as_slice()).expect("insert");
        }
        let mut meta = txn.open_table(META).expect("meta");
        let put = |meta: &mut redb::Table<'_, &str, &[u8]>, k: &str, v: Vec<u8>| {
            meta.insert(k, v.as_slice()).expect("insert");
        };
        put(
            &mut meta,
            "vote",
            encode_value(&Vote::new(2, 1)).expect("e"),
        );
        put(
            &mut meta,
            "committed",
            encode_value(&Some(log_id(55))).expect("e"),
        );
        put(
            &mut meta,
            "last_purged",
            encode_value(&Some(log_id(10))).expect("e"),
        );
    }
    txn.commit().expect("commit");
}

/// The log holds exactly what `write_format_1` wrote.
async fn check(log: &mut LogStore) {
    let state = log.get_log_state().await.expect("state");
    assert_eq!(state.last_purged_log_id, Some(log_id(10)));
    assert_eq!(state.last_log_id, Some(log_id(60)));
    let got: Vec<LogId> = log
        .try_get_log_entries(0..100)
        .await
        .expect("read")
        .iter()
        .map(|e| e.log_id)
        .collect();
    assert_eq!(got, (11..=60).map(log_id).collect::<Vec<_>>());
    assert_eq!(log.read_vote().await.expect("vote"), Some(Vote::new(2, 1)));
    assert_eq!(
        log.read_committed().await.expect("committed"),
        Some(log_id(55))
    );
}

fn limit() -> watch::Receiver<Option<u64>> {
    watch::channel(None).1
}

#[tokio::test]
async fn a_redb_log_moves_into_segments_and_reopens_as_such() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("log.redb");
    write_format_1(&redb::Database::create(&path).expect("create"));
    {
        let mut log = LogStore::open(&path, limit()).expect("migrate");
        check(&mut log).await;
    }
    {
        let db = redb::Database::create(&path).expect("open");
        let rtx = redb::ReadableDatabase::begin_read(&db).expect("read");
        let table = rtx.open_table(LOG).expect("log");
        assert!(
            redb::ReadableTableMetadata::is_empty(&table).expect("len"),
            "raft_log emptied"
        );
        // A release that knows only format 1 reads the vote with ipam-core's value decoder
        // (version 1) before anything else: it must stop there, not start with an empty log.
        let meta = rtx.open_table(META).expect("meta");
        for key in ["vote", "committed", "last_purged"] {
            let v = meta.get(key).expect("get").expect("present");
            let old_read = ipam_core::tables::decode_value::<Vote>("raft_log_meta", v.value());
            let err = old_read.expect_err("a format-1 release refuses the migrated value");
            assert!(err.to_string().contains("format version 2"), "{key}: {err}");
        }
    }
    assert!(dir
        .path()
        .join("wal")
        .join(format!("{:020}.seg", 0))
        .exists());
    let mut log = LogStore::open(&path, limit()).expect("reopen");
    check(&mut log).await;
    log.blocking_append_one(61).await;
    drop(log);
    let mut log = LogStore::open(&path, limit()).expect("reopen");
    assert_eq!(
        log.get_log_state().await.expect("state").last_log_id,
        Some(log_id(61))
    );
}

trait AppendOne {
    async fn blocking_append_one(&mut self, index: u64);
}

impl AppendOne for LogStore {
    async fn blocking_append_one(&mut self, index: u64) {
        use openraft::storage::RaftLogStorageExt;
        self.blocking_append(vec![entry(index)])
            .await
            .expect("append");
    }
}

#[tokio::test]
async fn a_newer_format_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("log.redb");
    {
        let db = redb::Database::create(&path).expect("create");
        let txn = db.begin_write().expect("txn");
        {
            let mut meta = txn.open_table(META).expect("meta");
            let v = encode_value(&3u64).expect("encode");
            meta.insert("format", v.as_slice()).expect("insert");
        }
        txn.commit().expect("commit");
    }
    let err = LogStore::open(&path, limit()).expect_err("format 3 must be refused");
    let msg = err.to_string();
    assert!(
        msg.contains("log format 3") && msg.contains("up to 2"),
        "{msg}"
    );
}

/// Cuts the power at every disk operation of a migration in turn (both cut modes); the open
/// after each cut must find the whole log, whichever format it lands in.
#[tokio::test]
async fn a_cut_anywhere_in_the_migration_loses_nothing() {
    let path = Path::new("/sim/data/log.redb");
    let mut k = 1;
    loop {
        let sim = PowerCutDisk::new(k);
        {
            let backend = sim.open(path).expect("open");
            let db = redb::Database::builder()
                .create_with_backend(ipam_raft::BoxedBackend(backend))
                .expect("create");
            write_format_1(&db);
        }
        sim.sync_dir(Path::new("/sim/data")).expect("sync dir");
        let disk: Disk = sim.disk();
        let how = if k % 2 == 0 {
            Cut::AllPendingLost
        } else {
            Cut::RandomPages
        };
        sim.arm(k, how);
        let first = LogStore::open_on(path, limit(), &disk, 4096);
        if !sim.is_off() {
            // The migration (and the open after it) finished before the k-th operation.
            let mut log = first.expect("open without a cut");
            check(&mut log).await;
            assert!(k > 10, "a migration takes more than {k} disk operations");
            break;
        }
        drop(first);
        sim.power_on();
        let mut log = LogStore::open_on(path, limit(), &disk, 4096)
            .unwrap_or_else(|e| panic!("open after a cut at operation {k}: {e}"));
        check(&mut log).await;
        drop(log);
        // And once more: the reopen's own new segment must not upset the next one.
        let mut log = LogStore::open_on(path, limit(), &Arc::clone(&sim).disk(), 4096)
            .unwrap_or_else(|e| panic!("second open after a cut at operation {k}: {e}"));
        check(&mut log).await;
        k += 1;
    }
}

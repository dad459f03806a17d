//! The simulated disk of the power-loss tests (`support/power_cut.rs`) against redb alone:
//! across hundreds of random cuts (all pending writes lost, or a random subset of their pages
//! kept) every commit with `Durability::Immediate` that returned is still there, whatever
//! `Durability::None` commits were interleaved. So a loss in the node tests points at the
//! node's use of its stores, not at the model.

use std::path::Path;
use std::sync::Arc;

use crate::support::power_cut::{Cut, PowerCutDisk, Rng};
use ipam_raft::DiskIo;
use redb::{Durability, ReadableDatabase, TableDefinition};

const KEYS: TableDefinition<'static, u64, u64> = TableDefinition::new("keys");
const CHURN: TableDefinition<'static, u64, u64> = TableDefinition::new("churn");

fn open(disk: &Arc<PowerCutDisk>, path: &Path) -> Result<redb::Database, redb::Error> {
    let backend = disk.open(path).map_err(redb::StorageError::from)?;
    let db = redb::Database::builder().create_with_backend(ipam_raft::BoxedBackend(backend))?;
    disk.sync_dir(path.parent().expect("parent"))
        .map_err(redb::StorageError::from)?;
    Ok(db)
}

/// One commit: key `k` (and some churn that frees pages); true when it returned.
fn commit(db: &redb::Database, k: u64, durable: bool, churn: bool) -> bool {
    let run = || -> Result<(), redb::Error> {
        let mut txn = db.begin_write()?;
        txn.set_durability(if durable {
            Durability::Immediate
        } else {
            Durability::None
        })?;
        {
            let mut keys = txn.open_table(KEYS)?;
            keys.insert(k, k)?;
            if churn {
                let mut c = txn.open_table(CHURN)?;
                c.insert(k, k)?;
                c.remove(k.wrapping_sub(1))?;
            }
        }
        txn.commit()?;
        Ok(())
    };
    run().is_ok()
}

#[test]
fn redb_keeps_every_immediate_commit_across_random_power_cuts() {
    let seed = 0x5eed_u64;
    let mut rng = Rng::new(seed);
    let disk = PowerCutDisk::new(seed);
    let path = Path::new("/sim/test.redb");
    let mut durable: Vec<u64> = Vec::new();
    let mut next = 0u64;
    let mut cuts = 0;
    for cycle in 0..300 {
        let how = if rng.coin() {
            Cut::AllPendingLost
        } else {
            Cut::RandomPages
        };
        disk.arm(rng.range(1, 60), how);
        let Ok(db) = open(&disk, path) else {
            assert!(disk.is_off(), "open failed with the power on");
            disk.power_on();
            cuts += 1;
            continue;
        };
        {
            let rtx = db.begin_read().expect("read");
            let table = rtx.open_table(KEYS).ok();
            for k in &durable {
                let got = table
                    .as_ref()
                    .and_then(|t| t.get(k).expect("get").map(|v| v.value()));
                assert_eq!(got, Some(*k), "cycle {cycle}: durable key {k} lost");
            }
        }
        while !disk.is_off() {
            let is_durable = rng.range(0, 3) != 0;
            let k = next;
            next += 1;
            if commit(&db, k, is_durable, rng.coin()) && is_durable {
                durable.push(k);
            }
        }
        drop(db);
        disk.power_on();
        cuts += 1;
    }
    assert_eq!(cuts, 300);
    assert!(durable.len() > 100, "too few commits: {}", durable.len());
}

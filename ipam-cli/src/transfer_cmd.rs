//! `ipam-cli export` and `ipam-cli import`: fetching, writing in batches, progress, reports.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::Context;
use ipam_client::types::BatchOp;
use ipam_client::{AllocationQuery, Client, ClientError};
use serde::Serialize;

use crate::args::Output;
use crate::exit::ConflictError;
use crate::plan::{plan, Conflict, PoolView};
use crate::transfer::{self, Row};

/// Most ops in one batch (the API's limit).
const BATCH_OPS: usize = 1000;
/// Most JSON bytes of one batch body, below the API's 1 MiB limit with room for the wrapper.
const BATCH_BYTES: usize = 900 * 1024;
/// Batches in flight at once: enough to hide one round trip behind another.
const IN_FLIGHT: usize = 4;
/// Tries per batch while the cluster answers "unavailable" (no leader, overloaded).
const TRIES: u32 = 8;

/// Every allocation of `pool` (or of every pool), in pool then address order.
pub async fn export(client: &Client, out: Output, pool: Option<String>) -> anyhow::Result<()> {
    let pools = match pool {
        Some(name) => vec![client.get_pool(&name).await?],
        None => client.list_pools(&[]).await?,
    };
    let query = AllocationQuery {
        limit: Some(1000),
        ..Default::default()
    };
    let stdout = std::io::stdout();
    let mut stdout = std::io::BufWriter::new(stdout.lock());
    let result = async {
        match out {
            Output::Json => {
                for p in &pools {
                    for a in client.list_all_allocations(&p.name, &query).await? {
                        transfer::write_json(&mut stdout, &a)?;
                    }
                }
            }
            Output::Table | Output::Csv => {
                let mut writer = transfer::csv_writer(&mut stdout)?;
                for p in &pools {
                    for a in client.list_all_allocations(&p.name, &query).await? {
                        transfer::write_csv(&mut writer, &a)?;
                    }
                }
                writer.flush()?;
            }
        }
        stdout.flush()?;
        anyhow::Ok(())
    }
    .await;
    match result {
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        other => other.context("exporting"),
    }
}

/// `ipam-cli import` options.
pub struct ImportOptions {
    /// File to read.
    pub file: std::path::PathBuf,
    /// Check and report only.
    pub dry_run: bool,
    /// Import the rows that have no conflict and report the others.
    pub skip_conflicts: bool,
    /// Freeze the import's pools while writing (allocations without an address are refused
    /// meanwhile), and unfreeze the ones this import froze afterwards, also on failure.
    pub freeze: bool,
}

/// What an import did (`-o json`), or would do (`--dry-run`).
#[derive(Debug, Serialize)]
struct Report {
    dry_run: bool,
    rows: usize,
    written: usize,
    already_present: usize,
    conflicts: Vec<Conflict>,
}

/// Checks every row of the file, then writes the rows in atomic batches.
pub async fn import(client: &Client, out: Output, opts: ImportOptions) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&opts.file)
        .with_context(|| format!("reading {}", opts.file.display()))?;
    let rows = transfer::read_rows(&text).with_context(|| opts.file.display().to_string())?;
    let total = rows.len();
    let pools = views(client, &rows).await?;
    let plan = plan(rows, &pools);
    let mut report = Report {
        dry_run: opts.dry_run,
        rows: total,
        written: 0,
        already_present: plan.present,
        conflicts: plan.conflicts,
    };
    let blocked = !report.conflicts.is_empty() && !opts.skip_conflicts;
    if !opts.dry_run && !blocked {
        report.written = if opts.freeze {
            frozen_write(client, &plan.writes).await?
        } else {
            write(client, &plan.writes).await?
        };
    }
    print_report(out, &report, plan.writes.len())?;
    if blocked {
        return Err(ConflictError(format!(
            "{} conflicting row(s); nothing was written (--skip-conflicts imports the others)",
            report.conflicts.len()
        ))
        .into());
    }
    Ok(())
}

/// [`write`] with the rows' pools frozen: a pool that was already frozen stays frozen, the
/// others are unfrozen after the write whatever its outcome.
async fn frozen_write(client: &Client, rows: &[Row]) -> anyhow::Result<usize> {
    let names: BTreeSet<&str> = rows.iter().map(|r| r.pool.as_str()).collect();
    let freeze = |value| ipam_client::types::UpdatePoolRequest {
        frozen: Some(value),
        ..Default::default()
    };
    let mut froze = Vec::new();
    let mut failure = None;
    for name in names {
        match client.get_pool(name).await {
            Ok(p) if p.frozen => {}
            Ok(_) => match client.update_pool(name, &freeze(true), None).await {
                Ok(_) => froze.push(name),
                Err(e) => {
                    failure = Some(anyhow::Error::from(e).context(format!("freezing pool {name}")));
                    break;
                }
            },
            Err(e) => {
                failure = Some(anyhow::Error::from(e).context(format!("reading pool {name}")));
                break;
            }
        }
    }
    let result = match failure {
        Some(e) => Err(e),
        None => write(client, rows).await,
    };
    let mut unfreeze_error = None;
    for name in froze {
        if let Err(e) = client.update_pool(name, &freeze(false), None).await {
            eprintln!("warning: pool {name} is still frozen: {e}");
            unfreeze_error
                .get_or_insert(anyhow::Error::from(e).context(format!("unfreezing pool {name}")));
        }
    }
    match (result, unfreeze_error) {
        (Err(e), _) => Err(e),
        (Ok(_), Some(e)) => Err(e),
        (Ok(n), None) => Ok(n),
    }
}

/// Views of every pool (so an address in the wrong pool can be named) with the allocations
/// of the pools the rows name.
async fn views(client: &Client, rows: &[Row]) -> anyhow::Result<BTreeMap<String, PoolView>> {
    let named: BTreeSet<&str> = rows.iter().map(|r| r.pool.as_str()).collect();
    let query = AllocationQuery {
        limit: Some(1000),
        ..Default::default()
    };
    let mut views = BTreeMap::new();
    for pool in client.list_pools(&[]).await? {
        let allocations = if named.contains(pool.name.as_str()) {
            client.list_all_allocations(&pool.name, &query).await?
        } else {
            Vec::new()
        };
        views.insert(pool.name.clone(), PoolView::new(&pool, &allocations));
    }
    Ok(views)
}

/// Splits the rows into batches of at most [`BATCH_OPS`] ops and [`BATCH_BYTES`] bytes.
fn batches(rows: &[Row]) -> Vec<Vec<BatchOp>> {
    let mut batches = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for row in rows {
        let op = BatchOp::Allocate {
            pool: row.pool.clone(),
            owner: row.owner.clone(),
            ip: Some(row.ip.clone()),
            labels: row.labels.clone(),
            ttl_seconds: None,
        };
        let size = serde_json::to_vec(&op).map_or(BATCH_BYTES, |v| v.len() + 1);
        if !current.is_empty() && (current.len() == BATCH_OPS || bytes + size > BATCH_BYTES) {
            batches.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push(op);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

/// Writes `rows`, [`IN_FLIGHT`] batches at a time; returns how many were written. Rows were
/// checked, so batches are independent; a batch that fails stops the import after the ones in
/// flight, and a re-run skips what was written.
async fn write(client: &Client, rows: &[Row]) -> anyhow::Result<usize> {
    let batches = batches(rows);
    let progress = Progress::new(rows.len());
    let mut pending = batches.into_iter().enumerate();
    let mut tasks = tokio::task::JoinSet::new();
    let mut written = 0;
    let mut first_error: Option<anyhow::Error> = None;
    // Row offsets of each batch, to name the failing row.
    let mut offsets = Vec::new();
    let mut offset = 0;
    loop {
        while first_error.is_none() && tasks.len() < IN_FLIGHT {
            let Some((i, ops)) = pending.next() else {
                break;
            };
            offsets.push(offset);
            offset += ops.len();
            let client = client.clone();
            tasks.spawn(async move { (i, ops.len(), send(&client, ops).await) });
        }
        let Some(done) = tasks.join_next().await else {
            break;
        };
        let (i, len, result) = done.context("a batch task failed")?;
        match result {
            Ok(()) => {
                written += len;
                progress.set(written);
            }
            Err(e) => {
                let row = match &e {
                    ClientError::Api {
                        index: Some(index), ..
                    } => rows.get(offsets[i] + index),
                    _ => None,
                };
                let what = match row {
                    Some(r) => format!("line {} ({} {} {})", r.line, r.pool, r.ip, r.owner),
                    None => format!("batch {}", i + 1),
                };
                first_error.get_or_insert_with(|| {
                    anyhow::Error::new(e).context(format!("importing {what}"))
                });
            }
        }
    }
    progress.finish(written);
    match first_error {
        Some(e) => {
            eprintln!("{written} row(s) were written before the failure; re-running the import skips them");
            Err(e)
        }
        None => Ok(written),
    }
}

/// Sends one batch, retrying while the cluster is unavailable. Allocating an address its owner
/// already holds is a no-op, so a retry after an ambiguous failure cannot double-apply.
async fn send(client: &Client, ops: Vec<BatchOp>) -> Result<(), ClientError> {
    let mut delay = Duration::from_millis(100);
    for attempt in 1.. {
        match client.batch(ops.clone()).await {
            Ok(_) => return Ok(()),
            Err(e) if e.is_unavailable() && attempt < TRIES => {
                let wait = match &e {
                    ClientError::Api {
                        retry_after: Some(r),
                        ..
                    } => (*r).min(Duration::from_secs(5)),
                    _ => delay,
                };
                tokio::time::sleep(wait).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("the loop returns on the last try")
}

/// A bar on a terminal, a line per batch otherwise (logs keep a record of how far it got).
enum Progress {
    Bar(indicatif::ProgressBar),
    Lines(usize),
}

impl Progress {
    fn new(total: usize) -> Progress {
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(total as u64);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} rows {per_sec} eta {eta}",
            ) {
                bar.set_style(style);
            }
            Progress::Bar(bar)
        } else {
            Progress::Lines(total)
        }
    }

    fn set(&self, written: usize) {
        match self {
            Progress::Bar(bar) => bar.set_position(written as u64),
            Progress::Lines(total) => eprintln!("imported {written}/{total} rows"),
        }
    }

    fn finish(&self, written: usize) {
        if let Progress::Bar(bar) = self {
            bar.set_position(written as u64);
            bar.finish();
        }
    }
}

fn print_report(out: Output, report: &Report, to_write: usize) -> anyhow::Result<()> {
    let text = match out {
        Output::Json => {
            let mut text = serde_json::to_string_pretty(report)?;
            text.push('\n');
            text
        }
        Output::Table | Output::Csv => {
            let mut text = String::new();
            if !report.conflicts.is_empty() {
                let mut table = crate::render::Table::new(&[
                    "LINE", "POOL", "IP", "OWNER", "CONFLICT", "DETAIL",
                ]);
                for c in &report.conflicts {
                    table.row(vec![
                        c.line.to_string(),
                        c.pool.clone(),
                        c.ip.clone(),
                        c.owner.clone(),
                        c.code.to_string(),
                        c.message.clone(),
                    ]);
                }
                text.push_str(&table.render());
                text.push('\n');
            }
            let verb = if report.dry_run {
                format!("would write {to_write}")
            } else {
                format!("wrote {}", report.written)
            };
            text.push_str(&format!(
                "{} row(s): {verb}, {} already present, {} conflicting{}\n",
                report.rows,
                report.already_present,
                report.conflicts.len(),
                if report.dry_run { " (dry run)" } else { "" }
            ));
            text
        }
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

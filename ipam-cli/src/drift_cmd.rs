//! `ipam-cli drift` and `ipam-cli reconcile`: read an observed inventory (CSV with the header
//! `ip,owner`, or JSON), ask the node, and print the drift or the plan as tables.
//!
//! `reconcile` always runs the dry run first and prints its plan; with `--apply` it then
//! applies exactly that plan by passing the dry run's `as_of`, so a pool that changed
//! meanwhile makes the node refuse (`plan_stale`) instead of acting on what was not reviewed.

use anyhow::Context;
use ipam_client::types::{
    DriftReport, DriftRequest, ObservedEntry, ReconcileRequest, ReconcileResponse,
};
use ipam_client::Client;
use serde::Deserialize;

use crate::args::Output;
use crate::commands::emit;
use crate::exit::UsageError;
use crate::render::Table;

/// `ipam-cli reconcile` options.
pub struct ReconcileOptions {
    /// The pools.
    pub pools: Vec<String>,
    /// The inventory file.
    pub observed: std::path::PathBuf,
    /// Release allocations not observed.
    pub release_missing: bool,
    /// Give mismatched addresses to their observed owners.
    pub fix_mismatched: bool,
    /// Do not adopt unknown addresses.
    pub no_adopt: bool,
    /// Apply the reviewed plan.
    pub apply: bool,
    /// Grace period (node default when absent).
    pub grace_seconds: Option<u32>,
}

/// The JSON forms of an inventory: a list, `{"observed": [...]}`, or JSON lines.
#[derive(Deserialize)]
#[serde(untagged)]
enum JsonInventory {
    List(Vec<ObservedEntry>),
    Wrapped { observed: Vec<ObservedEntry> },
}

/// Parses an inventory: JSON (a list of `{"ip", "owner"?}`, the same under `"observed"`, or
/// one object per line) or CSV whose header is `ip,owner` (`owner` may be empty or absent).
pub fn read_observed(text: &str) -> anyhow::Result<Vec<ObservedEntry>> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') || trimmed.starts_with('{') {
        if let Ok(inv) = serde_json::from_str::<JsonInventory>(trimmed) {
            return Ok(match inv {
                JsonInventory::List(l) | JsonInventory::Wrapped { observed: l } => l,
            });
        }
        return trimmed
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str::<ObservedEntry>(l)
                    .with_context(|| format!("line {}: not an {{\"ip\", \"owner\"}} object", i + 1))
            })
            .collect();
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(text.as_bytes());
    let headers = reader.headers().context("reading the CSV header")?.clone();
    let column = |name: &str| headers.iter().position(|h| h == name);
    let Some(ip) = column("ip") else {
        anyhow::bail!(
            "the CSV header must be `ip,owner` (found `{}`)",
            headers.as_slice()
        );
    };
    let owner = column("owner");
    let mut out = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.with_context(|| format!("line {}", i + 2))?;
        let Some(addr) = record.get(ip).filter(|a| !a.is_empty()) else {
            anyhow::bail!("line {}: no ip", i + 2);
        };
        out.push(ObservedEntry {
            ip: addr.to_string(),
            owner: owner
                .and_then(|c| record.get(c))
                .filter(|o| !o.is_empty())
                .map(str::to_string),
        });
    }
    Ok(out)
}

fn load(path: &std::path::Path) -> anyhow::Result<Vec<ObservedEntry>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    read_observed(&text).with_context(|| path.display().to_string())
}

fn owner(o: &Option<String>) -> String {
    o.clone().unwrap_or_else(|| "-".into())
}

/// The drift as one table: class, address, pool, owners.
pub fn drift_table(d: &DriftReport) -> String {
    let mut t = Table::new(&["CLASS", "IP", "POOL", "RECORDED", "OBSERVED"]);
    for u in &d.unknown {
        t.row(vec![
            "unknown".into(),
            u.ip.clone(),
            u.pool.clone(),
            "-".into(),
            owner(&u.owner),
        ]);
    }
    for a in &d.missing {
        t.row(vec![
            "missing".into(),
            a.ip.clone(),
            a.pool.clone(),
            a.owner.clone(),
            "-".into(),
        ]);
    }
    for m in &d.mismatched {
        t.row(vec![
            "mismatched".into(),
            m.ip.clone(),
            m.pool.clone(),
            m.expected_owner.clone(),
            m.observed_owner.clone(),
        ]);
    }
    for ip in &d.outside {
        t.row(vec![
            "outside".into(),
            ip.clone(),
            "-".into(),
            "-".into(),
            "-".into(),
        ]);
    }
    format!(
        "as of log index {}: {} in sync, {} unknown, {} missing, {} mismatched, {} outside\n{}",
        d.as_of,
        d.in_sync,
        d.unknown.len(),
        d.missing.len(),
        d.mismatched.len(),
        d.outside.len(),
        if d.is_clean() {
            String::new()
        } else {
            t.render()
        }
    )
}

/// A reconcile's changes as one table: action, address, pool, owner, reason.
pub fn plan_table(r: &ReconcileResponse) -> String {
    let mut t = Table::new(&["ACTION", "IP", "POOL", "OWNER", "REASON"]);
    for a in &r.adopted {
        t.row(vec![
            "adopt".into(),
            a.ip.clone(),
            a.pool.clone(),
            a.owner.clone(),
            "-".into(),
        ]);
    }
    for a in &r.released {
        t.row(vec![
            "release".into(),
            a.ip.clone(),
            a.pool.clone(),
            a.owner.clone(),
            "-".into(),
        ]);
    }
    for a in &r.reassigned {
        t.row(vec![
            "reassign".into(),
            a.ip.clone(),
            a.pool.clone(),
            a.owner.clone(),
            "-".into(),
        ]);
    }
    for s in &r.skipped {
        t.row(vec![
            "skip".into(),
            s.ip.clone(),
            "-".into(),
            "-".into(),
            s.reason.clone(),
        ]);
    }
    let verb = if r.dry_run { "plan" } else { "applied" };
    format!(
        "{verb} as of log index {}: {} adopt, {} release, {} reassign, {} skipped\n{}",
        r.as_of,
        r.adopted.len(),
        r.released.len(),
        r.reassigned.len(),
        r.skipped.len(),
        t.render()
    )
}

fn check_pools(pools: &[String]) -> anyhow::Result<()> {
    if pools.is_empty() {
        return Err(UsageError("name at least one --pool".into()).into());
    }
    Ok(())
}

/// `ipam-cli drift --pool P --observed FILE`.
pub async fn drift(
    client: &Client,
    out: Output,
    pools: Vec<String>,
    observed: &std::path::Path,
) -> anyhow::Result<()> {
    check_pools(&pools)?;
    let req = DriftRequest {
        pools,
        observed: load(observed)?,
    };
    let report = client.drift(&req).await?;
    emit(out, &report, || drift_table(&report))
}

/// `ipam-cli reconcile ...`: the dry run, its plan, and with `--apply` exactly that plan.
pub async fn reconcile(client: &Client, out: Output, opts: ReconcileOptions) -> anyhow::Result<()> {
    check_pools(&opts.pools)?;
    let mut req = ReconcileRequest {
        pools: opts.pools,
        observed: load(&opts.observed)?,
        adopt_unknown: !opts.no_adopt,
        release_missing: opts.release_missing,
        fix_mismatched: opts.fix_mismatched,
        dry_run: true,
        as_of: None,
        grace_seconds: opts.grace_seconds,
    };
    let plan = client.reconcile(&req).await?;
    if !opts.apply {
        return emit(out, &plan, || {
            format!(
                "{}(dry run: nothing was written; --apply applies this plan)\n",
                plan_table(&plan)
            )
        });
    }
    req.dry_run = false;
    req.as_of = Some(plan.as_of);
    let done = client.reconcile(&req).await.context(
        "applying the reviewed plan (plan_stale: a pool changed since the dry run; run it again)",
    )?;
    #[derive(serde::Serialize)]
    struct Both<'a> {
        plan: &'a ReconcileResponse,
        applied: &'a ReconcileResponse,
    }
    emit(
        out,
        &Both {
            plan: &plan,
            applied: &done,
        },
        || format!("{}\n{}", plan_table(&plan), plan_table(&done)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventories_parse_as_csv_json_and_json_lines() {
        let csv = "ip,owner\n10.0.0.1,vm-1\n10.0.0.2,\n";
        let json = r#"[{"ip": "10.0.0.1", "owner": "vm-1"}, {"ip": "10.0.0.2"}]"#;
        let wrapped = r#"{"observed": [{"ip": "10.0.0.1", "owner": "vm-1"}, {"ip": "10.0.0.2"}]}"#;
        let lines = "{\"ip\": \"10.0.0.1\", \"owner\": \"vm-1\"}\n{\"ip\": \"10.0.0.2\"}\n";
        let want = vec![
            ObservedEntry {
                ip: "10.0.0.1".into(),
                owner: Some("vm-1".into()),
            },
            ObservedEntry {
                ip: "10.0.0.2".into(),
                owner: None,
            },
        ];
        for text in [csv, json, wrapped, lines] {
            assert_eq!(read_observed(text).expect(text), want, "{text}");
        }
        assert_eq!(read_observed("ip\n10.0.0.2\n").expect("ip only"), want[1..]);
        assert!(read_observed("addr,owner\n10.0.0.1,x\n").is_err());
        assert!(read_observed("{\"ip\": 5}\n").is_err());
    }
}

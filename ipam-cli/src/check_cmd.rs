//! `ipam-cli check`: every member's integrity check, compared at one common applied index.
//!
//! Each node checks its own state and reports the digest of the index it has applied. Under
//! writes the members' applied indexes differ from moment to moment, so the members are asked
//! together, again and again, until one round finds them all at the same index (or the
//! deadline passes): only digests of the same index can be compared.

use std::time::{Duration, Instant};

use anyhow::Context;
use ipam_client::ops::CheckResponse;
use ipam_client::Client;
use serde::Serialize;

use crate::args::Output;
use crate::render::Table;

/// Pause between rounds whose applied indexes differed.
const ROUND_PAUSE: Duration = Duration::from_millis(100);

/// One member's answer.
#[derive(Debug, Serialize)]
struct MemberCheck {
    addr: String,
    #[serde(flatten)]
    check: CheckResponse,
}

/// The `-o json` report.
#[derive(Debug, Serialize)]
struct Report {
    /// Every digest agrees at one applied index and no member found a problem.
    consistent: bool,
    /// The common applied index, when the members reached one.
    applied_index: Option<u64>,
    rounds: u32,
    members: Vec<MemberCheck>,
}

/// Asks every member (from the contacted node's membership) for its check until they agree on
/// an applied index or `deadline` passes; fails unless the digests agree and nothing is wrong.
pub async fn check(
    client: &Client,
    token: Option<String>,
    out: Output,
    deadline: Duration,
) -> anyhow::Result<()> {
    let status = client.cluster_status().await?;
    let scheme = client
        .endpoint()
        .split_once("://")
        .map_or("http", |(s, _)| s);
    let members: Vec<(String, Client)> = status
        .members
        .iter()
        .map(|m| {
            let c = Client::new(&format!("{scheme}://{}", m.addr), token.clone())
                .with_context(|| format!("member {} at {}", m.id, m.addr))?;
            Ok((m.addr.clone(), c.with_timeout(deadline)))
        })
        .collect::<anyhow::Result<_>>()?;
    if members.is_empty() {
        anyhow::bail!("the cluster has no members yet (not initialised?)");
    }
    let until = Instant::now() + deadline;
    let mut rounds = 0;
    let answers = loop {
        rounds += 1;
        let answers = ask_all(&members).await?;
        let first = answers[0].applied_index;
        if answers.iter().all(|a| a.applied_index == first) || Instant::now() >= until {
            break answers;
        }
        tokio::time::sleep(ROUND_PAUSE).await;
    };
    let common = answers[0].applied_index;
    let aligned = answers.iter().all(|a| a.applied_index == common);
    let digests_agree = aligned && answers.iter().all(|a| a.digest == answers[0].digest);
    let problems: usize = answers.iter().map(|a| a.problems.len()).sum();
    let report = Report {
        consistent: digests_agree && problems == 0,
        applied_index: aligned.then_some(common),
        rounds,
        members: members
            .iter()
            .zip(answers)
            .map(|((addr, _), check)| MemberCheck {
                addr: addr.clone(),
                check,
            })
            .collect(),
    };
    print(out, &report)?;
    if report.consistent {
        return Ok(());
    }
    if !aligned {
        anyhow::bail!(
            "the members' applied indexes did not meet within {} s ({rounds} rounds): digests \
             cannot be compared; retry with a larger --timeout or when writes pause",
            deadline.as_secs()
        );
    }
    if !digests_agree {
        anyhow::bail!("the members' state digests differ at applied index {common}");
    }
    anyhow::bail!("{problems} integrity problem(s) found")
}

/// Asks every member at once; answers in member order.
async fn ask_all(members: &[(String, Client)]) -> anyhow::Result<Vec<CheckResponse>> {
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (addr, c)) in members.iter().enumerate() {
        let (addr, c) = (addr.clone(), c.clone());
        tasks.spawn(async move {
            let answer = c
                .check()
                .await
                .with_context(|| format!("checking the member at {addr}"));
            (i, answer)
        });
    }
    let mut answers: Vec<Option<CheckResponse>> = vec![None; members.len()];
    while let Some(done) = tasks.join_next().await {
        let (i, answer) = done.context("a check task failed")?;
        answers[i] = Some(answer?);
    }
    Ok(answers.into_iter().flatten().collect())
}

fn print(out: Output, report: &Report) -> anyhow::Result<()> {
    use std::io::Write;
    let text = match out {
        Output::Json => {
            let mut t = serde_json::to_string_pretty(report)?;
            t.push('\n');
            t
        }
        Output::Table | Output::Csv => {
            let mut table =
                Table::new(&["NODE", "ADDR", "APPLIED", "DIGEST", "PROBLEMS"]).right_align(&[2, 4]);
            for m in &report.members {
                table.row(vec![
                    m.check.node.to_string(),
                    m.addr.clone(),
                    m.check.applied_index.to_string(),
                    m.check.digest.chars().take(16).collect(),
                    m.check.problems.len().to_string(),
                ]);
            }
            let mut text = table.render();
            for m in &report.members {
                for p in &m.check.problems {
                    text.push_str(&format!(
                        "node {}: {}: {}\n",
                        m.check.node, p.kind, p.message
                    ));
                }
            }
            if report.consistent {
                text.push_str(&format!(
                    "consistent: {} member(s) agree at applied index {}\n",
                    report.members.len(),
                    report.applied_index.unwrap_or(0)
                ));
            }
            text
        }
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

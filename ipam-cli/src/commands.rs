//! [`run`]: one parsed command → `ipam-client` calls → text on stdout.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use anyhow::Context;
use clap::CommandFactory;
use ipam_client::types::{
    AllocateRequest, AllocationList, ClusterStatus, CreatePoolRequest, GatewayField, NodeAddr,
    PoolList,
};
use ipam_client::{AllocationQuery, Client, Consistency};
use serde::Serialize;

use crate::args::{
    Cli, ClusterCommand, Command, CreatePool, IpCommand, Output, PoolCommand, ReadConsistency,
};
use crate::exit::UsageError;
use crate::render;

/// How long one request may take unless `--timeout` says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs one command against the node at `cli.endpoint`, printing its result on stdout.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let Cli {
        endpoint,
        token,
        output,
        consistency,
        timeout,
        ca_cert,
        client_cert,
        client_key,
        idempotency_key,
        command,
    } = cli;
    if let Some(key) = &idempotency_key {
        if !(1..=128).contains(&key.len()) || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(UsageError(
                "--idempotency-key must be 1 to 128 visible ASCII characters (no spaces)".into(),
            )
            .into());
        }
        if matches!(command, Command::Import { .. }) {
            return Err(UsageError(
                "--idempotency-key is for one write; import writes many times".into(),
            )
            .into());
        }
    }
    // `IPAM_TOKEN=` (set but empty) means no token, not an empty one.
    let token = token.filter(|t| !t.is_empty());
    if token.is_some() && std::env::var("IPAM_TOKEN").ok() != token {
        eprintln!("warning: --token on the command line is visible to every local user in `ps`; prefer the IPAM_TOKEN environment variable");
    }
    let tls = ipam_client::TlsOptions::from_files(
        ca_cert.as_deref(),
        client_cert.as_deref(),
        client_key.as_deref(),
    );
    // Adding a learner waits for it to catch up, which takes as long as the log is big.
    let waits_for_catch_up = matches!(
        command,
        Command::Cluster(ClusterCommand::AddLearner { .. }) | Command::Backup { .. }
    );
    let timeout = timeout.or((!waits_for_catch_up).then_some(DEFAULT_TIMEOUT));
    let tls_options = || {
        tls.as_ref().map_err(|e| match e {
            ipam_client::ClientError::TlsSetup(m) => ipam_client::ClientError::TlsSetup(m.clone()),
            other => ipam_client::ClientError::TlsSetup(other.to_string()),
        })
    };
    let connect = || -> anyhow::Result<Client> {
        let consistency = match consistency {
            ReadConsistency::Linearizable => Consistency::Linearizable,
            ReadConsistency::Local => Consistency::Local,
        };
        let client = Client::with_tls(&endpoint, token.clone(), tls_options()?)?
            .with_consistency(consistency);
        let client = match &idempotency_key {
            Some(key) => client.with_idempotency_key(key.clone()),
            None => client,
        };
        Ok(match timeout {
            Some(t) => client.with_timeout(t),
            None => client,
        })
    };
    match command {
        Command::IpPool(cmd) => pool(&connect()?, output, cmd).await,
        Command::Ip(cmd) => ip(&connect()?, output, cmd).await,
        Command::Cluster(cmd) => cluster(&connect()?, output, cmd).await,
        Command::Lease(cmd) => crate::leases::lease(&connect()?, output, cmd).await,
        Command::Events(args) => crate::events_cmd::events(&connect()?, output, args).await,
        Command::Export { pool } => crate::transfer_cmd::export(&connect()?, output, pool).await,
        Command::Import {
            file,
            dry_run,
            skip_conflicts,
            freeze,
        } => {
            let opts = crate::transfer_cmd::ImportOptions {
                file,
                dry_run,
                skip_conflicts,
                freeze,
            };
            crate::transfer_cmd::import(&connect()?, output, opts).await
        }
        Command::Check => {
            let deadline = timeout.unwrap_or(DEFAULT_TIMEOUT);
            let client = connect()?;
            crate::check_cmd::check(&client, token.clone(), tls_options()?, output, deadline).await
        }
        Command::Backup { file } => crate::backup_cmd::backup(&connect()?, output, &file).await,
        Command::Drift { pools, observed } => {
            crate::drift_cmd::drift(&connect()?, output, pools, &observed).await
        }
        Command::Reconcile {
            pools,
            observed,
            release_missing,
            fix_mismatched,
            no_adopt,
            apply,
            grace_seconds,
        } => {
            let opts = crate::drift_cmd::ReconcileOptions {
                pools,
                observed,
                release_missing,
                fix_mismatched,
                no_adopt,
                apply,
                grace_seconds,
            };
            crate::drift_cmd::reconcile(&connect()?, output, opts).await
        }
        Command::Completions { shell } => {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "ipam-cli", &mut buf);
            write_stdout(&String::from_utf8_lossy(&buf))
        }
    }
}

async fn pool(client: &Client, out: Output, cmd: PoolCommand) -> anyhow::Result<()> {
    match cmd {
        PoolCommand::Create(args) => {
            let pool = client.create_pool(&create_request(args)).await?;
            emit(out, &pool, || render::pool_details(&pool))
        }
        PoolCommand::Delete { name, force, yes } => {
            if force && !yes {
                confirm_force_delete(client, &name).await?;
            }
            client.delete_pool(&name, force).await?;
            done(out, &format!("deleted pool {name}"))
        }
        PoolCommand::List { labels } => {
            let list = PoolList {
                pools: client.list_pools(&labels).await?,
            };
            emit(out, &list, || render::pool_table(&list.pools))
        }
        PoolCommand::Show { name } => {
            let pool = client.get_pool(&name).await?;
            emit(out, &pool, || render::pool_details(&pool))
        }
        PoolCommand::Allocations {
            name,
            owner,
            limit,
            after,
            all,
        } => {
            let query = AllocationQuery {
                owner,
                after,
                limit,
            };
            let list = if all {
                AllocationList {
                    allocations: client.list_all_allocations(&name, &query).await?,
                    next: None,
                }
            } else {
                client.list_allocations(&name, &query).await?
            };
            emit(out, &list, || {
                let mut text = render::allocation_table(&list.allocations);
                if let Some(next) = &list.next {
                    text.push_str(&format!(
                        "(more follow: --after {next}, or --all for every page)\n"
                    ));
                }
                text
            })
        }
        other => crate::pool_cmds::run(client, out, other).await,
    }
}

fn create_request(args: CreatePool) -> CreatePoolRequest {
    let gateway = match (args.gateway, args.no_gateway) {
        (Some(ip), _) => GatewayField::Addr(ip),
        (None, true) => GatewayField::None,
        (None, false) => GatewayField::Default,
    };
    CreatePoolRequest {
        name: args.name,
        cidr: args.cidr,
        gateway,
        reserved: args.reserved,
        labels: args.labels.into_iter().collect(),
        description: args.description,
        delegation_prefix_len: args.delegation_prefix_len,
        parent: args.parent,
        ..args.settings.create_fields()
    }
}

/// `--force` drops every allocation of the pool: ask on a terminal, refuse without one.
async fn confirm_force_delete(client: &Client, name: &str) -> anyhow::Result<()> {
    if !std::io::stdin().is_terminal() {
        return Err(UsageError(format!(
            "refusing to force-delete pool {name} without confirmation: standard input is not \
             a terminal; pass --yes"
        ))
        .into());
    }
    // Naming the number of allocations makes the prompt mean something; it also reports an
    // unknown pool before asking.
    let pool = client.get_pool(name).await?;
    eprint!(
        "Delete pool {name} ({}) and its {} allocation(s)? [y/N] ",
        pool.cidr,
        render::thousands(&pool.stats.allocated)
    );
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("reading the answer")?;
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        anyhow::bail!("aborted: pool {name} not deleted")
    }
}

async fn ip(client: &Client, out: Output, cmd: IpCommand) -> anyhow::Result<()> {
    match cmd {
        IpCommand::Allocate {
            pool: None,
            selector,
            family,
            owner,
            labels,
            ttl,
            ..
        } => {
            let selector = selector.unwrap_or_default();
            crate::select::allocate_any(client, out, owner, selector, family, labels, ttl).await
        }
        IpCommand::Allocate {
            pool: Some(pool),
            owner,
            ip,
            labels,
            ttl,
            ..
        } => {
            let req = AllocateRequest {
                owner,
                ip,
                labels: labels.into_iter().collect(),
                ttl_seconds: ttl,
            };
            let (allocation, created) = client.allocate(&pool, &req).await?;
            emit(out, &allocation, || {
                let what = if created {
                    "allocated"
                } else {
                    "existing allocation (the owner already held it)"
                };
                format!("{what}\n{}", render::allocation_details(&allocation))
            })
        }
        IpCommand::Renew {
            pool,
            ip,
            generation,
            ttl,
        } => crate::leases::renew(client, out, &pool, &ip, generation, ttl).await,
        IpCommand::Release {
            pool,
            ip: Some(ip),
            generation,
            ..
        } => {
            client.release(&pool, &ip, generation).await?;
            done(out, &format!("released {ip} from pool {pool}"))
        }
        IpCommand::Release {
            pool,
            owner: Some(owner),
            ..
        } => {
            let released = client.release_owner(&pool, &owner).await?;
            emit(out, &released, || {
                if released.released.is_empty() {
                    format!("{owner} held no address in pool {pool}\n")
                } else {
                    released
                        .released
                        .iter()
                        .map(|ip| format!("released {ip} from pool {pool}\n"))
                        .collect()
                }
            })
        }
        IpCommand::Release { .. } => {
            // clap requires one of the two; kept as an error rather than a panic.
            Err(UsageError("ip release needs an IP or --owner".into()).into())
        }
        IpCommand::Show { ip } => {
            let info = client.address(&ip).await?;
            emit(out, &info, || match (&info.pool, &info.allocation) {
                (_, Some(a)) => render::allocation_details(a),
                (Some(pool), None) => format!("{ip} is not allocated (pool {pool})\n"),
                (None, None) => format!("{ip} is in no pool\n"),
            })
        }
        IpCommand::History(args) => crate::events_cmd::history(client, out, args).await,
    }
}

async fn cluster(client: &Client, out: Output, cmd: ClusterCommand) -> anyhow::Result<()> {
    match cmd {
        ClusterCommand::Status => {
            let status = client.cluster_status().await?;
            emit(out, &status, || render::cluster_status(&status))
        }
        ClusterCommand::Init { members } => {
            let text = if members.is_empty() {
                "initialised a single-node cluster".to_string()
            } else {
                let ids: Vec<String> = members.iter().map(|(id, _)| id.to_string()).collect();
                format!("initialised a cluster of nodes {}", ids.join(", "))
            };
            let members = members
                .into_iter()
                .map(|(id, addr)| NodeAddr { id, addr })
                .collect();
            let status = client.cluster_init(members).await?;
            // The node answers before the new membership is applied, so its status there
            // lists no members yet: people get the confirmation alone.
            emit(out, &status, || format!("{text}\n"))
        }
        ClusterCommand::AddLearner { id, addr } => {
            let status = client.add_learner(id, &addr).await?;
            changed(
                out,
                &format!("node {id} ({addr}) added as a learner and caught up"),
                &status,
            )
        }
        ClusterCommand::Voters { ids } => {
            let text = format!(
                "voters are now {}",
                ids.iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let status = client.set_voters(ids).await?;
            changed(out, &text, &status)
        }
        ClusterCommand::Promote { id } => {
            let status = client.promote_voter(id).await?;
            changed(out, &format!("node {id} promoted to voter"), &status)
        }
        ClusterCommand::Remove { id } => {
            let status = client.remove_member(id).await?;
            changed(out, &format!("node {id} removed"), &status)
        }
    }
}

/// A membership change: what was done and the cluster as it is now, or the status JSON.
fn changed(out: Output, text: &str, status: &ClusterStatus) -> anyhow::Result<()> {
    emit(out, status, || {
        format!("{text}\n\n{}", render::cluster_status(status))
    })
}

/// Prints `value` as pretty JSON or `table()` as text.
pub(crate) fn emit<T: Serialize>(
    out: Output,
    value: &T,
    table: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    match out {
        Output::Json => {
            let mut text = serde_json::to_string_pretty(value)?;
            text.push('\n');
            write_stdout(&text)
        }
        Output::Table | Output::Csv => write_stdout(&table()),
    }
}

/// A call whose answer carries nothing: a confirmation line for people, nothing for scripts
/// (the exit status says it).
pub(crate) fn done(out: Output, text: &str) -> anyhow::Result<()> {
    match out {
        Output::Json => Ok(()),
        Output::Table | Output::Csv => write_stdout(&format!("{text}\n")),
    }
}

pub(crate) fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // `ipam-cli ip-pool list | head -1`: the reader is gone, which is not a failure.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to standard output"),
    }
}

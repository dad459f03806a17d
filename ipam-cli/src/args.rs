//! The command line: clap definitions only.

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Operate a raft-ipam cluster through a node's HTTP API.
#[derive(Parser)]
#[command(name = "ipam-cli", version, about, propagate_version = true)]
pub struct Cli {
    /// Node to talk to; any node of the cluster accepts any call. Several separated by
    /// commas (`http://a:7470,http://b:7470`): the first that can be reached, preferring the
    /// one that leads.
    #[arg(
        long,
        global = true,
        env = "IPAM_ENDPOINT",
        default_value = "http://127.0.0.1:7470"
    )]
    pub endpoint: String,

    /// Cluster token, sent as `Authorization: Bearer`.
    #[arg(long, global = true, env = "IPAM_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Output format: aligned tables for people, or the API's JSON for scripts.
    #[arg(short, long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,

    /// Read consistency: `linearizable` reflects every acknowledged write; `local` answers from
    /// the contacted node's replica at once, possibly stale.
    #[arg(long, global = true, value_enum, default_value_t = ReadConsistency::Linearizable)]
    pub consistency: ReadConsistency,

    /// Give up on a request after this many seconds (exit status 5). Default: 60, except
    /// `cluster add-learner`, which waits until the learner has caught up.
    #[arg(long, global = true, value_name = "SECONDS", value_parser = parse_timeout)]
    pub timeout: Option<std::time::Duration>,

    /// PEM CA bundle the node's certificate is verified against (https:// endpoints)
    #[arg(long, global = true, env = "IPAM_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<std::path::PathBuf>,

    /// PEM client certificate for a node that requires one (mTLS)
    #[arg(long, global = true, env = "IPAM_CLIENT_CERT", value_name = "FILE")]
    pub client_cert: Option<std::path::PathBuf>,

    /// PEM private key of --client-cert
    #[arg(long, global = true, env = "IPAM_CLIENT_KEY", value_name = "FILE")]
    pub client_key: Option<std::path::PathBuf>,

    /// Send KEY as `Idempotency-Key` on the command's write: running the same command again
    /// with the same KEY gets the first answer and changes nothing (1-128 visible ASCII
    /// characters; not for `import`, which writes many times)
    #[arg(long, global = true, value_name = "KEY")]
    pub idempotency_key: Option<String>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `--output`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned tables and key/value listings.
    Table,
    /// The API's JSON, pretty-printed (JSON lines for `export`).
    Json,
    /// CSV, for `export` (other commands print tables).
    Csv,
}

/// `--consistency`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReadConsistency {
    /// Reflects every write acknowledged before the read.
    Linearizable,
    /// This node's replica, at once.
    Local,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage IP pools.
    #[command(name = "ip-pool", subcommand)]
    IpPool(PoolCommand),
    /// Allocate, release and look up addresses.
    #[command(subcommand)]
    Ip(IpCommand),
    /// Inspect and change cluster membership.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Renew leases.
    #[command(subcommand)]
    Lease(crate::leases::LeaseCommand),
    /// List the event log (oldest first), or follow it as it happens with --follow.
    Events(crate::events_cmd::EventsArgs),
    /// Write every allocation (of one pool, or all) as CSV (`pool,ip,owner,labels`) or, with
    /// `-o json`, JSON lines; the output imports as is.
    Export {
        /// Only this pool.
        #[arg(long)]
        pool: Option<String>,
    },
    /// Import allocations from CSV (`pool,ip,owner[,labels]`) or JSON lines: checks every row
    /// first and writes nothing while any conflicts; running it twice changes nothing.
    Import {
        /// The file to import.
        file: std::path::PathBuf,
        /// Check and report only; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Import the rows without a conflict, reporting the others.
        #[arg(long)]
        skip_conflicts: bool,
        /// Freeze the import's pools while writing; unfreeze them after (also on failure). A
        /// pool that was already frozen stays frozen.
        #[arg(long)]
        freeze: bool,
    },
    /// Check every member's state (allocation rows, owner index, free index, counters) and
    /// compare their digests at one common applied index; exit 0 only when all agree and
    /// nothing is wrong. Retries until the applied indexes meet, up to --timeout (default 60 s).
    Check,
    /// Download a consistent backup of the contacted node's state into FILE (checksum
    /// verified); `ipam-node --restore FILE` starts a new cluster from it.
    Backup {
        /// Where to write the backup (via FILE.part, renamed once verified).
        file: std::path::PathBuf,
    },
    /// Compare an observed inventory (CSV `ip,owner` or JSON) with the pools' allocations:
    /// unknown, missing, mismatched and outside addresses.
    Drift {
        /// A pool to compare (repeat for several, up to 100).
        #[arg(long = "pool", required = true)]
        pools: Vec<String>,
        /// The inventory file: CSV with the header `ip,owner`, or JSON.
        #[arg(long)]
        observed: std::path::PathBuf,
    },
    /// Fix drift: runs the dry run, prints the plan, and with --apply applies exactly that
    /// plan (refused with `plan_stale` if a pool changed since the dry run).
    Reconcile {
        /// A pool to reconcile (repeat for several, up to 100).
        #[arg(long = "pool", required = true)]
        pools: Vec<String>,
        /// The inventory file: CSV with the header `ip,owner`, or JSON.
        #[arg(long)]
        observed: std::path::PathBuf,
        /// Release allocations that were not observed.
        #[arg(long)]
        release_missing: bool,
        /// Give mismatched addresses to their observed owners.
        #[arg(long)]
        fix_mismatched: bool,
        /// Do not allocate unknown addresses to their observed owners.
        #[arg(long)]
        no_adopt: bool,
        /// Apply the plan (default: dry run only).
        #[arg(long)]
        apply: bool,
        /// Never release or reassign what was allocated or renewed this recently (default 300).
        #[arg(long, value_name = "SECONDS")]
        grace_seconds: Option<u32>,
    },
    /// Print a shell completion script.
    Completions {
        /// Shell to generate for.
        shell: clap_complete::Shell,
    },
}

/// `ipam-cli ip-pool ...`.
#[derive(Debug, Subcommand)]
pub enum PoolCommand {
    /// Create a pool.
    Create(CreatePool),
    /// Delete a pool.
    Delete {
        /// Pool name.
        name: String,
        /// Also drop the pool's allocations (asks for confirmation on a terminal).
        #[arg(long)]
        force: bool,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// List pools with their usage.
    List {
        /// Only pools carrying this label (repeatable; all must match).
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
    },
    /// Show one pool: settings, reserved ranges, labels, usage.
    Show {
        /// Pool name.
        name: String,
    },
    /// List a pool's allocations in address order.
    Allocations {
        /// Pool name.
        name: String,
        /// Only this owner's allocation.
        #[arg(long)]
        owner: Option<String>,
        /// Page size (1–1000; the node's default is 100).
        #[arg(long)]
        limit: Option<u32>,
        /// Start after this address (the `next` of a previous page).
        #[arg(long, value_name = "IP")]
        after: Option<String>,
        /// Follow the cursor to the end instead of printing one page.
        #[arg(long)]
        all: bool,
    },
    /// Change a pool's settings, labels, reserved entries or gateway.
    Update(crate::pool_args::UpdatePool),
    /// Add a range (same family, overlapping no pool) to a pool.
    AddRange {
        /// Pool name.
        name: String,
        /// The range.
        cidr: String,
        /// Its gateway (default: the first usable address of an IPv4 range up to /30).
        #[arg(long, value_name = "IP", conflicts_with = "no_gateway")]
        gateway: Option<String>,
        /// No gateway.
        #[arg(long)]
        no_gateway: bool,
    },
    /// Remove an empty range (not the first) from a pool.
    RemoveRange {
        /// Pool name.
        name: String,
        /// The range.
        cidr: String,
    },
    /// Refuse allocations without an address and deletion (imports still work).
    Freeze {
        /// Pool name.
        name: String,
    },
    /// Undo `freeze`.
    Unfreeze {
        /// Pool name.
        name: String,
    },
    /// Show what the next allocations without an address would get (nothing is written).
    NextFree {
        /// Pool name.
        name: String,
        /// How many (1–1000).
        #[arg(long, default_value_t = 1)]
        count: u64,
    },
}

/// `ipam-cli ip-pool create`.
#[derive(Debug, Args)]
pub struct CreatePool {
    /// Pool name: `[a-z0-9][a-z0-9-]{0,62}`.
    pub name: String,
    /// Network with no host bits set: `10.0.0.0/24`, `fd00::/64`.
    pub cidr: String,
    /// Gateway address (default: the first usable address of an IPv4 pool up to /30).
    #[arg(long, value_name = "IP", conflicts_with = "no_gateway")]
    pub gateway: Option<String>,
    /// No gateway.
    #[arg(long)]
    pub no_gateway: bool,
    /// Never allocate these: an address, a range `A-B` or a CIDR (repeatable).
    #[arg(long = "reserve", value_name = "IP|RANGE|CIDR")]
    pub reserved: Vec<String>,
    /// Label (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Free text.
    #[arg(long)]
    pub description: Option<String>,
    /// Network configuration, lease and selection settings.
    #[command(flatten)]
    pub settings: crate::pool_args::PoolSettingsArgs,
    /// Make it a prefix pool that hands out aligned blocks of this prefix length
    /// (`10.42.0.0/16 --delegate 24` hands out /24s).
    #[arg(
        long = "delegate",
        value_name = "PREFIX_LEN",
        conflicts_with = "parent"
    )]
    pub delegation_prefix_len: Option<u8>,
    /// Make it a child pool of this prefix pool: the CIDR must be one of its allocated blocks
    /// (`ip-pool create host-3 10.42.3.0/24 --parent mesh`).
    #[arg(long, value_name = "POOL")]
    pub parent: Option<String>,
}

/// `ipam-cli ip ...`.
#[derive(Debug, Subcommand)]
pub enum IpCommand {
    /// Allocate an address for an owner (returns the owner's existing one if it holds one).
    /// Without a pool, `--selector` lets the cluster choose the least loaded matching pool.
    Allocate {
        /// Pool name; omit it and give `--selector` to let the cluster choose.
        #[arg(required_unless_present = "selector", conflicts_with_all = ["selector", "family"])]
        pool: Option<String>,
        /// Choose the pool: label pairs it must carry (`zone=a,tier=gold`; repeatable).
        #[arg(long, value_name = "KEY=VALUE[,KEY=VALUE]", value_delimiter = ',', value_parser = parse_label, conflicts_with = "ip")]
        selector: Option<Vec<(String, String)>>,
        /// With `--selector`: only pools of this family (`ipv4` or `ipv6`).
        #[arg(long, value_parser = crate::select::parse_family, requires = "selector")]
        family: Option<ipam_client::types::AddressFamily>,
        /// Owner, for example `vm-42/eth0`.
        #[arg(long)]
        owner: String,
        /// This address rather than the lowest free one.
        #[arg(long)]
        ip: Option<String>,
        /// Label (repeatable).
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Make it a lease of this length (`90s`, `10m`, `1h`, `7d`; `0` for permanent);
        /// default: the pool's.
        #[arg(long, value_name = "DURATION", value_parser = crate::leases::parse_duration)]
        ttl: Option<u32>,
    },
    /// Renew an allocation's lease: it then ends `ttl` from now (default: its own length).
    Renew {
        /// Pool name.
        pool: String,
        /// Address.
        ip: String,
        /// Renew only if the allocation has this generation.
        #[arg(long)]
        generation: Option<u64>,
        /// New lease length (`0`: permanent).
        #[arg(long, value_name = "DURATION", value_parser = crate::leases::parse_duration)]
        ttl: Option<u32>,
    },
    /// Release an address, or every address of an owner in the pool (`--owner`).
    Release {
        /// Pool name.
        pool: String,
        /// Address to release.
        #[arg(required_unless_present = "owner", conflicts_with = "owner")]
        ip: Option<String>,
        /// Release only if the allocation has this generation (fences stale callers).
        #[arg(long, requires = "ip", conflicts_with = "owner")]
        generation: Option<u64>,
        /// Release what this owner holds in the pool.
        #[arg(long)]
        owner: Option<String>,
    },
    /// Show which pool contains an address and who holds it.
    Show {
        /// Address.
        ip: String,
    },
    /// The events of an address, newest first: who held it and when.
    History(crate::events_cmd::HistoryArgs),
}

/// `ipam-cli cluster ...`.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Show the contacted node's view of the cluster.
    Status,
    /// Initialise a cluster (default: the contacted node alone).
    Init {
        /// Initial member (repeatable).
        #[arg(long = "member", value_name = "ID=HOST:PORT", value_parser = parse_member)]
        members: Vec<(u64, String)>,
    },
    /// Add a node as a learner; returns once it has caught up.
    AddLearner {
        /// Node id (never reuse a removed node's).
        id: u64,
        /// `host:port` the cluster reaches it at.
        addr: String,
    },
    /// Set the voter set.
    Voters {
        /// Node ids of the new voters.
        #[arg(required = true, num_args = 1..)]
        ids: Vec<u64>,
    },
    /// Promote one learner to voter.
    Promote {
        /// Node id.
        id: u64,
    },
    /// Remove a member.
    Remove {
        /// Node id.
        id: u64,
    },
}

fn parse_timeout(s: &str) -> Result<std::time::Duration, String> {
    match s.parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs.is_finite() => {
            std::time::Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
        }
        _ => Err(format!("expected a positive number of seconds, got {s:?}")),
    }
}

pub(crate) fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

fn parse_member(s: &str) -> Result<(u64, String), String> {
    let (id, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("expected ID=HOST:PORT, got {s:?}"))?;
    let id = id
        .parse()
        .map_err(|_| format!("node id {id:?} is not a number"))?;
    if addr.is_empty() {
        return Err(format!("expected ID=HOST:PORT, got {s:?}"));
    }
    Ok((id, addr.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn labels_and_members_parse() {
        assert_eq!(parse_label("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert_eq!(parse_label("a=").unwrap(), ("a".into(), "".into()));
        assert!(parse_label("=b").is_err());
        assert!(parse_label("ab").is_err());
        assert_eq!(
            parse_member("2=127.0.0.1:7471").unwrap(),
            (2, "127.0.0.1:7471".into())
        );
        assert!(parse_member("x=h:1").is_err());
        assert!(parse_member("2=").is_err());
        assert_eq!(
            parse_timeout("0.5").unwrap(),
            std::time::Duration::from_millis(500)
        );
        assert!(parse_timeout("0").is_err());
        assert!(parse_timeout("-1").is_err());
        assert!(parse_timeout("inf").is_err());
        assert!(parse_timeout("x").is_err());
    }

    #[test]
    fn gateway_flags_conflict() {
        let r = Cli::try_parse_from([
            "ipam-cli",
            "ip-pool",
            "create",
            "a",
            "10.0.0.0/24",
            "--gateway",
            "10.0.0.1",
            "--no-gateway",
        ]);
        assert!(r.is_err());
    }

    #[test]
    fn release_takes_an_ip_or_an_owner() {
        let ok = |args: &[&str]| {
            Cli::try_parse_from(["ipam-cli", "ip", "release"].iter().chain(args)).is_ok()
        };
        assert!(ok(&["vms", "10.0.0.2"]));
        assert!(ok(&["vms", "10.0.0.2", "--generation", "3"]));
        assert!(ok(&["vms", "--owner", "vm-1"]));
        assert!(!ok(&["vms"]));
        assert!(!ok(&["vms", "10.0.0.2", "--owner", "vm-1"]));
        assert!(!ok(&["vms", "--owner", "vm-1", "--generation", "3"]));
    }
}

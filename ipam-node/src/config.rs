//! Node configuration: flags win over `IPAM_*` environment variables, which win over the TOML
//! config file, which wins over the built-in defaults.
//!
//! [`Args`] is written once and read three ways: clap parses it from the flags (and their
//! environment twins), serde from the TOML file (keys are the field names). [`Args::over`]
//! layers one over the other, and [`Args::merge`] resolves the result over
//! [`NodeConfig::default`] — the one place with defaults, which takes the raft layer's own
//! from [`ipam_raft::Config::new`] — into the checked [`NodeConfig`] that [`crate::run`] takes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

/// Default log filter: this node's own events at `info`, openraft's (chatty at `info`) from
/// `warn`.
pub const DEFAULT_LOG_LEVEL: &str = "info,openraft=warn";

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Upper bound of every duration setting: beyond it a deadline is a typo, and `now + d`
/// would overflow the clock.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Largest `--state-cache-mib` (64 GiB): a typo of a few digits is refused rather than
/// reserved.
const MAX_STATE_CACHE_MIB: u64 = 64 << 10;

/// Everything a node needs to start. `Default` is a node started with no flags.
#[derive(Clone)]
pub struct NodeConfig {
    /// Raft node id.
    pub id: u64,
    /// `host:port` to bind (used by `main`; `run` takes an already bound listener).
    pub listen: String,
    /// `host:port` peers use; `None`: the address actually bound.
    pub advertise: Option<String>,
    /// Do not self-initialise.
    pub no_init: bool,
    /// Where redb files live.
    pub data_dir: PathBuf,
    /// Cluster token.
    pub token: Option<String>,
    /// URL of a node to join through.
    pub join: Option<String>,
    /// How long `--join` keeps retrying before the node gives up and stops.
    pub join_timeout: Duration,
    /// Raft heartbeat interval.
    pub heartbeat: Duration,
    /// Raft election timeout range (min, max).
    pub election_timeout: (Duration, Duration),
    /// Build a snapshot after this many log entries since the last one.
    pub snapshot_logs: u64,
    /// Log entries kept after a snapshot (so lagging followers catch up without one).
    pub snapshot_keep_logs: u64,
    /// Deadline of one write, from proposal until acknowledged.
    pub write_deadline: Duration,
    /// Deadline of a linearizable read barrier.
    pub read_deadline: Duration,
    /// Deadline of a whole HTTP request on `/api/v1/*` (above the write deadline, so a write
    /// times out in raft first and reports `deadline_exceeded` with its own timing).
    pub request_timeout: Duration,
    /// Cap of operations coalesced into one log entry.
    pub max_ops_per_entry: usize,
    /// Log entries the proposer keeps in flight at once.
    pub max_inflight_entries: usize,
    /// Bound of the write queue (commands); beyond it writes answer `overloaded`.
    pub queue_capacity: usize,
    /// Page cache of the state database, MiB.
    pub state_cache_mib: u64,
    /// `tracing` filter directive (`info`, `ipam_node=debug,info`, ...).
    pub log_level: String,
    /// Log output format.
    pub log_format: LogFormat,
    /// How often the node runs its integrity check (and repairs its free index); `None`: never.
    pub check_interval: Option<Duration>,
    /// A backup to restore into the (empty) data dir as a new single-voter cluster.
    pub restore: Option<PathBuf>,
    /// Serve HTTPS and reach peers over TLS with these files; `None`: plain HTTP.
    pub tls: Option<crate::tls::TlsFiles>,
    /// Connections open at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Threads of the node's async runtime; `None`: one per CPU the process may use.
    pub worker_threads: Option<usize>,
    /// Timeout of one snapshot chunk and of installing a whole received snapshot.
    pub install_snapshot_timeout: Duration,
    /// The token was given on the command line (`ps` shows it): `run` warns.
    pub token_on_command_line: bool,
    /// OTLP/HTTP traces URL spans are exported to; `None`: no trace export.
    pub otlp_endpoint: Option<String>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        // The raft layer's knobs default to its own values; only the node's are set here.
        let raft = ipam_raft::Config::new(1, "ipam-data", "");
        NodeConfig {
            id: raft.id,
            listen: "127.0.0.1:7470".to_string(),
            advertise: None,
            no_init: false,
            data_dir: raft.data_dir,
            token: None,
            join: None,
            join_timeout: Duration::from_secs(300),
            heartbeat: raft.heartbeat,
            election_timeout: raft.election_timeout,
            snapshot_logs: raft.snapshot_logs,
            snapshot_keep_logs: raft.max_in_snapshot_log_to_keep,
            write_deadline: raft.write_deadline,
            read_deadline: raft.read_deadline,
            request_timeout: Duration::from_secs(30),
            max_ops_per_entry: raft.max_ops_per_entry,
            max_inflight_entries: raft.max_inflight_entries,
            queue_capacity: raft.queue_capacity,
            state_cache_mib: (raft.state_cache_bytes >> 20) as u64,
            log_level: DEFAULT_LOG_LEVEL.to_string(),
            log_format: LogFormat::Text,
            check_interval: Some(Duration::from_secs(3600)),
            restore: None,
            tls: None,
            max_connections: crate::serve::DEFAULT_MAX_CONNECTIONS,
            worker_threads: None,
            token_on_command_line: false,
            otlp_endpoint: None,
            install_snapshot_timeout: raft.install_snapshot_timeout,
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is not valid TOML or has unknown keys.
    #[error("invalid config file {path}: {source}")]
    ParseFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: Box<toml::de::Error>,
    },
    /// The token file could not be read.
    #[error("cannot read token file {path}: {source}")]
    ReadTokenFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A value is out of range or inconsistent with another.
    #[error("{0}")]
    Invalid(String),
}

/// The node's settings as given: the `ipam-node` command line, and also the TOML file's keys
/// (the field names). Every flag has an `IPAM_*` environment twin; a flag wins over its twin,
/// and both win over the `--config` file. `None`: not given at this layer.
#[derive(Clone, Default, Parser, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(
    name = "ipam-node",
    version,
    about = "raft-ipam node: replicated IP address manager"
)]
pub struct Args {
    /// Raft node id (never reuse the id of a removed node) [default: 1]
    #[arg(long, env = "IPAM_ID")]
    pub id: Option<u64>,
    /// host:port to bind, serving the API and /raft/* [default: 127.0.0.1:7470]
    #[arg(long, env = "IPAM_LISTEN")]
    pub listen: Option<String>,
    /// host:port peers use to reach this node [default: the address actually bound]
    #[arg(long, env = "IPAM_ADVERTISE")]
    pub advertise: Option<String>,
    /// Do not self-initialise; wait for /api/v1/cluster/init or to be added by another node
    #[arg(long, env = "IPAM_NO_INIT", num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub no_init: Option<bool>,
    /// Directory of the redb files [default: ./ipam-data]
    #[arg(long, env = "IPAM_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Cluster token required as `Authorization: Bearer` on /api/v1/* and /raft/*
    #[arg(
        long,
        env = "IPAM_TOKEN",
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    pub token: Option<String>,
    /// File holding the cluster token (surrounding whitespace is ignored)
    #[arg(long, env = "IPAM_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// URL of a cluster node to join through (for example http://127.0.0.1:7471); several
    /// separated by commas: the first that can be reached
    #[arg(long, env = "IPAM_JOIN")]
    pub join: Option<String>,
    /// How long --join keeps retrying, in seconds [default: 300]
    #[arg(long, env = "IPAM_JOIN_TIMEOUT_SECS")]
    pub join_timeout_secs: Option<u64>,
    /// TOML config file; keys are the flag names with `_` for `-`
    #[arg(long, env = "IPAM_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Raft heartbeat interval in milliseconds [default: 100]
    #[arg(long, env = "IPAM_HEARTBEAT_MS")]
    pub heartbeat_ms: Option<u64>,
    /// Minimum raft election timeout in milliseconds [default: 500]
    #[arg(long, env = "IPAM_ELECTION_TIMEOUT_MIN_MS")]
    pub election_timeout_min_ms: Option<u64>,
    /// Maximum raft election timeout in milliseconds [default: 1000]
    #[arg(long, env = "IPAM_ELECTION_TIMEOUT_MAX_MS")]
    pub election_timeout_max_ms: Option<u64>,
    /// Build a snapshot after this many log entries [default: 5000]
    #[arg(long, env = "IPAM_SNAPSHOT_LOGS")]
    pub snapshot_logs: Option<u64>,
    /// Log entries kept after a snapshot [default: 1000]
    #[arg(long, env = "IPAM_SNAPSHOT_KEEP_LOGS")]
    pub snapshot_keep_logs: Option<u64>,
    /// Deadline of one write in milliseconds [default: 10000]
    #[arg(long, env = "IPAM_WRITE_DEADLINE_MS")]
    pub write_deadline_ms: Option<u64>,
    /// Deadline of a linearizable read barrier in milliseconds [default: 5000]
    #[arg(long, env = "IPAM_READ_DEADLINE_MS")]
    pub read_deadline_ms: Option<u64>,
    /// Deadline of one HTTP API request in milliseconds (not /api/v1/cluster/*) [default: 30000]
    #[arg(long, env = "IPAM_REQUEST_TIMEOUT_MS")]
    pub request_timeout_ms: Option<u64>,
    /// Cap of operations coalesced into one log entry [default: 1000]
    #[arg(long, env = "IPAM_MAX_OPS_PER_ENTRY")]
    pub max_ops_per_entry: Option<usize>,
    /// Log entries the proposer keeps in flight at once [default: 2]
    #[arg(long, env = "IPAM_MAX_INFLIGHT_ENTRIES")]
    pub max_inflight_entries: Option<usize>,
    /// Bound of the write queue in commands; beyond it writes answer 503 overloaded
    /// [default: 100000]
    #[arg(long, env = "IPAM_QUEUE_CAPACITY")]
    pub queue_capacity: Option<usize>,
    /// Page cache of the state database in MiB, 1 to 65536: resident memory against reads
    /// from the OS page cache [default: 64]
    #[arg(long, env = "IPAM_STATE_CACHE_MIB", value_name = "MIB")]
    pub state_cache_mib: Option<u64>,
    /// Seconds between integrity checks of this node's state (0: never) [default: 3600]
    #[arg(long, env = "IPAM_CHECK_INTERVAL", value_name = "SECONDS")]
    pub check_interval: Option<u64>,
    /// Restore this backup (`ipam-cli backup`) into the empty --data-dir as a new single-voter
    /// cluster with a new cluster id, then serve; other nodes --join it. Refuses a non-empty
    /// data dir or a damaged file, writing nothing. Flag only (no environment twin, not in the
    /// config file), so a restart does not try again.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub restore: Option<PathBuf>,
    /// Log filter: a level (error, warn, info, debug, trace) or tracing directives such as
    /// `info,openraft=debug` [default: info,openraft=warn]
    #[arg(long, env = "IPAM_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Log format [default: text]
    #[arg(long, env = "IPAM_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Export trace spans over OTLP/HTTP (protobuf) to this collector URL, e.g.
    /// `http://127.0.0.1:4318` (`/v1/traces` is appended unless given) [default: off]
    #[arg(long, env = "IPAM_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// PEM certificate chain: serve HTTPS only and reach peers with https:// (needs --tls-key)
    #[arg(long, env = "IPAM_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert
    #[arg(long, env = "IPAM_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle peers' certificates (and with --tls-client-auth clients') are verified
    /// against
    #[arg(long, env = "IPAM_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Require client certificates signed by --tls-ca (mTLS), peers included
    #[arg(long, env = "IPAM_TLS_CLIENT_AUTH", num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub tls_client_auth: Option<bool>,
    /// Connections open at once; beyond it new connections are closed at once [default: 10000]
    #[arg(long, env = "IPAM_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Threads of the async runtime, 1..=1024 [default: one per CPU the process may use]; fewer
    /// when nodes or other busy services share the machine's cores
    #[arg(long, env = "IPAM_WORKER_THREADS")]
    pub worker_threads: Option<usize>,
    /// Timeout of one snapshot chunk and of installing a received snapshot, in milliseconds;
    /// size it for the largest state [default: 300000]
    #[arg(long, env = "IPAM_INSTALL_SNAPSHOT_TIMEOUT_MS")]
    pub install_snapshot_timeout_ms: Option<u64>,
    /// A subcommand instead of running a node.
    #[command(subcommand)]
    #[serde(skip)]
    pub command: Option<crate::certs::Command>,
}

impl Args {
    /// Reads and parses a TOML config file.
    pub fn load(path: &Path) -> Result<Args, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
            path: path.to_owned(),
            source,
        })?;
        Args::from_toml(&text).map_err(|source| ConfigError::ParseFile {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// Parses TOML text (unknown keys are refused).
    pub fn from_toml(text: &str) -> Result<Args, toml::de::Error> {
        toml::from_str(text)
    }

    /// Loads the `--config` file (if any) and merges: these args (flags, then environment) over
    /// the file over the defaults; reads the token file; checks the result.
    pub fn resolve(self) -> Result<NodeConfig, ConfigError> {
        let file = match &self.config {
            Some(path) => Args::load(path)?,
            None => Args::default(),
        };
        self.merge(file)
    }

    /// Every setting given here, else the one of `lower`. A token given directly or through a
    /// file at this layer wins over both at the lower one.
    pub fn over(self, lower: Args) -> Args {
        let (token, token_file) = if self.token.is_some() || self.token_file.is_some() {
            (self.token, self.token_file)
        } else {
            (lower.token, lower.token_file)
        };
        Args {
            id: self.id.or(lower.id),
            listen: self.listen.or(lower.listen),
            advertise: self.advertise.or(lower.advertise),
            no_init: self.no_init.or(lower.no_init),
            data_dir: self.data_dir.or(lower.data_dir),
            token,
            token_file,
            join: self.join.or(lower.join),
            join_timeout_secs: self.join_timeout_secs.or(lower.join_timeout_secs),
            config: self.config.or(lower.config),
            heartbeat_ms: self.heartbeat_ms.or(lower.heartbeat_ms),
            election_timeout_min_ms: self
                .election_timeout_min_ms
                .or(lower.election_timeout_min_ms),
            election_timeout_max_ms: self
                .election_timeout_max_ms
                .or(lower.election_timeout_max_ms),
            snapshot_logs: self.snapshot_logs.or(lower.snapshot_logs),
            snapshot_keep_logs: self.snapshot_keep_logs.or(lower.snapshot_keep_logs),
            write_deadline_ms: self.write_deadline_ms.or(lower.write_deadline_ms),
            read_deadline_ms: self.read_deadline_ms.or(lower.read_deadline_ms),
            request_timeout_ms: self.request_timeout_ms.or(lower.request_timeout_ms),
            max_ops_per_entry: self.max_ops_per_entry.or(lower.max_ops_per_entry),
            max_inflight_entries: self.max_inflight_entries.or(lower.max_inflight_entries),
            queue_capacity: self.queue_capacity.or(lower.queue_capacity),
            state_cache_mib: self.state_cache_mib.or(lower.state_cache_mib),
            install_snapshot_timeout_ms: self
                .install_snapshot_timeout_ms
                .or(lower.install_snapshot_timeout_ms),
            check_interval: self.check_interval.or(lower.check_interval),
            restore: self.restore.or(lower.restore),
            log_level: self.log_level.or(lower.log_level),
            log_format: self.log_format.or(lower.log_format),
            tls_cert: self.tls_cert.or(lower.tls_cert),
            tls_key: self.tls_key.or(lower.tls_key),
            tls_ca: self.tls_ca.or(lower.tls_ca),
            tls_client_auth: self.tls_client_auth.or(lower.tls_client_auth),
            max_connections: self.max_connections.or(lower.max_connections),
            worker_threads: self.worker_threads.or(lower.worker_threads),
            otlp_endpoint: self.otlp_endpoint.or(lower.otlp_endpoint),
            command: self.command.or(lower.command),
        }
    }

    /// Layers these args over `file`, resolves the result over the defaults, reads the token
    /// file and checks the result.
    pub fn merge(self, file: Args) -> Result<NodeConfig, ConfigError> {
        // clap fills `token` from the flag or from IPAM_TOKEN: only a value other than the
        // environment's came from the command line (the file layer is `file`, not `self`).
        let token_on_command_line =
            self.token.is_some() && std::env::var("IPAM_TOKEN").ok() != self.token;
        let a = self.over(file);
        let d = NodeConfig::default();
        let tls = crate::tls::files_from(
            a.tls_cert,
            a.tls_key,
            a.tls_ca,
            a.tls_client_auth.unwrap_or(false),
        )
        .map_err(ConfigError::Invalid)?;
        let secs = |v: Option<u64>, default| duration(v, 1000, default);
        let ms = |v: Option<u64>, default| duration(v, 1, default);
        let token = match (a.token, a.token_file) {
            (Some(t), _) => Some(t),
            (None, Some(f)) => Some(read_token_file(&f)?),
            (None, None) => None,
        };
        let config = NodeConfig {
            id: a.id.unwrap_or(d.id),
            listen: a.listen.unwrap_or(d.listen),
            advertise: a.advertise,
            no_init: a.no_init.unwrap_or(d.no_init),
            data_dir: a.data_dir.unwrap_or(d.data_dir),
            token,
            join: a.join,
            join_timeout: secs(a.join_timeout_secs, d.join_timeout)?,
            heartbeat: ms(a.heartbeat_ms, d.heartbeat)?,
            election_timeout: (
                ms(a.election_timeout_min_ms, d.election_timeout.0)?,
                ms(a.election_timeout_max_ms, d.election_timeout.1)?,
            ),
            snapshot_logs: a.snapshot_logs.unwrap_or(d.snapshot_logs),
            snapshot_keep_logs: a.snapshot_keep_logs.unwrap_or(d.snapshot_keep_logs),
            write_deadline: ms(a.write_deadline_ms, d.write_deadline)?,
            read_deadline: ms(a.read_deadline_ms, d.read_deadline)?,
            request_timeout: ms(a.request_timeout_ms, d.request_timeout)?,
            max_ops_per_entry: a.max_ops_per_entry.unwrap_or(d.max_ops_per_entry),
            max_inflight_entries: a.max_inflight_entries.unwrap_or(d.max_inflight_entries),
            queue_capacity: a.queue_capacity.unwrap_or(d.queue_capacity),
            state_cache_mib: a.state_cache_mib.unwrap_or(d.state_cache_mib),
            log_level: a.log_level.unwrap_or(d.log_level),
            log_format: a.log_format.unwrap_or(d.log_format),
            check_interval: match a.check_interval {
                Some(0) => None,
                Some(v) => Some(secs(Some(v), Duration::ZERO)?),
                None => d.check_interval,
            },
            restore: a.restore,
            tls,
            max_connections: a.max_connections.unwrap_or(d.max_connections),
            worker_threads: a.worker_threads.or(d.worker_threads),
            token_on_command_line,
            otlp_endpoint: a
                .otlp_endpoint
                .as_deref()
                .map(crate::telemetry::traces_url)
                .transpose()
                .map_err(ConfigError::Invalid)?,
            install_snapshot_timeout: ms(
                a.install_snapshot_timeout_ms,
                d.install_snapshot_timeout,
            )?,
        };
        config.check()?;
        Ok(config)
    }
}

/// `value` units of `unit_ms` milliseconds, or `default`; a value past [`MAX_DURATION`] is
/// refused here, before anything multiplies or adds it.
fn duration(value: Option<u64>, unit_ms: u64, default: Duration) -> Result<Duration, ConfigError> {
    let Some(v) = value else {
        return Ok(default);
    };
    match v.checked_mul(unit_ms).map(Duration::from_millis) {
        Some(d) if d <= MAX_DURATION => Ok(d),
        _ => Err(too_long()),
    }
}

fn too_long() -> ConfigError {
    ConfigError::Invalid(format!(
        "durations must be at most {} s (one day)",
        MAX_DURATION.as_secs()
    ))
}

fn read_token_file(path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadTokenFile {
        path: path.to_owned(),
        source,
    })?;
    Ok(text.trim().to_string())
}

impl NodeConfig {
    /// Checks values that are wrong on their own or together.
    pub fn check(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.id == 0 {
            return invalid("--id must be at least 1".into());
        }
        if let Some(token) = &self.token {
            if token.is_empty() {
                return invalid("the cluster token is empty".into());
            }
            if !token.bytes().all(|b| b.is_ascii_graphic()) {
                return invalid(
                    "the cluster token must be printable ASCII without spaces (it travels in an HTTP header)".into(),
                );
            }
        }
        // Several nodes, comma-separated: the join goes through whichever can be reached
        // (`ipam_client::Client` fails over and prefers the leader).
        for join in self.join.iter().flat_map(|j| j.split(',')).map(str::trim) {
            if self.tls.is_some() && !join.starts_with("https://") {
                return invalid(format!(
                    "--join {join:?}: a node with --tls-cert reaches its peers with https://"
                ));
            }
            if !(join.starts_with("http://") || join.starts_with("https://")) {
                return invalid(format!(
                    "--join {join:?} is not a URL; expected for example http://127.0.0.1:7471"
                ));
            }
        }
        let (min, max) = self.election_timeout;
        if self.heartbeat.is_zero() || min <= self.heartbeat || max <= min {
            return invalid(format!(
                "raft timings must satisfy 0 < heartbeat < election timeout min < max; got heartbeat {} ms, election timeout {}..{} ms",
                self.heartbeat.as_millis(),
                min.as_millis(),
                max.as_millis()
            ));
        }
        let durations = [
            self.join_timeout,
            self.heartbeat,
            min,
            max,
            self.write_deadline,
            self.read_deadline,
            self.request_timeout,
            self.install_snapshot_timeout,
        ];
        if durations.iter().any(|d| *d > MAX_DURATION) {
            return Err(too_long());
        }
        if self.snapshot_logs == 0 {
            return invalid("--snapshot-logs must be at least 1".into());
        }
        if self.write_deadline.is_zero()
            || self.read_deadline.is_zero()
            || self.request_timeout.is_zero()
        {
            return invalid("deadlines and timeouts must be positive".into());
        }
        if self.max_connections == 0 {
            return invalid("--max-connections must be at least 1".into());
        }
        if self
            .worker_threads
            .is_some_and(|n| !(1..=1024).contains(&n))
        {
            return invalid("--worker-threads must be between 1 and 1024".into());
        }
        if self.max_ops_per_entry == 0 || self.max_inflight_entries == 0 || self.queue_capacity == 0
        {
            return invalid(
                "--max-ops-per-entry, --max-inflight-entries and --queue-capacity must be at least 1"
                    .into(),
            );
        }
        if !(1..=MAX_STATE_CACHE_MIB).contains(&self.state_cache_mib) {
            return invalid(format!(
                "--state-cache-mib must be between 1 and {MAX_STATE_CACHE_MIB}"
            ));
        }
        Ok(())
    }

    /// Refuses a listener that other machines can reach when no token protects it, and a
    /// wildcard listener without `--advertise` (peers cannot reach `0.0.0.0`, and followers
    /// forward writes to the leader's advertised address).
    pub fn check_listener(&self, bound: SocketAddr) -> Result<(), ConfigError> {
        if self.token.is_none() && !bound.ip().is_loopback() {
            return Err(ConfigError::Invalid(format!(
                "refusing to listen on {bound} without a cluster token: set --token, --token-file or IPAM_TOKEN, or listen on a loopback address"
            )));
        }
        if self.advertise.is_none() && bound.ip().is_unspecified() {
            return Err(ConfigError::Invalid(format!(
                "listening on {bound} needs --advertise host:port, the address other nodes use to reach this one"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

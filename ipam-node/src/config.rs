//! Node configuration: flags win over `IPAM_*` environment variables, which win over the TOML
//! config file, which wins over the built-in defaults.
//!
//! [`Args`] is the clap command line (clap itself reads the environment twins); [`FileConfig`]
//! is the TOML file; [`Args::resolve`] merges both over [`NodeConfig::default`].

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
    /// `tracing` filter directive (`info`, `ipam_node=debug,info`, ...).
    pub log_level: String,
    /// Log output format.
    pub log_format: LogFormat,
    /// Serve HTTPS and reach peers over TLS with these files; `None`: plain HTTP.
    pub tls: Option<crate::tls::TlsFiles>,
    /// Connections open at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// The token was given on the command line (`ps` shows it): `run` warns.
    pub token_on_command_line: bool,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            id: 1,
            listen: "127.0.0.1:7470".to_string(),
            advertise: None,
            no_init: false,
            data_dir: PathBuf::from("ipam-data"),
            token: None,
            join: None,
            join_timeout: Duration::from_secs(300),
            heartbeat: Duration::from_millis(100),
            election_timeout: (Duration::from_millis(500), Duration::from_millis(1000)),
            snapshot_logs: 5_000,
            snapshot_keep_logs: 1_000,
            write_deadline: Duration::from_secs(10),
            read_deadline: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_ops_per_entry: 1_000,
            max_inflight_entries: 2,
            queue_capacity: 100_000,
            log_level: DEFAULT_LOG_LEVEL.to_string(),
            log_format: LogFormat::Text,
            tls: None,
            max_connections: crate::serve::DEFAULT_MAX_CONNECTIONS,
            token_on_command_line: false,
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

/// The `ipam-node` command line. Every flag has an `IPAM_*` environment twin; a flag wins over
/// its twin, and both win over the `--config` file.
#[derive(Clone, Default, Parser)]
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
    /// URL of a cluster node to join through (for example http://127.0.0.1:7471)
    #[arg(long, env = "IPAM_JOIN")]
    pub join: Option<String>,
    /// How long --join keeps retrying, in seconds [default: 300]
    #[arg(long, env = "IPAM_JOIN_TIMEOUT_SECS")]
    pub join_timeout_secs: Option<u64>,
    /// TOML config file; keys are the flag names with `_` for `-`
    #[arg(long, env = "IPAM_CONFIG")]
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
    /// Log filter: a level (error, warn, info, debug, trace) or tracing directives such as
    /// `info,openraft=debug` [default: info,openraft=warn]
    #[arg(long, env = "IPAM_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Log format [default: text]
    #[arg(long, env = "IPAM_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
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
    /// A subcommand instead of running a node.
    #[command(subcommand)]
    pub command: Option<crate::certs::Command>,
}

/// The TOML config file: the same settings as [`Args`], keys with `_` for `-`.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// See [`Args::id`].
    pub id: Option<u64>,
    /// See [`Args::listen`].
    pub listen: Option<String>,
    /// See [`Args::advertise`].
    pub advertise: Option<String>,
    /// See [`Args::no_init`].
    pub no_init: Option<bool>,
    /// See [`Args::data_dir`].
    pub data_dir: Option<PathBuf>,
    /// See [`Args::token`].
    pub token: Option<String>,
    /// See [`Args::token_file`].
    pub token_file: Option<PathBuf>,
    /// See [`Args::join`].
    pub join: Option<String>,
    /// See [`Args::join_timeout_secs`].
    pub join_timeout_secs: Option<u64>,
    /// See [`Args::heartbeat_ms`].
    pub heartbeat_ms: Option<u64>,
    /// See [`Args::election_timeout_min_ms`].
    pub election_timeout_min_ms: Option<u64>,
    /// See [`Args::election_timeout_max_ms`].
    pub election_timeout_max_ms: Option<u64>,
    /// See [`Args::snapshot_logs`].
    pub snapshot_logs: Option<u64>,
    /// See [`Args::snapshot_keep_logs`].
    pub snapshot_keep_logs: Option<u64>,
    /// See [`Args::write_deadline_ms`].
    pub write_deadline_ms: Option<u64>,
    /// See [`Args::read_deadline_ms`].
    pub read_deadline_ms: Option<u64>,
    /// See [`Args::request_timeout_ms`].
    pub request_timeout_ms: Option<u64>,
    /// See [`Args::max_ops_per_entry`].
    pub max_ops_per_entry: Option<usize>,
    /// See [`Args::max_inflight_entries`].
    pub max_inflight_entries: Option<usize>,
    /// See [`Args::queue_capacity`].
    pub queue_capacity: Option<usize>,
    /// See [`Args::log_level`].
    pub log_level: Option<String>,
    /// See [`Args::log_format`].
    pub log_format: Option<LogFormat>,
    /// See [`Args::tls_cert`].
    pub tls_cert: Option<PathBuf>,
    /// See [`Args::tls_key`].
    pub tls_key: Option<PathBuf>,
    /// See [`Args::tls_ca`].
    pub tls_ca: Option<PathBuf>,
    /// See [`Args::tls_client_auth`].
    pub tls_client_auth: Option<bool>,
    /// See [`Args::max_connections`].
    pub max_connections: Option<usize>,
}

impl FileConfig {
    /// Reads and parses a TOML config file.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
            path: path.to_owned(),
            source,
        })?;
        FileConfig::parse(&text).map_err(|source| ConfigError::ParseFile {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<FileConfig, toml::de::Error> {
        toml::from_str(text)
    }
}

impl Args {
    /// Loads the `--config` file (if any) and merges: these args (flags, then environment) over
    /// the file over the defaults; reads the token file; checks the result.
    pub fn resolve(self) -> Result<NodeConfig, ConfigError> {
        let file = match &self.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        self.merge(file)
    }

    /// Merges these args over `file` over the defaults, reads the token file and checks the
    /// result. A token given directly (flag, environment or file key `token`) at one layer wins
    /// over a token file of a lower layer, and a token file of a higher layer over a token of a
    /// lower one.
    pub fn merge(self, file: FileConfig) -> Result<NodeConfig, ConfigError> {
        let d = NodeConfig::default();
        let ms = Duration::from_millis;
        // clap fills `token` from the flag or from IPAM_TOKEN: only a value other than the
        // environment's came from the command line.
        let token_on_command_line =
            self.token.is_some() && std::env::var("IPAM_TOKEN").ok() != self.token;
        let tls = crate::tls::files_from(
            self.tls_cert.or(file.tls_cert),
            self.tls_key.or(file.tls_key),
            self.tls_ca.or(file.tls_ca),
            self.tls_client_auth
                .or(file.tls_client_auth)
                .unwrap_or(false),
        )
        .map_err(ConfigError::Invalid)?;
        let token = match (self.token, self.token_file) {
            (Some(t), _) => Some(t),
            (None, Some(f)) => Some(read_token_file(&f)?),
            (None, None) => match (file.token, file.token_file) {
                (Some(t), _) => Some(t),
                (None, Some(f)) => Some(read_token_file(&f)?),
                (None, None) => None,
            },
        };
        let config = NodeConfig {
            id: self.id.or(file.id).unwrap_or(d.id),
            listen: self.listen.or(file.listen).unwrap_or(d.listen),
            advertise: self.advertise.or(file.advertise),
            no_init: self.no_init.or(file.no_init).unwrap_or(d.no_init),
            data_dir: self.data_dir.or(file.data_dir).unwrap_or(d.data_dir),
            token,
            join: self.join.or(file.join),
            join_timeout: self
                .join_timeout_secs
                .or(file.join_timeout_secs)
                .map_or(d.join_timeout, Duration::from_secs),
            heartbeat: self
                .heartbeat_ms
                .or(file.heartbeat_ms)
                .map_or(d.heartbeat, ms),
            election_timeout: (
                self.election_timeout_min_ms
                    .or(file.election_timeout_min_ms)
                    .map_or(d.election_timeout.0, ms),
                self.election_timeout_max_ms
                    .or(file.election_timeout_max_ms)
                    .map_or(d.election_timeout.1, ms),
            ),
            snapshot_logs: self
                .snapshot_logs
                .or(file.snapshot_logs)
                .unwrap_or(d.snapshot_logs),
            snapshot_keep_logs: self
                .snapshot_keep_logs
                .or(file.snapshot_keep_logs)
                .unwrap_or(d.snapshot_keep_logs),
            write_deadline: self
                .write_deadline_ms
                .or(file.write_deadline_ms)
                .map_or(d.write_deadline, ms),
            read_deadline: self
                .read_deadline_ms
                .or(file.read_deadline_ms)
                .map_or(d.read_deadline, ms),
            request_timeout: self
                .request_timeout_ms
                .or(file.request_timeout_ms)
                .map_or(d.request_timeout, ms),
            max_ops_per_entry: self
                .max_ops_per_entry
                .or(file.max_ops_per_entry)
                .unwrap_or(d.max_ops_per_entry),
            max_inflight_entries: self
                .max_inflight_entries
                .or(file.max_inflight_entries)
                .unwrap_or(d.max_inflight_entries),
            queue_capacity: self
                .queue_capacity
                .or(file.queue_capacity)
                .unwrap_or(d.queue_capacity),
            log_level: self.log_level.or(file.log_level).unwrap_or(d.log_level),
            log_format: self.log_format.or(file.log_format).unwrap_or(d.log_format),
            tls,
            max_connections: self
                .max_connections
                .or(file.max_connections)
                .unwrap_or(d.max_connections),
            token_on_command_line,
        };
        config.check()?;
        Ok(config)
    }
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
        if let Some(join) = &self.join {
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
        if self.max_ops_per_entry == 0 || self.max_inflight_entries == 0 || self.queue_capacity == 0
        {
            return invalid(
                "--max-ops-per-entry, --max-inflight-entries and --queue-capacity must be at least 1"
                    .into(),
            );
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
mod tests {
    use super::*;

    /// clap reads the real process environment; every test that sets `IPAM_*` variables holds
    /// this lock so they never see each other's values.
    static ENV_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

    const VARS: &[&str] = &[
        "IPAM_ID",
        "IPAM_LISTEN",
        "IPAM_ADVERTISE",
        "IPAM_NO_INIT",
        "IPAM_DATA_DIR",
        "IPAM_TOKEN",
        "IPAM_TOKEN_FILE",
        "IPAM_JOIN",
        "IPAM_JOIN_TIMEOUT_SECS",
        "IPAM_CONFIG",
        "IPAM_HEARTBEAT_MS",
        "IPAM_ELECTION_TIMEOUT_MIN_MS",
        "IPAM_ELECTION_TIMEOUT_MAX_MS",
        "IPAM_SNAPSHOT_LOGS",
        "IPAM_SNAPSHOT_KEEP_LOGS",
        "IPAM_WRITE_DEADLINE_MS",
        "IPAM_READ_DEADLINE_MS",
        "IPAM_REQUEST_TIMEOUT_MS",
        "IPAM_LOG_LEVEL",
        "IPAM_LOG_FORMAT",
        "IPAM_TLS_CERT",
        "IPAM_TLS_KEY",
        "IPAM_TLS_CA",
        "IPAM_TLS_CLIENT_AUTH",
        "IPAM_MAX_CONNECTIONS",
    ];

    fn with_env<R>(vars: &[(&str, &str)], f: impl FnOnce() -> R) -> R {
        let _guard = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        for v in VARS {
            std::env::remove_var(v);
        }
        for (k, v) in vars {
            std::env::set_var(k, v);
        }
        let result = f();
        for (k, _) in vars {
            std::env::remove_var(k);
        }
        result
    }

    fn parse(args: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("ipam-node").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn no_flags_is_the_default_node() {
        let c = with_env(&[], || parse(&[]).merge(FileConfig::default())).unwrap();
        let d = NodeConfig::default();
        assert_eq!(c.id, 1);
        assert_eq!(c.listen, "127.0.0.1:7470");
        assert_eq!(c.data_dir, PathBuf::from("ipam-data"));
        assert!(!c.no_init);
        assert!(c.token.is_none() && c.join.is_none() && c.advertise.is_none());
        assert_eq!(c.election_timeout, d.election_timeout);
    }

    #[test]
    fn flags_win_over_env_which_wins_over_file() {
        let file = FileConfig::parse(
            "id = 3\nlisten = \"127.0.0.1:9000\"\ndata_dir = \"/from/file\"\nheartbeat_ms = 50\nno_init = true\nlog_format = \"json\"\n",
        )
        .unwrap();
        let c = with_env(
            &[("IPAM_ID", "4"), ("IPAM_LISTEN", "127.0.0.1:9001")],
            || parse(&["--id", "5"]).merge(file.clone()),
        )
        .unwrap();
        assert_eq!(c.id, 5, "flag over env and file");
        assert_eq!(c.listen, "127.0.0.1:9001", "env over file");
        assert_eq!(c.data_dir, PathBuf::from("/from/file"), "file over default");
        assert_eq!(c.heartbeat, Duration::from_millis(50));
        assert!(c.no_init);
        assert_eq!(c.log_format, LogFormat::Json);

        // An environment `false` overrides the file's `true`; a bare flag means true.
        let c = with_env(&[("IPAM_NO_INIT", "false")], || {
            parse(&[]).merge(file.clone())
        })
        .unwrap();
        assert!(!c.no_init);
        let c = with_env(&[("IPAM_NO_INIT", "false")], || {
            parse(&["--no-init"]).merge(FileConfig::default())
        })
        .unwrap();
        assert!(c.no_init);
    }

    #[test]
    fn proposer_knobs_reach_the_raft_config() {
        let file = FileConfig::parse("max_ops_per_entry = 500\nqueue_capacity = 10\n").unwrap();
        let c = with_env(&[("IPAM_MAX_INFLIGHT_ENTRIES", "4")], || {
            parse(&["--queue-capacity", "20"]).merge(file.clone())
        })
        .unwrap();
        assert_eq!(
            (
                c.max_ops_per_entry,
                c.max_inflight_entries,
                c.queue_capacity
            ),
            (500, 4, 20)
        );
        let raft = crate::raft_config(&c, "127.0.0.1:1".into());
        assert_eq!(
            (
                raft.max_ops_per_entry,
                raft.max_inflight_entries,
                raft.queue_capacity
            ),
            (500, 4, 20)
        );
        let zero = with_env(&[], || {
            parse(&["--max-ops-per-entry", "0"]).merge(FileConfig::default())
        });
        assert!(zero.is_err());
    }

    #[test]
    fn config_file_comes_from_flag_or_env() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, "id = 7\ndata_dir = \"d7\"\n").unwrap();
        let p = path.to_str().unwrap();
        let c = with_env(&[("IPAM_CONFIG", p)], || parse(&[]).resolve()).unwrap();
        assert_eq!((c.id, c.data_dir), (7, PathBuf::from("d7")));
        let c = with_env(&[], || parse(&["--config", p, "--id", "8"]).resolve()).unwrap();
        assert_eq!(c.id, 8);
    }

    #[test]
    fn token_sources() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\n").unwrap();
        let p = path.to_str().unwrap();
        let c = with_env(&[], || {
            parse(&["--token-file", p]).merge(FileConfig::default())
        });
        assert_eq!(c.unwrap().token.as_deref(), Some("s3cret"));
        let file = FileConfig::parse("token = \"fromfile\"").unwrap();
        let c = with_env(&[("IPAM_TOKEN", "fromenv")], || {
            parse(&[]).merge(file.clone())
        });
        assert_eq!(c.unwrap().token.as_deref(), Some("fromenv"));
        let c = with_env(&[], || parse(&["--token-file", p]).merge(file.clone()));
        assert_eq!(c.unwrap().token.as_deref(), Some("s3cret"));
        let c = with_env(&[], || parse(&[]).merge(file));
        assert_eq!(c.unwrap().token.as_deref(), Some("fromfile"));
        let missing = dir.path().join("absent");
        let e = with_env(&[], || {
            parse(&["--token-file", missing.to_str().unwrap()]).merge(FileConfig::default())
        });
        assert!(matches!(e, Err(ConfigError::ReadTokenFile { .. })));
        assert!(Args::try_parse_from(["ipam-node", "--token", "a", "--token-file", p]).is_err());
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(FileConfig::parse("idd = 3").is_err(), "unknown key");
        assert!(FileConfig::parse("id = \"three\"").is_err());
        let bad = |args: &[&str]| with_env(&[], || parse(args).merge(FileConfig::default()));
        assert!(bad(&["--id", "0"]).is_err());
        assert!(bad(&["--heartbeat-ms", "600"]).is_err());
        assert!(bad(&[
            "--election-timeout-min-ms",
            "900",
            "--election-timeout-max-ms",
            "800"
        ])
        .is_err());
        assert!(bad(&["--join", "127.0.0.1:7471"]).is_err());
        assert!(bad(&["--token", ""]).is_err());
        assert!(Args::try_parse_from(["ipam-node", "--id", "x"]).is_err());
        assert!(Args::try_parse_from(["ipam-node", "--log-format", "xml"]).is_err());
    }

    #[test]
    fn non_loopback_listener_needs_a_token() {
        let mut c = NodeConfig::default();
        assert!(c.check_listener("127.0.0.1:7470".parse().unwrap()).is_ok());
        assert!(c.check_listener("[::1]:7470".parse().unwrap()).is_ok());
        let e = c
            .check_listener("0.0.0.0:7470".parse().unwrap())
            .unwrap_err();
        assert!(e.to_string().contains("token"), "{e}");
        c.token = Some("t".into());
        let e = c
            .check_listener("0.0.0.0:7470".parse().unwrap())
            .unwrap_err();
        assert!(e.to_string().contains("--advertise"), "{e}");
        c.advertise = Some("ipam-1.example:7470".into());
        assert!(c.check_listener("0.0.0.0:7470".parse().unwrap()).is_ok());
        assert!(c.check_listener("192.0.2.1:7470".parse().unwrap()).is_ok());
    }
}

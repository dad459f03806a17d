//! [`Config`]: every setting of a node with its default, and the read [`Consistency`].
//! `Config`'s `Debug` is written by hand so the token never prints.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// How a read is served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Consistency {
    /// Reflects every write acknowledged before the read, on any node (read barrier).
    #[default]
    Linearizable,
    /// This node's replica at once, possibly stale.
    Local,
}

/// Configuration of a node. Its `Debug` redacts the token.
#[derive(Clone)]
pub struct Config {
    /// Raft node id; never reuse one of a removed node.
    pub id: u64,
    /// Directory of `log.redb` and `state.redb`.
    pub data_dir: PathBuf,
    /// `host:port` peers use to reach this node's `/raft/*` routes.
    pub advertise: String,
    /// Cluster token sent and required as `Authorization: Bearer` on `/raft/*`.
    pub token: Option<String>,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// Election timeout range.
    pub election_timeout: (Duration, Duration),
    /// Build a snapshot after this many logs since the last one.
    pub snapshot_logs: u64,
    /// Logs kept after a snapshot.
    pub max_in_snapshot_log_to_keep: u64,
    /// Timeout of one snapshot chunk and of the final install.
    pub install_snapshot_timeout: Duration,
    /// Deadline of a write (proposal until acknowledged).
    pub write_deadline: Duration,
    /// Deadline of a read barrier.
    pub read_deadline: Duration,
    /// Bound of the proposer queue (commands); beyond it callers get `Overloaded`.
    pub queue_capacity: usize,
    /// Cap of ops in one log entry.
    pub max_ops_per_entry: usize,
    /// Cap of the encoded size of the commands in one log entry (bytes).
    pub max_entry_bytes: usize,
    /// Entries the proposer keeps in flight at once; more queue for the next entry.
    pub max_inflight_entries: usize,
    /// Largest snapshot chunk sent in one `/raft/snapshot` request (bytes).
    pub snapshot_max_chunk_size: u64,
    /// Timeout of one append/vote RPC and connect timeout of the HTTP client.
    pub rpc_timeout: Duration,
    /// Deadline of a membership change, including a new learner catching up.
    pub membership_deadline: Duration,
    /// The state machine makes its applies durable after at most this many entries...
    pub durable_every_entries: u64,
    /// ...and at least this often while any are pending.
    pub durable_interval: Duration,
    /// Page cache of `state.redb` in bytes (and of a snapshot being installed): resident
    /// memory against reads from the OS page cache.
    pub state_cache_bytes: usize,
    /// HTTP client for peers (TLS roots, client certificate); `None`: a plain client with
    /// `rpc_timeout` as connect timeout.
    pub http_client: Option<reqwest::Client>,
    /// Scheme peers are reached with: `"http"` or `"https"`.
    pub peer_scheme: &'static str,
    /// Source of the leader's stamps (log time); tests inject a [`crate::ManualClock`].
    pub clock: crate::clock::StampClock,
    /// Note when each entry was applied, so a write's trace can show its `apply` span. Set it
    /// when the process exports traces (`ipam-node --otlp-endpoint`); off, nothing is noted.
    pub traces: bool,
    /// The feature level this node reports to its peers (default: the highest its release
    /// knows, [`ipam_core::feature::FEATURE_LEVEL`]). Lower only to act as an older release
    /// (tests, or holding a cluster at a level during a rollback window).
    pub feature_level: u32,
    /// Bound of the proposer queue in encoded bytes (one proposal can be a 1 MiB batch);
    /// beyond it callers get `Overloaded`.
    pub queue_bytes: usize,
    /// Where the redb stores keep their bytes (real files unless a test sets a simulated disk).
    pub(crate) disk: crate::disk::Disk,
    /// Size of a new log segment file (`wal/`).
    pub(crate) wal_segment_bytes: u64,
}

/// The longest duration any setting takes (one day): deadlines are added to `Instant::now()`,
/// which must not overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

impl Config {
    /// Checks settings that are unusable on their own: durations over [`MAX_DURATION`], a
    /// zero heartbeat, election timeout or deadline, empty queues.
    pub fn validate(&self) -> Result<(), &'static str> {
        let durations = [
            self.heartbeat,
            self.election_timeout.0,
            self.election_timeout.1,
            self.install_snapshot_timeout,
            self.write_deadline,
            self.read_deadline,
            self.rpc_timeout,
            self.membership_deadline,
            self.durable_interval,
        ];
        if durations.iter().any(|d| *d > MAX_DURATION) {
            return Err("durations must be at most one day");
        }
        let waits = [
            self.heartbeat,
            self.election_timeout.0,
            self.write_deadline,
            self.read_deadline,
        ];
        if waits.iter().any(Duration::is_zero) {
            return Err("heartbeat, election timeout and deadlines must be positive");
        }
        if self.queue_capacity == 0 || self.max_ops_per_entry == 0 || self.queue_bytes == 0 {
            return Err("queue_capacity, queue_bytes and max_ops_per_entry must be positive");
        }
        Ok(())
    }
}

impl Config {
    /// Defaults for `id` and `data_dir`, advertising `advertise`.
    pub fn new(id: u64, data_dir: impl Into<PathBuf>, advertise: impl Into<String>) -> Config {
        Config {
            id,
            data_dir: data_dir.into(),
            advertise: advertise.into(),
            token: None,
            heartbeat: Duration::from_millis(100),
            election_timeout: (Duration::from_millis(500), Duration::from_millis(1000)),
            snapshot_logs: 5_000,
            max_in_snapshot_log_to_keep: 1_000,
            // A whole state of millions of rows streams and loads within this.
            install_snapshot_timeout: Duration::from_secs(300),
            write_deadline: Duration::from_secs(10),
            read_deadline: Duration::from_secs(5),
            queue_capacity: 100_000,
            max_ops_per_entry: 1_000,
            max_entry_bytes: 1 << 20,
            max_inflight_entries: 2,
            snapshot_max_chunk_size: 3 << 20,
            rpc_timeout: Duration::from_secs(2),
            membership_deadline: Duration::from_secs(120),
            durable_every_entries: 1_000,
            durable_interval: Duration::from_secs(1),
            state_cache_bytes: crate::disk::DEFAULT_STATE_CACHE_BYTES,
            http_client: None,
            peer_scheme: "http",
            clock: crate::clock::StampClock::system(),
            traces: false,
            feature_level: ipam_core::feature::FEATURE_LEVEL,
            queue_bytes: 64 << 20,
            disk: crate::disk::Disk::default(),
            wal_segment_bytes: crate::storage::wal::SEGMENT_BYTES,
        }
    }
}

#[cfg(feature = "testing")]
impl Config {
    /// Keeps the redb stores on `disk` instead of real files (power-loss tests).
    /// The log's segments shrink to 1 MiB: a simulated disk holds every file in memory.
    pub fn set_disk(&mut self, disk: crate::disk::Disk) {
        self.disk = disk;
        self.wal_segment_bytes = self.wal_segment_bytes.min(1 << 20);
    }

    /// Sets the size of new log segments (tests that make the log roll over often).
    pub fn set_wal_segment_bytes(&mut self, bytes: u64) {
        self.wal_segment_bytes = bytes;
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let token = self.token.as_ref().map(|_| "<redacted>");
        f.debug_struct("Config")
            .field("id", &self.id)
            .field("data_dir", &self.data_dir)
            .field("advertise", &self.advertise)
            .field("token", &token)
            .field("heartbeat", &self.heartbeat)
            .field("election_timeout", &self.election_timeout)
            .field("snapshot_logs", &self.snapshot_logs)
            .field(
                "max_in_snapshot_log_to_keep",
                &self.max_in_snapshot_log_to_keep,
            )
            .field("install_snapshot_timeout", &self.install_snapshot_timeout)
            .field("write_deadline", &self.write_deadline)
            .field("read_deadline", &self.read_deadline)
            .field("queue_capacity", &self.queue_capacity)
            .field("max_ops_per_entry", &self.max_ops_per_entry)
            .field("max_entry_bytes", &self.max_entry_bytes)
            .field("max_inflight_entries", &self.max_inflight_entries)
            .field("snapshot_max_chunk_size", &self.snapshot_max_chunk_size)
            .field("rpc_timeout", &self.rpc_timeout)
            .field("membership_deadline", &self.membership_deadline)
            .field("durable_every_entries", &self.durable_every_entries)
            .field("durable_interval", &self.durable_interval)
            .field("state_cache_bytes", &self.state_cache_bytes)
            .field("peer_scheme", &self.peer_scheme)
            .field("queue_bytes", &self.queue_bytes)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_are_bounded() {
        let mut c = super::Config::new(1, "/tmp/x", "127.0.0.1:1");
        assert_eq!(c.validate(), Ok(()));
        c.write_deadline = std::time::Duration::from_secs(u64::MAX);
        assert!(c.validate().is_err());
        c.write_deadline = std::time::Duration::ZERO;
        assert!(c.validate().is_err());
        c.write_deadline = super::MAX_DURATION;
        c.queue_bytes = 0;
        assert!(c.validate().is_err());
    }

    #[test]
    fn the_token_never_prints() {
        let mut c = super::Config::new(1, "/tmp/x", "127.0.0.1:1");
        c.token = Some("hunter2-secret".into());
        let printed = format!("{c:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("<redacted>"), "{printed}");
    }
}

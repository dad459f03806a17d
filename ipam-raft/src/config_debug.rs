//! `Debug` of [`Config`]: every field but the token, which prints as `<redacted>`.

use std::fmt;

use crate::node::Config;

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
            .field("peer_scheme", &self.peer_scheme)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_token_never_prints() {
        let mut c = crate::Config::new(1, "/tmp/x", "127.0.0.1:1");
        c.token = Some("hunter2-secret".into());
        let printed = format!("{c:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("<redacted>"), "{printed}");
    }
}

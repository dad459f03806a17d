//! `Debug` for the configuration types that hold the cluster token: the token prints as
//! `<redacted>`, so a logged or panicking configuration never leaks it.

use std::fmt;

use crate::config::{Args, NodeConfig};

/// Prints `Some(<redacted>)` or `None`.
pub(crate) struct Redacted<'a, T>(pub(crate) &'a Option<T>);

impl<T> fmt::Debug for Redacted<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(_) => f.write_str("Some(<redacted>)"),
            None => f.write_str("None"),
        }
    }
}

impl fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeConfig")
            .field("id", &self.id)
            .field("listen", &self.listen)
            .field("advertise", &self.advertise)
            .field("no_init", &self.no_init)
            .field("data_dir", &self.data_dir)
            .field("token", &Redacted(&self.token))
            .field("join", &self.join)
            .field("join_timeout", &self.join_timeout)
            .field("heartbeat", &self.heartbeat)
            .field("election_timeout", &self.election_timeout)
            .field("snapshot_logs", &self.snapshot_logs)
            .field("snapshot_keep_logs", &self.snapshot_keep_logs)
            .field("write_deadline", &self.write_deadline)
            .field("read_deadline", &self.read_deadline)
            .field("request_timeout", &self.request_timeout)
            .field("max_ops_per_entry", &self.max_ops_per_entry)
            .field("max_inflight_entries", &self.max_inflight_entries)
            .field("queue_capacity", &self.queue_capacity)
            .field("state_cache_mib", &self.state_cache_mib)
            .field("log_level", &self.log_level)
            .field("log_format", &self.log_format)
            .field("tls", &self.tls)
            .field("max_connections", &self.max_connections)
            .field("check_interval", &self.check_interval)
            .field("restore", &self.restore)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Args {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Args")
            .field("id", &self.id)
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("token", &Redacted(&self.token))
            .field("token_file", &self.token_file)
            .field("join", &self.join)
            .field("config", &self.config)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("tls_ca", &self.tls_ca)
            .field("tls_client_auth", &self.tls_client_auth)
            .field("max_connections", &self.max_connections)
            .field(
                "install_snapshot_timeout_ms",
                &self.install_snapshot_timeout_ms,
            )
            .field("check_interval", &self.check_interval)
            .field("restore", &self.restore)
            .field("command", &self.command)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_never_print() {
        let c = NodeConfig {
            token: Some("hunter2-secret".into()),
            ..NodeConfig::default()
        };
        let printed = format!("{c:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("<redacted>"), "{printed}");
        let a = Args {
            token: Some("hunter2-secret".into()),
            ..Args::default()
        };
        assert!(!format!("{a:?}").contains("hunter2"));
        let file = Args::from_toml("token = \"hunter2-secret\"").unwrap();
        assert!(!format!("{file:?}").contains("hunter2"));
    }
}

//! Node configuration: flags win over `IPAM_*` environment variables, which win over the TOML
//! config file.

use std::path::PathBuf;

/// Everything a node needs to start. `Default` is a node started with no flags.
#[derive(Clone, Debug)]
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
        }
    }
}

//! JSON bodies of the event calls (`../shared/api.md`, "Events, history, watch").

use serde::{Deserialize, Serialize};

/// One change of the state. `id` is a decimal string: compare ids as integers
/// ([`Event::id_number`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the node-independent event sequence, decimal.
    pub id: String,
    /// Log time of the change, RFC 3339.
    pub at: String,
    /// `pool_created`, `pool_updated`, `pool_deleted`, `allocated`, `released` or `expired`.
    pub kind: String,
    /// The pool.
    pub pool: String,
    /// The address, for allocation events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The delegated block, for allocations of prefix pools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The owner, for allocation events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The allocation's generation, for allocation events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
}

impl Event {
    /// The id as a number (`None` if a node sent something else).
    pub fn id_number(&self) -> Option<u64> {
        self.id.parse().ok()
    }
}

/// `GET /api/v1/events` and `GET /api/v1/addresses/{ip}/history` responses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventList {
    /// Events: oldest first for `/events`, newest first for a history.
    pub events: Vec<Event>,
    /// Present exactly when more follow: pass as `after`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

//! Multi-node scenarios of raft-ipam, each on an in-process cluster of `ipam_raft::Ipam`
//! handles with real redb files and loopback HTTP (harness: the `ipam_tests` library).
//!
//! One binary on purpose: the harness lock serialises its tests, so clusters never compete
//! for the two cores, and the crates under test are linked once.
//!
//! # Layout
//!
//! - `replication` — concurrent allocations on every node: distinct, acknowledged, replicated.
//! - `contention` — races between nodes for one owner, a pool's last addresses, one release;
//!   overloaded writes.
//! - `failover` — the leader stops; a new one takes over; the old one restarts and catches up;
//!   the whole cluster restarts from its files.
//! - `events` — a watcher on a follower's HTTP API reconnects with `Last-Event-ID` across a
//!   leader stop and sees every event once, in order; every replica lists the same events.
//! - `crash` — a node killed with SIGKILL (a child process) keeps what it acknowledged.
//! - `chaos` — writers on every node while the leader or a follower is cut off and healed,
//!   round after round; replicas end holding exactly what the writers were told, and the
//!   history checker finds no double holder, lost allocation or undone release.
//! - `pause` — five voters, two of them child processes; leaders paused (SIGSTOP/SIGCONT, or
//!   cut off) and resumed under writers and readers, checked by the history checker.
//! - `partition` — an isolated follower or leader cannot write and says so; healing converges.
//! - `snapshot` — a learner joins after the logs it needs are purged, is promoted, a member is
//!   removed; a restarted node installs a snapshot over its old state while serving reads.
//! - `membership` — voter set changes, the leader removing itself, a voter demoted, a member
//!   back on a new address.
//! - `membership_safety` — an id in use is not evicted, a removal keeps a concurrent
//!   promotion, a learner that is down is not promoted.
//! - `forwarding` — every write API on a follower; the cache hit path and its read barrier on
//!   a lagging follower and a deposed leader.
//! - `ranges` — a range added on one node feeds allocations through the others; pool updates
//!   and the preview agree on every replica.
//! - `reads` — linearizable reads across nodes.
//! - `feature_level` — a member at a lower feature level blocks new kinds of commands only.
//! - `mesh` — 200 hosts lease /24s of a /16 with child pools; a stopped host's block goes
//!   only after its pool (injected clock).
//! - `select` — concurrent selections through every node never exceed a pool's cap.
//! - `dashboard` — the leader's per-member replication progress and the `/ui` overview.
//! - `trust` — a node with another token, or of another cluster, is never joined.
//! - `upgrade` — a data dir and snapshot written by release 0.1.0 open and keep serving.

mod chaos;
mod contention;
mod crash;
mod dashboard;
mod events;
mod failover;
mod feature_level;
mod forwarding;
mod membership;
mod membership_safety;
mod mesh;
mod partition;
mod pause;
mod ranges;
mod reads;
mod replication;
mod select;
mod snapshot;
mod trust;
mod upgrade;

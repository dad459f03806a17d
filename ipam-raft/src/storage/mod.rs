//! The openraft stores on redb: the raft log (`log.redb`), the state machine (`state.redb`)
//! and its file snapshots.
//!
//! - [`log`] — the raft log: durable appends, vote, committed id, purge bounded by the state
//!   machine's durable applied index; `log.redb` for those rows, the entries in
//! - `wal` — segment files of log records (`wal/`): framing, replay, roll-over, removal.
//! - `state_db` — the open `state.redb` shared with readers and the flusher, the raft meta rows,
//!   when applies become durable.
//! - `snapshot` — building, publishing and loading streamed file snapshots.
//! - [`state_machine`] — openraft's `RaftStateMachine`: one redb transaction per applied batch,
//!   snapshot install by file swap.

pub mod log;
mod snapshot;
pub(crate) mod state_db;
pub mod state_machine;
pub(crate) mod wal;

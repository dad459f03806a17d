//! Request ids of this node's proposals and idempotency keys on [`Ipam`].
//!
//! Every command this node proposes is wrapped in `Command::Tagged` with an id (node,
//! incarnation, sequence) before it enters the proposer queue; every resend of it — after
//! `ForwardToLeader`, `NotLeader`, a lost forward — carries the same id, and the state machine
//! answers a repeat with the result it recorded (`ipam_core::requests`). The incarnation rises
//! on every start and is kept in the data dir's `incarnation` file, written (fsynced) before
//! the first proposal, so ids never repeat across restarts even though sequences restart at 0.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ipam_core::requests::{KeyedRequest, RequestId};
use ipam_core::Command;

use crate::disk::Disk;
use crate::error::StartError;
use crate::files::read_text;
use crate::handle::Ipam;
use crate::types::NodeId;

const INCARNATION_FILE: &str = "incarnation";

tokio::task_local! {
    /// The idempotency key of the request a task serves ([`with_idempotency_key_scope`]).
    static SCOPED_KEY: KeyedRequest;
}

/// Runs `f` with `key` as the idempotency key of every [`Ipam`] write it makes (as if through
/// [`Ipam::with_idempotency_key`]). The HTTP layer wraps each keyed request in one scope, so
/// every write route — present and future — honours `Idempotency-Key` without each handler
/// passing the key along.
pub async fn with_idempotency_key_scope<F: std::future::Future>(
    key: KeyedRequest,
    f: F,
) -> F::Output {
    SCOPED_KEY.scope(key, f).await
}

/// Reads the data dir's incarnation, adds one and records it durably.
pub(crate) fn next_incarnation(disk: &Disk, dir: &Path) -> Result<u64, StartError> {
    let path = dir.join(INCARNATION_FILE);
    let io = |source| StartError::Io {
        path: path.clone(),
        source,
    };
    let previous = match read_text(disk, &path).map_err(io)? {
        Some(s) => s.trim().parse::<u64>().map_err(|_| StartError::Corrupt {
            path: path.clone(),
            content: s.clone(),
        })?,
        None => 0,
    };
    let next = previous.saturating_add(1);
    disk.write_atomic(&path, next.to_string().as_bytes())
        .map_err(io)?;
    Ok(next)
}

/// The source of this node's request ids.
#[derive(Debug)]
pub(crate) struct RequestIds {
    node: NodeId,
    incarnation: u64,
    seq: AtomicU64,
}

impl RequestIds {
    pub(crate) fn new(node: NodeId, incarnation: u64) -> RequestIds {
        RequestIds {
            node,
            incarnation,
            seq: AtomicU64::new(0),
        }
    }

    /// A fresh id.
    pub(crate) fn next(&self) -> RequestId {
        RequestId {
            node: self.node,
            incarnation: self.incarnation,
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// `command` tagged with a fresh id; a command the caller tagged keeps its (outermost)
    /// key, and any id it carried is replaced: ids are this node's to give, and a nested tag
    /// with a caller's id would make unrelated commands repeats of each other.
    pub(crate) fn tag(&self, command: Command) -> Command {
        let mut key = None;
        let mut command = command;
        while let Command::Tagged {
            key: k,
            command: inner,
            ..
        } = command
        {
            key = key.or(k);
            command = *inner;
        }
        Command::Tagged {
            id: self.next(),
            key,
            command: Box::new(command),
        }
    }
}

impl Ipam {
    /// This handle with an idempotency key: each write through the returned handle carries
    /// `key` (its fingerprint identifies the request). The first such write that the state
    /// machine decides is recorded with its result; a later write with the same key and the
    /// same fingerprint, on any node, across leader changes and restarts, gets that result and
    /// executes nothing, and one with another fingerprint fails with
    /// [`crate::IpamError::IdempotencyKeyReused`]. Answers decided before the log (bad input,
    /// `Overloaded`, `NoLeader`) are not recorded. Keys are kept 24 h of log time, at most
    /// 1,000,000. A keyed allocate always goes through the log.
    ///
    /// Use one handle per logical write: a second, different write through it is refused.
    pub fn with_idempotency_key(&self, key: KeyedRequest) -> Ipam {
        Ipam {
            core: self.core.clone(),
            key: Some(Arc::new(key)),
        }
    }

    /// Number of decided requests (request ids, idempotency keys) this replica keeps the
    /// answers of (the `ipam_request_records` metric).
    pub async fn request_records(&self) -> Result<u64, crate::IpamError> {
        let db = self
            .core
            .sm
            .db()
            .map_err(|_| crate::IpamError::ShuttingDown)?;
        tokio::task::spawn_blocking(move || {
            let rtx = redb::ReadableDatabase::begin_read(&db.db)
                .map_err(crate::InternalError::StateRead)?;
            ipam_core::requests::count(&rtx)
                .map_err(|e| crate::IpamError::Query(ipam_core::QueryError::from(e)))
        })
        .await
        .map_err(crate::InternalError::Task)?
    }

    /// The idempotency key this handle's writes carry: its own, or the one of the
    /// enclosing [`with_idempotency_key_scope`].
    pub fn idempotency_key(&self) -> Option<KeyedRequest> {
        self.key
            .as_deref()
            .cloned()
            .or_else(|| SCOPED_KEY.try_with(Clone::clone).ok())
    }

    /// `command` as proposed by this handle: tagged with its key, if any (the proposer adds
    /// the id).
    pub(crate) fn keyed(&self, command: Command) -> Command {
        match self.idempotency_key() {
            Some(key) => Command::Tagged {
                id: RequestId::default(),
                key: Some(key),
                command: Box::new(command),
            },
            None => command,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_incarnation_rises_on_every_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(next_incarnation(&Disk::default(), dir.path()).ok(), Some(1));
        assert_eq!(next_incarnation(&Disk::default(), dir.path()).ok(), Some(2));
        std::fs::write(dir.path().join(INCARNATION_FILE), "junk").expect("write");
        assert!(matches!(
            next_incarnation(&Disk::default(), dir.path()),
            Err(StartError::Corrupt { .. })
        ));
    }

    #[test]
    fn nested_tags_become_one_with_a_fresh_id() {
        let ids = RequestIds::new(1, 1);
        let key = |k: &str| KeyedRequest {
            key: k.into(),
            fingerprint: [0; 32],
        };
        let nested = Command::Tagged {
            id: RequestId::default(),
            key: Some(key("outer")),
            command: Box::new(Command::Tagged {
                id: RequestId::default(),
                key: Some(key("inner")),
                command: Box::new(Command::Batch(Vec::new())),
            }),
        };
        match ids.tag(nested) {
            Command::Tagged { id, key, command } => {
                assert_eq!(id.node, 1);
                assert_eq!(key.map(|k| k.key).as_deref(), Some("outer"));
                assert_eq!(*command, Command::Batch(Vec::new()));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tagging_keeps_a_key_and_gives_fresh_ids() {
        let ids = RequestIds::new(4, 9);
        let key = KeyedRequest {
            key: "k".into(),
            fingerprint: [1; 32],
        };
        let inner = Command::Batch(Vec::new());
        let a = ids.tag(Command::Tagged {
            id: RequestId::default(),
            key: Some(key.clone()),
            command: Box::new(inner.clone()),
        });
        let b = ids.tag(inner.clone());
        match (a, b) {
            (
                Command::Tagged {
                    id: ia,
                    key: ka,
                    command: ca,
                },
                Command::Tagged {
                    id: ib,
                    key: kb,
                    command: cb,
                },
            ) => {
                assert_eq!((ia.node, ia.incarnation, ia.seq), (4, 9, 0));
                assert_eq!(ib.seq, 1);
                assert_eq!(ka, Some(key));
                assert_eq!(kb, None);
                assert_eq!((*ca, *cb), (inner.clone(), inner));
            }
            other => panic!("{other:?}"),
        }
    }
}

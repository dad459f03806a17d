//! Cross-crate integration tests for raft-ipam live in `tests/`.

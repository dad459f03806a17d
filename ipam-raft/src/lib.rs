//! ipam-raft

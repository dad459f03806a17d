//! ipam-node

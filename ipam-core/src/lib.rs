//! ipam-core

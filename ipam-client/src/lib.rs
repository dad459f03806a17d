//! ipam-client

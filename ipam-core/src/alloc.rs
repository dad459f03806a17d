//! The free-interval index of one pool.

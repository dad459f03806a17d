//! Locking a `std` mutex whose last holder panicked. The mutexes this crate holds guard plain
//! bookkeeping that every holder leaves consistent between statements, so the data is used as
//! it is rather than failing every later caller.

use std::sync::{Mutex, MutexGuard};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

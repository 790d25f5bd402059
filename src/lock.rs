//! The crate's one way of taking a mutex: a panic elsewhere while holding it does not make
//! the data unusable (every value behind our mutexes stays valid between statements), so a
//! poisoned lock is taken as it is. Used by host-side code in every process that locks.

use std::sync::{Mutex, MutexGuard};

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

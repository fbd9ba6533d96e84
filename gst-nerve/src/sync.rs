//! Locking as the elements do it.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, taking the data as it is if a panic elsewhere poisoned it: a panic caught at a pad
/// function must not turn every later call into one.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

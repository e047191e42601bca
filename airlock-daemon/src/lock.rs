//! Locking the state a daemon shares between its bus handlers and its
//! background tasks.

use std::sync::{Mutex, MutexGuard};

/// [`Mutex::lock`] that takes over a poisoned lock instead of failing.
pub trait MutexExt<T> {
    /// Locks, recovering the guard if a panic poisoned the lock.
    ///
    /// Why recovering is safe: release builds abort on panic (`panic =
    /// "abort"` in the workspace profile), so there a lock is never poisoned
    /// and this is plain `lock`. Only debug builds (the tests) can meet a
    /// poisoned lock, left by a bus handler whose panic its task caught.
    /// Failing every later call would hide that panic behind a daemon that
    /// answers nothing; taking the lock over keeps it answering, and the
    /// panic is in the log.
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T> MutexExt<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_poisoned_lock_is_taken_over_with_its_value() {
        let shared = Arc::new(Mutex::new(1));
        let poisoner = shared.clone();
        let _ = std::thread::spawn(move || {
            let mut value = poisoner.lock().unwrap();
            *value = 2;
            panic!("poison the lock");
        })
        .join();
        assert!(shared.is_poisoned());
        assert_eq!(*shared.locked(), 2);
    }
}

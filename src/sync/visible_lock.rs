//! The queue lock of a manual or tokio clock as ThreadSanitizer builds see it
//! (`--cfg ctxcore_tsan`, set by ci/tsan.sh).
//!
//! With std precompiled and not instrumented, TSan cannot see the edge inside
//! `std::sync::Mutex` (a futex), so every access the lock orders looked like a race. Under
//! `ctxcore_tsan` the queue takes this lock instead: a spin lock whose Acquire swap and
//! Release store TSan sees, and a condition variable that yields and re-locks (its waiters
//! loop on their condition, as with any condition variable). The code the lock guards is
//! the same in every build; only the lock differs, and only for that check.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::LockResult;

/// A spin lock with `std::sync::Mutex`'s `lock` signature (never poisoned).
#[derive(Debug, Default)]
pub(crate) struct Mutex<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the value is reached only through a guard, and one guard exists at a time.
unsafe impl<T: Send> Sync for Mutex<T> {}
// SAFETY: as for `std::sync::Mutex`.
unsafe impl<T: Send> Send for Mutex<T> {}

impl<T> Mutex<T> {
    pub(crate) const fn new(value: T) -> Mutex<T> {
        Mutex {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    pub(crate) fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
        let mut round = 0;
        // Acquire: pairs with the Release store of the guard's drop.
        while self.locked.swap(true, Ordering::Acquire) {
            crate::sync::backoff(round);
            round = (round + 1).min(16);
        }
        Ok(MutexGuard { lock: self })
    }
}

/// Holds a [`Mutex`] locked.
#[derive(Debug)]
pub(crate) struct MutexGuard<'a, T> {
    lock: &'a Mutex<T>,
}

impl<T> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: we hold the lock.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: we hold the lock.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        // Release: everything done under the lock happens before the next `lock`.
        self.lock.locked.store(false, Ordering::Release);
    }
}

/// A condition variable for [`Mutex`]: `wait` unlocks, yields and locks again.
#[derive(Debug, Default)]
pub(crate) struct Condvar;

impl Condvar {
    pub(crate) const fn new() -> Condvar {
        Condvar
    }

    pub(crate) fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> LockResult<MutexGuard<'a, T>> {
        let lock = guard.lock;
        drop(guard);
        std::thread::yield_now();
        lock.lock()
    }

    pub(crate) fn notify_all(&self) {}
}

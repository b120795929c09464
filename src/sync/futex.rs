//! A 32-bit futex word: a thread sleeps while the word holds the value it expects, and one
//! call wakes every sleeper.
//!
//! Real builds use the `atomic-wait` crate (futex on Linux, `WaitOnAddress` on Windows,
//! `__ulock` on macOS): the kernel compares the word and puts the thread to sleep under its
//! own lock, and `wake_all` is one system call for any number of sleepers.
//!
//! Under loom the same contract is modelled by a mutex and a condition variable: `wait`
//! compares under the mutex and sleeps on the condvar, `wake_all` takes the mutex and
//! notifies. A store made before `wake_all` is seen by every `wait` that did not sleep yet,
//! and a sleeping `wait` is woken: exactly the kernel's guarantee, so a missing wake shows
//! up as a loom deadlock.

use super::AtomicU32;
use std::fmt;

/// A futex word and what wakes its sleepers.
pub(crate) struct Futex {
    word: AtomicU32,
    #[cfg(loom)]
    lock: loom::sync::Mutex<()>,
    #[cfg(loom)]
    sleeping: loom::sync::Condvar,
}

impl Futex {
    /// A word holding 0, nobody asleep.
    pub(crate) fn new() -> Futex {
        Futex {
            word: AtomicU32::new(0),
            #[cfg(loom)]
            lock: loom::sync::Mutex::new(()),
            #[cfg(loom)]
            sleeping: loom::sync::Condvar::new(),
        }
    }

    /// The word itself.
    #[inline]
    pub(crate) fn word(&self) -> &AtomicU32 {
        &self.word
    }

    /// Sleeps while the word is `expected`. Returns at once if it is not; may also return
    /// spuriously, so callers loop on their own condition.
    pub(crate) fn wait(&self, expected: u32) {
        #[cfg(not(loom))]
        atomic_wait::wait(&self.word, expected);
        #[cfg(loom)]
        {
            let guard = self.lock.lock().unwrap();
            if self.word.load(super::Ordering::SeqCst) == expected {
                drop(self.sleeping.wait(guard).unwrap());
            }
        }
    }

    /// Wakes every thread sleeping in [`wait`](Futex::wait) on this word.
    pub(crate) fn wake_all(&self) {
        #[cfg(not(loom))]
        atomic_wait::wake_all(&self.word);
        #[cfg(loom)]
        {
            let _guard = self.lock.lock().unwrap();
            self.sleeping.notify_all();
        }
    }
}

impl fmt::Debug for Futex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Futex")
            .field(&self.word.load(super::Ordering::Relaxed))
            .finish()
    }
}

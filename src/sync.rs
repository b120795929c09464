//! The one place the crate takes its atomics, cells, parking, thread-locals and the epoch from.
//!
//! Under `--cfg loom` every primitive here is swapped for a loom-modelled one, so the same
//! algorithms in `list.rs`, `node.rs`, `wait.rs` and `timer/` run inside loom models
//! (`loom-tests/`). crossbeam-epoch brings its own loom support (`--cfg crossbeam_loom` plus
//! its `loom` feature); atomic-waker uses core atomics that loom cannot see, so under loom
//! [`AtomicWaker`] is loom's own implementation behind the same three methods.

#[cfg(all(loom, not(crossbeam_loom)))]
compile_error!(
    "loom builds need RUSTFLAGS=\"--cfg loom --cfg crossbeam_loom\" (crossbeam-epoch's loom support)"
);

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{
    AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};

// The one lock of the crate: a manual or tokio clock's queue of deadlines (`clock/queue.rs`).
#[cfg(all(not(loom), not(ctxcore_tsan)))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};

// ThreadSanitizer cannot see inside std's precompiled Mutex: its builds take a lock it sees.
#[cfg(all(not(loom), ctxcore_tsan))]
mod visible_lock;
#[cfg(all(not(loom), ctxcore_tsan))]
pub(crate) use visible_lock::{Condvar, Mutex, MutexGuard};

#[cfg(loom)]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};

// Fences: the crate uses none. Where a count reaches zero, an Acquire load of the count
// stands in for `fence(Acquire)` (ThreadSanitizer does not model fences). Should one be
// needed, it must come from this shim: a `std` fence is invisible to loom.

/// The epoch-based reclamation used for every list entry (see `list.rs`, "Reclamation").
///
/// Under loom the default is [`loom_epoch`], a cheap stand-in with the same API subset
/// (real crossbeam-epoch under loom explodes the state space); `--cfg
/// ctxcore_loom_real_epoch` selects crossbeam-epoch's own loom build instead.
#[cfg(any(not(loom), ctxcore_loom_real_epoch))]
pub(crate) use crossbeam_epoch as epoch;

#[cfg(all(loom, not(ctxcore_loom_real_epoch)))]
pub(crate) use loom_epoch as epoch;

#[cfg(all(loom, not(ctxcore_loom_real_epoch)))]
pub(crate) mod loom_epoch;

pub(crate) mod futex;

#[cfg(not(loom))]
pub(crate) use std::thread_local;

#[cfg(loom)]
pub(crate) use loom::thread_local;

/// Thread handles and parking.
pub(crate) mod thread {
    #[cfg(not(loom))]
    pub(crate) use std::thread::{current, park, park_timeout, yield_now, Thread};

    #[cfg(loom)]
    pub(crate) use loom::thread::{current, park, yield_now, Thread};

    /// Loom has no clock: a timed park is modelled as a park whose timeout does not expire
    /// within the model (only an unpark ends it), so a lost wake-up of a timed wait is a
    /// loom deadlock (model m06). No model relies on a timeout elapsing.
    #[cfg(loom)]
    pub(crate) fn park_timeout(_timeout: std::time::Duration) {
        loom::thread::park();
    }
}

/// An `UnsafeCell` with loom's closure-based access API on both builds.
#[cfg(not(loom))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self(std::cell::UnsafeCell::new(value))
    }

    /// Runs `f` with a raw pointer to the contents; the caller upholds exclusivity.
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

/// A waker slot with one registrant and any number of wakers (atomic-waker's contract).
#[cfg(not(loom))]
pub(crate) use atomic_waker::AtomicWaker;

/// Loom-visible stand-in for `atomic_waker::AtomicWaker`, with the same methods.
#[cfg(loom)]
#[derive(Debug)]
pub(crate) struct AtomicWaker(loom::future::AtomicWaker);

#[cfg(loom)]
impl AtomicWaker {
    pub(crate) fn new() -> Self {
        Self(loom::future::AtomicWaker::new())
    }

    pub(crate) fn register(&self, waker: &std::task::Waker) {
        self.0.register_by_ref(waker);
    }

    pub(crate) fn wake(&self) {
        self.0.wake();
    }

    pub(crate) fn take(&self) -> Option<std::task::Waker> {
        self.0.take_waker()
    }
}

/// Backs off while another thread finishes a short, bounded publication step.
pub(crate) fn backoff(round: u32) {
    if round < 6 {
        for _ in 0..(1u32 << round) {
            std::hint::spin_loop();
        }
    } else {
        thread::yield_now();
    }
}

//! `after_func` callbacks: a list entry holding a closure that runs exactly once when its
//! context is done, unless `stop()` claims it first.
//!
//! The callback's state is one byte, moved by CAS:
//!
//! ```text
//!  PENDING --canceller's walk (runs the closure) or stop() (drops it)--> TAKEN
//!  PENDING --inert walk (drops it unrun: behaviour 14)-----------------> DROPPED
//!  DROPPED --the first stop() (returns true: the callback never ran)---> TAKEN
//! ```
//!
//! Whoever moves it from PENDING owns the closure and gives back the two counts a pending
//! callback holds: one on its own entry (so dropping the `AfterFunc` does not unlink it)
//! and one on its context's node (so the node stays in its parent's list and a parent's
//! cancel still reaches the callback, as in Go, even when every handle to the context is
//! gone). A context that can never be done any more lets its callbacks go (`inert.rs`).

use crate::cancel::Panic;
use crate::list::{self, Entry, Kind};
use crate::live;
use crate::node::NodeRef;
use crate::state;
use crate::sync::{AtomicU8, Ordering, UnsafeCell};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;
use std::sync::atomic::AtomicBool;

const PENDING: u8 = 0;
const TAKEN: u8 = 1;
const DROPPED: u8 = 2;

type Func = Box<dyn FnOnce() + Send + 'static>;

/// The list-entry part of an `after_func` registration.
pub(crate) struct Callback {
    state: AtomicU8,
    f: UnsafeCell<Option<Func>>,
}

impl fmt::Debug for Callback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Callback")
            .field("pending", &(self.state.load(Ordering::Relaxed) == PENDING))
            .finish()
    }
}

impl Callback {
    fn new(f: Func) -> Callback {
        Callback {
            state: AtomicU8::new(PENDING),
            f: UnsafeCell::new(Some(f)),
        }
    }

    /// Takes the closure if nobody has: the single winner of PENDING -> `to`. On failure,
    /// the state found.
    fn claim(&self, to: u8) -> Result<Func, u8> {
        // AcqRel: Acquire sees the closure written at registration (published by the list
        // push); Release orders the loser's later reads after our take.
        self.state
            .compare_exchange(PENDING, to, Ordering::AcqRel, Ordering::Acquire)?;
        live::add(live::Counter::Callbacks, -1);
        // SAFETY: only the winner of the CAS above touches the cell, once.
        let f = self.f.with_mut(|p| unsafe { (*p).take() });
        Ok(f.expect("a pending callback holds its closure"))
    }

    /// Drops the closure unrun if still pending, for a context that can never be done
    /// (`inert.rs`), then gives back the pending counts on `entry` and on its owner.
    ///
    /// # Safety
    ///
    /// `self` is the callback of `entry`, whose LINKED the calling walk owns.
    pub(crate) unsafe fn drop_unrun(&self, entry: &Entry) {
        let Ok(f) = self.claim(DROPPED) else {
            return;
        };
        drop(f);
        let owner = entry.owner();
        // SAFETY: the claim gave us the pending counts on the entry and on its owner; the
        // walk's LINKED keeps the entry itself alive past this release.
        unsafe {
            list::release(entry as *const Entry);
            list::release(owner);
        }
    }

    /// Runs the closure if still pending, on this (the cancelling) thread, then gives back
    /// the pending counts on `entry` and on its owner. A panic in the closure is caught and
    /// returned.
    ///
    /// # Safety
    ///
    /// `self` is the callback of `entry`, whose LINKED the calling walk owns.
    pub(crate) unsafe fn fire(&self, entry: &Entry) -> Result<(), Panic> {
        let Ok(f) = self.claim(TAKEN) else {
            return Ok(());
        };
        let result = catch_unwind(AssertUnwindSafe(f));
        let owner = entry.owner();
        // SAFETY: the claim gave us the pending counts on the entry and on its owner; the
        // walk's LINKED keeps the entry itself alive past this release.
        unsafe {
            list::release(entry as *const Entry);
            list::release(owner);
        }
        result
    }
}

/// A registered [`after_func`](crate::Context::after_func) callback.
///
/// `AfterFunc` is `Send + Sync`. Dropping it does **not** stop the callback (as in Go);
/// call [`stop`](AfterFunc::stop) for that.
///
/// ```
/// use ctxcore::Context;
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::sync::Arc;
///
/// let (ctx, handle) = Context::background().with_cancel();
/// let ran = Arc::new(AtomicBool::new(false));
/// let r = ran.clone();
/// let after = ctx.after_func(move || r.store(true, Ordering::SeqCst));
/// handle.cancel(); // runs the callback on this thread, before cancel returns
/// assert!(ran.load(Ordering::SeqCst));
/// assert!(!after.stop(), "too late: it already ran");
/// ```
pub struct AfterFunc {
    inner: Inner,
}

enum Inner {
    /// A callback entry in a node's list; we hold one count on it.
    Registered(NonNull<Entry>),
    /// No entry: the context could never be done (false), or the callback already ran at
    /// registration (true). The flag turns true at the first `stop`.
    Inert(AtomicBool),
}

// SAFETY: the entry is only reached through atomics and the claim protocol; the closure is
// `Send` and moved out by exactly one thread.
unsafe impl Send for AfterFunc {}
// SAFETY: `stop(&self)` is safe from many threads at once: one CAS decides.
unsafe impl Sync for AfterFunc {}

impl fmt::Debug for AfterFunc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AfterFunc").finish_non_exhaustive()
    }
}

impl AfterFunc {
    /// Registers `f` on `node` (`None`: a context that can never be done).
    pub(crate) fn register(node: Option<&NodeRef>, f: Func) -> AfterFunc {
        let Some(node) = node else {
            drop(f);
            return AfterFunc::inert(false);
        };
        let word = node.node().state.load();
        if state::is_done(word) {
            f();
            return AfterFunc::inert(true);
        }
        if !state::is_open(word) {
            // Never done (behaviour 14): as on `background()`.
            drop(f);
            return AfterFunc::inert(false);
        }
        live::add(live::Counter::Callbacks, 1);
        node.entry().acquire(); // the pending count on the node
        let e = Entry::alloc(Kind::Callback(Callback::new(f)), 2, node.as_ptr());
        // SAFETY: `e` is fresh, owned by `node`, in no list.
        let Err(word) = (unsafe { node.node().push(e) }) else {
            // SAFETY: `e` came from `Entry::alloc`, so it is non-null; one of its two counts
            // is ours from now on.
            let e = unsafe { NonNull::new_unchecked(e as *mut Entry) };
            return AfterFunc {
                inner: Inner::Registered(e),
            };
        };
        // The context became done (or never-done) meanwhile.
        // SAFETY: `e` was never published.
        let callback = match &unsafe { &*e }.kind {
            Kind::Callback(c) => c,
            _ => unreachable!(),
        };
        let f = callback
            .claim(TAKEN)
            .expect("unpublished callback is pending");
        // SAFETY: never published, no other thread has seen `e`.
        unsafe { list::free_unpublished(e) };
        // SAFETY: the pending count we took above.
        unsafe { list::release(node.as_ptr()) };
        if state::is_done(word) {
            // Run now, on this thread.
            f();
            AfterFunc::inert(true)
        } else {
            drop(f);
            AfterFunc::inert(false)
        }
    }

    /// An `AfterFunc` with no entry: `ran` if the callback already ran, else it was dropped
    /// unrun (the context could never be done) and the first `stop` returns true.
    fn inert(ran: bool) -> AfterFunc {
        AfterFunc {
            inner: Inner::Inert(AtomicBool::new(ran)),
        }
    }

    /// Stops the callback from running. Returns true if this call prevented it; false if it
    /// has already started (or finished), or if `stop` was called before.
    ///
    /// ```
    /// use ctxcore::Context;
    ///
    /// let (ctx, handle) = Context::background().with_cancel();
    /// let after = ctx.after_func(|| panic!("never runs"));
    /// assert!(after.stop());
    /// assert!(!after.stop(), "only the first stop counts");
    /// handle.cancel();
    /// ```
    pub fn stop(&self) -> bool {
        let e = match &self.inner {
            Inner::Inert(flag) => return !flag.swap(true, Ordering::AcqRel),
            Inner::Registered(e) => e.as_ptr() as *const Entry,
        };
        // SAFETY: we hold a count on `e`.
        let entry = unsafe { &*e };
        let Kind::Callback(callback) = &entry.kind else {
            unreachable!()
        };
        let f = match callback.claim(TAKEN) {
            Ok(f) => f,
            // Dropped unrun by an inert walk, which gave the counts back: the first stop
            // reports that the callback never ran (behaviour 14).
            Err(DROPPED) => {
                return callback
                    .state
                    .compare_exchange(DROPPED, TAKEN, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            }
            Err(_) => return false,
        };
        drop(f);
        let owner = entry.owner();
        // SAFETY: `e` is live (our count), owned by `owner`, which the pending count we now
        // own keeps alive.
        if unsafe { (*owner).node().mark(e) } == list::Marked::Now {
            // SAFETY: as above: our pending count keeps `owner` alive.
            unsafe { list::count_mark(owner) };
        }
        // SAFETY: the claim gave us the pending counts on the entry and on the owner.
        unsafe {
            list::release(e);
            list::release(owner);
        }
        true
    }
}

impl Drop for AfterFunc {
    fn drop(&mut self) {
        if let Inner::Registered(e) = &self.inner {
            // SAFETY: we own one count on the entry and give it up.
            unsafe { list::release(e.as_ptr()) };
        }
    }
}

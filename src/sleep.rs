//! Threads blocked in `wait()`: one futex word per node, and one wake for all of them.
//!
//! A thread that waits with no timeout does not join the node's listener list: it counts
//! itself in the node's `sleepers` word and sleeps on that word (`sync/futex.rs`). The
//! thread whose CAS makes the node done (`cancel.rs`) then wakes every sleeper with one
//! system call, instead of one unpark per thread, and a wait allocates nothing.
//!
//! ```text
//!  sleepers word:  bits 0..30  how many threads are in `sleep_until_done` on this node
//!                  bit 31      SIGNALLED: the canceller has woken them (set once)
//! ```
//!
//! # Why no wake-up is lost
//!
//! The waiter increments the count, then reads the state word; the canceller writes the
//! done word (its winning CAS), then reads the count. All four accesses are `SeqCst`, so
//! they fall in one total order, and in it either the waiter's read of the state comes
//! after the canceller's CAS (the waiter sees done and never sleeps), or the canceller's
//! read of the count comes after the waiter's increment (the canceller sees a sleeper and
//! wakes). This is the store-buffering pattern; loom treats `SeqCst` accesses as `AcqRel`,
//! so under loom a `SeqCst` fence stands between the write and the read on both sides
//! ([`model_fence`]), which the memory model makes equivalent.
//!
//! A waiter that counted itself then sleeps only while the word still holds the value its
//! increment produced, and the canceller sets SIGNALLED before it wakes: so a waiter that
//! has not reached the kernel yet finds the word changed and does not sleep. Other waiters
//! arriving or leaving also change the word; a waiter that finds it changed re-reads the
//! state and sleeps again on the new value, without touching the count.
//!
//! A node that can never be done (`inert.rs`) is never woken: its sleepers wait forever, as
//! a Go goroutine blocked on the `Done()` channel of a context that cannot end. They hold
//! nothing but their own `Context`. Waits with a timeout keep the listener-list path
//! (`wait.rs`), which the futex crate cannot bound.

use crate::state::{self, State};
use crate::sync::futex::Futex;
use crate::sync::Ordering;

/// Set in the word once the sleepers were woken.
const SIGNALLED: u32 = 1 << 31;

/// The threads sleeping until a node is done.
#[derive(Debug)]
pub(crate) struct Sleepers(Futex);

impl Sleepers {
    /// Nobody asleep.
    pub(crate) fn new() -> Sleepers {
        Sleepers(Futex::new())
    }

    /// Blocks the calling thread until `state` (the node's state word) says done.
    pub(crate) fn sleep_until_done(&self, state: &State) {
        let word = self.0.word();
        let mut seen = word.fetch_add(1, Ordering::SeqCst).wrapping_add(1);
        if seen & !SIGNALLED == 0 {
            // 2^31 threads asleep on one node: the count would reach SIGNALLED.
            std::process::abort();
        }
        model_fence();
        while !state::is_done(state.load_seqcst()) {
            if seen & SIGNALLED == 0 {
                self.0.wait(seen);
            } else {
                // Woken already: the canceller's CAS happened before its SIGNALLED, which
                // we have read, so the next load of the state sees done.
                debug_assert!(state::is_done(state.load()));
            }
            seen = word.load(Ordering::Acquire);
        }
        word.fetch_sub(1, Ordering::Relaxed);
    }

    /// Wakes every sleeper. Called once, by the thread whose CAS made the node done, right
    /// after that CAS.
    #[inline]
    pub(crate) fn wake(&self) {
        model_fence();
        let word = self.0.word();
        if word.load(Ordering::SeqCst) & !SIGNALLED != 0 {
            word.fetch_or(SIGNALLED, Ordering::Release);
            self.0.wake_all();
        }
    }
}

/// The `SeqCst` fence loom needs to see the store-buffering order that `SeqCst` accesses
/// alone give a real build (module docs). Nothing outside loom.
#[inline(always)]
fn model_fence() {
    #[cfg(loom)]
    loom::sync::atomic::fence(Ordering::SeqCst);
}

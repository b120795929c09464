//! The cancel walk: how one `cancel()` makes a whole subtree done, without recursion and
//! without a lock.
//!
//! 1. One CAS on the node's state word, from its live value (the list head) to the done
//!    word, decides the winner, publishes the reason and cause, and detaches the listener
//!    list, all at once (`state.rs`). A loser returns once the winner has set WALKED (so
//!    "when `cancel()` returns, every descendant reports done" holds for losers too),
//!    except on a thread that is itself inside a walk (a callback that cancels), which must
//!    not wait on itself.
//! 2. The winner disarms the node's timer, then walks the detached chain (`list.rs`):
//!    waiters are woken, callbacks run, and each live child is finished with a copy of the
//!    word (same reason, same cause; its own CAS detaches its list in turn) and pushed on an
//!    explicit stack. Depth costs heap, never call stack: a 1,000,000-deep chain is fine.
//! 3. Children are walked the same way; a node gets WALKED when its subtree is complete
//!    (post-order), and only then gives up LINKED in its parent's chain.
//!
//! Panics: an `after_func` callback that panics does not stop the walk. Every other listener
//! is still cancelled and woken; the first panic is re-raised on the cancelling thread once
//! the walk is complete (on the timer thread it is reported by the panic hook and dropped;
//! during an unwind it is dropped rather than aborting the process).

use crate::list::{self, Entry, Kind};
use crate::state;
use crate::sync::{epoch, thread_local};
use crate::timer;
use std::any::Any;
use std::cell::Cell;

#[cfg(not(loom))]
thread_local! {
    /// How many cancel walks this thread is inside (callbacks may cancel, re-entering).
    static WALKING: Cell<usize> = const { Cell::new(0) };
}

// loom's `thread_local!` takes no `const` initializer.
#[cfg(loom)]
thread_local! {
    static WALKING: Cell<usize> = Cell::new(0);
}

/// A panic caught from a callback during a walk.
pub(crate) type Panic = Box<dyn Any + Send + 'static>;

struct Walking;

impl Walking {
    fn enter() -> Walking {
        WALKING.with(|w| w.set(w.get() + 1));
        Walking
    }
}

impl Drop for Walking {
    fn drop(&mut self) {
        WALKING.with(|w| w.set(w.get() - 1));
    }
}

/// Makes node `e` done with `word` (which this call owns) and walks its subtree. Returns
/// true if this call won; false if the node was already done (then `word` is released).
pub(crate) fn cancel(e: *const Entry, word: usize) -> bool {
    match cancel_catching(e, word) {
        Ok(won) => won,
        Err(panic) => {
            if std::thread::panicking() {
                // Re-raising during an unwind would abort; the hook already reported it.
                drop(panic);
                true
            } else {
                std::panic::resume_unwind(panic)
            }
        }
    }
}

/// Like [`cancel`], but hands a callback's panic back instead of re-raising it.
pub(crate) fn cancel_catching(e: *const Entry, word: usize) -> Result<bool, Panic> {
    // SAFETY: the caller holds a reference (count or LINKED) that keeps `e` live.
    let node = unsafe { &*e }.node();
    let chain = match node.state.try_finish(word) {
        Ok(chain) => chain,
        Err(_) => {
            if WALKING.with(Cell::get) == 0 {
                node.state.wait_walked();
            }
            return Ok(false);
        }
    };
    let _walking = Walking::enter();
    timer::disarm(node.timer);
    let mut panic = None;
    // (node, its detached chain, expanded): pre-order walks the chain, post-order sets
    // WALKED once the whole subtree is done.
    let mut stack: Vec<(*const Entry, usize, bool)> = Vec::new();
    walk(chain, word, &mut stack, &mut panic);
    // One pin for the whole subtree: the pins taken inside (each chain's walk) then nest,
    // which costs no fence. A leaf cancel never gets here with work, and pins nothing.
    let guard = (!stack.is_empty()).then(epoch::pin);
    while let Some((child, chain, expanded)) = stack.pop() {
        if expanded {
            // SAFETY: we still own the child's LINKED (pushed by `walk`), so it is live.
            let child_state = &unsafe { &*child }.node().state;
            // This walk won the child's CAS, so the word is the one it wrote.
            child_state.mark_walked(child_state.load());
            let guard = guard.as_ref().expect("pinned when the stack had work");
            // SAFETY: we own its LINKED and give it up now; `guard` is pinned.
            unsafe { list::unlink_done(child, guard) };
        } else {
            stack.push((child, 0, true));
            walk(chain, word, &mut stack, &mut panic);
        }
    }
    drop(guard);
    node.state.mark_walked(word);
    match panic {
        Some(p) => Err(p),
        None => Ok(true),
    }
}

/// Walks the chain detached from one done node (see the module docs, step 2); `word` is
/// the done word of the walk's root, which every descendant inherits.
fn walk(
    chain: usize,
    word: usize,
    stack: &mut Vec<(*const Entry, usize, bool)>,
    panic: &mut Option<Panic>,
) {
    list::walk_chain(chain, |entry| match &entry.kind {
        Kind::Node(child) => match child.state.try_finish(state::inherit(word)) {
            Ok(child_chain) => {
                timer::disarm(child.timer);
                stack.push((entry as *const Entry, child_chain, false));
                true
            }
            // Done already: its own canceller walks its subtree.
            Err(_) => false,
        },
        Kind::Waiter(waker) => {
            waker.wake();
            false
        }
        Kind::Callback(callback) => {
            // SAFETY: `callback` is `entry`'s, and this walk owns the entry's LINKED.
            if let Err(p) = unsafe { callback.fire(entry) } {
                panic.get_or_insert(p);
            }
            false
        }
    });
}

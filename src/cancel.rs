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
//! 4. A child found done already, but not yet WALKED, was cancelled by its own handle or
//!    timer, and another thread is walking its subtree. The walk keeps its LINKED and, in
//!    post-order (before its parent's WALKED), waits for that child's WALKED: so when any
//!    `cancel()` returns, every descendant reports done, however the cancels interleave
//!    one level down (behaviour 2).
//!
//! Why the waits end. A walk waits only for walks of nodes strictly below the node it is
//! walking (step 4), or, as a loser, for the walk of the node it tried to cancel (step 1);
//! a walk in progress never waits for a walk above it. So the waits-for relation follows
//! the tree downwards and has no cycle; the deepest walk waits for nobody and finishes in
//! time linear in its subtree. A waiter spins briefly, then yields its core to the walker
//! (`sync::backoff`), so a preempted walker gets the CPU back. The one exception is a
//! cancel from inside an `after_func` callback (a walk nested in a walk): it cannot wait,
//! since the walk it is nested in may be what another walker waits for, so it neither
//! waits as a loser nor for children walked elsewhere (their own walks still complete
//! them; such a cancel's promise covers what its own walk reached).
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

struct Walking {
    /// This thread was in no walk before this one.
    outermost: bool,
}

impl Walking {
    fn enter() -> Walking {
        let before = WALKING.with(|w| w.replace(w.get() + 1));
        Walking {
            outermost: before == 0,
        }
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

/// What the walk still owes an entry on its stack (it holds the entry's LINKED).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Owed {
    /// A child this walk made done: walk its detached chain.
    Expand,
    /// A child whose subtree this walk has finished: set its WALKED.
    Finish,
    /// A child made done by another thread, whose walk is still running: wait for its
    /// WALKED (step 4 of the module docs).
    Await,
}

/// The walk's explicit stack: (child node entry, its detached chain, what is owed).
type Stack = Vec<(*const Entry, usize, Owed)>;

/// Like [`cancel`], but hands a callback's panic back instead of re-raising it.
pub(crate) fn cancel_catching(e: *const Entry, word: usize) -> Result<bool, Panic> {
    // SAFETY: the caller holds a reference (count or LINKED) that keeps `e` live.
    let entry = unsafe { &*e };
    let node = entry.node();
    let chain = match node.state.try_finish(word) {
        Ok(chain) => {
            node.sleepers.wake();
            chain
        }
        Err(now) => {
            // A cancel nested in a walk (a callback cancelling) must not wait (module docs).
            if state::is_done(now) && WALKING.with(Cell::get) == 0 {
                node.state.wait_walked();
            }
            return Ok(false);
        }
    };
    if chain == 0 {
        // A leaf (the common case: a request's own context): nothing to walk, so no
        // callback can run and nothing needs the walk's bookkeeping.
        disarm_timer(entry);
        node.state.mark_walked(word);
        return Ok(true);
    }
    let walking = Walking::enter();
    let may_wait = walking.outermost;
    disarm_timer(entry);
    let mut panic = None;
    let mut stack: Stack = Vec::new();
    walk(chain, word, may_wait, &mut stack, &mut panic);
    // One pin for the whole subtree: the pins taken inside (each chain's walk) then nest,
    // which costs no fence. A leaf cancel never gets here with work, and pins nothing.
    let guard = (!stack.is_empty()).then(epoch::pin);
    while let Some((child, chain, owed)) = stack.pop() {
        // SAFETY: we own the child's LINKED (kept by `walk`), so it is live.
        let child_state = &unsafe { &*child }.node().state;
        match owed {
            Owed::Expand => {
                stack.push((child, 0, Owed::Finish));
                walk(chain, word, may_wait, &mut stack, &mut panic);
                continue;
            }
            // This walk won the child's CAS, so the word is the one it wrote.
            Owed::Finish => child_state.mark_walked(child_state.load()),
            // Bounded: see "Why the waits end".
            Owed::Await => child_state.wait_walked(),
        }
        let guard = guard.as_ref().expect("pinned when the stack had work");
        // SAFETY: we own its LINKED and give it up now; `guard` is pinned.
        unsafe { list::unlink_done(child, guard) };
    }
    drop(guard);
    node.state.mark_walked(word);
    match panic {
        Some(p) => Err(p),
        None => Ok(true),
    }
}

/// Disarms the timer of a node this thread has just made done. If it wins the timer's
/// CAS, the node's TIMER claim stays set for the node's last holder to give up with its
/// last count (`list.rs` invariant 7): one locked instruction fewer per cancel than a
/// `fetch_and` here. The canceller holds a claim on the node (a count, or a walk's LINKED
/// on a child with a count), so that last holder is still to come.
fn disarm_timer(entry: &Entry) {
    timer::disarm(entry.node().timer);
}

/// Walks the chain detached from one done node (see the module docs, step 2); `word` is
/// the done word of the walk's root, which every descendant inherits.
fn walk(chain: usize, word: usize, may_wait: bool, stack: &mut Stack, panic: &mut Option<Panic>) {
    list::walk_chain(chain, |entry| match &entry.kind {
        Kind::Node(child) => match child.state.try_finish(state::inherit(word)) {
            Ok(child_chain) => {
                child.sleepers.wake();
                disarm_timer(entry);
                stack.push((entry as *const Entry, child_chain, Owed::Expand));
                true
            }
            // Done by another thread that is still walking it (step 4).
            Err(now) if may_wait && state::is_done(now) && now & state::WALKED == 0 => {
                stack.push((entry as *const Entry, 0, Owed::Await));
                true
            }
            // Done and walked already, or never done (cannot happen under a live parent:
            // `inert.rs` invariant 1).
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

//! Contexts that can never be done any more, and what they let go (behaviour 14).
//!
//! A node can be done through its *sources*: its armed `CancelHandle`, its pending timer,
//! and a parent that can itself still be done. `Node::sources` keeps two bits, HANDLE
//! (cleared by `disarm`) and PARENT (set when the node entered a live parent's list,
//! cleared when that parent becomes inert); a node with a timer is never inert while live
//! (its timer fires, or the node is cancelled, or it dies).
//!
//! # Algorithm
//!
//! The thread whose `fetch_and` clears the last bit of a node without a timer makes the node
//! *never-done*: one CAS of the state word from its live value (the list head) to NEVER
//! (`state.rs`), which also detaches the list, as a cancel's CAS does. It then walks the
//! detached chain (`list::walk_chain`), and the chains of the children it makes never-done
//! in turn, on an explicit worklist (no recursion on depth):
//!
//! - a child node loses PARENT; if that was its last source and it has no timer, it is made
//!   never-done the same way and its chain joins the worklist;
//! - a waiter's waker is taken out of its `AtomicWaker` and dropped: the future or thread
//!   stays pending (as on `background()`), but no clone of its waker is kept;
//! - a pending callback is claimed as DROPPED (`callback.rs`): its closure is dropped
//!   unrun, its pending counts given back, and a later `stop()` returns true.
//!
//! Afterwards the node behaves as `background()`: `is_done()` is false forever; a push
//! finds its list closed, so a derive registers nowhere, `after_func` drops its closure and
//! a `done()` future stays pending without registering.
//!
//! # Invariants
//!
//! 1. Once a node has no source left, nothing can make it done: a disarmed handle is
//!    consumed, it has no timer, and a parent without sources is never-done itself (by
//!    induction up to a root, a `without_cancel`, or a node whose handle and timer are
//!    gone). So NEVER never races a cancel of the same node (`state.rs`).
//! 2. Exactly one thread clears the last source bit (`fetch_and` returns the bits before),
//!    so at most one thread walks a node's chain, and it owns the LINKED of every entry in
//!    it, exactly as a canceller does (`list.rs` invariant 3).
//! 3. A child counts PARENT only if its push into the parent's list succeeded, and exactly
//!    the children that pushed are in the chain detached by NEVER, so every PARENT set is
//!    cleared once, by the parent's walk.
//!
//! # Orderings
//!
//! The NEVER CAS is AcqRel (as `State::try_finish`). The `fetch_and`s on `sources` are
//! AcqRel: the thread that clears the last bit acquires what the clearers before it did.
//! A waiter that re-registers after the walk took its waker reads the state word after
//! registering (`wait.rs`), sees NEVER and takes its waker back.

use crate::list::{self, Entry, Kind};
use crate::node::Node;
use crate::sync::Ordering;

/// Source bit: the node's `CancelHandle` is armed.
pub(crate) const HANDLE: u8 = 1;
/// Source bit: the node is linked under a parent that can still be done.
pub(crate) const PARENT: u8 = 1 << 1;

/// Removes `source` from the node of entry `e`; if it was the last, makes the node (and
/// what depends on it) never-done.
///
/// # Safety
///
/// The caller holds a claim (a count or the LINKED of a walk) that keeps `e` alive, and
/// `source` is set on it: the caller is the one that may clear it.
pub(crate) unsafe fn remove_source(e: *const Entry, source: u8) {
    // SAFETY: per the contract, `e` is a live node entry.
    let node = unsafe { &*e }.node();
    let Some(chain) = lose(node, source) else {
        return;
    };
    let mut chains = vec![chain];
    while let Some(chain) = chains.pop() {
        list::walk_chain(chain, |entry| {
            match &entry.kind {
                Kind::Node(child) => {
                    if let Some(c) = lose(child, PARENT) {
                        chains.push(c);
                    }
                }
                Kind::Waiter(waker) => drop(waker.take()),
                Kind::Callback(callback) => {
                    // SAFETY: `callback` is `entry`'s, and this walk owns its LINKED.
                    unsafe { callback.drop_unrun(entry) };
                }
            }
            // The walk gives up LINKED at once: a never-done child's own chain is ours
            // already (detached by `lose`), and its entries keep their LINKED for us.
            false
        });
    }
}

/// Clears `source` on `node`; if no source is left, makes it never-done and returns its
/// detached chain for the caller to walk.
fn lose(node: &Node, source: u8) -> Option<usize> {
    if !node.timer.is_null() {
        // A pending timer is a source until the node is done or dead.
        return None;
    }
    // AcqRel: see "Orderings".
    let before = node.sources.fetch_and(!source, Ordering::AcqRel);
    if before != source {
        return None;
    }
    node.state.try_never()
}

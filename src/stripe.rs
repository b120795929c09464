//! A root shared by every thread: children registered on per-thread stripes.
//!
//! A server derives every request from one cancellable root, from every worker thread at
//! once. Under an ordinary parent each derive and each drop writes the parent's cache line
//! three times (the push on its list head, its count up, and its count down with the
//! child's mark counted in it), so that line crosses cores on every request.
//! [`Context::with_cancel_shared`] makes a root whose children register elsewhere:
//!
//! - The root P gets `K` *stripes* S_0..S_{K-1} (a power of two from the number of CPUs,
//!   2 to 64): hidden child nodes of P, linked in P's list like any child, each holding a
//!   count on P (`list.rs` invariant 5). A stripe has no handle and no deadline of its own;
//!   its only source is P (`inert.rs`).
//! - A derive from P on a thread links the new child under that thread's stripe (threads
//!   take stripe numbers round-robin on first use). The push, the count and the count of
//!   marks it writes are the stripe's, on the stripe's own cache line; of P it only reads
//!   the state word, so with up to `K` deriving threads no cache line is written by every
//!   derive.
//! - The stripes ride in P's value table V as a hidden value (as a clock does), with P's
//!   address: a derive from a context whose node is P uses them; a derive from anything
//!   else does not. Each stripe also has a value table of its own, V_k: P's values without
//!   the stripes, plus a hidden marker. A child on stripe k carries V_k, so cloning its
//!   table writes V_k's count, not V's, which every thread would share. (A context of P
//!   with a value of its own keeps that table for its children; only the node's writes go
//!   to the stripe then.)
//! - Lifetimes: V holds the stripes and the V_k; a stripe holds P, and a child holds its
//!   stripe (invariant 5) and its V_k; V_k holds P's values, never V. So nothing forms a
//!   cycle: the stripe table goes with the last context of P itself, and each stripe with
//!   its last child after that.
//!
//! # Why the behaviours hold
//!
//! - **Behaviour 2** (when `cancel()` returns, every descendant is done): P's cancel walk
//!   expands each stripe (a linked child node) and, through it, every child on it, before
//!   P's WALKED; the walk is the ordinary one (`cancel.rs`).
//! - **Behaviour 3** (a child of a done context is born done): a derive reads P's state
//!   first and, if P is done, derives from P itself (born done with P's word). If P becomes
//!   done after that read, the child either finds its stripe closed (born done with the
//!   stripe's copy of P's word) or is pushed before the stripe's close and is cancelled by
//!   P's walk, before P's cancel returns.
//! - **Behaviour 14** (never-done behaves as background): when P can never be done, its
//!   inert walk takes PARENT from every stripe, their last source, so they become
//!   never-done and their children lose PARENT in turn (`inert.rs`).
//! - **Deadlines**: a stripe carries P's deadline, so a child inherits it as from P; a
//!   stripe arms no timer (P's own timer cancels P, whose walk reaches the stripes).
//! - **Memory**: per shared root, `K` stripe nodes (72 bytes each), `K` value nodes and the
//!   table of stripes; nothing per child. The hidden values take one of the four inline
//!   value slots in P's subtree.

use crate::node::{self, NodeRef};
use crate::sync::{AtomicUsize, Ordering};
use crate::value::ValueRef;

/// The stripes of one shared root, carried in its value table.
pub(crate) struct StripeSlot {
    /// The root's entry address: only a context whose node is this root uses the stripes.
    owner: usize,
    /// Per stripe: the stripe node (one count), and the values its children carry. `len()`
    /// is a power of two.
    stripes: Box<[(NodeRef, Option<ValueRef>)]>,
}

/// Hidden marker of the value tables that children of a shared root carry (module docs).
pub(crate) struct StripeMark;

impl StripeSlot {
    /// `root`'s stripes: `stripe_count()` children of it with no handle. `values` are the
    /// root's values without this slot: each stripe's children carry a table of their own
    /// with the same values (and a [`StripeMark`]), so cloning it writes the stripe's
    /// cache line, not one shared by every thread. The tables hold `values`, never the
    /// node that holds this slot, so nothing forms a cycle.
    pub(crate) fn new(root: &NodeRef, values: Option<&ValueRef>) -> StripeSlot {
        StripeSlot {
            owner: root.as_ptr() as usize,
            stripes: (0..stripe_count())
                .map(|_| {
                    (
                        node::derive_stripe(root),
                        Some(ValueRef::with(values, StripeMark)),
                    )
                })
                .collect(),
        }
    }
}

/// Where a derive from a context with node `node` and values `values` links its child, and
/// which values the child carries: for a shared root (`node` is the root, `values` its own
/// table), this thread's stripe and that stripe's table; else `node` and `values`.
#[inline]
pub(crate) fn parent_for<'a>(
    node: &'a NodeRef,
    values: Option<&'a ValueRef>,
) -> (&'a NodeRef, Option<&'a ValueRef>) {
    let Some((stripe, stripe_values)) = values.and_then(|v| {
        let slot = v.get::<StripeSlot>()?;
        if node.as_ptr() as usize != slot.owner {
            return None;
        }
        let (s, sv) = &slot.stripes[thread_stripe() & (slot.stripes.len() - 1)];
        // A context of the root that added values of its own keeps them: its children
        // carry its table (the stripe still takes the node's writes).
        let own = v.own::<StripeSlot>().is_some();
        Some((s, if own { sv.as_ref() } else { Some(v) }))
    }) else {
        return (node, values);
    };
    // Behaviour 3: a done root gives children born done with its own word (module docs).
    // A root that can never be done is left to the stripe, which is never-done too or
    // becomes so in the root's inert walk.
    if crate::state::is_done(node.node().state.load()) {
        (node, values)
    } else {
        (stripe, stripe_values)
    }
}

/// How many stripes a shared root gets: the CPUs, rounded up to a power of two, 2 to 64.
fn stripe_count() -> usize {
    if cfg!(loom) {
        return 2;
    }
    // Any thread that finds it unset computes it; all compute the same value, so a plain
    // atomic (0: not yet) needs no `Once`, and ThreadSanitizer, which does not see the
    // synchronization inside the precompiled std's `OnceLock`, sees this one.
    static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNT.load(std::sync::atomic::Ordering::Relaxed);
    if n != 0 {
        return n;
    }
    let n = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 64)
        .next_power_of_two();
    COUNT.store(n, std::sync::atomic::Ordering::Relaxed);
    n
}

/// Stripe numbers handed to threads, round-robin.
#[cfg(not(loom))]
static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

// Under loom a static must be fresh in every execution: loom replays an execution by
// re-running it, so a number carried over from the last one would change which stripe a
// thread takes, and the replay would not be the execution it records.
#[cfg(loom)]
loom::lazy_static! {
    static ref NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);
}

#[cfg(not(loom))]
std::thread_local! {
    /// This thread's stripe number (`usize::MAX`: not taken yet).
    static STRIPE: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
}

#[cfg(loom)]
loom::thread_local! {
    static STRIPE: std::cell::Cell<usize> = std::cell::Cell::new(usize::MAX);
}

/// This thread's stripe number, taken on first use.
#[inline]
fn thread_stripe() -> usize {
    STRIPE
        .try_with(|s| {
            let mut n = s.get();
            if n == usize::MAX {
                // Relaxed: only spreads threads over stripes; any value is correct.
                n = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed);
                s.set(n);
            }
            n
        })
        .unwrap_or(0)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::Context;

    #[test]
    fn only_the_shared_root_routes_to_its_stripes() {
        let (root, _h) = Context::background().with_cancel_shared();
        let node = root.node_ref().unwrap();
        let values = root.values_ref();
        let (parent, child_values) = parent_for(node, values);
        assert_ne!(parent.as_ptr(), node.as_ptr(), "a derive goes to a stripe");
        assert_eq!(
            parent.entry().owner(),
            node.as_ptr(),
            "the stripe is the root's child"
        );
        assert!(
            !child_values.unwrap().same(values.unwrap()),
            "the stripe's own table"
        );
        // This thread always gets the same stripe.
        assert_eq!(parent_for(node, values).0.as_ptr(), parent.as_ptr());
        // A child of the root derives from itself, with its own values.
        let (child, _ch) = root.with_cancel();
        let c = child.node_ref().unwrap();
        let (p, v) = parent_for(c, child.values_ref());
        assert_eq!(p.as_ptr(), c.as_ptr());
        assert!(v.unwrap().same(child.values_ref().unwrap()));
        // A context of the root with a value of its own keeps it for its children.
        let with = root.with_value(5u8);
        let (p, v) = parent_for(with.node_ref().unwrap(), with.values_ref());
        assert_ne!(p.as_ptr(), node.as_ptr());
        assert!(v.unwrap().same(with.values_ref().unwrap()));
        // Another thread may get another stripe, always of the same root.
        let other = std::thread::scope(|s| {
            s.spawn(|| parent_for(node, values).0.entry().owner() as usize)
                .join()
                .unwrap()
        });
        assert_eq!(other, node.as_ptr() as usize);
        assert!(stripe_count().is_power_of_two() && (2..=64).contains(&stripe_count()));
    }
}

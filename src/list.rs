//! The intrusive lock-free listener list of a node, and the reference count of its entries.
//!
//! # Algorithm
//!
//! Each cancellable node owns a singly linked list of [`Entry`]s: its child nodes, the
//! waiters of `done()`/`wait()`, and its `after_func` callbacks. The list is Harris's
//! lock-free list (T. Harris, "A Pragmatic Implementation of Non-Blocking Linked-Lists",
//! DISC 2001) with Michael's epoch-safe unlinking (M. Michael, "High Performance Dynamic
//! Lock-Free Hash Tables and List-Based Sets", SPAA 2002), cut down to what a listener list
//! needs: no keys, insertion only at the head, and one extra operation, *close*.
//!
//! - **push**: CAS the head from `h` to the new entry whose `next` is `h`.
//! - **remove**: set the DELETED tag on the entry's own `next` (logical deletion), then walk
//!   from the head and unlink every DELETED entry met (CAS `pred.next` from the entry to its
//!   successor) until the entry itself is gone.
//! - **close**: swap the head with a null pointer tagged DETACHED. The canceller now owns the
//!   detached chain. It walks it with `fetch_or(DETACHED)` on each `next`, which both reads the
//!   successor and freezes the link, so no remover can unlink anything behind it any more.
//!
//! # Invariants
//!
//! 1. A link tagged DETACHED belongs to a closed list and never changes pointer again: every
//!    CAS on a link expects an untagged value.
//! 2. An entry's `next` tagged DELETED never changes pointer again (Harris), so an unlinking
//!    CAS that read it moves the predecessor past exactly that entry.
//! 3. LINKED (top bit of `refs`) is set while the entry is reachable from its owner's list or
//!    from a detached chain not yet walked past it. Exactly one thread clears it: the thread
//!    whose CAS unlinked the entry, or the canceller that walked it.
//! 4. An entry is finalized (and its memory handed to the epoch) by whichever thread makes
//!    both the count and LINKED zero. The count never rises from zero: new references are
//!    only ever cloned from live ones.
//! 5. A node entry with an owner holds one count on that owner for its whole life; it gives
//!    it back when finalized. A waiter's owner is kept alive by the future or thread waiting
//!    on it, a callback's owner by the callback's pending count (see `callback.rs`).
//! 6. A thread inside `remove` keeps the list's owner alive by its own path (invariant 5), so
//!    owner counts it gives back for other entries it unlinks never reach zero there: there is
//!    no recursion through `remove`, and a chain of any depth is released by the loop in
//!    [`release`].
//!
//! # Orderings
//!
//! - push's successful CAS is Release: it publishes the entry's fields to whoever reads the
//!   head with Acquire (close, remove's walk). push's loads of the head (first read, CAS
//!   failure) are Acquire: a push that finds the list closed synchronizes with the close,
//!   so the pusher then sees the owner's DONE (set before the close).
//! - close's swap and the walk's `fetch_or` are AcqRel: Acquire to read entries pushed or
//!   links rewritten before, Release so that a remover that later sees DETACHED also sees
//!   that the canceller owns the entry.
//! - Unlinking CASes are AcqRel, failures Acquire (a retry reads the current list).
//! - `refs`: increments Relaxed (a count is only cloned from a live one, like `Arc`);
//!   decrements Release, and the thread that reaches zero fences Acquire before finalizing,
//!   so every access through other references happens before the memory is reused.
//!
//! # Reclamation
//!
//! Finalized entries go to `Guard::defer_destroy`: a remover or canceller that still holds a
//! pointer to an entry is pinned, so the memory outlives every such pointer.

use crate::callback::Callback;
use crate::live;
use crate::node::Node;
use crate::sync::epoch::{self, Atomic, Guard, Owned, Shared};
use crate::sync::{AtomicUsize, AtomicWaker, Ordering};
use std::sync::atomic::fence;

/// Tag on an entry's `next`: the entry is logically deleted.
const DELETED: usize = 1;
/// Tag on a link: the list it belongs to is closed (invariant 1).
const DETACHED: usize = 2;

/// Top bit of `refs`: the entry is linked (invariant 3).
const LINKED: usize = 1 << (usize::BITS - 1);
/// The count part of `refs`.
const COUNT: usize = !LINKED;
/// Counts beyond this are a leak of `mem::forget`ed handles; abort like `Arc` does.
const MAX_COUNT: usize = COUNT >> 1;

/// One element of a listener list, and the allocation of a node, waiter or callback.
#[derive(Debug)]
pub(crate) struct Entry {
    next: Atomic<Entry>,
    refs: AtomicUsize,
    /// The node whose list holds this entry (null when it was never linked).
    owner: *const Entry,
    pub(crate) kind: Kind,
}

/// What an entry is.
#[derive(Debug)]
pub(crate) enum Kind {
    /// A cancellable context node (a child of `owner`).
    Node(Node),
    /// A `done()` future or a thread in `wait()`.
    Waiter(AtomicWaker),
    /// An `after_func` callback.
    Callback(Callback),
}

impl Entry {
    /// Allocates an entry with `count` references, linked to `owner` if non-null, and
    /// returns its address. The entry is not in any list yet.
    pub(crate) fn alloc(kind: Kind, count: usize, owner: *const Entry) -> *const Entry {
        live::add(live_kind(&kind), 1);
        let linked = if owner.is_null() { 0 } else { LINKED };
        let owned = Owned::new(Entry {
            next: Atomic::null(),
            refs: AtomicUsize::new(count | linked),
            owner,
            kind,
        });
        owned
            .into_shared(
                // SAFETY: `into_shared` with the unprotected guard only converts the pointer; the
                // entry is not reachable by anyone else yet, so no epoch protection is needed.
                unsafe { epoch::unprotected() },
            )
            .as_raw()
    }

    /// The node inside a node entry.
    ///
    /// Only called on entries known to be nodes: those behind a `NodeRef`, and owners
    /// (only nodes own lists). Checked in debug builds; in release the match compiles to
    /// a field offset, keeping `is_done()` to one load.
    #[inline]
    pub(crate) fn node(&self) -> &Node {
        match &self.kind {
            Kind::Node(n) => n,
            _ => {
                debug_assert!(false, "entry is not a node");
                // SAFETY: every caller holds a node entry (see above).
                unsafe { std::hint::unreachable_unchecked() }
            }
        }
    }

    /// The owner node of this entry (non-null for linked entries).
    pub(crate) fn owner(&self) -> *const Entry {
        self.owner
    }

    /// Adds one counted reference; the caller already holds one.
    #[inline]
    pub(crate) fn acquire(&self) {
        // Relaxed: a new count is cloned from a live one, which keeps the entry alive
        // (invariant 4); no data is published by the increment.
        let prev = self.refs.fetch_add(1, Ordering::Relaxed);
        if prev & COUNT > MAX_COUNT {
            std::process::abort();
        }
    }
}

fn live_kind(kind: &Kind) -> live::Counter {
    match kind {
        Kind::Node(_) => live::Counter::Contexts,
        Kind::Waiter(_) => live::Counter::Waiters,
        Kind::Callback(_) => live::Counter::Callbacks,
    }
}

/// Frees an entry that was allocated but never published to any list or other thread.
///
/// # Safety
///
/// `e` came from [`Entry::alloc`], and no other thread has ever seen it.
pub(crate) unsafe fn free_unpublished(e: *const Entry) {
    // SAFETY: per the contract nobody else can reach `e`; `alloc` built it with `Owned`.
    let owned = unsafe { Owned::from_raw(e as *mut Entry) };
    live::add(live_kind(&owned.kind), -1);
    drop(owned);
}

/// The head of a node's listener list.
#[derive(Debug)]
pub(crate) struct Listeners {
    head: Atomic<Entry>,
}

impl Listeners {
    /// An empty, open list.
    pub(crate) fn new() -> Self {
        Listeners {
            head: Atomic::null(),
        }
    }

    /// A list that is closed from the start (for nodes born done).
    pub(crate) fn closed() -> Self {
        let l = Listeners::new();
        l.head
            .store(Shared::null().with_tag(DETACHED), Ordering::Relaxed);
        l
    }

    /// Pushes `e` at the head. Returns false, leaving `e` unlinked, if the list is closed.
    ///
    /// # Safety
    ///
    /// `e` is a live entry whose `owner` is this list's node, not in any list yet.
    pub(crate) unsafe fn push(&self, e: *const Entry) -> bool {
        // SAFETY: push never dereferences the head it reads, only compares it; `e` is ours.
        let guard = unsafe { epoch::unprotected() };
        // SAFETY: the caller guarantees `e` is live.
        let entry = unsafe { &*e };
        let new = Shared::from(e);
        // Acquire (here and on CAS failure): a push that reads DETACHED synchronizes with
        // close's swap, so the caller's next load of the owner's state sees DONE (found by
        // loom model m01: with Relaxed, a child or waiter could see "closed" but "not done").
        let mut head = self.head.load(Ordering::Acquire, guard);
        loop {
            if head.tag() & DETACHED != 0 {
                return false;
            }
            entry.next.store(head, Ordering::Relaxed);
            // Release: publishes the entry's fields with it (see "Orderings").
            match self
                .head
                .compare_exchange(head, new, Ordering::Release, Ordering::Acquire, guard)
            {
                Ok(_) => return true,
                Err(err) => head = err.current,
            }
        }
    }

    /// Closes the list and walks the detached chain: `visit` is called once for every entry
    /// that was not logically deleted. Every entry's LINKED is given up after its visit,
    /// except for node entries for which `visit` returns true: the caller takes over their
    /// LINKED and gives it up later with [`unlink_done`].
    ///
    /// Returns false if the list was already empty (then nothing was pinned).
    pub(crate) fn close_and_walk(&self, mut visit: impl FnMut(&Entry) -> bool) -> bool {
        // SAFETY: the swap dereferences nothing; if the chain is empty we are done.
        let unprotected = unsafe { epoch::unprotected() };
        let first = self.head.swap(
            Shared::null().with_tag(DETACHED),
            Ordering::AcqRel, // Acquire: see pushed entries; Release: removers see the close.
            unprotected,
        );
        if first.is_null() {
            return false;
        }
        let guard = &epoch::pin();
        let mut cur = first.with_tag(0);
        while !cur.is_null() {
            // SAFETY: `cur` is in our detached chain with LINKED still set (invariant 3),
            // so it is not finalized (invariant 4).
            let e = unsafe { cur.deref() };
            // AcqRel: reads the successor and freezes the link (invariant 1).
            let next = e.next.fetch_or(DETACHED, Ordering::AcqRel, guard);
            let keep = next.tag() & DELETED == 0 && visit(e);
            if !keep {
                // SAFETY: we walked `e` and own its LINKED (invariant 3); `next` was read.
                if let Some(owner) = unsafe { unlink_done(cur.as_raw(), guard) } {
                    // A node entry finalized here (a child dropped while the list closed)
                    // hands back its count on this list's node (invariant 5); dropping it
                    // leaked the node (found by loom model m02). The walker keeps the node
                    // alive by its own reference, so this is not its last count, or, if it
                    // is, the node's LINKED is the walker's and `remove` returns at once.
                    // SAFETY: a counted reference handed to us by the finalized entry.
                    unsafe { release(owner) };
                }
            }
            cur = next.with_tag(0);
        }
        true
    }

    /// Logically deletes `e` and makes sure it is unlinked (by us or by a helper) unless the
    /// list was closed meanwhile, in which case the canceller owns it.
    ///
    /// Returns the entry to release next if this call finalized `e` itself (its owner).
    /// `count_is_zero` says the caller saw `e`'s count reach zero (the release path).
    ///
    /// # Safety
    ///
    /// `e` is a live entry of this list; the caller is pinned with `guard` and keeps this
    /// list's node alive (invariant 6); `count_is_zero` is true only if it observed the
    /// count of `e` reach zero.
    pub(crate) unsafe fn remove(
        &self,
        e: *const Entry,
        count_is_zero: bool,
        guard: &Guard,
    ) -> Option<*const Entry> {
        // SAFETY: the caller guarantees `e` is live.
        let entry = unsafe { &*e };
        let old = entry.next.fetch_or(DELETED, Ordering::AcqRel, guard);
        if old.tag() != 0 {
            // Already deleted by another remover (who finishes the job) or detached.
            return None;
        }
        'retry: loop {
            let mut pred = &self.head;
            let mut cur = pred.load(Ordering::Acquire, guard);
            loop {
                if cur.tag() & DETACHED != 0 || cur.is_null() {
                    // Closed (the canceller owns what is left), or `e` is already gone.
                    return None;
                }
                // SAFETY: `cur` was reachable from the list while we are pinned, so its
                // memory is not reused before we unpin (see "Reclamation").
                let c = unsafe { cur.deref() };
                let next = c.next.load(Ordering::Acquire, guard);
                if next.tag() & DETACHED != 0 {
                    return None;
                }
                if next.tag() & DELETED != 0 {
                    let succ = next.with_tag(0);
                    match pred.compare_exchange(
                        cur,
                        succ,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                        guard,
                    ) {
                        Ok(_) => {
                            if cur.as_raw() == e && count_is_zero {
                                // We own `e`'s LINKED and saw its count reach zero: nobody
                                // else can touch `refs` now (invariant 4), so finalize
                                // without clearing LINKED (one locked instruction saved).
                                // SAFETY: as just argued; we are pinned.
                                return unsafe { finalize(e, guard) };
                            }
                            // SAFETY: our CAS unlinked `cur`, so we own its LINKED.
                            let then = unsafe { unlink_done(cur.as_raw(), guard) };
                            if cur.as_raw() == e {
                                return then;
                            }
                            if let Some(owner) = then {
                                // Invariant 6: this never reaches zero here.
                                // SAFETY: `owner` is a live counted reference handed to us.
                                unsafe { release(owner) };
                            }
                            cur = succ;
                            continue;
                        }
                        Err(err) => {
                            if err.current.tag() & DETACHED != 0 {
                                return None;
                            }
                            continue 'retry;
                        }
                    }
                }
                pred = &c.next;
                cur = next;
            }
        }
    }
}

/// Gives up LINKED for an entry this thread unlinked or walked, finalizing it if no counted
/// reference is left. Returns the owner to release if the entry was finalized.
///
/// # Safety
///
/// The caller owns `e`'s LINKED (invariant 3) and is pinned with `guard`.
pub(crate) unsafe fn unlink_done(e: *const Entry, guard: &Guard) -> Option<*const Entry> {
    // SAFETY: LINKED is still set, so `e` is live (invariant 4).
    let entry = unsafe { &*e };
    // AcqRel: Release orders our accesses before a finalizer's; Acquire in case it is us.
    let prev = entry.refs.fetch_and(!LINKED, Ordering::AcqRel);
    debug_assert!(prev & LINKED != 0);
    if prev & COUNT == 0 {
        // SAFETY: count and LINKED are both zero now and only we saw that transition.
        unsafe { finalize(e, guard) }
    } else {
        None
    }
}

/// Hands a dead entry to the epoch; returns its owner if it held a count on it.
///
/// # Safety
///
/// Count and LINKED of `e` are zero, observed by this thread alone; `guard` is pinned.
unsafe fn finalize(e: *const Entry, guard: &Guard) -> Option<*const Entry> {
    // SAFETY: not freed before the deferred destroy below runs.
    let entry = unsafe { &*e };
    live::add(live_kind(&entry.kind), -1);
    if let Kind::Node(node) = &entry.kind {
        node.release_timer();
    }
    let owner = match entry.kind {
        Kind::Node(_) if !entry.owner.is_null() => Some(entry.owner),
        _ => None,
    };
    // SAFETY: nobody can obtain a new reference (invariant 4); threads still holding the
    // pointer are pinned, and the epoch frees the memory only after they unpin.
    unsafe { guard.defer_destroy(Shared::from(e)) };
    owner
}

/// Releases one counted reference to `e`, and then, iteratively, whatever that frees.
///
/// # Safety
///
/// The caller owns one counted reference to the live entry `e` and gives it up.
pub(crate) unsafe fn release(e: *const Entry) {
    let mut next = Some(e);
    let mut guard: Option<Guard> = None;
    while let Some(e) = next {
        // SAFETY: we hold a counted reference, so `e` is live.
        let entry = unsafe { &*e };
        // Release: our accesses happen before the finalizer's (see "Orderings").
        let prev = entry.refs.fetch_sub(1, Ordering::Release);
        if prev & COUNT != 1 {
            return;
        }
        fence(Ordering::Acquire);
        let g = guard.get_or_insert_with(epoch::pin);
        next = if prev & LINKED != 0 {
            // SAFETY: a linked entry has a live owner (invariants 5 and 6), and `e` is in its
            // list or in a detached chain; we are pinned.
            unsafe { (*entry.owner).node().listeners.remove(e, true, g) }
        } else {
            // SAFETY: count and LINKED reached zero with our decrement alone.
            unsafe { finalize(e, g) }
        };
    }
}

/// Gives up a linked entry that was never pushed (its owner's list was closed first).
///
/// # Safety
///
/// `e` holds LINKED, and no list or walker can reach it.
pub(crate) unsafe fn unlink_unpushed(e: *const Entry) -> Option<*const Entry> {
    let guard = &epoch::pin();
    // SAFETY: nobody else can own this LINKED since the entry is in no list.
    unsafe { unlink_done(e, guard) }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn waiter(owner: *const Entry) -> *const Entry {
        Entry::alloc(Kind::Waiter(AtomicWaker::new()), 1, owner)
    }

    fn node_entry() -> *const Entry {
        Entry::alloc(Kind::Node(Node::root_child(None)), 1, std::ptr::null())
    }

    fn count_walk(list: &Listeners) -> usize {
        let mut n = 0;
        list.close_and_walk(|_| {
            n += 1;
            false
        });
        n
    }

    #[test]
    fn push_then_walk_visits_every_entry() {
        let owner = node_entry();
        // SAFETY: owner is live for the whole test.
        let list = unsafe { &(*owner).node().listeners };
        let ws: Vec<_> = (0..5).map(|_| waiter(owner)).collect();
        for &w in &ws {
            // SAFETY: fresh entry owned by `owner`.
            assert!(unsafe { list.push(w) });
        }
        assert_eq!(count_walk(list), 5);
        for w in ws {
            // SAFETY: we hold the one count; LINKED was given up by the walk.
            unsafe { release(w) };
        }
        let late = waiter(owner);
        // SAFETY: fresh entry; the list is closed so it stays ours.
        assert!(!unsafe { list.push(late) });
        // SAFETY: never published.
        unsafe {
            let _ = unlink_unpushed(late);
            release(late);
            release(owner);
        }
    }

    #[test]
    fn removed_entries_are_not_visited() {
        let owner = node_entry();
        // SAFETY: owner is live for the whole test.
        let list = unsafe { &(*owner).node().listeners };
        let ws: Vec<_> = (0..6).map(|_| waiter(owner)).collect();
        for &w in &ws {
            // SAFETY: fresh entry owned by `owner`.
            assert!(unsafe { list.push(w) });
        }
        // Drop every other waiter: its only count goes, so it is removed from the list.
        for (i, &w) in ws.iter().enumerate() {
            if i % 2 == 0 {
                // SAFETY: we hold the one count.
                unsafe { release(w) };
            }
        }
        assert_eq!(count_walk(list), 3);
        for (i, &w) in ws.iter().enumerate() {
            if i % 2 == 1 {
                // SAFETY: we hold the one count.
                unsafe { release(w) };
            }
        }
        // SAFETY: last count of the owner.
        unsafe { release(owner) };
    }
}

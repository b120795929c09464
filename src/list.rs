//! The intrusive lock-free listener list of a node. The claims on its entries (reference
//! count, LINKED, TIMER) and their release are in `list/refs.rs`, the batching of dead
//! entries for the epoch in `list/grave.rs`.
//!
//! # Algorithm
//!
//! Each cancellable node owns a singly linked list of [`Entry`]s: its child nodes, the
//! waiters of `done()`/`wait()`, and its `after_func` callbacks. The list is Harris's
//! lock-free list (T. Harris, "A Pragmatic Implementation of Non-Blocking Linked-Lists",
//! DISC 2001: logical deletion by a mark on the entry's own `next`, physical removal of whole
//! runs of marked entries by one CAS on the predecessor) with Michael's epoch-safe
//! reclamation (M. Michael, SPAA 2002), cut down to what a listener list needs: no keys,
//! insertion only at the head, and one extra operation, *close*.
//!
//! - **push**: CAS the head from `h` to the new entry whose `next` is `h`.
//! - **mark**: set the DELETED tag on the entry's own `next`. That is all a departing entry
//!   does: it never searches for its predecessor, so leaving costs O(1) wherever the entry
//!   sits (a server drops its oldest request as cheaply as its newest).
//! - **sweep**: walk from the head and unlink every run of marked entries with one CAS. The
//!   node counts marks since its last sweep (the GARBAGE bits of its `refs`: `list/refs.rs`)
//!   and how many live entries that sweep kept (`kept`); the thread whose mark takes the
//!   count past `kept / 2 + SWEEP_SLACK` sweeps. A departing child counts its mark in the
//!   same CAS that gives back its count on the node, so counting costs it no locked
//!   instruction of its own. A sweep costs O(kept + garbage) and happens at most once per
//!   `kept / 2 + SWEEP_SLACK` marks, so removal is amortized O(1); dead entries waiting for a
//!   sweep number at most half the live ones of the last sweep plus the slack, so when
//!   every child is gone, at most a few dozen dead ones remain.
//! - **close**: the head is the node's state word (`state.rs`), so the cancel's CAS that
//!   writes the done word (or the inert walk's CAS that writes NEVER: `inert.rs`) detaches
//!   the whole list; a later push or sweep sees a closed head and stops. The canceller now owns the detached chain. It walks it with
//!   `fetch_or(DETACHED)` on each `next`, which both reads the successor and freezes the
//!   link, so no sweeper can unlink anything behind it any more. The finalizer of a dead
//!   node (never cancelled) takes its chain with a plain load (invariant 6).
//!
//! # Invariants
//!
//! 1. A link tagged DETACHED belongs to a closed list and never changes pointer again: every
//!    CAS on a link expects an untagged value (and every CAS on the head a live word).
//! 2. An entry's `next` tagged DELETED never changes pointer again (Harris), so a CAS that
//!    read a run of marked entries moves the predecessor past exactly that run.
//! 3. LINKED (top bit of `refs`) is set while the entry is reachable from its owner's list or
//!    from a detached chain not yet walked past it. Exactly one thread clears it: the thread
//!    whose CAS unlinked the entry, or the closer that walked it; but a waiter the closer
//!    found unmarked has its LINKED handed to the future or thread waiting on it, which
//!    gives it up with its count (`list/refs.rs`). The two RMWs on the waiter's `next`
//!    decide which: the closer's `fetch_or(DETACHED)` and the owner's mark. If the mark
//!    came first, the closer sees DELETED and clears LINKED; if the closer came first, the
//!    mark sees DETACHED and the owner clears it. This spares the walk one locked
//!    instruction per waiter.
//! 4. An entry is finalized by whichever thread makes the claims of its `refs` zero (count,
//!    LINKED and TIMER; the GARBAGE bits are no claim); the count never rises from zero
//!    (new references are only cloned from live ones), and TIMER is never set again once
//!    cleared.
//! 5. A *live* node entry (count above zero) with an owner holds one count on that owner; it
//!    gives it back when its own count reaches zero, after marking itself (the last holder
//!    marks *before* its last decrement: `list/refs.rs`). A dead node waiting in a list for
//!    a sweep keeps nothing alive. A waiter's owner is kept alive by the future or thread
//!    waiting on it, a pending callback's by its pending count.
//! 6. So a node whose count is zero has no live entry in its list: finalizing it closes the
//!    list and finalizes every entry in it (they are all dead, except callbacks still held
//!    by their `AfterFunc`, which only lose LINKED), on an explicit worklist (no recursion).
//!    Nobody else touches that list any more: markers and sweepers of a list always hold a
//!    count on its owner (invariant 5, or a `Context` of it).
//! 7. TIMER (second bit of `refs`) is set while a node's timer is armed and no one has won
//!    its entry's CAS yet. If the driver wins (FIRED), it holds TIMER until it is done with
//!    the node (it cancels the node only if some count is left: nobody else could observe
//!    it). If a canceller or the node's last holder wins (CANCELLED; the last holder
//!    disarms: a deadline alone keeps nothing), TIMER stays set and the last holder gives
//!    it up with its last count, in one `fetch_sub`: it reads the entry's final state
//!    after its own disarm attempt, so exactly one thread gives TIMER up. It keeps the
//!    node's memory, not the node: a node with TIMER and no count is dead, and is
//!    finalized by whoever gives up the last claim.
//!
//! # Orderings
//!
//! - push's successful CAS is Release: it publishes the entry's fields to whoever reads the
//!   head with Acquire (close, sweep). push's loads of the head (first read, CAS failure)
//!   are Acquire: a push that finds the list closed synchronizes with the close, so the
//!   pusher then sees the owner's DONE (set before the close).
//! - the closing CAS and the walk's `fetch_or` are AcqRel: Acquire to read entries pushed or
//!   links rewritten before, Release so that a marker that later sees DETACHED also sees
//!   that the closer owns the entry.
//! - mark is AcqRel; unlinking CASes are AcqRel, failures Acquire (a retry reads the current
//!   list). The GARBAGE bits and `kept` only schedule sweeps, never decide safety: `kept` is
//!   Relaxed, and the GARBAGE bits move with whatever ordering the RMW on `refs` that moves
//!   them needs for the count.
//! - `refs`: see `list/refs.rs` ("Orderings"): increments Relaxed, decrements Release,
//!   and the RMW that makes the word zero AcqRel, so every access through other claims
//!   happens before the memory is reused.
//!
//! # Reclamation
//!
//! Finalized entries go to the epoch (batched: `list/grave.rs`): a sweeper or closer that
//! still holds a pointer to an entry it holds no claim on is pinned, so the memory outlives
//! every such pointer. A marker is not pinned: it touches only its own entry, which its
//! count keeps, and its owner, which invariant 5 keeps (so a child's last release pins only
//! when it sweeps or finalizes: `list/refs.rs`, "Pinning").

mod grave;
#[cfg(not(loom))]
mod pool;
mod refs;

pub(crate) use refs::{finalize, free_unpublished, release, unlink_done, unlink_unpushed};

use crate::callback::Callback;
use crate::live;
use crate::node::Node;
use crate::state;
use crate::sync::epoch::{self, Atomic, Guard, Owned, Shared};
use crate::sync::{AtomicU32, AtomicUsize, AtomicWaker, Ordering};
use refs::{GARBAGE, GARBAGE_CAP, GARBAGE_ONE, LINKED, TIMER};

/// Tag on an entry's `next`: the entry is logically deleted.
const DELETED: usize = 1;
/// Tag on a link: the list it belongs to is closed (invariant 1).
const DETACHED: usize = 2;

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
        if let Some(c) = live_kind(&kind) {
            live::add(c, 1);
        }
        live::add(live::Counter::Entries, 1);
        let linked = if owner.is_null() { 0 } else { LINKED };
        // A node whose timer is set (before it is allocated: `node.rs`) starts with TIMER.
        let timer = match &kind {
            Kind::Node(n) if !n.timer.is_null() => TIMER,
            _ => 0,
        };
        let entry = Entry {
            next: Atomic::null(),
            refs: AtomicUsize::new(count | linked | timer),
            owner,
            kind,
        };
        // The memory of an entry this thread freed, if any (`list/pool.rs`).
        #[cfg(not(loom))]
        if let Some(p) = pool::take() {
            // SAFETY: dead memory of `Entry`'s layout, ours alone (pool.rs invariant 1).
            unsafe { p.write(entry) };
            return p;
        }
        Owned::new(entry)
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
}

/// The counter an entry's kind moves while it is alive (see `live.rs`).
pub(super) fn live_kind(kind: &Kind) -> Option<live::Counter> {
    match kind {
        Kind::Node(_) => Some(live::Counter::Contexts),
        Kind::Waiter(_) => Some(live::Counter::Waiters),
        // Callbacks count as live until claimed (`callback.rs`), not until freed.
        Kind::Callback(_) => None,
    }
}

/// Marks allowed past half the last sweep's live count before a sweep is due. One under
/// loom, so the models' few entries reach both paths: a lone mark waits for the list's
/// close or its node's finalization, a second mark sweeps.
const SWEEP_SLACK: u32 = if cfg!(loom) { 1 } else { 8 };

/// The bookkeeping that schedules sweeps of a node's list, besides the marks counted in
/// its `refs` (GARBAGE). The list's head is the node's state word (`state.rs`): a live word
/// is the address of the first entry.
#[derive(Debug)]
pub(crate) struct Listeners {
    /// Live entries the last sweep kept (capped at `u32::MAX`: it only schedules sweeps).
    kept: AtomicU32,
}

impl Listeners {
    /// No marks yet.
    pub(crate) fn new() -> Self {
        Listeners {
            kept: AtomicU32::new(0),
        }
    }

    /// True if a list whose GARBAGE bits read `refs` is due for a sweep: past half the
    /// last sweep's live count plus the slack, or past the cap of the GARBAGE bits (a list
    /// of more than about 16 million live entries is swept every 8 million marks, not
    /// every `kept / 2`).
    #[inline]
    pub(crate) fn sweep_due(&self, refs: usize) -> bool {
        let marks = (refs & GARBAGE) / GARBAGE_ONE;
        let due = (self.kept.load(Ordering::Relaxed) / 2 + SWEEP_SLACK) as usize;
        marks > due.min(GARBAGE_CAP)
    }
}

/// What [`Node::mark`] found on the entry's link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Marked {
    /// This call marked it: the caller counts the mark in the owner's GARBAGE bits.
    Now,
    /// A closer had walked past it (DETACHED): for a waiter, the caller owns its LINKED.
    Walked,
    /// It was marked before.
    Before,
}

/// Counts one mark in `owner`'s list, and sweeps the list if that makes a sweep due.
///
/// # Safety
///
/// The caller holds a count on the live node entry `owner`, kept through the call
/// (invariant 6). It pins only if it sweeps.
pub(crate) unsafe fn count_mark(owner: *const Entry) {
    // SAFETY: the caller's count keeps `owner` alive.
    let o = unsafe { &*owner };
    // Relaxed: it only schedules a sweep; an RMW keeps the count's release sequence.
    let prev = o.refs.fetch_add(GARBAGE_ONE, Ordering::Relaxed);
    let node = o.node();
    if node.listeners.sweep_due(prev + GARBAGE_ONE) {
        o.refs.fetch_and(!GARBAGE, Ordering::Relaxed);
        // SAFETY: forwarded from our caller; pinned for the sweep.
        unsafe { node.sweep(&epoch::pin()) };
    }
}

/// The first entry a live head word points to (null for an empty list).
#[inline]
fn entry_of<'g>(word: usize) -> Shared<'g, Entry> {
    Shared::from(word as *const Entry)
}

/// A link an unlinking CAS can rewrite: the head (the node's state word) or an entry's
/// `next`.
enum Pred<'a> {
    Head(&'a AtomicUsize),
    Link(&'a Atomic<Entry>),
}

impl Pred<'_> {
    /// CAS from `cur` to `new` (both untagged). `Err(true)`: the list was closed meanwhile
    /// (DONE on the head, DETACHED on a link); `Err(false)`: it changed otherwise.
    fn unlink(
        &self,
        cur: Shared<'_, Entry>,
        new: Shared<'_, Entry>,
        guard: &Guard,
    ) -> Result<(), bool> {
        match self {
            Pred::Head(h) => h
                .compare_exchange(
                    cur.as_raw() as usize,
                    new.as_raw() as usize,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .map(|_| ())
                .map_err(|w| !state::is_open(w)),
            Pred::Link(l) => l
                .compare_exchange(cur, new, Ordering::AcqRel, Ordering::Acquire, guard)
                .map(|_| ())
                .map_err(|e| e.current.tag() & DETACHED != 0),
        }
    }
}

impl Node {
    /// Pushes `e` at the head of this node's list. If the list is closed (the node is done
    /// or never-done), leaves `e` unlinked and returns the word that closed it.
    ///
    /// # Safety
    ///
    /// `e` is a live entry whose `owner` is this node, not in any list yet.
    pub(crate) unsafe fn push(&self, e: *const Entry) -> Result<(), usize> {
        // SAFETY: the caller guarantees `e` is live.
        let entry = unsafe { &*e };
        let head = self.state.head();
        // Acquire (here and on CAS failure): a push that reads DONE synchronizes with the
        // cancel's CAS, so the caller then sees the owner's reason and cause (loom model
        // m01 found the Relaxed version of this).
        let mut word = head.load(Ordering::Acquire);
        loop {
            if !state::is_open(word) {
                return Err(word);
            }
            entry.next.store(entry_of(word), Ordering::Relaxed);
            // Release: publishes the entry's fields with it (see "Orderings").
            match head.compare_exchange(word, e as usize, Ordering::Release, Ordering::Acquire) {
                Ok(_) => return Ok(()),
                Err(now) => word = now,
            }
        }
    }

    /// Marks `e` deleted (see "Algorithm"). Does nothing if `e` was already marked or the
    /// list closed (the closer then owns it). A mark made [`Marked::Now`] must be counted
    /// in the owner's GARBAGE bits ([`count_mark`], or a child's last release: `refs.rs`),
    /// which is what schedules sweeps.
    ///
    /// # Safety
    ///
    /// `e` is a live entry of this node's list (the caller holds a count on it, or its
    /// pending count), and the caller holds a count on this node (invariant 6). No pin is
    /// needed: the mark reads no entry but `e`, whose memory that count keeps.
    pub(crate) unsafe fn mark(&self, e: *const Entry) -> Marked {
        // SAFETY: the caller guarantees `e` is live.
        let entry = unsafe { &*e };
        // SAFETY: the unprotected guard only types the returned link, which is compared by
        // its tag and never dereferenced.
        let unprotected = unsafe { epoch::unprotected() };
        let old = entry.next.fetch_or(DELETED, Ordering::AcqRel, unprotected);
        if old.tag() & DETACHED != 0 {
            Marked::Walked
        } else if old.tag() != 0 {
            Marked::Before
        } else {
            Marked::Now
        }
    }

    /// Unlinks every run of marked entries (see "Algorithm") and finalizes what it frees.
    /// The caller has reset the GARBAGE bits.
    ///
    /// # Safety
    ///
    /// The caller holds a count on this node (invariant 6) and is pinned with `guard`.
    pub(crate) unsafe fn sweep(&self, guard: &Guard) {
        let l = &self.listeners;
        'retry: loop {
            let mut kept = 0;
            let head = self.state.head();
            let word = head.load(Ordering::Acquire);
            if !state::is_open(word) {
                return;
            }
            let mut pred = Pred::Head(head);
            let mut cur = entry_of(word);
            loop {
                if cur.is_null() {
                    l.kept.store(kept, Ordering::Relaxed);
                    return;
                }
                // SAFETY: `cur` was reachable from the list while we are pinned, so its
                // memory is not reused before we unpin (see "Reclamation").
                let c = unsafe { cur.deref() };
                let next = c.next.load(Ordering::Acquire, guard);
                if next.tag() & DETACHED != 0 {
                    return;
                }
                if next.tag() & DELETED == 0 {
                    kept = kept.saturating_add(1u32);
                    pred = Pred::Link(&c.next);
                    cur = next;
                    continue;
                }
                // A run of marked entries starts at `cur`; find its end (invariant 2
                // freezes every link inside the run).
                let mut succ = next.with_tag(0);
                while !succ.is_null() {
                    // SAFETY: reachable through the frozen run while we are pinned.
                    let after = unsafe { succ.deref() }.next.load(Ordering::Acquire, guard);
                    if after.tag() & DETACHED != 0 {
                        return;
                    }
                    if after.tag() & DELETED == 0 {
                        break;
                    }
                    succ = after.with_tag(0);
                }
                match pred.unlink(cur, succ, guard) {
                    Ok(()) => {
                        // We own the LINKED of every entry of the run (invariant 3).
                        let mut x = cur;
                        while x != succ {
                            // SAFETY: `x` is in the run we unlinked; pinned.
                            let after = unsafe { x.deref() }.next.load(Ordering::Acquire, guard);
                            // SAFETY: we own its LINKED; `after` was read first.
                            unsafe { unlink_done(x.as_raw(), guard) };
                            x = after.with_tag(0);
                        }
                        cur = succ;
                    }
                    Err(true) => return,
                    Err(false) => continue 'retry,
                }
            }
        }
    }
}

/// Walks a chain detached by a winning cancel (`State::try_finish`'s `Ok`) or an inert
/// walk (`State::try_never`): `visit` is
/// called once for every entry that was not marked. Every entry's LINKED is given up after
/// its visit, except for node entries for which `visit` returns true: the caller takes over
/// their LINKED and gives it up later with [`unlink_done`]; and waiters, whose LINKED goes
/// to the future or thread waiting on them (invariant 3).
///
/// Returns false if the chain was empty (then nothing was pinned).
pub(crate) fn walk_chain(first: usize, mut visit: impl FnMut(&Entry) -> bool) -> bool {
    if first == 0 {
        return false;
    }
    // Pinned before the first link is frozen: a waiter's owner may finalize its entry as
    // soon as it sees that link DETACHED (invariant 3), and the epoch keeps the memory of
    // an entry retired after our pin until we unpin.
    let guard = &epoch::pin();
    let mut cur = entry_of(first);
    while !cur.is_null() {
        // SAFETY: `cur` is in our detached chain with LINKED still set (invariant 3), so it
        // is not finalized (invariant 4).
        let e = unsafe { cur.deref() };
        let waiter = matches!(e.kind, Kind::Waiter(_));
        // AcqRel: reads the successor and freezes the link (invariant 1); Release, so a
        // waiter's owner that reads DETACHED in its mark sees everything before it.
        let next = e.next.fetch_or(DETACHED, Ordering::AcqRel, guard);
        let keep = if next.tag() & DELETED != 0 {
            false
        } else {
            // A waiter's LINKED is its owner's from the `fetch_or` on: the owner's mark
            // comes after it and finds DETACHED. So `e` may be finalized during the visit
            // (its memory stays: we are pinned), and nothing here touches it afterwards.
            let kept = visit(e);
            waiter || kept
        };
        if !keep {
            // SAFETY: we walked `e` and own its LINKED (invariant 3); `next` was read.
            unsafe { unlink_done(cur.as_raw(), guard) };
        }
        cur = next.with_tag(0);
    }
    true
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

    fn count_walk(node: &Node) -> usize {
        let mut n = 0;
        let word = state::done_word(crate::Error::Canceled, None);
        let chain = node.state.try_finish(word).expect("live");
        walk_chain(chain, |_| {
            n += 1;
            false
        });
        n
    }

    #[test]
    fn push_then_walk_visits_every_entry() {
        let owner = node_entry();
        // SAFETY: owner is live for the whole test.
        let list = unsafe { (*owner).node() };
        let ws: Vec<_> = (0..5).map(|_| waiter(owner)).collect();
        for &w in &ws {
            // SAFETY: fresh entry owned by `owner`.
            assert!(unsafe { list.push(w) }.is_ok());
        }
        assert_eq!(count_walk(list), 5);
        for w in ws {
            // SAFETY: we hold the one count; LINKED was given up by the walk.
            unsafe { release(w) };
        }
        let late = waiter(owner);
        // SAFETY: fresh entry; the list is closed so it stays ours.
        assert!(unsafe { list.push(late) }.is_err());
        // SAFETY: never published.
        unsafe {
            unlink_unpushed(late);
            release(late);
            release(owner);
        }
    }

    #[test]
    fn removed_entries_are_not_visited() {
        let owner = node_entry();
        // SAFETY: owner is live for the whole test.
        let list = unsafe { (*owner).node() };
        let ws: Vec<_> = (0..6).map(|_| waiter(owner)).collect();
        for &w in &ws {
            // SAFETY: fresh entry owned by `owner`.
            assert!(unsafe { list.push(w) }.is_ok());
        }
        // Drop every other waiter: its only count goes, so it is marked in the list.
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

#[cfg(all(test, not(loom)))]
mod sweep_tests {
    use super::*;

    fn list_len(node: &Node) -> usize {
        let guard = &epoch::pin();
        let mut n = 0;
        let mut cur = entry_of(node.state.head().load(Ordering::Acquire));
        while !cur.with_tag(0).is_null() {
            n += 1;
            // SAFETY: pinned, single-threaded test.
            cur = unsafe { cur.deref() }.next.load(Ordering::Acquire, guard);
        }
        n
    }

    /// Children leave through their last release, which counts the mark in the CAS that
    /// gives back their count on the parent (the GARBAGE bits): sweeps keep the dead ones
    /// bounded as for waiters.
    #[test]
    fn children_leaving_oldest_first_stay_bounded() {
        let (parent, _handle) = crate::Context::background().with_cancel();
        let node = parent.node_ref().expect("cancellable").node();
        let (live_n, rounds) = (1000, 100_000);
        let mut live: std::collections::VecDeque<_> =
            (0..live_n).map(|_| parent.with_cancel()).collect();
        let mut longest = 0;
        for i in 0..rounds {
            live.push_back(parent.with_cancel());
            drop(live.pop_front());
            if i % 100 == 0 {
                longest = longest.max(list_len(node));
            }
        }
        assert!(
            longest <= live_n + live_n / 2 + 2 * SWEEP_SLACK as usize + 2,
            "{longest} entries in the list of {live_n} live children"
        );
        assert!(
            longest > live_n,
            "the list held only the live children: no mark counted"
        );
    }

    #[test]
    fn oldest_first_removal_stays_bounded() {
        let owner = Entry::alloc(Kind::Node(Node::root_child(None)), 1, std::ptr::null());
        // SAFETY: owner is live for the whole test.
        let list = unsafe { (*owner).node() };
        let mut live = std::collections::VecDeque::new();
        let (live_n, rounds) = if cfg!(miri) {
            (50, 500)
        } else {
            (1000, 100_000)
        };
        for _ in 0..live_n {
            let w = Entry::alloc(Kind::Waiter(AtomicWaker::new()), 1, owner);
            // SAFETY: fresh entry owned by `owner`.
            assert!(unsafe { list.push(w) }.is_ok());
            live.push_back(w);
        }
        for i in 0..rounds {
            let w = Entry::alloc(Kind::Waiter(AtomicWaker::new()), 1, owner);
            // SAFETY: fresh entry owned by `owner`.
            assert!(unsafe { list.push(w) }.is_ok());
            live.push_back(w);
            // SAFETY: we hold its one count.
            unsafe { release(live.pop_front().unwrap()) };
            assert!(i % 100 != 0 || list_len(list) <= 2 * live_n + 2 * SWEEP_SLACK as usize + 2);
        }
        for w in live {
            // SAFETY: we hold its one count.
            unsafe { release(w) };
        }
        // SAFETY: last count of the owner.
        unsafe { release(owner) };
    }
}

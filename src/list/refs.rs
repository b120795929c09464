//! The claims on a list entry, and what happens when the last one goes.
//!
//! `refs` packs every claim on an entry into one word (see `list.rs` invariants 3-5, 7):
//!
//! ```text
//!  bit(s)   name     held by
//!  63       LINKED   the list, or the detached chain, that can still reach the entry
//!  62       TIMER    a node's armed timer: the driver may still cancel the node
//!  38..62   GARBAGE  not a claim: marks in this node's own list since its last sweep
//!                    (`list.rs`, "Algorithm"); ignored when deciding who finalizes
//!  0..38    count    counted references: `Context` clones, the `CancelHandle`, linked live
//!                    children, pending callbacks, a waiting future or thread
//! ```
//!
//! GARBAGE shares the word with the count so that a child leaving its parent counts its
//! mark in the CAS that gives back its count on the parent: one locked instruction where
//! a separate counter cost two. (On 32-bit targets GARBAGE is bits 22..30 and the count
//! bits 0..22.)
//!
//! The entry is finalized by whichever thread makes the claims (every bit but GARBAGE)
//! zero (invariant 4).
//!
//! # Releasing the last count
//!
//! A count is only ever cloned from a live one, so a holder that reads a count of 1 is the
//! last one and nobody can raise it again (invariant 4). [`release`] therefore decrements
//! with a CAS that never takes the count from 1 to 0. The last holder, still holding its
//! count (so the entry is certainly alive), first does what leaving needs:
//!
//! - a node disarms its timer if it is still armed (a deadline alone keeps nothing:
//!   behaviour 14), and the TIMER claim becomes its own to give up;
//! - a node or a waiter marks itself in its owner's list (`Node::mark`).
//!
//! Only then does it give up its count (and TIMER) with one `fetch_sub`. Whoever still
//! holds LINKED or TIMER finalizes later. Marking *before* the last decrement is what makes
//! leaving safe: a closer or a sweeper that unlinks the entry meanwhile sees our count and
//! leaves the finalization to us. (Decrementing first, as an earlier version did, let them
//! finalize the entry between our decrement and our mark.)
//!
//! # Pinning
//!
//! [`release`] pins the epoch only for a step that reads entries it holds no claim on (a
//! sweep) or hands memory to the epoch (a finalization), once for all its turns. The rest
//! of a release reads and writes the entry itself, which our count keeps, and its owner,
//! which the entry's count on it keeps (invariant 5): a child leaving a parent that needs
//! no sweep (eight departures in nine) pins nothing. That spares the pin's locked
//! instruction; since crossbeam collects garbage every 128 pins, the grave flushes the
//! epoch itself, by the amount of garbage (`list/grave.rs`).
//!
//! # Orderings
//!
//! - Increments are Relaxed (cloned from a live count, like `Arc`).
//! - A decrement that is not the last is a Release CAS: our accesses happen before the
//!   finalizer's, whose AcqRel RMW reads the end of the release sequence.
//! - The last holder's `fetch_sub`, and every `fetch_and` that gives up LINKED or TIMER,
//!   is AcqRel: Release for the same reason; Acquire for the thread that finalizes.

use super::{grave, live_kind, Entry, Kind, Marked};
use crate::list;
use crate::live;
use crate::sync::epoch::{self, Guard, Owned};
use crate::sync::Ordering;
use crate::timer;

/// Top bit of `refs`: the entry is linked (invariant 3).
pub(super) const LINKED: usize = 1 << (usize::BITS - 1);
/// Second bit of `refs`: a node's timer is armed, and its driver may still cancel it
/// (invariant 7).
pub(super) const TIMER: usize = 1 << (usize::BITS - 2);
/// Width of the GARBAGE field.
const GARBAGE_BITS: u32 = if usize::BITS >= 64 { 24 } else { 8 };
/// One mark in the GARBAGE field of `refs`.
pub(super) const GARBAGE_ONE: usize = 1 << (usize::BITS - 2 - GARBAGE_BITS);
/// The GARBAGE field of `refs`: marks in the node's list since its last sweep.
pub(super) const GARBAGE: usize = ((1 << GARBAGE_BITS) - 1) * GARBAGE_ONE;
/// Marks after which a sweep is due whatever the list's length: half the field, so that
/// marks counted by threads racing past the threshold cannot overflow it.
pub(super) const GARBAGE_CAP: usize = 1 << (GARBAGE_BITS - 1);
/// The claims of `refs`: all but GARBAGE. An entry whose claims are zero is finalized.
const CLAIMS: usize = !GARBAGE;
/// The count part of `refs`.
pub(super) const COUNT: usize = !(LINKED | TIMER | GARBAGE);
/// Counts beyond this are a leak of `mem::forget`ed handles; abort like `Arc` does.
const MAX_COUNT: usize = COUNT >> 1;

impl Entry {
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

    /// True while some counted reference exists. Once false, it stays false (invariant 4).
    #[inline]
    pub(crate) fn has_holders(&self) -> bool {
        self.refs.load(Ordering::Relaxed) & COUNT != 0
    }

    /// Gives up one count unless it is the last, counting one mark in this node's list if
    /// `marked` (a child of it that marked itself: `list.rs`).
    ///
    /// - `Released`: the count is given up (and the mark counted).
    /// - `Sweep`: the mark made a sweep due; the GARBAGE bits are reset and the caller
    ///   still holds its count: it sweeps, then gives the count up.
    /// - `Last(word)`: the caller holds the last count (still held), `word` as read. A mark
    ///   is not counted: the node is leaving, and its finalization frees its whole list.
    #[inline]
    fn release_unless_last(&self, marked: bool) -> Release {
        let mut cur = self.refs.load(Ordering::Relaxed);
        loop {
            debug_assert!(cur & COUNT != 0, "entry count released below zero");
            if cur & COUNT == 1 {
                return Release::Last(cur);
            }
            let sweep = marked && self.node().listeners.sweep_due(cur + GARBAGE_ONE);
            let new = match (marked, sweep) {
                (false, _) => cur - 1,
                (true, false) => cur - 1 + GARBAGE_ONE,
                (true, true) => cur & !GARBAGE,
            };
            // Release: see "Orderings".
            match self
                .refs
                .compare_exchange_weak(cur, new, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) if sweep => return Release::Sweep,
                Ok(_) => return Release::Released,
                Err(now) => cur = now,
            }
        }
    }

    /// Gives up the TIMER claim; the driver does this, once, after firing (invariant 7).
    /// Returns true if the entry is now unclaimed: the caller must finalize it.
    pub(crate) fn give_up_timer(&self) -> bool {
        // AcqRel: see "Orderings".
        let prev = self.refs.fetch_and(!TIMER, Ordering::AcqRel);
        debug_assert!(prev & TIMER != 0, "TIMER given up twice");
        prev & CLAIMS == TIMER
    }
}

/// What [`Entry::release_unless_last`] did.
enum Release {
    Released,
    Sweep,
    Last(usize),
}

/// Frees an entry that was allocated but never published to any list or other thread.
///
/// # Safety
///
/// `e` came from [`Entry::alloc`], and no other thread has ever seen it; a callback in it
/// has been claimed.
pub(crate) unsafe fn free_unpublished(e: *const Entry) {
    // SAFETY: per the contract nobody else can reach `e`; `alloc` built it with `Owned`.
    let owned = unsafe { Owned::from_raw(e as *mut Entry) };
    if let Some(c) = live_kind(&owned.kind) {
        live::add(c, -1);
    }
    live::add(live::Counter::Entries, -1);
    drop(owned);
}

/// Releases one counted reference to `e`, and then, iteratively, what that releases (a
/// node's last count gives back its count on its owner: invariant 5).
///
/// # Safety
///
/// The caller owns one counted reference to the live entry `e` and gives it up.
pub(crate) unsafe fn release(e: *const Entry) {
    // The entry to release, and whether a child of it marked itself in its list (then
    // counted with the release: see the module docs).
    let mut next = Some((e, false));
    let mut guard: Option<Guard> = None;
    while let Some((e, marked)) = next.take() {
        // SAFETY: we hold a counted reference, so `e` is live.
        let entry = unsafe { &*e };
        let word = match entry.release_unless_last(marked) {
            Release::Released => return,
            Release::Sweep => {
                let g = guard.get_or_insert_with(epoch::pin);
                // SAFETY: we still hold our count on the node `e` (a mark is counted only
                // for an owner, a node), and we are pinned.
                unsafe { entry.node().sweep(g) };
                next = Some((e, false));
                continue;
            }
            Release::Last(word) => word,
        };
        // The last count is ours: `e` stays alive until the `fetch_sub` below.
        if let Some(c) = live_kind(&entry.kind) {
            live::add(c, -1);
        }
        let mut give_up = 1;
        let mark = match &entry.kind {
            Kind::Node(node) => {
                // Behaviour 14: nothing can observe this node any more, so its deadline
                // keeps nothing. A timer that we or a canceller stopped leaves TIMER to us
                // (invariant 7): it goes with our count, in the one `fetch_sub` below.
                if timer::disarm_last(node.timer) {
                    give_up |= TIMER;
                }
                true
            }
            Kind::Waiter(_) => true,
            // A callback's last count goes only after its claim, and its claimer has seen
            // to the list: `stop` marked it, or a walk owns its LINKED.
            Kind::Callback(_) => false,
        };
        // LINKED as read: if a closer has cleared it since, the link is DETACHED and the mark
        // does nothing (a sweeper clears it only after a mark, and the owner's finalizer
        // only once the owner is dead, which our count on it, or our waiter's, prevents).
        // A closer never clears an unmarked waiter's LINKED: it hands it to us.
        let marked = if mark && word & LINKED != 0 {
            // `e` is alive (our count) and sits in its owner's list or a detached chain (a
            // mark there finds DETACHED and does nothing). The owner is alive: a node holds
            // a count on it until this loop's next turn, a waiter's future or thread holds
            // a `Context` of it (invariant 5).
            // SAFETY: as just said, both are alive (the owner by invariant 5).
            unsafe { (*entry.owner).node().mark(e) }
        } else {
            Marked::Before
        };
        match &entry.kind {
            // The mark is counted when our count on the owner goes, next turn.
            Kind::Node(_) if !entry.owner.is_null() => {
                next = Some((entry.owner, marked == Marked::Now));
            }
            // A waiter holds no count on its owner (its future's `Context` does, and
            // keeps it through this call): the mark is counted on its own.
            // SAFETY: the owner is alive and holds that count (see above).
            Kind::Waiter(_) if marked == Marked::Now => unsafe { list::count_mark(entry.owner) },
            // A waiter a closer walked past unmarked: its LINKED is ours (invariant 3).
            Kind::Waiter(_) if marked == Marked::Walked => give_up |= LINKED,
            _ => {}
        }
        // AcqRel: see "Orderings".
        let prev = entry.refs.fetch_sub(give_up, Ordering::AcqRel);
        if prev & CLAIMS == give_up {
            // SAFETY: count, LINKED and TIMER are all zero: LINKED and TIMER were given up
            // before, or with our count. Pinned for the epoch's hand-over.
            unsafe { finalize(e, guard.get_or_insert_with(epoch::pin)) };
        }
    }
}

/// Gives up LINKED for an entry this thread unlinked or walked, finalizing it if no other
/// claim is left.
///
/// # Safety
///
/// The caller owns `e`'s LINKED (invariant 3) and is pinned with `guard`.
pub(crate) unsafe fn unlink_done(e: *const Entry, guard: &Guard) {
    // SAFETY: LINKED is still set, so `e` is live (invariant 4).
    let entry = unsafe { &*e };
    // A word of LINKED alone cannot change but by us: no count can rise from zero and TIMER
    // is never set again (invariant 4), so a plain load settles the common case without a
    // locked instruction.
    let prev = if entry.refs.load(Ordering::Acquire) & CLAIMS == LINKED {
        LINKED
    } else {
        // AcqRel: see "Orderings".
        entry.refs.fetch_and(!LINKED, Ordering::AcqRel)
    };
    debug_assert!(prev & LINKED != 0);
    if prev & CLAIMS == LINKED {
        // SAFETY: every claim is gone, the last one by us.
        unsafe { finalize(e, guard) };
    }
}

/// Hands a dead entry to the epoch. For a node, first closes its list and finalizes the
/// dead entries in it, and theirs, on a worklist (invariant 6).
///
/// # Safety
///
/// Every claim on `e` is gone (`refs` is zero), observed by this thread alone; `guard` is
/// pinned.
pub(crate) unsafe fn finalize(e: *const Entry, guard: &Guard) {
    let mut work: Vec<*const Entry> = Vec::new();
    let mut next = Some(e);
    while let Some(e) = next.take().or_else(|| work.pop()) {
        // SAFETY: not freed before the deferred destroy below runs.
        let entry = unsafe { &*e };
        live::add(live::Counter::Entries, -1);
        if let Kind::Node(node) = &entry.kind {
            node.release_timer();
            // Nobody else touches a dead node's list (invariant 6); a cancelled or inert
            // node's list was detached by its walk and yields nothing here.
            let mut cur = super::entry_of(node.state.take_chain());
            while !cur.is_null() {
                // SAFETY: entries of a dead node's list keep LINKED until we clear it.
                let x = unsafe { cur.deref() };
                let after = x.next.load(Ordering::Acquire, guard);
                // AcqRel: see "Orderings".
                let prev = x.refs.fetch_and(!LINKED, Ordering::AcqRel);
                if prev & CLAIMS == LINKED {
                    if next.is_none() {
                        next = Some(cur.as_raw());
                    } else {
                        work.push(cur.as_raw());
                    }
                }
                cur = after.with_tag(0);
            }
        }
        // SAFETY: nobody can obtain a new reference (invariant 4); threads still holding the
        // pointer are pinned, and the epoch frees the memory only after they unpin.
        unsafe { grave::bury(e, guard) };
    }
}

/// Gives up a linked entry that was never pushed (its owner's list was closed first).
///
/// # Safety
///
/// `e` holds LINKED and a count, and no list or walker can reach it.
pub(crate) unsafe fn unlink_unpushed(e: *const Entry) {
    let guard = &epoch::pin();
    // SAFETY: nobody else can own this LINKED since the entry is in no list.
    unsafe { unlink_done(e, guard) }
}

//! A timer entry: the link between a node with a deadline and the driver.
//!
//! ```text
//!  state     meaning                          moved by
//!  ARMED     waiting for its deadline         (initial)
//!  FIRED     the driver won: it cancels       driver, CAS from ARMED
//!  CANCELLED the node was cancelled first     any canceller, CAS from ARMED
//! ```
//!
//! Counts: two at birth, one for the node (given back when the node is finalized) and one
//! for the driver (given back when the driver fires the entry, when it handles the disarm
//! message, or by a disarmer that unlinks the entry from its shard before the driver took
//! it, `shard.rs`). The timer holds no count on its node, only the node's TIMER claim
//! (`list.rs` invariant 7): so a node whose handle was disarmed and whose contexts are gone
//! dies at once, and its last holder disarms the timer (behaviour 14). The driver, if it
//! wins the CAS, owns TIMER and gives it up after cancelling the node (only if somebody
//! still holds it: nobody else could observe the firing). A disarmer that wins leaves
//! TIMER to the node's last holder, who gives it up with its last count ([`disarm_last`]).
//!
//! Counting the entry's last release: a holder that reads a count of 1 is the last
//! (counts never rise), so a plain Acquire load spares the `fetch_sub` then.
//!
//! Arming (system clock): the entry waits in its thread's shard until the driver sweeps it
//! into the wheel (`shard.rs`). A disarm of a pending entry unlinks it; a disarm of an entry
//! the driver took sends the "disarm" message through the entry's own inbox link, so no
//! message allocates. The driver sees that message only after its sweep took the entry
//! (the disarmer saw it taken, under the shard's lock).

use super::shard::Shard;
use crate::cancel::Panic;
use crate::clock::Queue;
use crate::list::{self, Entry};
use crate::live;
use crate::sync::epoch;
use crate::sync::{AtomicPtr, AtomicU32, AtomicU8, Ordering, UnsafeCell};
use std::sync::Arc;
use std::time::Instant;

pub(crate) const ARMED: u8 = 0;
pub(crate) const FIRED: u8 = 1;
pub(crate) const CANCELLED: u8 = 2;

/// An intrusive inbox link: the next "disarm" message.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) next: AtomicPtr<Link>,
}

/// The driver's bookkeeping, touched by the driver thread only.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub(crate) struct WheelPos {
    pub(crate) tick: u64,
    pub(crate) slot: u32,
    /// Index in the slot's vector, or `u32::MAX` when not in the wheel.
    pub(crate) index: u32,
}

/// An entry's links in its shard's list of pending entries (`shard.rs`).
#[derive(Debug, Clone, Copy)]
#[repr(C)]
struct Pending {
    next: *const TimerEntry,
    prev: *const TimerEntry,
}

/// `pos` holds the shard list's links while the entry is pending, and the wheel's
/// bookkeeping once the driver took it (`shard.rs` invariants 1 and 2): never both.
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) union Spot {
    wheel: WheelPos,
    pending: Pending,
}

impl std::fmt::Debug for Spot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Spot")
    }
}

/// A deadline timer of one node.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct TimerEntry {
    state: AtomicU8,
    /// The entry's place in its shard (`shard::PENDING` or `shard::TAKEN`, 0 before it is
    /// linked), under the shard's lock (`shard.rs` invariant 1).
    place: UnsafeCell<u8>,
    /// At most 2 (module docs, "Counts"); 32 bits keep the entry at 72 bytes.
    refs: AtomicU32,
    node: *const Entry,
    pub(crate) deadline: Instant,
    /// The shard the entry was armed in (system clock), null for a queue's entry or before
    /// arming. Set before the entry is published, never changed.
    pub(crate) shard: *const Shard,
    pub(crate) disarm_link: Link,
    /// Who fires the entry: the process's timer driver (`None`, the system clock), or the
    /// queue of a manual or tokio clock (`clock/queue.rs`). Set at birth, never changed.
    pub(crate) queue: Option<Arc<Queue>>,
    /// Bookkeeping of whoever fires the entry: the shard list's links while pending, then
    /// the driver thread's wheel position; or the queue's key (`tick` holds its sequence
    /// number, read and written under its lock).
    pos: UnsafeCell<Spot>,
}

/// `pos` of an entry that is in no wheel slot.
pub(crate) const NOT_IN_WHEEL: WheelPos = WheelPos {
    tick: 0,
    slot: 0,
    index: u32::MAX,
};

// The memory target of a child with a deadline (node entry plus timer entry) is 160 bytes.
#[cfg(all(target_os = "linux", target_pointer_width = "64", not(loom)))]
const _: () = assert!(std::mem::size_of::<TimerEntry>() == 72);

/// Entries allocated and not yet freed, under loom (a model checks that every entry is freed
/// exactly once: `crate::__loom::timer_entries`).
#[cfg(loom)]
pub(crate) static LOOM_ENTRIES: std::sync::atomic::AtomicIsize =
    std::sync::atomic::AtomicIsize::new(0);

impl TimerEntry {
    /// A fresh, unarmed entry for `deadline`, fired by `queue` (`None`: the timer driver).
    pub(crate) fn new(deadline: Instant, queue: Option<Arc<Queue>>) -> *const TimerEntry {
        live::add(live::Counter::Timers, 1);
        #[cfg(loom)]
        LOOM_ENTRIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let link = || Link {
            next: AtomicPtr::new(std::ptr::null_mut()),
        };
        let entry = TimerEntry {
            state: AtomicU8::new(ARMED),
            place: UnsafeCell::new(0),
            refs: AtomicU32::new(2),
            node: std::ptr::null(),
            deadline,
            shard: std::ptr::null(),
            disarm_link: link(),
            queue,
            pos: UnsafeCell::new(Spot {
                wheel: NOT_IN_WHEEL,
            }),
        };
        // The memory of an entry the driver released, if any (`recycle.rs`).
        #[cfg(not(loom))]
        if let Some(p) = super::recycle::take() {
            // SAFETY: dead memory with `TimerEntry`'s layout, ours alone (recycle.rs
            // invariant 1).
            unsafe { p.write(entry) };
            return p;
        }
        Box::into_raw(Box::new(entry))
    }

    pub(crate) fn set_node(&mut self, node: *const Entry) {
        self.node = node;
    }

    pub(crate) fn set_shard(&mut self, shard: *const Shard) {
        self.shard = shard;
    }

    /// The entry a "disarm" link belongs to.
    ///
    /// # Safety
    ///
    /// `link` is the `disarm_link` of a live entry.
    pub(crate) unsafe fn from_link(link: *const Link) -> *const TimerEntry {
        let offset = std::mem::offset_of!(TimerEntry, disarm_link);
        (link as *const u8).wrapping_sub(offset) as *const TimerEntry
    }

    /// The driver's bookkeeping.
    ///
    /// # Safety
    ///
    /// Driver thread only, on an entry the driver took from its shard or reset with
    /// [`set_pos`](TimerEntry::set_pos) (the only thread that touches `pos` then), or, for
    /// an entry of a queue, with that queue's lock held.
    pub(crate) unsafe fn pos(&self) -> WheelPos {
        // SAFETY: per the contract, no other thread accesses the cell, and it holds the
        // wheel's bookkeeping (written by `new` or `set_pos`).
        self.pos.with_mut(|p| unsafe { (*p).wheel })
    }

    /// Updates the driver's bookkeeping.
    ///
    /// # Safety
    ///
    /// As for [`pos`](TimerEntry::pos), or on an entry the driver has just taken from its
    /// shard (`shard.rs` invariant 2).
    pub(crate) unsafe fn set_pos(&self, pos: WheelPos) {
        // SAFETY: per the contract, no other thread accesses the cell.
        self.pos.with_mut(|p| unsafe { *p = Spot { wheel: pos } });
    }

    /// The entry's place in its shard.
    ///
    /// # Safety
    ///
    /// The lock of the entry's shard is held.
    pub(crate) unsafe fn place(&self) -> u8 {
        // SAFETY: per the contract (`shard.rs` invariant 1).
        self.place.with_mut(|p| unsafe { *p })
    }

    /// Sets the entry's place in its shard.
    ///
    /// # Safety
    ///
    /// As for [`place`](TimerEntry::place).
    pub(crate) unsafe fn set_place(&self, place: u8) {
        // SAFETY: per the contract (`shard.rs` invariant 1).
        self.place.with_mut(|p| unsafe { *p = place });
    }

    /// The shard list's links: next (older) and previous (newer) pending entries.
    ///
    /// # Safety
    ///
    /// The lock of the entry's shard is held and the entry is pending.
    pub(crate) unsafe fn links(&self) -> (*const TimerEntry, *const TimerEntry) {
        // SAFETY: per the contract the cell holds the list's links (`shard.rs` invariant 1).
        self.pos
            .with_mut(|p| unsafe { ((*p).pending.next, (*p).pending.prev) })
    }

    /// Sets the shard list's links.
    ///
    /// # Safety
    ///
    /// The lock of the entry's shard is held, and the entry is pending or being linked.
    pub(crate) unsafe fn set_links(&self, next: *const TimerEntry, prev: *const TimerEntry) {
        // SAFETY: per the contract (`shard.rs` invariant 1).
        self.pos.with_mut(|p| unsafe {
            *p = Spot {
                pending: Pending { next, prev },
            }
        });
    }

    /// True while neither fired nor cancelled.
    pub(crate) fn is_armed(&self) -> bool {
        self.state.load(Ordering::Acquire) == ARMED
    }

    /// The driver's side of the race: fires if still armed. Returns true if it won the
    /// timer's CAS: it then cancelled the node with `DeadlineExceeded` if anybody still
    /// holds it (unless a cancel won the node's own CAS first, in which case that cancel's
    /// error stands), and gave up the node's TIMER claim, finalizing the node if that was
    /// the last claim.
    ///
    /// # Safety
    ///
    /// The caller holds the driver's count on `self`.
    pub(crate) unsafe fn fire(&self) -> bool {
        // A panicking `after_func` on the timer thread must not kill the driver; the panic
        // hook has already reported it.
        // SAFETY: as for this function.
        unsafe { self.fire_catching() }.0
    }

    /// [`fire`](TimerEntry::fire), handing back the first panic of an `after_func` callback
    /// it ran (a manual clock's `advance` re-raises it once everything due has fired).
    ///
    /// # Safety
    ///
    /// As for [`fire`](TimerEntry::fire).
    pub(crate) unsafe fn fire_catching(&self) -> (bool, Option<Panic>) {
        // AcqRel: Acquire sees the node pointer written before arming; Release orders the
        // cancel after our win for a disarmer that loses.
        if self
            .state
            .compare_exchange(ARMED, FIRED, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return (false, None);
        }
        live::add(live::Counter::Timers, -1);
        // SAFETY: the TIMER claim, ours since the CAS, keeps the node from being finalized
        // (invariant 7 of list.rs).
        let node = unsafe { &*self.node };
        // A node nobody holds can never be observed: firing it would only cost a walk of
        // dead entries (its finalizer frees them). Counts never rise from zero.
        let mut panic = None;
        if node.has_holders() {
            let word = crate::state::done_word(crate::Error::DeadlineExceeded, None);
            panic = crate::cancel::cancel_catching(self.node, word).err();
        }
        if node.give_up_timer() {
            let guard = &epoch::pin();
            // SAFETY: TIMER was the node's last claim and we gave it up; pinned.
            unsafe { list::finalize(self.node, guard) };
        }
        (true, panic)
    }
}

/// The node's last holder's side (`list::release`): stops `t` (null: no timer) if it is
/// still armed, and says whether the node's TIMER claim is the caller's to give up with its
/// last count: true if this call stopped the timer, or a canceller did before (a canceller
/// leaves TIMER to the last holder: `list.rs` invariant 7); false if the timer fired (its
/// firer gives TIMER up) or there is none.
pub(crate) fn disarm_last(t: *const TimerEntry) -> bool {
    if disarm(t) {
        return true;
    }
    // SAFETY: the caller holds the node's last count, and the node a count on `t`.
    // `disarm` saw the state settled (CANCELLED and FIRED are final), so this load reads
    // the same final value (coherence).
    !t.is_null() && unsafe { &*t }.state.load(Ordering::Acquire) == CANCELLED
}

/// The canceller's (or the last holder's) side: stops `t` (null: no timer) if it has not
/// fired yet, and takes it away from whoever would fire it. Returns true if this call
/// stopped it. The node's TIMER claim then stays set, and the node's last holder gives it
/// up ([`disarm_last`]).
pub(crate) fn disarm(t: *const TimerEntry) -> bool {
    if t.is_null() {
        return false;
    }
    // SAFETY: the node holding `t` is alive (the caller holds a claim on it), and it holds
    // a count on `t`.
    let entry = unsafe { &*t };
    // A settled timer stays settled: a plain load spares the locked instruction a failing
    // CAS costs (the last holder of a cancelled node asks again).
    if entry.state.load(Ordering::Relaxed) != ARMED {
        return false;
    }
    // SAFETY: a non-null shard is the one `t` was armed in; shards are never freed
    // (`shard.rs` invariant 5); `t` is live.
    if !entry.shard.is_null() && unsafe { (*entry.shard).unlink(t, || entry.cancel_pending()) } {
        live::add(live::Counter::Timers, -1);
        // The count the shard held for the driver is ours, and the node's is the only
        // other (module docs, "Counts"), so the count is 2 and nobody else changes it
        // before the node gives its own back, after our claim on the node is released:
        // a store gives ours back without a locked instruction.
        debug_assert_eq!(entry.refs.load(Ordering::Relaxed), 2);
        entry.refs.store(1, Ordering::Relaxed);
        return true;
    }
    // AcqRel: against `fire`'s CAS; the winner's accesses to the node come after.
    if entry
        .state
        .compare_exchange(ARMED, CANCELLED, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return false;
    }
    live::add(live::Counter::Timers, -1);
    match &entry.queue {
        // SAFETY: we won the CAS: the entry is ours to withdraw, and it is live.
        Some(q) => unsafe { q.withdraw(t) },
        // The driver took it from its shard (or, under loom, the model holds its count):
        // the driver drops it when it reads the message.
        #[cfg(not(loom))]
        None => super::driver::submit_disarm(t),
        #[cfg(loom)]
        None => {}
    }
    true
}

impl TimerEntry {
    /// Cancels a pending entry (`shard.rs` invariant 6): called under its shard's lock,
    /// with the entry found pending and unlinked.
    fn cancel_pending(&self) {
        // Relaxed: only disarmers touch the state of a pending entry, and they are ordered
        // by the shard's lock.
        self.state.store(CANCELLED, Ordering::Relaxed);
    }
}

/// Gives back one count on `t`, freeing it at zero.
///
/// # Safety
///
/// The caller owns one count on the live entry `t`.
pub(crate) unsafe fn release(t: *const TimerEntry) {
    // SAFETY: as for this function.
    if unsafe { release_is_last(t) } {
        // SAFETY: the count reached zero: nobody holds `t`; `t` came from `new`; given once.
        #[cfg(not(loom))]
        unsafe {
            super::recycle::give_local(t)
        };
        // SAFETY: the count reached zero; `t` came from `Box::into_raw` in `new`, or from
        // memory of the same layout (`recycle.rs`).
        #[cfg(loom)]
        {
            LOOM_ENTRIES.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            // SAFETY: as above.
            drop(unsafe { Box::from_raw(t as *mut TimerEntry) });
        }
    }
}

/// The driver's [`release`]: at zero the entry's memory goes to `returns` for reuse.
///
/// # Safety
///
/// As for [`release`]; driver thread only.
#[cfg(not(loom))]
pub(crate) unsafe fn release_to(t: *const TimerEntry, returns: &mut super::recycle::Returns) {
    // SAFETY: as for this function.
    if unsafe { release_is_last(t) } {
        // SAFETY: the count reached zero: nobody holds `t`; given once.
        unsafe { returns.give(t) };
    }
}

/// Gives back one count on `t`; true if it was the last (the caller then disposes of it).
///
/// # Safety
///
/// As for [`release`].
unsafe fn release_is_last(t: *const TimerEntry) -> bool {
    // SAFETY: our count keeps `t` alive.
    let entry = unsafe { &*t };
    // A count of 1 is ours alone, and nobody can change it: counts never rise (two at
    // birth, then only given back). So a plain load settles the common case (the node's
    // finalizer after a disarm that gave the shard's count back) without a locked
    // instruction. Acquire: it reads the other holder's Release give-back (the driver's
    // `fetch_sub`, or the disarmer's store, ordered before us by the node's own claims),
    // so its uses happen before the free, as with the `fetch_sub` below.
    if entry.refs.load(Ordering::Acquire) == 1 {
        return true;
    }
    // Release/Acquire as in `Arc`: all uses happen before the free.
    let prev = entry.refs.fetch_sub(1, Ordering::Release);
    debug_assert!(prev != 0, "timer count released below zero");
    if prev != 1 {
        return false;
    }
    // Acquire load rather than `fence(Acquire)`: the same synchronization (it reads the
    // last value of the release sequence our `fetch_sub` joined), and ThreadSanitizer,
    // which does not model fences, sees it too (std's `Arc` does this under TSan).
    entry.refs.load(Ordering::Acquire);
    true
}

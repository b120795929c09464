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
//! for the driver (given back when the driver fires the entry, or when it handles the disarm
//! message). The timer holds no count on its node, only the node's TIMER claim (`list.rs`
//! invariant 7): so a node whose handle was disarmed and whose contexts are gone dies at
//! once, and its last holder disarms the timer (behaviour 14). Whoever wins the CAS owns
//! TIMER and gives it up when done with the node: the driver after cancelling it (only if
//! somebody still holds it: nobody else could observe the firing), a disarmer at once.
//!
//! Messages: an entry embeds two inbox links, one for "arm" and one for "disarm", so both
//! messages can be in flight at once with no allocation. "disarm" is only sent by the CAS
//! winner, after the node's "arm" was sent (arming happens before the node is shared), so
//! the driver always sees them in that order.

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

/// Which message a link carries. The inbox carries it in the low bit of the pointer to the
/// link (links are 8-aligned), so a link is one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Arm = 0,
    Disarm = 1,
}

impl Op {
    /// The link pointer tagged with this message.
    pub(crate) fn tag(self, link: *const Link) -> *mut Link {
        (link as *mut Link).map_addr(|a| a | self as usize)
    }

    /// The message of a tagged link pointer, and the link.
    pub(crate) fn untag(tagged: *mut Link) -> (Op, *const Link) {
        let op = if tagged.addr() & 1 == 0 {
            Op::Arm
        } else {
            Op::Disarm
        };
        (op, tagged.map_addr(|a| a & !1) as *const Link)
    }
}

/// An intrusive inbox link: the next message, tagged with its `Op`.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) next: AtomicPtr<Link>,
}

/// The driver's bookkeeping, touched by the driver thread only.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WheelPos {
    pub(crate) tick: u64,
    pub(crate) slot: u32,
    /// Index in the slot's vector, or `u32::MAX` when not in the wheel.
    pub(crate) index: u32,
}

/// A deadline timer of one node.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct TimerEntry {
    state: AtomicU8,
    /// At most 2 (module docs, "Counts"); 32 bits keep the entry at 72 bytes.
    refs: AtomicU32,
    node: *const Entry,
    pub(crate) deadline: Instant,
    pub(crate) arm_link: Link,
    pub(crate) disarm_link: Link,
    /// Who fires the entry: the process's timer driver (`None`, the system clock), or the
    /// queue of a manual or tokio clock (`clock/queue.rs`). Set at birth, never changed.
    pub(crate) queue: Option<Arc<Queue>>,
    /// Bookkeeping of whoever fires the entry: the driver thread's wheel position, or the
    /// queue's key (`tick` holds its sequence number, read and written under its lock).
    pub(crate) pos: UnsafeCell<WheelPos>,
}

// The memory target of a child with a deadline (node entry plus timer entry) is 160 bytes.
#[cfg(all(target_os = "linux", target_pointer_width = "64", not(loom)))]
const _: () = assert!(std::mem::size_of::<TimerEntry>() == 72);

impl TimerEntry {
    /// A fresh, unarmed entry for `deadline`, fired by `queue` (`None`: the timer driver).
    pub(crate) fn new(deadline: Instant, queue: Option<Arc<Queue>>) -> *const TimerEntry {
        live::add(live::Counter::Timers, 1);
        let link = || Link {
            next: AtomicPtr::new(std::ptr::null_mut()),
        };
        let entry = TimerEntry {
            state: AtomicU8::new(ARMED),
            refs: AtomicU32::new(2),
            node: std::ptr::null(),
            deadline,
            arm_link: link(),
            disarm_link: link(),
            queue,
            pos: UnsafeCell::new(WheelPos {
                tick: 0,
                slot: 0,
                index: u32::MAX,
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

    /// The entry a link belongs to.
    ///
    /// # Safety
    ///
    /// `link` is the `arm_link` (`op` is `Arm`) or `disarm_link` (`Disarm`) of a live entry.
    pub(crate) unsafe fn from_link(link: *const Link, op: Op) -> *const TimerEntry {
        let offset = match op {
            Op::Arm => std::mem::offset_of!(TimerEntry, arm_link),
            Op::Disarm => std::mem::offset_of!(TimerEntry, disarm_link),
        };
        (link as *const u8).wrapping_sub(offset) as *const TimerEntry
    }

    /// The driver's bookkeeping.
    ///
    /// # Safety
    ///
    /// Driver thread only (the only thread that touches `pos`), or, for an entry of a
    /// queue, with that queue's lock held.
    pub(crate) unsafe fn pos(&self) -> WheelPos {
        // SAFETY: per the contract, no other thread accesses the cell.
        self.pos.with_mut(|p| unsafe { *p })
    }

    /// Updates the driver's bookkeeping.
    ///
    /// # Safety
    ///
    /// As for [`pos`](TimerEntry::pos).
    pub(crate) unsafe fn set_pos(&self, pos: WheelPos) {
        // SAFETY: per the contract, no other thread accesses the cell.
        self.pos.with_mut(|p| unsafe { *p = pos });
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

/// The canceller's (or the last holder's) side: stops `t` (null: no timer) if it has not
/// fired yet, and tells the driver to drop it. Returns true if this call won the timer's
/// CAS: the caller then owns the node's TIMER claim and must give it up
/// (`Entry::give_up_timer`).
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
        #[cfg(not(loom))]
        None => super::driver::submit_disarm(t),
        // Under loom the model plays the driver and holds its count (`crate::__loom`).
        #[cfg(loom)]
        None => {}
    }
    true
}

/// Gives back one count on `t`, freeing it at zero.
///
/// # Safety
///
/// The caller owns one count on the live entry `t`.
pub(crate) unsafe fn release(t: *const TimerEntry) {
    // SAFETY: as for this function.
    if unsafe { release_is_last(t) } {
        // SAFETY: the count reached zero; `t` came from `Box::into_raw` in `new`, or from
        // memory of the same layout (`recycle.rs`).
        drop(unsafe { Box::from_raw(t as *mut TimerEntry) });
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

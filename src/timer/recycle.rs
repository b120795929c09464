//! Recycling the timer entries the driver thread releases.
//!
//! Most entries of the system clock die on the driver thread: a deadline context made and
//! cancelled (or disarmed) in a loop gives back its node's count at once, and the driver's
//! count last, when it reads the "disarm" message. Freed there, every entry would be a
//! cross-thread `free` racing the arming thread's `malloc` of the next entry on the same
//! allocator arena, and the driver could fall behind a thread that makes deadline contexts
//! in a tight loop (measured: 15 MB of entries waiting, about 36 ms of churn). So the driver
//! hands the memory back instead, and `TimerEntry::new` takes it before asking the
//! allocator.
//!
//! # Algorithm
//!
//! - The driver collects the entries it releases during one turn on a private chain (their
//!   first word links them; the entry's fields have been dropped), and at the end of the
//!   turn pushes the whole chain onto the shared stack [`SHARED`] with one CAS loop, at most
//!   [`MAX_PER_TURN`] entries a turn (the rest are freed).
//! - An arming thread takes from its thread-local chain; when that is empty it takes the
//!   whole shared stack with one `swap` (never a single-entry pop, so there is no ABA).
//! - A thread that gives back an entry's last count itself (a deadline disarmed before the
//!   driver took it from the shard, `shard.rs`) keeps the memory on its own chain, up to
//!   [`LOCAL_MAX`] entries, so a thread that arms and disarms in a loop allocates nothing
//!   for its timers.
//!
//! # Invariants and orderings
//!
//! 1. An entry on a chain or on the stack is dead: every count on it is gone, its fields are
//!    dropped, nobody else holds its address. Its memory has the layout of `TimerEntry`.
//! 2. Only the driver thread pushes; anybody may swap the stack out. The push is a Release
//!    CAS and the swap an Acquire, so the driver's last writes to an entry happen before
//!    the thread that takes it writes a new entry there.
//! 3. A thread's chain is its own (thread-local): it is freed when the thread exits.
//!
//! Memory kept: at most what the driver released and nobody has armed again, that is the
//! entries of the timers that were outstanding at the busiest moment, bounded per turn.

use super::entry::TimerEntry;
use crate::spare::{Spare, Spares};
use crate::sync::{thread_local, AtomicPtr, Ordering};
use std::alloc::{dealloc, Layout};
use std::ptr;

/// A dead entry's first word: the next dead entry of its chain (`spare.rs`).
type Dead = Spare;

/// Entries the driver gave back, for any thread to take (invariant 2).
#[cfg(not(loom))]
static SHARED: AtomicPtr<Dead> = AtomicPtr::new(ptr::null_mut());

// Under loom a static atomic would outlive the model's executions: one per execution.
#[cfg(loom)]
loom::lazy_static! {
    static ref SHARED: AtomicPtr<Dead> = AtomicPtr::new(ptr::null_mut());
}

/// At most this many entries a driver turn are kept for reuse; the rest are freed.
const MAX_PER_TURN: usize = 4096;

/// At most this many entries a thread keeps of those it released itself.
const LOCAL_MAX: usize = 64;

// A thread's own chain of entries to reuse (invariant 3); it counts the entries the thread
// released itself (at most [`LOCAL_MAX`]), not those it took from the driver's stack.
#[cfg(not(loom))]
thread_local! {
    static LOCAL: Spares<TimerEntry> = const { Spares::new() };
}

// loom's `thread_local!` takes no `const` initializer.
#[cfg(loom)]
thread_local! {
    static LOCAL: Spares<TimerEntry> = Spares::new();
}

/// Memory for a new entry, if a dead one is at hand: write a `TimerEntry` into it.
pub(crate) fn take() -> Option<*mut TimerEntry> {
    LOCAL
        .try_with(|local| {
            if let Some(p) = local.pop() {
                return Some(p);
            }
            // Acquire: see invariant 2.
            let chain = SHARED.swap(ptr::null_mut(), Ordering::Acquire);
            // SAFETY: the driver's stack holds dead entries (invariant 1), now ours whole;
            // our chain is empty, so it takes them.
            let adopted = unsafe { local.adopt(chain) };
            debug_assert!(adopted, "an empty chain adopts");
            local.pop()
        })
        .ok()
        .flatten()
}

/// Disposes of entry `t`, whose every count is gone, released on this thread: its memory
/// goes on this thread's chain for the next arm, or back to the allocator past
/// [`LOCAL_MAX`] (or once the thread's locals are gone).
///
/// # Safety
///
/// `t` came from `TimerEntry::new`, nobody holds it any more, and it is given here once.
pub(crate) unsafe fn give_local(t: *const TimerEntry) {
    let t = t as *mut TimerEntry;
    // SAFETY: per the contract the entry is ours alone; its fields are dropped once, here,
    // and its memory is then dead (invariant 1).
    unsafe { ptr::drop_in_place(t) };
    // SAFETY: dead memory of a boxed `TimerEntry`, given once: invariant 1 here and in
    // `spare.rs`.
    let kept = LOCAL
        .try_with(|local| unsafe { local.push(t, LOCAL_MAX) })
        .unwrap_or(false);
    if !kept {
        // SAFETY: the entry's memory is a `TimerEntry` allocation, now dead.
        unsafe { dealloc(t as *mut u8, Layout::new::<TimerEntry>()) };
    }
}

/// The driver's chain of the turn (driver thread only).
#[derive(Debug)]
pub(crate) struct Returns {
    head: *mut Dead,
    tail: *mut Dead,
    len: usize,
}

impl Returns {
    pub(crate) fn new() -> Returns {
        Returns {
            head: ptr::null_mut(),
            tail: ptr::null_mut(),
            len: 0,
        }
    }

    /// Takes the memory of entry `t`, whose every count is gone.
    ///
    /// # Safety
    ///
    /// `t` came from `TimerEntry::new`, nobody holds it any more, and it is given here once.
    pub(crate) unsafe fn give(&mut self, t: *const TimerEntry) {
        let t = t as *mut TimerEntry;
        // SAFETY: per the contract the entry is ours alone; its fields are dropped once,
        // here, and its memory is then dead (invariant 1).
        unsafe { ptr::drop_in_place(t) };
        if self.len >= MAX_PER_TURN {
            // SAFETY: the entry's memory is a `TimerEntry` allocation, now dead.
            unsafe { dealloc(t as *mut u8, Layout::new::<TimerEntry>()) };
            return;
        }
        let d = t as *mut Dead;
        // SAFETY: `d` points to dead memory that fits a `Dead` (`spare.rs`'s `FITS`, checked
        // for `Spares<TimerEntry>`); invariant 1.
        unsafe { d.write(Dead { next: self.head }) };
        if self.tail.is_null() {
            self.tail = d;
        }
        self.head = d;
        self.len += 1;
    }

    /// Pushes the turn's chain onto the shared stack.
    pub(crate) fn publish(&mut self) {
        if self.head.is_null() {
            return;
        }
        let mut top = SHARED.load(Ordering::Relaxed);
        loop {
            // SAFETY: `tail` is the last dead entry of our chain, ours until the CAS.
            unsafe { (*self.tail).next = top };
            // Release: see invariant 2.
            match SHARED.compare_exchange_weak(top, self.head, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => top = now,
            }
        }
        *self = Returns::new();
    }
}

/// What a loom model needs of the protocol (`loom-tests/tests/m15_timer_recycle.rs`).
#[cfg(loom)]
pub(crate) mod model {
    use super::*;

    /// Plays one driver turn: `n` fresh entries released and published.
    pub(crate) fn driver_turn(n: usize) {
        let mut returns = Returns::new();
        for _ in 0..n {
            let t = TimerEntry::new(std::time::Instant::now(), None);
            // Never armed: it leaves the live count of timers as it came.
            crate::live::add(crate::live::Counter::Timers, -1);
            // SAFETY: fresh, never armed: nobody else holds it.
            unsafe { returns.give(t) };
        }
        returns.publish();
    }

    /// Takes one entry's memory, as `TimerEntry::new` does, and writes an entry there; its
    /// address, or `None`. The memory stays the caller's until [`free`].
    pub(crate) fn take_one() -> Option<usize> {
        take().map(|p| {
            let t = TimerEntry::new(std::time::Instant::now(), None) as *mut TimerEntry;
            crate::live::add(crate::live::Counter::Timers, -1);
            // SAFETY: `p` is dead memory of `TimerEntry`'s layout, ours; `t` is a fresh
            // boxed entry whose value we move into `p`, freeing `t`'s box without dropping.
            unsafe {
                p.write(t.read());
                dealloc(t as *mut u8, Layout::new::<TimerEntry>());
            }
            p as usize
        })
    }

    /// Frees an entry [`take_one`] returned.
    pub(crate) fn free(addr: usize) {
        // SAFETY: `addr` is a live boxed-layout entry that `take_one` handed out once.
        drop(unsafe { Box::from_raw(addr as *mut TimerEntry) });
    }

    /// Takes what is left on the shared stack and this thread's chain, without writing to
    /// it: the addresses, to give to [`free_dead`].
    pub(crate) fn drain() -> Vec<usize> {
        std::iter::from_fn(|| take().map(|p| p as usize)).collect()
    }

    /// Frees dead memory [`drain`] returned.
    pub(crate) fn free_dead(addr: usize) {
        // SAFETY: `addr` is dead memory of `TimerEntry`'s layout that `drain` handed out.
        unsafe { dealloc(addr as *mut u8, Layout::new::<TimerEntry>()) };
    }
}

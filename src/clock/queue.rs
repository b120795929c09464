//! The deadline queue of a manual or tokio clock: every armed timer entry of that clock, in
//! deadline order, and the firing protocol that `advance` and the tokio driver share.
//!
//! # Algorithm
//!
//! One lock guards an ordered map `(deadline, sequence) -> entry` of the *pending* entries
//! and, for a manual clock, the clock's time. Arming inserts (O(log n)); disarming removes
//! (O(log n)), so a disarmed deadline context leaves nothing behind (behaviour 14).
//! [`Queue::fire_due`] pops the earliest due entry under the lock, lets the lock go, fires
//! the entry (the cancel walk, wakers, callbacks) and starts again: the lock is never held
//! while user code runs, so a callback may derive, arm, disarm or advance the same clock.
//! An advance costs one pop per entry it fires, whatever the distance, and nothing for the
//! entries still pending.
//!
//! # Invariants
//!
//! 1. Each armed entry of the queue is in exactly one place: *pending* (in the map), *in
//!    flight* (popped by a firing thread, its key in `in_flight`), or settled. The entry's
//!    driver count belongs to the map while pending and to the popping thread afterwards,
//!    which gives it back after firing, whether or not it won the entry's CAS.
//! 2. A disarmer that wins the entry's CAS removes it from the map if it is still pending and
//!    then gives the driver count back; if it is not there, a firing thread popped it and
//!    will give the count back (it loses the CAS and does nothing else).
//! 3. The entry's key (its sequence number, in its `pos` cell) is written and read only with
//!    the lock held.
//! 4. A manual clock's time never decreases, and is written under the lock. An entry whose
//!    deadline is at or before the time when it is armed is never inserted: the arming
//!    thread fires it itself, so no advance can have passed it by.
//!
//! # Concurrent and nested advances
//!
//! Behaviour 28: each `advance` returns only once everything due at the time it reached
//! has fired. A concurrent advance may have popped such an entry and still be firing it,
//! so after its own pops an advance waits (condition variable) until no entry in flight is
//! due at its time. A thread that is itself firing (an advance called from an `after_func`
//! callback) does not wait for other threads: two such threads could each wait for the
//! other's firing. It fires what it reaches and returns; what another thread holds in
//! flight completes when that thread's firing does.
//!
//! Orderings: the lock orders everything in the map; the entry's own CAS (`timer/entry.rs`)
//! decides between firing and disarming, as with the system driver.

use crate::cancel::Panic;
use crate::sync::{thread_local, Condvar, Mutex, MutexGuard};
use crate::timer::{self, TimerEntry};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::time::Instant;

/// A pending entry's pointer; the map holds the entry's driver count (invariant 1).
struct Armed(*const TimerEntry);

// SAFETY: the driver count may be given back and the entry fired from any thread (timer
// entries are shared between threads by design, `timer/entry.rs`).
unsafe impl Send for Armed {}

type Key = (Instant, u64);

/// What the lock guards.
struct Guarded {
    /// A manual clock's time (invariant 4); for a tokio clock, the latest time fired to.
    now: Instant,
    pending: BTreeMap<Key, Armed>,
    /// Keys of entries popped and not yet fired; a key can appear once.
    in_flight: BTreeMap<Key, ()>,
    next_seq: u64,
    /// Threads waiting in [`Queue::wait_in_flight`].
    waiting: usize,
}

impl Guarded {
    fn new(now: Instant) -> Guarded {
        Guarded {
            now,
            pending: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            next_seq: 0,
            waiting: 0,
        }
    }
}

#[cfg(not(loom))]
thread_local! {
    /// How many queue firings this thread is inside (callbacks may advance, re-entering).
    static FIRING: Cell<usize> = const { Cell::new(0) };
}

#[cfg(loom)]
thread_local! {
    static FIRING: Cell<usize> = Cell::new(0);
}

/// The queue of one manual or tokio clock (shared by its clones and its entries).
pub(crate) struct Queue {
    guarded: Mutex<Guarded>,
    /// Signalled when an in-flight entry has fired and somebody waits.
    settled: Condvar,
    /// True for a manual clock: arming checks its time (invariant 4).
    manual: bool,
    /// The tokio driver to tell about a new earliest deadline.
    #[cfg(all(feature = "tokio", not(loom)))]
    tokio: Option<super::tokio_driver::Driver>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = self.lock();
        f.debug_struct("Queue")
            .field("pending", &g.pending.len())
            .field("in_flight", &g.in_flight.len())
            .finish()
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        // The tokio driver task holds the queue weakly: wake it so it sees the queue gone.
        #[cfg(all(feature = "tokio", not(loom)))]
        if let Some(d) = &self.tokio {
            d.wake();
        }
    }
}

impl Queue {
    /// An empty queue: a manual clock's, standing at `now`.
    pub(crate) fn manual(now: Instant) -> Queue {
        Queue {
            guarded: Mutex::new(Guarded::new(now)),
            settled: Condvar::new(),
            manual: true,
            #[cfg(all(feature = "tokio", not(loom)))]
            tokio: None,
        }
    }

    /// An empty queue fired by a tokio driver task (`tokio_driver.rs`).
    #[cfg(all(feature = "tokio", not(loom)))]
    pub(crate) fn tokio(now: Instant, driver: super::tokio_driver::Driver) -> Queue {
        Queue {
            guarded: Mutex::new(Guarded::new(now)),
            settled: Condvar::new(),
            manual: false,
            tokio: Some(driver),
        }
    }

    /// The tokio driver, if this is a tokio clock's queue.
    #[cfg(all(feature = "tokio", not(loom)))]
    pub(crate) fn tokio_driver(&self) -> Option<&super::tokio_driver::Driver> {
        self.tokio.as_ref()
    }

    fn lock(&self) -> MutexGuard<'_, Guarded> {
        // No user code runs under this lock, so it is never poisoned by a callback; should
        // it be anyway, later deadlines must still work.
        self.guarded.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True for a manual clock's queue.
    pub(crate) fn is_manual(&self) -> bool {
        self.manual
    }

    /// A manual clock's time.
    pub(crate) fn now(&self) -> Instant {
        self.lock().now
    }

    /// The clock's time: the manual time, or the tokio runtime's.
    pub(crate) fn now_of_clock(&self) -> Instant {
        #[cfg(all(feature = "tokio", not(loom)))]
        if let Some(d) = &self.tokio {
            return d.now();
        }
        self.now()
    }

    /// Moves a manual clock's time to `to` if that is later (invariant 4); returns the time
    /// after the move.
    pub(crate) fn move_to(&self, to: Instant) -> Instant {
        let mut g = self.lock();
        if to > g.now {
            g.now = to;
        }
        g.now
    }

    /// Moves a manual clock's time forward by `by`, saturating (module docs of `clock`);
    /// returns the time after the move.
    pub(crate) fn move_by(&self, by: std::time::Duration) -> Instant {
        let mut g = self.lock();
        g.now = super::saturating_add(g.now, by);
        g.now
    }

    /// The earliest pending deadline.
    #[cfg(all(feature = "tokio", not(loom)))]
    pub(crate) fn earliest(&self) -> Option<Instant> {
        self.lock().pending.keys().next().map(|k| k.0)
    }

    /// Arms `t`: into the map, or, on a manual clock whose time has reached its deadline,
    /// fired at once on this thread (invariant 4).
    ///
    /// # Safety
    ///
    /// `t` is a live entry of this queue, armed once, and its driver count is handed over.
    pub(crate) unsafe fn arm(&self, t: *const TimerEntry) {
        // SAFETY: `t` is live (the caller's contract).
        let entry = unsafe { &*t };
        let mut g = self.lock();
        if self.manual && entry.deadline <= g.now {
            drop(g);
            // The node is not shared yet (arming precedes linking, `node.rs`), so no
            // callback can be registered: nothing can panic.
            // SAFETY: we hold the driver count, handed over by the caller.
            unsafe {
                entry.fire();
                timer::release(t);
            }
            return;
        }
        let seq = g.next_seq;
        g.next_seq += 1;
        // SAFETY: lock held (invariant 3).
        unsafe {
            let mut pos = entry.pos();
            pos.tick = seq;
            entry.set_pos(pos);
        }
        let key = (entry.deadline, seq);
        g.pending.insert(key, Armed(t));
        let first = g.pending.keys().next() == Some(&key);
        drop(g);
        // A driver sleeping on a later deadline must look again.
        #[cfg(all(feature = "tokio", not(loom)))]
        if let (true, Some(d)) = (first, &self.tokio) {
            d.wake();
        }
        #[cfg(not(all(feature = "tokio", not(loom))))]
        let _ = first;
    }

    /// Takes `t` out of the map after a disarmer won its CAS (invariant 2).
    ///
    /// # Safety
    ///
    /// The caller won `t`'s CAS (`timer::disarm`); `t` is live.
    pub(crate) unsafe fn withdraw(&self, t: *const TimerEntry) {
        // SAFETY: `t` is live.
        let entry = unsafe { &*t };
        let mut g = self.lock();
        // SAFETY: lock held (invariant 3).
        let key = (entry.deadline, unsafe { entry.pos() }.tick);
        let was_pending = g.pending.remove(&key).is_some();
        drop(g);
        if was_pending {
            // SAFETY: the map's driver count is ours now (invariant 1).
            unsafe { timer::release(t) };
        }
    }

    /// Fires, in deadline order, every entry due at `to` (deadline at or before it), on this
    /// thread. Returns the first panic of an `after_func` callback, once all have fired.
    pub(crate) fn fire_due(&self, to: Instant) -> Option<Panic> {
        let mut panic = None;
        let mut g = self.lock();
        loop {
            let (key, armed) = match g.pending.first_key_value() {
                Some((k, _)) if k.0 <= to => g.pending.pop_first().expect("a first key"),
                _ => break,
            };
            g.in_flight.insert(key, ());
            drop(g);
            FIRING.with(|f| f.set(f.get() + 1));
            // SAFETY: popped: the driver count is ours (invariant 1).
            let (_, p) = unsafe { (*armed.0).fire_catching() };
            FIRING.with(|f| f.set(f.get() - 1));
            // SAFETY: as above; given back once, whether or not we won the CAS.
            unsafe { timer::release(armed.0) };
            if panic.is_none() {
                panic = p;
            }
            g = self.lock();
            g.in_flight.remove(&key);
            if g.waiting > 0 {
                self.settled.notify_all();
            }
        }
        drop(g);
        panic
    }

    /// Waits until no entry in flight on another thread is due at `to`, unless this thread
    /// is itself firing (module docs: nested advances do not wait).
    pub(crate) fn wait_in_flight(&self, to: Instant) {
        if FIRING.with(Cell::get) > 0 {
            return;
        }
        let mut g = self.lock();
        while g.in_flight.keys().next().is_some_and(|k| k.0 <= to) {
            g.waiting += 1;
            g = self.settled.wait(g).unwrap_or_else(|e| e.into_inner());
            g.waiting -= 1;
        }
    }
}

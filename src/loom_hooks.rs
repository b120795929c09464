//! Hooks for the loom models in `loom-tests/`; compiled under `--cfg loom` only.
//!
//! Under loom there is no timer driver thread: [`crate::timer::arm`] records each armed
//! timer here and a model plays the driver with [`take_armed_timers`] and
//! [`LoomTimer::fire`]. [`begin`] and [`finish`] bracket one execution: `finish` frees what
//! the epoch stand-in retired and returns the live counts, so a model can assert that every
//! context, waiter, callback and timer was freed exactly once.

use crate::live::{self, LiveCounts};
use crate::timer::{self, TimerEntry};
use std::cell::RefCell;

std::thread_local! {
    /// Timers armed in this model run whose driver count nobody has taken yet (std
    /// thread-local: loom runs a model's threads on one OS thread).
    static ARMED: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// Records a timer that has just been armed: its driver count now waits for a model, or,
/// while a model shard is in use ([`use_shard`]), goes to that shard as the system clock's
/// arm does (`timer/shard.rs`).
pub(crate) fn record_armed(t: *const TimerEntry) {
    if let Some(m) = SHARD.with(|s| s.borrow().clone()) {
        // SAFETY: `t` is fresh, its node set, unpublished and in no list (`timer::arm`); its
        // driver count goes to the shard.
        let armed = unsafe { m.shard.arm(t, m.origin, &m.promise) };
        m.links.lock().unwrap().push(Linked {
            entry: t as usize,
            promise: armed.promise,
            wake: armed.wake,
        });
        return;
    }
    ARMED.with(|a| a.borrow_mut().push(t as usize));
}

/// Timer entries allocated in this execution and not freed yet (0 once everything is
/// dropped, if each was freed exactly once).
pub fn timer_entries() -> isize {
    crate::timer::entry::LOOM_ENTRIES.load(std::sync::atomic::Ordering::Relaxed)
}

std::thread_local! {
    /// The shard a model arms into (shared by the model's threads: one OS thread).
    static SHARD: RefCell<Option<std::sync::Arc<ModelShard>>> = const { RefCell::new(None) };
}

/// One arm into a model shard, as the arming thread saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Linked {
    /// The entry's address.
    pub entry: usize,
    /// The driver's promise read under the shard's lock (nanoseconds after the origin).
    pub promise: u64,
    /// Whether the arming thread would wake the driver (due before promise + a tick).
    pub wake: bool,
}

/// A thread's shard and the driver's promise, played by a model
/// (`loom-tests/tests/m18_timer_shard.rs`).
#[derive(Debug)]
pub struct ModelShard {
    shard: crate::timer::shard::Shard,
    promise: crate::sync::AtomicU64,
    origin: std::time::Instant,
    links: std::sync::Mutex<Vec<Linked>>,
}

/// A model shard whose driver has promised `promise` (nanoseconds after `origin`); every
/// timer armed from now on goes to it, until [`begin`].
pub fn use_shard(origin: std::time::Instant, promise: u64) -> std::sync::Arc<ModelShard> {
    let m = std::sync::Arc::new(ModelShard {
        shard: crate::timer::shard::Shard::new(),
        promise: crate::sync::AtomicU64::new(promise),
        origin,
        links: std::sync::Mutex::new(Vec::new()),
    });
    SHARD.with(|s| *s.borrow_mut() = Some(m.clone()));
    m
}

impl ModelShard {
    /// One driver sweep: stores `promise`, then takes every pending entry (the driver's
    /// counts, as [`LoomTimer`]s), as the driver's turn does.
    pub fn sweep(&self, promise: u64) -> Vec<LoomTimer> {
        let mut out = Vec::new();
        let mut taken = Vec::new();
        crate::timer::shard::promise_then_sweep(
            &self.promise,
            promise,
            |visit| visit(&self.shard),
            &mut taken,
            |t| {
                // SAFETY: taken: the driver's `pos` and count are ours (shard.rs invariant 2).
                unsafe { (*t).set_pos(crate::timer::entry::NOT_IN_WHEEL) };
                out.push(LoomTimer(t));
            },
        );
        out
    }

    /// The arms made so far.
    pub fn links(&self) -> Vec<Linked> {
        self.links.lock().unwrap().clone()
    }
}

/// The driver's side of one armed timer: holds the driver's count on the timer entry.
#[derive(Debug)]
pub struct LoomTimer(*const TimerEntry);

// SAFETY: the driver's count may be used from any thread, as the driver thread does.
unsafe impl Send for LoomTimer {}

impl LoomTimer {
    /// The entry's address (as in [`Linked::entry`]).
    pub fn entry(&self) -> usize {
        self.0 as usize
    }

    /// Fires the timer as the driver does at the deadline: true if it won against a
    /// cancel (the node is then done with `DeadlineExceeded`). Gives the driver's count back.
    pub fn fire(self) -> bool {
        // SAFETY: `self` holds the driver's count (handed out once by `take_armed_timers`).
        unsafe { (*self.0).fire() }
        // `self` drops here and gives the count back.
    }
}

impl Drop for LoomTimer {
    fn drop(&mut self) {
        // SAFETY: we own the driver's count and give it up once, as the driver does after
        // firing or after handling the disarm message.
        unsafe { timer::release(self.0) };
    }
}

/// Every timer armed since the last call (or [`begin`]), each handed out once.
pub fn take_armed_timers() -> Vec<LoomTimer> {
    ARMED.with(|a| {
        a.borrow_mut()
            .drain(..)
            .map(|t| LoomTimer(t as *const TimerEntry))
            .collect()
    })
}

/// What was left at the end of an execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finish {
    /// The live counts (contexts, timers, waiters, callbacks); all zero when nothing leaked
    /// and nothing was finalized twice.
    pub live: LiveCounts,
    /// Entries retired twice to the epoch (always empty with the real epoch, which cannot
    /// report it).
    pub retired_twice: Vec<usize>,
    /// List entries still allocated after freeing what was retired (`None` with the real
    /// epoch, whose frees are not counted).
    pub still_allocated: Option<i64>,
}

/// Starts one execution: forgets the counts of the previous one.
pub fn begin() {
    crate::timer::entry::LOOM_ENTRIES.store(0, std::sync::atomic::Ordering::Relaxed);
    ARMED.with(|a| a.borrow_mut().clear());
    SHARD.with(|s| *s.borrow_mut() = None);
    let _ = live::loom_counts(true);
    #[cfg(not(ctxcore_loom_real_epoch))]
    crate::sync::epoch::reset();
}

/// Ends one execution, once every thread of the model has finished and every handle has
/// been dropped: plays the driver for timers nobody took, frees what was retired and
/// reports what is left.
pub fn finish() -> Finish {
    drop(take_armed_timers());
    // Entries still pending in a model shard: the driver's next sweep would take them.
    if let Some(m) = SHARD.with(|s| s.borrow_mut().take()) {
        drop(m.sweep(u64::MAX));
    }
    #[cfg(not(ctxcore_loom_real_epoch))]
    {
        let c = crate::sync::epoch::collect();
        Finish {
            live: live::loom_counts(false),
            retired_twice: c.retired_twice,
            still_allocated: Some(c.still_allocated),
        }
    }
    #[cfg(ctxcore_loom_real_epoch)]
    Finish {
        live: live::loom_counts(false),
        retired_twice: Vec::new(),
        still_allocated: None,
    }
}

/// The recycling of timer entries (`timer/recycle.rs`), played by a model: one driver
/// turn releasing `n` fresh entries and publishing them.
pub fn recycle_driver_turn(n: usize) {
    crate::timer::recycle::model::driver_turn(n);
}

/// Takes one recycled entry's memory and writes an entry there: its address, to give to
/// [`recycle_free`] once the model has checked it.
pub fn recycle_take() -> Option<usize> {
    crate::timer::recycle::model::take_one()
}

/// Frees an entry [`recycle_take`] returned.
pub fn recycle_free(addr: usize) {
    crate::timer::recycle::model::free(addr);
}

/// Takes every recycled entry this thread can still take, without writing to them: their
/// addresses, to give to [`recycle_free_dead`].
pub fn recycle_drain() -> Vec<usize> {
    crate::timer::recycle::model::drain()
}

/// Frees memory [`recycle_drain`] returned.
pub fn recycle_free_dead(addr: usize) {
    crate::timer::recycle::model::free_dead(addr);
}

//! Per-thread shards of armed system-clock deadlines: arming and disarming a deadline that
//! the driver has not looked at yet touch only the arming thread's own cache lines.
//!
//! # Why
//!
//! A server arms a deadline per request and disarms it microseconds later, long before it
//! is due. Sent to the driver thread as two inbox messages, every such pair crossed cores
//! three ways: two CAS pushes on the inbox line the driver swaps, the driver's turn reading
//! and releasing the entry on its core, and the arming thread's next entry recycled from
//! memory the driver touched last (a cache miss on its first write). Profiled on the
//! timeout-child bench (Intel Xeon, 2 vCPU), the driver thread took about a quarter of a
//! core and the arming thread's futex wakes another 5% of its samples. Here a deadline
//! waits in its thread's shard until the driver's next sweep; most are disarmed before
//! that, by their own thread, with no message and no wake.
//!
//! # Algorithm
//!
//! - Each thread that arms a system-clock deadline owns a [`Shard`]: a small spin lock and
//!   an intrusive doubly linked list of the entries it armed that the driver has not taken
//!   yet (*pending* entries). An entry records its shard when it is armed, never changed.
//! - **Arm**: lock the shard, link the entry at the head, read the driver's *promise* `P`,
//!   unlock. If the deadline is before `P + TICK`, wake the driver (invariant 4).
//! - **Disarm**: lock the entry's shard. A pending entry is unlinked and marked CANCELLED
//!   under the lock: the driver never saw it, so nothing can fire it and no CAS is needed
//!   (invariant 6). The count the shard held for the driver is the disarmer's now. An
//!   entry the driver already took is disarmed as before: the state CAS against the
//!   driver's firing, then the "disarm" inbox message.
//! - **Sweep** (the driver, every turn): store the promise for its next sweep, then take
//!   every shard's pending entries, at most [`CHUNK`] per lock hold, marking each taken,
//!   and put them in the wheel outside the lock.
//!
//! # Invariants
//!
//! 1. A pending entry is linked in exactly its own shard's list, its `place` is
//!    [`PENDING`], its `pos` holds the list links, and the list holds the driver's count
//!    on it. `place`, the links and the list head are read and written only under the
//!    shard's lock.
//! 2. An entry leaves the list once: unlinked by a disarmer (which then gives back the
//!    driver's count), or taken by the driver (`place` becomes [`TAKEN`]; from then on the
//!    driver owns `pos` and its count, and a disarm of it is an inbox message). Nothing
//!    ever links it again.
//! 3. The promise: before each sweep the driver stores `P`; it starts its next sweep no
//!    later than `P` (as late as the scheduler makes it, like any timer). `u64::MAX`
//!    promises nothing: an idle driver sleeps until woken.
//! 4. An entry linked with deadline `d >= P + TICK`, `P` read under the lock while linking,
//!    is taken by a sweep that starts before `d`. Proof: let `S` be the first sweep that
//!    locks this shard after the link, and `S'` the sweep before it. The link's lock
//!    acquisition synchronizes with `S'`'s release, and `S'`'s promise was stored before
//!    `S'`, so the link reads that promise or a later one (coherence). If it read `S'`'s,
//!    `S` starts by it, before `d`. If it read a later one, that promise was stored before
//!    a sweep that had not yet locked this shard when the link did (or the link would
//!    have synchronized with it and `S'` would be that sweep): that sweep is `S`, already
//!    under way. Otherwise the arming thread wakes the driver after unlocking, and the
//!    driver's next turn sweeps the entry: a wake before the driver parks makes the park
//!    return at once.
//! 5. Shards are never freed: a thread's exit hands its shard to the next thread that
//!    arms, and the driver keeps sweeping it meanwhile. So an entry's shard pointer is
//!    always valid, and a thread that has exited still has its pending entries swept.
//! 6. Only the driver fires an entry, and only one it took. So while an entry is pending
//!    nothing but a disarmer changes its state, and a disarmer that finds it pending under
//!    the lock may store CANCELLED; one that finds it gone tries the CAS, which then fails
//!    if an earlier disarmer unlinked it (that store came before this lock acquisition).
//!
//! # Orderings
//!
//! The lock is the only synchronization: an Acquire CAS to take it, a Release store to
//! give it back, so each holder sees everything the previous holders did (the links,
//! `place`, the entry's fields written before it was linked). The promise is read and
//! written Relaxed: invariant 4 orders it through the lock.
//!
//! # Progress
//!
//! Every holder keeps the lock for O(1) steps, the driver for at most [`CHUNK`] entries.
//! A waiter spins briefly, then yields, so a holder preempted on the same core runs again.

use super::entry::TimerEntry;
use super::wheel::TICK;
use crate::sync::{AtomicU64, AtomicU8, Ordering, UnsafeCell};
use std::time::Instant;

/// `place` of an entry in its shard's list.
pub(crate) const PENDING: u8 = 1;
/// `place` of an entry that has left the list (taken by the driver, or unlinked).
pub(crate) const TAKEN: u8 = 2;

/// The most entries the driver takes per hold of a shard's lock.
pub(crate) const CHUNK: usize = 256;

/// One thread's pending system-clock deadlines.
#[derive(Debug)]
pub(crate) struct Shard {
    /// 0 unlocked, 1 locked.
    locked: AtomicU8,
    /// The newest pending entry (invariant 1).
    head: UnsafeCell<*const TimerEntry>,
    /// Arms linked here, wrapping: the driver compares it between sweeps to tell a quiet
    /// process (it may sleep until woken) from one that arms and disarms locally.
    arms: UnsafeCell<u64>,
    /// The next shard ever made (`registry`), set before the shard is published.
    #[cfg(not(loom))]
    next_in_all: *const Shard,
}

// SAFETY: the raw pointers are entries of this shard's list and other shards, shared by
// design; every access to the list goes through the lock (invariant 1), and `next_in_all`
// is immutable once published.
unsafe impl Send for Shard {}
// SAFETY: as above.
unsafe impl Sync for Shard {}

/// The lock held: the list may be read and changed.
struct Locked<'a>(&'a Shard);

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        // Release: the next holder's Acquire CAS sees every write made under the lock.
        self.0.locked.store(0, Ordering::Release);
    }
}

impl Shard {
    /// An empty shard.
    pub(crate) fn new() -> Shard {
        Shard {
            locked: AtomicU8::new(0),
            head: UnsafeCell::new(std::ptr::null()),
            arms: UnsafeCell::new(0),
            #[cfg(not(loom))]
            next_in_all: std::ptr::null(),
        }
    }

    fn lock(&self) -> Locked<'_> {
        let mut spins = 0u32;
        loop {
            // Acquire: pairs with `Locked::drop`'s Release (module docs, "Orderings").
            if self
                .locked
                .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return Locked(self);
            }
            while self.locked.load(Ordering::Relaxed) != 0 {
                spins = spins.saturating_add(1);
                #[cfg(loom)]
                crate::sync::thread::yield_now();
                #[cfg(not(loom))]
                if spins < 64 {
                    std::hint::spin_loop();
                } else {
                    // The holder may be preempted on this very core ("Progress").
                    crate::sync::thread::yield_now();
                }
            }
        }
    }

    /// Arms the fresh entry `t` in this shard (the one arm of the system clock, and of a
    /// loom model's shard): records the shard in `t`, links it, and says whether the
    /// driver must be woken: `t` is due before the promise read under the lock, plus a tick
    /// (invariant 4). `origin` is the instant the promise counts from.
    ///
    /// # Safety
    ///
    /// `t` is fresh from `TimerEntry::new`, its node set, unpublished and in no list; its
    /// driver count is handed to the shard.
    pub(crate) unsafe fn arm(
        &self,
        t: *const TimerEntry,
        origin: Instant,
        promise: &AtomicU64,
    ) -> Armed {
        // SAFETY: `t` is unpublished (the contract): this write races with nothing.
        unsafe { (*(t as *mut TimerEntry)).set_shard(self) };
        // Read before linking: once linked, the entry may be taken and fired at any time.
        // SAFETY: as above.
        let due = nanos_since(origin, unsafe { (*t).deadline });
        // Relaxed: ordered by the lock (invariant 4).
        // SAFETY: `t` is fresh, armed with this shard as its shard, in no list (the
        // contract).
        let promise = unsafe { self.link(t, || promise.load(Ordering::Relaxed)) };
        Armed {
            promise,
            wake: due < promise.saturating_add(TICK_NANOS),
        }
    }

    /// Links the fresh entry `t` as pending and returns the promise `read_promise` gives,
    /// read under the lock (invariant 4: the caller wakes the driver if `t` is due before
    /// it plus a tick). The shard's list now holds the driver's count on `t`.
    ///
    /// # Safety
    ///
    /// `t` is live, armed with this shard as its shard, and in no list; its driver count is
    /// handed to the shard.
    pub(crate) unsafe fn link(
        &self,
        t: *const TimerEntry,
        read_promise: impl FnOnce() -> u64,
    ) -> u64 {
        let _held = self.lock();
        // SAFETY: the lock is held (invariant 1); `t` is live and unlinked, and the list's
        // entries are live (their driver count is the list's).
        unsafe {
            let head = self.head.with_mut(|h| *h);
            (*t).set_place(PENDING);
            (*t).set_links(head, std::ptr::null());
            if !head.is_null() {
                let (next, _) = (*head).links();
                (*head).set_links(next, t);
            }
            self.head.with_mut(|h| *h = t);
            self.arms.with_mut(|a| *a = (*a).wrapping_add(1));
        }
        read_promise()
    }

    /// Unlinks `t` if it is still pending, calling `then` before the lock is released:
    /// true if it was (the caller then owns the count the list held, invariant 2); false
    /// if the driver took it (or another call unlinked it).
    ///
    /// # Safety
    ///
    /// `t` is live and was armed with this shard as its shard.
    pub(crate) unsafe fn unlink(&self, t: *const TimerEntry, then: impl FnOnce()) -> bool {
        let _held = self.lock();
        // SAFETY: the lock is held (invariant 1); `t` and its neighbours are live.
        unsafe {
            if (*t).place() != PENDING {
                return false;
            }
            let (next, prev) = (*t).links();
            if prev.is_null() {
                self.head.with_mut(|h| *h = next);
            } else {
                let (_, pp) = (*prev).links();
                (*prev).set_links(next, pp);
            }
            if !next.is_null() {
                let (nn, _) = (*next).links();
                (*next).set_links(nn, prev);
            }
            (*t).set_place(TAKEN);
        }
        then();
        true
    }

    /// The driver's sweep of this shard: moves up to [`CHUNK`] pending entries to `out`,
    /// each now taken (invariant 2: the driver owns its count and its `pos`). Returns true
    /// if entries are left (call again), and the shard's arm count.
    pub(crate) fn take(&self, out: &mut Vec<*const TimerEntry>) -> (bool, u64) {
        let _held = self.lock();
        // SAFETY: the lock is held (invariant 1); the list's entries are live.
        unsafe {
            let mut e = self.head.with_mut(|h| *h);
            let mut n = 0;
            while !e.is_null() && n < CHUNK {
                let (next, _) = (*e).links();
                (*e).set_place(TAKEN);
                out.push(e);
                e = next;
                n += 1;
            }
            if !e.is_null() {
                let (next, _) = (*e).links();
                (*e).set_links(next, std::ptr::null());
            }
            self.head.with_mut(|h| *h = e);
            (!e.is_null(), self.arms.with_mut(|a| *a))
        }
    }
}

/// What an arm saw: the driver's promise, read under the lock, and whether the entry is due
/// before it (plus a tick), so that the driver must be woken (invariant 4).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Armed {
    /// Read by the loom models only (`crate::__loom`), which check invariant 4 with it.
    #[cfg_attr(not(loom), allow(dead_code))]
    pub(crate) promise: u64,
    pub(crate) wake: bool,
}

/// A tick in nanoseconds: the wheel's resolution, the margin of invariant 4.
pub(crate) const TICK_NANOS: u64 = TICK.as_nanos() as u64;

/// Nanoseconds from `origin` to `at` (0 before it, saturating far after it): how the
/// promise and deadlines are compared.
pub(crate) fn nanos_since(origin: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(origin).as_nanos()).unwrap_or(u64::MAX)
}

/// One sweep of the driver: stores `value` as its promise (`promise`), then takes every
/// pending entry of every shard `shards` visits and passes each to `f`, outside the shard's
/// lock. Returns how many it took and the sum of the shards' arm counts.
///
/// The order is invariant 4's: the promise is stored before any shard is locked.
pub(crate) fn promise_then_sweep(
    promise: &AtomicU64,
    value: u64,
    shards: impl FnOnce(&mut dyn FnMut(&Shard)),
    taken: &mut Vec<*const TimerEntry>,
    mut f: impl FnMut(*const TimerEntry),
) -> (usize, u64) {
    // Relaxed: ordered for the arming threads by the shards' locks (invariant 4).
    promise.store(value, Ordering::Relaxed);
    let mut swept = 0;
    let mut arms = 0u64;
    shards(&mut |s: &Shard| loop {
        let (more, shard_arms) = s.take(taken);
        swept += taken.len();
        for t in taken.drain(..) {
            f(t);
        }
        if !more {
            arms = arms.wrapping_add(shard_arms);
            break;
        }
    });
    (swept, arms)
}

/// Which shard each thread arms into, and the list of every shard for the driver.
#[cfg(not(loom))]
pub(crate) mod registry {
    use super::Shard;
    use crate::sync::Mutex;
    use std::cell::Cell;
    use std::sync::atomic::{AtomicPtr, Ordering};

    /// Every shard ever made, newest first: pushed with a Release CAS, read with an Acquire
    /// load, never popped (invariant 5).
    static ALL: AtomicPtr<Shard> = AtomicPtr::new(std::ptr::null_mut());

    /// Shards whose threads have exited, for the next thread that arms.
    static FREE: Mutex<Vec<usize>> = Mutex::new(Vec::new());

    /// The shard of threads whose thread-locals are already gone (a deadline armed in a
    /// thread-local's destructor): made once, shared, never freed.
    static SPARE: AtomicPtr<Shard> = AtomicPtr::new(std::ptr::null_mut());

    /// A thread's shard; handed to [`FREE`] when the thread exits.
    struct Mine(Cell<*const Shard>);

    impl Drop for Mine {
        fn drop(&mut self) {
            let s = self.0.get();
            if !s.is_null() {
                FREE.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(s as usize);
            }
        }
    }

    std::thread_local! {
        static MINE: Mine = const { Mine(Cell::new(std::ptr::null())) };
    }

    /// The calling thread's shard.
    #[inline]
    pub(crate) fn current() -> &'static Shard {
        MINE.try_with(|m| {
            let s = m.0.get();
            if s.is_null() {
                let s = acquire();
                m.0.set(s);
                s
            } else {
                // SAFETY: shards are never freed (invariant 5).
                unsafe { &*s }
            }
        })
        .unwrap_or_else(|_| spare())
    }

    #[cold]
    fn acquire() -> &'static Shard {
        let reused = FREE.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match reused {
            // SAFETY: `FREE` holds shards, which are never freed (invariant 5).
            Some(s) => unsafe { &*(s as *const Shard) },
            None => make(),
        }
    }

    /// A new shard, published on [`ALL`].
    fn make() -> &'static Shard {
        let s: &'static mut Shard = Box::leak(Box::new(Shard::new()));
        let mut head = ALL.load(Ordering::Relaxed);
        loop {
            s.next_in_all = head;
            // Release: the driver's Acquire load of `ALL` sees the shard's fields.
            match ALL.compare_exchange_weak(
                head,
                s as *mut Shard,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return s,
                Err(h) => head = h,
            }
        }
    }

    #[cold]
    fn spare() -> &'static Shard {
        let p = SPARE.load(Ordering::Acquire);
        if !p.is_null() {
            // SAFETY: shards are never freed (invariant 5).
            return unsafe { &*p };
        }
        let s = make();
        // AcqRel: publish ours, or see the one another thread published first.
        match SPARE.compare_exchange(
            std::ptr::null_mut(),
            s as *const Shard as *mut Shard,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => s,
            Err(other) => {
                // Ours stays on ALL, empty; the next thread that arms may use it.
                FREE.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(s as *const Shard as usize);
                // SAFETY: as above.
                unsafe { &*other }
            }
        }
    }

    /// Calls `f` on every shard ever made.
    pub(crate) fn for_each(mut f: impl FnMut(&'static Shard)) {
        // Acquire: pairs with `make`'s Release CAS.
        let mut s = ALL.load(Ordering::Acquire);
        while !s.is_null() {
            // SAFETY: shards are never freed, and `next_in_all` was set before publication.
            let shard = unsafe { &*s };
            f(shard);
            s = shard.next_in_all as *mut Shard;
        }
    }
}

//! The timer driver thread: it sweeps the threads' shards into its wheel, reads the inbox
//! of "disarm" messages, and fires what is due.
//!
//! Arming goes to the arming thread's shard (`shard.rs`), never to the driver directly.
//! Before each sweep the driver publishes its *promise*: the time by which it will sweep
//! again. An arming thread whose deadline comes before the promise (plus a tick) wakes the
//! driver (`shard.rs` invariant 4), and the driver keeps a short cadence for a while
//! ([`SHORT_TURNS`] turns of one tick) so that a stream of short deadlines does not wake it
//! at every arm. When no thread armed anything since its last sweep and it holds nothing,
//! the driver promises nothing and sleeps until woken: an idle process has an idle timer
//! thread.
//!
//! The inbox is an intrusive Treiber stack of "disarm" [`Link`]s: any thread pushes with
//! one CAS; the driver takes the whole stack with one swap. A disarm message exists only
//! for an entry the driver already took from its shard, so the driver always handles the
//! message after the sweep that took the entry.
//!
//! Reclaiming disarmed entries: an entry disarmed while pending is freed by its disarmer
//! at once. One the driver took is freed when the driver reads its "disarm" message; while
//! it holds any, the driver turns at least every [`MAX_SLEEP`], and after a turn that
//! handled more than [`BUSY_DISARMS`] of them it sleeps at most one tick, which bounds the
//! entries waiting to about a millisecond of churn. To enter that cadence when churn starts
//! during a long sleep, a thread that has sent [`CHECK_EVERY_DISARMS`] messages since it
//! last looked wakes the driver if it promised a longer sleep: once, not at every batch,
//! because an unpark from a thread tends to bring the driver onto that thread's core (the
//! scheduler's wake-affine placement), where it stalls the very thread that makes the
//! churn. Entries the driver releases go back to the next arms (`recycle.rs`).

use super::entry::{Link, TimerEntry, NOT_IN_WHEEL};
use super::recycle::Returns;
use super::shard::{self, nanos_since, registry, TICK_NANOS};
use super::wheel::{Wheel, TICK};
use crate::sync::AtomicU64;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::sync::Mutex;
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// The longest the driver sleeps while the wheel holds entries, so disarmed entries are
/// reclaimed promptly even when the next deadline is far.
pub(crate) const MAX_SLEEP: Duration = Duration::from_millis(16);

/// A turn that handled more disarms (or took more entries from the shards) than this was a
/// busy one: the driver's next sleep is at most one tick.
const BUSY_DISARMS: usize = 2048;

/// Turns of one tick the driver keeps after a busy turn or an arm that had to wake it.
const SHORT_TURNS: u32 = 64;

/// The promise of a driver that promises nothing (`shard.rs` invariant 3).
const NO_PROMISE: u64 = u64::MAX;

struct Driver {
    /// "Disarm" messages.
    inbox: AtomicPtr<Link>,
    /// Nanoseconds after the driver's start by which it sweeps again (`shard.rs`
    /// invariant 3), or [`NO_PROMISE`].
    promise: AtomicU64,
    /// Set by an arm that had to wake the driver: keep a short cadence.
    early: AtomicBool,
}

/// The inbox and the driver's promise: plain statics, so the driver thread reaches them
/// with no lazy initialisation to synchronize with.
static DRIVER: Driver = Driver {
    inbox: AtomicPtr::new(ptr::null_mut()),
    promise: AtomicU64::new(NO_PROMISE),
    early: AtomicBool::new(false),
};

/// What exists once the driver thread runs: its clock origin and its handle.
struct Started {
    start: Instant,
    thread: Thread,
}

/// Null until the driver is started; then the leaked `Started`, never changed again.
/// Published with a Release store and read with an Acquire load, an edge ThreadSanitizer
/// sees (a `OnceLock` publishes through `std`'s precompiled `Once`, which it cannot see).
static STARTED: AtomicPtr<Started> = AtomicPtr::new(ptr::null_mut());

/// Serializes starting the driver. It orders nothing the readers rely on: they read
/// `STARTED` alone.
static STARTING: Mutex<()> = Mutex::new(());

/// The running driver, started on first use.
fn started() -> &'static Started {
    let p = STARTED.load(Ordering::Acquire);
    if !p.is_null() {
        // SAFETY: a non-null `STARTED` is a leaked `Started`, published by the Release store
        // below, and never freed.
        return unsafe { &*p };
    }
    start_driver()
}

#[cold]
fn start_driver() -> &'static Started {
    let _one = STARTING.lock().unwrap_or_else(|e| e.into_inner());
    let p = STARTED.load(Ordering::Acquire);
    if !p.is_null() {
        // SAFETY: as in `started`.
        return unsafe { &*p };
    }
    let start = Instant::now();
    let handle = thread::Builder::new()
        .name("ctxcore-timer".into())
        .spawn(move || run(start))
        .expect("ctxcore: cannot start the timer thread");
    let s: &'static Started = Box::leak(Box::new(Started {
        start,
        thread: handle.thread().clone(),
    }));
    STARTED.store(s as *const Started as *mut Started, Ordering::Release);
    s
}

/// Arms `t` in the calling thread's shard; wakes the driver if `t` is due before the
/// driver's promise (`shard.rs` invariant 4).
pub(crate) fn submit_arm(t: *const TimerEntry) {
    let s = started();
    // SAFETY: `t` is fresh, its node set, unpublished and in no list (`timer::arm`'s
    // contract); its driver count goes to the shard.
    let armed = unsafe { registry::current().arm(t, s.start, &DRIVER.promise) };
    if armed.wake {
        // A hint for the cadence, not a handshake (the wake-up is the handshake).
        if !DRIVER.early.load(Ordering::Relaxed) {
            DRIVER.early.store(true, Ordering::Relaxed);
        }
        s.thread.unpark();
    }
}

/// Every this many of its own disarms, a thread looks whether the driver is in a long sleep
/// (one that would let disarmed entries pile up) and, if so, wakes it.
const CHECK_EVERY_DISARMS: u32 = 1024;

std::thread_local! {
    /// Disarms sent by this thread (wrapping).
    static DISARMS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Sends "disarm" for `t`, an entry the driver took from its shard. The driver handles it
/// at its next turn: within a tick while disarms keep coming, else within [`MAX_SLEEP`]
/// (module docs, "Reclaiming").
pub(crate) fn submit_disarm(t: *const TimerEntry) {
    let d = &DRIVER;
    // SAFETY: `t` is live: the driver's count is held until the driver reads this message.
    let link = unsafe { &(*t).disarm_link } as *const Link as *mut Link;
    let mut head = d.inbox.load(Ordering::Relaxed);
    loop {
        // SAFETY: the link is ours to write until the push succeeds (one message per entry).
        unsafe { (*link).next.store(head, Ordering::Relaxed) };
        // Release: the driver's Acquire swap sees the cancel that preceded the message.
        match d
            .inbox
            .compare_exchange_weak(head, link, Ordering::Release, Ordering::Relaxed)
        {
            Ok(_) => break,
            Err(h) => head = h,
        }
    }
    let n = DISARMS
        .try_with(|c| {
            let n = c.get().wrapping_add(1);
            c.set(n);
            n
        })
        .unwrap_or(1);
    if n.is_multiple_of(CHECK_EVERY_DISARMS) {
        // A hint, not a handshake: Relaxed is enough (a wake-up the driver does not need
        // costs it one turn; one it misses delays the reclaim to its next turn).
        let promise = d.promise.load(Ordering::Relaxed);
        // No need to start the driver: a disarm message follows a sweep, which it made.
        let s = started();
        if promise > nanos_since(s.start, Instant::now()).saturating_add(TICK_NANOS) {
            s.thread.unpark();
        }
    }
}

fn run(start: Instant) {
    let d = &DRIVER;
    let mut wheel = Wheel::new(start);
    // Entries the driver holds a count on: taken from a shard and not yet fired or
    // disarmed. While any exists the driver never sleeps longer than MAX_SLEEP, so a
    // disarm message is handled promptly even when the wheel is empty (an entry cancelled
    // before it was taken).
    let mut outstanding = 0usize;
    let mut returns = Returns::new();
    let mut taken = Vec::with_capacity(shard::CHUNK);
    let mut arms_seen = 0u64;
    let mut idle = false;
    let mut short_turns = 0u32;
    loop {
        if d.early.load(Ordering::Relaxed) {
            d.early.store(false, Ordering::Relaxed);
            short_turns = SHORT_TURNS;
        }
        let cadence = if short_turns > 0 {
            short_turns -= 1;
            TICK
        } else {
            MAX_SLEEP
        };
        let turn = Instant::now();
        let promise = if idle {
            NO_PROMISE
        } else {
            nanos_since(start, turn).saturating_add(cadence.as_nanos() as u64)
        };
        let (swept, arms) = shard::promise_then_sweep(
            &d.promise,
            promise,
            |visit| registry::for_each(visit),
            &mut taken,
            |t| take(t, &mut wheel, &mut outstanding, &mut returns),
        );
        let disarms = drain(d, &mut wheel, &mut outstanding, &mut returns);
        let now = Instant::now();
        wheel.advance(wheel.tick_floor(now), |t| {
            fire(t, &mut outstanding, &mut returns)
        });
        returns.publish();
        let busy = disarms > BUSY_DISARMS || swept > BUSY_DISARMS;
        if busy {
            short_turns = SHORT_TURNS;
        }
        // Idle: nothing held, and no thread armed anything since the last sweep.
        idle = outstanding == 0 && wheel.next_tick().is_none() && arms == arms_seen && !busy;
        arms_seen = arms;
        // Sleep until the promise, the wheel's next deadline, and (holding entries whose
        // disarm message may come) the cadence, whichever is first.
        let mut until = (promise != NO_PROMISE).then(|| start + Duration::from_nanos(promise));
        let mut sooner = |at: Instant| until = Some(until.map_or(at, |u| u.min(at)));
        if let Some(t) = wheel.next_tick() {
            sooner(wheel.instant_of(t).unwrap_or(now + MAX_SLEEP));
        }
        if outstanding > 0 {
            sooner(now + cadence);
        }
        if busy {
            sooner(now + TICK);
        }
        match until {
            None => thread::park(),
            Some(at) => {
                let now = Instant::now();
                if at > now {
                    thread::park_timeout(at - now);
                }
            }
        }
    }
}

/// Puts entry `t`, just taken from its shard, in the wheel (or fires it, if already due).
fn take(t: *const TimerEntry, wheel: &mut Wheel, outstanding: &mut usize, returns: &mut Returns) {
    *outstanding += 1;
    // SAFETY: taken: the driver owns the entry's `pos` and its count (`shard.rs` invariant
    // 2); driver thread.
    unsafe { (*t).set_pos(NOT_IN_WHEEL) };
    // SAFETY: `t` is live: the driver's count on it is held until it fires or its disarm
    // message is read.
    let armed = unsafe { &*t }.is_armed();
    // SAFETY: driver thread (the wheel's only user); `t` is live, as above.
    if armed && !unsafe { wheel.insert(t) } {
        fire(t, outstanding, returns);
    }
}

/// Handles every "disarm" message in the inbox; returns how many there were.
fn drain(d: &Driver, wheel: &mut Wheel, outstanding: &mut usize, returns: &mut Returns) -> usize {
    let mut disarms = 0;
    // Acquire: pairs with `submit_disarm`'s Release CAS.
    let mut top = d.inbox.swap(ptr::null_mut(), Ordering::Acquire);
    while !top.is_null() {
        // SAFETY: a link in the inbox is the disarm link of a live entry whose driver count
        // is held; read its successor before the count goes.
        let (t, next) = unsafe {
            (
                TimerEntry::from_link(top),
                (*top).next.load(Ordering::Relaxed),
            )
        };
        disarms += 1;
        *outstanding -= 1;
        // SAFETY: driver thread; `t` is live until we release our count.
        unsafe {
            wheel.remove(t);
            super::entry::release_to(t, returns);
        }
        top = next;
    }
    disarms
}

/// Fires a due entry taken out of the wheel.
fn fire(t: *const TimerEntry, outstanding: &mut usize, returns: &mut Returns) {
    // SAFETY: the driver holds its count on `t`.
    if unsafe { (*t).fire() } {
        *outstanding -= 1;
        // SAFETY: fired: no disarm message will come, so the driver's count goes now.
        unsafe { super::entry::release_to(t, returns) };
    }
}

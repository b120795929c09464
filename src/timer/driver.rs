//! The timer driver thread and its inbox.
//!
//! The inbox is an intrusive Treiber stack of [`Link`]s: any thread pushes with one CAS;
//! the driver takes the whole stack with one swap and reverses it into arrival order.
//!
//! Sleeping without losing a wakeup: before parking, the driver publishes the tick it will
//! wake at (`next_wake`) and then looks at the inbox once more; an arming thread pushes and
//! then reads `next_wake`, and unparks the driver only if its deadline comes earlier. All
//! four accesses are SeqCst, so either the driver sees the message or the arming thread sees
//! the published tick (and an unpark before the park makes the park return at once).
//!
//! Reclaiming disarmed entries: a disarmed entry is freed when the driver reads its
//! "disarm" message. When contexts with deadlines come and go faster than that (a tight
//! loop can make 100,000 in one 16 ms sleep), the driver sleeps at most one tick after a
//! turn that handled more than [`BUSY_DISARMS`] of them, which bounds the entries waiting
//! to about a millisecond of churn. To enter that cadence when churn starts during a long
//! sleep, a thread that has sent [`CHECK_EVERY_DISARMS`] disarms since it last looked wakes
//! the driver if it plans to sleep longer than that: once, not at every batch, because an
//! unpark from a thread tends to bring the driver onto that thread's core (the scheduler's
//! wake-affine placement), where it stalls the very thread that makes the churn. Measured
//! on the timeout-child bench (Intel Xeon): an unpark every 1,024 disarms cost 1.57x; the
//! timed cadence with this one-time wake, within noise of none. Disarmed entries go back
//! to the next arms (`recycle.rs`).

use super::entry::{Link, Op, TimerEntry};
use super::recycle::Returns;
use super::wheel::{Wheel, TICK};
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// The longest the driver sleeps while the wheel holds entries, so disarmed entries are
/// reclaimed promptly even when the next deadline is far.
pub(crate) const MAX_SLEEP: Duration = Duration::from_millis(16);

/// A turn that handled more disarms than this was a busy one: the driver's next sleep is at
/// most [`BUSY_SLEEP`].
const BUSY_DISARMS: usize = 2048;

/// The longest sleep after a busy turn, so that the entries of disarmed timers (freed when
/// the driver reads their message) stay few however fast deadline contexts come and go
/// (behaviour 14).
const BUSY_SLEEP_TICKS: u64 = 1;

/// `next_wake` value while the driver is awake (it will look at the inbox anyway).
const AWAKE: u64 = 0;

struct Driver {
    inbox: AtomicPtr<Link>,
    next_wake: AtomicU64,
}

/// The inbox and the driver's published wake tick: plain statics, so the driver thread
/// reaches them with no lazy initialisation to synchronize with.
static DRIVER: Driver = Driver {
    inbox: AtomicPtr::new(ptr::null_mut()),
    next_wake: AtomicU64::new(AWAKE),
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

fn push(d: &Driver, link: *const Link, op: Op) {
    let tagged = op.tag(link);
    let mut head = d.inbox.load(Ordering::Relaxed);
    loop {
        // SAFETY: the link belongs to a live entry whose driver count is held until the
        // driver processes this message.
        unsafe { (*link).next.store(head, Ordering::Relaxed) };
        // SeqCst: see the module docs (pairs with the driver's swap and next_wake store).
        match d
            .inbox
            .compare_exchange(head, tagged, Ordering::SeqCst, Ordering::Relaxed)
        {
            Ok(_) => return,
            Err(h) => head = h,
        }
    }
}

/// Sends "arm" for `t`; unparks the driver if `t` is due before it plans to wake.
pub(crate) fn submit_arm(t: *const TimerEntry) {
    let s = started();
    let d = &DRIVER;
    // SAFETY: `t` is live (the driver's count is held until the driver handles it).
    let entry = unsafe { &*t };
    push(d, &entry.arm_link, Op::Arm);
    let wake = d.next_wake.load(Ordering::SeqCst);
    if wake != AWAKE {
        let due = entry.deadline.saturating_duration_since(s.start).as_nanos() / TICK.as_nanos();
        if (due as u64) < wake {
            s.thread.unpark();
        }
    }
}

/// Every this many of its own disarms, a thread looks whether the driver is in a long sleep
/// (one that would let disarmed entries pile up) and, if so, wakes it.
const CHECK_EVERY_DISARMS: u32 = 1024;

std::thread_local! {
    /// Disarms sent by this thread (wrapping).
    static DISARMS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Sends "disarm" for `t`. The driver handles it at its next turn: within a tick while
/// disarms keep coming, else within [`MAX_SLEEP`] (module docs, "Reclaiming").
pub(crate) fn submit_disarm(t: *const TimerEntry) {
    let d = &DRIVER;
    // No need to start the driver: a disarm follows an arm, which started it.
    // SAFETY: as in `submit_arm`.
    push(d, unsafe { &(*t).disarm_link }, Op::Disarm);
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
        let wake = d.next_wake.load(Ordering::Relaxed);
        if wake != AWAKE {
            let s = started();
            let now = (s.start.elapsed().as_nanos() / TICK.as_nanos()) as u64;
            if wake > now + BUSY_SLEEP_TICKS {
                s.thread.unpark();
            }
        }
    }
}

fn run(start: Instant) {
    let d = &DRIVER;
    let mut wheel = Wheel::new(start);
    // Entries the driver holds a count on: armed and not yet fired or disarmed. While any
    // exists the driver never sleeps longer than MAX_SLEEP, so a disarm is handled promptly
    // even when the wheel is empty (an entry cancelled before its "arm" was read).
    let mut outstanding = 0usize;
    let mut returns = Returns::new();
    loop {
        d.next_wake.store(AWAKE, Ordering::SeqCst);
        let disarms = drain(d, &mut wheel, &mut outstanding, &mut returns);
        let now = wheel.tick_floor(Instant::now());
        wheel.advance(now, |t| fire(t, &mut outstanding, &mut returns));
        returns.publish();
        let cap = now
            + if disarms > BUSY_DISARMS {
                BUSY_SLEEP_TICKS
            } else {
                MAX_SLEEP.as_millis() as u64
            };
        let wake_at = match wheel.next_tick() {
            Some(t) => Some(t.min(cap)),
            // After a busy turn, keep the short cadence even with nothing outstanding: the
            // churn goes on, and a timed wake-up is cheaper for it than an unpark per arm.
            None if outstanding > 0 || disarms > BUSY_DISARMS => Some(cap),
            None => None,
        };
        d.next_wake
            .store(wake_at.unwrap_or(u64::MAX), Ordering::SeqCst);
        if !d.inbox.load(Ordering::SeqCst).is_null() {
            continue;
        }
        match wake_at {
            None => thread::park(),
            Some(t) => match wheel.instant_of(t) {
                Some(at) => {
                    let now = Instant::now();
                    if at > now {
                        thread::park_timeout(at - now);
                    }
                }
                None => thread::park_timeout(MAX_SLEEP),
            },
        }
    }
}

/// Handles every message in the inbox, in arrival order; returns how many were disarms.
fn drain(d: &Driver, wheel: &mut Wheel, outstanding: &mut usize, returns: &mut Returns) -> usize {
    let mut disarms = 0;
    let mut top = d.inbox.swap(ptr::null_mut(), Ordering::SeqCst);
    let mut batch = Vec::new();
    while !top.is_null() {
        // Tagged pointers, one word each: the batch of a busy turn stays small.
        batch.push(top);
        // SAFETY: links in the inbox belong to live entries (driver count held).
        top = unsafe { (*Op::untag(top).1).next.load(Ordering::Relaxed) };
    }
    for &tagged in batch.iter().rev() {
        let (op, link) = Op::untag(tagged);
        // SAFETY: a link in the inbox is the arm or disarm link of a live entry, as its tag
        // says.
        let t = unsafe { TimerEntry::from_link(link, op) };
        match op {
            Op::Arm => {
                *outstanding += 1;
                // SAFETY: `t` is live: the driver's count on it is held until this turn
                // releases it.
                let armed = unsafe { &*t }.is_armed();
                // SAFETY: driver thread (the wheel's only user); `t` is live, as above.
                if armed && !unsafe { wheel.insert(t) } {
                    fire(t, outstanding, returns);
                }
            }
            Op::Disarm => {
                disarms += 1;
                *outstanding -= 1;
                // SAFETY: driver thread; `t` is live until we release our count.
                unsafe {
                    wheel.remove(t);
                    super::entry::release_to(t, returns);
                }
            }
        }
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

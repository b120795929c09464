//! Behaviours 2, 13 and 14 at the edges: regression tests for the four failures seen on
//! 8acaa13, each named after the bug it pins.
//!
//! 1. A `cancel()` returned before a grandchild was done, when a child's own cancel raced
//!    it one level down.
//! 2. A dropped pending `Done`/`DoneOwned` kept its task's waker until the next sweep.
//! 3. A disarmed deadline context stayed in memory until its deadline.
//! 4. Callbacks and waiters of contexts that can never be done were never freed.
//!
//! Live heap bytes are counted by this file's global allocator (all threads), so the memory
//! tests must run alone in their process (nextest does that).
mod common;
#[path = "common/spin.rs"]
mod spin;

use ctxcore::Context;
use spin::{Shared, SharedWake, SpinBarrier};
use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

struct LiveBytes;

static LIVE: AtomicI64 = AtomicI64::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for LiveBytes {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: LiveBytes = LiveBytes;

const MB: i64 = 1 << 20;

/// Counts the clones of itself that are alive (`Shared::strong_count`) and its wakes.
#[derive(Default)]
struct Task {
    wakes: AtomicUsize,
}

impl SharedWake for Task {
    fn wake(&self) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
    }
}

/// Drops count up when dropped.
struct Token(Shared<AtomicUsize>);

impl Drop for Token {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Item 1: background → A → B → C (C's handle disarmed). One thread cancels A while
/// another cancels B by its own handle; each `cancel()` must return with C done.
#[test]
fn cancel_returns_after_grandchildren_done_when_a_child_cancel_races() {
    let _leaks = common::leak_check();
    let start = Instant::now();
    let mut rounds = 0u32;
    while rounds < 20_000 && start.elapsed() < Duration::from_secs(3) {
        rounds += 1;
        let (a, ha) = Context::background().with_cancel();
        let (b, hb) = a.with_cancel();
        // A deeper chain under B widens the window of B's own walk.
        let (c, hc) = b.with_cancel();
        hc.disarm();
        let (d, hd) = c.with_cancel();
        hd.disarm();
        let go = Shared::new(SpinBarrier::new(2));
        let t = {
            let (go, c, d) = (go.clone(), c.clone(), d.clone());
            std::thread::spawn(move || {
                go.wait();
                hb.cancel();
                assert!(c.is_done() && d.is_done(), "B's cancel returned early");
            })
        };
        go.wait();
        ha.cancel();
        assert!(
            c.is_done() && d.is_done(),
            "A's cancel returned before its grandchildren were done (round {rounds})"
        );
        t.join().unwrap();
        drop((a, b, c, d));
    }
}

/// Item 2: a pending `done()` and a pending `done_owned()`, polled once and dropped, give
/// their waker clone back before the drop returns.
#[test]
fn dropped_pending_done_releases_its_waker() {
    let _leaks = common::leak_check();
    let (ctx, h) = Context::background().with_cancel();
    let task = Shared::new(Task::default());
    let waker = task.waker();
    let base = Shared::strong_count(&task);
    {
        let mut fut = Box::pin(ctx.done());
        assert!(common::poll_once(&mut fut, &waker).is_pending());
        assert_eq!(
            Shared::strong_count(&task),
            base + 1,
            "the pending future registered"
        );
    }
    assert_eq!(Shared::strong_count(&task), base, "done() kept its waker");
    {
        let mut fut = Box::pin(ctx.done_owned());
        assert!(common::poll_once(&mut fut, &waker).is_pending());
    }
    assert_eq!(
        Shared::strong_count(&task),
        base,
        "done_owned() kept its waker"
    );
    for _ in 0..common::scaled(1_000_000) {
        let mut fut = std::pin::pin!(ctx.done());
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(fut.as_mut().poll(&mut cx).is_pending());
    }
    assert_eq!(
        Shared::strong_count(&task),
        base,
        "dropped done() futures kept wakers"
    );
    h.cancel();
    assert_eq!(
        task.wakes.load(Ordering::SeqCst),
        0,
        "no dropped future is woken"
    );
}

/// Item 2, threads: a `wait_timeout` that times out leaves no waiter behind.
#[test]
fn wait_timeout_that_times_out_leaves_nothing_registered() {
    let _leaks = common::leak_check();
    let (ctx, _h) = Context::background().with_cancel();
    let before = ctxcore::live::snapshot();
    for _ in 0..100 {
        assert!(!ctx.wait_timeout(Duration::from_micros(50)));
    }
    assert_eq!(ctxcore::live::snapshot().waiters, before.waiters);
}

fn disarm_and_drop_under(parent: &Context, n: usize) -> i64 {
    let before = LIVE.load(Ordering::SeqCst);
    let mut peak = 0;
    for i in 0..n {
        let (c, h) = parent.with_timeout(Duration::from_secs(3600));
        h.disarm();
        drop(c);
        if i % 1024 == 0 {
            peak = peak.max(LIVE.load(Ordering::SeqCst) - before);
        }
    }
    peak
}

/// 500,000 disarmed one-hour deadline contexts under `root`, then 500,000 under a
/// cancellable child of it, each dropped at once: live memory stays under 4 MB and no
/// context or timer is left but that child.
fn disarmed_deadline_contexts_keep_nothing_under(root: &Context) {
    let n = common::scaled(500_000);
    let base = ctxcore::live::snapshot();
    // Warm up the timer thread and the epoch's bags.
    disarm_and_drop_under(root, 10_000);
    let peak_root = disarm_and_drop_under(root, n);
    let (parent, _ph) = root.with_cancel();
    let peak_child = disarm_and_drop_under(&parent, n);
    if common::isolated() {
        assert!(
            peak_root < 4 * MB,
            "under {root:?}: {peak_root} bytes retained"
        );
        assert!(
            peak_child < 4 * MB,
            "under a cancellable parent: {peak_child} bytes"
        );
    }
    let now = ctxcore::live::snapshot();
    // Only `parent` is alive beyond the baseline; its timers are all gone already.
    assert_eq!(now.contexts, base.contexts + 1);
    assert_eq!(now.timers, base.timers);
}

/// Item 3: 500,000 disarmed one-hour deadline contexts, dropped at once, keep nothing.
#[test]
fn disarmed_deadline_context_is_freed_at_once() {
    let _leaks = common::leak_check();
    disarmed_deadline_contexts_keep_nothing_under(&Context::background());
}

/// Behaviour 31: the same on a manual clock: its queue entry goes with the context.
#[test]
fn disarmed_deadline_context_on_a_manual_clock_is_freed_at_once() {
    let _leaks = common::leak_check();
    let clock = ctxcore::clock::Clock::manual();
    disarmed_deadline_contexts_keep_nothing_under(&Context::root(&clock));
    assert!(format!("{clock:?}").contains("pending: 0"), "{clock:?}");
}

/// Item 3: a pending `after_func` keeps a disarmed deadline context, and runs at it.
#[test]
fn pending_callback_on_a_disarmed_deadline_context_runs_at_the_deadline() {
    let _leaks = common::leak_check();
    let ran = Shared::new(AtomicBool::new(false));
    let (ctx, h) = Context::background().with_timeout(Duration::from_millis(30));
    let r = ran.clone();
    let after = ctx.after_func(move || r.store(true, Ordering::SeqCst));
    h.disarm();
    drop(ctx);
    drop(after);
    let start = Instant::now();
    while !ran.load(Ordering::SeqCst) && start.elapsed() < common::SOON {
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(ran.load(Ordering::SeqCst), "the callback never ran");
    assert!(start.elapsed() >= Duration::from_millis(20));
}

/// Item 4: background → cancel (disarmed) → value → value → after_func. Nothing can make
/// that context done, so its callback is dropped unrun and its waiters let their wakers go.
#[test]
fn callbacks_on_never_done_contexts_are_dropped() {
    let _leaks = common::leak_check();
    let dropped = Shared::new(AtomicUsize::new(0));
    let ran = Shared::new(AtomicBool::new(false));
    let task = Shared::new(Task::default());
    let waker = task.waker();
    let base = Shared::strong_count(&task);

    let (a, ha) = Context::background().with_cancel();
    let v = a.with_value(1u8).with_value(2u16);
    let (token, r) = (Token(dropped.clone()), ran.clone());
    let after = v.after_func(move || {
        let _t = &token;
        r.store(true, Ordering::SeqCst);
    });
    let mut fut = Box::pin(v.done_owned());
    assert!(common::poll_once(&mut fut, &waker).is_pending());
    assert_eq!(Shared::strong_count(&task), base + 1);
    ha.disarm();
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        1,
        "closure dropped at the disarm"
    );
    assert_eq!(
        Shared::strong_count(&task),
        base,
        "waker released at the disarm"
    );
    assert!(
        common::poll_once(&mut fut, &waker).is_pending(),
        "stays pending"
    );
    assert_eq!(
        Shared::strong_count(&task),
        base,
        "a re-poll registers nothing"
    );
    assert!(!v.is_done() && v.err().is_none());
    // Behaves as background() from now on.
    let late = v.after_func(|| unreachable!("never done"));
    assert!(late.stop());
    let (child, _hc) = v.with_cancel();
    assert!(!child.is_done());
    assert!(after.stop(), "the callback never ran: stop reports it");
    assert!(!after.stop(), "only the first stop counts");
    assert!(!ran.load(Ordering::SeqCst));
    drop((fut, after, a, v, child, late));
    assert_eq!(Shared::strong_count(&task), base);
}

/// Item 4, a deeper chain and the order reversed: contexts and the `AfterFunc` dropped
/// first, handles disarmed last, top-down and bottom-up.
#[test]
fn disarming_in_any_order_ends_with_nothing_retained() {
    let _leaks = common::leak_check();
    let base = ctxcore::live::snapshot();
    for bottom_up in [false, true] {
        let dropped = Shared::new(AtomicUsize::new(0));
        let (a, ha) = Context::background().with_cancel();
        let (b, hb) = a.with_value(7u32).with_cancel();
        let (c, hc) = b.without_cancel().with_cancel();
        for ctx in [&a, &b, &c] {
            let token = Token(dropped.clone());
            drop(ctx.after_func(move || drop(token)));
        }
        drop((a, b, c));
        if bottom_up {
            hc.disarm();
            hb.disarm();
            ha.disarm();
        } else {
            ha.disarm();
            hb.disarm();
            hc.disarm();
        }
        assert_eq!(dropped.load(Ordering::SeqCst), 3, "bottom_up: {bottom_up}");
    }
    ctxcore::live::wait_for_baseline(&base, common::SOON).expect("nothing retained");
}

/// Item 4 racing: disarms of a parent and of its children against callbacks, stops and
/// cancels on other threads; every closure is dropped exactly once and none runs after a
/// true `stop`.
#[test]
fn disarm_racing_stop_and_cancel_loses_nothing() {
    let _leaks = common::leak_check();
    let base = ctxcore::live::snapshot();
    for _ in 0..common::scaled(2_000) {
        let made = Shared::new(AtomicUsize::new(0));
        let dropped = Shared::new(AtomicUsize::new(0));
        let (p, hp) = Context::background().with_cancel();
        let (c1, h1) = p.with_cancel();
        let (c2, h2) = p.with_cancel();
        let mut afters = Vec::new();
        for ctx in [&p, &c1, &c2] {
            let token = Token(dropped.clone());
            made.fetch_add(1, Ordering::SeqCst);
            afters.push(ctx.after_func(move || drop(token)));
        }
        let go = Shared::new(SpinBarrier::new(3));
        let t1 = {
            let go = go.clone();
            std::thread::spawn(move || {
                go.wait();
                hp.disarm();
            })
        };
        let t2 = {
            let go = go.clone();
            std::thread::spawn(move || {
                go.wait();
                h1.disarm();
                h2.cancel();
            })
        };
        go.wait();
        let stopped = afters[1].stop();
        t1.join().unwrap();
        t2.join().unwrap();
        // c2 was cancelled: its callback ran. p and c1 can never be done now.
        assert!(c2.is_done() && !c1.is_done() && !p.is_done());
        let _ = stopped;
        drop((p, c1, c2, afters));
        assert_eq!(dropped.load(Ordering::SeqCst), made.load(Ordering::SeqCst));
    }
    ctxcore::live::wait_for_baseline(&base, common::SOON).expect("nothing retained");
}

/// The walk hands a waiter's LINKED to its future when it reaches the waiter first, and
/// keeps it when the future's drop marked the waiter first (`list.rs` invariant 3). Futures
/// dropped, or polled to the end, while another thread's cancel walks them: in every round
/// each waiter entry is finalized once (no entry left in memory, none freed twice) and no
/// clone of the task's waker is kept.
#[test]
fn futures_leaving_while_a_cancel_wakes_them_leave_nothing() {
    let _leaks = common::leak_check();
    let task = Shared::new(Task::default());
    let waker = task.waker();
    let base = Shared::strong_count(&task);
    let memory = ctxcore::live::entries_in_memory();
    let before = ctxcore::live::snapshot();
    let rounds = if cfg!(miri) { 20 } else { 2_000 };
    for round in 0..rounds {
        let (ctx, handle) = Context::background().with_cancel();
        let mut futs: Vec<_> = (0..16).map(|_| Box::pin(ctx.done_owned())).collect();
        for f in &mut futs {
            assert!(common::poll_once(f, &waker).is_pending());
        }
        let go = std::sync::Arc::new(SpinBarrier::new(2));
        let canceller = {
            let go = go.clone();
            std::thread::spawn(move || {
                go.wait();
                handle.cancel();
            })
        };
        go.wait();
        for (i, mut f) in futs.drain(..).enumerate() {
            if (i + round) % 2 == 0 {
                drop(f); // may race the walk at this very entry
            } else {
                let start = Instant::now();
                while common::poll_once(&mut f, &waker).is_pending() {
                    assert!(
                        start.elapsed() < Duration::from_secs(10),
                        "a future of a cancelled context never became ready"
                    );
                    std::hint::spin_loop();
                }
            }
        }
        canceller.join().unwrap();
        assert!(ctx.is_done());
    }
    assert_eq!(Shared::strong_count(&task), base, "a waker clone was kept");
    ctxcore::live::wait_for_baseline(&before, Duration::from_secs(10)).expect("no waiter left");
    let retained = ctxcore::live::entries_in_memory() - memory;
    assert!(
        retained < 64 || !common::isolated(),
        "{retained} entries of {} waiters still in memory",
        rounds * 16
    );
}

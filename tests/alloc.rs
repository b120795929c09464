//! Allocation budgets, counted by a global allocator on the calling thread.
mod common;
use ctxcore::Context;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::time::Duration;

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let before = ALLOCS.with(Cell::get);
    let r = f();
    (r, ALLOCS.with(Cell::get) - before)
}

fn warm_up() {
    // First use on a thread registers its leak-counter block and epoch handle, and the
    // first timeout starts the timer thread: one-time costs, not per-operation ones.
    let (c, h) = Context::background().with_timeout(Duration::from_secs(30));
    let (cc, ch) = c.with_cancel();
    drop((cc, ch, c, h));
}

#[test]
fn allocation_budgets() {
    let _leaks = common::leak_check();
    warm_up();
    let (roots, n) = allocs(|| (Context::background(), Context::todo()));
    assert_eq!(n, 0, "roots allocate nothing");

    let (parent, _ph) = Context::background().with_cancel();
    let ((child, handle), n) = allocs(|| parent.with_cancel());
    // At most one: none when this thread has spare entry memory (list/pool.rs).
    assert!(n <= 1, "with_cancel under a cancellable parent: {n}");
    let (_, n) = allocs(|| roots.0.with_cancel());
    assert!(n <= 1, "with_cancel under background: {n}");

    let (clone, n) = allocs(|| child.clone());
    assert_eq!(n, 0, "clone");

    let mut v = Context::background();
    for depth in 0..6u8 {
        let (next, n) = allocs(|| {
            v.with_value(depth as u64 * 1000 + depth as u64)
                .with_value(depth)
        });
        assert!(n <= 2, "two with_value calls, depth {depth}: {n}");
        v = next;
    }
    let (_, n) = allocs(|| v.with_value("one more"));
    assert!(n <= 1, "with_value: {n}");

    let ((t, th), n) = allocs(|| parent.with_timeout(Duration::from_secs(30)));
    assert!(n <= 2, "with_timeout: {n}");
    let (_, n) = allocs(|| th.cancel());
    assert_eq!(n, 0, "cancelling a leaf");
    drop(t);

    handle.cancel();
    let (ready, n) = allocs(|| {
        let mut d = std::pin::pin!(clone.done());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        d.as_mut().poll(&mut cx).is_ready()
    });
    assert!(ready);
    assert_eq!(n, 0, "done().await on a done context");
    let (_, n) = allocs(|| clone.is_done() && clone.check().is_err() && clone.err().is_some());
    assert_eq!(n, 0, "observing");

    // A thread in `wait()` sleeps on the node's futex word: no waiter entry.
    let (ctx, h) = Context::background().with_cancel();
    let (n, ()) = std::thread::scope(|s| {
        let waiter = s.spawn(|| allocs(|| ctx.wait()).1);
        std::thread::sleep(Duration::from_millis(20));
        h.cancel();
        (waiter.join().unwrap(), ())
    });
    assert_eq!(n, 0, "a thread blocked in wait()");
}

/// Allocations per call of `cycle`, on this thread, after a warm-up.
fn allocations_per_cycle(cycle: impl Fn()) -> f64 {
    for _ in 0..10_000 {
        cycle();
    }
    let n = 20_000;
    let ((), allocated) = allocs(|| (0..n).for_each(|_| cycle()));
    allocated as f64 / n as f64
}

#[test]
fn derive_cancel_drop_in_a_loop_reuses_entry_memory() {
    // Dead entries reach the epoch in batches and come back to this thread's pool
    // (list/pool.rs): after a warm-up, a derive + cancel + drop cycle takes its entry from
    // there, not from the allocator. The epoch's own bags are the exception: one per 128
    // dead entries (list/grave.rs flushes by the amount of garbage), 0.008 per cycle.
    // Without that flush, collection follows the rarer pins and this reads 0.11.
    let (parent, _ph) = Context::background().with_cancel();
    let per_op = allocations_per_cycle(|| {
        let (c, h) = parent.with_cancel();
        h.cancel();
        assert!(c.is_done());
    });
    assert!(
        per_op < 0.05,
        "{per_op} allocations per derive + cancel + drop"
    );
}

#[test]
fn a_deadline_cycle_reuses_its_node_and_timer_entry() {
    // A deadline disarmed before the timer thread's sweep never leaves its thread
    // (timer/shard.rs): its entry comes back from this thread's released entries
    // (timer/recycle.rs) and its node from the entry pool (list/pool.rs).
    let parent = Context::background();
    let per_op = allocations_per_cycle(|| {
        let (ctx, h) = parent.with_timeout(Duration::from_secs(30));
        h.cancel();
        assert!(ctx.is_done());
    });
    assert!(per_op < 0.05, "{per_op} allocations per deadline cycle");
}

#[test]
fn with_value_allocates_once_however_many_types_are_visible() {
    // Beyond four visible types the value table follows the value in the node's own
    // allocation (src/value.rs): one allocation per `with_value`, as with fewer types.
    struct T5;
    struct T6;
    struct T7;
    let parent = Context::background()
        .with_value(1u8)
        .with_value(2u16)
        .with_value(3u32)
        .with_value(4u64)
        .with_value(T5)
        .with_value(T6)
        .with_value(T7);
    for visible in [1, 7] {
        let base = if visible == 1 {
            Context::background()
        } else {
            parent.clone()
        };
        let (ctx, n) = allocs(|| base.with_value(8i8));
        assert_eq!(ctx.value::<i8>(), Some(&8));
        assert_eq!(
            n, 1,
            "allocations of a with_value over {visible} visible type(s)"
        );
    }
}

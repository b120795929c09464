//! Heap bytes per live context, counted by a global allocator: 100,000 contexts of one kind
//! kept alive at once, the bytes still allocated (process-wide, every thread) divided by
//! their number. Each kind is measured alone: the tests of this file take one lock, so no
//! other test's allocations fall inside a measurement. Run one test per process, as
//! nextest does (and `benches/compare.sh`): in one process, the deferred frees of an
//! earlier test's contexts can land inside a later measurement and make it read low.
//!
//! The budgets are the memory targets of the crate's documentation ("Memory").
use ctxcore::Context;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

struct Counting;

/// Bytes allocated and not yet freed, by every thread.
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator with the caller's arguments; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const N: usize = 100_000;

/// Heap bytes per live item: `N` items made by `make` kept alive together, measured once
/// the figure has settled (the timer thread has taken in every arm: its wheel's memory
/// counts, the batch it was reading does not). The items are dropped before it returns.
fn bytes_per_live<T>(make: impl Fn() -> T) -> f64 {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // One-time costs (thread registration, the timer thread, its wheel) fall outside.
    drop((0..1000).map(|_| make()).collect::<Vec<_>>());
    std::thread::sleep(Duration::from_millis(20));
    let mut kept = Vec::with_capacity(N);
    let before = LIVE.load(Ordering::SeqCst);
    for _ in 0..N {
        kept.push(make());
    }
    let mut settled = LIVE.load(Ordering::SeqCst) - before;
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(20));
        let now = LIVE.load(Ordering::SeqCst) - before;
        if now == settled {
            break;
        }
        settled = now;
    }
    assert_eq!(kept.len(), N);
    drop(kept);
    settled as f64 / N as f64
}

#[test]
fn a_cancellable_child_takes_at_most_96_bytes() {
    let (parent, _h) = Context::background().with_cancel();
    let b = bytes_per_live(|| parent.with_cancel());
    println!("cancellable child: {b:.1} B");
    assert!(b <= 96.0, "{b:.1} B per cancellable child");
}

#[test]
fn a_child_with_a_deadline_takes_at_most_160_bytes() {
    let b = bytes_per_live(|| Context::background().with_timeout(Duration::from_secs(3600)));
    println!("deadline child: {b:.1} B");
    assert!(b <= 160.0, "{b:.1} B per child with a deadline");
}

#[test]
fn with_value_takes_at_most_96_bytes_while_four_types_are_visible() {
    for visible in 0..4u32 {
        let mut parent = Context::background();
        for t in 0..visible {
            parent = match t {
                0 => parent.with_value(1u8),
                1 => parent.with_value(2u16),
                _ => parent.with_value(3u32),
            };
        }
        let b = bytes_per_live(|| parent.with_value(7u64));
        println!("with_value with {} types visible: {b:.1} B", visible + 1);
        assert!(b <= 96.0, "{b:.1} B per with_value, {} types", visible + 1);
        assert_eq!(parent.with_value(7u64).value::<u64>(), Some(&7));
    }
}

#[test]
fn with_value_beyond_four_types_still_counts_its_trailing_table() {
    let parent = Context::background()
        .with_value(1u8)
        .with_value(2u16)
        .with_value(3u32)
        .with_value(4i8);
    let b = bytes_per_live(|| parent.with_value(5u64));
    println!("with_value with 5 types visible: {b:.1} B");
    // The 96-byte node plus its trailing table of 8 two-word slots, in one allocation.
    assert!(b > 96.0 && b <= 96.0 + 8.0 * 16.0, "{b:.1} B");
}

#[test]
fn a_request_with_a_deadline_and_two_values_takes_at_most_400_bytes() {
    struct RequestId(#[allow(dead_code)] u64);
    struct User(#[allow(dead_code)] u64);
    let b = bytes_per_live(|| {
        let (ctx, h) = Context::background().with_timeout(Duration::from_secs(3600));
        (ctx.with_value(RequestId(1)).with_value(User(2)), h)
    });
    println!("request: {b:.1} B");
    assert!(b <= 400.0, "{b:.1} B per request");
}

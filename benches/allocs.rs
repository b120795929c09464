//! Heap allocations per operation, counted by a global allocator: on the calling thread
//! (mean, min and max over single operations) and process-wide (mean, which also sees any
//! work a timer thread or a deferred reclamation does for the operation). `realloc` counts as
//! an allocation. Prints one `ALLOC` line per workload and peer, read by benches/report.py.
//!
//! Run: `cargo bench --bench allocs`. Speaks just enough of the test-harness protocol to sit
//! among `--all-targets` test runners: `--list` lists nothing (there is nothing to assert
//! against a budget here: PERF.md reports the counts), and without `--bench` (`cargo test
//! --benches`) every workload runs a few operations as a smoke test and prints nothing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{mutex_ctx, Ctx, Deadlines, Values};

mod common;

struct Counting;

static GLOBAL_COUNT: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static LOCAL_COUNT: Cell<u64> = const { Cell::new(0) };
    static LOCAL_BYTES: Cell<u64> = const { Cell::new(0) };
}

fn note(size: usize) {
    GLOBAL_COUNT.fetch_add(1, Ordering::Relaxed);
    // `try_with`: an allocation during thread teardown is counted globally only.
    let _ = LOCAL_COUNT.try_with(|c| c.set(c.get() + 1));
    let _ = LOCAL_BYTES.try_with(|c| c.set(c.get() + size as u64));
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract is `System`'s; the counting touches only atomics and const-init
// thread-locals without destructors, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller upholds `alloc`'s contract, which we forward.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator, with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: the caller upholds `realloc`'s contract, which we forward.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

use std::sync::atomic::AtomicBool;

/// False in the smoke mode (no `--bench`): few operations, no output.
static FULL: AtomicBool = AtomicBool::new(true);

fn local() -> (u64, u64) {
    (LOCAL_COUNT.with(Cell::get), LOCAL_BYTES.with(Cell::get))
}

/// Runs `op` and prints its allocation counts.
fn measure(workload: &str, peer: &str, mut op: impl FnMut(u64)) {
    let full = FULL.load(Ordering::Relaxed);
    let (warmup, ops) = if full { (2_000, 20_000) } else { (10, 100) };
    for i in 0..warmup {
        op(i);
    }
    let (mut min, mut max) = (u64::MAX, 0);
    let (c0, b0) = local();
    let g0 = GLOBAL_COUNT.load(Ordering::Relaxed);
    for i in 0..ops {
        let (before, _) = local();
        op(i);
        let n = local().0 - before;
        min = min.min(n);
        max = max.max(n);
    }
    let g1 = GLOBAL_COUNT.load(Ordering::Relaxed);
    let (c1, b1) = local();
    if !full {
        return;
    }
    let ops = ops as f64;
    println!(
        "ALLOC {workload} {peer} thread_mean={:.3} thread_min={min} thread_max={max} \
         global_mean={:.3} bytes_mean={:.1}",
        (c1 - c0) as f64 / ops,
        (g1 - g0) as f64 / ops,
        (b1 - b0) as f64 / ops,
    );
}

fn child<C: Ctx>() {
    let (parent, _h) = C::cancellable_root();
    measure("child", C::NAME, |_| {
        let (ctx, h) = black_box(&parent).child();
        C::cancel(&h);
        assert!(ctx.is_done());
    });
}

fn timeout_child<C: Deadlines>() {
    let (parent, _h) = C::cancellable_root();
    measure("timeout_child", C::NAME, |_| {
        let (ctx, h) = black_box(&parent).child_timeout(Duration::from_secs(30));
        C::cancel(&h);
        assert!(ctx.is_done());
    });
}

struct RequestId(u64);
struct User(&'static str);

fn request<C: Deadlines + Values>() {
    let (server, _h) = C::cancellable_root();
    measure("request", C::NAME, |id| {
        let (req, handle) = server.child_timeout(Duration::from_secs(5));
        let req = req.with_value(RequestId(id)).with_value(User("gopher"));
        let subs = [req.child(), req.child(), req.child()];
        for (sub, _) in &subs {
            assert_eq!(sub.value::<RequestId>().map(|r| r.0), Some(id));
            for _ in 0..10 {
                assert!(!black_box(sub).is_done());
            }
        }
        C::cancel(&handle);
        assert!(subs.iter().all(|(s, _)| s.is_done()));
        assert_eq!(req.value::<User>().map(|u| u.0), Some("gopher"));
    });
}

fn with_value<C: Values>() {
    let (root, _h) = C::cancellable_root();
    let base = root.with_value(User("gopher"));
    measure("with_value", C::NAME, |i| {
        let ctx = black_box(&base).with_value(RequestId(i));
        assert_eq!(ctx.value::<RequestId>().map(|r| r.0), Some(i));
    });
}

fn check<C: Ctx>() {
    let (root, _h) = C::cancellable_root();
    measure("check", C::NAME, |_| assert!(!black_box(&root).is_done()));
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    FULL.store(args.iter().any(|a| a == "--bench"), Ordering::Relaxed);
    child::<ctxcore::Context>();
    child::<mutex_ctx::Context>();
    child::<tokio_util::sync::CancellationToken>();
    timeout_child::<ctxcore::Context>();
    timeout_child::<mutex_ctx::Context>();
    request::<ctxcore::Context>();
    request::<mutex_ctx::Context>();
    with_value::<ctxcore::Context>();
    with_value::<mutex_ctx::Context>();
    check::<ctxcore::Context>();
    check::<mutex_ctx::Context>();
    check::<tokio_util::sync::CancellationToken>();
}

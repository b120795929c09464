//! What the engine's building blocks cost on this machine, to explain the per-operation
//! figures of the other benches (PERF.md, "Floors"): an uncontended locked
//! read-modify-write (the unit ctxcore's lock-free paths pay), a SeqCst fence (what an epoch
//! pin costs on x86), an allocation and free of a context-sized block, a plain Acquire
//! load (the floor of `is_done()`), and a read of the system clock (what `with_timeout`
//! adds to a derive before anything else).
//!
//! Each sample asserts its work happened (the counter's final value, the allocation's
//! contents, the clock never going back).

use std::hint::black_box;
use std::sync::atomic::{fence, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};

fn rmw(c: &mut Criterion) {
    c.bench_function("primitive_fetch_add", |b| {
        b.iter_custom(|iters| {
            let a = AtomicUsize::new(0);
            let start = Instant::now();
            for _ in 0..iters {
                black_box(&a).fetch_add(1, Ordering::AcqRel);
            }
            let t = start.elapsed();
            assert_eq!(a.load(Ordering::Relaxed) as u64, iters);
            t
        })
    });
    c.bench_function("primitive_cas", |b| {
        b.iter_custom(|iters| {
            let a = AtomicUsize::new(0);
            let start = Instant::now();
            for i in 0..iters as usize {
                let ok = black_box(&a)
                    .compare_exchange(i, i + 1, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok();
                assert!(ok);
            }
            let t = start.elapsed();
            assert_eq!(a.load(Ordering::Relaxed) as u64, iters);
            t
        })
    });
    c.bench_function("primitive_fence_seqcst", |b| {
        b.iter_custom(|iters| {
            let a = AtomicUsize::new(0);
            let start = Instant::now();
            for _ in 0..iters {
                fence(Ordering::SeqCst);
                black_box(&a).store(1, Ordering::Relaxed);
            }
            let t = start.elapsed();
            assert_eq!(a.load(Ordering::Relaxed), usize::from(iters > 0));
            t
        })
    });
    c.bench_function("primitive_load_acquire", |b| {
        b.iter_custom(|iters| {
            let a = AtomicUsize::new(1);
            let start = Instant::now();
            let mut sum = 0u64;
            for _ in 0..iters {
                sum += black_box(&a).load(Ordering::Acquire) as u64;
            }
            let t = start.elapsed();
            assert_eq!(sum, iters);
            t
        })
    });
    c.bench_function("primitive_alloc_free_128", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            let mut sum = 0u64;
            for i in 0..iters {
                let block = black_box(Box::new([i; 16]));
                sum += block[15];
            }
            let t: Duration = start.elapsed();
            assert_eq!(sum, iters * iters.saturating_sub(1) / 2);
            t
        })
    });
}

/// A read of the system clock: what `with_timeout` pays to know when its deadline is.
fn clock(c: &mut Criterion) {
    c.bench_function("primitive_instant_now", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            let mut last = start;
            for _ in 0..iters {
                let now = black_box(Instant::now());
                assert!(now >= last);
                last = now;
            }
            start.elapsed()
        })
    });
}

criterion_group!(benches, rmw, clock);
criterion_main!(benches);

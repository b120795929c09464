//! Two threads at once derive a child from one shared parent, cancel it and drop it, in a
//! loop: the parent's child list (a lock for the mutex baseline and tokio-util) is the
//! contended spot.
//!
//! One iteration is one derive + cancel + drop on *each* of the two threads; the time is
//! wall time from both threads' release to both joined, so the aggregate throughput is
//! 2 operations per iteration time. Each thread asserts its children were done.
//!
//! `contended_shared/ctxcore` is the same loop under a root made with
//! `Context::with_cancel_shared`, whose children register on per-thread stripes;
//! `contended_separate/ctxcore` gives each thread a root of its own (nothing shared: what
//! the machine's two CPUs allow).

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use common::{mutex_ctx, Ctx};
use criterion::{criterion_group, criterion_main, Criterion};

mod common;

const THREADS: usize = 2;

fn worker<C: Ctx>(parent: &C, iters: u64) {
    let mut done = 0u64;
    for _ in 0..iters {
        let (ctx, h) = black_box(parent).child();
        C::cancel(&h);
        done += ctx.is_done() as u64;
        drop(black_box(ctx));
        drop(h);
    }
    assert_eq!(done, iters);
}

fn run<C: Ctx>(parent: &C, iters: u64) -> Duration {
    let barrier = Barrier::new(THREADS + 1);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                barrier.wait();
                worker(parent, iters);
            });
        }
        barrier.wait();
        let start = Instant::now();
        // The scope joins both threads before returning.
        start
    })
    .elapsed()
}

fn peer<C: Ctx>(c: &mut Criterion) {
    let (parent, _handle) = C::cancellable_root();
    c.bench_function(&format!("contended/{}", C::NAME), |b| {
        b.iter_custom(|iters| {
            let t = run(&parent, iters);
            assert!(!parent.is_done());
            t
        })
    });
}

fn shared(c: &mut Criterion) {
    let (parent, _handle) = ctxcore::Context::background().with_cancel_shared();
    c.bench_function("contended_shared/ctxcore", |b| {
        b.iter_custom(|iters| {
            let t = run(&parent, iters);
            assert!(!parent.is_done());
            t
        })
    });
}

/// The same two threads, each under a root of its own: nothing is shared, so this is what
/// the machine's two CPUs give (the floor of the shared-root rows).
fn separate(c: &mut Criterion) {
    let roots = [
        ctxcore::Context::background().with_cancel(),
        ctxcore::Context::background().with_cancel(),
    ];
    c.bench_function("contended_separate/ctxcore", |b| {
        b.iter_custom(|iters| {
            let barrier = Barrier::new(THREADS + 1);
            let t = std::thread::scope(|s| {
                for (root, _) in &roots {
                    let barrier = &barrier;
                    s.spawn(move || {
                        barrier.wait();
                        worker(root, iters);
                    });
                }
                barrier.wait();
                Instant::now()
            })
            .elapsed();
            assert!(roots.iter().all(|(r, _)| !r.is_done()));
            t
        })
    });
}

fn benches(c: &mut Criterion) {
    peer::<ctxcore::Context>(c);
    shared(c);
    separate(c);
    peer::<mutex_ctx::Context>(c);
    peer::<tokio_util::sync::CancellationToken>(c);
}

criterion_group!(contended, benches);
criterion_main!(contended);

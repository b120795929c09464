//! `is_done()` on a live cancellable context, against a plain `AtomicBool` load (the floor),
//! the mutex baseline and tokio-util's `is_cancelled()`.
//!
//! Each sample counts the `true` answers and asserts the count: a live context must answer
//! `false` every time, a cancelled one `true` every time.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{mutex_ctx, Ctx};
use criterion::{criterion_group, criterion_main, Criterion};

mod common;

/// Times `iters` checks; asserts every answer was `expect`.
fn run_checks<C: Ctx>(ctx: &C, iters: u64, expect: bool) -> Duration {
    let start = Instant::now();
    let mut done = 0u64;
    for _ in 0..iters {
        done += black_box(ctx).is_done() as u64;
    }
    let t = start.elapsed();
    assert_eq!(done, if expect { iters } else { 0 });
    t
}

/// The same checks as a hot loop writes them: the context is opaque once, before the loop,
/// so the compiler may keep the handle's pointer in a register and only the state load
/// stays in the loop (`check_hoisted`).
fn run_checks_hoisted<C: Ctx>(ctx: &C, iters: u64) -> Duration {
    let ctx = black_box(ctx);
    let start = Instant::now();
    let mut done = 0u64;
    for _ in 0..iters {
        done += ctx.is_done() as u64;
    }
    let t = start.elapsed();
    assert_eq!(black_box(done), 0);
    t
}

fn live<C: Ctx>(c: &mut Criterion) {
    let (ctx, handle) = C::cancellable_root();
    let (child, _child_handle) = ctx.child();
    c.bench_function(&format!("check/{}", C::NAME), |b| {
        b.iter_custom(|iters| run_checks(&child, iters, false))
    });
    c.bench_function(&format!("check_hoisted/{}", C::NAME), |b| {
        b.iter_custom(|iters| run_checks_hoisted(&child, iters))
    });
    C::cancel(&handle);
    c.bench_function(&format!("check_done/{}", C::NAME), |b| {
        b.iter_custom(|iters| run_checks(&child, iters, true))
    });
}

fn floor(c: &mut Criterion) {
    let flag = AtomicBool::new(false);
    c.bench_function("check/atomicbool", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            let mut done = 0u64;
            for _ in 0..iters {
                done += black_box(&flag).load(Ordering::Acquire) as u64;
            }
            let t = start.elapsed();
            assert_eq!(done, 0);
            t
        })
    });
}

fn floor_hoisted(c: &mut Criterion) {
    let flag = AtomicBool::new(false);
    c.bench_function("check_hoisted/atomicbool", |b| {
        b.iter_custom(|iters| {
            let flag = black_box(&flag);
            let start = Instant::now();
            let mut done = 0u64;
            for _ in 0..iters {
                done += flag.load(Ordering::Acquire) as u64;
            }
            let t = start.elapsed();
            assert_eq!(black_box(done), 0);
            t
        })
    });
}

fn benches(c: &mut Criterion) {
    floor(c);
    floor_hoisted(c);
    live::<ctxcore::Context>(c);
    live::<mutex_ctx::Context>(c);
    live::<tokio_util::sync::CancellationToken>(c);
}

criterion_group!(check, benches);
criterion_main!(check);

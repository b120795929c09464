//! Derive a child from a long-lived cancellable parent, cancel it, drop it; and the same with
//! a 30 s timeout. tokio-util has no deadlines: it is skipped for the timeout child.
//!
//! Every iteration asserts the child is done after the cancel; every sample asserts the
//! parent is still live.

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::{mutex_ctx, Ctx, Deadlines};
use criterion::{criterion_group, criterion_main, Criterion};

mod common;

fn child<C: Ctx>(c: &mut Criterion) {
    let (parent, _handle) = C::cancellable_root();
    c.bench_function(&format!("child/{}", C::NAME), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let (ctx, h) = black_box(&parent).child();
                C::cancel(&h);
                assert!(ctx.is_done());
                drop(black_box(ctx));
                drop(h);
            }
            let t = start.elapsed();
            assert!(!parent.is_done());
            t
        })
    });
}

fn timeout_child<C: Deadlines>(c: &mut Criterion) {
    let (parent, _handle) = C::cancellable_root();
    c.bench_function(&format!("timeout_child/{}", C::NAME), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let (ctx, h) = black_box(&parent).child_timeout(Duration::from_secs(30));
                C::cancel(&h);
                assert!(ctx.is_done());
                drop(black_box(ctx));
                drop(h);
            }
            let t = start.elapsed();
            assert!(!parent.is_done());
            t
        })
    });
}

fn benches(c: &mut Criterion) {
    child::<ctxcore::Context>(c);
    child::<mutex_ctx::Context>(c);
    child::<tokio_util::sync::CancellationToken>(c);
    timeout_child::<ctxcore::Context>(c);
    timeout_child::<mutex_ctx::Context>(c);
}

criterion_group!(child_benches, benches);
criterion_main!(child_benches);

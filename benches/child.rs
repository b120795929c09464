//! Derive a child from a long-lived cancellable parent, cancel it, drop it; and the same with
//! a 30 s timeout. tokio-util has no deadlines: it is skipped for the timeout child.
//!
//! `child_churn1000` is the same derive + cancel + drop under a parent that keeps 1,000 live
//! children, cancelled oldest first (a server whose requests finish in about the order they
//! started): it shows what a removal costs when the child is not the parent's newest.
//!
//! Every iteration asserts the child is done after the cancel; every sample asserts the
//! parent is still live.

use std::collections::VecDeque;
use std::hint::black_box;
use std::time::{Duration, Instant};

use common::{mutex_ctx, Ctx, Deadlines};
use criterion::{criterion_group, criterion_main, Criterion};

mod common;

/// Times derive (by `derive`) + cancel + drop of one child per iteration, under one
/// long-lived parent; asserts each child done and the parent live.
fn derive_cancel_drop<C: Ctx>(
    c: &mut Criterion,
    name: &str,
    derive: impl Fn(&C) -> (C, C::Handle),
) {
    let (parent, _handle) = C::cancellable_root();
    c.bench_function(&format!("{name}/{}", C::NAME), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let (ctx, h) = derive(black_box(&parent));
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

fn child<C: Ctx>(c: &mut Criterion) {
    derive_cancel_drop::<C>(c, "child", C::child);
}

fn timeout_child<C: Deadlines>(c: &mut Criterion) {
    derive_cancel_drop::<C>(c, "timeout_child", |p| {
        p.child_timeout(Duration::from_secs(30))
    });
}

/// Live children kept under the parent in `child_churn1000`.
const LIVE: usize = 1_000;

fn child_churn<C: Ctx>(c: &mut Criterion) {
    let (parent, _handle) = C::cancellable_root();
    let mut live: VecDeque<(C, C::Handle)> = (0..LIVE).map(|_| parent.child()).collect();
    c.bench_function(&format!("child_churn1000/{}", C::NAME), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let (old, h) = live.pop_front().expect("LIVE children");
                C::cancel(&h);
                assert!(old.is_done());
                drop(black_box(old));
                drop(h);
                live.push_back(black_box(&parent).child());
            }
            let t = start.elapsed();
            assert!(!parent.is_done() && live.len() == LIVE);
            assert!(live.iter().all(|(c, _)| !c.is_done()));
            t
        })
    });
}

fn benches(c: &mut Criterion) {
    child::<ctxcore::Context>(c);
    child::<mutex_ctx::Context>(c);
    child::<tokio_util::sync::CancellationToken>(c);
    child_churn::<ctxcore::Context>(c);
    child_churn::<mutex_ctx::Context>(c);
    child_churn::<tokio_util::sync::CancellationToken>(c);
    timeout_child::<ctxcore::Context>(c);
    timeout_child::<mutex_ctx::Context>(c);
}

criterion_group!(child_benches, benches);
criterion_main!(child_benches);

//! `value::<T>()` at chain depth 1, 8 and 64, and the cost of `with_value` (plus its drop) on
//! a context of those depths. tokio-util has no values: it is skipped.
//!
//! The chain holds `depth` values of distinct types (`K<0>` .. `K<depth-1>`), added root
//! first; the lookup asks for `K<0>`, the value farthest from the leaf, which is the worst
//! case for a chain walk. Each sample sums what it found and asserts the sum.

use std::hint::black_box;
use std::time::Instant;

use common::{mutex_ctx, Values};
use criterion::{criterion_group, criterion_main, Criterion};

mod common;

/// A key type per chain level: `K<0>`, `K<1>`, ... have distinct `TypeId`s.
struct K<const N: usize>(u64);

/// The value `with_value` adds in the derivation benchmark.
struct Extra(u64);

macro_rules! chain {
    ($base:expr; $($n:literal)*) => {{
        let mut c = $base;
        $( c = c.with_value(K::<$n>($n + 1)); )*
        c
    }};
}

fn depth1<C: Values>(base: C) -> C {
    chain!(base; 0)
}

fn depth8<C: Values>(base: C) -> C {
    chain!(base; 0 1 2 3 4 5 6 7)
}

fn depth64<C: Values>(base: C) -> C {
    chain!(base;
        0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31
        32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60
        61 62 63)
}

fn at_depth<C: Values>(c: &mut Criterion, depth: usize, build: fn(C) -> C) {
    let (root, _handle) = C::cancellable_root();
    let ctx = build(root);
    c.bench_function(&format!("value_lookup/{}/{depth}", C::NAME), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            let mut sum = 0u64;
            for _ in 0..iters {
                sum += black_box(&ctx).value::<K<0>>().map_or(0, |k| k.0);
            }
            let t = start.elapsed();
            assert_eq!(sum, iters);
            t
        })
    });
    c.bench_function(&format!("with_value/{}/{depth}", C::NAME), |b| {
        b.iter_custom(|iters| {
            let mut last = None;
            let start = Instant::now();
            for i in 0..iters {
                last = Some(black_box(&ctx).with_value(Extra(i)));
            }
            let t = start.elapsed();
            let last = last.expect("iters > 0");
            assert_eq!(last.value::<Extra>().map(|e| e.0), Some(iters - 1));
            assert_eq!(last.value::<K<0>>().map(|k| k.0), Some(1));
            t
        })
    });
}

fn peer<C: Values>(c: &mut Criterion) {
    at_depth::<C>(c, 1, depth1::<C>);
    at_depth::<C>(c, 8, depth8::<C>);
    at_depth::<C>(c, 64, depth64::<C>);
}

fn benches(c: &mut Criterion) {
    peer::<ctxcore::Context>(c);
    peer::<mutex_ctx::Context>(c);
}

criterion_group!(values, benches);
criterion_main!(values);

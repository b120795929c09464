//! `value::<T>()` at chain depth 1, 8 and 64, and the cost of `with_value` (plus its drop) on
//! a context of those depths. tokio-util has no values: it is skipped.
//!
//! Two chain shapes, both `depth` derivations long, both asked for the value farthest from
//! the leaf (the worst case for a chain walk):
//!
//! * `value_lookup/<depth>`: `depth` values of `depth` distinct types (`K<0>` ..
//!   `K<depth-1>`), added root first; the lookup asks for `K<0>`. Every level adds a type,
//!   so a per-type map grows with the depth too.
//! * `value_lookup_mixed/<depth>`: a `Root` value, then `depth - 1` derivations cycling
//!   through `with_cancel` and `with_value` of three other types (which shadow each other):
//!   a server's chain, deep but with few distinct types. The lookup asks for `Root`.
//!
//! `with_value/…` and `with_value_mixed/…` time one more `with_value` (and its drop) on those
//! chains. Each sample sums what it found and asserts the sum.

use std::hint::black_box;
use std::time::Instant;

use common::{mutex_ctx, Values};
use criterion::{criterion_group, criterion_main, Criterion};

mod common;

/// A key type per chain level: `K<0>`, `K<1>`, ... have distinct `TypeId`s.
struct K<const N: usize>(u64);

/// The value `with_value` adds in the derivation benchmark.
struct Extra(u64);

/// The mixed chain's types: `Root` at the bottom, then `LevelA`, `LevelB`, `LevelC` over and over.
struct Root(u64);
/// (Their contents are never read: only their types matter.)
#[allow(dead_code)]
struct LevelA(u64);
#[allow(dead_code)]
struct LevelB(u64);
#[allow(dead_code)]
struct LevelC(u64);

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

/// A chain of `depth` derivations: `Root`, then `with_cancel`, `LevelA`, `LevelB`, `LevelC`, ... The
/// returned handles keep the cancellable levels alive (dropping one would cancel).
fn mixed<X: Values>(base: X, depth: usize) -> (X, Vec<X::Handle>) {
    let mut c = base.with_value(Root(1));
    let mut handles = Vec::new();
    for i in 1..depth as u64 {
        c = match i % 4 {
            1 => {
                let (child, h) = c.child();
                handles.push(h);
                child
            }
            2 => c.with_value(LevelA(i)),
            3 => c.with_value(LevelB(i)),
            _ => c.with_value(LevelC(i)),
        };
    }
    (c, handles)
}

/// Times `value::<L>()` and `with_value` on `ctx`; `get` reads the looked-up value, which
/// must be 1.
fn bench_chain<X: Values, L: Send + Sync + 'static>(
    c: &mut Criterion,
    name: &str,
    depth: usize,
    ctx: &X,
    get: fn(&L) -> u64,
) {
    c.bench_function(&format!("value_lookup{name}/{}/{depth}", X::NAME), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            let mut sum = 0u64;
            for _ in 0..iters {
                sum += black_box(ctx).value::<L>().map_or(0, get);
            }
            let t = start.elapsed();
            assert_eq!(sum, iters);
            t
        })
    });
    c.bench_function(&format!("with_value{name}/{}/{depth}", X::NAME), |b| {
        b.iter_custom(|iters| {
            let mut last = None;
            let start = Instant::now();
            for i in 0..iters {
                last = Some(black_box(ctx).with_value(Extra(i)));
            }
            let t = start.elapsed();
            let last = last.expect("iters > 0");
            assert_eq!(last.value::<Extra>().map(|e| e.0), Some(iters - 1));
            assert_eq!(last.value::<L>().map(get), Some(1));
            t
        })
    });
}

fn at_depth<X: Values>(c: &mut Criterion, depth: usize, build: fn(X) -> X) {
    let (root, _handle) = X::cancellable_root();
    let ctx = build(root.clone());
    bench_chain::<X, K<0>>(c, "", depth, &ctx, |k| k.0);
    let (ctx, _handles) = mixed(root, depth);
    bench_chain::<X, Root>(c, "_mixed", depth, &ctx, |r| r.0);
}

fn peer<X: Values>(c: &mut Criterion) {
    at_depth::<X>(c, 1, depth1::<X>);
    at_depth::<X>(c, 8, depth8::<X>);
    at_depth::<X>(c, 64, depth64::<X>);
}

fn benches(c: &mut Criterion) {
    peer::<ctxcore::Context>(c);
    peer::<mutex_ctx::Context>(c);
}

criterion_group!(values, benches);
criterion_main!(values);

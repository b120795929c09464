//! What a manual clock's `advance` costs (behaviour 28): it follows the deadlines it fires,
//! not the distance it moves nor the deadlines still pending.
//!
//! - `advance_1ms/ctxcore` and `advance_1year/ctxcore`: one advance with no deadline
//!   pending, by 1 ms and by a year (the two should cost the same).
//! - `advance_1ms_100k_pending/ctxcore`: 1,000 advances of 1 ms per iteration with
//!   100,000 deadlines pending ten years away (none fires); reported per advance.
//! - `advance_fire_one/ctxcore`: derive a deadline 1 ms away and advance by 1 ms, which
//!   fires it (derive + one firing + drop); compare with `timeout_child` (benches/child.rs,
//!   the system clock's derive + cancel + drop).
//!
//! benches/compare.sh runs these with the rest and puts them in its table.
//!
//! Each iteration checks that the work it timed happened: the clock moved by exactly what
//! was asked, the pending contexts are still live, the fired one is done.

use criterion::{criterion_group, criterion_main, Criterion};
use ctxcore::clock::Clock;
use ctxcore::Context;
use std::hint::black_box;
use std::time::{Duration, Instant};

const MS: Duration = Duration::from_millis(1);
const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

fn nothing_due(c: &mut Criterion, name: &str, by: Duration) {
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let clock = Clock::manual();
            let t0 = clock.now();
            let start = Instant::now();
            for _ in 0..iters {
                clock.advance(black_box(by));
            }
            let t = start.elapsed();
            assert_eq!(clock.now(), t0 + by * iters as u32);
            t
        })
    });
}

fn with_pending(c: &mut Criterion) {
    let clock = Clock::manual();
    let root = Context::root(&clock);
    let pending: Vec<_> = (0..100_000)
        .map(|i| root.with_timeout(YEAR * 10 + MS * (i % 1000)))
        .collect();
    c.bench_function("advance_1ms_100k_pending/ctxcore", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // Keep the pending ones pending: start each batch from a fresh clock time.
                let t0 = clock.now();
                let start = Instant::now();
                for _ in 0..1000 {
                    clock.advance(black_box(MS));
                }
                total += start.elapsed();
                assert_eq!(clock.now(), t0 + MS * 1000);
                assert!(!pending[0].0.is_done(), "a pending deadline fired");
            }
            // Per advance, not per batch of 1,000.
            total / 1000
        })
    });
    assert!(pending.iter().all(|(c, _)| !c.is_done()));
}

fn fire_one(c: &mut Criterion) {
    let clock = Clock::manual();
    let root = Context::root(&clock);
    c.bench_function("advance_fire_one/ctxcore", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let (ctx, h) = root.with_timeout(MS);
                clock.advance(MS);
                assert!(ctx.is_done());
                drop(black_box(ctx));
                drop(h);
            }
            start.elapsed()
        })
    });
}

fn benches(c: &mut Criterion) {
    nothing_due(c, "advance_1ms/ctxcore", MS);
    nothing_due(c, "advance_1year/ctxcore", YEAR);
    with_pending(c);
    fire_one(c);
}

criterion_group!(clock, benches);
criterion_main!(clock);

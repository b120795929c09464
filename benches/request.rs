//! One request as a server handles it: from a server-wide root, a 5 s timeout child, two
//! values, three sub-task children each checked 10 times (each sub-task also reads the
//! request id), then everything cancelled (through the request's handle) and dropped.
//! tokio-util has neither deadlines nor values: it is skipped.
//!
//! Every iteration asserts the checks saw a live context, the value was found, and every
//! context was done after the cancel.

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::{mutex_ctx, Deadlines, Values};
use criterion::{criterion_group, criterion_main, Criterion};

mod common;

struct RequestId(u64);
struct User(&'static str);

/// One request; returns how many checks saw the context done (must be 0).
#[inline]
fn request<C: Deadlines + Values>(server: &C, id: u64) -> u64 {
    let (req, handle) = server.child_timeout(Duration::from_secs(5));
    let req = req.with_value(RequestId(id)).with_value(User("gopher"));
    let subs = [req.child(), req.child(), req.child()];
    let mut seen_done = 0;
    for (sub, _) in &subs {
        assert_eq!(sub.value::<RequestId>().map(|r| r.0), Some(id));
        for _ in 0..10 {
            seen_done += black_box(sub).is_done() as u64;
        }
    }
    C::cancel(&handle);
    assert!(req.is_done() && subs.iter().all(|(s, _)| s.is_done()));
    assert_eq!(req.value::<User>().map(|u| u.0), Some("gopher"));
    drop(subs);
    drop(req);
    drop(handle);
    seen_done
}

fn peer<C: Deadlines + Values>(c: &mut Criterion) {
    let (server, _handle) = C::cancellable_root();
    c.bench_function(&format!("request/{}", C::NAME), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            let mut seen_done = 0;
            for i in 0..iters {
                seen_done += request(&server, i);
            }
            let t = start.elapsed();
            assert_eq!(seen_done, 0);
            assert!(!server.is_done());
            t
        })
    });
}

fn benches(c: &mut Criterion) {
    peer::<ctxcore::Context>(c);
    peer::<mutex_ctx::Context>(c);
}

criterion_group!(request_benches, benches);
criterion_main!(request_benches);

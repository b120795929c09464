//! Waking everyone waiting on one context: 64 threads blocked in `wait()` (tokio-util has no
//! blocking wait: its threads block in `futures::executor::block_on(token.cancelled())`), and
//! 1,000 pending `done()` futures.
//!
//! Threads: the clock runs from just before `cancel()` to the moment the last thread is
//! back from its wait (each woken thread bumps a counter; the 64th stamps the time). The
//! waiters are given 2 ms after they all announced themselves to be really asleep.
//!
//! Futures: 1,000 futures are polled once (each registers a waker that counts its wakes);
//! the clock runs from just before `cancel()` until all 1,000 wakes were counted. Then every
//! future is polled again and must be ready.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Wake, Waker};
use std::time::{Duration, Instant};

use common::{mutex_ctx, Ctx};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};

mod common;

const THREADS: usize = 64;
const FUTURES: usize = 1_000;

fn wake_threads<C: Ctx>(server: &C) -> Duration {
    let (ctx, handle) = server.child();
    let ready = AtomicUsize::new(0);
    let woken = AtomicUsize::new(0);
    let last = Mutex::new(None::<Instant>);
    let start = std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                ready.fetch_add(1, Ordering::SeqCst);
                ctx.wait();
                assert!(ctx.is_done());
                if woken.fetch_add(1, Ordering::SeqCst) + 1 == THREADS {
                    *last.lock().unwrap() = Some(Instant::now());
                }
            });
        }
        while ready.load(Ordering::SeqCst) < THREADS {
            std::thread::yield_now();
        }
        std::thread::sleep(Duration::from_millis(2));
        let start = Instant::now();
        C::cancel(&handle);
        start
    });
    assert_eq!(woken.load(Ordering::SeqCst), THREADS);
    let end = last.lock().unwrap().expect("last waiter stamped");
    end.saturating_duration_since(start)
}

struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn wake_futures<C: Ctx>(server: &C) -> Duration {
    let (ctx, handle) = server.child();
    let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
    let waker = Waker::from(counter.clone());
    let mut cx = std::task::Context::from_waker(&waker);
    let mut futs: Vec<Pin<Box<_>>> = (0..FUTURES).map(|_| Box::pin(ctx.done())).collect();
    for f in &mut futs {
        assert!(f.as_mut().poll(&mut cx).is_pending());
    }
    let start = Instant::now();
    C::cancel(&handle);
    while counter.0.load(Ordering::SeqCst) < FUTURES {
        std::hint::spin_loop();
    }
    let t = start.elapsed();
    for f in &mut futs {
        assert_eq!(f.as_mut().poll(&mut cx), Poll::Ready(()));
    }
    assert_eq!(counter.0.load(Ordering::SeqCst), FUTURES);
    t
}

fn peer<C: Ctx>(c: &mut Criterion) {
    let (server, _handle) = C::cancellable_root();
    let mut g = c.benchmark_group("wake");
    // Each iteration spends milliseconds outside the clock (spawning and settling 64
    // threads): flat sampling and a small budget keep the wall time bounded.
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_millis(300));
    g.bench_function(format!("threads64/{}", C::NAME), |b| {
        b.iter_custom(|iters| (0..iters).map(|_| wake_threads(&server)).sum())
    });
    g.measurement_time(Duration::from_secs(1));
    g.bench_function(format!("futures1000/{}", C::NAME), |b| {
        b.iter_custom(|iters| (0..iters).map(|_| wake_futures(&server)).sum())
    });
    g.finish();
    assert!(!server.is_done());
}

fn benches(c: &mut Criterion) {
    peer::<ctxcore::Context>(c);
    peer::<mutex_ctx::Context>(c);
    peer::<tokio_util::sync::CancellationToken>(c);
}

criterion_group!(wake, benches);
criterion_main!(wake);

//! Behaviours 10, 11 and 12: done futures, blocking waits, `run`.
mod common;
use common::{block_on, poll_once, CountingWaker, SOON};
use ctxcore::{Context, Error};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::task::{Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

#[test]
fn done_resolves_at_once_when_already_done() {
    let _leaks = common::leak_check();
    let (ctx, h) = Context::background().with_cancel();
    h.cancel();
    let mut d = Box::pin(ctx.done());
    assert!(poll_once(&mut d, Waker::noop()).is_ready());
    let mut o = Box::pin(ctx.done_owned());
    assert!(poll_once(&mut o, Waker::noop()).is_ready());
}

#[test]
fn done_wakes_every_future_and_thread() {
    let _leaks = common::leak_check();
    let (ctx, h) = Context::background().with_cancel();
    let wakers: Vec<Arc<CountingWaker>> = (0..100).map(|_| Arc::default()).collect();
    let mut futs: Vec<_> = (0..100).map(|_| Box::pin(ctx.done_owned())).collect();
    for (f, w) in futs.iter_mut().zip(&wakers) {
        assert!(poll_once(f, &Waker::from(w.clone())).is_pending());
    }
    let start = Arc::new(Barrier::new(9));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (ctx, b) = (ctx.clone(), start.clone());
            thread::spawn(move || {
                b.wait();
                ctx.wait();
                ctx.err()
            })
        })
        .collect();
    start.wait();
    thread::sleep(Duration::from_millis(20));
    h.cancel();
    for w in &wakers {
        assert_eq!(
            w.wakes.load(Ordering::SeqCst),
            1,
            "each waker woken exactly once"
        );
    }
    for f in &mut futs {
        assert!(poll_once(f, Waker::noop()).is_ready());
    }
    for t in threads {
        assert_eq!(t.join().unwrap(), Some(Error::Canceled));
    }
}

#[test]
fn done_futures_on_a_never_done_context_stay_pending() {
    let _leaks = common::leak_check();
    let ctx = Context::background();
    let mut d = Box::pin(ctx.done());
    assert!(poll_once(&mut d, Waker::noop()).is_pending());
    let detached = Context::background().with_cancel().0.without_cancel();
    let mut d = Box::pin(detached.done_owned());
    assert!(poll_once(&mut d, Waker::noop()).is_pending());
}

#[test]
fn done_repolled_with_a_new_waker_wakes_the_new_one() {
    let _leaks = common::leak_check();
    let (ctx, h) = Context::background().with_cancel();
    let first = Arc::new(CountingWaker::default());
    let second = Arc::new(CountingWaker::default());
    let mut d = Box::pin(ctx.done());
    assert!(poll_once(&mut d, &Waker::from(first.clone())).is_pending());
    assert!(poll_once(&mut d, &Waker::from(second.clone())).is_pending());
    h.cancel();
    assert_eq!(second.wakes.load(Ordering::SeqCst), 1);
    assert_eq!(first.wakes.load(Ordering::SeqCst), 0);
}

#[test]
fn done_future_dropped_leaves_nothing_behind() {
    let _leaks = common::leak_check();
    let (ctx, _h) = Context::background().with_cancel();
    let before = ctxcore::live::snapshot();
    for _ in 0..common::scaled(10_000) {
        let mut d = Box::pin(ctx.done());
        assert!(poll_once(&mut d, Waker::noop()).is_pending());
    }
    // Other tests in this process may hold waiters too; ours must all be gone.
    ctxcore::live::wait_for_baseline(&before, SOON).expect("no waiter left behind");
}

#[test]
fn done_is_send_and_owned_is_static() {
    let _leaks = common::leak_check();
    fn send<T: Send>(_: &T) {}
    fn stat<T: Send + 'static>(_: &T) {}
    let ctx = Context::background();
    send(&ctx.done());
    stat(&ctx.done_owned());
}

#[test]
fn wait_blocks_until_cancel() {
    let _leaks = common::leak_check();
    let (ctx, h) = Context::background().with_cancel();
    let woke = Arc::new(AtomicBool::new(false));
    let w = woke.clone();
    let c = ctx.clone();
    let t = thread::spawn(move || {
        c.wait();
        w.store(true, Ordering::SeqCst);
    });
    thread::sleep(Duration::from_millis(30));
    assert!(!woke.load(Ordering::SeqCst));
    h.cancel();
    t.join().unwrap();
    assert!(woke.load(Ordering::SeqCst));
}

#[test]
fn wait_timeout_reports_which_came_first() {
    let _leaks = common::leak_check();
    let (ctx, h) = Context::background().with_cancel();
    let start = Instant::now();
    assert!(!ctx.wait_timeout(Duration::from_millis(20)));
    assert!(start.elapsed() >= Duration::from_millis(20));
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(10));
        h.cancel();
    });
    assert!(ctx.wait_timeout(SOON));
    t.join().unwrap();
    assert!(ctx.wait_timeout(Duration::ZERO));
    let (timed, _h) = Context::background().with_timeout(Duration::from_millis(10));
    assert!(timed.wait_timeout(Duration::MAX));
}

#[test]
fn run_returns_output_when_the_future_wins() {
    let _leaks = common::leak_check();
    let (ctx, _h) = Context::background().with_cancel();
    assert_eq!(block_on(ctx.run(async { 5 })), Ok(5));
}

#[test]
fn run_returns_err_and_drops_the_future_when_done_first() {
    let _leaks = common::leak_check();
    struct Probe(Arc<AtomicBool>);
    impl Drop for Probe {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(10));
    let dropped = Arc::new(AtomicBool::new(false));
    let probe = Probe(dropped.clone());
    let never = async move {
        let _p = probe;
        std::future::pending::<()>().await;
    };
    let flag = dropped.clone();
    let r = block_on(async {
        let r = ctx.run(never).await;
        // By the time `run` returns, the future has been dropped.
        assert!(flag.load(Ordering::SeqCst));
        r
    });
    assert_eq!(r, Err(Error::DeadlineExceeded));
}

#[test]
fn run_checks_the_context_before_polling() {
    let _leaks = common::leak_check();
    let (ctx, h) = Context::background().with_cancel();
    h.cancel();
    let polled = Arc::new(AtomicBool::new(false));
    let p = polled.clone();
    let fut = std::future::poll_fn(move |_| {
        p.store(true, Ordering::SeqCst);
        Poll::Ready(1)
    });
    assert_eq!(block_on(ctx.run(fut)), Err(Error::Canceled));
    assert!(!polled.load(Ordering::SeqCst));
}

#[test]
fn run_accepts_non_send_non_unpin_futures_and_is_send_when_they_are() {
    let _leaks = common::leak_check();
    fn send<T: Send>(_: T) {}
    let ctx = Context::background();
    send(ctx.run(async {}));
    let not_send = async {
        let rc = std::rc::Rc::new(1);
        std::future::ready(()).await;
        *rc
    };
    assert_eq!(block_on(ctx.run(not_send)), Ok(1));
    let pinned = async {
        let _marker = std::marker::PhantomPinned;
        2
    };
    assert_eq!(block_on(ctx.run(pinned)), Ok(2));
}

#[test]
fn run_wakes_on_cancel_from_another_thread() {
    let _leaks = common::leak_check();
    let (ctx, h) = Context::background().with_cancel();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        h.cancel();
    });
    let r = block_on(ctx.run(std::future::pending::<()>()));
    assert_eq!(r, Err(Error::Canceled));
    t.join().unwrap();
}

#[test]
fn futures_poll_fn_type_check() {
    let _leaks = common::leak_check();
    // `Done` is a Future<Output = ()>.
    fn is_future<F: Future<Output = ()>>(_: &F) {}
    let ctx = Context::background();
    is_future(&ctx.done());
    is_future(&ctx.done_owned());
}

#[test]
fn many_threads_in_wait_all_return_on_one_cancel_and_on_a_parents_walk() {
    for through_parent in [false, true] {
        let (parent, parent_handle) = Context::background().with_cancel();
        let (ctx, handle) = parent.with_cancel();
        let ready = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            let waiters: Vec<_> = (0..32)
                .map(|_| {
                    s.spawn(|| {
                        ready.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        ctx.wait();
                        ctx.err()
                    })
                })
                .collect();
            while ready.load(std::sync::atomic::Ordering::SeqCst) < 32 {
                std::thread::yield_now();
            }
            std::thread::sleep(Duration::from_millis(5));
            if through_parent {
                parent_handle.cancel();
            } else {
                handle.cancel();
            }
            for w in waiters {
                assert_eq!(w.join().unwrap(), Some(ctxcore::Error::Canceled));
            }
        });
        assert_eq!(parent.is_done(), through_parent);
    }
}

#[test]
fn wait_returns_for_threads_arriving_before_during_and_after_the_cancel() {
    for round in 0..200u64 {
        let (ctx, handle) = Context::background().with_cancel();
        std::thread::scope(|s| {
            let waiters: Vec<_> = (0..3)
                .map(|i| {
                    let ctx = &ctx;
                    s.spawn(move || {
                        if (round + i) % 3 == 0 {
                            std::thread::yield_now();
                        }
                        ctx.wait();
                        assert!(ctx.is_done());
                    })
                })
                .collect();
            if round % 2 == 0 {
                std::thread::yield_now();
            }
            handle.cancel();
            for w in waiters {
                w.join().unwrap();
            }
        });
    }
}

//! Model 14: a manual clock's `advance` racing a cancel, a derive, a disarm and a waiter
//! (behaviour 28): when `advance` returns, every context whose deadline it reached is
//! done, whatever the interleaving; a waiter wakes; callbacks run once; every timer entry
//! and queue slot is freed exactly once (checked by `model`).
//!
//! Injected bug it caught: arming a deadline the clock has already reached queues it
//! instead of firing it (`clock/queue.rs` invariant 4): a `with_timeout` that read the time
//! before a concurrent advance moved it armed behind the advance's back, and its context
//! stayed live past its deadline.
#![cfg(loom)]

use ctxcore::clock::Clock;
use ctxcore::{Context, Error};
use ctxcore_loom_tests::{model, CountingWaker};
use loom::thread;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Waker};
use std::time::Duration;

const S: Duration = Duration::from_secs(1);

/// The advance against the context's own cancel, with a future waiting on it (registered
/// first, then raced: the cancel and the firing may each be the one that wakes it).
#[test]
fn advance_racing_cancel_and_a_waiter() {
    model(|| {
        let clock = Clock::manual();
        let (ctx, handle) = Context::root(&clock).with_timeout(S);
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        let after = ctx.after_func(move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        let woken = CountingWaker::counting_only();
        let waker = Waker::from(woken.clone());
        let mut done = Box::pin(ctx.done_owned());
        let mut cx = TaskContext::from_waker(&waker);
        assert!(done.as_mut().poll(&mut cx).is_pending());
        let advancer = {
            let (clock, ctx) = (clock.clone(), ctx.clone());
            thread::spawn(move || {
                clock.advance(S);
                assert!(ctx.is_done(), "advance returned before its deadline fired");
            })
        };
        handle.cancel();
        advancer.join().unwrap();
        let err = ctx.err();
        assert!(matches!(
            err,
            Some(Error::Canceled | Error::DeadlineExceeded)
        ));
        assert_eq!(woken.wakes(), 1, "the waiter is woken once");
        assert!(done.as_mut().poll(&mut cx).is_ready());
        assert_eq!(runs.load(Ordering::SeqCst), 1, "the callback runs once");
        assert!(!after.stop());
        vec![]
    });
}

/// The advance against a derive that reads the time and arms, and a disarm of a pending
/// deadline context that is then dropped.
#[test]
fn advance_racing_derive_and_disarm() {
    model(|| {
        let clock = Clock::manual();
        let root = Context::root(&clock);
        let (doomed, doomed_handle) = root.with_timeout(S);
        let advancer = {
            let clock = clock.clone();
            thread::spawn(move || clock.advance(S))
        };
        let disarmer = thread::spawn(move || {
            doomed_handle.disarm();
            drop(doomed);
        });
        let (ctx, handle) = root.with_timeout(S);
        advancer.join().unwrap();
        disarmer.join().unwrap();
        // Either the derive read the time before the advance (deadline reached: done) or
        // after it (deadline one second later: live).
        let reached = ctx.deadline().unwrap() <= clock.now();
        assert_eq!(ctx.is_done(), reached, "deadline reached: {reached}");
        if reached {
            assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
        }
        handle.disarm();
        vec![]
    });
}

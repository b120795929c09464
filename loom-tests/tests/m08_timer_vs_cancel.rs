//! Model 8: the timer firing racing cancel and the drop of every handle: exactly one error
//! wins (a timer that lost to the disarm never makes the node done), a callback runs
//! once, and the timer entry and the node are freed exactly once (checked by `model`).
//!
//! Injected bug it caught: `timer::disarm` as a load-then-store instead of a CAS from
//! ARMED: both the driver and the canceller "won" and each gave back the timer's count on
//! the node (freed twice / counts below zero).
#![cfg(loom)]

use ctxcore::{Context, Error};
use ctxcore_loom_tests::model;
use loom::thread;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn timer_racing_cancel_and_drop() {
    model(|| {
        let (ctx, handle) = Context::background().with_timeout(Duration::from_secs(3600));
        let mut timers = ctxcore::__loom::take_armed_timers();
        assert_eq!(timers.len(), 1);
        let timer = timers.pop().unwrap();
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        let _after = ctx.after_func(move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        // The driver holds no context: only its count on the timer entry.
        let driver = thread::spawn(move || timer.fire());
        handle.cancel();
        let err = ctx.err();
        drop((ctx, handle, _after)); // racing the driver's fire
        let fired = driver.join().unwrap();
        // The timer's CAS (ARMED -> FIRED) and the node's first-cancel CAS are two steps:
        // a timer that fired may still lose the node to the canceller, but a timer that
        // lost (disarmed first) never makes the node done.
        assert!(
            matches!(err, Some(Error::Canceled | Error::DeadlineExceeded)),
            "{err:?}"
        );
        if !fired {
            assert_eq!(
                err,
                Some(Error::Canceled),
                "a disarmed timer cancelled the node"
            );
        }
        assert_eq!(
            runs.load(Ordering::SeqCst),
            1,
            "the callback runs exactly once"
        );
        vec![]
    });
}

//! Model 13: the timer firing racing the last drop of a disarmed deadline context (a
//! deadline alone keeps nothing: behaviour 14). The node is freed exactly once whoever
//! wins (the dropper disarms, or the driver holds TIMER and finalizes), and a pending
//! callback still runs at the deadline.
//!
//! Bugs it catches (injected mutants): the last holder finalizing without checking TIMER
//! (the driver then cancelled freed memory: retired twice); the driver not finalizing when
//! TIMER was the last claim (the node was never freed).
#![cfg(loom)]

use ctxcore::Context;
use ctxcore_loom_tests::model;
use loom::thread;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn fire_racing_the_last_drop() {
    model(|| {
        let (ctx, handle) = Context::background().with_timeout(Duration::from_secs(3600));
        let timer = ctxcore::__loom::take_armed_timers().pop().unwrap();
        handle.disarm();
        let driver = thread::spawn(move || timer.fire());
        drop(ctx);
        driver.join().unwrap();
        vec![]
    });
}

#[test]
fn pending_callback_runs_when_its_context_is_gone() {
    model(|| {
        let (ctx, handle) = Context::background().with_timeout(Duration::from_secs(3600));
        let timer = ctxcore::__loom::take_armed_timers().pop().unwrap();
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        let after = ctx.after_func(move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        handle.disarm();
        let driver = thread::spawn(move || timer.fire());
        drop((ctx, after));
        assert!(driver.join().unwrap(), "nothing disarmed the timer");
        assert_eq!(
            runs.load(Ordering::SeqCst),
            1,
            "the callback ran at the deadline"
        );
        vec![]
    });
}

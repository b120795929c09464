//! Model 7: `AfterFunc::stop` racing cancel: the callback runs 0 or 1 times, agreeing with
//! what `stop()` returned, and the closure is dropped exactly once.
//!
//! Injected bug it caught: `Callback::claim` as a load-then-store instead of one CAS
//! (stop not really claiming): stop returned true and the callback still ran (and loom
//! flagged the two threads taking the closure cell at once).
#![cfg(loom)]

use ctxcore::Context;
use ctxcore_loom_tests::{dropped, model, Drops};
use loom::thread;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[test]
fn stop_racing_cancel_agrees_with_the_run() {
    model(|| {
        let drops = Drops::default();
        let (ctx, handle) = Context::background().with_cancel();
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        let token = drops.token();
        let after = ctx.after_func(move || {
            let _token = &token;
            r.fetch_add(1, Ordering::SeqCst);
        });
        let t = thread::spawn(move || {
            let stopped = after.stop();
            (stopped, after.stop())
        });
        handle.cancel();
        // When cancel returns, a callback that was not stopped has run.
        let runs_after_cancel = runs.load(Ordering::SeqCst);
        let (stopped, stopped_again) = t.join().unwrap();
        assert!(!stopped_again, "only the first stop can report true");
        let runs = runs.load(Ordering::SeqCst);
        assert_eq!(
            runs,
            usize::from(!stopped),
            "stop() = {stopped} but ran {runs} times"
        );
        assert_eq!(
            runs_after_cancel, runs,
            "the callback ran after cancel returned"
        );
        drop(ctx);
        vec![dropped(&drops, 1, "the closure")]
    });
}

//! Model 6: a thread in `wait_timeout()` (a waiter entry whose waker unparks the thread:
//! `src/wait.rs`) racing cancel: no lost wakeup (a lost one is a loom deadlock: under loom
//! a timed park ends only when unparked), and the waiter returns true, once the context is
//! done. (`wait()` without a timeout sleeps on the node's futex word instead: model m16.)
//!
//! Injected bug it caught: `WaitSlot::poll` registering the waker after pushing the waiter
//! entry instead of before: a cancel walking the entry in between woke nobody, and the
//! thread parked forever (loom: deadlock).
#![cfg(loom)]

use ctxcore::{Context, Error};
use ctxcore_loom_tests::model;
use loom::thread;
use std::time::Duration;

#[test]
fn wait_timeout_racing_cancel_is_woken() {
    model(|| {
        let (ctx, handle) = Context::background().with_cancel();
        let c = ctx.clone();
        // The parked thread is the spawned one; the main thread only joins it (loom #249).
        let t = thread::spawn(move || {
            let done = c.wait_timeout(Duration::from_secs(3600));
            (done, c.err())
        });
        handle.cancel();
        assert_eq!(t.join().unwrap(), (true, Some(Error::Canceled)));
        drop(ctx);
        vec![]
    });
}

//! Model 6: a thread parking in `wait()` racing cancel: no lost wakeup (a lost one is a
//! loom deadlock), and the waiter returns only once the context is done.
//!
//! Injected bug it caught: `WaitSlot::poll` registering the waker after pushing the waiter
//! entry instead of before: a cancel walking the entry in between woke nobody, and the
//! thread parked forever (loom: deadlock).
#![cfg(loom)]

use ctxcore::{Context, Error};
use ctxcore_loom_tests::model;
use loom::thread;

#[test]
fn wait_racing_cancel_is_woken() {
    model(|| {
        let (ctx, handle) = Context::background().with_cancel();
        let c = ctx.clone();
        // The parked thread is the spawned one; the main thread only joins it (loom #249).
        let t = thread::spawn(move || {
            c.wait();
            c.err()
        });
        handle.cancel();
        assert_eq!(t.join().unwrap(), Some(Error::Canceled));
        drop(ctx);
        vec![]
    });
}

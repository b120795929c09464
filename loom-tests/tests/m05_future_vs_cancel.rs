//! Model 5: a `Done` future registering (and re-registering) its waker racing cancel: no
//! lost wakeup. The future is polled once with one waker, then again with a second waker
//! (the re-registration path), then its thread parks until that waker is woken; a lost
//! wakeup is a loom deadlock.
//!
//! Injected bug it caught: `WaitSlot::poll` returning `Pending` after re-registering
//! without re-reading the state word: the cancel's wake went to the first waker and the
//! thread parked forever (loom: deadlock).
#![cfg(loom)]

use ctxcore::Context;
use ctxcore_loom_tests::{model, CountingWaker};
use loom::thread;
use std::future::Future;
use std::task::{Poll, Waker};

#[test]
fn future_registration_racing_cancel_is_woken() {
    model(|| {
        let (ctx, handle) = Context::background().with_cancel();
        let c = ctx.clone();
        // The waiting thread is spawned (and joined by the canceller), so no thread that
        // can be unparked is ever blocked in `join` (loom #249).
        let t = thread::spawn(move || {
            let mut done = Box::pin(c.done());
            let first = Waker::from(CountingWaker::new());
            if done
                .as_mut()
                .poll(&mut std::task::Context::from_waker(&first))
                .is_ready()
            {
                return;
            }
            let second = CountingWaker::new();
            let w = Waker::from(second.clone());
            loop {
                match done.as_mut().poll(&mut std::task::Context::from_waker(&w)) {
                    Poll::Ready(()) => break,
                    Poll::Pending => {
                        // Woken at most once per cancel: park until that wake.
                        while second.wakes() == 0 {
                            thread::park();
                        }
                    }
                }
            }
            assert!(c.is_done());
        });
        handle.cancel();
        t.join().unwrap();
        drop(ctx);
        vec![]
    });
}

//! Model 19: pending `Done` futures dropped, or polled and dropped, while a cancel walks
//! their waiter entries. The walk and each future's release decide by their RMWs on the
//! entry's `next` which of them gives up the entry's LINKED (`list.rs` invariant 3): every
//! entry is freed exactly once (checked by `model`), and no clone of the task's waker
//! outlives the futures (behaviour 14).
//!
//! Injected bugs it caught (`ci/loom_mutants.py`): the release not taking the LINKED a
//! walk handed over (the entry was never freed), and the walk giving LINKED up as well
//! (the entry was retired twice).
#![cfg(loom)]

use ctxcore::Context;
use ctxcore_loom_tests::{model, CountingWaker};
use loom::thread;
use std::future::Future;
use std::sync::Arc;
use std::task::Waker;

#[test]
fn futures_leaving_while_the_walk_wakes_them_free_once() {
    model(|| {
        let (ctx, handle) = Context::background().with_cancel();
        let c = ctx.clone();
        let counter = CountingWaker::counting_only();
        let kept = counter.clone();
        let t = thread::spawn(move || {
            let waker = Waker::from(counter);
            let cx = &mut std::task::Context::from_waker(&waker);
            let mut dropped = Box::pin(c.done());
            let mut polled = Box::pin(c.done());
            // Each registers (or finds the context done already).
            let _ = dropped.as_mut().poll(cx);
            let polled_ready = polled.as_mut().poll(cx).is_ready();
            // Leaves while the walk may be at its entry, before or after it.
            drop(dropped);
            if !polled_ready {
                // Pending or ready, then leaves.
                let _ = polled.as_mut().poll(cx);
            }
            drop(polled);
        });
        handle.cancel();
        t.join().unwrap();
        drop(ctx);
        vec![Box::new(move || {
            // Every waker clone the entries held is gone: only ours is left.
            assert_eq!(
                Arc::strong_count(&kept),
                1,
                "a waker clone outlived its future"
            );
        })]
    });
}

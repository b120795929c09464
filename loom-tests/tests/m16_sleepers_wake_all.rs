//! Model 16: threads blocked in `wait()` sleep on the node's futex word (`src/sleep.rs`);
//! the canceller that makes the node done wakes them all with one call. No wake-up may be
//! lost (a lost one is a loom deadlock: the futex is modelled by a mutex and a condvar),
//! whether the node is cancelled itself or made done by its parent's walk, and with two
//! sleepers whose arrivals change the word under each other.
//!
//! Mutants (`ci/loom_mutants.py m16`): the canceller skipping the wake, and the sleeper
//! sleeping on a stale value of the word; both deadlock here.
#![cfg(loom)]

use ctxcore::{Context, Error};
use ctxcore_loom_tests::model;
use loom::thread;

#[test]
fn a_sleeper_racing_its_own_cancel_is_woken() {
    model(|| {
        let (ctx, handle) = Context::background().with_cancel();
        let c = ctx.clone();
        // The sleeping thread is the spawned one; the main thread only joins it (loom #249).
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

#[test]
fn a_sleeper_on_a_child_is_woken_by_the_parents_walk() {
    model(|| {
        let (parent, handle) = Context::background().with_cancel();
        let (child, _child_handle) = parent.with_cancel();
        let c = child.clone();
        let t = thread::spawn(move || {
            c.wait();
            c.err()
        });
        handle.cancel();
        assert_eq!(t.join().unwrap(), Some(Error::Canceled));
        drop((child, parent));
        vec![]
    });
}

#[test]
fn two_sleepers_and_a_cancel_all_return() {
    model(|| {
        let (ctx, handle) = Context::background().with_cancel();
        let (a, b) = (ctx.clone(), ctx.clone());
        let ta = thread::spawn(move || {
            a.wait();
            a.is_done()
        });
        let tb = thread::spawn(move || {
            b.wait();
            b.is_done()
        });
        handle.cancel();
        assert!(ta.join().unwrap());
        assert!(tb.join().unwrap());
        drop(ctx);
        vec![]
    });
}

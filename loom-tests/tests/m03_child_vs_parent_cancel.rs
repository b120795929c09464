//! Model 3: `cancel(child)` racing `cancel(parent)`: both end done, each with exactly one
//! error and cause that never change once seen, the child's callback runs once and its
//! waiter is woken once, and each cause is dropped exactly once.
//!
//! Injected bug it caught: `State::try_finish` as a load-then-store instead of one CAS
//! from 0: both cancellers "won" the child, the child's first cause was overwritten (leaked
//! and changed after being observed).
#![cfg(loom)]

use ctxcore::{Context, Error};
use ctxcore_loom_tests::{cause_name, dropped, model, CountingWaker, Drops, Named};
use loom::thread;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Waker;

#[test]
fn child_and_parent_cancel_race_once_each() {
    model(|| {
        let drops = Drops::default();
        let (parent, parent_handle) = Context::background().with_cancel();
        let (child, child_handle) = parent.with_cancel();
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        let _after = child.after_func(move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        // A pending waiter on the child (registered before the race).
        // Counting only: this (main) thread is in `join` when the waiter may be woken.
        let waker = CountingWaker::counting_only();
        let w = Waker::from(waker.clone());
        let mut done = Box::pin(child.done_owned());
        assert!(done
            .as_mut()
            .poll(&mut std::task::Context::from_waker(&w))
            .is_pending());

        let c = child.clone();
        let token = drops.token();
        let t = thread::spawn(move || {
            child_handle.cancel_with_cause(Named("child", token));
            // When cancel returns the child is done; its cause is fixed from now on.
            let seen = cause_name(&c);
            (child_handle, seen)
        });
        parent_handle.cancel_with_cause(Named("parent", drops.token()));
        let seen_by_parent_side = cause_name(&child);
        let (child_handle, seen_by_child_side) = t.join().unwrap();

        assert_eq!(parent.err(), Some(Error::Canceled));
        assert_eq!(child.err(), Some(Error::Canceled));
        assert_eq!(cause_name(&parent).as_deref(), Some("parent"));
        let final_cause = cause_name(&child);
        assert!(matches!(final_cause.as_deref(), Some("child" | "parent")));
        assert_eq!(seen_by_child_side, final_cause, "the child's cause changed");
        assert_eq!(
            seen_by_parent_side, final_cause,
            "the child's cause changed"
        );
        assert_eq!(
            runs.load(Ordering::SeqCst),
            1,
            "the child's callback runs once"
        );
        assert_eq!(waker.wakes(), 1, "the child's waiter is woken once");
        assert!(done
            .as_mut()
            .poll(&mut std::task::Context::from_waker(&w))
            .is_ready());
        drop((done, child_handle, parent_handle, child, parent, _after));
        vec![dropped(&drops, 2, "each cause")]
    });
}

/// Two cancels of one node racing, with a child: when the losing `cancel()` returns, the
/// child is already done (the loser waits for the winner's WALKED).
///
/// Injected bug it caught: the loser returning without `wait_walked()`: it saw the child
/// still live after its `cancel()` returned.
#[test]
fn losing_cancel_returns_after_the_walk() {
    model(|| {
        let (parent, handle) = Context::background().with_cancel();
        let (child, _child_handle) = parent.with_cancel();
        let handle = Arc::new(handle);
        let h = handle.clone();
        let c = child.clone();
        let t = thread::spawn(move || {
            h.cancel();
            assert!(c.is_done(), "cancel() returned before the child was done");
        });
        handle.cancel();
        assert!(
            child.is_done(),
            "cancel() returned before the child was done"
        );
        t.join().unwrap();
        vec![]
    });
}

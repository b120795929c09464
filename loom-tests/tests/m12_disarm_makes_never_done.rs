//! Model 12: the last source of a context going (its handle disarmed, the context never
//! done: behaviour 14) racing a derive, an `after_func`, a `stop` and a waiter: every
//! closure is dropped exactly once and never runs, the waker is released, nothing is done,
//! and every entry is freed exactly once (checked by `model`).
//!
//! Bugs it catches (injected mutants): `inert::remove_source` not walking the detached
//! chain (the callback and the waker were kept: live callbacks above zero at the end);
//! `Callback::drop_unrun` not giving back the pending counts (the node was never freed).
#![cfg(loom)]

use ctxcore::Context;
use ctxcore_loom_tests::{model, CountingWaker};
use loom::thread;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Waker;

struct Token(Arc<AtomicUsize>);
impl Drop for Token {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn disarm_racing_derive_callback_stop_and_waiter() {
    model(|| {
        let dropped = Arc::new(AtomicUsize::new(0));
        let ran = Arc::new(AtomicUsize::new(0));
        let (a, ha) = Context::background().with_cancel();
        let (token, r) = (Token(dropped.clone()), ran.clone());
        let after = a.after_func(move || {
            let _t = &token;
            r.fetch_add(1, Ordering::SeqCst);
        });
        let waker = CountingWaker::counting_only();
        let w = Waker::from(waker.clone());
        let mut done = Box::pin(a.done_owned());
        assert!(done
            .as_mut()
            .poll(&mut std::task::Context::from_waker(&w))
            .is_pending());
        let a2 = a.clone();
        let (d2, r2) = (dropped.clone(), ran.clone());
        let t = thread::spawn(move || {
            // A derive and a late callback on the child, racing the disarm.
            let (child, hc) = a2.with_cancel();
            let token = Token(d2);
            let late = child.after_func(move || {
                let _t = &token;
                r2.fetch_add(1, Ordering::SeqCst);
            });
            hc.disarm();
            drop((child, late, a2));
        });
        ha.disarm();
        assert!(
            after.stop(),
            "the callback never ran: the first stop is true"
        );
        t.join().unwrap();
        assert_eq!(
            Arc::strong_count(&waker),
            2,
            "the disarm released the waker"
        );
        assert!(!a.is_done());
        assert!(done
            .as_mut()
            .poll(&mut std::task::Context::from_waker(&w))
            .is_pending());
        drop((done, after, a));
        assert_eq!(
            ran.load(Ordering::SeqCst),
            0,
            "a callback ran on a never-done context"
        );
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            2,
            "every closure dropped once"
        );
        vec![]
    });
}

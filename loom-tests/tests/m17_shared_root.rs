//! Model 17: a shared root (`with_cancel_shared`, `src/stripe.rs`): children derived on
//! another thread register on that thread's stripe, a hidden child of the root.
//!
//! - A derive racing the root's cancel: once `cancel()` has returned and the deriving
//!   thread is joined, its child is done, whether it was pushed on the stripe before the
//!   walk closed it (the walk cancels it), found the stripe closed (born done), or found
//!   the root done (born done).
//! - A derive and drop racing the root's disarm and the drop of its contexts: every node,
//!   stripe included, is freed exactly once (the model's accounting), and the child is
//!   never done.
//!
//! - A derive by a thread that saw the root done is born done, even while the root's walk
//!   has not reached the thread's stripe yet (behaviour 3).
//!
//! Mutant (`ci/loom_mutants.py m17`): a derive that goes to its stripe without first
//! looking whether the root is done; the third model catches it.
#![cfg(loom)]

use ctxcore::{Context, Error};
use ctxcore_loom_tests::model;
use loom::thread;

#[test]
fn a_derive_on_a_stripe_racing_the_roots_cancel_ends_done() {
    model(|| {
        let (root, shutdown) = Context::background().with_cancel_shared();
        let r = root.clone();
        let t = thread::spawn(move || {
            let (child, handle) = r.with_cancel();
            (child, handle)
        });
        shutdown.cancel();
        let (child, handle) = t.join().unwrap();
        assert_eq!(child.err(), Some(Error::Canceled));
        drop((child, handle, root));
        vec![]
    });
}

#[test]
fn a_derive_and_drop_racing_the_roots_disarm_frees_everything() {
    model(|| {
        let (root, shutdown) = Context::background().with_cancel_shared();
        let r = root.clone();
        let t = thread::spawn(move || {
            let (child, handle) = r.with_cancel();
            let done = child.is_done();
            drop(handle);
            drop(r);
            (child, done)
        });
        shutdown.disarm();
        drop(root);
        let (child, done) = t.join().unwrap();
        assert!(!done);
        // The child's own handle was dropped: it is cancelled by that, not by the root.
        assert_eq!(child.err(), Some(Error::Canceled));
        drop(child);
        vec![]
    });
}

#[test]
fn a_derive_after_seeing_the_root_done_is_born_done_during_its_walk() {
    model(|| {
        let (root, shutdown) = Context::background().with_cancel_shared();
        let r = root.clone();
        let t = thread::spawn(move || {
            if r.is_done() {
                // Behaviour 3, even while the root's walk has not reached this thread's
                // stripe yet.
                let (child, _h) = r.with_cancel();
                assert!(child.is_done());
            }
        });
        shutdown.cancel();
        t.join().unwrap();
        drop(root);
        vec![]
    });
}

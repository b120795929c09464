//! Model 4: two children of one parent, adjacent in its list, unlinking at once: the list
//! stays intact, and a later cancel of the parent reaches every remaining child.
//!
//! Injected bug it caught: the sweep unlinking a run of marked entries by a plain store
//! instead of a CAS on the predecessor's link: one sweep resurrected what another unlinked
//! (an entry retired twice). Under loom `SWEEP_SLACK` is 1, so the second mark sweeps.
#![cfg(loom)]

use ctxcore::Context;
use ctxcore_loom_tests::model;
use loom::thread;

#[test]
fn adjacent_unlinks_keep_the_list_intact() {
    model(|| {
        let (parent, handle) = Context::background().with_cancel();
        // The list is LIFO: head -> kept_head -> gone_b -> gone_a -> kept_tail.
        let (kept_tail, _h1) = parent.with_cancel();
        let (gone_a, gone_a_handle) = parent.with_cancel();
        let (gone_b, gone_b_handle) = parent.with_cancel();
        let (kept_head, _h2) = parent.with_cancel();
        let t = thread::spawn(move || {
            gone_a_handle.disarm();
            drop(gone_a);
        });
        gone_b_handle.disarm();
        drop(gone_b);
        t.join().unwrap();
        handle.cancel();
        assert!(kept_head.is_done(), "a later cancel misses the head child");
        assert!(kept_tail.is_done(), "a later cancel misses the tail child");
        drop(parent);
        vec![]
    });
}

/// The same two adjacent unlinks, now racing the parent's cancel itself (three threads):
/// every entry is freed exactly once and the kept children end done.
#[test]
fn adjacent_unlinks_racing_cancel() {
    model(|| {
        let (parent, handle) = Context::background().with_cancel();
        let (kept_tail, _h1) = parent.with_cancel();
        let (gone_a, gone_a_handle) = parent.with_cancel();
        let (gone_b, gone_b_handle) = parent.with_cancel();
        let t1 = thread::spawn(move || {
            gone_a_handle.disarm();
            drop(gone_a);
        });
        let t2 = thread::spawn(move || {
            gone_b_handle.disarm();
            drop(gone_b);
        });
        handle.cancel();
        assert!(kept_tail.is_done());
        t1.join().unwrap();
        t2.join().unwrap();
        drop(parent);
        vec![]
    });
}

//! Behaviours 2, 3, 4 and 14: cancellation trees, idempotence, handles.
mod common;
use ctxcore::{Context, Error};
use std::sync::{Arc, Barrier};
use std::thread;

#[test]
fn cancel_marks_child_not_parent() {
    let _leaks = common::leak_check();
    let (parent, _ph) = Context::background().with_cancel();
    let (child, ch) = parent.with_cancel();
    ch.cancel();
    assert_eq!(child.err(), Some(Error::Canceled));
    assert_eq!(child.check(), Err(Error::Canceled));
    assert!(!parent.is_done());
}

#[test]
fn cancelling_a_parent_reaches_every_descendant_before_returning() {
    let _leaks = common::leak_check();
    let (root, rh) = Context::background().with_cancel();
    let mut all = Vec::new();
    let mut handles = Vec::new();
    let mut frontier = vec![root.clone()];
    for _ in 0..4 {
        let mut next = Vec::new();
        for ctx in &frontier {
            for _ in 0..4 {
                let (c, h) = ctx.with_cancel();
                let c = c.with_value(7u8);
                handles.push(h);
                all.push(c.clone());
                next.push(c);
            }
        }
        frontier = next;
    }
    assert_eq!(all.len(), 4 + 16 + 64 + 256);
    rh.cancel();
    assert!(all.iter().all(|c| c.err() == Some(Error::Canceled)));
}

#[test]
fn cancelling_a_child_leaves_parent_and_siblings() {
    let _leaks = common::leak_check();
    let (parent, _ph) = Context::background().with_cancel();
    let (a, ah) = parent.with_cancel();
    let (b, _bh) = parent.with_cancel();
    let (a1, _a1h) = a.with_cancel();
    ah.cancel();
    assert!(a.is_done() && a1.is_done());
    assert!(!parent.is_done() && !b.is_done());
}

#[test]
fn child_of_done_parent_is_born_done_with_its_error_and_cause() {
    let _leaks = common::leak_check();
    let (parent, ph) = Context::background().with_cancel();
    ph.cancel_with_cause("shutting down");
    let (child, _h) = parent.with_cancel();
    assert_eq!(child.err(), Some(Error::Canceled));
    assert_eq!(child.cause().unwrap().to_string(), "shutting down");
    let (timed, _h) = parent.with_timeout(std::time::Duration::from_secs(60));
    assert_eq!(timed.err(), Some(Error::Canceled));
    let (p2, _h) = Context::background().with_timeout(std::time::Duration::ZERO);
    let (c2, _h) = p2.with_cancel();
    assert_eq!(c2.err(), Some(Error::DeadlineExceeded));
}

#[test]
fn cancel_is_idempotent_and_first_cause_wins() {
    let _leaks = common::leak_check();
    let (ctx, h) = Context::background().with_cancel();
    h.cancel_with_cause("first");
    h.cancel_with_cause("second");
    h.cancel();
    assert_eq!(ctx.cause().unwrap().to_string(), "first");
}

#[test]
fn concurrent_cancels_agree_on_one_winner() {
    let _leaks = common::leak_check();
    for _ in 0..common::scaled(200) {
        let (ctx, h) = Context::background().with_cancel();
        let (child, _ch) = ctx.with_cancel();
        let h = Arc::new(h);
        let barrier = Arc::new(Barrier::new(4));
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let (h, b, child) = (h.clone(), barrier.clone(), child.clone());
                thread::spawn(move || {
                    b.wait();
                    h.cancel_with_cause(format!("cause {i}"));
                    // When cancel returns, descendants already report done, winner or not.
                    assert!(child.is_done());
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        let cause = ctx.cause().unwrap().to_string();
        assert!(cause.starts_with("cause "));
        assert_eq!(
            child.cause().unwrap().to_string(),
            cause,
            "children keep the winner's"
        );
    }
}

#[test]
fn cancel_racing_a_parent_cancel() {
    let _leaks = common::leak_check();
    for _ in 0..common::scaled(200) {
        let (parent, ph) = Context::background().with_cancel();
        let (child, ch) = parent.with_cancel();
        let (grandchild, _gh) = child.with_cancel();
        let t = thread::spawn(move || ph.cancel());
        ch.cancel();
        assert!(child.is_done() && grandchild.is_done());
        t.join().unwrap();
        assert!(parent.is_done());
        assert_eq!(grandchild.err(), Some(Error::Canceled));
    }
}

#[test]
fn derive_racing_cancel_always_ends_done() {
    let _leaks = common::leak_check();
    for _ in 0..common::scaled(200) {
        let (parent, ph) = Context::background().with_cancel();
        let p2 = parent.clone();
        let t = thread::spawn(move || (0..50).map(|_| p2.with_cancel()).collect::<Vec<_>>());
        ph.cancel();
        for (c, _h) in t.join().unwrap() {
            assert_eq!(c.err(), Some(Error::Canceled));
        }
    }
}

#[test]
fn dropping_the_handle_cancels_and_disarm_does_not() {
    let _leaks = common::leak_check();
    let (a, ah) = Context::background().with_cancel();
    drop(ah);
    assert_eq!(a.err(), Some(Error::Canceled));
    let (b, bh) = Context::background().with_cancel();
    bh.disarm();
    assert!(!b.is_done());
    // A disarmed child still follows its parent.
    let (p, ph) = Context::background().with_cancel();
    let (c, chh) = p.with_cancel();
    chh.disarm();
    ph.cancel();
    assert!(c.is_done());
}

#[test]
fn handle_cancels_from_another_thread() {
    let _leaks = common::leak_check();
    let (ctx, h) = Context::background().with_cancel();
    thread::spawn(move || h.cancel()).join().unwrap();
    assert!(ctx.is_done());
}

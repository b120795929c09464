//! `with_cancel_shared`: a root whose children register on per-thread stripes. It must
//! behave as a `with_cancel` child in every observable way (behaviours 1-3, 5, 7, 10, 13,
//! 14), across threads and stripes.
mod common;
use ctxcore::{Context, Error};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

#[test]
fn children_on_every_thread_are_done_when_cancel_returns() {
    let _leaks = common::leak_check();
    for round in 0..50 {
        let (root, shutdown) = Context::background().with_cancel_shared();
        let barrier = Arc::new(Barrier::new(5));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let root = root.clone();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    let kept: Vec<_> = (0..50).map(|_| root.with_cancel()).collect();
                    let grandchildren: Vec<_> = kept.iter().map(|(c, _)| c.with_cancel()).collect();
                    barrier.wait(); // all derived
                    barrier.wait(); // cancel returned
                    for (c, _) in kept.iter().chain(&grandchildren) {
                        assert_eq!(c.err(), Some(Error::Canceled), "round {round}");
                    }
                })
            })
            .collect();
        barrier.wait();
        shutdown.cancel();
        barrier.wait();
        for t in threads {
            t.join().unwrap();
        }
        // Children of a done shared root are born done, with its error.
        let (late, _h) = root.with_cancel();
        assert_eq!(late.err(), Some(Error::Canceled));
    }
}

#[test]
fn cancel_racing_derives_on_other_threads_leaves_no_live_child() {
    let _leaks = common::leak_check();
    for _ in 0..100 {
        let (root, shutdown) = Context::background().with_cancel_shared();
        let cancelled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let root = root.clone();
                let cancelled = cancelled.clone();
                std::thread::spawn(move || {
                    let mut checked = 0;
                    for _ in 0..200 {
                        let was = cancelled.load(Ordering::SeqCst);
                        let (c, h) = root.with_cancel();
                        // A derive that starts after cancel() returned is born done.
                        if was {
                            assert!(c.is_done());
                            checked += 1;
                        }
                        drop(h);
                    }
                    checked
                })
            })
            .collect();
        std::thread::yield_now();
        shutdown.cancel();
        cancelled.store(true, Ordering::SeqCst);
        for t in threads {
            t.join().unwrap();
        }
    }
}

#[test]
fn a_shared_root_behaves_as_with_cancel() {
    let _leaks = common::leak_check();
    #[derive(Debug, PartialEq)]
    struct Tenant(u32);
    let parent = Context::background().with_value(Tenant(3));
    let (p, _ph) = parent.with_timeout(Duration::from_secs(60));
    let (root, shutdown) = p.with_cancel_shared();
    // Values and the deadline reach the children; the hidden stripes are not a value.
    let (child, _ch) = root.with_cancel();
    assert_eq!(child.value::<Tenant>(), Some(&Tenant(3)));
    assert_eq!(child.deadline(), p.deadline());
    assert_eq!(root.deadline(), p.deadline());
    assert!(format!("{root:?}").contains("values: 1"), "{root:?}");
    assert!(format!("{child:?}").contains("values: 1"), "{child:?}");
    // A child's own earlier deadline fires on its own.
    let (short, _sh) = root.with_timeout(Duration::from_millis(10));
    short.wait();
    assert_eq!(short.err(), Some(Error::DeadlineExceeded));
    assert!(!root.is_done() && !child.is_done());
    // Callbacks and waiters on the root itself, and on a child.
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let _a = root.after_func(move || {
        h.fetch_add(1, Ordering::SeqCst);
    });
    let h = hits.clone();
    let _b = child.after_func(move || {
        h.fetch_add(1, Ordering::SeqCst);
    });
    let waiter = {
        let child = child.clone();
        std::thread::spawn(move || child.wait())
    };
    shutdown.cancel_with_cause(std::io::Error::other("shutting down"));
    waiter.join().unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    assert_eq!(child.err(), Some(Error::Canceled));
    assert_eq!(
        child.cause().map(|c| c.to_string()),
        Some("shutting down".to_string())
    );
    // The parent is untouched.
    assert!(!p.is_done());
}

#[test]
fn a_root_shared_under_a_cancelled_parent_is_born_done() {
    let (p, ph) = Context::background().with_cancel();
    ph.cancel();
    let (root, _h) = p.with_cancel_shared();
    assert_eq!(root.err(), Some(Error::Canceled));
    let (child, _ch) = root.with_cancel();
    assert_eq!(child.err(), Some(Error::Canceled));
}

#[test]
fn a_parent_cancel_reaches_children_of_a_shared_root() {
    let _leaks = common::leak_check();
    let (p, ph) = Context::background().with_cancel();
    let (root, _shutdown) = p.with_cancel_shared();
    let children: Vec<_> = (0..10).map(|_| root.with_cancel()).collect();
    ph.cancel();
    assert!(root.is_done());
    assert!(children.iter().all(|(c, _)| c.is_done()));
}

#[test]
fn a_disarmed_shared_root_is_never_done_and_keeps_nothing() {
    let _leaks = common::leak_check();
    let (root, shutdown) = Context::background().with_cancel_shared();
    let (child, child_handle) = root.with_cancel();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let callback = root.after_func(move || {
        h.fetch_add(1, Ordering::SeqCst);
    });
    let h = hits.clone();
    let child_callback = child.after_func(move || {
        h.fetch_add(1, Ordering::SeqCst);
    });
    // A closure that records its drop: a never-done context drops its callbacks unrun at
    // once (behaviour 14), without waiting for `stop`.
    struct Dropped(Arc<AtomicUsize>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let drops = Arc::new(AtomicUsize::new(0));
    let guard = Dropped(drops.clone());
    let grandchild_callback = child.after_func(move || drop(guard));
    child_handle.disarm();
    assert_eq!(
        drops.load(Ordering::SeqCst),
        0,
        "the root can still cancel the child"
    );
    shutdown.disarm();
    // Nothing can cancel them any more: their callbacks are dropped unrun.
    assert_eq!(
        drops.load(Ordering::SeqCst),
        1,
        "dropped when the root went never-done"
    );
    assert!(callback.stop());
    assert!(child_callback.stop());
    assert!(grandchild_callback.stop());
    assert!(!root.is_done() && !child.is_done());
    let (late, _h) = root.with_cancel();
    assert!(!late.is_done());
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[test]
fn everything_is_freed_when_the_subtree_is_dropped() {
    let _leaks = common::leak_check();
    let base = ctxcore::live::snapshot();
    {
        let (root, shutdown) = Context::background().with_cancel_shared();
        let kept: Vec<_> = (0..100).map(|_| root.with_cancel()).collect();
        drop(root);
        drop(kept);
        shutdown.disarm();
    }
    {
        let (root, shutdown) = Context::background().with_cancel_shared();
        let _kept: Vec<_> = (0..100)
            .map(|_| root.with_timeout(Duration::from_secs(60)))
            .collect();
        drop(shutdown);
    }
    ctxcore::live::wait_for_baseline(&base, Duration::from_secs(5))
        .expect("every stripe, child and timer freed");
}

#[test]
fn a_derive_racing_the_roots_disarm_on_real_threads() {
    let _leaks = common::leak_check();
    for _ in 0..2000 {
        let (root, shutdown) = Context::background().with_cancel_shared();
        let r = root.clone();
        let t = std::thread::spawn(move || {
            let kept: Vec<_> = (0..4).map(|_| r.with_cancel()).collect();
            kept
        });
        shutdown.disarm();
        let kept = t.join().unwrap();
        assert!(kept.iter().all(|(c, _)| !c.is_done()));
        drop(kept);
        drop(root);
    }
}

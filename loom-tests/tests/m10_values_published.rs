//! Model 10: a context built with `with_value` and published to another thread (through a
//! loom mutex, racing the reader): the reader sees the whole map (every value, the nearest
//! one for a shadowed type), and when both sides drop their handles concurrently every value
//! is dropped exactly once, after its last reader.
//!
//! `last_release_sees_the_readers_use`: two clones of a value context dropped on two
//! threads, one of which reads the value first. Whichever drop frees the node (the one that
//! finds the count at 1 with an Acquire load and skips the read-modify-write, or the one
//! whose `fetch_sub` reaches zero) must happen after the other's read: the value's
//! destructor writes a loom cell the reader read. (The main thread yields before its drop:
//! without that, loom never ran the reader's drop first, and the Relaxed mutant below went
//! uncaught.)
//!
//! Injected bugs it caught: `ValueRef::with` building the new table without the parent's
//! entries: the reader missed a value; the last-holder check loading the count Relaxed (the
//! free raced the other thread's read).
//!
#![cfg(loom)]

use ctxcore::Context;
use ctxcore_loom_tests::{dropped, model, DropToken, Drops};
use loom::sync::{Arc, Mutex};
use loom::thread;

#[derive(Debug)]
struct Tagged<const N: u8>(u32, #[allow(dead_code)] DropToken);

#[test]
fn published_values_are_seen_whole() {
    model(|| {
        let drops = Drops::default();
        let slot: Arc<Mutex<Option<Context>>> = Arc::new(Mutex::new(None));
        let s = slot.clone();
        let reader = thread::spawn(move || loop {
            let got = s.lock().unwrap().take();
            match got {
                Some(ctx) => {
                    assert_eq!(ctx.value::<Tagged<1>>().map(|v| v.0), Some(1));
                    assert_eq!(ctx.value::<Tagged<2>>().map(|v| v.0), Some(22), "shadowed");
                    assert_eq!(ctx.value::<Tagged<3>>().map(|v| v.0), Some(3));
                    assert!(ctx.value::<u8>().is_none());
                    return;
                }
                None => thread::yield_now(),
            }
        });
        let (base, _h) = Context::background().with_cancel();
        let ctx = base
            .with_value(Tagged::<1>(1, drops.token()))
            .with_value(Tagged::<2>(2, drops.token()))
            .with_value(Tagged::<3>(3, drops.token()))
            .with_value(Tagged::<2>(22, drops.token()));
        *slot.lock().unwrap() = Some(ctx.clone());
        assert_eq!(ctx.value::<Tagged<1>>().map(|v| v.0), Some(1));
        drop(ctx); // racing the reader's use and drop of its clone
        reader.join().unwrap();
        assert_eq!(drops.count(), 4, "every value dropped exactly once");
        vec![dropped(&drops, 4, "the values")]
    });
}

/// A value whose destructor writes the cell a reader reads.
struct Watched(loom::cell::UnsafeCell<u32>);

// SAFETY: the cell is read by the reader and written by the destructor; loom checks that
// the two are ordered (the point of the model).
unsafe impl Sync for Watched {}

impl Drop for Watched {
    fn drop(&mut self) {
        // SAFETY: the last holder frees the value; loom reports a write unordered with a read.
        self.0.with_mut(|p| unsafe { *p = 2 });
    }
}

#[test]
fn last_release_sees_the_readers_use() {
    model(|| {
        let ctx = Context::background().with_value(Watched(loom::cell::UnsafeCell::new(1)));
        let other = ctx.clone();
        let reader = thread::spawn(move || {
            let v = other.value::<Watched>().unwrap();
            // SAFETY: a read; the destructor's write must come after it.
            assert_eq!(v.0.with(|p| unsafe { *p }), 1);
            drop(other);
        });
        // Lets loom run the reader to its end before this drop, too.
        thread::yield_now();
        drop(ctx);
        reader.join().unwrap();
        vec![]
    });
}

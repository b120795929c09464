//! Model 10: a context built with `with_value` and published to another thread (through a
//! loom mutex, racing the reader): the reader sees the whole map (every value, the nearest
//! one for a shadowed type), and when both sides drop their handles concurrently every value
//! is dropped exactly once, after its last reader.
//!
//! Limits: value.rs counts references with std atomics (its static TODO marker needs const
//! construction), which loom does not model; this model therefore checks the published
//! map's contents and the drop counts, not the memory orderings of that count.
//!
//! Injected bug it caught: `ValueRef::with` building the new table without the parent's
//! entries: the reader missed a value.
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

//! Behaviours 1 and 15: roots, and what a `Context` is as a type.
mod common;
use ctxcore::{CancelHandle, Context};
use std::time::{Duration, Instant};

#[test]
fn background_and_todo_are_never_done() {
    let _leaks = common::leak_check();
    for ctx in [Context::background(), Context::todo()] {
        assert!(!ctx.is_done());
        assert_eq!(ctx.err(), None);
        assert!(ctx.check().is_ok());
        assert!(ctx.deadline().is_none());
        assert!(ctx.value::<u32>().is_none());
        assert!(ctx.cause().is_none());
        let start = Instant::now();
        assert!(!ctx.wait_timeout(Duration::from_millis(30)));
        assert!(start.elapsed() >= Duration::from_millis(30));
    }
}

#[test]
fn roots_differ_only_in_debug() {
    let _leaks = common::leak_check();
    assert_eq!(
        format!("{:?}", Context::background()),
        "Context::background()"
    );
    assert_eq!(format!("{:?}", Context::todo()), "Context::todo()");
    let (ctx, h) = Context::todo().with_cancel();
    h.cancel();
    let shown = format!("{ctx:?}");
    assert!(shown.contains("Canceled"), "{shown}");
}

#[test]
fn context_is_a_cheap_shareable_value() {
    let _leaks = common::leak_check();
    fn assert_traits<T: Clone + std::fmt::Debug + Send + Sync + 'static>() {}
    fn assert_send_sync<T: Send + Sync>() {}
    assert_traits::<Context>();
    assert_send_sync::<CancelHandle>();
    assert_send_sync::<ctxcore::AfterFunc>();
    assert!(std::mem::size_of::<Context>() <= 2 * std::mem::size_of::<usize>());
}

#[test]
fn clones_observe_the_same_cancellation() {
    let _leaks = common::leak_check();
    let (ctx, h) = Context::background().with_cancel();
    let clones: Vec<Context> = (0..10).map(|_| ctx.clone()).collect();
    h.cancel();
    assert!(clones.iter().all(Context::is_done));
}

#[test]
fn default_is_background() {
    let _leaks = common::leak_check();
    assert_eq!(format!("{:?}", Context::default()), "Context::background()");
}

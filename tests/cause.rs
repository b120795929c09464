//! Behaviour 9: causes.
mod common;
use ctxcore::{Context, Error};
use std::fmt;
use std::time::Duration;

#[derive(Debug)]
struct Overloaded(u32);
impl fmt::Display for Overloaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "overloaded: {}", self.0)
    }
}
impl std::error::Error for Overloaded {}

#[test]
fn none_until_done() {
    let _leaks = common::leak_check();
    let (ctx, _h) = Context::background().with_cancel();
    assert!(ctx.cause().is_none());
}

#[test]
fn custom_cause_is_downcastable_and_inherited() {
    let _leaks = common::leak_check();
    let (parent, ph) = Context::background().with_cancel();
    let (child, _ch) = parent.with_cancel();
    ph.cancel_with_cause(Overloaded(7));
    assert_eq!(parent.err(), Some(Error::Canceled));
    let c = parent.cause().unwrap();
    assert_eq!(c.downcast_ref::<Overloaded>().unwrap().0, 7);
    let cc = child.cause().unwrap();
    assert!(std::sync::Arc::ptr_eq(&c, &cc), "the parent's cause itself");
    assert_eq!(child.err(), Some(Error::Canceled));
}

#[test]
fn plain_cancel_cause_is_the_error() {
    let _leaks = common::leak_check();
    let (ctx, h) = Context::background().with_cancel();
    h.cancel();
    assert_eq!(
        ctx.cause().unwrap().downcast_ref::<Error>(),
        Some(&Error::Canceled)
    );
}

#[test]
fn deadline_cause_is_deadline_exceeded() {
    let _leaks = common::leak_check();
    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(1));
    ctx.wait();
    assert_eq!(
        ctx.cause().unwrap().downcast_ref::<Error>(),
        Some(&Error::DeadlineExceeded)
    );
}

#[test]
fn cause_after_child_own_cancel_is_kept_over_parent() {
    let _leaks = common::leak_check();
    let (parent, ph) = Context::background().with_cancel();
    let (child, ch) = parent.with_cancel();
    ch.cancel_with_cause("child first");
    ph.cancel_with_cause("parent later");
    assert_eq!(child.cause().unwrap().to_string(), "child first");
    assert_eq!(parent.cause().unwrap().to_string(), "parent later");
}

#[test]
fn string_and_boxed_causes() {
    let _leaks = common::leak_check();
    let (ctx, h) = Context::background().with_cancel();
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(Overloaded(1));
    h.cancel_with_cause(boxed);
    assert!(ctx.cause().unwrap().downcast_ref::<Overloaded>().is_some());
}

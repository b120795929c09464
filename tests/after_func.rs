//! Behaviour 13: `after_func`.
mod common;
use ctxcore::Context;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::Duration;

fn counter() -> (Arc<AtomicUsize>, impl Fn() -> Box<dyn FnOnce() + Send>) {
    let c = Arc::new(AtomicUsize::new(0));
    let c2 = c.clone();
    (c, move || {
        let c = c2.clone();
        Box::new(move || {
            c.fetch_add(1, Ordering::SeqCst);
        })
    })
}

#[test]
fn runs_once_on_the_cancelling_thread_after_state_is_published() {
    let _leaks = common::leak_check();
    let (ctx, h) = Context::background().with_cancel();
    let seen = Arc::new(Mutex::new(None));
    let (s, c) = (seen.clone(), ctx.clone());
    let _a = ctx.after_func(move || {
        *s.lock().unwrap() = Some((thread::current().id(), c.is_done(), c.err()));
    });
    let canceller = thread::spawn(move || {
        h.cancel();
        thread::current().id()
    })
    .join()
    .unwrap();
    let (id, done, err) = seen.lock().unwrap().take().expect("ran");
    assert_eq!(id, canceller);
    assert!(done);
    assert_eq!(err, Some(ctxcore::Error::Canceled));
}

#[test]
fn already_done_runs_at_once_here() {
    let _leaks = common::leak_check();
    let (ctx, h) = Context::background().with_cancel();
    h.cancel();
    let here = thread::current().id();
    let ran_on = Arc::new(Mutex::new(None));
    let r = ran_on.clone();
    let a = ctx.after_func(move || *r.lock().unwrap() = Some(thread::current().id()));
    assert_eq!(*ran_on.lock().unwrap(), Some(here));
    assert!(!a.stop());
}

#[test]
fn stop_prevents_and_reports() {
    let _leaks = common::leak_check();
    let (n, mk) = counter();
    let (ctx, h) = Context::background().with_cancel();
    let a = ctx.after_func(mk());
    let b = ctx.after_func(mk());
    assert!(a.stop());
    assert!(!a.stop());
    h.cancel();
    assert_eq!(n.load(Ordering::SeqCst), 1);
    assert!(!b.stop(), "already ran");
}

#[test]
fn dropping_after_func_does_not_stop_it() {
    let _leaks = common::leak_check();
    let (n, mk) = counter();
    let (ctx, h) = Context::background().with_cancel();
    drop(ctx.after_func(mk()));
    h.cancel();
    assert_eq!(n.load(Ordering::SeqCst), 1);
}

#[test]
fn parent_cancel_reaches_callbacks_of_dropped_children() {
    let _leaks = common::leak_check();
    let (n, mk) = counter();
    let (parent, ph) = Context::background().with_cancel();
    {
        let (child, ch) = parent.with_cancel();
        let _ = child.after_func(mk());
        ch.disarm();
    }
    ph.cancel();
    assert_eq!(
        n.load(Ordering::SeqCst),
        1,
        "as in Go, the callback keeps its context"
    );
}

#[test]
fn deadline_runs_callbacks_on_the_timer_thread() {
    let _leaks = common::leak_check();
    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(10));
    let name = Arc::new(Mutex::new(None));
    let n = name.clone();
    let _a = ctx.after_func(move || {
        *n.lock().unwrap() = thread::current().name().map(str::to_owned);
    });
    ctx.wait();
    for _ in 0..common::scaled(500) {
        if name.lock().unwrap().is_some() {
            break;
        }
        thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(name.lock().unwrap().as_deref(), Some("ctxcore-timer"));
}

#[test]
fn never_done_context_never_runs_and_stop_is_true_once() {
    let _leaks = common::leak_check();
    let (n, mk) = counter();
    let a = Context::background().after_func(mk());
    assert!(a.stop());
    assert!(!a.stop());
    assert_eq!(n.load(Ordering::SeqCst), 0);
}

#[test]
fn stop_racing_cancel_agrees_with_what_happened() {
    let _leaks = common::leak_check();
    for _ in 0..common::scaled(500) {
        let (n, mk) = counter();
        let (ctx, h) = Context::background().with_cancel();
        let a = Arc::new(ctx.after_func(mk()));
        let b = Arc::new(Barrier::new(2));
        let (a2, b2) = (a.clone(), b.clone());
        let t = thread::spawn(move || {
            b2.wait();
            a2.stop()
        });
        b.wait();
        h.cancel();
        let stopped = t.join().unwrap();
        assert_eq!(n.load(Ordering::SeqCst), usize::from(!stopped));
    }
}

#[test]
fn callback_may_use_and_cancel_contexts() {
    let _leaks = common::leak_check();
    let (parent, ph) = Context::background().with_cancel();
    let (other, oh) = Context::background().with_cancel();
    let oh = Arc::new(oh);
    let (o2, p2) = (oh.clone(), parent.clone());
    let _a = parent.after_func(move || {
        assert!(p2.is_done());
        let (born, _h) = p2.with_cancel();
        assert!(born.is_done());
        o2.cancel();
    });
    // Cancel from inside a callback of the same context: no deadlock.
    let ph = Arc::new(ph);
    let ph2 = ph.clone();
    let _b = parent.after_func(move || ph2.cancel());
    ph.cancel();
    assert!(other.is_done());
    drop(oh);
}

#[test]
fn panicking_callback_does_not_stop_the_others() {
    let _leaks = common::leak_check();
    let (n, mk) = counter();
    let (ctx, h) = Context::background().with_cancel();
    let (child, _ch) = ctx.with_cancel();
    let _a = ctx.after_func(mk());
    let _p = ctx.after_func(|| panic!("callback failed"));
    let _b = ctx.after_func(mk());
    let mut waiter = Box::pin(child.done_owned());
    let w = Arc::new(common_waker::Flag::default());
    let _ = std::pin::Pin::new(&mut waiter)
        .as_mut()
        .poll(&mut std::task::Context::from_waker(
            &std::task::Waker::from(w.clone()),
        ));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h.cancel()));
    let err = result.expect_err("the panic is re-raised on the canceller");
    assert_eq!(err.downcast_ref::<&str>(), Some(&"callback failed"));
    assert_eq!(n.load(Ordering::SeqCst), 2, "every other callback ran");
    assert!(child.is_done());
    assert!(w.0.load(Ordering::SeqCst), "waiters woken");
    assert!(ctx.is_done());
}

use std::future::Future;

mod common_waker {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    #[derive(Default)]
    pub struct Flag(pub AtomicBool);
    impl std::task::Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

#[test]
fn repeated_register_and_stop_does_not_grow() {
    let _leaks = common::leak_check();
    let (ctx, _h) = Context::background().with_cancel();
    let before = ctxcore::live::snapshot();
    for _ in 0..common::scaled(10_000) {
        let a = ctx.after_func(|| {});
        assert!(a.stop());
    }
    ctxcore::live::wait_for_baseline(&before, std::time::Duration::from_secs(5))
        .expect("stopped callbacks are unlinked and freed");
}

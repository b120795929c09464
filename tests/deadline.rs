//! Behaviours 5 and 6: deadlines and timeouts.
mod common;
use common::SOON;
use ctxcore::{Context, Error};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
fn deadline_fires_with_nobody_polling() {
    let _leaks = common::leak_check();
    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(20));
    let fired = Arc::new(AtomicBool::new(false));
    let f = fired.clone();
    let _a = ctx.after_func(move || f.store(true, Ordering::SeqCst));
    let start = Instant::now();
    while !fired.load(Ordering::SeqCst) {
        assert!(start.elapsed() < SOON, "the timer thread never fired");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(start.elapsed() >= Duration::from_millis(15));
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    assert!(ctx.err().unwrap().is_timeout());
}

#[test]
fn never_fires_early() {
    let _leaks = common::leak_check();
    for ms in [1u64, 3, 10] {
        let d = Instant::now() + Duration::from_millis(ms);
        let (ctx, _h) = Context::background().with_deadline(d);
        ctx.wait();
        assert!(Instant::now() >= d);
        assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    }
}

#[test]
fn earlier_parent_deadline_wins() {
    let _leaks = common::leak_check();
    let near = Instant::now() + Duration::from_millis(30);
    let far = near + Duration::from_secs(3600);
    let (parent, _ph) = Context::background().with_deadline(near);
    let (child, _ch) = parent.with_deadline(far);
    assert_eq!(child.deadline(), Some(near));
    let (tighter, _th) = parent.with_deadline(near - Duration::from_millis(10));
    assert_eq!(tighter.deadline(), Some(near - Duration::from_millis(10)));
    child.wait();
    assert_eq!(
        child.err(),
        Some(Error::DeadlineExceeded),
        "the parent's deadline"
    );
}

#[test]
fn values_and_cancel_children_report_the_deadline() {
    let _leaks = common::leak_check();
    let d = Instant::now() + Duration::from_secs(60);
    let (ctx, _h) = Context::background().with_deadline(d);
    let (c, _ch) = ctx.with_value(1u8).with_cancel();
    assert_eq!(c.deadline(), Some(d));
    assert_eq!(ctx.without_cancel().deadline(), None);
}

#[test]
fn past_deadline_is_born_done() {
    let _leaks = common::leak_check();
    let (ctx, _h) = Context::background().with_deadline(Instant::now() - Duration::from_secs(1));
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    assert_eq!(
        ctx.cause().unwrap().downcast_ref::<Error>(),
        Some(&Error::DeadlineExceeded)
    );
    let (z, _h) = Context::background().with_timeout(Duration::ZERO);
    assert_eq!(z.err(), Some(Error::DeadlineExceeded));
}

#[test]
fn done_parent_decides_over_past_deadline() {
    let _leaks = common::leak_check();
    let (p, ph) = Context::background().with_cancel();
    ph.cancel();
    let (c, _h) = p.with_deadline(Instant::now() - Duration::from_secs(1));
    assert_eq!(c.err(), Some(Error::Canceled));
}

#[test]
fn unrepresentable_timeouts_mean_no_deadline() {
    let _leaks = common::leak_check();
    let root = Context::background();
    let (a, _h) = root.with_timeout(Duration::MAX);
    assert!(a.deadline().is_none());
    assert!(!a.is_done());
    let (b, _h) = root.with_timeout(Duration::from_secs(u64::MAX / 2));
    assert!(!b.is_done());
    let far = Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
    let (c, _h) = root.with_deadline(far);
    assert_eq!(c.deadline(), Some(far));
    assert!(!c.wait_timeout(Duration::from_millis(5)));
    // Under a parent with a deadline, MAX keeps the parent's.
    let (p, _ph) = root.with_timeout(Duration::from_secs(9));
    let (q, _qh) = p.with_timeout(Duration::MAX);
    assert_eq!(q.deadline(), p.deadline());
}

#[test]
fn with_timeout_is_now_plus_timeout() {
    let _leaks = common::leak_check();
    let before = Instant::now();
    let (ctx, _h) = Context::background().with_timeout(Duration::from_secs(10));
    let d = ctx.deadline().unwrap();
    assert!(d >= before + Duration::from_secs(10));
    assert!(d <= Instant::now() + Duration::from_secs(10));
}

#[test]
fn cancel_before_deadline_keeps_canceled() {
    let _leaks = common::leak_check();
    let (ctx, h) = Context::background().with_timeout(Duration::from_millis(10));
    h.cancel();
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(ctx.err(), Some(Error::Canceled));
}

#[test]
fn many_timers_all_fire_in_deadline_order() {
    let _leaks = common::leak_check();
    let start = Instant::now();
    let ctxs: Vec<_> = (0..200)
        .map(|i| Context::background().with_timeout(Duration::from_millis(5 + (i % 40))))
        .collect();
    for (ctx, _h) in &ctxs {
        assert!(ctx.wait_timeout(SOON));
        assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    }
    assert!(start.elapsed() < SOON);
}

#[test]
fn disarmed_timers_are_reclaimed() {
    let _leaks = common::leak_check();
    let before = ctxcore::live::snapshot();
    for _ in 0..10_000 {
        let (_ctx, h) = Context::background().with_timeout(Duration::from_secs(30));
        h.cancel();
    }
    // The driver takes disarmed entries out at its next turn.
    ctxcore::live::wait_for_baseline(&before, SOON).expect("timer entries freed");
}

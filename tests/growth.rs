//! Behaviour 14 and the "no growth" hard cases: long-lived parents stay small.
mod common;
use ctxcore::Context;
use std::future::Future;
use std::task::Waker;
use std::time::{Duration, Instant};

const N: usize = if cfg!(miri) { 1_000 } else { 1_000_000 };

#[test]
fn a_million_children_created_and_dropped() {
    let _leaks = common::leak_check();
    let (parent, ph) = Context::background().with_cancel();
    let before = ctxcore::live::snapshot();
    let memory = ctxcore::live::entries_in_memory();
    for i in 0..N {
        let (child, h) = parent.with_cancel();
        if i % 2 == 0 {
            h.cancel(); // cancelled then dropped
        } else {
            h.disarm(); // dropped uncancelled
        }
        drop(child);
    }
    ctxcore::live::wait_for_baseline(&before, Duration::from_secs(10))
        .expect("every child released");
    let retained = ctxcore::live::entries_in_memory() - memory;
    assert!(
        retained < 64 || !common::isolated(),
        "{retained} dead children still in memory"
    );
    // The parent's list is empty: cancelling it is instant.
    let start = Instant::now();
    ph.cancel();
    assert!(start.elapsed() < Duration::from_millis(50));
}

#[test]
fn children_dropped_out_of_order_leave_the_list() {
    let _leaks = common::leak_check();
    let (parent, ph) = Context::background().with_cancel();
    let before = ctxcore::live::snapshot();
    let memory = ctxcore::live::entries_in_memory();
    let mut kids: Vec<_> = (0..10_000).map(|_| parent.with_cancel()).collect();
    // Drop from the middle outwards, FIFO and LIFO mixed.
    let mut i = 0;
    while !kids.is_empty() {
        let idx = (i * 7919) % kids.len();
        let (c, h) = kids.swap_remove(idx);
        h.disarm();
        drop(c);
        i += 1;
    }
    ctxcore::live::wait_for_baseline(&before, Duration::from_secs(10)).expect("list emptied");
    let retained = ctxcore::live::entries_in_memory() - memory;
    assert!(
        retained < 64 || !common::isolated(),
        "{retained} dead children still in memory"
    );
    drop(ph);
}

#[test]
fn done_futures_polled_once_and_dropped() {
    let _leaks = common::leak_check();
    let (ctx, _h) = Context::background().with_cancel();
    let before = ctxcore::live::snapshot();
    for _ in 0..100_000 {
        let mut d = Box::pin(ctx.done());
        let mut cx = std::task::Context::from_waker(Waker::noop());
        assert!(d.as_mut().poll(&mut cx).is_pending());
    }
    ctxcore::live::wait_for_baseline(&before, Duration::from_secs(10)).expect("no waiter left");
}

#[test]
fn timeouts_created_and_cancelled_do_not_accumulate() {
    let _leaks = common::leak_check();
    let (parent, _ph) = Context::background().with_cancel();
    let before = ctxcore::live::snapshot();
    for _ in 0..200_000 {
        let (_c, h) = parent.with_timeout(Duration::from_secs(30));
        drop(h);
    }
    ctxcore::live::wait_for_baseline(&before, Duration::from_secs(10))
        .expect("timer entries reclaimed");
}

#[test]
fn oldest_first_churn_under_many_live_siblings() {
    let _leaks = common::leak_check();
    // A server's root with 1,000 requests in flight, the oldest finishing first.
    let (root, _rh) = Context::background().with_cancel();
    let mut live: std::collections::VecDeque<_> = (0..1000).map(|_| root.with_cancel()).collect();
    let memory = ctxcore::live::entries_in_memory();
    let start = Instant::now();
    for _ in 0..N / 10 {
        live.push_back(root.with_cancel());
        drop(live.pop_front());
    }
    let per_op = start.elapsed() / (N as u32 / 10);
    let retained = ctxcore::live::entries_in_memory() - memory;
    assert!(
        retained < 2 * 1000 + 64 || !common::isolated(),
        "{retained} entries retained"
    );
    // O(1) amortized: far below a walk over 1,000 siblings (debug build, shared machine).
    assert!(per_op < Duration::from_micros(50), "{per_op:?} per request");
    drop(live);
}

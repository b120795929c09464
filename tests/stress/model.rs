//! A model of what the public API must report, driven by random operations.
//!
//! Every operation of the public API at random (derive of every kind, clone, cancel with and
//! without a cause, disarm, drop of handles and contexts in any order, `after_func` and
//! `stop`, `done()` futures polled and dropped, `wait_timeout`), on one thread so that the
//! model is exact: after each step every context must report what the model says (done or
//! not, its error, its cause, its values), every callback must have run exactly when the
//! model says (on cancel, never on a context that can never be done, never after a true
//! `stop`), every closure, value and waker must be alive exactly as long as the model says
//! (behaviour 14), and after teardown nothing is left but callbacks still owed a deadline.
//!
//! On the system clock, deadlines are either past (born done) or an hour away (never
//! reached during the run), so the model never races the timer thread; the multi-thread
//! tests of this file and of tests/retention.rs cover the races. On a manual clock
//! (behaviours 27, 28), deadlines are a few milliseconds of that clock away and a step may
//! advance it: the model fires what the advance reached, and checks every `deadline()`
//! exactly; after teardown a last advance fires what is still owed, and then nothing at
//! all may be left. `CTXCORE_MODEL_SEEDS` sets the number of seeds.

use super::spin::{Shared, SharedWake};
use ctxcore::clock::Clock;
use ctxcore::{AfterFunc, CancelHandle, Context, Error};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::Rng;

/// Counts its drops.
pub(super) struct Token(pub(super) Shared<AtomicUsize>);

impl Drop for Token {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A value type carried by contexts: the model knows which id each context must see.
struct Val(u64, #[allow(dead_code)] Token);

/// A cause: the model checks by id that the right one is reported.
#[derive(Debug)]
pub(super) struct Why(pub(super) usize);

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "why {}", self.0)
    }
}

impl std::error::Error for Why {}

struct NoopTask;

impl SharedWake for NoopTask {
    fn wake(&self) {}
}

/// The model of one cancellable node.
#[derive(Clone)]
struct MNode {
    parent: Option<usize>,
    handle_armed: bool,
    /// A pending timer of its own (at `own`).
    timer: bool,
    /// Its own deadline, when it armed a timer (manual clock only).
    own: Option<Instant>,
    /// Its effective deadline (manual clock only: on the system clock it is not exact).
    deadline: Option<Instant>,
    /// `Some((err, cause id))` once done; cause id `None` for the error itself.
    done: Option<(Error, Option<usize>)>,
}

/// A context the test holds, and what it must report.
struct Held {
    ctx: Context,
    node: Option<usize>,
    value: Option<u64>,
}

struct Cb {
    /// `None` once dropped (dropping does not stop it: the flags are still checked).
    after: Option<AfterFunc>,
    stopped: bool,
    node: Option<usize>,
    ran: Shared<AtomicUsize>,
    dropped: Shared<AtomicUsize>,
    /// Model: ran, stopped (by a true `stop`), or dropped unrun.
    settled: bool,
    expect_ran: bool,
}

struct Model {
    nodes: Vec<MNode>,
}

impl Model {
    fn can_be_done(&self, mut n: usize) -> bool {
        loop {
            let m = &self.nodes[n];
            if m.done.is_some() {
                return false;
            }
            if m.handle_armed || m.timer {
                return true;
            }
            match m.parent {
                Some(p) => n = p,
                None => return false,
            }
        }
    }

    fn is_under(&self, mut n: usize, ancestor: usize) -> bool {
        loop {
            if n == ancestor {
                return true;
            }
            match self.nodes[n].parent {
                Some(p) => n = p,
                None => return false,
            }
        }
    }

    fn cancel(&mut self, n: usize, cause: Option<usize>) {
        self.finish(n, (Error::Canceled, cause));
    }

    /// The clock reached `now`: every pending timer at or before it fires, earliest first.
    fn advance(&mut self, now: Instant) {
        let mut due: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].timer && self.nodes[i].own.is_some_and(|d| d <= now))
            .collect();
        due.sort_by_key(|&i| self.nodes[i].own);
        for i in due {
            self.nodes[i].timer = false;
            self.finish(i, (Error::DeadlineExceeded, None));
        }
    }

    fn finish(&mut self, n: usize, word: (Error, Option<usize>)) {
        if self.nodes[n].done.is_some() {
            return;
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].done.is_none() && self.is_under(i, n) {
                self.nodes[i].done = Some(word);
            }
        }
    }
}

fn check(model: &Model, held: &[Held], cbs: &mut [Cb], step: usize, exact: bool) {
    for h in held {
        if exact {
            let want = h.node.and_then(|n| model.nodes[n].deadline);
            assert_eq!(h.ctx.deadline(), want, "step {step}: deadline");
        }
        let want = h.node.and_then(|n| model.nodes[n].done);
        assert_eq!(h.ctx.err(), want.map(|w| w.0), "step {step}: err");
        assert_eq!(h.ctx.is_done(), want.is_some(), "step {step}: is_done");
        match want {
            Some((_, Some(id))) => {
                let c = h.ctx.cause().expect("a cause when done");
                assert_eq!(
                    c.downcast_ref::<Why>().map(|w| w.0),
                    Some(id),
                    "step {step}"
                );
            }
            Some((e, None)) => {
                let c = h.ctx.cause().expect("a cause when done");
                assert_eq!(c.downcast_ref::<Error>(), Some(&e), "step {step}: cause");
            }
            None => assert!(h.ctx.cause().is_none(), "step {step}: cause while live"),
        }
        assert_eq!(
            h.ctx.value::<Val>().map(|v| v.0),
            h.value,
            "step {step}: value"
        );
    }
    for cb in cbs.iter_mut() {
        if !cb.settled {
            if let Some(n) = cb.node {
                if model.nodes[n].done.is_some() {
                    cb.settled = true;
                    cb.expect_ran = true;
                } else if !model.can_be_done(n) {
                    cb.settled = true;
                }
            } else {
                cb.settled = true;
            }
        }
        let ran = cb.ran.load(Ordering::SeqCst);
        assert_eq!(
            ran,
            usize::from(cb.expect_ran),
            "step {step}: callback runs"
        );
        let dropped = cb.dropped.load(Ordering::SeqCst);
        assert_eq!(
            dropped,
            usize::from(cb.settled),
            "step {step}: closure dropped"
        );
    }
}

/// One random run; `clock`: on a manual clock's root (else under `background()`).
fn run_seed(seed: u64, steps: usize, clock: Option<&Clock>) {
    let mut rng = Rng(seed | 1);
    let mut model = Model { nodes: Vec::new() };
    let values_made = Shared::new(AtomicUsize::new(0));
    let values_dropped = Shared::new(AtomicUsize::new(0));
    let exact = clock.is_some();
    let now = || clock.map_or_else(Instant::now, Clock::now);
    let mut held = vec![Held {
        ctx: clock.map_or_else(Context::background, Context::root),
        node: None,
        value: None,
    }];
    let mut handles: Vec<(usize, CancelHandle)> = Vec::new();
    let mut cbs: Vec<Cb> = Vec::new();
    let task = Shared::new(NoopTask);
    let waker = task.waker();
    let base_wakers = Shared::strong_count(&task);
    // Pending futures and whether the model says they hold a waker clone.
    let mut futures: Vec<(Pin<Box<ctxcore::DoneOwned>>, Option<usize>)> = Vec::new();
    let mut causes = 0;
    for step in 0..steps {
        let pick = rng.below(held.len());
        match rng.below(16) {
            0..=2 => {
                // Derive a cancellable child (plain, deadline ahead, or past deadline).
                let parent = &held[pick];
                let kind = rng.below(3);
                let ahead = match clock {
                    Some(_) => Duration::from_millis(rng.below(40) as u64),
                    None => Duration::from_secs(3600),
                };
                let t = now();
                let (ctx, h) = match kind {
                    0 => parent.ctx.with_cancel(),
                    1 => parent.ctx.with_timeout(ahead),
                    _ => parent.ctx.with_deadline(t - Duration::from_millis(1)),
                };
                let own = match kind {
                    0 => None,
                    1 => Some(t + ahead),
                    _ => Some(t - Duration::from_millis(1)),
                };
                let parent_done = parent.node.and_then(|n| model.nodes[n].done);
                let parent_can = parent.node.is_some_and(|n| model.can_be_done(n));
                // A parent that can never be done is no parent (its deadline neither).
                let parent_deadline = parent
                    .node
                    .filter(|_| parent_can || parent_done.is_some())
                    .and_then(|n| model.nodes[n].deadline);
                let (deadline, arms) = match (parent_deadline, own) {
                    (Some(p), Some(d)) if p <= d => (Some(p), false),
                    (_, Some(d)) => (Some(d), true),
                    (p, None) => (p, false),
                };
                let past = arms && own.is_some_and(|d| d <= t);
                let done = parent_done.or(past.then_some((Error::DeadlineExceeded, None)));
                let id = model.nodes.len();
                model.nodes.push(MNode {
                    parent: parent.node.filter(|_| parent_can),
                    handle_armed: true,
                    timer: arms && done.is_none(),
                    own: own.filter(|_| arms),
                    deadline: deadline.filter(|_| exact),
                    done,
                });
                let value = parent.value;
                held.push(Held {
                    ctx,
                    node: Some(id),
                    value,
                });
                handles.push((id, h));
            }
            3 => {
                values_made.fetch_add(1, Ordering::SeqCst);
                let v = rng.next();
                let ctx = held[pick]
                    .ctx
                    .with_value(Val(v, Token(values_dropped.clone())));
                let node = held[pick].node;
                held.push(Held {
                    ctx,
                    node,
                    value: Some(v),
                });
            }
            4 => {
                let ctx = held[pick].ctx.without_cancel();
                let value = held[pick].value;
                held.push(Held {
                    ctx,
                    node: None,
                    value,
                });
            }
            5 => {
                let ctx = held[pick].ctx.clone();
                let (node, value) = (held[pick].node, held[pick].value);
                held.push(Held { ctx, node, value });
            }
            6 | 7 if !handles.is_empty() => {
                // Cancel, with or without a cause, by `cancel` or by dropping the handle.
                let (id, h) = handles.swap_remove(rng.below(handles.len()));
                let cause = (rng.below(2) == 0).then(|| {
                    causes += 1;
                    causes
                });
                match cause {
                    Some(c) => h.cancel_with_cause(Why(c)),
                    None if rng.below(2) == 0 => h.cancel(),
                    None => drop(h),
                }
                model.cancel(id, cause);
                model.nodes[id].handle_armed = false;
            }
            8 if !handles.is_empty() => {
                let (id, h) = handles.swap_remove(rng.below(handles.len()));
                h.disarm();
                model.nodes[id].handle_armed = false;
            }
            9 if held.len() > 1 => {
                held.swap_remove(rng.below(held.len() - 1) + 1);
            }
            10 => {
                let ran = Shared::new(AtomicUsize::new(0));
                let dropped = Shared::new(AtomicUsize::new(0));
                let (r, token) = (ran.clone(), Token(dropped.clone()));
                let after = held[pick].ctx.after_func(move || {
                    let _t = &token;
                    r.fetch_add(1, Ordering::SeqCst);
                });
                cbs.push(Cb {
                    after: Some(after),
                    stopped: false,
                    node: held[pick].node,
                    ran,
                    dropped,
                    settled: false,
                    expect_ran: false,
                });
            }
            11 if !cbs.is_empty() => {
                let i = rng.below(cbs.len());
                let cb = &mut cbs[i];
                if let Some(after) = &cb.after {
                    let stopped = after.stop();
                    // True exactly when the callback never ran and no stop came before
                    // (also for one dropped unrun because its context can never be done).
                    assert_eq!(stopped, !cb.expect_ran && !cb.stopped, "step {step}: stop");
                    if stopped {
                        cb.stopped = true;
                        cb.settled = true;
                    }
                    if rng.below(2) == 0 {
                        // Dropping an `AfterFunc` does not stop it.
                        cb.after = None;
                    }
                }
            }
            12 => {
                let mut fut = Box::pin(held[pick].ctx.done_owned());
                let mut cx = std::task::Context::from_waker(&waker);
                let ready = fut.as_mut().poll(&mut cx).is_ready();
                let node = held[pick].node;
                let done = node.is_some_and(|n| model.nodes[n].done.is_some());
                assert_eq!(ready, done, "step {step}: done() ready");
                if !ready {
                    futures.push((fut, node));
                }
            }
            13 if !futures.is_empty() => {
                let (mut fut, node) = futures.swap_remove(rng.below(futures.len()));
                if rng.below(2) == 0 {
                    let mut cx = std::task::Context::from_waker(&waker);
                    let ready = fut.as_mut().poll(&mut cx).is_ready();
                    let done = node.is_some_and(|n| model.nodes[n].done.is_some());
                    assert_eq!(ready, done, "step {step}: done() re-poll");
                    if !ready {
                        futures.push((fut, node));
                    }
                }
            }
            14 => {
                let node = held[pick].node;
                let done = node.is_some_and(|n| model.nodes[n].done.is_some());
                assert_eq!(held[pick].ctx.wait_timeout(Duration::ZERO), done);
            }
            15 => {
                if let Some(c) = clock {
                    let by = Duration::from_millis(rng.below(25) as u64);
                    let to = c.now() + by;
                    c.advance(by);
                    model.advance(to);
                }
            }
            _ => {}
        }
        check(&model, &held, &mut cbs, step, exact);
        // A waker clone is held exactly by the registered futures of contexts that can
        // still be done (behaviour 14): never by a dropped one or a never-done one.
        let registered = futures
            .iter()
            .filter(|(_, n)| n.is_some_and(|n| model.can_be_done(n)))
            .count();
        assert_eq!(
            Shared::strong_count(&task),
            base_wakers + registered,
            "step {step}: waker clones"
        );
    }
    // Teardown, in random order: each handle disarmed or dropped.
    drop(futures);
    assert_eq!(
        Shared::strong_count(&task),
        base_wakers,
        "wakers after teardown"
    );
    while !handles.is_empty() {
        let (id, h) = handles.swap_remove(rng.below(handles.len()));
        if rng.below(2) == 0 {
            h.disarm();
        } else {
            drop(h);
            model.cancel(id, None);
        }
        model.nodes[id].handle_armed = false;
    }
    while !held.is_empty() {
        held.swap_remove(rng.below(held.len()));
    }
    check(&model, &held, &mut cbs, steps, exact);
    if let Some(c) = clock {
        // What is still owed a deadline fires now: afterwards nothing may be left.
        let to = c.now() + Duration::from_secs(3600);
        c.advance(Duration::from_secs(3600));
        model.advance(to);
        check(&model, &held, &mut cbs, steps + 1, exact);
        assert!(cbs.iter().all(|c| c.settled), "every callback settled");
    }
    let owed = cbs.iter().filter(|c| !c.settled).count();
    for cb in &cbs {
        // Only a pending deadline may keep a callback now.
        if !cb.settled {
            let n = cb.node.expect("settled without a node");
            assert!(model.can_be_done(n), "an unsettled callback nobody can run");
        }
    }
    drop(cbs);
    if owed == 0 {
        assert_eq!(
            values_dropped.load(Ordering::SeqCst),
            values_made.load(Ordering::SeqCst),
            "every value dropped"
        );
    }
}

/// Seeds per model test: `CTXCORE_MODEL_SEEDS`, else 300 (3 under Miri).
fn seeds() -> u64 {
    std::env::var("CTXCORE_MODEL_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if cfg!(miri) { 3 } else { 300 })
}

#[test]
fn model_of_every_operation_single_thread() {
    let _serial = super::serial();
    let seeds = seeds();
    let base = ctxcore::live::snapshot();
    for seed in 1..=seeds {
        run_seed(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15), 300, None);
    }
    // Callbacks still owed a one-hour deadline keep their contexts; nothing else remains.
    let now = ctxcore::live::snapshot();
    assert!(now.waiters <= base.waiters, "waiters left: {now:?}");
}

#[test]
fn model_of_every_operation_on_a_manual_clock() {
    let _serial = super::serial();
    let seeds = seeds();
    let base = ctxcore::live::snapshot();
    for seed in 1..=seeds {
        let clock = Clock::manual();
        run_seed(seed.wrapping_mul(0xD1B5_4A32_D192_ED03), 300, Some(&clock));
        // The last advance fired everything owed: the clock's queue is empty.
        assert!(
            format!("{clock:?}").contains("pending: 0"),
            "seed {seed}: {clock:?}"
        );
    }
    let now = ctxcore::live::snapshot();
    assert_eq!(now.timers, base.timers, "timers left: {now:?}");
    assert_eq!(now.callbacks, base.callbacks, "callbacks left: {now:?}");
    assert!(now.waiters <= base.waiters, "waiters left: {now:?}");
}

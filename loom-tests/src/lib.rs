//! Shared helpers of the loom models (`tests/*.rs`). Build and run with `ci/loom.sh`.
#![cfg(loom)]

use ctxcore::__loom;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Checks a model runs once the execution's garbage is freed (see [`model`]).
pub type After = Vec<Box<dyn FnOnce()>>;

/// Runs `f` under loom (bounds from the LOOM_* environment variables, as `ci/loom.sh` sets
/// them; preemption bound 3 if unset) and, after each execution, asserts that every
/// context, timer, waiter and callback the execution created was freed exactly once, then
/// runs the checks `f` returned (drop counts of things owned by freed entries, such as
/// causes, can only be checked once the epoch has freed them).
pub fn model<F: Fn() -> After + Sync + Send + 'static>(f: F) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    let bound = b.preemption_bound;
    let executions = Arc::new(AtomicUsize::new(0));
    let count = executions.clone();
    b.check(move || {
        count.fetch_add(1, Ordering::Relaxed);
        __loom::begin();
        let after = f();
        let end = __loom::finish();
        assert!(
            end.retired_twice.is_empty(),
            "entries retired twice: {:?}",
            end.retired_twice
        );
        assert_eq!(
            end.live,
            Default::default(),
            "live counts at the end of the execution"
        );
        match end.still_allocated {
            Some(n) => {
                assert_eq!(n, 0, "list entries never freed");
                for check in after {
                    check();
                }
            }
            // The real epoch frees its garbage only when the execution's threads and
            // collector are torn down, after this closure: what a freed entry owned cannot
            // be counted here, so those checks run on the stand-in only.
            None => drop(after),
        }
    });
    eprintln!(
        "loom: {} executions explored, preemption bound {bound:?}",
        executions.load(Ordering::Relaxed)
    );
}

/// A check for [`model`]: `drops` counted exactly `n` drops once everything is freed.
pub fn dropped(drops: &Drops, n: usize, what: &'static str) -> Box<dyn FnOnce()> {
    let d = drops.clone();
    Box::new(move || assert_eq!(d.count(), n, "{what} dropped {} times, not {n}", d.count()))
}

/// Counts drops: lent to values, causes and closures to check each is dropped exactly once.
#[derive(Debug, Clone, Default)]
pub struct Drops(Arc<AtomicUsize>);

impl Drops {
    /// A token that adds one to the count when dropped.
    pub fn token(&self) -> DropToken {
        DropToken(self.0.clone())
    }

    /// Drops so far.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// See [`Drops`].
#[derive(Debug)]
pub struct DropToken(Arc<AtomicUsize>);

impl Drop for DropToken {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// An error used as a cancel cause: a name and a drop token.
#[derive(Debug)]
pub struct Named(pub &'static str, pub DropToken);

impl std::fmt::Display for Named {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Named {}

/// The name of a context's cause: the `Named` it was cancelled with, or the `Error`'s text.
pub fn cause_name(ctx: &ctxcore::Context) -> Option<String> {
    ctx.cause().map(|c| match c.downcast_ref::<Named>() {
        Some(n) => n.0.to_string(),
        None => c.to_string(),
    })
}

/// A waker that counts its wakes and (unless `counting_only`) unparks the loom thread that
/// made it.
#[derive(Debug)]
pub struct CountingWaker {
    thread: Option<loom::thread::Thread>,
    wakes: loom::sync::atomic::AtomicUsize,
}

impl CountingWaker {
    /// A waker for the current loom thread.
    pub fn new() -> Arc<CountingWaker> {
        Arc::new(CountingWaker {
            thread: Some(loom::thread::current()),
            wakes: loom::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// A waker that only counts (for a thread that may be in `join` when it is woken:
    /// loom #249 aborts on unparking a joining thread).
    pub fn counting_only() -> Arc<CountingWaker> {
        Arc::new(CountingWaker {
            thread: None,
            wakes: loom::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// Wakes so far.
    pub fn wakes(&self) -> usize {
        self.wakes.load(Ordering::SeqCst)
    }
}

impl std::task::Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // SeqCst: the woken thread's check of `wakes` after its park sees this.
        self.wakes.fetch_add(1, Ordering::SeqCst);
        if let Some(t) = &self.thread {
            t.unpark();
        }
    }
}

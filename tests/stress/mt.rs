//! The random model again, on eight threads at once: every operation of the public API
//! (derive of every kind, clone, cancel with and without a cause, disarm, drops in any
//! order, `after_func` and `stop`, `done()` and `done_owned()` futures polled and dropped,
//! `wait_timeout`, short and long deadlines) on one shared tree, checking as it goes what
//! must hold whatever the interleaving:
//!
//! 1. No spurious done: a context done with `Canceled` has a `cancel()` called on itself or
//!    on an ancestor it inherits from (none across a `without_cancel`), and its cause is one
//!    those calls passed; one done with `DeadlineExceeded` is past its deadline.
//! 2. `err()` and `cause()` never change once seen; a `without_cancel` context is never
//!    done; a `with_value` context reports what its parent reported just before.
//! 3. When a `cancel()` returns, every recorded descendant it reaches is done, its pending
//!    futures woken, its callbacks run exactly once unless a `stop()` returned true.
//! 4. A `stop()` that returned true means the closure never runs.
//!
//! 5. On a manual clock (the second test), several threads also advance the clock: when an
//!    `advance` returns, every recorded context whose deadline it reached is done.
//!
//! Then a teardown that cancels nothing: every handle is disarmed (or dropped), every
//! context, future and `AfterFunc` dropped, in random order, and once the deadlines of the
//! run are past, every closure, value and waker clone created is gone and the live counts
//! are back to their baseline (behaviour 14: what nobody can observe is not kept).

use super::model::{Token, Why};
use super::spin::SpinLock;
use super::spin::{Shared, SharedWake};
use super::Rng;
use ctxcore::clock::Clock;
use ctxcore::{AfterFunc, CancelHandle, Context, Error};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::Waker;
use std::time::{Duration, Instant};

/// A pending `done_owned()` future and the flag its waker sets.
type PendingFuture = (Pin<Box<ctxcore::DoneOwned>>, Shared<Flag>);

/// The longest deadline of the run: teardown waits past it.
const LONG: Duration = Duration::from_millis(300);

/// How a record was derived from its parent.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Link {
    Root,
    Cancel,
    Timeout,
    Value,
    WithoutCancel,
}

/// A waker that counts how many clones of it are alive and whether it was woken.
struct Flag(AtomicBool);

impl SharedWake for Flag {
    fn wake(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

struct Cb {
    after: AfterFunc,
    runs: Shared<AtomicUsize>,
    stopped: bool,
}

/// One context of the tree and what hangs on it.
struct Rec {
    ctx: Context,
    link: Link,
    parent: Option<Shared<Rec>>,
    handle: SpinLock<Option<CancelHandle>>,
    /// Causes passed to `cancel*()` calls on this node, recorded before each call
    /// (`usize::MAX`: no cause).
    causes: SpinLock<Vec<usize>>,
    /// Set once a `cancel()` of this node has returned.
    cancelled: AtomicBool,
    futures: SpinLock<Vec<PendingFuture>>,
    callbacks: SpinLock<Vec<Cb>>,
    /// `(err, cause id)` the first time it was seen done.
    first: SpinLock<Option<(Error, Option<usize>)>>,
}

fn cause_id(ctx: &Context) -> Option<usize> {
    let c = ctx.cause().expect("a done context has a cause");
    c.downcast_ref::<Why>().map(|w| w.0)
}

impl Rec {
    fn new(ctx: Context, link: Link, parent: Option<Shared<Rec>>, h: Option<CancelHandle>) -> Rec {
        Rec {
            ctx,
            link,
            parent,
            handle: SpinLock::new(h),
            causes: SpinLock::new(Vec::new()),
            cancelled: AtomicBool::new(false),
            futures: SpinLock::new(Vec::new()),
            callbacks: SpinLock::new(Vec::new()),
            first: SpinLock::new(None),
        }
    }

    /// The records whose cancel reaches this one: itself and its ancestors up to a
    /// `without_cancel`.
    fn sources(&self) -> impl Iterator<Item = &Rec> {
        let mut cur = Some(self);
        std::iter::from_fn(move || {
            let r = cur?;
            cur = match r.link {
                Link::WithoutCancel | Link::Root => None,
                _ => r.parent.as_deref(),
            };
            Some(r)
        })
    }

    /// Invariants 1 and 2 on one observation.
    fn check(&self) {
        if self.link == Link::WithoutCancel {
            assert!(!self.ctx.is_done(), "a without_cancel context is done");
            return;
        }
        let parent_done = self.link == Link::Value && self.parent.as_ref().unwrap().ctx.is_done();
        let Some(err) = self.ctx.err() else {
            assert!(!parent_done, "a value context is live under a done parent");
            return;
        };
        let id = cause_id(&self.ctx);
        match err {
            Error::Canceled => {
                let called: Vec<usize> = self
                    .sources()
                    .flat_map(|r| r.causes.lock().clone())
                    .collect();
                assert!(!called.is_empty(), "Canceled with no cancel() called");
                let want = id.unwrap_or(usize::MAX);
                assert!(called.contains(&want), "cause {id:?} from no cancel() call");
            }
            Error::DeadlineExceeded => {
                let d = self
                    .ctx
                    .deadline()
                    .expect("DeadlineExceeded without a deadline");
                assert!(
                    self.ctx.clock().now() >= d,
                    "DeadlineExceeded before the deadline"
                );
                assert_eq!(id, None, "a deadline's cause is the error itself");
            }
        }
        let mut first = self.first.lock();
        match *first {
            None => *first = Some((err, id)),
            Some(f) => assert_eq!(f, (err, id), "err() or cause() changed"),
        }
    }

    /// Invariant 3 for a record reached by a returned `cancel()`.
    fn check_cancelled(&self) {
        assert!(
            self.ctx.is_done(),
            "a cancel() returned before a descendant was done"
        );
        for (_, flag) in self.futures.lock().iter() {
            assert!(
                flag.0.load(Ordering::SeqCst),
                "a pending future was not woken"
            );
        }
        for cb in self.callbacks.lock().iter() {
            let runs = cb.runs.load(Ordering::SeqCst);
            assert_eq!(runs, usize::from(!cb.stopped), "callback ran {runs} times");
        }
    }

    fn reached_by(&self, r: &Rec) -> bool {
        self.sources().any(|s| std::ptr::eq(s, r))
    }
}

#[derive(Default)]
struct Counts {
    closures_made: AtomicUsize,
    closures_dropped: Shared<AtomicUsize>,
    values_made: AtomicUsize,
    values_dropped: Shared<AtomicUsize>,
    flags: SpinLock<Vec<Shared<Flag>>>,
    next_cause: AtomicUsize,
    ops: AtomicUsize,
}

struct Tree {
    pool: SpinLock<Vec<Shared<Rec>>>,
    counts: Counts,
    stop: AtomicBool,
    /// The tree's manual clock, if it has one (else the system clock).
    clock: Option<Clock>,
}

impl Tree {
    fn pick(&self, rng: &mut Rng) -> Shared<Rec> {
        let pool = self.pool.lock();
        pool[rng.below(pool.len())].clone()
    }

    fn flag(&self) -> (Shared<Flag>, Waker) {
        let flag = Shared::new(Flag(AtomicBool::new(false)));
        self.counts.flags.lock().push(flag.clone());
        let waker = flag.waker();
        (flag, waker)
    }

    fn step(&self, rng: &mut Rng) {
        self.counts.ops.fetch_add(1, Ordering::Relaxed);
        match rng.below(100) {
            0..=24 => self.derive(rng),
            25..=31 => self.cancel(rng),
            32..=35 => self.disarm(rng),
            36..=47 => self.drop_one(rng),
            48..=57 => self.future(rng),
            58..=69 => self.callback(rng),
            70..=77 => self.stop_one(rng),
            78..=81 => {
                let r = self.pick(rng);
                let done = r
                    .ctx
                    .wait_timeout(Duration::from_micros(rng.below(500) as u64));
                assert!(
                    !done || r.ctx.is_done(),
                    "wait_timeout true on a live context"
                );
            }
            86..=88 if self.clock.is_some() => self.advance(rng),
            82..=85 => {
                // A clone dropped at once, and a borrowed future polled once and dropped.
                let r = self.pick(rng);
                let c = r.ctx.clone();
                let (_flag, waker) = self.flag();
                let mut fut = std::pin::pin!(c.done());
                let ready = fut
                    .as_mut()
                    .poll(&mut std::task::Context::from_waker(&waker));
                assert!(
                    ready.is_pending() || c.is_done(),
                    "done() ready on a live context"
                );
            }
            _ => self.pick(rng).check(),
        }
    }

    fn derive(&self, rng: &mut Rng) {
        if self.pool.lock().len() >= 150 {
            return self.drop_one(rng);
        }
        let parent = self.pick(rng);
        let (ctx, link, handle) = match rng.below(13) {
            0..=4 => {
                let (c, h) = parent.ctx.with_cancel();
                (c, Link::Cancel, Some(h))
            }
            5..=7 => {
                let d = if rng.below(2) == 0 {
                    Duration::from_millis(1 + rng.below(20) as u64)
                } else {
                    LONG
                };
                let (c, h) = parent.ctx.with_timeout(d);
                (c, Link::Timeout, Some(h))
            }
            8..=10 => {
                self.counts.values_made.fetch_add(1, Ordering::SeqCst);
                let v = Token(self.counts.values_dropped.clone());
                (parent.ctx.with_value(v), Link::Value, None)
            }
            11 => (parent.ctx.without_cancel(), Link::WithoutCancel, None),
            _ => {
                // A shared root behaves as `with_cancel` in every observable way.
                let (c, h) = parent.ctx.with_cancel_shared();
                (c, Link::Cancel, Some(h))
            }
        };
        let rec = Rec::new(ctx, link, Some(parent), handle);
        if rec.sources().any(|r| r.cancelled.load(Ordering::SeqCst)) {
            assert!(
                rec.ctx.is_done(),
                "a child of a cancelled node was born live"
            );
        }
        rec.check();
        self.pool.lock().push(Shared::new(rec));
    }

    /// Invariant 5: advances the manual clock by up to 3 ms, then checks that every
    /// recorded context whose deadline it reached is done, unless a cancel of it or of an
    /// ancestor was called: that cancel may have won the deadline's race and still be
    /// walking on its own thread (the context is done once that cancel returns, behaviour
    /// 2; the clock's module docs say so).
    fn advance(&self, rng: &mut Rng) {
        let clock = self.clock.as_ref().expect("a manual clock");
        let by = Duration::from_micros(rng.below(3_000) as u64);
        let reached = clock.now() + by;
        clock.advance(by);
        let snapshot: Vec<Shared<Rec>> = self.pool.lock().clone();
        for r in &snapshot {
            let cancel_called = r.sources().any(|s| !s.causes.lock().is_empty());
            if !cancel_called && r.ctx.deadline().is_some_and(|d| d <= reached) {
                assert!(
                    r.ctx.is_done(),
                    "advance returned before a deadline it reached"
                );
                r.check();
            }
        }
    }

    fn cancel(&self, rng: &mut Rng) {
        let r = self.pick(rng);
        {
            let h = r.handle.lock();
            let Some(h) = h.as_ref() else { return };
            if rng.below(2) == 0 {
                r.causes.lock().push(usize::MAX);
                h.cancel();
            } else {
                let id = self.counts.next_cause.fetch_add(1, Ordering::Relaxed);
                r.causes.lock().push(id);
                h.cancel_with_cause(Why(id));
            }
        }
        r.cancelled.store(true, Ordering::SeqCst);
        let snapshot: Vec<Shared<Rec>> = self.pool.lock().clone();
        for d in snapshot.iter().filter(|d| d.reached_by(&r)) {
            d.check_cancelled();
            d.check();
        }
    }

    fn disarm(&self, rng: &mut Rng) {
        let r = self.pick(rng);
        let h = r.handle.lock().take();
        if let Some(h) = h {
            h.disarm();
        }
        r.check();
    }

    fn drop_one(&self, rng: &mut Rng) {
        let gone = {
            let mut pool = self.pool.lock();
            if pool.len() <= 1 {
                return;
            }
            let i = 1 + rng.below(pool.len() - 1); // never the root
            pool.swap_remove(i)
        };
        // Drop what hangs on it in a random order: handle (which cancels), futures,
        // callbacks, the record itself.
        let mut parts = [0, 1, 2];
        for i in (1..parts.len()).rev() {
            parts.swap(i, rng.below(i + 1));
        }
        for p in parts {
            match p {
                0 => {
                    let h = gone.handle.lock().take();
                    if h.is_some() {
                        gone.causes.lock().push(usize::MAX);
                    }
                    drop(h);
                }
                1 => drop(std::mem::take(&mut *gone.futures.lock())),
                _ => drop(std::mem::take(&mut *gone.callbacks.lock())),
            }
        }
        drop(gone);
    }

    fn future(&self, rng: &mut Rng) {
        let r = self.pick(rng);
        let mut futs = r.futures.lock();
        if futs.len() >= 3 {
            // A pending future dropped: its waker must go with it.
            let i = rng.below(futs.len());
            drop(futs.swap_remove(i));
            return;
        }
        let (flag, waker) = self.flag();
        let mut fut = Box::pin(r.ctx.done_owned());
        let cx = &mut std::task::Context::from_waker(&waker);
        if fut.as_mut().poll(cx).is_pending() {
            futs.push((fut, flag));
        } else {
            assert!(r.ctx.is_done(), "done_owned() ready on a live context");
        }
    }

    fn callback(&self, rng: &mut Rng) {
        let r = self.pick(rng);
        let mut cbs = r.callbacks.lock();
        if cbs.len() >= 3 {
            return;
        }
        let runs = Shared::new(AtomicUsize::new(0));
        self.counts.closures_made.fetch_add(1, Ordering::SeqCst);
        let token = Token(self.counts.closures_dropped.clone());
        let (rr, ctx) = (runs.clone(), r.ctx.clone());
        let after = r.ctx.after_func(move || {
            let _token = &token;
            assert!(ctx.is_done(), "a callback ran on a live context");
            rr.fetch_add(1, Ordering::SeqCst);
        });
        cbs.push(Cb {
            after,
            runs,
            stopped: false,
        });
    }

    fn stop_one(&self, rng: &mut Rng) {
        let r = self.pick(rng);
        let mut cbs = r.callbacks.lock();
        if cbs.is_empty() {
            return;
        }
        let i = rng.below(cbs.len());
        let cb = &mut cbs[i];
        if cb.after.stop() {
            assert_eq!(cb.runs.load(Ordering::SeqCst), 0, "stop() true after a run");
            cb.stopped = true;
        }
        // Invariant 4, checked again at teardown.
        if cb.stopped {
            assert_eq!(cb.runs.load(Ordering::SeqCst), 0, "a stopped closure ran");
        }
    }
}

/// One round of 8 threads for `run_for`; `clock`: the tree is on a manual clock.
fn run_round(seed: u64, run_for: Duration, clock: Option<Clock>) {
    run_round_under(seed, run_for, clock, false)
}

/// A round whose root is made with `with_cancel_shared` if `shared`: the eight threads
/// derive from it through its stripes.
fn run_round_under(seed: u64, run_for: Duration, clock: Option<Clock>, shared: bool) {
    let baseline = ctxcore::live::snapshot();
    let base = clock
        .as_ref()
        .map_or_else(Context::background, Context::root);
    let (root, root_handle) = if shared {
        base.with_cancel_shared()
    } else {
        base.with_cancel()
    };
    let tree = Shared::new(Tree {
        pool: SpinLock::new(vec![Shared::new(Rec::new(root, Link::Root, None, None))]),
        counts: Counts::default(),
        stop: AtomicBool::new(false),
        clock,
    });
    let workers: Vec<_> = (0..8u64)
        .map(|i| {
            let tree = tree.clone();
            std::thread::spawn(move || {
                let mut rng = Rng(seed ^ (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                while !tree.stop.load(Ordering::Relaxed) {
                    tree.step(&mut rng);
                }
            })
        })
        .collect();
    std::thread::sleep(run_for);
    tree.stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("a worker panicked (see its message above)");
    }
    let ended = Instant::now();

    // Teardown cancelling nothing: the root's handle and every other one is disarmed or
    // dropped, then everything goes, in an order the seed picks.
    root_handle.disarm();
    let mut rng = Rng(seed | 1);
    let mut pool = std::mem::take(&mut *tree.pool.lock());
    for r in &pool {
        r.check();
        let mut stopped = r.callbacks.lock();
        for cb in stopped.iter_mut().filter(|cb| cb.stopped) {
            assert_eq!(cb.runs.load(Ordering::SeqCst), 0, "a stopped closure ran");
        }
        drop(stopped);
        if let Some(h) = r.handle.lock().take() {
            if rng.below(4) == 0 {
                r.causes.lock().push(usize::MAX);
                drop(h);
            } else {
                h.disarm();
            }
        }
    }
    for i in (1..pool.len()).rev() {
        pool.swap(i, rng.below(i + 1));
    }
    drop(pool);
    let tree = Shared::try_unwrap(tree)
        .ok()
        .expect("no other owner of the tree");
    let counts = tree.counts;
    let ops = counts.ops.load(Ordering::Relaxed);
    if let Some(c) = &tree.clock {
        // What is owed a deadline fires now, on this thread.
        c.advance(LONG + Duration::from_secs(1));
    }

    // Deadlines of the run fire (and run the callbacks owed to them) by `ended + LONG`.
    let give_up = ended + LONG + Duration::from_secs(10);
    loop {
        let closures = counts.closures_dropped.load(Ordering::SeqCst);
        let values = counts.values_dropped.load(Ordering::SeqCst);
        let wakers = counts
            .flags
            .lock()
            .iter()
            .filter(|f| Shared::strong_count(f) > 1)
            .count();
        let settled = closures == counts.closures_made.load(Ordering::SeqCst)
            && values == counts.values_made.load(Ordering::SeqCst)
            && wakers == 0
            && ctxcore::live::snapshot().within(&baseline);
        if settled {
            break;
        }
        assert!(
            Instant::now() < give_up,
            "seed {seed:#x} after {ops} operations, teardown left {} of {} closures, {} of {} \
             values, {wakers} wakers alive; live: {:?}",
            counts.closures_made.load(Ordering::SeqCst) - closures,
            counts.closures_made.load(Ordering::SeqCst),
            counts.values_made.load(Ordering::SeqCst) - values,
            counts.values_made.load(Ordering::SeqCst),
            ctxcore::live::snapshot(),
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    eprintln!(
        "mt model: seed {seed:#x}, 8 threads for {run_for:?}: {ops} operations, {} closures, \
         {} values, {} wakers, all gone",
        counts.closures_made.load(Ordering::SeqCst),
        counts.values_made.load(Ordering::SeqCst),
        counts.flags.lock().len(),
    );
}

#[test]
fn model_of_every_operation_eight_threads() {
    let _serial = super::serial();
    let total = super::duration();
    let rounds = 4;
    for round in 0..rounds {
        run_round(0xC0FF_EE00 + round, total / rounds as u32, None);
    }
}

#[test]
fn model_of_every_operation_eight_threads_on_a_manual_clock() {
    let _serial = super::serial();
    let total = super::duration();
    let rounds = 2;
    for round in 0..rounds {
        let clock = Clock::manual();
        run_round(0xC10C_0000 + round, total / 4, Some(clock.clone()));
        assert!(format!("{clock:?}").contains("pending: 0"), "{clock:?}");
    }
}

#[test]
fn model_of_every_operation_eight_threads_under_a_shared_root() {
    let _serial = super::serial();
    let total = super::duration();
    for round in 0..2 {
        run_round_under(0x5A4E_D000 + round, total / 4, None, true);
    }
}

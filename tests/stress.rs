//! Stress: many threads (more than cores) randomly deriving, cancelling, dropping, waiting
//! and registering callbacks on one shared tree for a bounded time, checking invariants as
//! they go, then showing that nothing is left (`ctxcore::live`) and nothing was dropped twice.
//!
//! Duration: `CTXCORE_STRESS_SECS` (default 2; a fraction of a second under Miri).
//! Invariants checked while running:
//!
//! 1. When `cancel()` returns, the node and every recorded descendant are done.
//! 2. A child derived from a node whose `cancel()` has returned is born done.
//! 3. When `cancel()` returns, every pending `done()` future of the node and of its
//!    descendants has been woken, and every callback has run exactly once unless a `stop()`
//!    returned true for it (then never).
//! 4. A context done with `DeadlineExceeded` is past its deadline; `err()` never changes.
//! 5. Threads blocked in `wait()` all return once the root is cancelled.
//!
//! At the end: every callback closure and every value was dropped exactly once, and the
//! live counts come back to the baseline.
//!
//! A second, focused test races child unlinks against the parent's cancel round after
//! round. On the earlier list design it caught the parent count lost by `close_and_walk`
//! (found first by loom model m02) within 20,000 rounds, where the random tree had not in
//! 2 s.

#[path = "stress/model.rs"]
mod model;
#[path = "stress/mt.rs"]
mod mt;
#[path = "common/spin.rs"]
mod spin;

use ctxcore::{AfterFunc, CancelHandle, Context, Error};
use spin::{Shared, SharedWake};
use spin::{SpinBarrier, SpinLock};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The tests of this file compare process-wide live counts with a baseline: they must not
/// run at once (nextest runs each in its own process; `cargo test` would run them in
/// parallel threads).
static SERIAL: SpinLock<()> = SpinLock::new(());

fn serial() -> spin::SpinGuard<'static, ()> {
    SERIAL.lock()
}

/// Contexts seen done with `DeadlineExceeded` (their timer, or an ancestor's, fired).
static DEADLINES_SEEN: AtomicUsize = AtomicUsize::new(0);

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[derive(Default)]
struct Counts {
    closures_made: AtomicUsize,
    closures_dropped: Shared<AtomicUsize>,
    values_made: AtomicUsize,
    values_dropped: Shared<AtomicUsize>,
    cancels: AtomicUsize,
    derives: AtomicUsize,
    waits: AtomicUsize,
    callbacks_run: AtomicUsize,
}

struct DropToken(Shared<AtomicUsize>);

impl Drop for DropToken {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

struct Flag(AtomicBool);

impl SharedWake for Flag {
    fn wake(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

struct Callback {
    after: AfterFunc,
    runs: Shared<AtomicUsize>,
    stopped: bool,
}

/// A `done_owned()` future that returned `Pending`, and the flag its waker sets.
type PendingFuture = (Pin<Box<ctxcore::DoneOwned>>, Shared<Flag>);

/// One context of the tree, with what the test hung on it.
struct Rec {
    ctx: Context,
    parent: Option<Shared<Rec>>,
    handle: SpinLock<Option<CancelHandle>>,
    /// Set once a `cancel()` of this node has returned.
    cancelled: AtomicBool,
    futures: SpinLock<Vec<PendingFuture>>,
    callbacks: SpinLock<Vec<Callback>>,
    /// `err()` the first time it was seen done.
    first_err: SpinLock<Option<Error>>,
}

impl Rec {
    fn new(ctx: Context, parent: Option<Shared<Rec>>, handle: Option<CancelHandle>) -> Shared<Rec> {
        Shared::new(Rec {
            ctx,
            parent,
            handle: SpinLock::new(handle),
            cancelled: AtomicBool::new(false),
            futures: SpinLock::new(Vec::new()),
            callbacks: SpinLock::new(Vec::new()),
            first_err: SpinLock::new(None),
        })
    }

    fn descends_from(&self, ancestor: &Rec) -> bool {
        let mut cur = Some(self);
        while let Some(r) = cur {
            if std::ptr::eq(r, ancestor) {
                return true;
            }
            cur = r.parent.as_deref();
        }
        false
    }

    fn any_ancestor_cancelled(&self) -> bool {
        let mut cur = Some(self);
        while let Some(r) = cur {
            if r.cancelled.load(Ordering::SeqCst) {
                return true;
            }
            cur = r.parent.as_deref();
        }
        false
    }

    /// Invariants 1 and 3 for this (done) record.
    fn check_done_and_woken(&self) {
        assert!(
            self.ctx.is_done(),
            "a descendant of a cancelled node is live"
        );
        self.check_err_stable();
        for (_, flag) in self.futures.lock().iter() {
            assert!(
                flag.0.load(Ordering::SeqCst),
                "a pending future was not woken"
            );
        }
        for cb in self.callbacks.lock().iter() {
            let runs = cb.runs.load(Ordering::SeqCst);
            let expect = usize::from(!cb.stopped);
            assert_eq!(
                runs, expect,
                "callback ran {runs} times (stopped: {})",
                cb.stopped
            );
        }
    }

    /// Invariant 4.
    fn check_err_stable(&self) {
        let Some(err) = self.ctx.err() else { return };
        let mut first = self.first_err.lock();
        match *first {
            None => {
                *first = Some(err);
                if err == Error::DeadlineExceeded {
                    DEADLINES_SEEN.fetch_add(1, Ordering::Relaxed);
                }
            }
            Some(f) => assert_eq!(f, err, "err() changed"),
        }
        if err == Error::DeadlineExceeded {
            let d = self
                .ctx
                .deadline()
                .expect("DeadlineExceeded without a deadline");
            assert!(Instant::now() >= d, "DeadlineExceeded before the deadline");
        }
    }
}

struct Tree {
    pool: SpinLock<Vec<Shared<Rec>>>,
    counts: Counts,
    stop: AtomicBool,
    waiters: SpinLock<Vec<std::thread::JoinHandle<()>>>,
    waiters_live: Shared<AtomicUsize>,
}

impl Tree {
    fn pick(&self, rng: &mut Rng) -> Shared<Rec> {
        let pool = self.pool.lock();
        pool[rng.below(pool.len())].clone()
    }

    fn step(&self, rng: &mut Rng, max_pool: usize) {
        match rng.below(100) {
            0..=29 => self.derive(rng, max_pool),
            30..=39 => self.cancel(rng),
            40..=54 => self.drop_one(rng),
            55..=69 => self.add_future(rng),
            70..=84 => self.add_callback(rng),
            85..=92 => self.stop_callback(rng),
            93..=95 => self.spawn_waiter(rng),
            _ => {
                let r = self.pick(rng);
                r.check_err_stable();
            }
        }
    }

    fn derive(&self, rng: &mut Rng, max_pool: usize) {
        if self.pool.lock().len() >= max_pool {
            return self.drop_one(rng);
        }
        let parent = self.pick(rng);
        let parent_cancelled = parent.any_ancestor_cancelled();
        let (ctx, handle) = match rng.below(10) {
            0..=5 => {
                let (c, h) = parent.ctx.with_cancel();
                (c, Some(h))
            }
            6..=7 => {
                let ms = 1 + rng.below(30) as u64;
                let (c, h) = parent.ctx.with_timeout(Duration::from_millis(ms));
                (c, Some(h))
            }
            _ => {
                self.counts.values_made.fetch_add(1, Ordering::SeqCst);
                let token = DropToken(self.counts.values_dropped.clone());
                (parent.ctx.with_value(token), None)
            }
        };
        if parent_cancelled {
            assert!(ctx.is_done(), "child of a cancelled node born live");
        }
        self.counts.derives.fetch_add(1, Ordering::Relaxed);
        let rec = Rec::new(ctx, Some(parent), handle);
        self.pool.lock().push(rec);
    }

    fn cancel(&self, rng: &mut Rng) {
        let r = self.pick(rng);
        {
            let h = r.handle.lock();
            let Some(h) = h.as_ref() else { return };
            if rng.below(2) == 0 {
                h.cancel();
            } else {
                h.cancel_with_cause("stress");
            }
        }
        r.cancelled.store(true, Ordering::SeqCst);
        self.counts.cancels.fetch_add(1, Ordering::Relaxed);
        let snapshot: Vec<Shared<Rec>> = self.pool.lock().clone();
        for d in snapshot.iter().filter(|d| d.descends_from(&r)) {
            d.check_done_and_woken();
        }
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
        // Sometimes give the handle up without cancelling.
        if rng.below(3) == 0 {
            if let Some(h) = gone.handle.lock().take() {
                h.disarm();
            }
        }
        drop(gone);
    }

    fn add_future(&self, rng: &mut Rng) {
        let r = self.pick(rng);
        let mut futs = r.futures.lock();
        if futs.len() >= 4 {
            // Drop a pending one: it must unregister and leave nothing behind.
            let i = rng.below(futs.len());
            drop(futs.swap_remove(i));
            return;
        }
        let flag = Shared::new(Flag(AtomicBool::new(false)));
        let waker = flag.waker();
        let mut fut = Box::pin(r.ctx.done_owned());
        let pending = fut
            .as_mut()
            .poll(&mut std::task::Context::from_waker(&waker))
            .is_pending();
        if pending {
            futs.push((fut, flag));
        } else {
            assert!(r.ctx.is_done(), "done() ready on a live context");
        }
    }

    fn add_callback(&self, rng: &mut Rng) {
        let r = self.pick(rng);
        let mut cbs = r.callbacks.lock();
        if cbs.len() >= 4 {
            return;
        }
        let runs = Shared::new(AtomicUsize::new(0));
        let token = DropToken(self.counts.closures_dropped.clone());
        self.counts.closures_made.fetch_add(1, Ordering::SeqCst);
        let rr = runs.clone();
        let ctx = r.ctx.clone();
        let after = r.ctx.after_func(move || {
            let _token = &token;
            assert!(ctx.is_done(), "callback ran on a live context");
            rr.fetch_add(1, Ordering::SeqCst);
        });
        cbs.push(Callback {
            after,
            runs,
            stopped: false,
        });
    }

    fn stop_callback(&self, rng: &mut Rng) {
        let r = self.pick(rng);
        let mut cbs = r.callbacks.lock();
        if cbs.is_empty() {
            return;
        }
        let i = rng.below(cbs.len());
        let cb = &mut cbs[i];
        let stopped = cb.after.stop();
        if stopped {
            assert!(!cb.stopped, "stop() returned true twice");
            assert_eq!(cb.runs.load(Ordering::SeqCst), 0, "stopped after it ran");
            cb.stopped = true;
        } else {
            assert!(cb.stopped || cb.runs.load(Ordering::SeqCst) == 1 || r.ctx.is_done());
        }
    }

    fn spawn_waiter(&self, rng: &mut Rng) {
        let mut waiters = self.waiters.lock();
        // Reap the waiters already woken (joining a finished thread does not block).
        let (done, running): (Vec<_>, Vec<_>) = std::mem::take(&mut *waiters)
            .into_iter()
            .partition(|h| h.is_finished());
        *waiters = running;
        for h in done {
            h.join().expect("a waiter panicked");
        }
        if waiters.len() >= 16 {
            return;
        }
        let r = self.pick(rng);
        let ctx = r.ctx.clone();
        let live = self.waiters_live.clone();
        live.fetch_add(1, Ordering::SeqCst);
        self.counts.waits.fetch_add(1, Ordering::Relaxed);
        waiters.push(std::thread::spawn(move || {
            ctx.wait();
            assert!(ctx.is_done(), "wait() returned on a live context");
            live.fetch_sub(1, Ordering::SeqCst);
        }));
    }
}

fn duration() -> Duration {
    let default = if cfg!(miri) { 0.05 } else { 2.0 };
    let secs = std::env::var("CTXCORE_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(default);
    Duration::from_secs_f64(secs)
}

#[test]
fn stress_shared_tree() {
    let _serial = serial();
    let baseline = ctxcore::live::snapshot();
    let threads = if cfg!(miri) { 3 } else { 8 };
    let max_pool = if cfg!(miri) { 16 } else { 200 };
    let run_for = duration();

    let (root, root_handle) = Context::background().with_cancel();
    let tree = Shared::new(Tree {
        pool: SpinLock::new(vec![Rec::new(root.clone(), None, None)]),
        counts: Counts::default(),
        stop: AtomicBool::new(false),
        waiters: SpinLock::new(Vec::new()),
        waiters_live: Shared::new(AtomicUsize::new(0)),
    });

    let workers: Vec<_> = (0..threads)
        .map(|i| {
            let tree = tree.clone();
            std::thread::spawn(move || {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((i as u64 + 1) * 0x1234_5679));
                while !tree.stop.load(Ordering::Relaxed) {
                    tree.step(&mut rng, max_pool);
                }
            })
        })
        .collect();
    std::thread::sleep(run_for);
    tree.stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("a worker panicked (see its message above)");
    }

    // Cancel the root: everything is done, every waiter and future is woken.
    root_handle.cancel();
    let pool: Vec<Shared<Rec>> = tree.pool.lock().clone();
    for r in &pool {
        r.check_done_and_woken();
    }
    let waiters = std::mem::take(&mut *tree.waiters.lock());
    let give_up = Instant::now() + Duration::from_secs(10);
    while tree.waiters_live.load(Ordering::SeqCst) > 0 {
        assert!(
            Instant::now() < give_up,
            "a thread in wait() was never woken"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    for w in waiters {
        w.join().expect("a waiter panicked");
    }
    let c = &tree.counts;
    let ran: usize = pool
        .iter()
        .map(|r| {
            let cbs = r.callbacks.lock();
            cbs.iter()
                .map(|cb| cb.runs.load(Ordering::SeqCst))
                .sum::<usize>()
        })
        .sum();
    c.callbacks_run.fetch_add(ran, Ordering::Relaxed);
    eprintln!(
        "stress: {threads} threads for {run_for:?}: {} derives, {} cancels, {} waits, \
         {} callbacks registered ({} of those kept to the end ran), \
         {} contexts seen done by a deadline",
        c.derives.load(Ordering::Relaxed),
        c.cancels.load(Ordering::Relaxed),
        c.waits.load(Ordering::Relaxed),
        c.closures_made.load(Ordering::SeqCst),
        c.callbacks_run.load(Ordering::Relaxed),
        DEADLINES_SEEN.load(Ordering::Relaxed),
    );

    // Tear down and check that everything was freed exactly once.
    drop(pool);
    tree.pool.lock().clear();
    drop((root, root_handle));
    let tree = Shared::try_unwrap(tree)
        .ok()
        .expect("no other owner of the tree");
    let counts = tree.counts;
    assert_eq!(
        counts.closures_dropped.load(Ordering::SeqCst),
        counts.closures_made.load(Ordering::SeqCst),
        "every callback closure dropped exactly once"
    );
    assert_eq!(
        counts.values_dropped.load(Ordering::SeqCst),
        counts.values_made.load(Ordering::SeqCst),
        "every value dropped exactly once"
    );
    ctxcore::live::wait_for_baseline(&baseline, Duration::from_secs(5))
        .unwrap_or_else(|leak| panic!("leak: {leak}"));
}

/// A focused race, round after round: one thread drops children of a parent (unlinking
/// them) while another cancels the parent (closing its list and walking it). Every round
/// must end with every context freed: the leak check at the end catches a count lost in
/// the race (a walk finalizing a child removed concurrently must give back the child's
/// count on the parent).
#[test]
fn stress_unlink_racing_cancel() {
    let _serial = serial();
    let baseline = ctxcore::live::snapshot();
    let rounds = if cfg!(miri) { 20 } else { 20_000 };
    let deadline = Instant::now() + duration();
    let barrier = Shared::new(SpinBarrier::new(2));
    type Children = Vec<(Context, CancelHandle)>;
    let slot: Shared<SpinLock<Option<Children>>> = Shared::new(SpinLock::new(None));
    let (b, s) = (barrier.clone(), slot.clone());
    let dropper = std::thread::spawn(move || {
        for _ in 0..rounds {
            b.wait(); // children published
            let children = s.lock().take().expect("children");
            for (ctx, handle) in children {
                handle.disarm();
                drop(ctx);
            }
            b.wait(); // round over
        }
    });
    let mut done_rounds = 0;
    for round in 0..rounds {
        let (parent, handle) = Context::background().with_cancel();
        let children: Vec<_> = (0..4).map(|_| parent.with_cancel()).collect();
        let (kept, _kept_handle) = parent.with_cancel();
        *slot.lock() = Some(children);
        barrier.wait();
        handle.cancel();
        assert!(kept.is_done());
        barrier.wait();
        done_rounds = round + 1;
        if Instant::now() >= deadline {
            // Let the dropper finish its remaining rounds on empty work.
            for _ in done_rounds..rounds {
                *slot.lock() = Some(Vec::new());
                barrier.wait();
                barrier.wait();
            }
            break;
        }
    }
    dropper.join().unwrap();
    eprintln!("unlink-vs-cancel: {done_rounds} rounds");
    ctxcore::live::wait_for_baseline(&baseline, Duration::from_secs(5))
        .unwrap_or_else(|leak| panic!("leak: {leak}"));
}

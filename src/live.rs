//! Live counts of what ctxcore holds (Go's goleak, for contexts): cancellable contexts,
//! armed timers, registered waiters, pending callbacks and running group tasks.
//!
//! The counters are cheap enough to leave on: each thread owns a block of counters that
//! only it writes, with a plain load and store (no read-modify-write, no shared cache line);
//! [`snapshot`] sums every block ever handed out. A block goes back to a free pool when its
//! thread exits, with its counts kept, so the sums stay right.
//!
//! ```
//! use ctxcore::{live, Context};
//! use std::time::Duration;
//!
//! let before = live::snapshot();
//! {
//!     let (ctx, _handle) = Context::background().with_cancel();
//!     assert!(live::snapshot().contexts > before.contexts);
//!     drop(ctx);
//! }
//! live::wait_for_baseline(&before, Duration::from_secs(1)).expect("nothing leaked");
//! ```

use std::fmt;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicPtr, Ordering};
use std::time::{Duration, Instant};

/// What is counted.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Counter {
    Contexts = 0,
    Timers = 1,
    Waiters = 2,
    Callbacks = 3,
    GroupTasks = 4,
    /// List entries allocated and not yet handed to the epoch (memory, not liveness).
    Entries = 5,
}

const COUNTERS: usize = 6;
/// The counters that `LiveCounts` reports.
const FIELDS: usize = 5;

struct Block {
    counts: [AtomicI64; COUNTERS],
    in_use: AtomicBool,
    next: *const Block,
}

/// Every block ever made (a push-only Treiber stack; blocks are never freed).
static BLOCKS: AtomicPtr<Block> = AtomicPtr::new(ptr::null_mut());
/// Counts made while a thread's block was unavailable (during thread-local teardown).
static SPILL: [AtomicI64; COUNTERS] = [const { AtomicI64::new(0) }; COUNTERS];

struct Claim(&'static Block);

impl Claim {
    fn new() -> Claim {
        // Reuse a block whose thread exited, else push a new one.
        let mut cur = BLOCKS.load(Ordering::Acquire);
        while !cur.is_null() {
            // SAFETY: blocks are leaked on creation and never freed.
            let b = unsafe { &*cur };
            // Acquire: the previous owner's last counts happen before our writes.
            if b.in_use
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return Claim(b);
            }
            cur = b.next as *mut Block;
        }
        let b: &'static mut Block = Box::leak(Box::new(Block {
            counts: [const { AtomicI64::new(0) }; COUNTERS],
            in_use: AtomicBool::new(true),
            next: ptr::null(),
        }));
        let mut head = BLOCKS.load(Ordering::Relaxed);
        loop {
            b.next = head;
            // Release: publishes the block's fields to snapshot readers.
            match BLOCKS.compare_exchange(head, b, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => return Claim(b),
                Err(h) => head = h,
            }
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        // Release: our counts are visible to the next owner of the block.
        self.0.in_use.store(false, Ordering::Release);
    }
}

std::thread_local! {
    static MINE: Claim = Claim::new();
}

/// Adds `delta` to `counter` on this thread's block.
#[inline]
pub(crate) fn add(counter: Counter, delta: i64) {
    #[cfg(loom)]
    {
        // Loom runs every thread of a model on its test's OS thread: a std thread-local
        // keeps per-model counts outside the modelled state (read by `crate::__loom`).
        LOOM_COUNTS.with(|c| c[counter as usize].set(c[counter as usize].get() + delta));
    }
    #[cfg(not(loom))]
    let done = MINE.try_with(|c| {
        let slot = &c.0.counts[counter as usize];
        // Only this thread writes this block, so load + store cannot lose an update.
        slot.store(slot.load(Ordering::Relaxed) + delta, Ordering::Relaxed);
    });
    #[cfg(not(loom))]
    if done.is_err() {
        SPILL[counter as usize].fetch_add(delta, Ordering::Relaxed);
    }
}

#[cfg(loom)]
std::thread_local! {
    static LOOM_COUNTS: [std::cell::Cell<i64>; COUNTERS] =
        const { [const { std::cell::Cell::new(0) }; COUNTERS] };
}

/// The counts of the current loom model run, and reset them to zero if `reset`.
#[cfg(loom)]
pub(crate) fn loom_counts(reset: bool) -> LiveCounts {
    let c: [i64; COUNTERS] = LOOM_COUNTS
        .with(|c| std::array::from_fn(|i| if reset { c[i].replace(0) } else { c[i].get() }));
    LiveCounts {
        contexts: c[0],
        timers: c[1],
        waiters: c[2],
        callbacks: c[3],
        group_tasks: c[4],
    }
}

/// Marks a group task as started (see [`crate::group`]).
pub(crate) fn group_task_started() {
    add(Counter::GroupTasks, 1);
}

/// Marks a group task as finished.
pub(crate) fn group_task_finished() {
    add(Counter::GroupTasks, -1);
}

/// How many of each thing ctxcore holds right now, process-wide.
///
/// Counts are sums over threads read without stopping them, so a snapshot taken while
/// other threads work is approximate; compare against a baseline with
/// [`wait_for_baseline`], which retries until things settle.
///
/// ```
/// let base = ctxcore::live::snapshot();
/// let (ctx, _h) = ctxcore::Context::background().with_timeout(std::time::Duration::from_secs(9));
/// let now = ctxcore::live::snapshot();
/// assert!(now.contexts > base.contexts && now.timers > base.timers);
/// println!("{now}"); // "1 contexts, 1 timers, 0 waiters, 0 callbacks, 0 group tasks"
/// # drop(ctx);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LiveCounts {
    /// Cancellable contexts alive (every `with_cancel`/`with_deadline`/`with_timeout` node).
    pub contexts: i64,
    /// Deadline timers armed: neither fired nor disarmed yet.
    pub timers: i64,
    /// Waiters registered by pending `done()` futures and blocked `wait()` calls.
    pub waiters: i64,
    /// `after_func` callbacks registered and neither run nor stopped yet.
    pub callbacks: i64,
    /// Error-group tasks running.
    pub group_tasks: i64,
}

impl LiveCounts {
    fn fields(&self) -> [(&'static str, i64); FIELDS] {
        [
            ("contexts", self.contexts),
            ("timers", self.timers),
            ("waiters", self.waiters),
            ("callbacks", self.callbacks),
            ("group tasks", self.group_tasks),
        ]
    }

    /// True if no count is above `baseline`'s.
    ///
    /// ```
    /// use ctxcore::live::LiveCounts;
    /// let base = LiveCounts { contexts: 2, ..LiveCounts::default() };
    /// assert!(LiveCounts::default().within(&base));
    /// assert!(!LiveCounts { waiters: 1, ..base }.within(&base));
    /// ```
    pub fn within(&self, baseline: &LiveCounts) -> bool {
        self.fields()
            .iter()
            .zip(baseline.fields())
            .all(|((_, now), (_, base))| *now <= base)
    }
}

impl fmt::Display for LiveCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (name, n) in self.fields() {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{n} {name}")?;
        }
        Ok(())
    }
}

/// The current counts.
///
/// ```
/// let counts = ctxcore::live::snapshot();
/// assert!(counts.group_tasks >= 0);
/// ```
pub fn snapshot() -> LiveCounts {
    let mut sums = [0i64; COUNTERS];
    for (s, spill) in sums.iter_mut().zip(&SPILL) {
        *s = spill.load(Ordering::Relaxed);
    }
    let mut cur = BLOCKS.load(Ordering::Acquire);
    while !cur.is_null() {
        // SAFETY: blocks are leaked on creation and never freed.
        let b = unsafe { &*cur };
        for (s, c) in sums.iter_mut().zip(&b.counts) {
            *s += c.load(Ordering::Relaxed);
        }
        cur = b.next as *mut Block;
    }
    LiveCounts {
        contexts: sums[0],
        timers: sums[1],
        waiters: sums[2],
        callbacks: sums[3],
        group_tasks: sums[4],
    }
}

/// How many listener-list entries (context nodes, waiters, callbacks) are allocated and not
/// yet handed to the epoch for freeing, process-wide.
///
/// This counts memory, not liveness: an entry whose context is gone may wait in its
/// parent's list until the next sweep (at most about as many as the parent's live entries,
/// plus a few), and entries of a dropped tree are counted until it is finalized. Tests use
/// it to show that memory follows live contexts, not contexts ever created.
///
/// ```
/// let before = ctxcore::live::entries_in_memory();
/// let (parent, _h) = ctxcore::Context::background().with_cancel();
/// for _ in 0..10_000 {
///     let _child = parent.with_cancel();
/// }
/// assert!(ctxcore::live::entries_in_memory() - before < 100);
/// ```
pub fn entries_in_memory() -> i64 {
    let mut sum = SPILL[Counter::Entries as usize].load(Ordering::Relaxed);
    let mut cur = BLOCKS.load(Ordering::Acquire);
    while !cur.is_null() {
        // SAFETY: blocks are leaked on creation and never freed.
        let b = unsafe { &*cur };
        sum += b.counts[Counter::Entries as usize].load(Ordering::Relaxed);
        cur = b.next as *mut Block;
    }
    sum
}

/// What [`wait_for_baseline`] found still alive.
///
/// ```
/// use ctxcore::live::{LeakReport, LiveCounts};
/// let report = LeakReport {
///     baseline: LiveCounts::default(),
///     now: LiveCounts { contexts: 3, ..LiveCounts::default() },
///     waited: std::time::Duration::from_millis(10),
/// };
/// assert!(report.to_string().contains("3 more contexts (0 -> 3)"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeakReport {
    /// The counts the caller expected to come back to.
    pub baseline: LiveCounts,
    /// The counts when the wait gave up.
    pub now: LiveCounts,
    /// How long it waited.
    pub waited: Duration,
}

impl fmt::Display for LeakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "still alive after {:?}:", self.waited)?;
        for ((name, now), (_, base)) in self.now.fields().iter().zip(self.baseline.fields()) {
            if *now > base {
                write!(f, " {} more {name} ({base} -> {now});", now - base)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for LeakReport {}

/// Waits up to `within` for every count to come back to `baseline` (or below). Returns a
/// readable report of what is still alive if they do not.
///
/// ```
/// let base = ctxcore::live::snapshot();
/// let (ctx, handle) = ctxcore::Context::background().with_cancel();
/// let err = ctxcore::live::wait_for_baseline(&base, std::time::Duration::from_millis(5));
/// assert!(err.unwrap_err().to_string().contains("contexts"));
/// drop((ctx, handle));
/// ```
pub fn wait_for_baseline(baseline: &LiveCounts, within: Duration) -> Result<(), LeakReport> {
    let start = Instant::now();
    loop {
        let now = snapshot();
        if now.within(baseline) {
            return Ok(());
        }
        let waited = start.elapsed();
        if waited >= within {
            return Err(LeakReport {
                baseline: *baseline,
                now,
                waited,
            });
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

//! A mutex baseline for the benchmarks, written the way Go's `context` package writes
//! `cancelCtx`, `timerCtx` and `valueCtx` (Go 1.19-1.21, src/context/context.go).
//!
//! It is included by the benches with `#[path = "baseline/mutex_ctx.rs"]` and is never part
//! of the shipped library. It implements the subset of ctxcore's API that the benches use,
//! with the same names, so a workload can run unchanged against both.
//!
//! How it mirrors Go:
//!
//! * A cancellable node holds one `Mutex` over its error, its children and its waiters
//!   (Go: `mu sync.Mutex` over `children map[canceler]struct{}`, `err`, and the lazily made
//!   `done` channel). Children live in a `Vec` whose entries know their own index, so
//!   registration and removal are O(1) under the parent's lock (Go uses a map; the `Vec` is
//!   the faster of the two, so the baseline is not a straw man).
//! * `is_done()` is one Acquire load of a done flag, like a non-blocking receive on Go's
//!   closed `Done()` channel, which is lock-free in Go's runtime; `err()` takes the mutex,
//!   like Go's `Err()`.
//! * Cancel: lock, set the error, take the children and waiters, unlock, cancel the
//!   children (Go recurses; here an explicit worklist, which is no slower), then lock the
//!   parent and remove the node from it (Go's `removeChild`).
//! * Threads wait on a `Condvar`; futures park a `Waker` in a slab under the same mutex.
//! * Values are a chain: `value::<T>()` walks parents and compares `TypeId`s, O(depth), like
//!   Go's `valueCtx.Value`. A new node finds its nearest cancellable ancestor by walking the
//!   chain, like Go's `parentCancelCtx`.
//! * Deadlines: one shared timer thread for the process over a `BinaryHeap` behind a mutex
//!   and a condvar (Go's runtime keeps a timer heap per P). A timer stopped early is left in
//!   the heap and counted as stale; the heap is compacted when stale entries are more than
//!   half of it, so memory follows live timers, as Go's `deltimer` does.
#![allow(dead_code)]

use std::any::{Any, TypeId};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// Why a context is done: the same two reasons as ctxcore's (the baseline differs in its
/// engine, not in its error type).
pub use ctxcore::Error;

/// A context: `None` is the background root (static in Go, no allocation here either).
#[derive(Clone, Default)]
pub struct Context {
    node: Option<Arc<Node>>,
}

struct Node {
    parent: Context,
    kind: Kind,
}

enum Kind {
    Cancel(CancelState),
    Value(TypeId, Box<dyn Any + Send + Sync>),
    WithoutCancel,
}

struct CancelState {
    /// Go's closed `done` channel: set once, under the mutex, read without it.
    done: AtomicBool,
    deadline: Option<Instant>,
    /// This node's index in its parent's `children`; only meaningful under the parent's lock.
    index: AtomicUsize,
    inner: Mutex<Inner>,
    cond: Condvar,
}

#[derive(Default)]
struct Inner {
    err: Option<Error>,
    children: Vec<Arc<Node>>,
    wakers: Vec<Option<Waker>>,
    free: Vec<usize>,
    waiting_threads: usize,
}

const NOT_LINKED: usize = usize::MAX;

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Node {
    fn cancel_state(&self) -> Option<&CancelState> {
        match &self.kind {
            Kind::Cancel(c) => Some(c),
            _ => None,
        }
    }
}

impl Context {
    /// The never-done root.
    pub fn background() -> Context {
        Context { node: None }
    }

    /// The nearest cancellable node, walking value nodes (Go's `parentCancelCtx`).
    fn cancel_node(&self) -> Option<&Arc<Node>> {
        let mut cur = self.node.as_ref();
        while let Some(n) = cur {
            match n.kind {
                Kind::Cancel(_) => return Some(n),
                Kind::WithoutCancel => return None,
                Kind::Value(..) => cur = n.parent.node.as_ref(),
            }
        }
        None
    }

    /// A cancellable child.
    pub fn with_cancel(&self) -> (Context, CancelHandle) {
        self.new_cancel(None)
    }

    /// A child done at `deadline` (or earlier, if the parent is).
    pub fn with_deadline(&self, deadline: Instant) -> (Context, CancelHandle) {
        if let Some(d) = self.deadline() {
            if d <= deadline {
                // The parent's deadline is earlier: arm nothing (as Go does).
                return self.new_cancel(None);
            }
        }
        let (ctx, handle) = self.new_cancel(Some(deadline));
        if !ctx.is_done() {
            if deadline <= Instant::now() {
                cancel(&handle.node, Error::DeadlineExceeded);
            } else {
                timer().arm(deadline, Arc::downgrade(&handle.node));
            }
        }
        (ctx, handle)
    }

    /// `with_deadline(now + timeout)`; a timeout too large to represent means no deadline.
    pub fn with_timeout(&self, timeout: Duration) -> (Context, CancelHandle) {
        match Instant::now().checked_add(timeout) {
            Some(d) => self.with_deadline(d),
            None => self.with_cancel(),
        }
    }

    fn new_cancel(&self, deadline: Option<Instant>) -> (Context, CancelHandle) {
        let node = Arc::new(Node {
            parent: self.clone(),
            kind: Kind::Cancel(CancelState {
                done: AtomicBool::new(false),
                deadline,
                index: AtomicUsize::new(NOT_LINKED),
                inner: Mutex::new(Inner::default()),
                cond: Condvar::new(),
            }),
        });
        // Go's propagateCancel: register with the nearest cancellable ancestor, or be born
        // done with its error.
        if let Some(p) = self.cancel_node() {
            let pc = p.cancel_state().expect("cancel node");
            let mut g = lock(&pc.inner);
            match g.err {
                Some(err) => {
                    drop(g);
                    cancel_tree(&node, err);
                }
                None => {
                    let cs = node.cancel_state().expect("cancel node");
                    cs.index.store(g.children.len(), Ordering::Relaxed);
                    g.children.push(node.clone());
                }
            }
        }
        (
            Context {
                node: Some(node.clone()),
            },
            CancelHandle { node },
        )
    }

    /// A child carrying `value`.
    pub fn with_value<T: Send + Sync + 'static>(&self, value: T) -> Context {
        Context {
            node: Some(Arc::new(Node {
                parent: self.clone(),
                kind: Kind::Value(TypeId::of::<T>(), Box::new(value)),
            })),
        }
    }

    /// Keeps values; never done.
    pub fn without_cancel(&self) -> Context {
        Context {
            node: Some(Arc::new(Node {
                parent: self.clone(),
                kind: Kind::WithoutCancel,
            })),
        }
    }

    /// The nearest value of type `T`: O(depth), like Go's `valueCtx.Value`.
    pub fn value<T: 'static>(&self) -> Option<&T> {
        let want = TypeId::of::<T>();
        let mut cur = self.node.as_ref();
        while let Some(n) = cur {
            if let Kind::Value(id, v) = &n.kind {
                if *id == want {
                    return v.downcast_ref::<T>();
                }
            }
            cur = n.parent.node.as_ref();
        }
        None
    }

    /// One Acquire load of the nearest cancellable node's done flag.
    pub fn is_done(&self) -> bool {
        match self.cancel_node() {
            Some(n) => n
                .cancel_state()
                .expect("cancel node")
                .done
                .load(Ordering::Acquire),
            None => false,
        }
    }

    /// Takes the mutex, like Go's `Err()`.
    pub fn err(&self) -> Option<Error> {
        self.cancel_node()
            .and_then(|n| lock(&n.cancel_state().expect("cancel node").inner).err)
    }

    /// `Err(e)` once done.
    pub fn check(&self) -> Result<(), Error> {
        match self.err() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The nearest deadline: a plain cancel node inherits its ancestors'.
    pub fn deadline(&self) -> Option<Instant> {
        let mut cur = self.cancel_node();
        while let Some(n) = cur {
            if let Some(d) = n.cancel_state().and_then(|c| c.deadline) {
                return Some(d);
            }
            cur = n.parent.cancel_node();
        }
        None
    }

    /// Blocks the calling thread until done.
    pub fn wait(&self) {
        let Some(n) = self.cancel_node() else {
            loop {
                std::thread::park();
            }
        };
        let cs = n.cancel_state().expect("cancel node");
        let mut g = lock(&cs.inner);
        g.waiting_threads += 1;
        while g.err.is_none() {
            g = cs.cond.wait(g).unwrap_or_else(|e| e.into_inner());
        }
        g.waiting_threads -= 1;
    }

    /// Blocks until done or `timeout` elapses; true if done.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let Some(n) = self.cancel_node() else {
            std::thread::sleep(timeout);
            return false;
        };
        let cs = n.cancel_state().expect("cancel node");
        let end = Instant::now() + timeout;
        let mut g = lock(&cs.inner);
        g.waiting_threads += 1;
        while g.err.is_none() {
            let now = Instant::now();
            if now >= end {
                break;
            }
            g = cs
                .cond
                .wait_timeout(g, end - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        g.waiting_threads -= 1;
        g.err.is_some()
    }

    /// A future that resolves once done.
    pub fn done(&self) -> Done<'_> {
        Done {
            node: self.cancel_node().map(|n| &**n),
            slot: None,
        }
    }

    /// A `'static` future that resolves once done.
    pub fn done_owned(&self) -> DoneOwned {
        DoneOwned {
            node: self.cancel_node().cloned(),
            slot: None,
        }
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("mutex_ctx::Context")
            .field("done", &self.is_done())
            .finish()
    }
}

/// Cancels its context when `cancel` is called or when dropped.
#[must_use]
pub struct CancelHandle {
    node: Arc<Node>,
}

impl CancelHandle {
    /// Idempotent; the first error wins.
    pub fn cancel(&self) {
        cancel(&self.node, Error::Canceled);
    }

    /// Consumes the handle without cancelling.
    pub fn disarm(self) {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never used again and its `Drop` never runs, so the node
        // reference is moved out (and dropped) exactly once.
        drop(unsafe { std::ptr::read(&this.node) });
    }
}

impl Drop for CancelHandle {
    fn drop(&mut self) {
        cancel(&self.node, Error::Canceled);
    }
}

/// Go's `cancelCtx.cancel(removeFromParent = true, err)`.
fn cancel(node: &Arc<Node>, err: Error) {
    if !cancel_tree(node, err) {
        return;
    }
    let cs = node.cancel_state().expect("cancel node");
    if cs.deadline.is_some() {
        timer().stopped();
    }
    // removeChild: unlink from the nearest cancellable ancestor.
    detach(node);
}

/// Marks `root` and its subtree done with `err`; false if `root` already was.
fn cancel_tree(root: &Arc<Node>, err: Error) -> bool {
    let mut first = true;
    let mut work: Vec<Arc<Node>> = Vec::new();
    let mut cur = Some(root.clone());
    while let Some(node) = cur.take().or_else(|| work.pop()) {
        let cs = node.cancel_state().expect("cancel node");
        let mut g = lock(&cs.inner);
        if g.err.is_some() {
            if first {
                return false;
            }
            continue;
        }
        first = false;
        g.err = Some(err);
        cs.done.store(true, Ordering::Release);
        let children = std::mem::take(&mut g.children);
        let mut wakers = std::mem::take(&mut g.wakers);
        g.free.clear();
        let threads = g.waiting_threads;
        drop(g);
        if threads > 0 {
            cs.cond.notify_all();
        }
        for w in wakers.drain(..).flatten() {
            w.wake();
        }
        for c in children {
            c.cancel_state()
                .expect("cancel node")
                .index
                .store(NOT_LINKED, Ordering::Relaxed);
            work.push(c);
        }
    }
    true
}

fn poll_done(node: &Node, slot: &mut Option<usize>, waker: &Waker) -> Poll<()> {
    let cs = node.cancel_state().expect("cancel node");
    if cs.done.load(Ordering::Acquire) {
        *slot = None;
        return Poll::Ready(());
    }
    let mut g = lock(&cs.inner);
    if g.err.is_some() {
        *slot = None;
        return Poll::Ready(());
    }
    match *slot {
        Some(i) => match &mut g.wakers[i] {
            Some(w) if w.will_wake(waker) => {}
            w => *w = Some(waker.clone()),
        },
        None => {
            let i = match g.free.pop() {
                Some(i) => {
                    g.wakers[i] = Some(waker.clone());
                    i
                }
                None => {
                    g.wakers.push(Some(waker.clone()));
                    g.wakers.len() - 1
                }
            };
            *slot = Some(i);
        }
    }
    Poll::Pending
}

fn drop_done(node: &Node, slot: Option<usize>) {
    if let Some(i) = slot {
        let cs = node.cancel_state().expect("cancel node");
        let mut g = lock(&cs.inner);
        if g.err.is_none() {
            g.wakers[i] = None;
            g.free.push(i);
        }
    }
}

/// Borrowing done future.
pub struct Done<'a> {
    node: Option<&'a Node>,
    slot: Option<usize>,
}

impl Future for Done<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        match this.node {
            Some(n) => poll_done(n, &mut this.slot, cx.waker()),
            None => Poll::Pending,
        }
    }
}

impl Drop for Done<'_> {
    fn drop(&mut self) {
        if let Some(n) = self.node {
            drop_done(n, self.slot.take());
        }
    }
}

/// Owning done future.
pub struct DoneOwned {
    node: Option<Arc<Node>>,
    slot: Option<usize>,
}

impl Future for DoneOwned {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        match &this.node {
            Some(n) => poll_done(n, &mut this.slot, cx.waker()),
            None => Poll::Pending,
        }
    }
}

impl Drop for DoneOwned {
    fn drop(&mut self) {
        if let Some(n) = &self.node {
            drop_done(n, self.slot.take());
        }
    }
}

// ---- the shared timer thread ------------------------------------------------

struct TimerEntry {
    at: Instant,
    seq: u64,
    node: Weak<Node>,
}

impl PartialEq for TimerEntry {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for TimerEntry {}
impl PartialOrd for TimerEntry {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for TimerEntry {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

#[derive(Default)]
struct TimerHeap {
    heap: BinaryHeap<Reverse<TimerEntry>>,
    stale: usize,
}

struct Timer {
    heap: Mutex<TimerHeap>,
    cond: Condvar,
    seq: AtomicU64,
}

fn timer() -> &'static Timer {
    static TIMER: OnceLock<&'static Timer> = OnceLock::new();
    TIMER.get_or_init(|| {
        let t: &'static Timer = Box::leak(Box::new(Timer {
            heap: Mutex::new(TimerHeap::default()),
            cond: Condvar::new(),
            seq: AtomicU64::new(0),
        }));
        std::thread::Builder::new()
            .name("mutex_ctx-timer".into())
            .spawn(move || t.run())
            .expect("spawn timer thread");
        t
    })
}

impl Timer {
    fn lock(&self) -> MutexGuard<'_, TimerHeap> {
        self.heap.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn arm(&self, at: Instant, node: Weak<Node>) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let mut g = self.lock();
        let earliest = g.heap.peek().is_none_or(|Reverse(e)| at < e.at);
        g.heap.push(Reverse(TimerEntry { at, seq, node }));
        drop(g);
        if earliest {
            self.cond.notify_one();
        }
    }

    /// A timer node was cancelled before its deadline: its entry is now stale.
    fn stopped(&self) {
        let mut g = self.lock();
        g.stale += 1;
        if g.stale > 64 && g.stale * 2 > g.heap.len() {
            g.heap.retain(|Reverse(e)| {
                e.node.upgrade().is_some_and(|n| {
                    !n.cancel_state()
                        .expect("cancel node")
                        .done
                        .load(Ordering::Acquire)
                })
            });
            g.stale = 0;
        }
    }

    fn run(&self) {
        let mut g = self.lock();
        loop {
            let now = Instant::now();
            match g.heap.peek() {
                None => g = self.cond.wait(g).unwrap_or_else(|e| e.into_inner()),
                Some(Reverse(e)) if e.at <= now => {
                    let Reverse(e) = g.heap.pop().expect("peeked");
                    drop(g);
                    if let Some(n) = e.node.upgrade() {
                        if cancel_tree(&n, Error::DeadlineExceeded) {
                            // Unlink from the parent, as the canceller would.
                            detach(&n);
                        } else {
                            let mut g2 = self.lock();
                            g2.stale = g2.stale.saturating_sub(1);
                        }
                    }
                    g = self.lock();
                }
                Some(Reverse(e)) => {
                    let d = e.at - now;
                    g = self
                        .cond
                        .wait_timeout(g, d)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }
}

fn detach(node: &Arc<Node>) {
    let cs = node.cancel_state().expect("cancel node");
    if let Some(p) = node.parent.cancel_node() {
        let pc = p.cancel_state().expect("cancel node");
        let mut g = lock(&pc.inner);
        let i = cs.index.swap(NOT_LINKED, Ordering::Relaxed);
        if i != NOT_LINKED && i < g.children.len() && Arc::ptr_eq(&g.children[i], node) {
            g.children.swap_remove(i);
            if let Some(moved) = g.children.get(i) {
                moved
                    .cancel_state()
                    .expect("cancel node")
                    .index
                    .store(i, Ordering::Relaxed);
            }
        }
    }
}

// Bench targets are built with cfg(test) too, without a test harness: the tests compile
// there unused, and run from tests/mutex_baseline.rs.
#[cfg(test)]
#[allow(unused_imports)]
mod tests {
    use super::*;

    #[test]
    fn cancel_propagates_down_not_up() {
        let (p, ph) = Context::background().with_cancel();
        let (c, ch) = p.with_value(7u32).with_cancel();
        let (g, _gh) = c.with_cancel();
        ch.cancel();
        assert!(c.is_done() && g.is_done() && !p.is_done());
        assert_eq!(g.err(), Some(Error::Canceled));
        let (c2, _h2) = p.with_cancel();
        drop(ph);
        assert!(c2.is_done());
        assert_eq!(c2.value::<u32>(), None);
        let (born, _h) = p.with_cancel();
        assert!(born.is_done());
    }

    #[test]
    fn children_are_unlinked() {
        let (p, _ph) = Context::background().with_cancel();
        let kept: Vec<_> = (0..10).map(|_| p.with_cancel()).collect();
        for _ in 0..100 {
            let (_c, h) = p.with_cancel();
            drop(h);
        }
        let n = p.cancel_node().unwrap().cancel_state().unwrap();
        assert_eq!(lock(&n.inner).children.len(), 10);
        drop(kept);
        assert_eq!(lock(&n.inner).children.len(), 0);
    }

    #[test]
    fn values_chain_and_shadow() {
        let a = Context::background().with_value(1u8).with_value("x");
        let (b, _h) = a.with_cancel();
        let b = b.with_value(2u8);
        assert_eq!(b.value::<u8>(), Some(&2));
        assert_eq!(b.value::<&str>(), Some(&"x"));
        assert_eq!(a.value::<u8>(), Some(&1));
        assert_eq!(a.value::<u16>(), None);
    }

    #[test]
    fn deadline_fires_and_wakes() {
        let (c, _h) = Context::background().with_timeout(Duration::from_millis(20));
        let t = Instant::now();
        c.wait();
        assert!(t.elapsed() >= Duration::from_millis(15));
        assert_eq!(c.err(), Some(Error::DeadlineExceeded));
        let (past, _h) = Context::background().with_deadline(Instant::now());
        assert_eq!(past.err(), Some(Error::DeadlineExceeded));
        let (never, _h) = Context::background().with_timeout(Duration::MAX);
        assert!(!never.wait_timeout(Duration::from_millis(5)));
    }

    #[test]
    fn futures_and_threads_woken() {
        let (c, h) = Context::background().with_cancel();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || c.wait())
            })
            .collect();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let c2 = c.clone();
        let f = rt.spawn(async move { c2.done_owned().await });
        std::thread::sleep(Duration::from_millis(10));
        h.cancel();
        rt.block_on(f).unwrap();
        for t in threads {
            t.join().unwrap();
        }
        // A dropped pending future leaves its slot free.
        let (c, _h) = Context::background().with_cancel();
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        for _ in 0..3 {
            let mut d = Box::pin(c.done());
            assert!(d.as_mut().poll(&mut cx).is_pending());
        }
        let n = c.cancel_node().unwrap().cancel_state().unwrap();
        assert_eq!(lock(&n.inner).wakers.len(), 1);
    }

    #[test]
    fn stale_timers_are_compacted() {
        let (p, _ph) = Context::background().with_cancel();
        for _ in 0..10_000 {
            let (_c, h) = p.with_timeout(Duration::from_secs(30));
            h.cancel();
        }
        assert!(timer().lock().heap.len() < 1_000);
    }
}

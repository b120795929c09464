//! Waiting for done: the `Done` futures, and threads waiting with a timeout, on one
//! mechanism. (A thread waiting with no timeout sleeps on the node's futex word instead:
//! `sleep.rs`.)
//!
//! A waiter is a list entry holding an `AtomicWaker` (`list.rs`). A future registers its
//! task's waker; a thread in `wait_timeout` registers a waker that unparks it
//! (`std::task::Wake` over the thread handle, cached per thread), so both are woken by the
//! same canceller walk.
//!
//! Why no wakeup is lost: the waker is registered *before* the entry is pushed, and every
//! later poll registers before it re-reads the state word. The canceller sets DONE before it
//! closes the list. So either the push succeeds before the close (the walk then visits the
//! entry and wakes the registered waker; `AtomicWaker` hands a concurrent re-registration
//! the wake too), or the push fails and the waiter sees done at once. A re-poll that reads
//! the state after registering either sees DONE or registered before the walk's `wake`
//! (`AtomicWaker`'s register/wake are RMWs on one word, totally ordered).
//!
//! Fast path: an already-done context answers with no allocation and no registration.
//!
//! Nothing kept (behaviour 14): a dropped pending future, and a thread wait that times
//! out, take their waker out of the entry before giving the entry up, so no clone of a
//! task's waker waits for the next sweep. A context that can never be done (`inert.rs`)
//! keeps its waiters pending with no waker registered.

use crate::list::{self, Entry, Kind};
use crate::node::NodeRef;
use crate::state;
use crate::sync::{thread, thread_local, AtomicWaker};
use crate::Context;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Poll, Wake, Waker};
use std::time::Instant;

/// A waiter registration: null until the first pending poll.
pub(crate) struct WaitSlot {
    entry: *const Entry,
}

// SAFETY: the entry is reached only through its atomic waker and atomic count.
unsafe impl Send for WaitSlot {}
// SAFETY: `&WaitSlot` gives access to nothing (all methods take `&mut self`).
unsafe impl Sync for WaitSlot {}

impl WaitSlot {
    pub(crate) const fn new() -> WaitSlot {
        WaitSlot {
            entry: std::ptr::null(),
        }
    }

    /// Polls for done on `node` (`None`: never done), registering `waker` if not yet.
    pub(crate) fn poll(&mut self, node: Option<&NodeRef>, waker: &Waker) -> Poll<()> {
        let Some(node) = node else {
            return Poll::Pending;
        };
        let word = node.node().state.load();
        if let Some(ready) = self.settle(word) {
            return ready;
        }
        if self.entry.is_null() {
            let atomic = AtomicWaker::new();
            atomic.register(waker);
            let e = Entry::alloc(Kind::Waiter(atomic), 1, node.as_ptr());
            // SAFETY: `e` is fresh, owned by `node`, in no list.
            return match unsafe { node.node().push(e) } {
                Ok(()) => {
                    self.entry = e;
                    Poll::Pending
                }
                Err(word) => {
                    // SAFETY: the push failed, so nobody else has seen `e`.
                    unsafe { list::free_unpublished(e) };
                    if state::is_done(word) {
                        Poll::Ready(())
                    } else {
                        Poll::Pending
                    }
                }
            };
        }
        self.waker().register(waker);
        // Registered first, then read the state (see the module docs).
        let word = node.node().state.load();
        self.settle(word).unwrap_or(Poll::Pending)
    }

    /// What a closed state `word` decides, letting the registration go: `Ready` if done,
    /// `Pending` if never done (behaviour 14: waiters stay pending, their wakers released);
    /// `None` while the node is live.
    fn settle(&mut self, word: usize) -> Option<Poll<()>> {
        if state::is_open(word) {
            return None;
        }
        self.clear();
        Some(if state::is_done(word) {
            Poll::Ready(())
        } else {
            Poll::Pending
        })
    }

    fn waker(&self) -> &AtomicWaker {
        // SAFETY: our count keeps the entry alive.
        match &unsafe { &*self.entry }.kind {
            Kind::Waiter(atomic) => atomic,
            _ => unreachable!("a wait slot holds a waiter"),
        }
    }

    /// Unregisters: drops the registered waker now (behaviour 14: no clone of it outlives
    /// the wait), then gives up the entry, which leaves the list.
    fn clear(&mut self) {
        if !self.entry.is_null() {
            // A walk that is waking the entry right now may hold the waker instead
            // (`AtomicWaker` hands it to exactly one of us); it drops it once woken.
            drop(self.waker().take());
            let e = std::mem::replace(&mut self.entry, std::ptr::null());
            // SAFETY: we own the entry's one count and give it up; it leaves the list.
            unsafe { list::release(e) };
        }
    }
}

impl Drop for WaitSlot {
    fn drop(&mut self) {
        self.clear();
    }
}

/// The future returned by [`Context::done`]: resolves once the context is done.
///
/// Any number of `Done` futures (and threads in [`Context::wait`]) may wait on one context;
/// all are woken. Dropping a pending `Done` unregisters it: nothing stays behind.
///
/// ```
/// use ctxcore::Context;
/// use std::future::Future;
/// let (ctx, handle) = Context::background().with_cancel();
/// handle.cancel();
/// // Resolves at once: the context is already done.
/// let mut fut = std::pin::pin!(ctx.done());
/// let waker = std::task::Waker::noop();
/// let mut cx = std::task::Context::from_waker(&waker);
/// assert!(fut.as_mut().poll(&mut cx).is_ready());
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct Done<'a> {
    ctx: &'a Context,
    slot: WaitSlot,
}

impl<'a> Done<'a> {
    pub(crate) fn new(ctx: &'a Context) -> Done<'a> {
        Done {
            ctx,
            slot: WaitSlot::new(),
        }
    }
}

impl Future for Done<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.slot.poll(this.ctx.node_ref(), cx.waker())
    }
}

impl fmt::Debug for Done<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Done").field("ctx", self.ctx).finish()
    }
}

/// The `'static` future returned by [`Context::done_owned`]; it owns a clone of the context.
///
/// ```
/// use ctxcore::Context;
/// use std::future::Future;
/// let (ctx, handle) = Context::background().with_cancel();
/// let done = ctx.done_owned();
/// let t = std::thread::spawn(move || {
///     // Any executor works; here, a minimal one.
///     let mut done = std::pin::pin!(done);
///     let waker = std::task::Waker::noop();
///     let mut cx = std::task::Context::from_waker(&waker);
///     while done.as_mut().poll(&mut cx).is_pending() {
///         std::thread::yield_now();
///     }
/// });
/// handle.cancel();
/// t.join().unwrap();
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct DoneOwned {
    // Declared (so dropped) before `ctx`: the waiter entry leaves its node's list while the
    // context still keeps the node alive (`list.rs` invariant 5).
    slot: WaitSlot,
    ctx: Context,
}

impl DoneOwned {
    pub(crate) fn new(ctx: Context) -> DoneOwned {
        DoneOwned {
            slot: WaitSlot::new(),
            ctx,
        }
    }
}

impl Future for DoneOwned {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.slot.poll(this.ctx.node_ref(), cx.waker())
    }
}

impl fmt::Debug for DoneOwned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DoneOwned").field("ctx", &self.ctx).finish()
    }
}

/// Wakes a blocked thread.
struct ThreadWaker(thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

thread_local! {
    static THREAD_WAKER: Waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
}

/// Blocks until `node` is done or `deadline` passes; true if done.
pub(crate) fn block_on_done(node: Option<&NodeRef>, deadline: Option<Instant>) -> bool {
    let Some(node) = node else {
        // Never done: sleep out the timeout (or forever).
        match deadline {
            Some(d) => {
                let now = Instant::now();
                if d > now {
                    std::thread::sleep(d - now);
                }
            }
            None => loop {
                thread::park();
            },
        }
        return false;
    };
    if node.node().is_done() {
        return true;
    }
    if deadline.is_none() {
        // No timeout: sleep on the node's futex word, woken with every other sleeper by
        // one call (`sleep.rs`).
        node.node().sleepers.sleep_until_done(&node.node().state);
        return true;
    }
    let waker = THREAD_WAKER.with(Waker::clone);
    let mut slot = WaitSlot::new();
    loop {
        if slot.poll(Some(node), &waker).is_ready() {
            return true;
        }
        // A wake between the poll and the park leaves the unpark token set, so the park
        // returns at once: no wakeup is lost. Spurious returns loop back to the poll.
        match deadline {
            None => thread::park(),
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return node.node().is_done();
                }
                thread::park_timeout(d - now);
            }
        }
    }
}

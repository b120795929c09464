//! The `Context` handle: two words, a node (cancellation) and a value map.
//!
//! The handle holds no atomics logic of its own; it forwards to `node.rs`, `wait.rs`,
//! `callback.rs` and `value.rs`. Roots have neither a node nor values and allocate nothing;
//! `todo()` differs from `background()` only by pointing at a static marker map.

use crate::callback::AfterFunc;
use crate::clock::{ClockSlot, Queue};
use crate::error::{Cause, Error};
use crate::handle::CancelHandle;
use crate::node::{self, NodeRef};
use crate::state::{self, State};
use crate::value::ValueRef;
use crate::wait::{self, Done, DoneOwned};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

/// A cancellation signal, an optional deadline and request-scoped values, passed down a
/// call tree (Go's `context.Context`).
///
/// Derive children with [`with_cancel`](Context::with_cancel),
/// [`with_timeout`](Context::with_timeout), [`with_deadline`](Context::with_deadline) and
/// [`with_value`](Context::with_value); observe with [`is_done`](Context::is_done) and
/// [`check`](Context::check); wait with [`done`](Context::done) (futures) or
/// [`wait`](Context::wait) (threads). Cloning is cheap (no allocation) and clones observe the
/// same cancellation.
///
/// ```
/// use ctxcore::{Context, Error};
/// use std::time::Duration;
///
/// let root = Context::background();
/// let (ctx, _cancel) = root.with_timeout(Duration::from_millis(20));
/// let ctx = ctx.with_value("request-42");
/// let worker = {
///     let ctx = ctx.clone();
///     std::thread::spawn(move || {
///         let mut steps = 0u64;
///         while ctx.check().is_ok() {
///             steps += 1;
///             std::thread::sleep(Duration::from_millis(1));
///         }
///         (steps, ctx.err())
///     })
/// };
/// let (_steps, err) = worker.join().unwrap();
/// assert_eq!(err, Some(Error::DeadlineExceeded));
/// assert_eq!(ctx.value::<&str>(), Some(&"request-42"));
/// ```
#[derive(Clone)]
pub struct Context {
    node: Option<NodeRef>,
    values: Option<ValueRef>,
}

impl Context {
    /// The root context: never done, no deadline, no values. Allocates nothing.
    ///
    /// ```
    /// let ctx = ctxcore::Context::background();
    /// assert!(!ctx.is_done() && ctx.err().is_none() && ctx.deadline().is_none());
    /// ```
    pub fn background() -> Context {
        Context {
            node: None,
            values: None,
        }
    }

    /// Like [`background`](Context::background), for code not yet given a context; only its
    /// `Debug` output differs.
    ///
    /// ```
    /// assert_eq!(format!("{:?}", ctxcore::Context::todo()), "Context::todo()");
    /// ```
    pub fn todo() -> Context {
        Context {
            node: None,
            values: Some(ValueRef::todo()),
        }
    }

    /// A child that is done when `handle.cancel()` is called, the handle is dropped, or
    /// this context is done, whichever comes first. The parent is unchanged.
    ///
    /// ```
    /// let parent = ctxcore::Context::background();
    /// let (child, handle) = parent.with_cancel();
    /// drop(handle); // like Go's `defer cancel()`
    /// assert!(child.is_done() && !parent.is_done());
    /// ```
    pub fn with_cancel(&self) -> (Context, CancelHandle) {
        self.derive(None, None, None)
    }

    /// Like [`with_cancel`](Context::with_cancel), for a context that many threads derive
    /// children from at once, such as a server's root: its children register on per-thread
    /// *stripes* (hidden children of it), so derives and drops on different threads write
    /// different cache lines instead of all writing this one's.
    ///
    /// It behaves as a `with_cancel` child in every other way: cancelling it (or dropping
    /// its handle) makes every descendant done before `cancel()` returns, children of it
    /// once done are born done, its deadline and values reach them. It costs two small
    /// allocations per stripe (at most 64 stripes: one per CPU, rounded up to a power of
    /// two) while a context of it, or a child on that stripe, lives, and one of the four
    /// inline value slots in its subtree (the crate's "Memory").
    ///
    /// ```
    /// let (root, shutdown) = ctxcore::Context::background().with_cancel_shared();
    /// let workers: Vec<_> = (0..4)
    ///     .map(|_| {
    ///         let root = root.clone();
    ///         std::thread::spawn(move || {
    ///             for _ in 0..1000 {
    ///                 let (request, done) = root.with_cancel();
    ///                 assert!(!request.is_done());
    ///                 done.cancel();
    ///             }
    ///         })
    ///     })
    ///     .collect();
    /// for w in workers {
    ///     w.join().unwrap();
    /// }
    /// let (late, _h) = root.with_cancel();
    /// shutdown.cancel();
    /// assert!(late.is_done());
    /// ```
    pub fn with_cancel_shared(&self) -> (Context, CancelHandle) {
        let (ctx, handle) = self.with_cancel();
        let Some(node) = &ctx.node else {
            return (ctx, handle);
        };
        let slot = crate::stripe::StripeSlot::new(node, ctx.values.as_ref());
        (
            Context {
                node: ctx.node.clone(),
                values: Some(ValueRef::with(ctx.values.as_ref(), slot)),
            },
            handle,
        )
    }

    /// A child that is also done with [`Error::DeadlineExceeded`] at `deadline`. If this
    /// context's deadline is earlier, the child keeps that one (and arms no timer). A
    /// deadline already past gives a child born done.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let (ctx, _h) = ctxcore::Context::background()
    ///     .with_deadline(Instant::now() - Duration::from_secs(1));
    /// assert_eq!(ctx.err(), Some(ctxcore::Error::DeadlineExceeded));
    /// ```
    pub fn with_deadline(&self, deadline: Instant) -> (Context, CancelHandle) {
        self.derive(Some(deadline), self.clock_queue(), None)
    }

    /// `with_deadline(now + timeout)`, `now` read on this context's
    /// [`clock`](Context::clock) (`Instant::now()` under `background()`). A timeout too
    /// large to represent (such as `Duration::MAX`) means no deadline of its own; it never
    /// panics.
    ///
    /// ```
    /// use std::time::Duration;
    /// let root = ctxcore::Context::background();
    /// let (ctx, _h) = root.with_timeout(Duration::MAX);
    /// assert!(ctx.deadline().is_none());
    /// let (ctx, _h) = root.with_timeout(Duration::from_millis(5));
    /// ctx.wait();
    /// assert!(ctx.err().unwrap().is_timeout());
    /// ```
    pub fn with_timeout(&self, timeout: Duration) -> (Context, CancelHandle) {
        let clock = self.clock_queue();
        let now = crate::clock::now_on(clock);
        self.derive(now.checked_add(timeout), clock, Some(now))
    }

    /// Derives a node whose own deadline (if any) is measured and fired by `clock` (`None`:
    /// the system clock); `now`: that clock's time, if the caller has read it already.
    fn derive(
        &self,
        own: Option<Instant>,
        clock: Option<&Arc<Queue>>,
        now: Option<Instant>,
    ) -> (Context, CancelHandle) {
        let (parent, values) = match &self.node {
            Some(n) => {
                let (p, v) = crate::stripe::parent_for(n, self.values.as_ref());
                (Some(p), v)
            }
            None => (None, self.values.as_ref()),
        };
        let (ctx_ref, handle_ref) = node::derive(parent, own, clock, now);
        (
            Context {
                node: Some(ctx_ref),
                values: values.cloned(),
            },
            CancelHandle::new(handle_ref),
        )
    }

    /// A child carrying `value`, found by [`value::<T>()`](Context::value) here and in every
    /// descendant, unless a nearer `with_value` of the same type shadows it. One allocation;
    /// lookups cost the same at any depth.
    ///
    /// ```
    /// #[derive(Debug, PartialEq)]
    /// struct UserId(u64);
    /// let ctx = ctxcore::Context::background().with_value(UserId(7));
    /// let (child, _h) = ctx.with_cancel();
    /// assert_eq!(child.value::<UserId>(), Some(&UserId(7)));
    /// ```
    pub fn with_value<T: Send + Sync + 'static>(&self, value: T) -> Context {
        Context {
            node: self.node.clone(),
            values: Some(ValueRef::with(self.values.as_ref(), value)),
        }
    }

    /// A child that keeps this context's values but is never done and has no deadline,
    /// even after this context is cancelled (Go's `WithoutCancel`).
    ///
    /// ```
    /// let (ctx, handle) = ctxcore::Context::background().with_value(1u8).with_cancel();
    /// let detached = ctx.without_cancel();
    /// handle.cancel();
    /// assert!(!detached.is_done());
    /// assert_eq!(detached.value::<u8>(), Some(&1));
    /// ```
    pub fn without_cancel(&self) -> Context {
        Context {
            node: None,
            values: self.values.clone(),
        }
    }

    /// True once the context is done. One atomic load.
    ///
    /// ```
    /// let (ctx, h) = ctxcore::Context::background().with_cancel();
    /// assert!(!ctx.is_done());
    /// h.cancel();
    /// assert!(ctx.is_done());
    /// ```
    #[inline]
    pub fn is_done(&self) -> bool {
        match &self.node {
            Some(n) => n.node().is_done(),
            None => false,
        }
    }

    #[inline]
    fn word(&self) -> usize {
        match &self.node {
            Some(n) => n.node().state.load(),
            None => 0,
        }
    }

    /// `None` while the context is live; then why it is done, fixed forever.
    ///
    /// ```
    /// let (ctx, h) = ctxcore::Context::background().with_cancel();
    /// assert_eq!(ctx.err(), None);
    /// h.cancel();
    /// assert_eq!(ctx.err(), Some(ctxcore::Error::Canceled));
    /// ```
    #[inline]
    pub fn err(&self) -> Option<Error> {
        state::error(self.word())
    }

    /// `Ok(())` while live, `Err(reason)` once done: `ctx.check()?` in loops.
    ///
    /// ```
    /// fn work(ctx: &ctxcore::Context) -> Result<u32, ctxcore::Error> {
    ///     let mut n = 0;
    ///     for _ in 0..1000 {
    ///         ctx.check()?;
    ///         n += 1;
    ///     }
    ///     Ok(n)
    /// }
    /// assert_eq!(work(&ctxcore::Context::background()), Ok(1000));
    /// ```
    #[inline]
    pub fn check(&self) -> Result<(), Error> {
        match self.err() {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }

    /// Why the context is done, in detail: `None` while live; the cause given to
    /// [`cancel_with_cause`](CancelHandle::cancel_with_cause); else the [`Error`] itself
    /// (downcastable to it). Descendants report their ancestor's cause.
    ///
    /// ```
    /// let (ctx, h) = ctxcore::Context::background().with_cancel();
    /// h.cancel();
    /// let cause = ctx.cause().unwrap();
    /// assert_eq!(cause.downcast_ref::<ctxcore::Error>(), Some(&ctxcore::Error::Canceled));
    /// ```
    pub fn cause(&self) -> Option<Cause> {
        State::cause_of(self.word())
    }

    /// When the context will be done by its deadline (its own or an ancestor's), if ever.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let d = Instant::now() + Duration::from_secs(60);
    /// let (ctx, _h) = ctxcore::Context::background().with_deadline(d);
    /// assert_eq!(ctx.deadline(), Some(d));
    /// ```
    pub fn deadline(&self) -> Option<Instant> {
        self.node.as_ref().and_then(|n| n.node().deadline)
    }

    /// The value of type `T` set by the nearest `with_value::<T>` on the way to the root.
    ///
    /// ```
    /// let ctx = ctxcore::Context::background().with_value(1u32).with_value(2u32);
    /// assert_eq!(ctx.value::<u32>(), Some(&2));
    /// assert_eq!(ctx.value::<u64>(), None);
    /// ```
    #[inline]
    pub fn value<T: 'static>(&self) -> Option<&T> {
        self.values.as_ref()?.get::<T>()
    }

    /// A future that resolves once the context is done (at once if it already is). Works on
    /// any executor; any number of futures and threads may wait on one context.
    ///
    /// ```
    /// # use std::future::Future;
    /// let (ctx, h) = ctxcore::Context::background().with_cancel();
    /// h.cancel();
    /// let mut done = std::pin::pin!(ctx.done());
    /// let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    /// assert!(done.as_mut().poll(&mut cx).is_ready());
    /// ```
    pub fn done(&self) -> Done<'_> {
        Done::new(self)
    }

    /// Like [`done`](Context::done), but owning a clone of the context, so the future is
    /// `'static` (for spawning).
    ///
    /// ```
    /// let (ctx, h) = ctxcore::Context::background().with_cancel();
    /// let fut: ctxcore::DoneOwned = ctx.done_owned();
    /// drop(h);
    /// # let _ = fut;
    /// ```
    pub fn done_owned(&self) -> DoneOwned {
        DoneOwned::new(self.clone())
    }

    /// Blocks the calling thread until the context is done.
    ///
    /// Allocates nothing: the thread sleeps on a word of the context's node, and the cancel
    /// wakes every thread waiting on that context with one system call. On a context that
    /// can never be done (such as `background()`), it blocks forever, as receiving from
    /// Go's `Done()` channel does.
    ///
    /// ```
    /// let (ctx, h) = ctxcore::Context::background().with_cancel();
    /// let t = std::thread::spawn(move || h.cancel());
    /// ctx.wait();
    /// assert!(ctx.is_done());
    /// t.join().unwrap();
    /// ```
    pub fn wait(&self) {
        wait::block_on_done(self.node.as_ref(), None);
    }

    /// Blocks until the context is done or `timeout` elapses; true if done.
    ///
    /// ```
    /// use std::time::Duration;
    /// let ctx = ctxcore::Context::background();
    /// assert!(!ctx.wait_timeout(Duration::from_millis(1)));
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        match Instant::now().checked_add(timeout) {
            Some(deadline) => wait::block_on_done(self.node.as_ref(), Some(deadline)),
            None => wait::block_on_done(self.node.as_ref(), None),
        }
    }

    /// Runs `fut` until it completes or the context is done, whichever is first:
    /// `Ok(output)`, or `Err(reason)` with `fut` already dropped. The context is checked
    /// before `fut` is polled.
    ///
    /// ```
    /// # use std::future::Future;
    /// let (ctx, h) = ctxcore::Context::background().with_cancel();
    /// h.cancel();
    /// let mut run = std::pin::pin!(ctx.run(async { 42 }));
    /// let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    /// assert_eq!(run.as_mut().poll(&mut cx), std::task::Poll::Ready(Err(ctxcore::Error::Canceled)));
    /// ```
    pub async fn run<F: Future>(&self, fut: F) -> Result<F::Output, Error> {
        if let Some(e) = self.err() {
            drop(fut);
            return Err(e);
        }
        let mut fut = std::pin::pin!(Some(fut));
        let mut done = self.done();
        let out = std::future::poll_fn(|cx| {
            if self.is_done() {
                return Poll::Ready(None);
            }
            if let Some(f) = fut.as_mut().as_pin_mut() {
                if let Poll::Ready(v) = f.poll(cx) {
                    return Poll::Ready(Some(v));
                }
            }
            Pin::new(&mut done).poll(cx).map(|()| None)
        })
        .await;
        match out {
            Some(v) => Ok(v),
            None => {
                fut.set(None);
                Err(self.err().unwrap_or(Error::Canceled))
            }
        }
    }

    /// Runs `f` once the context is done, on the thread that makes it done (the canceller,
    /// or the timer thread for a deadline), after the state is published; at once on this
    /// thread if it already is. `f` should not block: spawn for long work. See
    /// [`AfterFunc::stop`].
    ///
    /// A panic in `f` does not stop the other listeners: the cancel completes and then
    /// re-raises the first such panic on the cancelling thread (the timer thread drops it
    /// after the panic hook has reported it).
    ///
    /// A pending callback keeps its context (and so its ancestors) in memory until it runs
    /// or is stopped, as in Go. If the context can never be done (it descends from no armed
    /// handle and no pending deadline, for instance because every handle on its path was
    /// disarmed), `f` is dropped without running, at once or as soon as that becomes true,
    /// and `stop()` then returns true.
    ///
    /// ```
    /// use std::sync::{atomic::{AtomicU32, Ordering}, Arc};
    /// let (ctx, h) = ctxcore::Context::background().with_cancel();
    /// let hits = Arc::new(AtomicU32::new(0));
    /// let counter = hits.clone();
    /// let _after = ctx.after_func(move || { counter.fetch_add(1, Ordering::SeqCst); });
    /// h.cancel();
    /// assert_eq!(hits.load(Ordering::SeqCst), 1);
    /// ```
    pub fn after_func(&self, f: impl FnOnce() + Send + 'static) -> AfterFunc {
        AfterFunc::register(self.node.as_ref(), Box::new(f))
    }

    pub(crate) fn node_ref(&self) -> Option<&NodeRef> {
        self.node.as_ref()
    }

    /// A context of `node` that sees no values (enough to wait on it).
    #[cfg(feature = "http")]
    pub(crate) fn of_node(node: NodeRef) -> Context {
        Context {
            node: Some(node),
            values: None,
        }
    }

    #[cfg(all(test, not(loom)))]
    pub(crate) fn values_ref(&self) -> Option<&ValueRef> {
        self.values.as_ref()
    }

    /// The queue of this tree's clock, carried as a hidden value (`clock/mod.rs`); `None`
    /// for the system clock.
    #[inline]
    pub(crate) fn clock_queue(&self) -> Option<&Arc<Queue>> {
        Some(&self.values.as_ref()?.get::<ClockSlot>()?.0)
    }

    /// The time on this tree's clock.
    #[cfg(feature = "http")]
    #[inline]
    pub(crate) fn clock_now(&self) -> Instant {
        crate::clock::now_on(self.clock_queue())
    }

    /// The root of a manual or tokio clock's tree.
    pub(crate) fn with_clock_slot(slot: ClockSlot) -> Context {
        Context {
            node: None,
            values: Some(ValueRef::with(None, slot)),
        }
    }
}

impl Default for Context {
    /// [`Context::background`].
    fn default() -> Self {
        Context::background()
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = usize::from(self.clock_queue().is_some())
            + self.values.as_ref().map_or(0, |v| {
                usize::from(v.get::<crate::stripe::StripeSlot>().is_some())
                    + usize::from(v.get::<crate::stripe::StripeMark>().is_some())
            });
        let values = self.values.as_ref().map_or(0, ValueRef::len) - hidden;
        match (&self.node, &self.values) {
            (None, None) => f.write_str("Context::background()"),
            (None, Some(v)) if v.is_todo() => f.write_str("Context::todo()"),
            _ => {
                let mut d = f.debug_struct("Context");
                d.field("err", &self.err())
                    .field("deadline", &self.deadline())
                    .field("values", &values);
                if self.clock_queue().is_some() {
                    d.field("clock", &self.clock());
                }
                d.finish()
            }
        }
    }
}

//! `CancelHandle`: the right to cancel one context (Go's `CancelFunc`).

use crate::error::Error;
use crate::inert;
use crate::node::NodeRef;
use std::fmt;
use std::mem::ManuallyDrop;
use std::sync::Arc;

/// Cancels the context it was created with. Dropping it cancels too, like Go's
/// `defer cancel()`; [`disarm`](CancelHandle::disarm) gives it up without cancelling.
///
/// `CancelHandle` is `Send + Sync` but not `Clone`: share it by reference (or in an `Arc`)
/// to cancel from several threads; every cancel after the first is a no-op.
///
/// ```
/// use ctxcore::{Context, Error};
///
/// let (ctx, handle) = Context::background().with_cancel();
/// assert!(!ctx.is_done());
/// handle.cancel();
/// assert_eq!(ctx.err(), Some(Error::Canceled));
/// ```
#[must_use = "dropping a CancelHandle cancels its context at once"]
pub struct CancelHandle {
    node: ManuallyDrop<NodeRef>,
}

impl CancelHandle {
    pub(crate) fn new(node: NodeRef) -> CancelHandle {
        CancelHandle {
            node: ManuallyDrop::new(node),
        }
    }

    /// Cancels the context and every context derived from it, with `Error::Canceled`.
    ///
    /// When it returns, the context and all its descendants report done, every waiter has
    /// been woken and every `after_func` callback has run. Idempotent and safe from many
    /// threads at once: the first cancel's error and cause are kept.
    ///
    /// ```
    /// let (ctx, handle) = ctxcore::Context::background().with_cancel();
    /// let (child, _child_handle) = ctx.with_cancel();
    /// handle.cancel();
    /// handle.cancel(); // no-op
    /// assert!(child.is_done());
    /// ```
    pub fn cancel(&self) {
        self.node.cancel(Error::Canceled, None);
    }

    /// Cancels like [`cancel`](CancelHandle::cancel), recording `cause`: the context's
    /// [`cause`](crate::Context::cause) (and its descendants') returns it, while
    /// [`err`](crate::Context::err) stays `Canceled`. Ignored if already done.
    ///
    /// ```
    /// let (ctx, handle) = ctxcore::Context::background().with_cancel();
    /// handle.cancel_with_cause("upstream closed the connection");
    /// assert_eq!(ctx.err(), Some(ctxcore::Error::Canceled));
    /// assert_eq!(ctx.cause().unwrap().to_string(), "upstream closed the connection");
    /// ```
    pub fn cancel_with_cause(&self, cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) {
        let cause: Arc<dyn std::error::Error + Send + Sync> = Arc::from(cause.into());
        self.node.cancel(Error::Canceled, Some(cause));
    }

    /// Gives the handle up without cancelling: the context is then done only through its
    /// parent or its deadline.
    ///
    /// If neither is left (no deadline of its own, and no ancestor up to a root or a
    /// [`without_cancel`](crate::Context::without_cancel) that can still be done), the
    /// context can never be done any more and behaves as
    /// [`background()`](crate::Context::background) from now on: its pending
    /// [`after_func`](crate::Context::after_func) callbacks are dropped unrun (their
    /// [`stop`](crate::AfterFunc::stop) returns true), its waiters stay pending with their
    /// wakers released, and so do its descendants that depended on it alone.
    ///
    /// ```
    /// let (ctx, handle) = ctxcore::Context::background().with_cancel();
    /// let after = ctx.after_func(|| unreachable!("never runs"));
    /// handle.disarm();
    /// assert!(!ctx.is_done());
    /// assert!(after.stop(), "the callback was dropped unrun");
    /// ```
    pub fn disarm(self) {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: our count keeps the node alive, and HANDLE is ours to clear: only this
        // handle clears it, once (it is consumed here).
        unsafe { inert::remove_source(this.node.as_ptr(), inert::HANDLE) };
        // SAFETY: `this` is never used again and its `Drop` does not run, so the reference
        // is dropped exactly once, here.
        unsafe { ManuallyDrop::drop(&mut this.node) };
    }

    /// The error of the handle's context, as `Context::err` (for the server layer, which
    /// keeps the handle and hands the context itself to the handler).
    #[cfg(feature = "http")]
    pub(crate) fn err(&self) -> Option<Error> {
        crate::state::error(self.node.node().state.load())
    }

    /// Ends the handle's context as its deadline would: `DeadlineExceeded`, no cause (for
    /// the server layer, when the request is dropped at or after its deadline).
    #[cfg(feature = "http")]
    pub(crate) fn expire(&self) {
        self.node.cancel(Error::DeadlineExceeded, None);
    }

    /// The deadline of the handle's context, as `Context::deadline`.
    #[cfg(feature = "http")]
    pub(crate) fn deadline(&self) -> Option<std::time::Instant> {
        self.node.node().deadline
    }

    /// A future done with the handle's context, as `Context::done_owned`.
    #[cfg(feature = "http")]
    pub(crate) fn done_owned(&self) -> crate::DoneOwned {
        crate::Context::of_node((*self.node).clone()).done_owned()
    }
}

impl Drop for CancelHandle {
    fn drop(&mut self) {
        self.cancel();
        // SAFETY: `drop` runs once; the field is not used afterwards.
        unsafe { ManuallyDrop::drop(&mut self.node) };
    }
}

impl fmt::Debug for CancelHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelHandle")
            .field("done", &self.node.node().is_done())
            .finish()
    }
}

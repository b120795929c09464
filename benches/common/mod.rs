//! One face over ctxcore and its peers, so every workload runs unchanged against each.
//!
//! `Ctx` is what all three peers have (cancellation trees); `Deadlines` and `Values` only
//! ctxcore and the mutex baseline have: tokio-util's `CancellationToken` has neither, so
//! the workloads that need them skip it. Everything is generic, so each peer's calls are
//! monomorphised and inlined: the face costs nothing at run time.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use criterion::Criterion;

#[path = "../baseline/mutex_ctx.rs"]
pub mod mutex_ctx;

/// A cancellation tree.
pub trait Ctx: Clone + Send + Sync + 'static {
    /// What cancels the context (ctxcore: `CancelHandle`; tokio-util: a clone of the token).
    type Handle: Send + Sync + 'static;
    /// The name the report uses for the peer.
    const NAME: &'static str;
    /// A long-lived cancellable root (a server's shutdown context).
    fn cancellable_root() -> (Self, Self::Handle);
    /// Derive a cancellable child.
    fn child(&self) -> (Self, Self::Handle);
    /// Cancel through the handle.
    fn cancel(h: &Self::Handle);
    /// The hot-path check.
    fn is_done(&self) -> bool;
    /// Block the calling thread until done.
    fn wait(&self);
    /// A future that resolves once done, borrowing the context.
    fn done(&self) -> impl Future<Output = ()> + Send + '_;
}

/// Peers with deadlines.
pub trait Deadlines: Ctx {
    /// `with_timeout`.
    fn child_timeout(&self, timeout: Duration) -> (Self, Self::Handle);
}

/// Peers with request-scoped values.
pub trait Values: Ctx {
    /// `with_value`.
    fn with_value<T: Send + Sync + 'static>(&self, v: T) -> Self;
    /// `value::<T>()`.
    fn value<T: Send + Sync + 'static>(&self) -> Option<&T>;
}

/// ctxcore and the mutex baseline have the same API, so one impl serves both.
macro_rules! same_api_impls {
    ($module:ident, $name:literal) => {
        impl Ctx for $module::Context {
            type Handle = $module::CancelHandle;
            const NAME: &'static str = $name;
            fn cancellable_root() -> (Self, Self::Handle) {
                $module::Context::background().with_cancel()
            }
            #[inline]
            fn child(&self) -> (Self, Self::Handle) {
                self.with_cancel()
            }
            #[inline]
            fn cancel(h: &Self::Handle) {
                h.cancel()
            }
            #[inline]
            fn is_done(&self) -> bool {
                $module::Context::is_done(self)
            }
            fn wait(&self) {
                $module::Context::wait(self)
            }
            fn done(&self) -> impl Future<Output = ()> + Send + '_ {
                $module::Context::done(self)
            }
        }

        impl Deadlines for $module::Context {
            #[inline]
            fn child_timeout(&self, timeout: Duration) -> (Self, Self::Handle) {
                self.with_timeout(timeout)
            }
        }

        impl Values for $module::Context {
            #[inline]
            fn with_value<T: Send + Sync + 'static>(&self, v: T) -> Self {
                $module::Context::with_value(self, v)
            }
            #[inline]
            fn value<T: Send + Sync + 'static>(&self) -> Option<&T> {
                $module::Context::value::<T>(self)
            }
        }
    };
}

same_api_impls!(ctxcore, "ctxcore");
same_api_impls!(mutex_ctx, "mutex");

/// tokio-util: no deadlines, no values; the handle is a clone of the token, and dropping
/// it does not cancel (the workloads always cancel explicitly).
impl Ctx for tokio_util::sync::CancellationToken {
    type Handle = tokio_util::sync::CancellationToken;
    const NAME: &'static str = "tokio-util";
    fn cancellable_root() -> (Self, Self::Handle) {
        let t = tokio_util::sync::CancellationToken::new();
        (t.clone(), t)
    }
    #[inline]
    fn child(&self) -> (Self, Self::Handle) {
        let c = self.child_token();
        (c.clone(), c)
    }
    #[inline]
    fn cancel(h: &Self::Handle) {
        h.cancel()
    }
    #[inline]
    fn is_done(&self) -> bool {
        self.is_cancelled()
    }
    fn wait(&self) {
        // tokio-util has no blocking wait: block the thread on the future.
        futures::executor::block_on(self.cancelled())
    }
    fn done(&self) -> impl Future<Output = ()> + Send + '_ {
        self.cancelled()
    }
}

/// Criterion as every bench file configures it: the command line (see benches/compare.sh)
/// bounds warm-up, measurement time and sample size.
pub fn criterion() -> Criterion {
    Criterion::default().configure_from_args()
}

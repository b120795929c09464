//! The response body wrapper that ends a request's context when the response is over.
//!
//! The body holds the request's [`CancelHandle`]. The context is cancelled (cause
//! `Canceled`) as soon as the body has reached its end: the inner body returned its last
//! frame, or reports `is_end_stream`. Dropped before its end, the body cancels with cause
//! [`ClientGone`]: a server drops a response body unfinished when the client went away
//! (or, at or after the context's deadline, as the deadline would: see [`gone`]).

use super::ClientGone;
use crate::clock::Clock;
use crate::CancelHandle;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};

pin_project_lite::pin_project! {
    /// A response body that keeps its request's context until the body is finished or
    /// dropped. [`RequestContextLayer`](super::RequestContextLayer)'s service answers with
    /// it: the inner service's body, or an empty body for the responses the layer makes
    /// itself (504, gRPC `DEADLINE_EXCEEDED`).
    ///
    /// ```
    /// use ctxcore::http::ContextBody;
    /// use http_body::Body;
    /// let empty: ContextBody<String> = ContextBody::empty();
    /// assert!(empty.is_end_stream());
    /// ```
    pub struct ContextBody<B: Body> {
        #[pin]
        inner: Option<B>,
        handle: Option<CancelHandle>,
        // The clock of the handle's context, read if the body is dropped unfinished.
        clock: Clock,
    }

    impl<B: Body> PinnedDrop for ContextBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(handle) = this.handle.take() {
                let finished = this.inner.as_ref().as_pin_ref().is_none_or(|b| b.is_end_stream());
                if !finished {
                    gone(&handle, this.clock);
                }
            }
        }
    }
}

impl<B: Body> ContextBody<B> {
    /// Wraps `inner`; `handle` (of a context on `clock`) is cancelled when the body ends
    /// or is dropped.
    pub(crate) fn new(inner: B, handle: CancelHandle, clock: Clock) -> ContextBody<B> {
        ContextBody {
            inner: Some(inner),
            handle: Some(handle),
            clock,
        }
    }

    /// A body with no data, holding no context.
    ///
    /// ```
    /// let body: ctxcore::http::ContextBody<String> = ctxcore::http::ContextBody::empty();
    /// # drop(body);
    /// ```
    pub fn empty() -> ContextBody<B> {
        ContextBody {
            inner: None,
            handle: None,
            clock: Clock::system(),
        }
    }
}

/// Ends the context of a request dropped before its end: its response future dropped
/// unanswered, or its body dropped unfinished. At or after the context's deadline this is
/// reported as the deadline passing (`DeadlineExceeded`): an outer timeout of the same
/// deadline (tonic's server reads `grpc-timeout` too) may drop the request a moment before
/// the context's own timer fires. Earlier, the client went away ([`ClientGone`]).
pub(super) fn gone(handle: &CancelHandle, clock: &Clock) {
    if handle.deadline().is_some_and(|d| d <= clock.now()) {
        handle.expire();
    } else {
        handle.cancel_with_cause(ClientGone);
    }
}

impl<B: Body> Body for ContextBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let mut this = self.project();
        let Some(mut inner) = this.inner.as_mut().as_pin_mut() else {
            return Poll::Ready(None);
        };
        let frame = std::task::ready!(inner.as_mut().poll_frame(cx));
        // The end: no more frames, or the last one (servers stop polling after it). An error
        // ends the body too: nothing more will be sent.
        if frame.is_none() || inner.is_end_stream() || matches!(frame, Some(Err(_))) {
            if let Some(handle) = this.handle.take() {
                handle.cancel();
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(B::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Some(b) => b.size_hint(),
            None => SizeHint::with_exact(0),
        }
    }
}

impl<B: Body> std::fmt::Debug for ContextBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContextBody")
            .field("empty", &self.inner.is_none())
            .field("armed", &self.handle.is_some())
            .finish()
    }
}

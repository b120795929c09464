//! The server layer: one context per request, a child of the server's root.
//!
//! The request's context is derived when the request arrives, with the earliest deadline
//! of the root's, the request's `grpc-timeout` (or the layer's default when there is none)
//! and the layer's cap. It goes into the request's extensions, and its cancel handle goes
//! with the response: into the response body ([`ContextBody`]), which cancels it when
//! the body is finished or dropped. A service future dropped before it answered cancels it
//! with [`ClientGone`](super::ClientGone) (or as its deadline would, when that has
//! passed); a deadline that passes first drops the handler and answers 504 (or gRPC
//! `DEADLINE_EXCEEDED`).

use super::body::gone;
use super::{grpc_timeout, Baggage, ContextBody};
use crate::clock::Clock;
use crate::{CancelHandle, Context, DoneOwned, Error};
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body::Body;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;
use tower_layer::Layer;
use tower_service::Service;

/// A tower layer that gives each request a [`Context`], a child of the server's root, in
/// its extensions. See the [module docs](crate::http).
///
/// ```
/// use ctxcore::http::RequestContextLayer;
/// use ctxcore::Context;
/// use std::time::Duration;
///
/// let root = Context::background();
/// let layer = RequestContextLayer::new(&root)
///     .default_timeout(Duration::from_secs(10))
///     .max_timeout(Duration::from_secs(60));
/// # let _ = layer;
/// ```
#[derive(Debug, Clone)]
pub struct RequestContextLayer {
    root: Context,
    // The root's clock, read when a request is dropped unanswered (see `gone`).
    clock: Clock,
    default_timeout: Option<Duration>,
    max_timeout: Option<Duration>,
}

impl RequestContextLayer {
    /// A layer whose request contexts are children of `root`: cancelling `root` (server
    /// shutdown) makes every in-flight request done, with the root's cause.
    ///
    /// On a multi-threaded runtime, make `root` with
    /// [`Context::with_cancel_shared`]: requests derived on different worker threads then
    /// register on different stripes instead of all writing the root's cache line.
    ///
    /// ```
    /// let layer = ctxcore::http::RequestContextLayer::new(&ctxcore::Context::background());
    /// # let _ = layer;
    /// ```
    pub fn new(root: &Context) -> RequestContextLayer {
        RequestContextLayer {
            root: root.clone(),
            clock: root.clock(),
            default_timeout: None,
            max_timeout: None,
        }
    }

    /// The timeout of a request that names none (no valid `grpc-timeout`). Default: none.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let layer = ctxcore::http::RequestContextLayer::new(&ctxcore::Context::background())
    ///     .default_timeout(Duration::from_secs(30));
    /// # let _ = layer;
    /// ```
    pub fn default_timeout(mut self, t: Duration) -> RequestContextLayer {
        self.default_timeout = Some(t);
        self
    }

    /// The longest timeout a request gets, whatever it asks for. Default: none.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let layer = ctxcore::http::RequestContextLayer::new(&ctxcore::Context::background())
    ///     .max_timeout(Duration::from_secs(120));
    /// # let _ = layer;
    /// ```
    pub fn max_timeout(mut self, t: Duration) -> RequestContextLayer {
        self.max_timeout = Some(t);
        self
    }
}

impl<S> Layer<S> for RequestContextLayer {
    type Service = RequestContext<S>;

    fn layer(&self, inner: S) -> RequestContext<S> {
        RequestContext {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`RequestContextLayer`].
///
/// ```
/// use ctxcore::http::RequestContextLayer;
/// use ctxcore::Context;
/// use tower_layer::Layer;
///
/// # fn service() -> tower::util::BoxCloneSyncService<http::Request<String>, http::Response<String>, std::convert::Infallible> {
/// #   tower::util::BoxCloneSyncService::new(tower::service_fn(|_req| async { Ok(http::Response::new(String::new())) }))
/// # }
/// let service = RequestContextLayer::new(&Context::background()).layer(service());
/// # let _ = service;
/// ```
#[derive(Debug, Clone)]
pub struct RequestContext<S> {
    inner: S,
    layer: RequestContextLayer,
}

impl<S> RequestContext<S> {
    /// The request's context and its handle: deadline and values from its headers.
    fn derive<B>(&self, req: &Request<B>) -> (Context, CancelHandle) {
        let layer = &self.layer;
        let asked = req
            .headers()
            .get(&grpc_timeout::NAME)
            .and_then(grpc_timeout::parse)
            .or(layer.default_timeout);
        let timeout = match (asked, layer.max_timeout) {
            (Some(t), Some(max)) => Some(t.min(max)),
            (t, max) => t.or(max),
        };
        // Measured on the root's clock (behaviour 30); a timeout too far away to represent
        // means no deadline of the request's own.
        let (ctx, handle) = match timeout {
            Some(t) => layer.root.with_timeout(t),
            None => layer.root.with_cancel(),
        };
        match Baggage::from_headers(req.headers()) {
            Some(baggage) => (ctx.with_value(baggage), handle),
            None => (ctx, handle),
        }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequestContext<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body,
{
    type Response = Response<ContextBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> ResponseFuture<S::Future> {
        let (ctx, handle) = self.derive(&req);
        let grpc = req
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        // The handler gets the context; the future keeps only the handle (it waits on the
        // same node), which spares a count taken and given back per request.
        req.extensions_mut().insert(ctx);
        ResponseFuture {
            inner: Some(self.inner.call(req)),
            handle: Some(handle),
            done: None,
            racing: true,
            grpc,
            clock: self.layer.clock.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`RequestContext`]: the handler raced against the request's deadline.
    /// Dropped before it answered, it cancels the request's context with
    /// [`ClientGone`](super::ClientGone) (at or after its deadline: `DeadlineExceeded`).
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Option<F>,
        // The request context's handle: `Some` until the answer (then it goes with the
        // body), and what the future reads the context's state through.
        handle: Option<CancelHandle>,
        // Created on the first `Pending`: a handler that answers at once registers no waiter.
        done: Option<DoneOwned>,
        // False once the context is done for a reason other than a deadline (the root was
        // cancelled): the handler, which sees its context done, then answers as it likes.
        racing: bool,
        grpc: bool,
        clock: Clock,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            // Drop the handler first: it runs its drops with the context not yet done by us.
            this.inner.set(None);
            if let Some(handle) = this.handle.take() {
                gone(&handle, this.clock);
            }
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("handle", &self.handle)
            .field("answered", &self.inner.is_none())
            .finish()
    }
}

/// The answer for a request whose deadline passed first: 504, or for gRPC a trailers-only
/// response with `grpc-status: 4` (`DEADLINE_EXCEEDED`).
fn deadline_response<B: Body>(grpc: bool) -> Response<ContextBody<B>> {
    let mut res = Response::new(ContextBody::empty());
    if grpc {
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert("grpc-status", HeaderValue::from_static("4"));
        headers.insert(
            "grpc-message",
            HeaderValue::from_static("context%20deadline%20exceeded"),
        );
    } else {
        *res.status_mut() = StatusCode::GATEWAY_TIMEOUT;
    }
    res
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
{
    type Output = Result<Response<ContextBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let deadline_passed = |handle: &Option<CancelHandle>| {
            handle.as_ref().and_then(CancelHandle::err) == Some(Error::DeadlineExceeded)
        };
        if *this.racing && deadline_passed(this.handle) {
            this.inner.set(None);
            drop(this.handle.take());
            return Poll::Ready(Ok(deadline_response(*this.grpc)));
        }
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            panic!("ResponseFuture polled after completion");
        };
        if let Poll::Ready(out) = inner.poll(cx) {
            this.inner.set(None);
            let handle = this
                .handle
                .take()
                .expect("the handle is kept until the answer");
            // Moved, not cloned (a manual or tokio clock is an `Arc`): without the handle
            // the future never reads its clock again.
            let clock = std::mem::take(this.clock);
            return Poll::Ready(
                out.map(|res| res.map(|body| ContextBody::new(body, handle, clock))),
            );
        }
        if *this.racing {
            let Some(handle) = this.handle.as_ref() else {
                panic!("ResponseFuture polled after completion");
            };
            let done = this.done.get_or_insert_with(|| handle.done_owned());
            if Pin::new(done).poll(cx).is_ready() {
                if deadline_passed(this.handle) {
                    this.inner.set(None);
                    drop(this.handle.take());
                    return Poll::Ready(Ok(deadline_response(*this.grpc)));
                }
                // The root was cancelled: the handler decides what to answer.
                *this.racing = false;
                *this.done = None;
            }
        }
        Poll::Pending
    }
}

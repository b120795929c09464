//! The client layer: an outgoing request carries its context's deadline (as `grpc-timeout`)
//! and baggage, is not sent when its context is already done, and is dropped as soon as the
//! context is done.

use super::{grpc_timeout, Baggage};
use crate::{Context, DoneOwned};
use http::Request;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use tower_layer::Layer;
use tower_service::Service;

/// Errors of the client layer's service: the inner service's error, or the context's
/// [`ctxcore::Error`](crate::Error) (downcast to it to tell).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A tower layer over an HTTP client that propagates the [`Context`] found in an outgoing
/// request's extensions: its deadline as `grpc-timeout`, its [`Baggage`] as `baggage`, and
/// its cancellation (the call is dropped, failing with the context's `Error`). A request
/// without a context passes through unchanged.
///
/// ```
/// use ctxcore::http::PropagateDeadlineLayer;
/// use ctxcore::Context;
/// use tower::{Service, ServiceBuilder, ServiceExt};
/// use std::time::Duration;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let mut client = ServiceBuilder::new()
///     .layer(PropagateDeadlineLayer::new())
///     .service_fn(|req: http::Request<String>| async move {
///         // A real client sends it; this one shows what it would send.
///         let sent = req.headers().get("grpc-timeout").cloned();
///         Ok::<_, std::convert::Infallible>(http::Response::new(sent))
///     });
/// let (ctx, _cancel) = Context::background().with_timeout(Duration::from_secs(2));
/// let mut req = http::Request::new(String::new());
/// req.extensions_mut().insert(ctx);
/// let res = client.ready().await.unwrap().call(req).await.unwrap();
/// let left = ctxcore::http::grpc_timeout::parse(res.body().as_ref().unwrap()).unwrap();
/// assert!(left <= Duration::from_secs(2) && left > Duration::from_secs(1));
/// # });
/// ```
#[derive(Debug, Clone, Default)]
pub struct PropagateDeadlineLayer {
    _private: (),
}

impl PropagateDeadlineLayer {
    /// The layer.
    ///
    /// ```
    /// let layer = ctxcore::http::PropagateDeadlineLayer::new();
    /// # let _ = layer;
    /// ```
    pub fn new() -> PropagateDeadlineLayer {
        PropagateDeadlineLayer::default()
    }
}

impl<S> Layer<S> for PropagateDeadlineLayer {
    type Service = PropagateDeadline<S>;

    fn layer(&self, inner: S) -> PropagateDeadline<S> {
        PropagateDeadline { inner }
    }
}

/// The service of [`PropagateDeadlineLayer`].
///
/// ```
/// use tower_layer::Layer;
/// let svc = ctxcore::http::PropagateDeadlineLayer::new()
///     .layer(tower::service_fn(|_req: http::Request<()>| async { Ok::<_, std::io::Error>(()) }));
/// # let _ = svc;
/// ```
#[derive(Debug, Clone)]
pub struct PropagateDeadline<S> {
    inner: S,
}

/// Sets the request's headers from `ctx`: `grpc-timeout` to the time left (unless the
/// request already names an earlier one), `baggage` when the request has none.
fn write_headers<B>(ctx: &Context, req: &mut Request<B>) {
    let headers = req.headers_mut();
    if let Some(deadline) = ctx.deadline() {
        let left = deadline.saturating_duration_since(ctx.clock_now());
        let earlier = headers
            .get(&grpc_timeout::NAME)
            .and_then(grpc_timeout::parse)
            .is_some_and(|asked| asked <= left);
        if !earlier {
            headers.insert(grpc_timeout::NAME.clone(), grpc_timeout::encode(left));
        }
    }
    if !headers.contains_key(&super::baggage::NAME) {
        if let Some(value) = ctx.value::<Baggage>().and_then(Baggage::to_header_value) {
            headers.insert(super::baggage::NAME.clone(), value);
        }
    }
}

impl<S, B> Service<Request<B>> for PropagateDeadline<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = CallFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> CallFuture<S::Future> {
        let Some(ctx) = req.extensions().get::<Context>().cloned() else {
            return CallFuture::new(Some(self.inner.call(req)), None);
        };
        if ctx.is_done() {
            return CallFuture::new(None, Some(ctx));
        }
        write_headers(&ctx, &mut req);
        CallFuture::new(Some(self.inner.call(req)), Some(ctx))
    }
}

pin_project_lite::pin_project! {
    /// The future of [`PropagateDeadline`]: the call, raced against its context.
    pub struct CallFuture<F> {
        #[pin]
        inner: Option<F>,
        ctx: Option<Context>,
        // Created on the first `Pending`: a call that answers at once registers no waiter.
        done: Option<DoneOwned>,
    }
}

impl<F> CallFuture<F> {
    fn new(inner: Option<F>, ctx: Option<Context>) -> CallFuture<F> {
        CallFuture {
            inner,
            ctx,
            done: None,
        }
    }
}

impl<F> std::fmt::Debug for CallFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallFuture")
            .field("ctx", &self.ctx)
            .finish_non_exhaustive()
    }
}

impl<F, T, E> Future for CallFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(err) = this.ctx.as_ref().and_then(Context::err) {
            this.inner.set(None);
            return Poll::Ready(Err(Box::new(err)));
        }
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            panic!("CallFuture polled after completion");
        };
        if let Poll::Ready(out) = inner.poll(cx) {
            this.inner.set(None);
            return Poll::Ready(out.map_err(Into::into));
        }
        if let Some(ctx) = this.ctx.as_ref() {
            let done = this.done.get_or_insert_with(|| ctx.done_owned());
            if Pin::new(done).poll(cx).is_ready() {
                this.inner.set(None);
                let err = ctx.err().unwrap_or(crate::Error::Canceled);
                return Poll::Ready(Err(Box::new(err)));
            }
        }
        Poll::Pending
    }
}

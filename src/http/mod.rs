//! Contexts for HTTP servers and clients built on `http` and tower (hyper, axum, tonic), as
//! Go's `net/http` and grpc-go give them. Behind the cargo feature `http` (and `axum` for the
//! [`Ctx`] extractor).
//!
//! - Server side, [`RequestContextLayer`]: each request gets a child of the server's root
//!   in its extensions. Its deadline is the earliest of the root's, `now + grpc-timeout`
//!   (when the request carries a valid `grpc-timeout`), `now + default_timeout` (when it
//!   carries none) and `now + max_timeout`; a malformed header counts as absent. Its
//!   [`Baggage`] comes from the `baggage` header. It is done when the response body has
//!   been sent (or dropped), when the client goes away (cause [`ClientGone`]), at its
//!   deadline (then the handler is dropped and the answer is 504, or gRPC
//!   `DEADLINE_EXCEEDED`), or when the root is cancelled. A request dropped unanswered at
//!   or after its deadline (an outer timeout such as tonic's own `grpc-timeout` handling
//!   got there first) ends with `DeadlineExceeded`, not [`ClientGone`].
//! - On tonic, add the layer with `Server::builder().layer(..)`; a handler finds the
//!   context with `request.extensions().get::<Context>()`.
//! - Client side, [`PropagateDeadlineLayer`]: an outgoing request carrying a `Context` in
//!   its extensions is sent with `grpc-timeout` set to the time left and with the context's
//!   baggage, is not sent if the context is already done, and is dropped with the context's
//!   [`Error`](crate::Error) as soon as it is.
//! - [`grpc_timeout`]: the gRPC timeout header, parsed and encoded.
//!
//! ```
//! use ctxcore::http::RequestContextLayer;
//! use ctxcore::Context;
//! use std::time::Duration;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let root = Context::background(); // in a server: `ctxcore::signal::notify(..)`
//! let mut service = ServiceBuilder::new()
//!     .layer(RequestContextLayer::new(&root).default_timeout(Duration::from_secs(30)))
//!     .service_fn(|req: http::Request<String>| async move {
//!         let ctx = req.extensions().get::<Context>().unwrap();
//!         let left = ctx.deadline().unwrap() - std::time::Instant::now();
//!         Ok::<_, std::convert::Infallible>(http::Response::new(format!("{}s left", left.as_secs())))
//!     });
//! let req = http::Request::builder().header("grpc-timeout", "5S").body(String::new()).unwrap();
//! let res = service.ready().await.unwrap().call(req).await.unwrap();
//! assert_eq!(res.status(), 200);
//! # });
//! ```

mod baggage;
mod body;
mod client;
#[cfg(feature = "axum")]
mod extract;
pub mod grpc_timeout;
mod server;

pub use baggage::Baggage;
pub use body::ContextBody;
pub use client::{BoxError, CallFuture, PropagateDeadline, PropagateDeadlineLayer};
#[cfg(feature = "axum")]
pub use extract::Ctx;
pub use server::{RequestContext, RequestContextLayer, ResponseFuture};

use std::fmt;

/// The cause of a request's context when the client went away before the response was
/// over: the service future or the response body was dropped before the end.
///
/// ```
/// use ctxcore::http::ClientGone;
/// let cause: ctxcore::Cause = std::sync::Arc::new(ClientGone);
/// assert!(cause.downcast_ref::<ClientGone>().is_some());
/// assert_eq!(ClientGone.to_string(), "client went away");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ClientGone;

impl fmt::Display for ClientGone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("client went away")
    }
}

impl std::error::Error for ClientGone {}

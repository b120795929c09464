//! The axum extractor: a handler takes its request's context as an argument.

use crate::Context;
use axum_core::extract::FromRequestParts;
use http::request::Parts;
use http::StatusCode;

/// The request's [`Context`], for axum handlers, put there by
/// [`RequestContextLayer`](super::RequestContextLayer). Without the layer, the request is
/// rejected with 500 and a message naming the missing layer.
///
/// ```
/// use axum::{routing::get, Router};
/// use ctxcore::http::{Ctx, RequestContextLayer};
/// use ctxcore::Context;
/// use std::time::Duration;
///
/// async fn slow(Ctx(ctx): Ctx) -> &'static str {
///     match ctx.run(tokio::time::sleep(Duration::from_secs(1))).await {
///         Ok(()) => "done\n",
///         Err(_) => "gave up\n",
///     }
/// }
/// let root = Context::background();
/// let app: Router = Router::new()
///     .route("/slow", get(slow))
///     .layer(RequestContextLayer::new(&root).default_timeout(Duration::from_secs(5)));
/// # let _ = app;
/// ```
#[derive(Debug, Clone)]
pub struct Ctx(pub Context);

impl std::ops::Deref for Ctx {
    type Target = Context;

    fn deref(&self) -> &Context {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Ctx, Self::Rejection> {
        match parts.extensions.get::<Context>() {
            Some(ctx) => Ok(Ctx(ctx.clone())),
            None => Err((
                StatusCode::INTERNAL_SERVER_ERROR,
                "no request context: add ctxcore::http::RequestContextLayer\n",
            )),
        }
    }
}

//! The two reasons a context can be done, and the causes that go with them.

use std::fmt;
use std::sync::{Arc, OnceLock};

/// Why a context is done: Go's `context.Canceled` and `context.DeadlineExceeded`.
///
/// `Error` is what [`Context::err`](crate::Context::err) and
/// [`Context::check`](crate::Context::check) return. It is `Copy`, so checking in a loop
/// costs nothing.
///
/// ```
/// use ctxcore::{Context, Error};
///
/// let (ctx, handle) = Context::background().with_cancel();
/// handle.cancel();
/// assert_eq!(ctx.err(), Some(Error::Canceled));
/// assert_eq!(Error::Canceled.to_string(), "context canceled");
/// assert!(Error::DeadlineExceeded.is_timeout());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// The context was cancelled: by its [`CancelHandle`](crate::CancelHandle), by dropping
    /// that handle, or by an ancestor.
    Canceled,
    /// The context's deadline passed.
    DeadlineExceeded,
}

impl Error {
    /// True only for [`Error::DeadlineExceeded`], like Go's `Timeout()`.
    ///
    /// ```
    /// assert!(!ctxcore::Error::Canceled.is_timeout());
    /// ```
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::DeadlineExceeded)
    }

    /// The shared cause object for this reason (no allocation after the first call).
    pub(crate) fn as_cause(self) -> Cause {
        static CANCELED: OnceLock<Cause> = OnceLock::new();
        static DEADLINE: OnceLock<Cause> = OnceLock::new();
        let cell = match self {
            Error::Canceled => &CANCELED,
            Error::DeadlineExceeded => &DEADLINE,
        };
        cell.get_or_init(|| Arc::new(self)).clone()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Canceled => "context canceled",
            Error::DeadlineExceeded => "context deadline exceeded",
        })
    }
}

impl std::error::Error for Error {}

/// A cancellation cause as [`Context::cause`](crate::Context::cause) hands it out.
///
/// ```
/// use ctxcore::{Cause, Context};
/// let (ctx, handle) = Context::background().with_cancel();
/// handle.cancel_with_cause(std::io::Error::other("disk full"));
/// let cause: Cause = ctx.cause().unwrap();
/// assert_eq!(cause.downcast_ref::<std::io::Error>().unwrap().to_string(), "disk full");
/// ```
pub type Cause = Arc<dyn std::error::Error + Send + Sync + 'static>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_match_go() {
        assert_eq!(Error::Canceled.to_string(), "context canceled");
        assert_eq!(
            Error::DeadlineExceeded.to_string(),
            "context deadline exceeded"
        );
    }

    #[test]
    fn static_causes_downcast_to_their_error() {
        let c = Error::DeadlineExceeded.as_cause();
        assert_eq!(c.downcast_ref::<Error>(), Some(&Error::DeadlineExceeded));
        assert!(Arc::ptr_eq(&c, &Error::DeadlineExceeded.as_cause()));
    }
}

//! What a group hands back: [`GroupError`], and the causes it cancels its context with
//! ([`TaskFailed`], [`TaskPanicked`]).

use std::any::Any;
use std::error::Error as StdError;
use std::fmt;

/// The first failure of a [`Group`](super::Group), as returned by
/// [`Group::wait`](super::Group::wait).
///
/// `Display` shows a task error as the error itself (like Go's `errgroup`, which returns the
/// task's error unchanged) and a panic as `a group task panicked: <message>`.
///
/// ```
/// use ctxcore::group::GroupError;
///
/// let err: GroupError<String> = GroupError::Task("disk full".to_string());
/// assert_eq!(err.to_string(), "disk full");
/// let err: GroupError<String> = GroupError::Panicked("index out of bounds".to_string());
/// assert_eq!(err.to_string(), "a group task panicked: index out of bounds");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupError<E> {
    /// A task returned `Err(e)`; this is `e`, unchanged.
    Task(E),
    /// A task panicked; this is the panic message. Also a task that could not run to its end
    /// for another reason: its thread could not be started, or its runtime dropped it.
    Panicked(String),
}

impl<E> GroupError<E> {
    /// The task's error, if the failure was an error rather than a panic.
    ///
    /// ```
    /// use ctxcore::group::GroupError;
    ///
    /// assert_eq!(GroupError::Task(7).into_task(), Some(7));
    /// assert_eq!(GroupError::<i32>::Panicked("boom".into()).into_task(), None);
    /// ```
    pub fn into_task(self) -> Option<E> {
        match self {
            GroupError::Task(e) => Some(e),
            GroupError::Panicked(_) => None,
        }
    }

    /// Whether the failure was a panic.
    ///
    /// ```
    /// use ctxcore::group::GroupError;
    ///
    /// assert!(GroupError::<()>::Panicked("boom".into()).is_panic());
    /// assert!(!GroupError::Task(()).is_panic());
    /// ```
    pub fn is_panic(&self) -> bool {
        matches!(self, GroupError::Panicked(_))
    }
}

impl<E: fmt::Display> fmt::Display for GroupError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupError::Task(e) => e.fmt(f),
            GroupError::Panicked(message) => write!(f, "a group task panicked: {message}"),
        }
    }
}

impl<E: StdError + 'static> StdError for GroupError<E> {
    /// Transparent for a task error (its own source), none for a panic.
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            GroupError::Task(e) => e.source(),
            GroupError::Panicked(_) => None,
        }
    }
}

/// The cause of a group context cancelled by a task error.
///
/// It is opaque on purpose: the task's error type need not be `std::error::Error`, `Sync` or
/// `Clone`, and [`Group::wait`](super::Group::wait) hands the error itself back.
///
/// ```
/// use ctxcore::group::{Group, TaskFailed};
/// use ctxcore::Context;
///
/// let (group, ctx) = Group::<&str>::with_context(&Context::background());
/// group.spawn(|_| Err("no"));
/// ctx.wait();
/// assert!(ctx.cause().unwrap().downcast_ref::<TaskFailed>().is_some());
/// assert_eq!(ctx.cause().unwrap().to_string(), "a group task failed");
/// assert_eq!(group.wait().unwrap_err().into_task(), Some("no"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TaskFailed;

impl fmt::Display for TaskFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a group task failed")
    }
}

impl StdError for TaskFailed {}

/// The cause of a group context cancelled by a task's panic; its text holds the panic message.
///
/// ```
/// use ctxcore::group::{Group, TaskPanicked};
/// use ctxcore::Context;
///
/// let (group, ctx) = Group::<()>::with_context(&Context::background());
/// group.spawn(|_| panic!("out of cheese"));
/// ctx.wait();
/// let cause = ctx.cause().unwrap();
/// assert_eq!(cause.downcast_ref::<TaskPanicked>().unwrap().message(), "out of cheese");
/// assert_eq!(cause.to_string(), "a group task panicked: out of cheese");
/// assert!(group.wait().unwrap_err().is_panic());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskPanicked {
    message: String,
}

impl TaskPanicked {
    pub(crate) fn new(message: String) -> TaskPanicked {
        TaskPanicked { message }
    }

    /// The panic message.
    ///
    /// ```
    /// # use ctxcore::group::{Group, TaskPanicked};
    /// # use ctxcore::Context;
    /// let (group, ctx) = Group::<()>::with_context(&Context::background());
    /// group.spawn(|_| panic!("at {}", 42));
    /// ctx.wait();
    /// let cause = ctx.cause().unwrap();
    /// assert_eq!(cause.downcast_ref::<TaskPanicked>().unwrap().message(), "at 42");
    /// # let _ = group.wait();
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for TaskPanicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a group task panicked: {}", self.message)
    }
}

impl StdError for TaskPanicked {}

/// The text of a panic payload: the `&str` or `String` given to `panic!`, or a placeholder.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a payload that is not a string".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_message_reads_str_string_and_other_payloads() {
        let p = std::panic::catch_unwind(|| panic!("plain")).unwrap_err();
        assert_eq!(panic_message(&*p), "plain");
        let p = std::panic::catch_unwind(|| panic!("formatted {}", 1)).unwrap_err();
        assert_eq!(panic_message(&*p), "formatted 1");
        let p = std::panic::catch_unwind(|| std::panic::panic_any(5_u8)).unwrap_err();
        assert_eq!(
            panic_message(&*p),
            "a panic with a payload that is not a string"
        );
    }

    #[test]
    fn group_error_source_is_transparent() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("outer")
            }
        }
        impl StdError for Outer {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let e = GroupError::Task(Outer(std::io::Error::other("inner")));
        assert_eq!(e.to_string(), "outer");
        assert_eq!(e.source().unwrap().to_string(), "inner");
        assert!(GroupError::<Outer>::Panicked("x".into()).source().is_none());
    }
}

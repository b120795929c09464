//! Clocks: deadlines measured and fired by a clock of the user's choice, so that tests drive
//! time instead of waiting for it.
//!
//! A clock belongs to a tree: it is chosen at a root ([`Context::root`]) and inherited by
//! everything derived from it, at any depth and by any derivation (`with_value` and
//! `without_cancel` included). [`Context::background`] and [`Context::todo`] use
//! [`Clock::system`].
//!
//! - [`Clock::system`]: `std::time::Instant`, fired by the crate's timer thread.
//! - [`Clock::manual`]: stands still until [`advance`](Clock::advance) or
//!   [`advance_to`](Clock::advance_to) moves it; an advance fires every deadline it reaches
//!   before it returns, in deadline order, on the advancing thread.
//! - `Clock::tokio` (feature `tokio`): the time of the runtime current at the call, fired
//!   through that runtime's timer, so `tokio::time::pause()` and `advance` drive it.
//!
//! ```
//! use ctxcore::{clock::Clock, Context, Error};
//! use std::time::Duration;
//!
//! let clock = Clock::manual();
//! let root = Context::root(&clock);
//! let (ctx, _cancel) = root.with_timeout(Duration::from_secs(5));
//! assert_eq!(ctx.deadline(), Some(clock.now() + Duration::from_secs(5)));
//! clock.advance(Duration::from_secs(4));
//! assert!(!ctx.is_done());
//! clock.advance(Duration::from_secs(1)); // fires on this thread, before it returns
//! assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
//! ```
//!
//! # How the clock is carried
//!
//! A `Context` stays two words and a node does not grow: the clock rides as a hidden entry
//! of the flat value table (`value.rs`) of the root's tree, a type no user can name. It is
//! read only where time is read: `with_timeout`, and `with_deadline` when it arms a timer
//! of its own. Under `background()` there is no table, so the system clock's paths are the
//! ones that existed before clocks (one check of a null pointer more). The cost: a root of
//! a manual or tokio clock takes one of the four value types that fit in a context's inline
//! table, and every armed entry of such a clock holds a count on its queue.
//!
//! # Firing, and callbacks that advance
//!
//! A manual or tokio clock keeps its pending deadlines in one ordered queue behind a lock
//! (`queue.rs`); an advance pops what is due, one at a time, and fires it with the lock
//! released. So an `after_func` callback run by `advance` may derive from the clock's
//! contexts (a deadline at or before the clock's time is born done), cancel them, or
//! advance the same clock: a nested advance fires what it reaches before it returns. Only a
//! top-level advance waits for deadlines that a concurrent advance on another thread is
//! still firing; a nested one does not (two nested advances could otherwise wait for each
//! other), so nothing deadlocks. A callback's panic does not stop an advance: every due
//! deadline still fires, then the first panic is re-raised by `advance` on its caller.
//!
//! A deadline and a cancel of the same context race as they do on any clock: whichever
//! makes the context done first wins, and its reason stands. If a `cancel()` on another
//! thread wins, its own walk makes the descendants done, and a concurrent `advance` does
//! not wait for that walk: such descendants are done once that `cancel()` has returned
//! (behaviour 2), perhaps just after the `advance` did.
//!
//! A manual clock's time saturates at the latest `Instant` the platform represents; a
//! `with_timeout` on a saturated clock means no deadline, as a too-large timeout does.
//!
//! # Memory
//!
//! A disarmed deadline context is freed at once on every clock, its queue entry with it
//! (behaviour 14). Each pending deadline holds its clock's queue, so a clock lives as long
//! as it has one. One case keeps memory that can never be used: a manual clock whose every
//! clone and every context is dropped while an `after_func` callback still waits on one of
//! its deadlines. Nobody can advance that clock any more, so the callback never runs and it
//! stays in memory with its context; stop the callback, or advance the clock past its
//! deadlines, before letting the clock go.

mod queue;
#[cfg(all(feature = "tokio", not(loom)))]
mod tokio_driver;

pub(crate) use queue::Queue;

use crate::Context;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A source of time for deadlines: the system clock, a manual clock that tests advance, or
/// (feature `tokio`) a tokio runtime's clock. Clones share one time.
///
/// ```
/// use ctxcore::clock::Clock;
/// use std::time::Duration;
///
/// let clock = Clock::manual();
/// let t0 = clock.now();
/// clock.advance(Duration::from_millis(250));
/// assert_eq!(clock.clone().now(), t0 + Duration::from_millis(250));
/// ```
#[derive(Clone)]
pub struct Clock {
    /// `None`: the system clock.
    queue: Option<Arc<Queue>>,
}

impl Clock {
    /// `std::time::Instant` and the crate's timer thread: the clock of
    /// [`Context::background`]. Allocates nothing.
    pub fn system() -> Clock {
        Clock { queue: None }
    }

    /// A clock that stands still, from `Instant::now()` at creation, until
    /// [`advance`](Clock::advance) or [`advance_to`](Clock::advance_to) moves it. No real
    /// time passing ever fires one of its deadlines.
    pub fn manual() -> Clock {
        Clock {
            queue: Some(Arc::new(Queue::manual(Instant::now()))),
        }
    }

    /// The clock of the tokio runtime current at this call, whichever thread later reads it
    /// or arms a deadline on it: it reads that runtime's `tokio::time::Instant::now()` and
    /// fires deadlines through that runtime's timer (one driver task), so on a paused
    /// runtime auto-advance and `tokio::time::advance` reach them (pausing needs tokio's
    /// `test-util` feature in your own dependencies). Once the runtime has shut down, the
    /// clock's pending deadlines never fire; cancellation works as before.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, or on a runtime built without its time driver, as tokio's
    /// own timers do.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use ctxcore::{clock::Clock, Context};
    /// use std::time::{Duration, Instant};
    ///
    /// let real = Instant::now();
    /// let root = Context::root(&Clock::tokio());
    /// let (ctx, _cancel) = root.with_timeout(Duration::from_secs(3600));
    /// ctx.done().await; // the paused runtime jumps to the deadline
    /// assert!(ctx.err().unwrap().is_timeout());
    /// assert!(real.elapsed() < Duration::from_secs(60));
    /// # }
    /// ```
    #[cfg(all(feature = "tokio", not(loom)))]
    pub fn tokio() -> Clock {
        let driver = tokio_driver::Driver::current();
        let queue = Arc::new(Queue::tokio(driver.now(), driver));
        if let Some(d) = queue.tokio_driver() {
            d.spawn(&queue);
        }
        Clock { queue: Some(queue) }
    }

    /// This clock's time, as a std `Instant` in its own timeline (deadlines of its contexts
    /// are in the same timeline).
    pub fn now(&self) -> Instant {
        now_on(self.queue.as_ref())
    }

    /// Moves a manual clock forward by `by` (saturating at the latest representable
    /// `Instant`), then fires every deadline of the clock at or before the new time, in
    /// deadline order, on this thread, before returning: contexts done with
    /// `DeadlineExceeded`, their waiters woken, their `after_func` callbacks run. If a
    /// callback panicked, the first panic is re-raised here once everything due has fired.
    ///
    /// # Panics
    ///
    /// On a system or tokio clock (their time is not this crate's to move).
    ///
    /// ```
    /// use ctxcore::{clock::Clock, Context};
    /// use std::time::Duration;
    ///
    /// let clock = Clock::manual();
    /// let (ctx, _h) = Context::root(&clock).with_timeout(Duration::from_millis(10));
    /// clock.advance(Duration::MAX); // saturates, never overflows
    /// assert!(ctx.is_done());
    /// ```
    pub fn advance(&self, by: Duration) {
        let q = self.manual_queue("advance");
        let reached = q.move_by(by);
        fire_to(q, reached);
    }

    /// Moves a manual clock forward to `to` (no move if `to` is not later than
    /// [`now`](Clock::now)), then fires what is due as [`advance`](Clock::advance) does.
    ///
    /// # Panics
    ///
    /// On a system or tokio clock.
    pub fn advance_to(&self, to: Instant) {
        let q = self.manual_queue("advance_to");
        let reached = q.move_to(to);
        fire_to(q, reached);
    }

    fn manual_queue(&self, what: &str) -> &Queue {
        match &self.queue {
            Some(q) if q.is_manual() => q,
            _ => panic!(
                "ctxcore::clock::Clock::{what} works on manual clocks only (Clock::manual()); \
                 this is a {} clock, whose time moves by itself",
                self.kind()
            ),
        }
    }

    fn kind(&self) -> &'static str {
        match &self.queue {
            None => "system",
            Some(q) if q.is_manual() => "manual",
            Some(_) => "tokio",
        }
    }
}

impl Default for Clock {
    /// [`Clock::system`].
    fn default() -> Self {
        Clock::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.queue {
            None => f.write_str("Clock::system()"),
            Some(q) => f
                .debug_struct("Clock")
                .field("kind", &self.kind())
                .field("now", &q.now_of_clock())
                .field("queue", q)
                .finish(),
        }
    }
}

/// The second half of an advance: fires what is due at `reached`, waits for what other
/// threads still fire of it, then re-raises the first callback panic.
fn fire_to(q: &Queue, reached: Instant) {
    let panic = q.fire_due(reached);
    q.wait_in_flight(reached);
    if let Some(p) = panic {
        std::panic::resume_unwind(p);
    }
}

/// The hidden value that carries a tree's clock in its value table (module docs).
pub(crate) struct ClockSlot(pub(crate) Arc<Queue>);

impl Context {
    /// A root like [`background`](Context::background) (never done, no deadline, no
    /// values) whose tree measures and fires its deadlines with `clock`: everything derived
    /// from it, at any depth and by any derivation, uses `clock`. One allocation for a
    /// manual or tokio clock; `Context::root(&Clock::system())` is `background()`.
    ///
    /// ```
    /// use ctxcore::{clock::Clock, Context};
    /// use std::time::Duration;
    ///
    /// let clock = Clock::manual();
    /// let root = Context::root(&clock);
    /// let (ctx, _h) = root.with_value(7u8).without_cancel().with_timeout(Duration::ZERO);
    /// assert!(ctx.is_done()); // a deadline at the clock's time is born done
    /// assert!(!root.is_done() && root.deadline().is_none());
    /// ```
    pub fn root(clock: &Clock) -> Context {
        match &clock.queue {
            None => Context::background(),
            Some(q) => Context::with_clock_slot(ClockSlot(q.clone())),
        }
    }

    /// The clock of this context's tree: [`Clock::system`] under `background()` and
    /// `todo()`. Shares the time of the clock given to [`Context::root`].
    ///
    /// ```
    /// use ctxcore::{clock::Clock, Context};
    /// use std::time::Duration;
    ///
    /// let clock = Clock::manual();
    /// let (ctx, _h) = Context::root(&clock).with_cancel();
    /// ctx.clock().advance(Duration::from_secs(1));
    /// assert_eq!(ctx.clock().now(), clock.now());
    /// ```
    pub fn clock(&self) -> Clock {
        Clock {
            queue: self.clock_queue().cloned(),
        }
    }
}

/// The time of the clock whose queue is `queue` (`None`: the system clock).
#[inline]
pub(crate) fn now_on(queue: Option<&Arc<Queue>>) -> Instant {
    match queue {
        None => Instant::now(),
        Some(q) => q.now_of_clock(),
    }
}

/// `t + by`, or the latest `Instant` the platform represents if that overflows.
pub(crate) fn saturating_add(t: Instant, by: Duration) -> Instant {
    if let Some(r) = t.checked_add(by) {
        return r;
    }
    // The largest representable step from `t`, by bisection on nanoseconds (about 100
    // `checked_add`s, only on overflow).
    let (mut lo, mut hi) = (0u128, by.as_nanos());
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if t.checked_add(from_nanos(mid)).is_some() {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    t + from_nanos(lo)
}

fn from_nanos(n: u128) -> Duration {
    const NANOS: u128 = 1_000_000_000;
    Duration::new((n / NANOS) as u64, (n % NANOS) as u32)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn saturating_add_reaches_the_last_instant() {
        let t = Instant::now();
        let last = saturating_add(t, Duration::MAX);
        assert!(last > t);
        assert!(last.checked_add(Duration::from_nanos(1)).is_none());
        assert_eq!(saturating_add(last, Duration::from_secs(1)), last);
        assert_eq!(
            saturating_add(t, Duration::from_secs(1)),
            t + Duration::from_secs(1)
        );
    }

    #[test]
    fn advance_on_a_system_clock_panics_with_a_message() {
        let r = std::panic::catch_unwind(|| Clock::system().advance(Duration::from_secs(1)));
        let msg = r.unwrap_err();
        let msg = msg.downcast_ref::<String>().unwrap();
        assert!(
            msg.contains("manual clocks only") && msg.contains("system"),
            "{msg}"
        );
    }
}

//! The driver of a tokio clock: one task on the captured runtime that sleeps with
//! `tokio::time::sleep_until` on the earliest pending deadline and fires what is due.
//!
//! Because it sleeps on the runtime's own timer, a paused runtime's auto-advance and
//! `tokio::time::advance` reach it: the deadlines of a tokio clock move with tokio's time.
//!
//! Lost wake-ups: an arm that becomes the earliest calls [`Driver::wake`]
//! (`Notify::notify_one`), which leaves a permit when the task is not waiting yet; the task
//! reads the earliest deadline and then waits for `notified()` or its sleep, so an arm
//! between the two is seen at once.
//!
//! Lifetime: the task holds the queue weakly and never across an await, so it keeps no
//! clock alive. When the queue is dropped (every clone of the clock and every entry gone) it
//! wakes the task, which finds the queue gone and ends. When the runtime shuts down the task
//! is dropped and the clock's pending deadlines never fire (behaviour 29).

use super::queue::Queue;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Weak};
use std::task::Poll;
use std::time::Instant;
use tokio::runtime::Handle;
use tokio::sync::Notify;

/// The runtime a tokio clock belongs to, and how to wake its driver task.
#[derive(Debug)]
pub(crate) struct Driver {
    handle: Handle,
    notify: Arc<Notify>,
}

impl Driver {
    /// Captures the current runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, or on one built without its time driver (`enable_time`),
    /// with a message that says so.
    pub(crate) fn current() -> Driver {
        let handle = match Handle::try_current() {
            Ok(h) => h,
            Err(e) => panic!(
                "ctxcore::clock::Clock::tokio() must be called from the context of a tokio \
                 runtime (inside #[tokio::main], #[tokio::test] or Runtime::enter): {e}"
            ),
        };
        {
            // Creating a sleep panics, with tokio's own message, on a runtime whose timers
            // are disabled: better here than later inside the driver task.
            let _in = handle.enter();
            drop(tokio::time::sleep(std::time::Duration::ZERO));
        }
        Driver {
            handle,
            notify: Arc::new(Notify::new()),
        }
    }

    /// The runtime's time, as a std `Instant` in that runtime's timeline.
    pub(crate) fn now(&self) -> Instant {
        let _in = self.handle.enter();
        tokio::time::Instant::now().into_std()
    }

    /// Tells the task to look at the queue again.
    pub(crate) fn wake(&self) {
        self.notify.notify_one();
    }

    /// Starts the driver task of `queue` on the captured runtime.
    pub(crate) fn spawn(&self, queue: &Arc<Queue>) {
        let weak = Arc::downgrade(queue);
        let notify = self.notify.clone();
        drop(self.handle.spawn(drive(weak, notify)));
    }
}

/// The driver task.
async fn drive(queue: Weak<Queue>, notify: Arc<Notify>) {
    loop {
        let next = {
            let Some(q) = queue.upgrade() else { return };
            // A panicking `after_func` is reported by the panic hook and dropped, as on the
            // system clock's timer thread: the driver keeps firing.
            drop(q.fire_due(tokio::time::Instant::now().into_std()));
            q.earliest()
        };
        let mut notified = pin!(notify.notified());
        match next {
            None => notified.await,
            Some(at) => {
                let mut sleep = pin!(tokio::time::sleep_until(at.into()));
                std::future::poll_fn(|cx| {
                    if notified.as_mut().poll(cx).is_ready() || sleep.as_mut().poll(cx).is_ready() {
                        Poll::Ready(())
                    } else {
                        Poll::Pending
                    }
                })
                .await
            }
        }
    }
}

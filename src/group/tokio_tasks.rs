//! Async tasks of a [`Group`] on the current tokio runtime (feature `tokio`).
//!
//! An async task counts as active from `spawn_async` on, but takes a slot only once it starts:
//! `spawn_async` never blocks. At the limit the spawned tokio task first waits, asynchronously,
//! on the group's `Notify` until a slot frees (invariant 4), and only then calls `f`.

use super::{join_tasks, panic_message, Group, GroupError, Shared};
use crate::Context;
use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::task::AbortHandle;

/// The async part of the task table.
#[derive(Default)]
pub(super) struct AsyncTable {
    /// Async tasks accepted and not finished (part of `TaskTable::active`).
    pub(super) active: usize,
    /// To abort them on drop; finished ones are pruned now and then.
    aborts: Vec<AbortHandle>,
}

impl AsyncTable {
    fn push(&mut self, handle: AbortHandle) {
        if self.aborts.len() >= super::PRUNE_MIN && self.aborts.len() >= 2 * self.active {
            self.aborts.retain(|handle| !handle.is_finished());
        }
        self.aborts.push(handle);
    }
}

/// Finishes an async task when dropped: when it completes, and also when it is aborted or
/// dropped by its runtime.
struct AsyncTaskGuard<E> {
    shared: Arc<Shared<E>>,
    held_slot: bool,
    /// Set when the task's body has run to its end; a guard dropped without it belongs to a
    /// task that was cut short, which is a failure of the group.
    completed: bool,
}

impl<E> AsyncTaskGuard<E> {
    /// Marks the task's body as run to its end (read by `Drop`).
    fn complete(&mut self) {
        self.completed = true;
    }

    /// Waits, without blocking a thread, until the group has a free slot, and takes it.
    async fn take_slot(&mut self) {
        loop {
            let mut notified = pin!(self.shared.changed_async.notified());
            // Enabled before the check: a slot freed after the check wakes this future
            // (invariant 4), so no wakeup is lost between the check and the await.
            notified.as_mut().enable();
            {
                let mut table = self.shared.lock();
                if table.has_slot() {
                    table.running += 1;
                    self.held_slot = true;
                    return;
                }
            }
            notified.await;
        }
    }
}

impl<E> Drop for AsyncTaskGuard<E> {
    fn drop(&mut self) {
        if !self.completed {
            // Aborted by the group's `Drop` (the failure is then never read), or dropped by a
            // runtime that shut down before the task could finish.
            self.shared.record(GroupError::Panicked(
                "an async group task was dropped before it finished (its runtime shut down)"
                    .to_string(),
            ));
        }
        self.shared.finish(self.held_slot, true);
    }
}

/// Polls a future inside `catch_unwind`, turning a panic into `Err(payload)`.
struct CatchUnwind<F> {
    inner: Pin<Box<F>>,
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let inner = self.inner.as_mut();
        match catch_unwind(AssertUnwindSafe(move || inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}

impl<E: Send + 'static> Group<E> {
    /// Runs the future made by `f` as a task on the current tokio runtime, with a clone of the
    /// group's context (feature `tokio`).
    ///
    /// Never blocks: at the limit, the spawned task waits asynchronously for a slot before
    /// calling `f` (it already counts as active, so [`set_limit`](Group::set_limit) panics and
    /// `wait` waits for it). Errors and panics (in `f` or in the future) count as for
    /// [`spawn`](Group::spawn). Async tasks are aborted when the group is dropped without
    /// waiting. A task that its runtime drops before it finishes (the runtime shut down) fails
    /// the group with [`GroupError::Panicked`] saying so.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, or if the limit is 0.
    ///
    /// ```
    /// use ctxcore::group::{Group, GroupError};
    /// use ctxcore::Context;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let (group, ctx) = Group::<&str>::with_context(&Context::background());
    /// group.spawn_async(|ctx| async move {
    ///     ctx.done().await; // cancelled by the sibling's error
    ///     Ok(())
    /// });
    /// group.spawn_async(|_| async { Err("failed") });
    /// assert_eq!(group.wait_async().await, Err(GroupError::Task("failed")));
    /// assert!(ctx.is_done());
    /// # });
    /// ```
    pub fn spawn_async<F, Fut>(&self, f: F)
    where
        F: FnOnce(Context) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
    {
        let Ok(runtime) = Handle::try_current() else {
            panic!("ctxcore::group::Group::spawn_async must be called within a tokio runtime");
        };
        let mut table = self.shared.lock();
        if table.limit == Some(0) {
            drop(table);
            panic!(
                "ctxcore::group::Group::spawn_async: the group's limit is 0, so the task could \
                 never run (set a limit of at least 1)"
            );
        }
        table.active += 1;
        table.asyncs.active += 1;
        // Released before spawning: on a runtime that is shutting down, `spawn` drops the
        // future at once, and with it the guard, whose `finish` takes the mutex.
        drop(table);
        crate::live::group_task_started();
        let mut guard = AsyncTaskGuard {
            shared: Arc::clone(&self.shared),
            held_slot: false,
            completed: false,
        };
        let ctx = self.ctx.clone();
        let task = runtime.spawn(async move {
            guard.take_slot().await;
            let outcome = match catch_unwind(AssertUnwindSafe(move || f(ctx))) {
                Ok(fut) => {
                    CatchUnwind {
                        inner: Box::pin(fut),
                    }
                    .await
                }
                Err(payload) => Err(payload),
            };
            let failure = match outcome {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(GroupError::Task(e)),
                Err(payload) => Some(GroupError::Panicked(panic_message(&*payload))),
            };
            if let Some(failure) = failure {
                guard.shared.record(failure);
            }
            guard.complete();
            // `guard` drops here: the task counts as finished (invariant 3).
        });
        // `Drop` cannot run before this (it needs the group, which `&self` borrows).
        self.shared.lock().asyncs.push(task.abort_handle());
    }

    /// Waits, without blocking a thread, for every task (async and thread tasks) to finish,
    /// then cancels the group's context and returns the first failure, like
    /// [`wait`](Group::wait) (feature `tokio`).
    ///
    /// Threads of thread tasks are joined on tokio's blocking pool once their tasks are done.
    /// Dropping the returned future before it completes drops the group (see `Drop`).
    ///
    /// ```
    /// use ctxcore::group::Group;
    /// use ctxcore::Context;
    /// use std::time::Duration;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let (group, _ctx) = Group::<()>::with_context(&Context::background());
    /// group.set_limit(1);
    /// for _ in 0..3 {
    ///     group.spawn_async(|_| async {
    ///         tokio::time::sleep(Duration::from_millis(1)).await;
    ///         Ok(())
    ///     });
    /// }
    /// group.spawn(|_| Ok(())); // thread tasks are waited for too
    /// group.wait_async().await.unwrap();
    /// # });
    /// ```
    pub async fn wait_async(self) -> Result<(), GroupError<E>> {
        loop {
            let mut notified = pin!(self.shared.changed_async.notified());
            // Enabled before the check (invariant 4): no wakeup is lost.
            notified.as_mut().enable();
            let (active, threads) = {
                let mut table = self.shared.lock();
                let threads = if table.active == 0 {
                    std::mem::take(&mut table.threads)
                } else {
                    Vec::new()
                };
                (table.active, threads)
            };
            if active == 0 {
                if !threads.is_empty() {
                    // Their tasks are done; the threads may still be exiting.
                    let _ = tokio::task::spawn_blocking(move || {
                        for handle in threads {
                            let _ = handle.join();
                        }
                    })
                    .await;
                }
                break;
            }
            notified.await;
        }
        self.shared.cancel.cancel();
        let first = self.shared.lock().first.take();
        match first {
            Some(failure) => Err(failure),
            None => Ok(()),
        }
    }
}

/// `Drop` of a group with the `tokio` feature: aborts the async tasks, then joins everything
/// that can be joined from this thread without deadlocking a runtime.
pub(super) fn abort_and_join<E>(shared: &Shared<E>) {
    let aborts = std::mem::take(&mut shared.lock().asyncs.aborts);
    for handle in aborts {
        handle.abort();
    }
    match Handle::try_current() {
        // This thread drives the runtime: blocking it would keep the aborted tasks from ever
        // being dropped. They are released by the runtime's next turn instead.
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::CurrentThread => {
            join_tasks(shared, true)
        }
        // A worker of a multi-thread runtime hands its queue to another thread while blocked.
        Ok(_) => tokio::task::block_in_place(|| join_tasks(shared, false)),
        Err(_) => join_tasks(shared, false),
    }
}

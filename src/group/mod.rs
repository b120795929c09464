//! Structured concurrency on contexts: [`Group`], Go's `errgroup` for threads (and, with the
//! `tokio` feature, for futures).
//!
//! A group owns a child context and every task spawned on it. The first task that fails (an
//! `Err` or a panic) cancels the group's context, so its siblings, which all receive a clone of
//! that context, can stop early; [`Group::wait`] joins every task and returns that first failure.
//! Nothing a task does can outlive the group: dropping a group without `wait` cancels its context
//! and still joins its tasks.
//!
//! ```
//! use ctxcore::group::{Group, GroupError};
//! use ctxcore::Context;
//! use std::time::Duration;
//!
//! let (group, ctx) = Group::<String>::with_context(&Context::background());
//! for i in 0..4 {
//!     group.spawn(move |ctx| {
//!         if i == 2 {
//!             return Err(format!("task {i} failed"));
//!         }
//!         // The others work until the group is cancelled by task 2's error.
//!         while !ctx.wait_timeout(Duration::from_millis(5)) {}
//!         Ok(())
//!     });
//! }
//! assert_eq!(group.wait(), Err(GroupError::Task("task 2 failed".to_string())));
//! assert!(ctx.is_done());
//! ```
//!
//! # Internals
//!
//! A group is a [`CancelHandle`] for its context plus a small task table behind one `Mutex`
//! and `Condvar` (this is bookkeeping beside the contexts, not the lock-free cancellation core).
//! Invariants, kept under the mutex:
//!
//! 1. `running <= limit` (when a limit is set) and `running <= active`: `running` counts the
//!    tasks holding a slot, `active` every task accepted and not yet finished (an async task
//!    waiting for a slot is active but not running).
//! 2. `first` is written once, by the first failing task, before it cancels the context; later
//!    failures are dropped. The context is cancelled outside the mutex, because cancelling runs
//!    `after_func` callbacks that may use the group.
//! 3. Every accepted task decrements `active` exactly once, from a drop guard, so a task that
//!    panics, or an async task that is aborted, still counts as finished.
//! 4. Every condition a thread may block on (`running < limit`, `active == 0`) only changes
//!    under the mutex, and each change is followed by `notify_all`, so no waiter sleeps through
//!    the change it waits for. Async waiters use the same rule with a `tokio::sync::Notify`
//!    whose `Notified` future is enabled before the condition is checked.

mod error;
#[cfg(feature = "tokio")]
mod tokio_tasks;

pub use error::{GroupError, TaskFailed, TaskPanicked};

use crate::{CancelHandle, Context};
use error::panic_message;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};

/// An error group: tasks that share one context, where the first failure cancels the rest.
///
/// Made with [`Group::with_context`]; tasks start with [`spawn`](Group::spawn) (a thread each)
/// or [`try_spawn`](Group::try_spawn), optionally bounded by [`set_limit`](Group::set_limit);
/// [`wait`](Group::wait) joins them all and returns the first failure.
///
/// `Group<E>` is `Send + Sync`: share it (for example in an `Arc`, or by reference across
/// `std::thread::scope`) and spawn from several threads, or from a task, at once.
///
/// Dropping a group without calling `wait` cancels its context and then **blocks** until every
/// task has finished: no task outlives its group.
///
/// ```
/// use ctxcore::group::Group;
/// use ctxcore::Context;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
///
/// let total = Arc::new(AtomicUsize::new(0));
/// let (group, _ctx) = Group::<()>::with_context(&Context::background());
/// group.set_limit(2);
/// for i in 1..=10 {
///     let total = total.clone();
///     group.spawn(move |ctx| {
///         ctx.check().map_err(|_| ())?;
///         total.fetch_add(i, Ordering::Relaxed);
///         Ok(())
///     });
/// }
/// group.wait().unwrap();
/// assert_eq!(total.load(Ordering::Relaxed), 55);
/// ```
pub struct Group<E> {
    ctx: Context,
    shared: Arc<Shared<E>>,
}

/// What the group and its running tasks share.
struct Shared<E> {
    /// Cancels the group's context: first failure (with a cause), `wait`, or drop.
    cancel: CancelHandle,
    table: Mutex<TaskTable<E>>,
    /// Notified after every change of `running`, `active` or `limit` (invariant 4).
    changed: Condvar,
    #[cfg(feature = "tokio")]
    changed_async: tokio::sync::Notify,
}

/// The task table (invariant 1).
struct TaskTable<E> {
    /// `None`: no limit.
    limit: Option<usize>,
    running: usize,
    active: usize,
    /// The first failure (invariant 2).
    first: Option<GroupError<E>>,
    /// Threads of the thread tasks; finished ones are pruned now and then.
    threads: Vec<JoinHandle<()>>,
    /// Length of `threads` above which the next spawn prunes finished threads.
    prune_at: usize,
    #[cfg(feature = "tokio")]
    asyncs: tokio_tasks::AsyncTable,
}

const PRUNE_MIN: usize = 64;

impl<E> TaskTable<E> {
    fn has_slot(&self) -> bool {
        match self.limit {
            None => true,
            Some(limit) => self.running < limit,
        }
    }

    /// Joins the threads that have already finished, so a long-lived group does not keep one
    /// handle per task it ever ran.
    fn prune_threads(&mut self) {
        if self.threads.len() < self.prune_at {
            return;
        }
        let mut kept = Vec::with_capacity(self.threads.len());
        for handle in self.threads.drain(..) {
            if handle.is_finished() {
                // The task body has returned (its drop guard ran), so this join is immediate.
                let _ = handle.join();
            } else {
                kept.push(handle);
            }
        }
        self.threads = kept;
        self.prune_at = (self.threads.len() * 2).max(PRUNE_MIN);
    }
}

impl<E> Shared<E> {
    fn lock(&self) -> MutexGuard<'_, TaskTable<E>> {
        // No user code runs under this mutex, so poisoning can only come from an allocation
        // failure; the table is still consistent then.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn notify(&self) {
        self.changed.notify_all();
        #[cfg(feature = "tokio")]
        self.changed_async.notify_waiters();
    }

    /// Keeps the first failure and cancels the context with its cause (invariant 2).
    fn record(&self, failure: GroupError<E>) {
        let cause: Box<dyn std::error::Error + Send + Sync> = {
            let mut table = self.lock();
            if table.first.is_some() {
                return;
            }
            let cause: Box<dyn std::error::Error + Send + Sync> = match &failure {
                GroupError::Task(_) => Box::new(TaskFailed),
                GroupError::Panicked(message) => Box::new(TaskPanicked::new(message.clone())),
            };
            table.first = Some(failure);
            cause
        };
        self.cancel.cancel_with_cause(cause);
    }

    /// Marks one task finished (invariant 3): its slot, if it held one, is free again.
    fn finish(&self, held_slot: bool, is_async: bool) {
        // Count the task out of the leak counters before `wait` can see `active == 0`.
        crate::live::group_task_finished();
        let mut table = self.lock();
        if held_slot {
            table.running -= 1;
        }
        table.active -= 1;
        #[cfg(feature = "tokio")]
        if is_async {
            table.asyncs.active -= 1;
        }
        #[cfg(not(feature = "tokio"))]
        let _ = is_async;
        drop(table);
        self.notify();
    }
}

/// Finishes a thread task when dropped, even if the task panicked past `catch_unwind`.
struct ThreadTaskGuard<E> {
    shared: Arc<Shared<E>>,
}

impl<E> Drop for ThreadTaskGuard<E> {
    fn drop(&mut self) {
        self.shared.finish(true, false);
    }
}

impl<E: Send + 'static> Group<E> {
    /// A new group with no limit, and its context: a child of `parent`, cancelled by the first
    /// failing task, by [`wait`](Group::wait) returning, or by dropping the group.
    ///
    /// ```
    /// use ctxcore::group::Group;
    /// use ctxcore::Context;
    ///
    /// let (parent, cancel) = Context::background().with_cancel();
    /// let (group, ctx) = Group::<()>::with_context(&parent);
    /// assert!(!ctx.is_done());
    /// cancel.cancel(); // the group's context is a child of `parent`
    /// assert!(ctx.is_done());
    /// group.wait().unwrap();
    /// ```
    pub fn with_context(parent: &Context) -> (Group<E>, Context) {
        let (ctx, cancel) = parent.with_cancel();
        let shared = Arc::new(Shared {
            cancel,
            table: Mutex::new(TaskTable {
                limit: None,
                running: 0,
                active: 0,
                first: None,
                threads: Vec::new(),
                prune_at: PRUNE_MIN,
                #[cfg(feature = "tokio")]
                asyncs: tokio_tasks::AsyncTable::default(),
            }),
            changed: Condvar::new(),
            #[cfg(feature = "tokio")]
            changed_async: tokio::sync::Notify::new(),
        });
        (
            Group {
                ctx: ctx.clone(),
                shared,
            },
            ctx,
        )
    }

    /// Allows at most `n` tasks to run at once; `usize::MAX` means no practical limit.
    ///
    /// With a limit of 0 nothing can ever run: [`try_spawn`](Group::try_spawn) refuses and
    /// [`spawn`](Group::spawn) panics.
    ///
    /// # Panics
    ///
    /// If any task of the group is still active (running, or an async task waiting for a
    /// slot), as Go's `errgroup.SetLimit` does: the limit is set before the tasks it governs.
    ///
    /// ```
    /// use ctxcore::group::Group;
    /// use ctxcore::Context;
    ///
    /// let (group, _ctx) = Group::<()>::with_context(&Context::background());
    /// group.set_limit(1);
    /// let (release, gate) = std::sync::mpsc::channel::<()>();
    /// assert!(group.try_spawn(move |_| { let _ = gate.recv(); Ok(()) }));
    /// assert!(!group.try_spawn(|_| Ok(()))); // the one slot is taken
    /// release.send(()).unwrap();
    /// group.wait().unwrap();
    /// ```
    pub fn set_limit(&self, n: usize) {
        let mut table = self.shared.lock();
        if table.active != 0 {
            let active = table.active;
            drop(table);
            panic!(
                "ctxcore::group::Group::set_limit: cannot change the limit while {active} \
                 task(s) of the group are still active"
            );
        }
        table.limit = Some(n);
        drop(table);
        self.shared.notify();
    }

    /// Runs `f` on a new thread, with a clone of the group's context.
    ///
    /// Blocks while the group is at its limit, until a slot frees (in async code, use
    /// `spawn_async`, which never blocks). The task runs even if the
    /// group's context is already done (as in Go): tasks check their context. An `Err` or a
    /// panic from `f` cancels the group's context (see [`wait`](Group::wait)); a panic is
    /// caught on the task's thread and never reaches the caller. If the operating system
    /// refuses a new thread, `f` is dropped unrun and the group fails with
    /// [`GroupError::Panicked`] naming the reason.
    ///
    /// # Panics
    ///
    /// If the limit is 0: the task could never run.
    ///
    /// ```
    /// use ctxcore::group::Group;
    /// use ctxcore::Context;
    ///
    /// let (group, ctx) = Group::<std::io::Error>::with_context(&Context::background());
    /// group.spawn(|ctx| {
    ///     ctx.check().map_err(std::io::Error::other)?;
    ///     Ok(())
    /// });
    /// group.wait().unwrap();
    /// assert!(ctx.is_done()); // `wait` cancels the group's context when it returns
    /// ```
    pub fn spawn<F>(&self, f: F)
    where
        F: FnOnce(Context) -> Result<(), E> + Send + 'static,
    {
        let mut table = self.shared.lock();
        if table.limit == Some(0) {
            drop(table);
            panic!(
                "ctxcore::group::Group::spawn: the group's limit is 0, so the task could never \
                 run (set a limit of at least 1, or use try_spawn)"
            );
        }
        // Invariant 4: `running` only drops under the mutex, followed by `notify_all`.
        while !table.has_slot() {
            table = self
                .shared
                .changed
                .wait(table)
                .unwrap_or_else(PoisonError::into_inner);
        }
        self.start_thread(table, f);
    }

    /// Runs `f` on a new thread like [`spawn`](Group::spawn) if a slot is free now; otherwise
    /// returns `false` at once and drops `f` unrun. Always `false` with a limit of 0.
    ///
    /// ```
    /// use ctxcore::group::Group;
    /// use ctxcore::Context;
    ///
    /// let (group, _ctx) = Group::<()>::with_context(&Context::background());
    /// group.set_limit(0);
    /// assert!(!group.try_spawn(|_| Ok(())));
    /// group.wait().unwrap();
    /// ```
    pub fn try_spawn<F>(&self, f: F) -> bool
    where
        F: FnOnce(Context) -> Result<(), E> + Send + 'static,
    {
        let table = self.shared.lock();
        if !table.has_slot() {
            drop(table);
            // `f` is dropped here, outside the mutex: its captures may use the group.
            drop(f);
            return false;
        }
        self.start_thread(table, f);
        true
    }

    /// Takes a slot and starts the thread; the caller checked that a slot is free.
    fn start_thread<F>(&self, mut table: MutexGuard<'_, TaskTable<E>>, f: F)
    where
        F: FnOnce(Context) -> Result<(), E> + Send + 'static,
    {
        table.running += 1;
        table.active += 1;
        table.prune_threads();
        // Released before the thread starts: if the OS refuses the thread, `spawn` drops the
        // closure, and with it the guard, whose `finish` takes the mutex.
        drop(table);
        crate::live::group_task_started();
        let guard = ThreadTaskGuard {
            shared: Arc::clone(&self.shared),
        };
        let ctx = self.ctx.clone();
        let builder = thread::Builder::new().name("ctxcore-group-task".into());
        #[cfg(test)]
        let builder = match tests::FORCED_STACK_SIZE.with(std::cell::Cell::get) {
            Some(size) => builder.stack_size(size),
            None => builder,
        };
        let spawned = builder.spawn(move || {
            let guard = guard;
            let failure = match catch_unwind(AssertUnwindSafe(move || f(ctx))) {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(GroupError::Task(e)),
                Err(payload) => Some(GroupError::Panicked(panic_message(&*payload))),
            };
            if let Some(failure) = failure {
                guard.shared.record(failure);
            }
            // `guard` drops here: the task counts as finished (invariant 3).
        });
        match spawned {
            // Pushed after the thread started: `wait` and `drop` cannot run meanwhile (they
            // need the group itself, which `&self` borrows), and until the task finishes
            // `active` counts it anyway.
            Ok(handle) => self.shared.lock().threads.push(handle),
            // The task already counts as finished (its guard was dropped with the closure).
            Err(e) => self.shared.record(GroupError::Panicked(format!(
                "could not start a thread for a group task: {e}"
            ))),
        }
    }

    /// Waits for every task to finish, cancels the group's context, and returns the first
    /// failure: `Err(GroupError::Task(e))` for the first `Err(e)`, `Err(GroupError::Panicked)`
    /// with the message for the first panic, `Ok(())` if none failed.
    ///
    /// The context is cancelled by the first failure (cause [`TaskFailed`] or
    /// [`TaskPanicked`]), or else when `wait` returns (plain [`Error::Canceled`](crate::Error)).
    /// Call it from a thread, not from inside an async task (use `wait_async` there).
    ///
    /// ```
    /// use ctxcore::group::{Group, GroupError};
    /// use ctxcore::Context;
    ///
    /// let (group, ctx) = Group::<i32>::with_context(&Context::background());
    /// group.spawn(|_| Err(1));
    /// group.spawn(|ctx| {
    ///     ctx.wait(); // cancelled by the first task's error
    ///     Err(2)
    /// });
    /// assert_eq!(group.wait(), Err(GroupError::Task(1)));
    /// assert_eq!(ctx.err(), Some(ctxcore::Error::Canceled));
    /// ```
    pub fn wait(self) -> Result<(), GroupError<E>> {
        join_tasks(&self.shared, false);
        self.shared.cancel.cancel();
        let first = self.shared.lock().first.take();
        match first {
            Some(failure) => Err(failure),
            None => Ok(()),
        }
    }
}

impl<E> fmt::Debug for Group<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let table = self.shared.lock();
        f.debug_struct("Group")
            .field("limit", &table.limit)
            .field("running", &table.running)
            .field("active", &table.active)
            .field("failed", &table.first.is_some())
            .field("ctx", &self.ctx)
            .finish()
    }
}

impl<E> Drop for Group<E> {
    /// Cancels the group's context, then blocks until every task has finished.
    ///
    /// Async tasks are aborted first (a task at an `.await` stops there). Inside a
    /// current-thread tokio runtime, which cannot run them while this thread blocks, the
    /// aborted async tasks are released by the runtime's next turn instead of being waited for.
    /// Outside any runtime, the drop waits for the aborted tasks to be released, which needs
    /// their runtime to be running: prefer `wait_async` for async tasks.
    fn drop(&mut self) {
        self.shared.cancel.cancel();
        #[cfg(feature = "tokio")]
        tokio_tasks::abort_and_join(&self.shared);
        #[cfg(not(feature = "tokio"))]
        join_tasks(&self.shared, false);
    }
}

/// Joins every task thread and waits until no task is active.
///
/// A task's own thread is never joined by itself (a task may drop the last `Arc` of its group):
/// called from a task, this waits for every task but that one. With `skip_async`, async tasks
/// are not waited for (they were aborted; see `Drop`).
fn join_tasks<E>(shared: &Shared<E>, skip_async: bool) {
    let me = thread::current().id();
    let mut own = 0;
    let mut table = shared.lock();
    loop {
        if let Some(handle) = table.threads.pop() {
            drop(table);
            if handle.thread().id() == me {
                own = 1;
            } else {
                // A panic cannot escape the task body (it is caught there, and the guard
                // finishes the task either way): what `join` reports carries nothing new.
                let _ = handle.join();
            }
            table = shared.lock();
            continue;
        }
        #[cfg(feature = "tokio")]
        let ignored = if skip_async { table.asyncs.active } else { 0 };
        #[cfg(not(feature = "tokio"))]
        let ignored = {
            let _ = skip_async;
            0
        };
        if table.active <= own + ignored {
            return;
        }
        // Invariant 4: `active` only drops under the mutex, followed by `notify_all`.
        table = shared
            .changed
            .wait(table)
            .unwrap_or_else(PoisonError::into_inner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::time::Duration;

    thread_local! {
        /// Test mode: a stack size for the next task threads spawned from this thread (an
        /// impossible one forces the "no thread" path).
        pub(super) static FORCED_STACK_SIZE: Cell<Option<usize>> = const { Cell::new(None) };
    }

    fn table(limit: Option<usize>, running: usize) -> TaskTable<()> {
        TaskTable {
            limit,
            running,
            active: running,
            first: None,
            threads: Vec::new(),
            prune_at: PRUNE_MIN,
            #[cfg(feature = "tokio")]
            asyncs: tokio_tasks::AsyncTable::default(),
        }
    }

    #[test]
    fn has_slot_follows_the_limit() {
        assert!(table(None, usize::MAX - 1).has_slot());
        assert!(!table(Some(0), 0).has_slot());
        assert!(table(Some(2), 1).has_slot());
        assert!(!table(Some(2), 2).has_slot());
    }

    #[test]
    fn prune_joins_finished_threads_only_past_the_threshold() {
        let mut t = table(None, 0);
        let (release, gate) = std::sync::mpsc::channel::<()>();
        t.threads.push(thread::spawn(move || {
            let _ = gate.recv();
        }));
        for _ in 0..PRUNE_MIN {
            t.threads.push(thread::spawn(|| {}));
        }
        while !t.threads[1..].iter().all(JoinHandle::is_finished) {
            thread::sleep(Duration::from_millis(1));
        }
        t.prune_threads();
        assert_eq!(t.threads.len(), 1, "finished threads kept");
        assert_eq!(t.prune_at, PRUNE_MIN);
        t.prune_threads(); // below the threshold: nothing to do, the running one stays
        assert_eq!(t.threads.len(), 1);
        release.send(()).unwrap();
        t.threads.pop().unwrap().join().unwrap();
    }

    /// Regression: a refused thread drops the task's guard inside `Builder::spawn`; that guard
    /// takes the task table's mutex, which `spawn` used to hold there (a self-deadlock).
    #[test]
    #[cfg_attr(miri, ignore = "Miri does not model the OS refusing a thread")]
    fn a_refused_thread_fails_the_group_without_deadlock() {
        let baseline = crate::live::snapshot().group_tasks;
        let (group, ctx) = Group::<()>::with_context(&Context::background());
        FORCED_STACK_SIZE.with(|size| size.set(Some(1 << 60)));
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&ran);
        group.spawn(move |_| {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        });
        FORCED_STACK_SIZE.with(|size| size.set(None));
        assert!(ctx.is_done(), "the failure cancels the group");
        let cause = ctx.cause().unwrap();
        assert!(
            cause.to_string().contains("could not start a thread"),
            "{cause}"
        );
        match group.wait() {
            Err(GroupError::Panicked(message)) => {
                assert!(message.starts_with("could not start a thread for a group task"))
            }
            other => panic!("{other:?}"),
        }
        assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(crate::live::snapshot().group_tasks, baseline);
    }
}

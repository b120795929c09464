//! Behaviours 17-19 for futures: `Group::spawn_async` / `wait_async` (feature `tokio`).
#![cfg(feature = "tokio")]

use ctxcore::group::{Group, GroupError, TaskFailed, TaskPanicked};
use ctxcore::{Context, Error};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(10);

/// The live counters are process-wide: under `cargo test` (one process, many threads) the tests
/// of this file take turns, so each one's counts are its own. (nextest runs one per process.)
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `test` on a fresh runtime while holding the serial lock.
fn run<F: Future<Output = ()>>(multi_thread: bool, test: impl FnOnce() -> F) {
    let _serial = serial();
    let rt = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    }
    .unwrap();
    rt.block_on(test());
}

#[test]
fn first_async_error_cancels_siblings_and_wait_async_returns_it() {
    run(true, || async {
        let (group, ctx) = Group::<String>::with_context(&Context::background());
        let sibling_cancelled = Arc::new(AtomicBool::new(false));
        let flag = sibling_cancelled.clone();
        group.spawn_async(move |ctx| async move {
            if tokio::time::timeout(LONG, ctx.done()).await.is_ok() {
                flag.store(true, Ordering::SeqCst);
            }
            Ok(())
        });
        group.spawn_async(|_| async {
            tokio::task::yield_now().await;
            Err("async failure".to_string())
        });
        assert_eq!(
            group.wait_async().await,
            Err(GroupError::Task("async failure".to_string()))
        );
        assert!(sibling_cancelled.load(Ordering::SeqCst));
        assert!(ctx.cause().unwrap().downcast_ref::<TaskFailed>().is_some());
    });
}

#[test]
fn async_panics_in_f_or_in_the_future_become_panicked() {
    run(true, || async {
        let (group, ctx) = Group::<()>::with_context(&Context::background());
        group.spawn_async(|_| async {
            tokio::task::yield_now().await;
            panic!("polled into a wall")
        });
        assert_eq!(
            group.wait_async().await,
            Err(GroupError::Panicked("polled into a wall".into()))
        );
        let cause = ctx.cause().unwrap();
        assert_eq!(
            cause.downcast_ref::<TaskPanicked>().unwrap().message(),
            "polled into a wall"
        );

        let (group, _ctx) = Group::<()>::with_context(&Context::background());
        #[allow(unreachable_code)]
        group.spawn_async(|_| -> std::future::Ready<Result<(), ()>> { panic!("in f itself") });
        assert_eq!(
            group.wait_async().await,
            Err(GroupError::Panicked("in f itself".into()))
        );
    });
}

#[test]
fn async_spawn_at_the_limit_never_blocks_and_respects_the_limit() {
    run(false, || async {
        let (group, ctx) = Group::<()>::with_context(&Context::background());
        group.set_limit(2);
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        for _ in 0..10 {
            let (running, peak) = (running.clone(), peak.clone());
            group.spawn_async(move |_| async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            });
        }
        // On a current-thread runtime a blocking spawn would deadlock here: none of the tasks
        // could run while this one is stuck.
        assert!(started.elapsed() < Duration::from_millis(500));
        assert_eq!(group.wait_async().await, Ok(()));
        assert_eq!(peak.load(Ordering::SeqCst), 2);
        assert_eq!(ctx.err(), Some(Error::Canceled));
    });
}

#[test]
fn set_limit_panics_while_an_async_task_waits_for_a_slot() {
    let _serial = serial();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _enter = rt.enter();
    let (group, _ctx) = Group::<()>::with_context(&Context::background());
    group.set_limit(1);
    let (release, gate) = tokio::sync::oneshot::channel::<()>();
    group.spawn_async(|_| async move {
        let _ = gate.await;
        Ok(())
    });
    group.spawn_async(|_| async { Ok(()) }); // waits for the slot
    assert!(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| group.set_limit(5))).is_err());
    release.send(()).unwrap();
    rt.block_on(group.wait_async()).unwrap();
}

#[test]
fn sync_wait_covers_async_and_thread_tasks_together() {
    let _serial = serial();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _enter = rt.enter();
    let baseline = ctxcore::live::snapshot();
    let (group, ctx) = Group::<()>::with_context(&Context::background());
    let done = Arc::new(AtomicUsize::new(0));
    for i in 0..6 {
        let done = done.clone();
        if i % 2 == 0 {
            group.spawn_async(move |_| async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                done.fetch_add(1, Ordering::SeqCst);
                Ok(())
            });
        } else {
            group.spawn(move |_| {
                std::thread::sleep(Duration::from_millis(20));
                done.fetch_add(1, Ordering::SeqCst);
                Ok(())
            });
        }
    }
    group.wait().unwrap();
    assert_eq!(done.load(Ordering::SeqCst), 6);
    drop(ctx);
    ctxcore::live::wait_for_baseline(&baseline, Duration::from_secs(5))
        .unwrap_or_else(|report| panic!("{report}"));
}

#[test]
fn dropping_the_group_aborts_and_joins_async_tasks() {
    run(true, || async {
        let baseline = ctxcore::live::snapshot();
        let (group, ctx) = Group::<()>::with_context(&Context::background());
        let finished = Arc::new(AtomicBool::new(false));
        let flag = finished.clone();
        group.spawn_async(move |_| async move {
            // Ignores its context: only the abort stops it.
            tokio::time::sleep(LONG).await;
            flag.store(true, Ordering::SeqCst);
            Ok(())
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let started = Instant::now();
        drop(group); // on a worker thread: must not deadlock
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(ctx.is_done());
        assert!(!finished.load(Ordering::SeqCst));
        drop(ctx);
        ctxcore::live::wait_for_baseline(&baseline, Duration::from_secs(5))
            .unwrap_or_else(|report| panic!("{report}"));
    });
}

#[test]
fn dropping_the_group_on_a_current_thread_runtime_does_not_deadlock() {
    run(false, || async {
        let baseline = ctxcore::live::snapshot();
        let (group, ctx) = Group::<()>::with_context(&Context::background());
        group.spawn_async(|_| async {
            tokio::time::sleep(LONG).await;
            Ok(())
        });
        tokio::task::yield_now().await;
        drop(group);
        assert!(ctx.is_done());
        // The aborted task is released on the runtime's next turn.
        let deadline = Instant::now() + Duration::from_secs(5);
        while ctxcore::live::snapshot().group_tasks != baseline.group_tasks {
            assert!(Instant::now() < deadline, "aborted task never released");
            tokio::task::yield_now().await;
        }
    });
}

#[test]
fn spawn_async_outside_a_runtime_panics_clearly() {
    let _serial = serial();
    let (group, _ctx) = Group::<()>::with_context(&Context::background());
    let payload = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        group.spawn_async(|_| async { Ok(()) })
    }))
    .unwrap_err();
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .unwrap_or_default();
    assert!(text.contains("tokio runtime"), "{text}");
    group.wait().unwrap();
}

#[test]
fn a_task_dropped_by_a_shut_down_runtime_fails_the_group_instead_of_hanging() {
    let _serial = serial();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let handle = runtime.handle().clone();
    drop(runtime);
    let _enter = handle.enter();
    let (group, ctx) = Group::<()>::with_context(&Context::background());
    let ran = Arc::new(AtomicBool::new(false));
    let flag = ran.clone();
    group.spawn_async(move |_| async move {
        flag.store(true, Ordering::SeqCst);
        Ok(())
    });
    let failure = group.wait().unwrap_err();
    assert!(failure.is_panic(), "{failure:?}");
    assert!(
        format!("{failure:?}").contains("runtime shut down"),
        "{failure:?}"
    );
    assert!(!ran.load(Ordering::SeqCst));
    assert!(ctx.is_done());
}

#[test]
fn wait_async_is_send_and_runs_inside_a_spawned_task() {
    fn assert_send<T: Send>(value: T) -> T {
        value
    }
    run(true, || async {
        let (group, _ctx) = Group::<String>::with_context(&Context::background());
        group.spawn_async(|_| async { Err("from a task".to_string()) });
        let waited = tokio::spawn(assert_send(group.wait_async()));
        assert_eq!(
            waited.await.unwrap(),
            Err(GroupError::Task("from a task".to_string()))
        );
    });
}

//! Behaviours 17-19 (error groups), threads and (feature `tokio`) futures.

use ctxcore::group::{Group, GroupError, TaskFailed, TaskPanicked};
use ctxcore::{Context, Error};
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(10);

/// The live counters are process-wide: under `cargo test` (one process, many threads) the tests
/// of this file take turns, so each one's counts are its own. (nextest runs one per process.)
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        String::new()
    }
}

/// Neither `std::error::Error` nor `Sync`: behaviour 17 allows such task errors.
#[derive(Debug, PartialEq)]
struct NotSync(Cell<u32>);

#[test]
fn first_error_cancels_context_with_opaque_cause_and_wait_returns_it() {
    let _serial = serial();
    let (group, ctx) = Group::<NotSync>::with_context(&Context::background());
    let sibling_saw_cancel = Arc::new(AtomicBool::new(false));
    let saw = sibling_saw_cancel.clone();
    group.spawn(move |ctx| {
        saw.store(ctx.wait_timeout(LONG), Ordering::SeqCst);
        Ok(())
    });
    group.spawn(|_| Err(NotSync(Cell::new(7))));
    assert!(
        ctx.wait_timeout(LONG),
        "the error must cancel the group context"
    );
    assert_eq!(ctx.err(), Some(Error::Canceled));
    let cause = ctx.cause().unwrap();
    assert!(cause.downcast_ref::<TaskFailed>().is_some(), "{cause:?}");
    assert_eq!(cause.to_string(), "a group task failed");
    assert_eq!(group.wait(), Err(GroupError::Task(NotSync(Cell::new(7)))));
    assert!(sibling_saw_cancel.load(Ordering::SeqCst));
}

#[test]
fn panic_becomes_panicked_with_its_message_and_cancels() {
    let _serial = serial();
    let (group, ctx) = Group::<()>::with_context(&Context::background());
    group.spawn(|_| panic!("boom {}", 7));
    assert!(ctx.wait_timeout(LONG));
    let cause = ctx.cause().unwrap();
    assert_eq!(
        cause.downcast_ref::<TaskPanicked>().unwrap().message(),
        "boom 7"
    );
    assert!(cause.to_string().contains("boom 7"));
    // The caller's thread is not unwound: `wait` returns normally.
    let result = catch_unwind(AssertUnwindSafe(move || group.wait()));
    assert_eq!(
        result.unwrap(),
        Err(GroupError::Panicked("boom 7".to_string()))
    );
}

#[test]
fn wait_returns_the_first_failure_not_a_later_one() {
    let _serial = serial();
    let (group, _ctx) = Group::<&'static str>::with_context(&Context::background());
    group.spawn(|_| Err("first"));
    for _ in 0..4 {
        group.spawn(|ctx| {
            ctx.wait_timeout(LONG);
            Err("later")
        });
    }
    group.spawn(|ctx| {
        ctx.wait_timeout(LONG);
        panic!("later panic")
    });
    assert_eq!(group.wait(), Err(GroupError::Task("first")));
}

#[test]
fn clean_wait_cancels_with_plain_canceled_after_every_task_finished() {
    let _serial = serial();
    let (group, ctx) = Group::<()>::with_context(&Context::background());
    let finished = Arc::new(AtomicUsize::new(0));
    for _ in 0..8 {
        let finished = finished.clone();
        group.spawn(move |ctx| {
            std::thread::sleep(Duration::from_millis(30));
            assert!(
                !ctx.is_done(),
                "nothing failed: not cancelled before wait returns"
            );
            finished.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
    }
    assert!(!ctx.is_done());
    assert_eq!(group.wait(), Ok(()));
    assert_eq!(
        finished.load(Ordering::SeqCst),
        8,
        "wait returned before a task finished"
    );
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert_eq!(
        ctx.cause().unwrap().downcast_ref::<Error>(),
        Some(&Error::Canceled)
    );
}

#[test]
fn tasks_receive_the_group_context() {
    let _serial = serial();
    let (parent, cancel_parent) = Context::background().with_cancel();
    let (group, ctx) = Group::<()>::with_context(&parent);
    let (tx, rx) = mpsc::channel();
    group.spawn(move |task_ctx| {
        let cancelled = task_ctx.wait_timeout(LONG);
        tx.send((cancelled, task_ctx.err())).unwrap();
        Ok(())
    });
    std::thread::sleep(Duration::from_millis(20));
    cancel_parent.cancel();
    assert_eq!(
        rx.recv_timeout(LONG).unwrap(),
        (true, Some(Error::Canceled))
    );
    assert!(ctx.is_done());
    group.wait().unwrap();
}

#[test]
fn spawn_on_a_done_group_still_runs_the_task() {
    let _serial = serial();
    let (parent, cancel_parent) = Context::background().with_cancel();
    cancel_parent.cancel();
    let (group, ctx) = Group::<()>::with_context(&parent);
    assert!(ctx.is_done());
    let ran = Arc::new(AtomicBool::new(false));
    let flag = ran.clone();
    group.spawn(move |ctx| {
        assert!(ctx.is_done());
        flag.store(true, Ordering::SeqCst);
        Ok(())
    });
    group.wait().unwrap();
    assert!(ran.load(Ordering::SeqCst));
}

#[test]
fn group_is_send_and_sync_and_spawns_from_many_threads() {
    let _serial = serial();
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Group<NotSync>>();
    assert_send_sync::<Group<std::cell::RefCell<String>>>();

    let (group, _ctx) = Group::<()>::with_context(&Context::background());
    let count = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..10 {
                    let count = count.clone();
                    group.spawn(move |_| {
                        count.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    });
                }
            });
        }
    });
    group.wait().unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 40);
}

#[test]
fn a_task_spawns_a_sibling_through_a_shared_group() {
    let _serial = serial();
    let (group, ctx) = Group::<&'static str>::with_context(&Context::background());
    let group = Arc::new(group);
    let shared = group.clone();
    group.spawn(move |_| {
        shared.spawn(|ctx| {
            ctx.wait_timeout(Duration::from_millis(20));
            Err("from the sibling")
        });
        drop(shared);
        Ok(())
    });
    // The task drops its clone once the sibling is spawned; then the group is ours alone.
    let deadline = Instant::now() + LONG;
    let mut group = group;
    let group = loop {
        match Arc::try_unwrap(group) {
            Ok(group) => break group,
            Err(again) => {
                assert!(Instant::now() < deadline, "the task kept its Arc");
                std::thread::sleep(Duration::from_millis(1));
                group = again;
            }
        }
    };
    assert_eq!(group.wait(), Err(GroupError::Task("from the sibling")));
    assert!(ctx.is_done());
}

#[test]
fn the_last_arc_dropped_inside_a_task_does_not_deadlock() {
    let _serial = serial();
    let (group, ctx) = Group::<()>::with_context(&Context::background());
    let group = Arc::new(group);
    let (tx, rx) = mpsc::channel();
    let (go, gate) = mpsc::channel::<()>();
    let shared = group.clone();
    group.spawn(move |_| {
        gate.recv().unwrap();
        drop(shared); // the last Arc: the group's Drop runs on this task's own thread
        tx.send(()).unwrap();
        Ok(())
    });
    drop(group);
    go.send(()).unwrap();
    rx.recv_timeout(LONG)
        .expect("drop on the task's own thread deadlocked");
    assert!(ctx.is_done());
}

#[test]
fn live_counters_count_tasks_and_return_to_baseline() {
    let _serial = serial();
    let baseline = ctxcore::live::snapshot();
    let (group, ctx) = Group::<()>::with_context(&Context::background());
    let barrier = Arc::new(Barrier::new(4));
    for _ in 0..3 {
        let barrier = barrier.clone();
        group.spawn(move |_| {
            barrier.wait(); // running
            barrier.wait(); // counted
            Ok(())
        });
    }
    barrier.wait();
    let during = ctxcore::live::snapshot().group_tasks;
    barrier.wait();
    group.wait().unwrap();
    drop(ctx);
    // Absolute, not relative to `baseline`: other tests in this process may finish tasks.
    assert!(during >= 3, "3 running tasks, {during} counted");
    ctxcore::live::wait_for_baseline(&baseline, Duration::from_secs(5))
        .unwrap_or_else(|report| panic!("leak after wait: {report}"));
}

// ---- behaviour 18: limits --------------------------------------------------------------

#[test]
fn never_more_than_limit_tasks_run_at_once() {
    let _serial = serial();
    let (group, _ctx) = Group::<()>::with_context(&Context::background());
    group.set_limit(3);
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    for _ in 0..24 {
        let (running, peak) = (running.clone(), peak.clone());
        group.spawn(move |_| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(5));
            running.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        });
    }
    group.wait().unwrap();
    let peak = peak.load(Ordering::SeqCst);
    assert!(peak <= 3, "peak {peak} exceeds the limit");
    assert!(
        peak >= 2,
        "peak {peak}: the limit did not let tasks run in parallel"
    );
}

#[test]
fn spawn_blocks_while_at_the_limit_until_a_slot_frees() {
    let _serial = serial();
    let (group, _ctx) = Group::<()>::with_context(&Context::background());
    group.set_limit(1);
    let (release, gate) = mpsc::channel::<()>();
    group.spawn(move |_| {
        gate.recv().unwrap();
        Ok(())
    });
    let second_spawned = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            group.spawn(|_| Ok(()));
            second_spawned.store(true, Ordering::SeqCst);
        });
        std::thread::sleep(Duration::from_millis(100));
        let spawned_early = second_spawned.load(Ordering::SeqCst);
        release.send(()).unwrap();
        assert!(!spawned_early, "spawn did not wait for a slot");
    });
    assert!(second_spawned.load(Ordering::SeqCst));
    group.wait().unwrap();
}

#[test]
fn try_spawn_refuses_at_the_limit_and_drops_f_unrun() {
    let _serial = serial();
    let (group, _ctx) = Group::<()>::with_context(&Context::background());
    group.set_limit(1);
    let (release, gate) = mpsc::channel::<()>();
    assert!(group.try_spawn(move |_| {
        gate.recv().unwrap();
        Ok(())
    }));
    let token = Arc::new(());
    let captured = token.clone();
    let ran = Arc::new(AtomicBool::new(false));
    let flag = ran.clone();
    assert!(!group.try_spawn(move |_| {
        let _keep = captured;
        flag.store(true, Ordering::SeqCst);
        Ok(())
    }));
    assert_eq!(
        Arc::strong_count(&token),
        1,
        "the refused closure was not dropped"
    );
    release.send(()).unwrap();
    group.wait().unwrap();
    assert!(!ran.load(Ordering::SeqCst));
}

#[test]
fn limit_zero_try_spawn_refuses_and_spawn_panics_clearly() {
    let _serial = serial();
    let (group, _ctx) = Group::<()>::with_context(&Context::background());
    group.set_limit(0);
    assert!(!group.try_spawn(|_| Ok(())));
    let ran = Arc::new(AtomicBool::new(false));
    let flag = ran.clone();
    let payload = catch_unwind(AssertUnwindSafe(|| {
        group.spawn(move |_| {
            flag.store(true, Ordering::SeqCst);
            Ok(())
        })
    }))
    .expect_err("spawn with a limit of 0 must panic");
    assert!(panic_text(payload).contains("limit is 0"));
    assert!(!ran.load(Ordering::SeqCst));
    // The group is still usable afterwards.
    group.set_limit(1);
    assert!(group.try_spawn(|_| Ok(())));
    group.wait().unwrap();
}

#[test]
fn changing_the_limit_while_tasks_run_panics() {
    let _serial = serial();
    let (group, _ctx) = Group::<()>::with_context(&Context::background());
    let (release, gate) = mpsc::channel::<()>();
    group.spawn(move |_| {
        gate.recv().unwrap();
        Ok(())
    });
    let payload = catch_unwind(AssertUnwindSafe(|| group.set_limit(4)))
        .expect_err("set_limit with a running task must panic");
    assert!(panic_text(payload).contains("still active"));
    release.send(()).unwrap();
    group.wait().unwrap();
}

#[test]
fn the_limit_may_change_once_tasks_are_done() {
    let _serial = serial();
    let (group, _ctx) = Group::<()>::with_context(&Context::background());
    group.set_limit(1);
    group.spawn(|_| Ok(()));
    let deadline = Instant::now() + LONG;
    loop {
        match catch_unwind(AssertUnwindSafe(|| group.set_limit(2))) {
            Ok(()) => break,
            Err(_) => assert!(Instant::now() < deadline),
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    group.wait().unwrap();
}

// ---- behaviour 19: drop ------------------------------------------------------------------

#[test]
fn drop_without_wait_cancels_and_joins_every_task() {
    let _serial = serial();
    let baseline = ctxcore::live::snapshot();
    let (group, ctx) = Group::<()>::with_context(&Context::background());
    let finished = Arc::new(AtomicUsize::new(0));
    for _ in 0..4 {
        let finished = finished.clone();
        group.spawn(move |ctx| {
            assert!(ctx.wait_timeout(LONG), "drop must cancel the group context");
            std::thread::sleep(Duration::from_millis(50));
            finished.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
    }
    drop(group);
    assert_eq!(
        finished.load(Ordering::SeqCst),
        4,
        "a task outlived its group"
    );
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert_eq!(
        ctx.cause().unwrap().downcast_ref::<Error>(),
        Some(&Error::Canceled)
    );
    drop(ctx);
    ctxcore::live::wait_for_baseline(&baseline, Duration::from_secs(5))
        .unwrap_or_else(|report| panic!("leak after drop: {report}"));
}

#[test]
fn many_short_tasks_do_not_accumulate() {
    let _serial = serial();
    let (group, _ctx) = Group::<()>::with_context(&Context::background());
    group.set_limit(2);
    let count = Arc::new(AtomicUsize::new(0));
    for _ in 0..300 {
        let count = count.clone();
        group.spawn(move |_| {
            count.fetch_add(1, Ordering::Relaxed);
            Ok(())
        });
    }
    group.wait().unwrap();
    assert_eq!(count.load(Ordering::Relaxed), 300);
}

#[test]
fn stress_many_spawners_with_a_limit_and_failures() {
    let _serial = serial();
    let baseline = ctxcore::live::snapshot();
    let (group, ctx) = Group::<usize>::with_context(&Context::background());
    group.set_limit(3);
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|s| {
        for spawner in 0..6 {
            let group = &group;
            let (running, peak, started, finished) = (&running, &peak, &started, &finished);
            s.spawn(move || {
                for i in 0..40 {
                    let id = spawner * 100 + i;
                    let (running, peak, started, finished) = (
                        running.clone(),
                        peak.clone(),
                        started.clone(),
                        finished.clone(),
                    );
                    let task = move |ctx: Context| {
                        started.fetch_add(1, Ordering::SeqCst);
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        let failed = !ctx.is_done() && id % 37 == 5;
                        running.fetch_sub(1, Ordering::SeqCst);
                        finished.fetch_add(1, Ordering::SeqCst);
                        if id % 53 == 7 {
                            panic!("task {id} panics");
                        }
                        if failed {
                            Err(id)
                        } else {
                            Ok(())
                        }
                    };
                    if i % 2 == 0 {
                        group.spawn(task);
                    } else {
                        let _ = group.try_spawn(task);
                    }
                }
            });
        }
    });
    let result = group.wait();
    assert!(result.is_err(), "some task failed or panicked");
    assert!(peak.load(Ordering::SeqCst) <= 3);
    assert_eq!(
        started.load(Ordering::SeqCst),
        finished.load(Ordering::SeqCst)
    );
    assert!(
        started.load(Ordering::SeqCst) >= 120,
        "every blocking spawn ran"
    );
    drop(ctx);
    ctxcore::live::wait_for_baseline(&baseline, Duration::from_secs(5))
        .unwrap_or_else(|report| panic!("{report}"));
}

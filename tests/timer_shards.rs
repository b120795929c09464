//! System-clock deadlines wait in their arming thread's shard until the timer driver sweeps
//! them (behaviours 5, 13 and 14 on that path): deadlines of threads that have exited,
//! deadlines cancelled from another thread, deadlines armed while the driver is idle or
//! promised a long sleep (the allocations of a deadline cycle: tests/alloc.rs).
mod common;

use ctxcore::{Context, Error};
use std::cell::Cell;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Waits for `ctx` and returns how long after `deadline` it was done (zero if before).
fn lateness(ctx: &Context, deadline: Instant) -> Duration {
    assert!(
        ctx.wait_timeout(Duration::from_secs(10)),
        "deadline never fired"
    );
    Instant::now().saturating_duration_since(deadline)
}

#[test]
fn deadlines_of_an_exited_thread_still_fire() {
    let _leaks = common::leak_check();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for ms in [30, 60, 90] {
            let (ctx, handle) = Context::background().with_timeout(Duration::from_millis(ms));
            handle.disarm();
            tx.send(ctx).unwrap();
        }
    })
    .join()
    .unwrap();
    for ctx in rx.iter() {
        assert!(ctx.wait_timeout(Duration::from_secs(10)));
        assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    }
}

#[test]
fn a_shard_left_by_an_exited_thread_serves_the_next_one() {
    let _leaks = common::leak_check();
    // Many short-lived threads, each arming and leaving a pending deadline behind.
    let ctxs: Vec<Context> = (0..64)
        .map(|i| {
            thread::spawn(move || {
                let (c, h) = Context::background().with_timeout(Duration::from_millis(20 + i % 7));
                h.disarm();
                c
            })
            .join()
            .unwrap()
        })
        .collect();
    for c in &ctxs {
        assert!(c.wait_timeout(Duration::from_secs(10)));
        assert_eq!(c.err(), Some(Error::DeadlineExceeded));
    }
}

#[test]
fn deadlines_cancelled_from_another_thread_are_disarmed_at_once() {
    let _leaks = common::leak_check();
    let base = ctxcore::live::snapshot();
    let (tx, rx) = mpsc::channel();
    let armer = thread::spawn(move || {
        for _ in 0..10_000 {
            tx.send(Context::background().with_timeout(Duration::from_secs(3600)))
                .unwrap();
        }
    });
    let canceller = thread::spawn(move || {
        for (ctx, handle) in rx.iter() {
            handle.cancel();
            assert_eq!(ctx.err(), Some(Error::Canceled));
        }
    });
    armer.join().unwrap();
    canceller.join().unwrap();
    // Every timer disarmed: none counted live any more, at once (no driver turn needed).
    assert_eq!(ctxcore::live::snapshot().timers, base.timers);
}

#[test]
fn a_short_deadline_wakes_a_driver_that_promised_a_long_sleep() {
    // Keep the driver busy with a long deadline (it then promises its longest sleep, up to
    // 16 ms), then arm short ones: each must wake the driver and fire near its deadline,
    // not at the driver's next sweep. Without the wake a 2 ms deadline fires 0-14 ms late,
    // under 6 ms in fewer than half the tries; with it, almost always under 1 ms. A loaded
    // machine may delay a few tries, so the test counts.
    let (_long, _lh) = Context::background().with_timeout(Duration::from_secs(3600));
    thread::sleep(Duration::from_millis(50));
    let tries = 20;
    let mut on_time = 0;
    let mut late = Vec::new();
    for _ in 0..tries {
        let t = Duration::from_millis(2);
        let deadline = Instant::now() + t;
        let (ctx, _h) = Context::background().with_timeout(t);
        let l = lateness(&ctx, deadline);
        if l < Duration::from_millis(6) {
            on_time += 1;
        }
        late.push(l);
        thread::sleep(Duration::from_millis(17));
    }
    assert!(on_time >= 15, "only {on_time} of {tries} on time: {late:?}");
}

#[test]
fn a_deadline_armed_while_the_driver_is_idle_fires() {
    // First use, then nothing for a while: the driver has nothing and promises nothing.
    drop(Context::background().with_timeout(Duration::from_millis(1)));
    thread::sleep(Duration::from_millis(100));
    let t = Duration::from_millis(20);
    let deadline = Instant::now() + t;
    let (ctx, _h) = Context::background().with_timeout(t);
    let late = lateness(&ctx, deadline);
    // Without the wake it would never fire (the idle driver sleeps until woken).
    assert!(late < Duration::from_millis(200), "fired {late:?} late");
}

#[test]
fn deadlines_armed_in_a_thread_local_destructor_still_fire() {
    struct ArmOnExit(mpsc::Sender<Context>);
    impl Drop for ArmOnExit {
        fn drop(&mut self) {
            let (c, h) = Context::background().with_timeout(Duration::from_millis(20));
            h.disarm();
            let _ = self.0.send(c);
        }
    }
    thread_local! {
        static ON_EXIT: Cell<Option<ArmOnExit>> = const { Cell::new(None) };
    }
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        // Arm once first, so the thread has a shard whose local may be gone by the end.
        drop(Context::background().with_timeout(Duration::from_secs(1)));
        ON_EXIT.with(|c| c.set(Some(ArmOnExit(tx))));
    })
    .join()
    .unwrap();
    let ctx = rx.recv().unwrap();
    assert!(ctx.wait_timeout(Duration::from_secs(10)));
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
}

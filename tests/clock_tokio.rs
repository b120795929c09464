//! Behaviour 29: `Clock::tokio()`, deadlines on a tokio runtime's time (paused or not).
mod common;

use ctxcore::clock::Clock;
use ctxcore::{Context, Error};
use std::time::{Duration, Instant};

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(start_paused = true)]
async fn a_one_hour_deadline_completes_at_once_on_paused_time() {
    let _leaks = common::leak_check();
    let real = Instant::now();
    let clock = Clock::tokio();
    let t0 = clock.now();
    assert_eq!(t0, tokio::time::Instant::now().into_std());
    let (ctx, _h) = Context::root(&clock).with_timeout(HOUR);
    assert_eq!(ctx.deadline(), Some(t0 + HOUR));
    ctx.done().await;
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    assert!(clock.now() >= t0 + HOUR);
    assert!(
        real.elapsed() < Duration::from_secs(1),
        "{:?}",
        real.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn tokio_advance_fires_what_it_passed_and_nothing_later() {
    let _leaks = common::leak_check();
    let clock = Clock::tokio();
    let root = Context::root(&clock);
    let (soon, _h1) = root.with_timeout(Duration::from_secs(10));
    let (later, _h2) = root.with_timeout(Duration::from_secs(20));
    tokio::time::advance(Duration::from_secs(11)).await;
    // Done as soon as the runtime has run its timers: no further time passes here.
    let before = tokio::time::Instant::now();
    soon.done().await;
    assert_eq!(tokio::time::Instant::now(), before);
    assert_eq!(soon.err(), Some(Error::DeadlineExceeded));
    assert!(!later.is_done());
    tokio::time::advance(Duration::from_secs(10)).await;
    later.done().await;
    assert!(later.is_done());
}

#[tokio::test(start_paused = true)]
async fn shuffled_deadlines_fire_in_deadline_order() {
    let _leaks = common::leak_check();
    let clock = Clock::tokio();
    let root = Context::root(&clock);
    let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut keep = Vec::new();
    for i in 0..200u64 {
        let secs = (i * 7919) % 200 + 1;
        let (ctx, h) = root.with_timeout(Duration::from_secs(secs));
        let o = order.clone();
        let a = ctx.after_func(move || o.lock().unwrap().push(secs));
        keep.push((ctx, h, a));
    }
    for (ctx, _, _) in &keep {
        ctx.done().await;
    }
    let got = order.lock().unwrap().clone();
    assert_eq!(got.len(), 200);
    assert!(got.windows(2).all(|w| w[0] <= w[1]), "{got:?}");
}

#[test]
fn tokio_clock_outside_a_runtime_panics_naming_the_cause() {
    let err = std::panic::catch_unwind(Clock::tokio).unwrap_err();
    let msg = err.downcast_ref::<String>().expect("a String message");
    assert!(msg.contains("tokio runtime"), "{msg}");
}

#[test]
fn the_captured_runtime_serves_other_threads() {
    let _leaks = common::leak_check();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let clock = rt.block_on(async { Clock::tokio() });
    // Read and armed from a plain thread, outside any runtime.
    let c = clock.clone();
    let start = Instant::now();
    let ctx = std::thread::spawn(move || {
        let (ctx, h) = Context::root(&c).with_timeout(Duration::from_millis(20));
        let _ = c.now();
        h.disarm();
        ctx
    })
    .join()
    .unwrap();
    assert!(
        ctx.wait_timeout(common::SOON),
        "fired by the runtime's timer"
    );
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    // Not paused: real time, never early.
    assert!(start.elapsed() >= Duration::from_millis(20));
    let err = std::panic::catch_unwind(|| clock.advance(Duration::from_secs(1))).unwrap_err();
    let msg = err.downcast_ref::<String>().unwrap();
    assert!(
        msg.contains("manual clocks only") && msg.contains("tokio"),
        "{msg}"
    );
}

#[test]
fn after_the_runtime_shuts_down_pending_deadlines_never_fire() {
    let _leaks = common::leak_check();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let clock = rt.block_on(async { Clock::tokio() });
    let root = Context::root(&clock);
    let (ctx, h) = root.with_timeout(Duration::from_millis(10));
    drop(rt);
    assert!(!ctx.wait_timeout(Duration::from_millis(100)));
    h.cancel();
    assert_eq!(ctx.err(), Some(Error::Canceled));
    // Reading the clock and arming on it still work (the deadline never fires).
    let _ = clock.now();
    let (late, h2) = root.with_timeout(Duration::from_millis(1));
    assert!(!late.wait_timeout(Duration::from_millis(50)));
    drop(h2);
    assert!(late.is_done());
}

/// A deadline earlier than the one the driver sleeps on wakes it (no lost wake-up).
#[test]
fn an_earlier_deadline_wakes_a_driver_sleeping_on_a_later_one() {
    let _leaks = common::leak_check();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let clock = rt.block_on(async { Clock::tokio() });
    let root = Context::root(&clock);
    let (late, _h1) = root.with_timeout(HOUR);
    // Let the driver go to sleep on the hour.
    std::thread::sleep(Duration::from_millis(20));
    let start = Instant::now();
    let (soon, _h2) = root.with_timeout(Duration::from_millis(10));
    assert!(soon.wait_timeout(common::SOON), "the driver slept through");
    assert!(start.elapsed() >= Duration::from_millis(10));
    assert!(!late.is_done());
    // Many threads arming and disarming at once leave nothing behind.
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let root = root.clone();
            std::thread::spawn(move || {
                for i in 0..2_000u64 {
                    let (c, h) = root.with_timeout(Duration::from_micros(500 + i % 700));
                    if i % 3 == 0 {
                        assert!(c.wait_timeout(common::SOON));
                    } else {
                        h.disarm();
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
}

#[test]
fn a_runtime_without_timers_panics_with_tokios_message() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(async { Clock::tokio() })
    }))
    .unwrap_err();
    let msg = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap();
    assert!(msg.contains("timers are disabled"), "{msg}");
}

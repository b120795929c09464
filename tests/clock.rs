//! Behaviours 27, 28 and 31 on a manual clock: deadlines a test drives.
mod common;

use ctxcore::clock::Clock;
use ctxcore::{Context, Error};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::time::{Duration, Instant};

const S: Duration = Duration::from_secs(1);

/// A small deterministic generator (xorshift), so failures replay.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn the_root_behaves_as_background_and_shares_the_clock() {
    let _leaks = common::leak_check();
    let clock = Clock::manual();
    let root = Context::root(&clock);
    assert!(!root.is_done() && root.err().is_none() && root.cause().is_none());
    assert!(root.deadline().is_none());
    assert!(root.value::<u32>().is_none());
    assert!(!root.wait_timeout(Duration::from_millis(1)));
    let before = clock.now();
    root.clock().advance(S);
    assert_eq!(clock.now(), before + S);
    assert_eq!(root.clock().now(), clock.now());
    // The system clock changes nothing.
    let sys = Context::root(&Clock::system());
    assert_eq!(format!("{sys:?}"), "Context::background()");
    assert!(Context::background().clock().now() <= Instant::now());
    assert_eq!(format!("{:?}", Context::todo().clock()), "Clock::system()");
    assert_eq!(
        format!("{:?}", Context::background().clock()),
        "Clock::system()"
    );
}

#[test]
fn every_derivation_measures_on_the_root_clock() {
    let _leaks = common::leak_check();
    let clock = Clock::manual();
    let root = Context::root(&clock);
    let (c1, _h1) = root.with_value(1u8).with_cancel();
    let c2 = c1.without_cancel().with_value("x");
    let (c3, _h3) = c2.with_timeout(5 * S);
    let t0 = clock.now();
    assert_eq!(c3.deadline(), Some(t0 + 5 * S));
    assert_eq!(c3.clock().now(), t0);
    // Deep: 200 derivations of every kind, then a deadline.
    let mut ctx = c3.clone();
    let mut handles = Vec::new();
    for i in 0..200 {
        ctx = match i % 3 {
            0 => ctx.with_value(i as u64),
            1 => ctx.without_cancel(),
            _ => {
                let (c, h) = ctx.with_cancel();
                handles.push(h);
                c
            }
        };
    }
    let (deep, _hd) = ctx.with_timeout(2 * S);
    assert_eq!(deep.deadline(), Some(t0 + 2 * S));
    clock.advance(2 * S - Duration::from_nanos(1));
    assert!(!deep.is_done() && !c3.is_done());
    clock.advance(Duration::from_nanos(1));
    assert_eq!(deep.err(), Some(Error::DeadlineExceeded));
    assert!(!c3.is_done());
    clock.advance(3 * S);
    assert_eq!(c3.err(), Some(Error::DeadlineExceeded));
    assert!(!c1.is_done() && !c2.is_done() && !root.is_done());
}

#[test]
fn a_deadline_at_or_before_now_is_born_done() {
    let _leaks = common::leak_check();
    let clock = Clock::manual();
    clock.advance(10 * S);
    let root = Context::root(&clock);
    let now = clock.now();
    for (ctx, _h) in [
        root.with_deadline(now),
        root.with_deadline(now - S),
        root.with_timeout(Duration::ZERO),
    ] {
        assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    }
    let (later, _h) = root.with_deadline(now + Duration::from_nanos(1));
    assert!(!later.is_done());
    // The clock is 10 s ahead of real time: a deadline 1 s ahead of real time is past on it.
    let (c, _h) = root.with_deadline(Instant::now() + S);
    assert!(c.is_done());
}

#[test]
fn real_time_never_fires_a_manual_deadline() {
    let _leaks = common::leak_check();
    let clock = Clock::manual();
    let (ctx, _h) = Context::root(&clock).with_timeout(Duration::from_millis(1));
    std::thread::sleep(Duration::from_millis(60));
    assert!(!ctx.is_done());
    // `wait_timeout` bounds the wait in real time whatever the clock.
    let t = Instant::now();
    assert!(!ctx.wait_timeout(Duration::from_millis(30)));
    assert!(t.elapsed() >= Duration::from_millis(30));
    clock.advance(Duration::from_millis(1));
    assert!(ctx.wait_timeout(Duration::ZERO));
}

#[test]
fn advance_fires_in_deadline_order_on_the_advancing_thread() {
    let _leaks = common::leak_check();
    let clock = Clock::manual();
    let root = Context::root(&clock);
    let t0 = clock.now();
    let fired = Arc::new(Mutex::new(Vec::new()));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut keep = Vec::new();
    for i in 0..500u64 {
        let ms = rng.below(10_000);
        let (ctx, h) = root.with_deadline(t0 + Duration::from_millis(ms));
        let f = fired.clone();
        let after = ctx.after_func(move || {
            f.lock().unwrap().push((ms, i, std::thread::current().id()));
        });
        keep.push((ctx, h, after, ms));
    }
    clock.advance(Duration::from_millis(5_000));
    {
        let got = fired.lock().unwrap();
        let due = keep.iter().filter(|k| k.3 <= 5_000).count();
        assert_eq!(got.len(), due);
        assert!(got.windows(2).all(|w| w[0].0 <= w[1].0), "out of order");
        let me = std::thread::current().id();
        assert!(got.iter().all(|f| f.2 == me));
    }
    for (ctx, _, _, ms) in &keep {
        assert_eq!(ctx.is_done(), *ms <= 5_000, "deadline {ms} ms");
    }
    clock.advance(Duration::from_secs(3600));
    let got = fired.lock().unwrap();
    assert_eq!(got.len(), 500);
    assert!(got.windows(2).all(|w| w[0].0 <= w[1].0));
}

#[test]
fn advance_wakes_threads_and_futures() {
    let _leaks = common::leak_check();
    let clock = Clock::manual();
    let (ctx, _h) = Context::root(&clock).with_timeout(S);
    let waiter = {
        let ctx = ctx.clone();
        std::thread::spawn(move || {
            ctx.wait();
            ctx.err()
        })
    };
    let counting = Arc::new(common::CountingWaker::default());
    let waker = Waker::from(counting.clone());
    let mut done = Box::pin(ctx.done());
    assert!(common::poll_once(&mut done, &waker).is_pending());
    std::thread::sleep(Duration::from_millis(20));
    clock.advance(S);
    assert_eq!(counting.wakes.load(Ordering::SeqCst), 1);
    assert!(common::poll_once(&mut done, &waker).is_ready());
    assert_eq!(waiter.join().unwrap(), Some(Error::DeadlineExceeded));
}

#[test]
fn saturating_advance_fires_everything_and_never_panics() {
    let _leaks = common::leak_check();
    let clock = Clock::manual();
    let root = Context::root(&clock);
    let (far, _h) = root.with_timeout(Duration::from_secs(u32::MAX as u64 * 1000));
    let (near, _h2) = root.with_timeout(Duration::from_millis(1));
    clock.advance(Duration::MAX);
    assert!(far.is_done() && near.is_done());
    let end = clock.now();
    clock.advance(Duration::MAX);
    clock.advance(S);
    assert_eq!(clock.now(), end, "saturated");
    // On a saturated clock a positive timeout is unrepresentable: no deadline.
    let (c, _h3) = root.with_timeout(S);
    assert!(c.deadline().is_none() && !c.is_done());
    let (z, _h4) = root.with_timeout(Duration::ZERO);
    assert!(z.is_done());
}

#[test]
fn advance_to_an_earlier_instant_is_a_no_op() {
    let _leaks = common::leak_check();
    let clock = Clock::manual();
    let (ctx, _h) = Context::root(&clock).with_timeout(S);
    let t0 = clock.now();
    clock.advance_to(t0 - S);
    assert_eq!(clock.now(), t0);
    clock.advance_to(t0);
    assert_eq!(clock.now(), t0);
    assert!(!ctx.is_done());
    clock.advance_to(t0 + S);
    assert_eq!(clock.now(), t0 + S);
    assert!(ctx.is_done());
}

#[test]
fn advance_on_the_system_clock_panics_with_a_clear_message() {
    for f in [
        (|| Clock::system().advance(S)) as fn(),
        || Clock::system().advance_to(Instant::now() + S),
        || Context::background().clock().advance(S),
    ] {
        let err = std::panic::catch_unwind(f).unwrap_err();
        let msg = err.downcast_ref::<String>().expect("a String message");
        assert!(msg.contains("manual clocks only"), "{msg}");
    }
}

/// A callback run by `advance` advances the same clock and derives from its contexts.
#[test]
fn callbacks_may_advance_the_same_clock_and_derive() {
    let _leaks = common::leak_check();
    let clock = Clock::manual();
    let root = Context::root(&clock);
    let (first, _h1) = root.with_timeout(S);
    let (second, _h2) = root.with_timeout(3 * S);
    let (third, _h3) = root.with_timeout(10 * S);
    let seen = Arc::new(Mutex::new(None));
    let _a = {
        let (clock, root, second, seen) =
            (clock.clone(), root.clone(), second.clone(), seen.clone());
        first.after_func(move || {
            // Nested: fires `second` before it returns.
            clock.advance(4 * S);
            let (born, _h) = root.with_timeout(Duration::ZERO);
            let (pending, h) = root.with_timeout(S);
            *seen.lock().unwrap() = Some((second.is_done(), born.is_done(), pending.is_done()));
            h.disarm();
        })
    };
    clock.advance(S);
    assert_eq!(*seen.lock().unwrap(), Some((true, true, false)));
    assert!(first.is_done() && second.is_done() && !third.is_done());
    assert_eq!(clock.now() - root.clock().now(), Duration::ZERO);
    clock.advance(5 * S);
    assert!(third.is_done());
}

#[test]
fn a_panicking_callback_does_not_stop_the_advance() {
    let _leaks = common::leak_check();
    let clock = Clock::manual();
    let root = Context::root(&clock);
    let (a, _ha) = root.with_timeout(S);
    let (b, _hb) = root.with_timeout(2 * S);
    let ran = Arc::new(AtomicBool::new(false));
    let _pa = a.after_func(|| panic!("boom in a callback"));
    let r = ran.clone();
    let _pb = b.after_func(move || r.store(true, Ordering::SeqCst));
    let err = std::panic::catch_unwind(|| clock.advance(2 * S)).unwrap_err();
    assert_eq!(err.downcast_ref::<&str>(), Some(&"boom in a callback"));
    assert!(a.is_done() && b.is_done() && ran.load(Ordering::SeqCst));
}

/// Several threads advance one clock at once; when each call returns, everything due at
/// the time it reached is done, and nothing later is.
#[test]
fn concurrent_advances_each_return_after_what_they_reached() {
    let _leaks = common::leak_check();
    // Rounds, so that a missing wait for another thread's firing shows in nearly every run
    // (one round catches it about two times in three).
    for seed in 1..=4 {
        concurrent_advance_round(seed);
    }
}

fn concurrent_advance_round(seed: u64) {
    let clock = Clock::manual();
    let root = Context::root(&clock);
    let t0 = clock.now();
    let mut rng = Rng(12345 * seed);
    let mut all = Vec::new();
    for _ in 0..4000 {
        let at = t0 + Duration::from_micros(rng.below(2_000_000));
        let (ctx, h) = root.with_deadline(at);
        // Callbacks slow the firing down, so firings overlap.
        let spin = ctx.after_func(|| (0..3000).for_each(|_| std::hint::spin_loop()));
        all.push((ctx, h, spin));
    }
    let all = Arc::new(all);
    let checked = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..4u64)
        .map(|k| {
            let (clock, all, checked) = (clock.clone(), all.clone(), checked.clone());
            std::thread::spawn(move || {
                let mut rng = Rng(k + 1 + 10 * seed);
                while clock.now() < t0 + 2 * S {
                    let from = clock.now();
                    let by = Duration::from_micros(1 + rng.below(20_000));
                    clock.advance(by);
                    let reached = from + by;
                    for (ctx, _, _) in all.iter() {
                        if ctx.deadline().unwrap() <= reached {
                            assert!(ctx.is_done(), "due at the time reached, still live");
                        }
                    }
                    checked.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(checked.load(Ordering::Relaxed) >= 4);
    assert!(all.iter().all(|(c, _, _)| c.is_done()));
}

/// Behaviour 14 on a manual clock: a pending callback on a disarmed deadline context keeps
/// it, and runs at its deadline; with no callback nothing is kept.
#[test]
fn disarmed_deadline_contexts_keep_only_what_is_owed_a_deadline() {
    let _leaks = common::leak_check();
    let clock = Clock::manual();
    let root = Context::root(&clock);
    let base = ctxcore::live::snapshot();
    let ran = Arc::new(AtomicBool::new(false));
    let (ctx, h) = root.with_timeout(S);
    let r = ran.clone();
    let after = ctx.after_func(move || r.store(true, Ordering::SeqCst));
    h.disarm();
    drop(ctx);
    for _ in 0..1000 {
        let (c, h) = root.with_timeout(S);
        h.disarm();
        drop(c);
    }
    let now = ctxcore::live::snapshot();
    assert_eq!(now.timers, base.timers + 1, "only the one owed a deadline");
    assert!(!ran.load(Ordering::SeqCst));
    clock.advance(S);
    assert!(ran.load(Ordering::SeqCst));
    assert!(!after.stop());
    assert_eq!(ctxcore::live::snapshot().timers, base.timers);
}

/// Clock handles are cheap to share and say what they are.
#[test]
fn clocks_are_shareable_and_debuggable() {
    fn assert_traits<T: Clone + std::fmt::Debug + Send + Sync + 'static>() {}
    assert_traits::<Clock>();
    assert_eq!(format!("{:?}", Clock::system()), "Clock::system()");
    let m = Clock::manual();
    let s = format!("{m:?}");
    assert!(s.contains("manual"), "{s}");
    let (ctx, _h) = Context::root(&m).with_value(3u8).with_cancel();
    let s = format!("{ctx:?}");
    assert!(s.contains("values: 1") && s.contains("manual"), "{s}");
}

//! Model 18: the per-thread timer shards (`src/timer/shard.rs`). A deadline is armed into
//! its thread's shard; the driver's sweep takes pending entries into its wheel; a disarm
//! unlinks a pending entry itself or, once the driver took it, leaves it to the driver.
//!
//! - `disarm_racing_the_sweep`: the owner arms and cancels while the driver sweeps and
//!   fires what it took. The driver's count on the entry is given back exactly once,
//!   whoever wins (every entry freed once, nothing live).
//! - `cross_thread_disarm_racing_the_sweep`: the same, the cancel coming from a thread that
//!   is not the shard's owner.
//! - `two_disarms_of_a_pending_entry`: a parent's cancel and the child's last holder (its
//!   handle disarmed, its context dropped) both disarm the child's pending timer: exactly
//!   one of them wins (invariant 6), and the entry is freed once.
//! - `promise_keeps_a_late_arm_in_time` (invariant 4): an arm that reads a promise it is not
//!   due before does not wake the driver, so the sweep that starts by that promise must
//!   take it.
//!
//! Bugs it catches (injected mutants, `ci/loom_mutants.py m18`): the promise read before
//! the entry is linked (an arm slips between a sweep and its promise: taken a sweep late);
//! the promise stored after the sweep (the same); an unlink that does not check whether
//! the driver took the entry (the driver's count given back twice); a pending entry marked
//! CANCELLED after the shard's lock is released (a second disarmer wins the CAS too).
#![cfg(loom)]

use ctxcore::Context;
use ctxcore_loom_tests::{model, After};
use loom::thread;
use std::time::{Duration, Instant};

/// The check, once the execution's garbage is freed, that every timer entry was freed once.
fn entries_freed_once() -> After {
    vec![Box::new(|| {
        assert_eq!(
            ctxcore::__loom::timer_entries(),
            0,
            "timer entries not freed once"
        )
    })]
}

/// Milliseconds as the model's promise values (nanoseconds after the origin).
fn ms(n: u64) -> u64 {
    n * 1_000_000
}

/// A model shard whose driver has promised its next sweep by 10 ms after `origin` (an hour
/// from now, so no real time reaches it), and that origin.
fn shard_promising_10ms() -> (Instant, std::sync::Arc<ctxcore::__loom::ModelShard>) {
    let origin = Instant::now() + Duration::from_secs(3600);
    (origin, ctxcore::__loom::use_shard(origin, ms(10)))
}

#[test]
fn disarm_racing_the_sweep() {
    model(|| {
        let (origin, shard) = shard_promising_10ms();
        let driver = {
            let shard = shard.clone();
            thread::spawn(move || {
                for t in shard.sweep(ms(20)) {
                    t.fire();
                }
            })
        };
        let (ctx, handle) =
            Context::background().with_deadline(origin + Duration::from_millis(100));
        handle.cancel();
        drop(ctx);
        driver.join().unwrap();
        drop(shard);
        entries_freed_once()
    });
}

#[test]
fn cross_thread_disarm_racing_the_sweep() {
    model(|| {
        let (origin, shard) = shard_promising_10ms();
        let (ctx, handle) =
            Context::background().with_deadline(origin + Duration::from_millis(100));
        let canceller = thread::spawn(move || handle.cancel());
        let taken = shard.sweep(ms(20));
        let fired: Vec<bool> = taken.into_iter().map(|t| t.fire()).collect();
        canceller.join().unwrap();
        // A timer that lost its CAS to the disarm never decides the error (one that won may
        // still meet the cancel's error already on the node).
        assert!(ctx.is_done());
        if !fired.contains(&true) {
            assert_eq!(ctx.err(), Some(ctxcore::Error::Canceled));
        }
        drop((ctx, shard));
        entries_freed_once()
    });
}

#[test]
fn two_disarms_of_a_pending_entry() {
    model(|| {
        let (origin, shard) = shard_promising_10ms();
        let (parent, parent_handle) = Context::background().with_cancel();
        let (child, child_handle) = parent.with_deadline(origin + Duration::from_millis(100));
        let canceller = thread::spawn(move || parent_handle.cancel());
        child_handle.disarm();
        drop(child);
        canceller.join().unwrap();
        assert_eq!(parent.err(), Some(ctxcore::Error::Canceled));
        // Nothing is left for the driver: the winner unlinked the entry.
        assert!(
            shard.sweep(ms(20)).is_empty(),
            "a disarmed entry still pending"
        );
        drop((parent, shard));
        entries_freed_once()
    });
}

#[test]
fn promise_keeps_a_late_arm_in_time() {
    model(|| {
        // The driver promised its next sweep by 10 ms; that sweep promises 20 ms, the one
        // after it 30 ms.
        let (origin, shard) = shard_promising_10ms();
        let driver = {
            let shard = shard.clone();
            thread::spawn(move || {
                let first: Vec<usize> = shard.sweep(ms(20)).iter().map(|t| t.entry()).collect();
                let second: Vec<usize> = shard.sweep(ms(30)).iter().map(|t| t.entry()).collect();
                (first, second)
            })
        };
        // Due at 15 ms: after the first promise, before the second.
        let (ctx, handle) = Context::background().with_deadline(origin + Duration::from_millis(15));
        let (first, _second) = driver.join().unwrap();
        let linked = shard.links()[0];
        if !linked.wake {
            assert_eq!(
                linked.promise,
                ms(10),
                "no wake although due before the promise read"
            );
            assert!(
                first.contains(&linked.entry),
                "armed without waking the driver, yet not taken by the sweep it was promised"
            );
        }
        drop((ctx, handle, shard));
        vec![]
    });
}

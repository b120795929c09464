//! Helpers shared by the integration tests: a minimal executor and polling tools.
#![allow(dead_code)]

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::Duration;

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs a future to completion on this thread.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = TaskContext::from_waker(&waker);
    let mut fut = pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        thread::park();
    }
}

/// A waker that counts its wakes.
#[derive(Default)]
pub struct CountingWaker {
    pub wakes: AtomicUsize,
}

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
    }
}

/// Polls `fut` once with `waker`.
pub fn poll_once<F: Future + Unpin>(fut: &mut F, waker: &Waker) -> Poll<F::Output> {
    let mut cx = TaskContext::from_waker(waker);
    std::pin::Pin::new(fut).poll(&mut cx)
}

/// Generous bound for "this happens soon" on a shared 2-core machine.
pub const SOON: Duration = Duration::from_secs(5);

/// Proves a test leaked nothing: on drop, waits for ctxcore's live counts to come back to
/// what they were when the guard was made, and fails the test with the list of what is
/// still alive otherwise.
///
/// Exact under nextest (`ci/test.sh`), which runs each test in its own process. Under plain
/// `cargo test`, tests share a process and each other's contexts would show up in the
/// counts, so the guard only checks there when `CTXCORE_LEAK_CHECK=1` (with
/// `--test-threads=1`).
pub struct LeakCheck {
    baseline: Option<ctxcore::live::LiveCounts>,
}

/// True when this test runs alone in its process (nextest), or the user asked for exact
/// process-wide checks with `CTXCORE_LEAK_CHECK=1`.
pub fn isolated() -> bool {
    std::env::var("NEXTEST_EXECUTION_MODE").as_deref() == Ok("process-per-test")
        || std::env::var("CTXCORE_LEAK_CHECK").as_deref() == Ok("1")
}

pub fn leak_check() -> LeakCheck {
    LeakCheck {
        baseline: isolated().then(ctxcore::live::snapshot),
    }
}

impl Drop for LeakCheck {
    fn drop(&mut self) {
        if let Some(base) = &self.baseline {
            if !thread::panicking() {
                if let Err(report) = ctxcore::live::wait_for_baseline(base, SOON) {
                    panic!("leak check failed: {report}");
                }
            }
        }
    }
}

/// `n` iterations natively, a handful under Miri (an interpreter, ~1000x slower).
pub const fn scaled(n: usize) -> usize {
    if cfg!(miri) {
        if n / 100 > 3 {
            n / 100
        } else {
            3
        }
    } else {
        n
    }
}

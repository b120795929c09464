//! Behaviour 20: signal-bound contexts. Linux-only tests (they use real-time signals
//! and read dispositions with `sigaction`); each test uses its own signals, so they also pass
//! when run as threads of one process.
#![cfg(target_os = "linux")]

use ctxcore::signal::{notify, notify_on, SignalGuard, SignalReceived};
use ctxcore::{Context, Error};
use std::io::ErrorKind;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(10);

fn rt(n: i32) -> i32 {
    libc::SIGRTMIN() + n
}

fn raise(signal: i32) {
    // SAFETY: raising a signal whose disposition the test controls.
    assert_eq!(unsafe { libc::raise(signal) }, 0);
}

/// The installed handler address (or SIG_DFL / SIG_IGN).
fn disposition(signal: i32) -> libc::sighandler_t {
    // SAFETY: a null `act` only reads the disposition into a valid, zeroed struct.
    unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(signal, std::ptr::null(), &mut current), 0);
        current.sa_sigaction
    }
}

fn set_disposition(signal: i32, handler: libc::sighandler_t) {
    // SAFETY: installs SIG_DFL, SIG_IGN or a handler that only touches an atomic.
    unsafe {
        let mut new: libc::sigaction = std::mem::zeroed();
        new.sa_sigaction = handler;
        libc::sigemptyset(&mut new.sa_mask);
        assert_eq!(libc::sigaction(signal, &new, std::ptr::null_mut()), 0);
    }
}

fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + LONG;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_signal_cancels_with_a_named_cause() {
    let (ctx, _guard) = notify_on(&Context::background(), &[libc::SIGUSR1]).unwrap();
    assert!(!ctx.is_done());
    raise(libc::SIGUSR1);
    assert!(ctx.wait_timeout(LONG));
    assert_eq!(ctx.err(), Some(Error::Canceled));
    let cause = ctx.cause().unwrap();
    assert_eq!(cause.to_string(), "received signal SIGUSR1");
    assert_eq!(
        cause.downcast_ref::<SignalReceived>().unwrap().signal(),
        libc::SIGUSR1
    );
}

#[test]
fn notify_listens_to_sigint_and_sigterm() {
    let (ctx, guard) = notify(&Context::background()).unwrap();
    assert_ne!(disposition(libc::SIGINT), libc::SIG_DFL);
    assert_ne!(disposition(libc::SIGTERM), libc::SIG_DFL);
    raise(libc::SIGINT); // with its default disposition this would end the test process
    assert!(ctx.wait_timeout(LONG));
    assert_eq!(ctx.cause().unwrap().to_string(), "received signal SIGINT");
    // Restored by the watcher thread right after it cancelled the context.
    eventually("SIGINT's default is back", || {
        disposition(libc::SIGINT) == libc::SIG_DFL
    });
    eventually("SIGTERM's default is back", || {
        disposition(libc::SIGTERM) == libc::SIG_DFL
    });
    drop(guard);
}

#[test]
fn the_default_disposition_comes_back_after_the_signal() {
    let sig = rt(1);
    set_disposition(sig, libc::SIG_DFL);
    let (ctx, _guard) = notify_on(&Context::background(), &[sig]).unwrap();
    assert_ne!(
        disposition(sig),
        libc::SIG_DFL,
        "nothing installed while listening"
    );
    raise(sig); // with the default disposition this would kill the test process
    assert!(ctx.wait_timeout(LONG));
    eventually("SIG_DFL is back", || disposition(sig) == libc::SIG_DFL);
}

#[test]
fn the_disposition_comes_back_when_the_guard_drops_or_the_parent_is_cancelled() {
    let (a, b) = (rt(2), rt(3));
    set_disposition(a, libc::SIG_DFL);
    set_disposition(b, libc::SIG_IGN);
    let (ctx, guard) = notify_on(&Context::background(), &[a]).unwrap();
    assert_ne!(disposition(a), libc::SIG_DFL);
    drop(guard);
    assert!(ctx.is_done());
    assert_eq!(ctx.err(), Some(Error::Canceled));
    // The context leaves from an `after_func` callback, which runs on the cancelling thread
    // before `cancel` returns: the disposition is back by the time `drop` returns.
    assert_eq!(disposition(a), libc::SIG_DFL);

    let (parent, cancel) = Context::background().with_cancel();
    let (ctx, _guard) = notify_on(&parent, &[b]).unwrap();
    assert_ne!(disposition(b), libc::SIG_IGN);
    cancel.cancel();
    assert!(ctx.is_done());
    assert_eq!(disposition(b), libc::SIG_IGN);
}

static CUSTOM_CALLS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn custom_handler(_: i32) {
    CUSTOM_CALLS.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn a_previous_handler_is_restored_and_used_again() {
    let sig = rt(4);
    let custom = custom_handler as extern "C" fn(i32) as libc::sighandler_t;
    set_disposition(sig, custom);
    let (ctx, guard) = notify_on(&Context::background(), &[sig]).unwrap();
    raise(sig);
    assert!(ctx.wait_timeout(LONG));
    eventually("the custom handler is back", || disposition(sig) == custom);
    drop(guard);
    let before = CUSTOM_CALLS.load(Ordering::SeqCst);
    raise(sig);
    assert_eq!(CUSTOM_CALLS.load(Ordering::SeqCst), before + 1);
    set_disposition(sig, libc::SIG_DFL);
}

#[test]
fn the_disposition_waits_for_the_last_listener() {
    let sig = rt(5);
    set_disposition(sig, libc::SIG_DFL);
    let (first, first_guard) = notify_on(&Context::background(), &[sig]).unwrap();
    let (second, _second_guard) = notify_on(&Context::background(), &[sig, rt(6)]).unwrap();
    drop(first_guard);
    assert!(first.is_done());
    assert!(!second.is_done());
    std::thread::sleep(Duration::from_millis(20));
    assert_ne!(
        disposition(sig),
        libc::SIG_DFL,
        "restored while a context still listens"
    );
    raise(sig); // still caught for the second context
    assert!(second.wait_timeout(LONG));
    assert_eq!(
        second
            .cause()
            .unwrap()
            .downcast_ref::<SignalReceived>()
            .unwrap()
            .signal(),
        sig
    );
    eventually("SIG_DFL is back", || disposition(sig) == libc::SIG_DFL);
}

#[test]
fn every_listening_context_is_cancelled_by_one_signal() {
    let sig = libc::SIGUSR2;
    let contexts: Vec<(Context, SignalGuard)> = (0..3)
        .map(|_| notify_on(&Context::background(), &[sig]).unwrap())
        .collect();
    let (other, _other_guard) = notify_on(&Context::background(), &[rt(7)]).unwrap();
    raise(sig);
    for (ctx, _) in &contexts {
        assert!(ctx.wait_timeout(LONG));
        assert_eq!(ctx.cause().unwrap().to_string(), "received signal SIGUSR2");
    }
    assert!(
        !other.wait_timeout(Duration::from_millis(50)),
        "another signal's context fired"
    );
}

#[test]
fn bad_signal_lists_are_invalid_input() {
    let background = Context::background();
    for signals in [
        &[][..],
        &[libc::SIGKILL],
        &[libc::SIGSTOP],
        &[libc::SIGUSR1, libc::SIGKILL],
        &[0],
        &[-1],
        &[i32::MIN],
        &[libc::SIGRTMAX() + 1],
        &[200],
        &[i32::MAX],
    ] {
        let err = notify_on(&background, signals).expect_err(&format!("{signals:?} accepted"));
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{signals:?}: {err}");
    }
}

#[test]
fn a_done_parent_gives_a_context_born_done_that_installs_nothing() {
    let sig = rt(8);
    set_disposition(sig, libc::SIG_DFL);
    let (parent, cancel) = Context::background().with_cancel();
    cancel.cancel_with_cause(std::io::Error::other("parent gone"));
    let (ctx, _guard) = notify_on(&parent, &[sig]).unwrap();
    assert!(ctx.is_done());
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert_eq!(ctx.cause().unwrap().to_string(), "parent gone");
    assert_eq!(disposition(sig), libc::SIG_DFL);
}

#[test]
fn duplicate_signals_are_counted_once() {
    let sig = rt(9);
    set_disposition(sig, libc::SIG_DFL);
    let (ctx, guard) = notify_on(&Context::background(), &[sig, sig, sig]).unwrap();
    drop(guard);
    assert!(ctx.is_done());
    assert_eq!(disposition(sig), libc::SIG_DFL);
}

#[test]
fn signal_guard_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<SignalGuard>();
    let (ctx, guard) = notify_on(&Context::background(), &[rt(10)]).unwrap();
    std::thread::spawn(move || drop(guard)).join().unwrap();
    assert!(ctx.is_done());
}

/// Child-process entry for `a_second_sigterm_stops_the_process`; does nothing unless asked.
#[test]
#[ignore = "entry point of a child process started by a_second_sigterm_stops_the_process"]
fn child_second_sigterm() {
    if std::env::var_os("CTXCORE_SIGNAL_CHILD").is_none() {
        return;
    }
    let (ctx, _guard) = notify(&Context::background()).unwrap();
    // SAFETY: sends SIGTERM to this (child) process.
    unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
    assert!(ctx.wait_timeout(LONG));
    println!("CHILD: first SIGTERM caught: {}", ctx.cause().unwrap());
    eventually("SIG_DFL is back", || {
        disposition(libc::SIGTERM) == libc::SIG_DFL
    });
    // SAFETY: as above; this one is expected to end the process.
    unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
    std::thread::sleep(LONG);
    println!("CHILD: survived the second SIGTERM");
}

#[test]
fn a_second_sigterm_stops_the_process() {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_second_sigterm",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("CTXCORE_SIGNAL_CHILD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("CHILD: first SIGTERM caught: received signal SIGTERM"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!stdout.contains("survived"), "{stdout}");
    assert_eq!(
        output.status.signal(),
        Some(libc::SIGTERM),
        "{:?}",
        output.status
    );
}

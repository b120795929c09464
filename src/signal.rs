//! Contexts cancelled by a Unix signal: Go's `signal.NotifyContext` (unix only).
//!
//! [`notify`] (SIGINT and SIGTERM) and [`notify_on`] (any catchable signals) return a child
//! context that becomes done with [`Error::Canceled`](crate::Error) when one of its signals
//! arrives; its cause is a [`SignalReceived`] that displays as `received signal SIGTERM`.
//!
//! ```no_run
//! use ctxcore::Context;
//!
//! # fn main() -> std::io::Result<()> {
//! let (ctx, _guard) = ctxcore::signal::notify(&Context::background())?;
//! while !ctx.is_done() {
//!     // ... serve ...
//! #   break;
//! }
//! // A second Ctrl-C now stops the process as it would have before `notify`.
//! # Ok(())
//! # }
//! ```
//!
//! # How it works
//!
//! One process-wide registry (a `Mutex`, touched only by `notify_on` and by a context leaving)
//! lists the listening contexts. The first listener of a signal installs this module's handler
//! with `sigaction` and saves the disposition it replaces; the handler only writes the signal's
//! number to a self-pipe (async-signal-safe), and a watcher thread reads the pipe and cancels
//! every context listening to that signal. Invariants:
//!
//! 1. `LISTENING[sig]` is the number of registered contexts listening to `sig`; it changes only
//!    under the registry mutex. The handler reads it to decide whether to report the signal.
//! 2. This module's handler is installed for `sig` exactly while `LISTENING[sig] > 0` (or, after
//!    an install, until the matching restore), and the disposition it replaced is kept in the
//!    registry meanwhile.
//! 3. When `LISTENING[sig]` drops to 0 the saved disposition is put back, but only if this
//!    module's handler is still the installed one: if other code replaced it in between, that
//!    code's handler is left alone.
//! 4. A context leaves the registry exactly once, from an `after_func` callback that runs when it
//!    becomes done for any reason (a signal, its parent, its guard dropped); no context is ever
//!    cancelled while the registry mutex is held, so that callback cannot deadlock.
//!
//! The signal-hook crate supplies the list of signals that must not be caught
//! ([`signal_hook::consts::FORBIDDEN`]) and the signal names. Its own handler registry is not
//! used: a handler it installs stays installed after the last action is unregistered (the
//! signal is then silently swallowed), whereas Go's contract, and ours, is that a second
//! Ctrl-C after the context is done stops the process.
//!
//! While a signal context listens, a handler that other code had installed for the same signal
//! before is not called (as in Go); it is back in place once no signal context listens.

use crate::{CancelHandle, Context};
use std::fmt;
use std::io;
use std::os::raw::c_int;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Signal numbers this module can handle are below this bound (they travel as one byte).
const SIGNAL_BOUND: usize = 128;

/// Invariant 1: listening contexts per signal number.
///
/// Orderings: every access is SeqCst. The writers hold the registry mutex, but the reader is
/// the signal handler, on whichever thread the kernel picks; a count raised before `sigaction`
/// installs the handler must be seen by it. Changes are rare (a context starts or stops
/// listening), so the strongest order costs nothing that matters and keeps the argument short.
static LISTENING: [AtomicUsize; SIGNAL_BOUND] = [const { AtomicUsize::new(0) }; SIGNAL_BOUND];

/// Write end of the self-pipe, or -1 before the watcher starts. Set once, never closed.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    next_id: 0,
    listeners: Vec::new(),
    saved: Vec::new(),
    watcher_started: false,
});

/// The process-wide list of signal contexts.
struct Registry {
    next_id: u64,
    listeners: Vec<Listener>,
    /// Invariant 2: the disposition each installed signal had before.
    saved: Vec<(c_int, libc::sigaction)>,
    watcher_started: bool,
}

// SAFETY: `libc::sigaction` is a plain C struct of integers, a function address and a signal
// mask; it holds no pointer that the registry dereferences, so moving it between threads (under
// the mutex) is sound. (It is `!Send` on some targets only through raw-pointer-typed fields.)
unsafe impl Send for Registry {}

struct Listener {
    id: u64,
    signals: Vec<c_int>,
    cancel: Arc<CancelHandle>,
}

fn registry() -> MutexGuard<'static, Registry> {
    // No code panics while holding this mutex except on allocation failure; the registry is
    // consistent between statements, so a poisoned lock is still usable.
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Why a signal context was cancelled: the signal that arrived.
///
/// ```
/// use ctxcore::signal::SignalReceived;
///
/// # #[cfg(target_os = "linux")] {
/// let cause = SignalReceived::new(libc::SIGTERM);
/// assert_eq!(cause.to_string(), "received signal SIGTERM");
/// assert_eq!(cause.signal(), libc::SIGTERM);
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SignalReceived {
    signal: c_int,
}

impl SignalReceived {
    /// The cause for `signal` (any number; unknown ones display as a number).
    ///
    /// ```
    /// use ctxcore::signal::SignalReceived;
    ///
    /// assert_eq!(SignalReceived::new(1000).to_string(), "received signal 1000");
    /// ```
    pub fn new(signal: c_int) -> SignalReceived {
        SignalReceived { signal }
    }

    /// The signal's number.
    ///
    /// ```
    /// use ctxcore::signal::SignalReceived;
    ///
    /// assert_eq!(SignalReceived::new(2).signal(), 2);
    /// ```
    pub fn signal(&self) -> c_int {
        self.signal
    }
}

impl fmt::Display for SignalReceived {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match signal_hook::low_level::signal_name(self.signal) {
            Some(name) => write!(f, "received signal {name}"),
            None => write!(f, "received signal {}", self.signal),
        }
    }
}

impl std::error::Error for SignalReceived {}

/// Keeps a signal context listening; dropping it cancels the context (which stops listening).
///
/// ```
/// # #[cfg(target_os = "linux")] {
/// use ctxcore::Context;
///
/// let (ctx, guard) = ctxcore::signal::notify_on(&Context::background(), &[libc::SIGUSR1]).unwrap();
/// assert!(!ctx.is_done());
/// drop(guard);
/// assert_eq!(ctx.err(), Some(ctxcore::Error::Canceled));
/// # }
/// ```
#[must_use = "dropping the guard cancels the signal context at once"]
pub struct SignalGuard {
    cancel: Arc<CancelHandle>,
}

impl fmt::Debug for SignalGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignalGuard").finish_non_exhaustive()
    }
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        // The registry holds another `Arc` of the handle until the context leaves it
        // (invariant 4), so cancel explicitly rather than relying on the handle's drop.
        self.cancel.cancel();
    }
}

/// A child of `parent` cancelled by SIGINT or SIGTERM: `notify_on(parent, &[SIGINT, SIGTERM])`.
///
/// # Errors
///
/// As [`notify_on`]: an `io::Error` if the self-pipe, the watcher thread or a `sigaction`
/// cannot be set up.
///
/// ```
/// use ctxcore::Context;
///
/// let (parent, cancel) = Context::background().with_cancel();
/// let (ctx, _guard) = ctxcore::signal::notify(&parent).unwrap();
/// cancel.cancel(); // done for another reason: it stops listening
/// assert!(ctx.is_done());
/// ```
pub fn notify(parent: &Context) -> io::Result<(Context, SignalGuard)> {
    notify_on(parent, &[libc::SIGINT, libc::SIGTERM])
}

/// A child of `parent` that becomes done with `Canceled` when one of `signals` arrives, with a
/// [`SignalReceived`] cause.
///
/// While it listens, the signals do not have their previous effect (a SIGINT no longer stops
/// the process). Once the context is done, for any reason, it stops listening, and each signal
/// gets back the disposition it had before as soon as no other signal context listens to it.
/// Every signal context listening to a signal is cancelled when it arrives. If `parent` is
/// already done, the context is born done and nothing is installed.
///
/// # Errors
///
/// `InvalidInput` for an empty list, or a signal that does not exist or cannot be caught
/// safely (SIGKILL, SIGSTOP, and the fault signals SIGILL, SIGFPE, SIGSEGV); otherwise the
/// `io::Error` of a failed `pipe`, thread spawn or `sigaction`.
///
/// ```
/// # #[cfg(target_os = "linux")] {
/// use ctxcore::Context;
/// use std::io::ErrorKind;
/// use std::time::Duration;
///
/// let (ctx, _guard) = ctxcore::signal::notify_on(&Context::background(), &[libc::SIGUSR2]).unwrap();
/// // SAFETY: raising a signal this process listens to is sound.
/// unsafe { libc::raise(libc::SIGUSR2) };
/// assert!(ctx.wait_timeout(Duration::from_secs(5)));
/// assert_eq!(ctx.cause().unwrap().to_string(), "received signal SIGUSR2");
///
/// let bad = ctxcore::signal::notify_on(&Context::background(), &[libc::SIGKILL]);
/// assert_eq!(bad.unwrap_err().kind(), ErrorKind::InvalidInput);
/// # }
/// ```
pub fn notify_on(parent: &Context, signals: &[i32]) -> io::Result<(Context, SignalGuard)> {
    let signals = validate(signals)?;
    let (ctx, cancel) = parent.with_cancel();
    let cancel = Arc::new(cancel);
    let guard = SignalGuard {
        cancel: Arc::clone(&cancel),
    };
    if ctx.is_done() {
        return Ok((ctx, guard));
    }
    let id = {
        let mut registry = registry();
        start_watcher(&mut registry)?;
        listen(&mut registry, &signals)?;
        let id = registry.next_id;
        registry.next_id += 1;
        registry.listeners.push(Listener {
            id,
            signals,
            cancel,
        });
        id
    };
    // Invariant 4. If the context became done meanwhile (its parent), this runs at once here.
    // Dropping the `AfterFunc` does not stop it.
    let _ = ctx.after_func(move || leave(id));
    Ok((ctx, guard))
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// Checks every signal and removes duplicates.
fn validate(signals: &[i32]) -> io::Result<Vec<c_int>> {
    if signals.is_empty() {
        return Err(invalid(
            "ctxcore::signal::notify_on: no signal to listen to".into(),
        ));
    }
    let mut checked: Vec<c_int> = Vec::with_capacity(signals.len());
    for &signal in signals {
        if signal_hook::consts::FORBIDDEN.contains(&signal) {
            return Err(invalid(format!(
                "ctxcore::signal::notify_on: signal {signal} cannot be caught"
            )));
        }
        if signal <= 0 || signal as usize >= SIGNAL_BOUND || !exists(signal) {
            return Err(invalid(format!(
                "ctxcore::signal::notify_on: {signal} is not a signal"
            )));
        }
        if !checked.contains(&signal) {
            checked.push(signal);
        }
    }
    Ok(checked)
}

/// Whether the system knows `signal` (and lets a process query its disposition).
fn exists(signal: c_int) -> bool {
    // SAFETY: a null `act` only reads the disposition into `old`, a valid, writable sigaction.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(signal, std::ptr::null(), &mut old) == 0
    }
}

/// Creates the self-pipe and the watcher thread, once per process.
fn start_watcher(registry: &mut Registry) -> io::Result<()> {
    if registry.watcher_started {
        return Ok(());
    }
    let mut fds = [0 as c_int; 2];
    // SAFETY: `fds` is a valid array of two ints for `pipe` to fill.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let [read_fd, write_fd] = fds;
    // SAFETY: both descriptors were just returned by `pipe` and are owned here; `fcntl` with
    // these commands only changes their flags.
    let flags_set = unsafe {
        libc::fcntl(read_fd, libc::F_SETFD, libc::FD_CLOEXEC) == 0
            && libc::fcntl(write_fd, libc::F_SETFD, libc::FD_CLOEXEC) == 0
            // A full pipe must drop a byte rather than block the signal handler.
            && libc::fcntl(write_fd, libc::F_SETFL, libc::O_NONBLOCK) == 0
    };
    let started = if flags_set {
        std::thread::Builder::new()
            .name("ctxcore-signal".into())
            .spawn(move || watch(read_fd))
            .map(drop)
    } else {
        Err(io::Error::last_os_error())
    };
    if let Err(e) = started {
        // SAFETY: the descriptors are ours and no thread uses them (the watcher did not start).
        unsafe {
            libc::close(read_fd);
            libc::close(write_fd);
        }
        return Err(e);
    }
    // Release: pairs with the Acquire load in the handler, which then writes to a live pipe.
    WAKE_FD.store(write_fd, Ordering::Release);
    registry.watcher_started = true;
    Ok(())
}

/// The watcher thread: turns each signal number read from the pipe into cancellations.
fn watch(read_fd: c_int) {
    let mut buf = [0u8; 64];
    loop {
        // SAFETY: `buf` is valid for `buf.len()` bytes; `read_fd` stays open for the process.
        let n = unsafe { libc::read(read_fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if n == 0 {
            return;
        }
        for &byte in &buf[..n as usize] {
            deliver(c_int::from(byte));
        }
    }
}

/// Cancels every context listening to `signal`, outside the registry mutex (invariant 4).
fn deliver(signal: c_int) {
    let targets: Vec<Arc<CancelHandle>> = registry()
        .listeners
        .iter()
        .filter(|listener| listener.signals.contains(&signal))
        .map(|listener| Arc::clone(&listener.cancel))
        .collect();
    for cancel in targets {
        cancel.cancel_with_cause(SignalReceived::new(signal));
    }
}

/// Counts a new listener in and installs the handler where it is the first (invariants 1, 2).
fn listen(registry: &mut Registry, signals: &[c_int]) -> io::Result<()> {
    for (done, &signal) in signals.iter().enumerate() {
        // Counted before the handler goes in, so a signal arriving right after is reported.
        LISTENING[signal as usize].fetch_add(1, Ordering::SeqCst); // SeqCst: see `LISTENING`
        if registry.saved.iter().all(|&(s, _)| s != signal) {
            if let Err(e) = install(registry, signal) {
                // Roll back this call: uncount everything counted, restore what it installed.
                for &undo in &signals[..=done] {
                    if LISTENING[undo as usize].fetch_sub(1, Ordering::SeqCst) == 1 {
                        restore(registry, undo);
                    }
                }
                return Err(e);
            }
        }
    }
    Ok(())
}

/// A context leaves the registry (invariant 4); last listeners restore their signals.
fn leave(id: u64) {
    let listener = {
        let mut registry = registry();
        let Some(index) = registry.listeners.iter().position(|l| l.id == id) else {
            return;
        };
        let listener = registry.listeners.swap_remove(index);
        for &signal in &listener.signals {
            if LISTENING[signal as usize].fetch_sub(1, Ordering::SeqCst) == 1 {
                restore(&mut registry, signal);
            }
        }
        listener
    };
    // Dropped outside the mutex: dropping a cancel handle may run callbacks.
    drop(listener);
}

/// The handler's address, as `sigaction` stores it.
fn handler_address() -> libc::sighandler_t {
    on_signal as extern "C" fn(c_int) as libc::sighandler_t
}

/// Installs this module's handler for `signal` and saves the disposition it replaces.
fn install(registry: &mut Registry, signal: c_int) -> io::Result<()> {
    // SAFETY: an all-zero sigaction is a valid value of this plain C struct; `sa_mask` is then
    // initialised with `sigemptyset`, and `sigaction` reads `new` and writes `old`, both valid.
    // The handler installed is async-signal-safe (see `on_signal`).
    unsafe {
        let mut new: libc::sigaction = std::mem::zeroed();
        new.sa_sigaction = handler_address();
        new.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut new.sa_mask);
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(signal, &new, &mut old) != 0 {
            return Err(io::Error::last_os_error());
        }
        registry.saved.push((signal, old));
    }
    Ok(())
}

/// Puts back the disposition saved for `signal`, if this module's handler is still the one
/// installed (invariant 3).
fn restore(registry: &mut Registry, signal: c_int) {
    let Some(index) = registry.saved.iter().position(|&(s, _)| s == signal) else {
        return;
    };
    let (_, old) = registry.saved.swap_remove(index);
    // SAFETY: `current` and `old` are valid sigaction values (`old` was filled in by the
    // kernel in `install`); a null `act` only reads the current disposition.
    unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(signal, std::ptr::null(), &mut current) == 0
            && current.sa_sigaction == handler_address()
        {
            libc::sigaction(signal, &old, std::ptr::null_mut());
        }
    }
}

/// The signal handler: reports `signal` on the self-pipe if a context listens to it.
///
/// Async-signal-safe: two atomic loads, one `write` to a non-blocking pipe, and `errno` saved
/// and restored around it.
extern "C" fn on_signal(signal: c_int) {
    let Ok(index) = usize::try_from(signal) else {
        return;
    };
    // SeqCst: pairs with the increments in `listen` (see `LISTENING`).
    if index >= SIGNAL_BOUND || LISTENING[index].load(Ordering::SeqCst) == 0 {
        return;
    }
    // Acquire: pairs with the Release store in `start_watcher`.
    let fd = WAKE_FD.load(Ordering::Acquire);
    if fd < 0 {
        return;
    }
    let byte = signal as u8;
    let saved = errno::get();
    // SAFETY: `write` is async-signal-safe; `byte` is valid for one byte; `fd` is the pipe's
    // write end, which is never closed once published. A full pipe fails with EAGAIN (the
    // watcher still has at least one unread report of this signal pending, or will drain soon).
    unsafe {
        libc::write(fd, std::ptr::addr_of!(byte).cast(), 1);
    }
    errno::set(saved);
}

/// Saving and restoring `errno` in the signal handler, where the platform exposes it.
mod errno {
    use std::os::raw::c_int;

    #[cfg(any(target_os = "linux", target_os = "emscripten", target_os = "redox"))]
    fn location() -> Option<*mut c_int> {
        // SAFETY: returns the calling thread's errno slot; always valid for that thread.
        Some(unsafe { libc::__errno_location() })
    }

    #[cfg(any(
        target_os = "macos",
        target_os = "ios",
        target_os = "freebsd",
        target_os = "dragonfly"
    ))]
    fn location() -> Option<*mut c_int> {
        // SAFETY: returns the calling thread's errno slot; always valid for that thread.
        Some(unsafe { libc::__error() })
    }

    #[cfg(any(target_os = "android", target_os = "netbsd", target_os = "openbsd"))]
    fn location() -> Option<*mut c_int> {
        // SAFETY: returns the calling thread's errno slot; always valid for that thread.
        Some(unsafe { libc::__errno() })
    }

    #[cfg(not(any(
        target_os = "linux",
        target_os = "emscripten",
        target_os = "redox",
        target_os = "macos",
        target_os = "ios",
        target_os = "freebsd",
        target_os = "dragonfly",
        target_os = "android",
        target_os = "netbsd",
        target_os = "openbsd"
    )))]
    fn location() -> Option<*mut c_int> {
        None
    }

    pub(super) fn get() -> c_int {
        // SAFETY: the pointer is this thread's errno slot (see `location`).
        location().map_or(0, |p| unsafe { *p })
    }

    pub(super) fn set(value: c_int) {
        if let Some(p) = location() {
            // SAFETY: the pointer is this thread's errno slot (see `location`).
            unsafe { *p = value };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_rejects_what_cannot_be_caught_and_dedupes() {
        assert_eq!(
            validate(&[libc::SIGINT, libc::SIGTERM, libc::SIGINT]).unwrap(),
            vec![libc::SIGINT, libc::SIGTERM]
        );
        for bad in [
            &[][..],
            &[libc::SIGKILL],
            &[libc::SIGSTOP],
            &[libc::SIGSEGV],
            &[0],
            &[-3],
            &[SIGNAL_BOUND as i32],
        ] {
            let err = validate(bad).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
    }

    #[test]
    fn the_cause_names_known_signals_and_numbers_others() {
        assert_eq!(
            SignalReceived::new(libc::SIGINT).to_string(),
            "received signal SIGINT"
        );
        assert_eq!(SignalReceived::new(-7).to_string(), "received signal -7");
    }

    #[test]
    fn the_handler_ignores_signals_nobody_listens_to() {
        // Out of range, and in range with no listener: no write, no panic, errno kept.
        errno::set(libc::EINTR);
        on_signal(-1);
        on_signal(SIGNAL_BOUND as c_int);
        on_signal(libc::SIGWINCH);
        assert_eq!(errno::get(), libc::EINTR);
    }
}

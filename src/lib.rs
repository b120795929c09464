//! # ctxcore
//!
//! Go's `context`, for Rust threads and futures alike: cancellation trees, deadlines,
//! request-scoped values and one done signal, on a lock-free core.
//!
//! ```
//! use ctxcore::{Context, Error};
//! use std::time::Duration;
//!
//! // A server-wide root, one request under a deadline, one sub-task under the request.
//! let root = Context::background();
//! let (request, cancel_request) = root.with_timeout(Duration::from_secs(5));
//! let request = request.with_value("trace-id-1");
//! let (subtask, _cancel_subtask) = request.with_cancel();
//!
//! let worker = std::thread::spawn(move || {
//!     subtask.wait(); // blocks until the request (or the subtask) is done
//!     (subtask.err(), subtask.value::<&str>().copied())
//! });
//! cancel_request.cancel(); // the client went away
//! assert_eq!(worker.join().unwrap(), (Some(Error::Canceled), Some("trace-id-1")));
//! assert!(!root.is_done());
//! ```
//!
//! # Deadlines on a clock of your choice
//!
//! [`Context::background`] measures deadlines with `std::time::Instant`. A root made with
//! [`Context::root`] uses the [`clock::Clock`] it is given for its whole tree: a manual
//! clock that a test advances (each `advance` fires what it reaches before it returns), or
//! (feature `tokio`) the runtime's clock, which `tokio::time::pause()` drives.
//!
//! ```
//! use ctxcore::{clock::Clock, Context};
//! use std::time::Duration;
//!
//! let clock = Clock::manual();
//! let (ctx, _cancel) = Context::root(&clock).with_timeout(Duration::from_secs(30));
//! clock.advance(Duration::from_secs(30)); // no real time passes
//! assert!(ctx.err().unwrap().is_timeout());
//! ```
//!
//! # A root shared by every thread
//!
//! A server derives every request from one root, from every worker thread at once. Make
//! that root with [`Context::with_cancel_shared`]: its children register on per-thread
//! stripes (hidden children of it, each on cache lines of its own), so derives and drops on
//! different threads do not all write one cache line. It behaves as
//! [`with_cancel`](Context::with_cancel) in every other way.
//!
//! # Memory
//!
//! Heap bytes per live context on 64-bit Linux: a cancellable child 72; a child with its
//! own deadline about 154 (the node and a 72-byte timer entry, plus the timer wheel's
//! pointer to it); [`Context::with_value`] 88 plus the value while at most four distinct
//! value types are visible (more move the table to the heap: 16 bytes a slot); roots
//! nothing. A thread in [`Context::wait`] allocates nothing; a pending `done()` future
//! holds one 72-byte waiter entry.
//!
//! # Internals
//!
//! A chapter per file, each with its algorithm, invariants and orderings:
//!
//! - `state.rs`: the state word (bit table, transitions). `is_done()` is one Acquire load.
//! - `list.rs`: the intrusive lock-free listener list (Harris–Michael with a *close*
//!   operation); `list/refs.rs`: the claims on an entry (count, LINKED, TIMER) and its
//!   release; `list/grave.rs`: batched epoch reclamation; `list/pool.rs`: each thread's
//!   spare entry memory.
//! - `cancel.rs`: one cancel end to end: the CAS, the close, the iterative walk.
//! - `wait.rs`: waiters for futures and timed thread waits on one `AtomicWaker` mechanism;
//!   `sleep.rs`: threads in `wait()` on one futex word per node, woken by one call.
//! - `callback.rs`: `after_func` and the claim protocol of `stop()`.
//! - `inert.rs`: contexts that can never be done any more, and what they let go.
//! - `timer/`: the process-wide timer driver (the system clock's) and its hashed wheel;
//!   `timer/shard.rs`: the per-thread shards a deadline waits in until the driver sweeps
//!   it, so a deadline disarmed in time never leaves its thread.
//! - `clock/`: clocks chosen per tree; the deadline queue of manual and tokio clocks.
//! - `value.rs`: the flattened value map.
//! - `stripe.rs`: shared roots and their per-thread stripes.
//! - `live.rs`: leak counters.
//! - `sync.rs`: the std/loom shim everything above imports from.

#![warn(missing_docs)]
// Under loom the timer driver and the std leak counters are not built; their helpers are unused.
#![cfg_attr(loom, allow(dead_code))]

mod callback;
mod cancel;
pub mod clock;
mod context;
mod error;
mod handle;
mod inert;
mod list;
mod node;
mod sleep;
mod spare;
mod state;
mod stripe;
mod sync;
mod timer;
mod value;
mod wait;

pub mod live;

// Structured concurrency and signal contexts (built on the std shim only: not under loom).
#[cfg(not(loom))]
pub mod group;
#[cfg(all(unix, not(loom)))]
pub mod signal;

// Per-request contexts for HTTP servers and deadline propagation for clients.
#[cfg(all(feature = "http", not(loom)))]
pub mod http;

#[cfg(loom)]
#[doc(hidden)]
#[path = "loom_hooks.rs"]
pub mod __loom;

pub use callback::AfterFunc;
pub use context::Context;
pub use error::{Cause, Error};
pub use handle::CancelHandle;
pub use wait::{Done, DoneOwned};

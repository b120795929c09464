//! "The Forgotten Sender" (Jacob Walker, Ardan Labs): a worker blocked forever sending a result
//! that nobody waits for any more, and its fixes with ctxcore, on threads and on futures.
//!
//! `process` gives a 200 ms search 100 ms. The leaky port hands the worker the context, but the
//! worker never looks at it: after the timeout it blocks forever on a rendezvous send, and keeps
//! its clone of the context (and its thread) alive; `ctxcore::live` shows it. The fixes:
//!
//! * `process_buffered`: Go's fix, a channel with room for the one result (the worker still
//!   runs its whole search, then exits);
//! * `process_group`: the worker is a `Group` task whose search watches the context, and the
//!   group joins it: nothing can outlive `process`;
//! * `process_async`: the search future raced against the context with `ctx.run`, and
//!   dropped when the deadline wins;
//! * `process_async_group`: the same worker as an async group task.
//!
//! Run with `cargo run --example forgotten_sender --features tokio`.

use ctxcore::group::Group;
use ctxcore::live::{self, LiveCounts};
use ctxcore::Context;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a search takes.
pub const SEARCH_TIME: Duration = Duration::from_millis(200);
/// How long `process` waits for it.
pub const PROCESS_TIMEOUT: Duration = Duration::from_millis(100);

/// Why `process` gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessError {
    /// The deadline passed before the search answered.
    Canceled(ctxcore::Error),
    /// The worker went away without an answer.
    WorkerLost,
}

impl fmt::Display for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcessError::Canceled(e) => write!(f, "search canceled: {e}"),
            ProcessError::WorkerLost => f.write_str("search worker lost"),
        }
    }
}

impl std::error::Error for ProcessError {}

impl From<ctxcore::Error> for ProcessError {
    fn from(e: ctxcore::Error) -> ProcessError {
        ProcessError::Canceled(e)
    }
}

/// The search, blind to any context: it always takes `SEARCH_TIME`.
pub fn search_blind(term: &str) -> String {
    std::thread::sleep(SEARCH_TIME);
    format!("some value for {term}")
}

/// The search, stopping as soon as `ctx` is done.
pub fn search(ctx: &Context, term: &str) -> Result<String, ctxcore::Error> {
    if ctx.wait_timeout(SEARCH_TIME) {
        return Err(ctx.err().unwrap_or(ctxcore::Error::Canceled));
    }
    Ok(format!("some value for {term}"))
}

/// The search as a future (it is cancelled by being dropped).
pub async fn search_async(term: &str) -> String {
    tokio::time::sleep(SEARCH_TIME).await;
    format!("some value for {term}")
}

// ---- the leak ------------------------------------------------------------------------------

/// Listing 4, ported: one results channel without room (Go's unbuffered `chan result`) that
/// outlives each call. The worker gets the context but only sends blindly.
pub struct LeakySearcher {
    tx: SyncSender<String>,
    rx: Mutex<Receiver<String>>,
    blocked: Arc<AtomicUsize>,
}

impl Default for LeakySearcher {
    fn default() -> Self {
        let (tx, rx) = mpsc::sync_channel(0);
        LeakySearcher {
            tx,
            rx: Mutex::new(rx),
            blocked: Arc::new(AtomicUsize::new(0)),
        }
    }
}

impl LeakySearcher {
    /// Waits `PROCESS_TIMEOUT` for a search that takes `SEARCH_TIME`: the worker is forgotten.
    pub fn process(&self, term: &str) -> Result<String, ProcessError> {
        let (ctx, _cancel) = Context::background().with_timeout(PROCESS_TIMEOUT);
        let tx = self.tx.clone();
        let blocked = self.blocked.clone();
        let term = term.to_string();
        let worker_ctx = ctx.clone();
        std::thread::spawn(move || {
            let _ctx = worker_ctx; // handed over, never consulted: the bug
            let record = search_blind(&term);
            blocked.fetch_add(1, Ordering::SeqCst);
            // Blocks until someone receives: nobody will while this searcher lives.
            let _ = tx.send(record);
            blocked.fetch_sub(1, Ordering::SeqCst);
        });
        let rx = self.rx.lock().unwrap();
        let deadline = std::time::Instant::now() + PROCESS_TIMEOUT;
        loop {
            // Go's `select` on `ctx.Done()` and `ch`, as a bounded receive.
            match rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
                Ok(record) => return Ok(record),
                Err(RecvTimeoutError::Timeout) if ctx.is_done() => {
                    return Err(ctx.err().unwrap().into())
                }
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return Err(ProcessError::WorkerLost),
            }
        }
    }

    /// Workers stuck on their send right now.
    pub fn blocked_workers(&self) -> usize {
        self.blocked.load(Ordering::SeqCst)
    }
}

// ---- the fixes -----------------------------------------------------------------------------

/// Go's fix (Listing 5): a channel with room for the result, so the send never blocks.
pub fn process_buffered(term: &str) -> Result<String, ProcessError> {
    let (ctx, _cancel) = Context::background().with_timeout(PROCESS_TIMEOUT);
    let (tx, rx) = mpsc::sync_channel(1);
    let term = term.to_string();
    std::thread::spawn(move || {
        let _ = tx.send(search_blind(&term));
    });
    match rx.recv_timeout(PROCESS_TIMEOUT) {
        Ok(record) => Ok(record),
        Err(RecvTimeoutError::Timeout) => {
            ctx.wait();
            Err(ctx.err().unwrap().into())
        }
        Err(RecvTimeoutError::Disconnected) => Err(ProcessError::WorkerLost),
    }
}

/// ctxcore's fix on threads: the worker is a group task that watches its context; the group
/// joins it, so nothing outlives the call.
pub fn process_group(term: &str) -> Result<String, ProcessError> {
    let (ctx, _cancel) = Context::background().with_timeout(PROCESS_TIMEOUT);
    let (group, _group_ctx) = Group::<ctxcore::Error>::with_context(&ctx);
    let (tx, rx) = mpsc::sync_channel(1);
    let term = term.to_string();
    group.spawn(move |ctx| {
        let record = search(&ctx, &term)?;
        let _ = tx.send(record);
        Ok(())
    });
    match group.wait() {
        Ok(()) => rx.recv().map_err(|_| ProcessError::WorkerLost),
        Err(e) => Err(e
            .into_task()
            .map_or(ProcessError::WorkerLost, ProcessError::from)),
    }
}

/// ctxcore's fix on futures: the search races the deadline and is dropped when it loses.
pub async fn process_async(term: &str) -> Result<String, ProcessError> {
    let (ctx, _cancel) = Context::background().with_timeout(PROCESS_TIMEOUT);
    Ok(ctx.run(search_async(term)).await?)
}

/// The same as an async group task sending on a channel: the send races the context too.
pub async fn process_async_group(term: &str) -> Result<String, ProcessError> {
    let (ctx, _cancel) = Context::background().with_timeout(PROCESS_TIMEOUT);
    let (group, _group_ctx) = Group::<ctxcore::Error>::with_context(&ctx);
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let term = term.to_string();
    group.spawn_async(move |ctx| async move {
        let record = ctx.run(search_async(&term)).await?;
        let _ = ctx.run(tx.send(record)).await?;
        Ok(())
    });
    match group.wait_async().await {
        Ok(()) => rx.recv().await.ok_or(ProcessError::WorkerLost),
        Err(e) => Err(e
            .into_task()
            .map_or(ProcessError::WorkerLost, ProcessError::from)),
    }
}

/// Whether everything ctxcore counts is back to `baseline` within `within`.
pub fn leak_check(baseline: &LiveCounts, within: Duration) -> Result<(), String> {
    live::wait_for_baseline(baseline, within).map_err(|report| report.to_string())
}

/// The verdict line printed for a variant.
fn report(name: &str, result: &Result<String, ProcessError>, leak: &Result<(), String>) {
    let result = match result {
        Ok(record) => format!("received {record:?}"),
        Err(e) => format!("{e}"),
    };
    match leak {
        Ok(()) => println!("{name:>22}: {result}; leak check: nothing left behind"),
        Err(report) => println!("{name:>22}: {result}; leak check: LEAK, {report}"),
    }
}

#[allow(dead_code)] // `main` is unused when the tests include this file as a module
fn main() {
    // Settling time for the leak check: a worker that is not leaked is gone well before this.
    let settle = SEARCH_TIME * 2;

    let baseline = live::snapshot();
    let searcher = LeakySearcher::default();
    let result = searcher.process("gopher");
    std::thread::sleep(SEARCH_TIME); // give the worker time to finish its search
    report("leaky (threads)", &result, &leak_check(&baseline, settle));
    println!(
        "{:>22}  {} worker(s) blocked forever on their send",
        "",
        searcher.blocked_workers()
    );
    drop(searcher); // releases them: their sends fail once the receiver is gone
    report(
        "leaky, searcher dropped",
        &result,
        &leak_check(&baseline, settle),
    );

    let baseline = live::snapshot();
    let result = process_buffered("gopher");
    report(
        "buffered (Go's fix)",
        &result,
        &leak_check(&baseline, settle),
    );

    let baseline = live::snapshot();
    let result = process_group("gopher");
    report("group (threads)", &result, &leak_check(&baseline, settle));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let baseline = live::snapshot();
    let result = runtime.block_on(process_async("gopher"));
    report("ctx.run (futures)", &result, &leak_check(&baseline, settle));

    let baseline = live::snapshot();
    let result = runtime.block_on(process_async_group("gopher"));
    report("group (futures)", &result, &leak_check(&baseline, settle));
}

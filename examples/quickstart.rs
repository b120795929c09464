//! ctxcore in one screen: workers on threads and on futures share one request context with
//! a deadline; the deadline stops them all together, and each reports what it saw.
//!
//! Run: `cargo run --release --example quickstart`

use ctxcore::{Context, Error};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

#[derive(Debug)]
struct RequestId(u64);

fn main() {
    let started = Instant::now();
    let root = Context::background();

    // One request: a 200 ms budget and a request id every worker can read.
    let (request, cancel_request) = root.with_timeout(Duration::from_millis(200));
    let request = request.with_value(RequestId(42));

    let _logged = request.after_func({
        let request = request.clone();
        move || {
            println!(
                "[after_func] request {:?} done ({}) on thread {:?}",
                request.value::<RequestId>().map(|r| r.0),
                request.err().map_or("live".into(), |e| e.to_string()),
                thread::current().name().unwrap_or("?"),
            );
        }
    });

    // Threads: a busy loop that checks the context, and a thread that blocks on it.
    let mut threads = Vec::new();
    for id in 1..=2 {
        let ctx = request.clone();
        threads.push(thread::spawn(move || {
            let mut steps = 0u64;
            let err = loop {
                if let Err(e) = ctx.check() {
                    break e;
                }
                thread::sleep(Duration::from_millis(5)); // a slice of real work
                steps += 1;
            };
            format!("thread worker {id}: stopped after {steps} steps: {err}")
        }));
    }
    {
        let ctx = request.clone();
        threads.push(thread::spawn(move || {
            ctx.wait();
            format!("thread waiter: woke up: {}", ctx.err().unwrap())
        }));
    }

    // Futures: the same context on a tokio runtime.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("tokio runtime");
    let ctx = request.clone();
    let async_report = runtime.block_on(async move {
        let slow_call = {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                // A call that would take 10 s, raced against the request's deadline.
                let r = ctx.run(tokio::time::sleep(Duration::from_secs(10))).await;
                format!("future slow_call: {:?}", r.map(|_| "finished"))
            })
        };
        let ticker = {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let mut ticks = 0u32;
                let mut interval = tokio::time::interval(Duration::from_millis(20));
                loop {
                    tokio::select! {
                        _ = ctx.done() => break,
                        _ = interval.tick() => ticks += 1,
                    }
                }
                format!("future ticker: {ticks} ticks, then {}", ctx.err().unwrap())
            })
        };
        vec![slow_call.await.unwrap(), ticker.await.unwrap()]
    });

    for t in threads {
        println!("{}", t.join().unwrap());
    }
    for line in async_report {
        println!("{line}");
    }
    assert_eq!(request.err(), Some(Error::DeadlineExceeded));
    println!(
        "request: {} after {:?} (budget 200 ms); root still live: {}",
        request.err().unwrap(),
        started.elapsed(),
        !root.is_done()
    );

    // Explicit cancellation with a cause, through a tree of sub-tasks.
    let (server, shutdown) = root.with_cancel();
    let shutdown = Arc::new(shutdown);
    let subtasks: Vec<_> = (0..3).map(|_| server.with_cancel()).collect();
    shutdown.cancel_with_cause("SIGTERM: shutting down");
    for (i, (ctx, _handle)) in subtasks.iter().enumerate() {
        println!(
            "subtask {i}: {} (cause: {})",
            ctx.err().unwrap(),
            ctx.cause().unwrap()
        );
    }
    drop(cancel_request);
}

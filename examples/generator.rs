//! Generators stopped by their consumer's cancel (the context-exit examples of the seed
//! "Goroutine exit and leaks", ported).
//!
//! * `integers`: an async generator of 1, 2, 3, ... on a channel with no spare room. Each send
//!   races the context (`ctx.run`), so when the consumer has read enough and cancels, the
//!   generator stops even while it is blocked on a full channel.
//! * `ticker`: a worker thread that counts ticks until its context is cancelled (the seed's
//!   `select` on `ctx.Done()` and `time.After`).
//!
//! Run with `cargo run --example generator`.

use ctxcore::{Context, Error};
use std::time::Duration;

/// Sends 1, 2, 3, ... on `tx` until `ctx` is done (returns its error) or the receiver is gone.
pub async fn integers(ctx: Context, tx: tokio::sync::mpsc::Sender<u64>) -> Result<u64, Error> {
    let mut n = 1;
    loop {
        if ctx.run(tx.send(n)).await?.is_err() {
            return Ok(n - 1); // the consumer dropped the receiver
        }
        n += 1;
    }
}

/// Reads `count` integers from a generator, then cancels it, and returns what it read and how
/// the generator ended (it must have stopped by then: it is awaited).
pub async fn take_then_cancel(count: usize) -> (Vec<u64>, Result<u64, Error>) {
    let (ctx, cancel) = Context::background().with_cancel();
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let generator = tokio::spawn(integers(ctx, tx));
    let mut taken = Vec::with_capacity(count);
    while taken.len() < count {
        match rx.recv().await {
            Some(n) => taken.push(n),
            None => break,
        }
    }
    // Stop the generator; keep `rx` alive, so only the context can free it from its send.
    cancel.cancel();
    let ended = generator.await.expect("the generator does not panic");
    drop(rx);
    (taken, ended)
}

/// Counts ticks of `period` on a thread until `ctx` is done; returns the count.
pub fn ticker(ctx: Context, period: Duration) -> std::thread::JoinHandle<u32> {
    std::thread::spawn(move || {
        let mut ticks = 0;
        // `wait_timeout` is the `select` on `ctx.Done()` and `time.After(period)`.
        while !ctx.wait_timeout(period) {
            ticks += 1;
            println!("ticker: tick {ticks}");
        }
        println!("ticker: exit ({})", ctx.err().unwrap());
        ticks
    })
}

#[allow(dead_code)] // `main` is unused when the tests include this file as a module
fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a tokio runtime");
    let (taken, ended) = runtime.block_on(take_then_cancel(5));
    for n in &taken {
        println!("{n}");
    }
    println!("generator stopped: {}", ended.unwrap_err());

    let (ctx, cancel) = Context::background().with_cancel();
    let ticks = ticker(ctx, Duration::from_millis(300));
    std::thread::sleep(Duration::from_millis(1000));
    cancel.cancel();
    println!("ticker counted {} ticks", ticks.join().unwrap());
}

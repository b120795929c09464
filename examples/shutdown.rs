//! The errgroup shutdown program of the seed "Go goroutine concurrency", ported: an HTTP server
//! (hyper 1), a member that stops on `GET /shutdown`, and a member that stops on SIGINT or
//! SIGTERM, in one `Group`. Whichever member exits first cancels the group's context, and the
//! others follow; the server then shuts down gracefully, bounded by a timeout.
//!
//! ```text
//! cargo run --example shutdown --features tokio -- 8889    # port; default 0 = any free port
//! curl http://127.0.0.1:8889/hello
//! curl http://127.0.0.1:8889/shutdown                      # or press Ctrl-C
//! ```
//!
//! The port can also come from the `CTXCORE_SHUTDOWN_PORT` environment variable, and the
//! graceful shutdown's bound (default 3 s) from `CTXCORE_SHUTDOWN_GRACE_MS`. The server binds
//! 127.0.0.1 only.

use ctxcore::group::{Group, GroupError};
use ctxcore::signal::{self, SignalReceived};
use ctxcore::{live, Context};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::fmt;
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// How long open connections get to finish once the server stops accepting.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);

/// Why the program stopped: the first member of the group to exit says.
#[derive(Debug)]
pub enum Exit {
    /// SIGINT or SIGTERM arrived (the cause's text, e.g. "received signal SIGTERM").
    Signal(String),
    /// `GET /shutdown` was requested.
    ShutdownRequested,
    /// The server failed.
    Io(io::Error),
    /// Open connections did not finish within the shutdown timeout.
    ShutdownTimedOut,
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Signal(cause) => f.write_str(cause),
            Exit::ShutdownRequested => f.write_str("shutdown requested"),
            Exit::Io(e) => write!(f, "server error: {e}"),
            Exit::ShutdownTimedOut => f.write_str("graceful shutdown timed out"),
        }
    }
}

impl Exit {
    /// A stop asked for from outside (a signal or `/shutdown`), as opposed to a failure.
    pub fn is_clean(&self) -> bool {
        matches!(self, Exit::Signal(_) | Exit::ShutdownRequested)
    }
}

/// Answers `/hello` and `/shutdown` (which tells the shutdown member).
async fn handle(
    req: Request<Incoming>,
    shutdown: mpsc::Sender<()>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/hello") => (StatusCode::OK, "Hello from ctxcore\n"),
        (_, "/shutdown") => {
            let _ = shutdown.try_send(());
            (StatusCode::OK, "shutting down\n")
        }
        _ => (StatusCode::NOT_FOUND, "not found\n"),
    };
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    Ok(response)
}

/// The server member: accepts until the group's context is done, then shuts down gracefully
/// within `grace`.
async fn serve_http(
    ctx: Context,
    listener: TcpListener,
    shutdown: mpsc::Sender<()>,
    grace: Duration,
) -> Result<(), Exit> {
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            _ = ctx.done() => break,
            accepted = listener.accept() => {
                let (stream, _) = accepted.map_err(Exit::Io)?;
                let shutdown = shutdown.clone();
                let service = service_fn(move |req| handle(req, shutdown.clone()));
                let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        }
    }
    drop(listener);
    println!("shutting down server...");
    // Go's `server.Shutdown(timeoutCtx)`: the wait for open connections races a deadline.
    let (deadline, _cancel) = Context::background().with_timeout(grace);
    match deadline.run(graceful.shutdown()).await {
        Ok(()) => Ok(()),
        Err(_) => {
            // Reported here too: when a signal or `/shutdown` ended the group, theirs is the
            // failure `wait` returns.
            println!("graceful shutdown timed out after {grace:?}: open connections cut");
            Err(Exit::ShutdownTimedOut)
        }
    }
}

/// Runs the three members on `listener` until one of them exits; `ready` is called once the
/// signal handlers are in place (so a signal sent after it is handled).
pub async fn serve(
    parent: &Context,
    listener: TcpListener,
    grace: Duration,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), GroupError<Exit>> {
    let (group, ctx) = Group::<Exit>::with_context(parent);
    let (signal_ctx, signal_guard) =
        signal::notify(&ctx).map_err(|e| GroupError::Task(Exit::Io(e)))?;
    let (shutdown_tx, mut shutdown_rx) = mpsc::channel::<()>(1);
    let addr = listener
        .local_addr()
        .map_err(|e| GroupError::Task(Exit::Io(e)))?;

    // g1: the HTTP server; it stops when the group's context is done.
    group.spawn_async(move |ctx| serve_http(ctx, listener, shutdown_tx, grace));

    // g2: `/shutdown` ends the group (and so the server).
    group.spawn_async(|ctx| async move {
        tokio::select! {
            Some(()) = shutdown_rx.recv() => {
                println!("server closed");
                Err(Exit::ShutdownRequested)
            }
            _ = ctx.done() => {
                println!("errgroup exit");
                Ok(())
            }
        }
    });

    // g3: SIGINT / SIGTERM ends the group. Its signal context is a child of the group's, so
    // it also stops listening (and the signals get their default back) when another member
    // ends the group.
    group.spawn_async(|_ctx| async move {
        let _guard = signal_guard;
        signal_ctx.done().await;
        let cause = signal_ctx.cause().expect("a done context has a cause");
        match cause.downcast_ref::<SignalReceived>() {
            Some(signal) => Err(Exit::Signal(signal.to_string())),
            None => Ok(()), // the group ended first
        }
    });

    ready(addr);
    let result = group.wait_async().await;
    println!("group context: {}", ctx.err().expect("done after wait"));
    result
}

/// The whole program on `port` (0: any free port), giving open connections `grace` to finish
/// once it stops: returns the process exit code.
pub fn run(port: u16, grace: Duration) -> i32 {
    let baseline = live::snapshot();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start a runtime: {e}");
            return 1;
        }
    };
    let result = runtime.block_on(async {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .await
            .map_err(|e| GroupError::Task(Exit::Io(e)))?;
        serve(&Context::background(), listener, grace, |addr| {
            println!("listening on http://{addr}");
            let _ = io::stdout().flush();
        })
        .await
    });
    drop(runtime);
    let code = match &result {
        Ok(()) => 0,
        Err(GroupError::Task(exit)) if exit.is_clean() => 0,
        Err(_) => 1,
    };
    match result {
        Ok(()) => println!("exit: ok"),
        Err(e) => println!("exit: {e}"),
    }
    match live::wait_for_baseline(&baseline, Duration::from_secs(1)) {
        Ok(()) => println!("leak check: ok"),
        Err(report) => println!("leak check: {report}"),
    }
    let _ = io::stdout().flush();
    code
}

/// The port from the first argument or `CTXCORE_SHUTDOWN_PORT`; 0 if neither is given.
fn port_from_args() -> Result<u16, String> {
    let given = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("CTXCORE_SHUTDOWN_PORT").ok());
    match given {
        None => Ok(0),
        Some(text) => text
            .parse()
            .map_err(|_| format!("not a port number: {text:?}")),
    }
}

#[allow(dead_code)] // `main` is unused when the tests include this file as a module
fn main() {
    let port = match port_from_args() {
        Ok(port) => port,
        Err(e) => {
            eprintln!("usage: shutdown [PORT]: {e}");
            std::process::exit(2);
        }
    };
    let grace = match std::env::var("CTXCORE_SHUTDOWN_GRACE_MS") {
        Err(_) => SHUTDOWN_TIMEOUT,
        Ok(text) => match text.parse() {
            Ok(ms) => Duration::from_millis(ms),
            Err(_) => {
                eprintln!("CTXCORE_SHUTDOWN_GRACE_MS: not a number of milliseconds: {text:?}");
                std::process::exit(2);
            }
        },
    };
    std::process::exit(run(port, grace));
}

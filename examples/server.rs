//! An axum server in which every request has its own context, as Go's `r.Context()`:
//! `GET /work?ms=N` spawns two sub-tasks that work for `N` ms under the request's context and,
//! when the program has a downstream, calls `/work?ms=N` there through
//! [`PropagateDeadlineLayer`], so the downstream's request context gets the time this one has
//! left. When the client goes away, the request's deadline passes or the server is stopped
//! (SIGINT or SIGTERM), the request's context is done: the sub-tasks stop, and the downstream
//! call is dropped (its connection closes, so the downstream's sub-tasks stop too).
//!
//! ```text
//! cargo run --example server --features axum,tokio -- 8081          # the downstream
//! cargo run --example server --features axum,tokio -- 8080 8081     # the upstream
//! curl -H 'grpc-timeout: 2S' 'http://127.0.0.1:8080/work?ms=500'
//! ```
//!
//! Arguments: the port to listen on (0, the default, picks a free one) and the downstream's
//! port, if any. It binds 127.0.0.1 only, prints one line per event on stdout (the test of
//! this example reads them), and exits 0 once a signal has drained every request.

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::routing::get;
use axum::Router;
use ctxcore::http::{BoxError, Ctx, PropagateDeadlineLayer, RequestContextLayer};
use ctxcore::{live, signal, Context};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tower::{ServiceBuilder, ServiceExt};

/// A request's own deadline when it names none (with `grpc-timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest deadline a request may ask for.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(300);
/// The most work one request may ask for.
const MAX_WORK_MS: u64 = 600_000;

/// What every handler shares.
#[derive(Clone)]
struct App {
    downstream: Option<SocketAddr>,
    next_id: Arc<AtomicU64>,
}

/// One line on stdout, flushed (stdout is a pipe under the test).
fn event(line: std::fmt::Arguments<'_>) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Milliseconds left before `ctx`'s deadline, or "none".
fn left_ms(ctx: &Context) -> String {
    ctx.deadline().map_or_else(
        || "none".to_string(),
        |d| {
            d.saturating_duration_since(Instant::now())
                .as_millis()
                .to_string()
        },
    )
}

/// `ms=N` from the query, if present and a number within bounds.
fn work_ms(uri: &Uri) -> Option<u64> {
    let query = uri.query()?;
    let value = query.split('&').find_map(|kv| kv.strip_prefix("ms="))?;
    value.parse().ok().filter(|ms| *ms <= MAX_WORK_MS)
}

/// Sends one request on a fresh connection to the downstream. The connection is driven
/// inside this future, so dropping the future closes it and the downstream sees its client
/// go away.
async fn send(req: http::Request<Full<Bytes>>) -> Result<(StatusCode, String), BoxError> {
    let addr = req
        .uri()
        .authority()
        .ok_or("the downstream request has no authority")?
        .to_string();
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let exchange = async move {
        let res = sender.send_request(req).await?;
        let status = res.status();
        let body = res.into_body().collect().await?.to_bytes();
        Ok::<_, BoxError>((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::select! {
        answered = exchange => answered,
        ended = conn => match ended {
            Ok(()) => Err("the downstream closed the connection before answering".into()),
            Err(e) => Err(e.into()),
        },
    }
}

/// `GET /work?ms=N`: the request's sub-tasks and downstream call, all under its context.
async fn work(Ctx(ctx): Ctx, State(app): State<App>, uri: Uri) -> (StatusCode, String) {
    let Some(ms) = work_ms(&uri) else {
        return (
            StatusCode::BAD_REQUEST,
            format!("expected /work?ms=N with N <= {MAX_WORK_MS}\n"),
        );
    };
    let id = app.next_id.fetch_add(1, Ordering::Relaxed);
    event(format_args!(
        "request {id} started deadline_left_ms={}",
        left_ms(&ctx)
    ));

    let mut tasks = Vec::new();
    for sub in 0..2 {
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(async move {
            match ctx.run(tokio::time::sleep(Duration::from_millis(ms))).await {
                Ok(()) => {
                    event(format_args!("request {id} sub {sub} finished"));
                    format!("sub {sub} finished")
                }
                Err(e) => {
                    let cause = ctx.cause().map_or(e.to_string(), |c| c.to_string());
                    event(format_args!("request {id} sub {sub} stopped: {cause}"));
                    format!("sub {sub} stopped: {cause}")
                }
            }
        }));
    }
    if let Some(addr) = app.downstream {
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(async move {
            let mut req = http::Request::get(format!("http://{addr}/work?ms={ms}"))
                .header(http::header::HOST, addr.to_string())
                .body(Full::new(Bytes::new()))
                .expect("a valid request");
            req.extensions_mut().insert(ctx.clone());
            event(format_args!(
                "request {id} downstream call deadline_left_ms={}",
                left_ms(&ctx)
            ));
            let client = ServiceBuilder::new()
                .layer(PropagateDeadlineLayer::new())
                .service_fn(send);
            match client.oneshot(req).await {
                Ok((status, body)) => {
                    event(format_args!("request {id} downstream answered {status}"));
                    format!("downstream answered {status}: {}", body.trim_end())
                }
                Err(e) => {
                    event(format_args!("request {id} downstream stopped: {e}"));
                    format!("downstream stopped: {e}")
                }
            }
        }));
    }
    let mut report = format!("request {id}\n");
    for task in tasks {
        let line = task
            .await
            .unwrap_or_else(|e| format!("a sub-task failed: {e}"));
        report.push_str(&line);
        report.push('\n');
    }
    event(format_args!("request {id} answered"));
    let status = match ctx.err() {
        None => StatusCode::OK,
        Some(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, report)
}

/// The router with every request under a child of `root`.
fn app(root: &Context, downstream: Option<SocketAddr>) -> Router {
    let state = App {
        downstream,
        next_id: Arc::new(AtomicU64::new(1)),
    };
    Router::new()
        .route("/work", get(work))
        .with_state(state)
        .layer(
            RequestContextLayer::new(root)
                .default_timeout(DEFAULT_TIMEOUT)
                .max_timeout(MAX_TIMEOUT),
        )
}

/// Serves on 127.0.0.1:`port` until SIGINT or SIGTERM, then drains: the root is cancelled,
/// so every request in flight is done at once, answers, and the server exits once they all
/// have. Returns the process exit code.
pub fn run(port: u16, downstream: Option<u16>) -> i32 {
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
    let served = runtime.block_on(async {
        let (root, _guard) = signal::notify(&Context::background())?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await?;
        let downstream = downstream.map(|p| SocketAddr::from((Ipv4Addr::LOCALHOST, p)));
        event(format_args!(
            "listening on http://{}",
            listener.local_addr()?
        ));
        let stop = root.clone();
        // Requests derive from every worker thread at once: a shared root registers them on
        // per-thread stripes, so they do not all write one cache line. Cancelling `root`
        // (the signal) cancels it, and with it every request.
        let (requests, _requests_handle) = root.with_cancel_shared();
        axum::serve(listener, app(&requests, downstream))
            .with_graceful_shutdown(async move {
                stop.done().await;
                event(format_args!("draining: {}", cause_of(&stop)));
            })
            .await
    });
    drop(runtime);
    if let Err(e) = served {
        eprintln!("server error: {e}");
        return 1;
    }
    let left = live::snapshot();
    event(format_args!(
        "exited cleanly; live contexts={} timers={} waiters={} callbacks={}",
        left.contexts, left.timers, left.waiters, left.callbacks
    ));
    0
}

fn cause_of(ctx: &Context) -> String {
    ctx.cause()
        .map_or_else(|| "not done".into(), |c| c.to_string())
}

/// Parses a port argument; exits with a message on anything else.
fn port_arg(arg: Option<String>, what: &str) -> Option<u16> {
    let arg = arg?;
    match arg.parse() {
        Ok(port) => Some(port),
        Err(_) => {
            eprintln!("usage: server [PORT] [DOWNSTREAM_PORT]: bad {what} {arg:?}");
            std::process::exit(2);
        }
    }
}

#[allow(dead_code)] // The test includes this file as a module and calls `run` itself.
fn main() {
    let mut args = std::env::args().skip(1);
    let port = port_arg(args.next(), "port").unwrap_or(0);
    let downstream = port_arg(args.next(), "downstream port");
    std::process::exit(run(port, downstream));
}

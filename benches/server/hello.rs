//! The servers under load for benches/server/run.sh (built by it as a small crate of its own,
//! so `cargo bench` and `cargo test` never start them).
//!
//!   hello VARIANT PORT       serves until killed; VARIANT is hyper, hyper+ctx, axum, axum+ctx,
//!                            hyper+ctx-nodeadline (the layer with no default timeout: a
//!                            context per request but no deadline, to tell the two costs
//!                            apart), hyper+tower (the `+ctx` variants' tower stack and
//!                            hyper adapter without the layer) or axum+ctx-around (the layer
//!                            around the whole router instead of `Router::layer`)
//!   hello churn ADDR N       sends N requests to a server's `/`, every tenth from a client
//!                            that sends `GET /wait` and disconnects mid-request
//!
//! Every variant answers `GET /` with "Hello, World!" on one runtime worker thread. The
//! `+ctx` variants wrap the same service in `RequestContextLayer` with a 30 s default
//! timeout, so every request derives a context and arms a deadline. They also answer
//! `GET /wait` (a sub-task waits 10 s under the request's context; it counts how it ended)
//! and `GET /stats` (RSS, `ctxcore::live` counts, and the sub-task counts), which the churn
//! client reads.

use axum::routing::get;
use axum::Router;
use ctxcore::http::{ClientGone, Ctx, RequestContextLayer};
use ctxcore::{live, Context};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tower::ServiceBuilder;

const HELLO: &str = "Hello, World!";
static WAIT_STARTED: AtomicU64 = AtomicU64::new(0);
static WAIT_GONE: AtomicU64 = AtomicU64::new(0);

async fn hello(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(
        HELLO.as_bytes(),
    ))))
}

/// Resident set size in bytes, from /proc/self/statm.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn stats() -> String {
    let l = live::snapshot();
    format!(
        "rss={} contexts={} timers={} waiters={} callbacks={} wait_started={} wait_gone={}\n",
        rss(),
        l.contexts,
        l.timers,
        l.waiters,
        l.callbacks,
        WAIT_STARTED.load(Ordering::Relaxed),
        WAIT_GONE.load(Ordering::Relaxed)
    )
}

/// `GET /wait`: a sub-task waits 10 s under the request's context, as a handler's work
/// would; a client that leaves ends it (cause `ClientGone`).
async fn wait(Ctx(ctx): Ctx) -> &'static str {
    WAIT_STARTED.fetch_add(1, Ordering::Relaxed);
    let sub = ctx.clone();
    let task = tokio::spawn(async move {
        if sub
            .run(tokio::time::sleep(Duration::from_secs(10)))
            .await
            .is_err()
            && sub
                .cause()
                .is_some_and(|c| c.downcast_ref::<ClientGone>().is_some())
        {
            WAIT_GONE.fetch_add(1, Ordering::Relaxed);
        }
    });
    let _ = task.await;
    "waited\n"
}

async fn serve(variant: &str, port: u16) -> std::io::Result<()> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await?;
    let (root, _handle) = Context::background().with_cancel();
    let layer = RequestContextLayer::new(&root).default_timeout(Duration::from_secs(30));
    println!("listening on {}", listener.local_addr()?);
    match variant {
        "axum" => {
            let app = Router::new().route("/", get(|| async { HELLO }));
            axum::serve(listener, app).await
        }
        "axum+ctx" => {
            let app = Router::new()
                .route("/", get(|| async { HELLO }))
                .route("/wait", get(wait))
                .route("/stats", get(|| async { stats() }))
                .layer(layer);
            axum::serve(listener, app).await
        }
        "axum+ctx-around" => {
            // The layer around the whole router rather than on its routes: one service and
            // one future per request instead of a boxed layered route each.
            let app = Router::new()
                .route("/", get(|| async { HELLO }))
                .route("/wait", get(wait))
                .route("/stats", get(|| async { stats() }));
            let svc = ServiceBuilder::new()
                .map_response(|res: Response<_>| res.map(axum::body::Body::new))
                .layer(layer)
                .service(app);
            axum::serve(
                listener,
                axum::ServiceExt::<axum::extract::Request>::into_make_service(svc),
            )
            .await
        }
        "hyper" | "hyper+tower" | "hyper+ctx" | "hyper+ctx-nodeadline" => loop {
            let (stream, _) = listener.accept().await?;
            let io = TokioIo::new(stream);
            if variant == "hyper" {
                tokio::spawn(async move {
                    let _ = http1::Builder::new()
                        .serve_connection(io, hyper::service::service_fn(hello))
                        .await;
                });
            } else if variant == "hyper+tower" {
                // The same tower stack and hyper adapter as the `+ctx` variants, without
                // the layer: what a tower layer costs hyper before it does anything.
                let svc = ServiceBuilder::new().service(tower::service_fn(hello));
                tokio::spawn(async move {
                    let _ = http1::Builder::new()
                        .serve_connection(io, TowerToHyperService::new(svc))
                        .await;
                });
            } else {
                let layer = if variant == "hyper+ctx" {
                    layer.clone()
                } else {
                    RequestContextLayer::new(&root)
                };
                let svc = ServiceBuilder::new()
                    .layer(layer)
                    .service(tower::service_fn(hello));
                tokio::spawn(async move {
                    let _ = http1::Builder::new()
                        .serve_connection(io, TowerToHyperService::new(svc))
                        .await;
                });
            }
        },
        other => Err(std::io::Error::other(format!("unknown variant {other:?}"))),
    }
}

/// Reads one HTTP/1.1 response with a Content-Length from `r`; returns its body.
fn read_response(r: &mut BufReader<TcpStream>) -> String {
    let mut len = 0;
    let mut line = String::new();
    loop {
        line.clear();
        r.read_line(&mut line).expect("a response line");
        assert!(!line.is_empty(), "the server closed the connection");
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().expect("a content length");
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).expect("the body");
    String::from_utf8(body).expect("a text body")
}

/// Sends `n` requests: nine in ten `GET /` on one keep-alive connection; one in ten, on four
/// other threads at once, `GET /wait` on a new connection that is closed 1 ms after the
/// request is written (by then the handler and its sub-task are running).
fn churn(addr: &str, n: u64) {
    let gone = n / 10;
    let leavers: Vec<_> = (0..4)
        .map(|t| {
            let addr = addr.to_string();
            std::thread::spawn(move || {
                for _ in (t..gone).step_by(4) {
                    let mut s = TcpStream::connect(&addr).expect("connect");
                    write!(s, "GET /wait HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
                    std::thread::sleep(Duration::from_millis(1));
                    drop(s);
                }
            })
        })
        .collect();
    let mut conn = BufReader::new(TcpStream::connect(addr).expect("connect"));
    for _ in 0..n - gone {
        write!(conn.get_mut(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
        assert_eq!(read_response(&mut conn), HELLO);
    }
    for l in leavers {
        l.join().expect("a leaving client");
    }
    println!("sent {n} requests, {gone} of them from clients that left mid-request");
}

/// `GET /stats` of the server at `addr`.
fn get_stats(addr: &str) -> String {
    let mut conn = BufReader::new(TcpStream::connect(addr).expect("connect"));
    write!(conn.get_mut(), "GET /stats HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
    read_response(&mut conn)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [cmd, addr, n] if cmd == "churn" => churn(addr, n.parse().expect("a request count")),
        [cmd, addr] if cmd == "stats" => print!("{}", get_stats(addr)),
        [variant, port] => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("a runtime");
            let port = port.parse().expect("a port");
            if let Err(e) = rt.block_on(serve(variant, port)) {
                eprintln!("hello: {e}");
                std::process::exit(1);
            }
        }
        _ => {
            eprintln!("usage: hello VARIANT PORT | hello churn ADDR N | hello stats ADDR");
            std::process::exit(2);
        }
    }
}

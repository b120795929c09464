//! The cost per request of `ctxcore::http::RequestContextLayer` around a service that answers
//! at once, next to the bare service and to tower-http's `TimeoutLayer` (which only races the
//! handler future against a timer: no context, nothing for the sub-tasks).
//!
//! Each iteration builds a request, calls the service, awaits the response and reads its body
//! to the end (which is when the layer's request context is done), on one thread with a
//! no-op waker: the ready service never returns `Pending`. Every iteration asserts the body
//! it read; the layered variant also asserts that the handler saw a request context with a
//! deadline and that the context was done once the body ended.
//!
//! A second group times the parts of the layer's work alone (the request context with and
//! without a deadline, the extension map, the header lookups).
//!
//! `cargo bench --bench http_layer --features http`

use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::rc::Rc;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use ctxcore::http::RequestContextLayer;
use ctxcore::Context;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use hyper::body::Bytes;
use tower::{Layer, Service};

const HELLO: &[u8] = b"Hello, World!";

/// Polls `f` to completion; the services here are always ready, so one poll suffices.
fn run_ready<F: Future>(f: F) -> F::Output {
    let mut cx = TaskContext::from_waker(Waker::noop());
    let mut f = pin!(f);
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a ready service returned Pending"),
    }
}

/// Reads a body to its end; returns the bytes of its data frames.
fn read_body<B: Body<Data = Bytes>>(body: B) -> usize
where
    B::Error: std::fmt::Debug,
{
    let mut cx = TaskContext::from_waker(Waker::noop());
    let mut body = pin!(body);
    let mut n = 0;
    loop {
        match body.as_mut().poll_frame(&mut cx) {
            Poll::Ready(Some(frame)) => {
                if let Ok(data) = frame.expect("a body frame").into_data() {
                    n += data.len();
                }
            }
            Poll::Ready(None) => return n,
            Poll::Pending => panic!("a full body returned Pending"),
        }
    }
}

/// The request the load generator would send.
fn request() -> Request<()> {
    Request::get("/").body(()).unwrap()
}

/// Times `iters` requests through `svc`, each one read to the end of its body; asserts the
/// handler ran once per request (`calls` counts them).
fn timed<S, B>(iters: u64, svc: &mut S, calls: &Cell<u64>) -> Duration
where
    S: Service<Request<()>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let before = calls.get();
    let start = Instant::now();
    for _ in 0..iters {
        run_ready(std::future::poll_fn(|cx| svc.poll_ready(cx))).unwrap();
        let res = run_ready(svc.call(black_box(request()))).unwrap();
        assert_eq!(read_body(res.into_body()), HELLO.len());
    }
    let t = start.elapsed();
    assert_eq!(
        calls.get() - before,
        iters,
        "the handler ran once per request"
    );
    t
}

/// The handler: counts its calls and answers "Hello, World!" at once.
fn hello(
    calls: &Rc<Cell<u64>>,
) -> impl FnMut(Request<()>) -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>> {
    let calls = Rc::clone(calls);
    move |_req| {
        calls.set(calls.get() + 1);
        std::future::ready(Ok(Response::new(Full::new(Bytes::from_static(HELLO)))))
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("http_layer");
    let calls = Rc::new(Cell::new(0));

    group.bench_function("bare", |b| {
        let mut svc = tower::service_fn(hello(&calls));
        b.iter_custom(|iters| timed(iters, &mut svc, &calls));
    });

    group.bench_function("tower_http_timeout", |b| {
        #[allow(deprecated)] // `TimeoutLayer::new` is what tower-http 0.6 users call today.
        let layer = tower_http::timeout::TimeoutLayer::new(Duration::from_secs(30));
        let mut svc = layer.layer(tower::service_fn(hello(&calls)));
        // tower-http's timer is tokio's: the calls run inside a runtime's context.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let _enter = rt.enter();
        b.iter_custom(|iters| timed(iters, &mut svc, &calls));
    });

    group.bench_function("ctxcore_request_context", |b| {
        let (root, _root_handle) = Context::background().with_cancel();
        let mut count = hello(&calls);
        let handler = tower::service_fn(move |req: Request<()>| {
            let ctx = req
                .extensions()
                .get::<Context>()
                .expect("the layer's context");
            assert!(ctx.deadline().is_some() && !ctx.is_done());
            count(req)
        });
        let layer = RequestContextLayer::new(&root).default_timeout(Duration::from_secs(30));
        let mut svc = layer.layer(handler);
        b.iter_custom(|iters| {
            let live = ctxcore::live::snapshot();
            let t = timed(iters, &mut svc, &calls);
            // Every request's context (and its deadline's timer) is gone once its body ended.
            let after = ctxcore::live::snapshot();
            assert_eq!(after.contexts, live.contexts, "request contexts left");
            assert!(!root.is_done());
            t
        });
    });
    group.finish();
}

/// The parts of the layer's work per request, each alone, so the layer's cost can be
/// counted against what it cannot avoid: the request context (with and without a
/// deadline), the extension map the context goes into, and the three header lookups.
fn parts(c: &mut Criterion) {
    let mut group = c.benchmark_group("http_layer_parts");
    let (root, _root_handle) = Context::background().with_cancel();

    group.bench_function("derive_timeout_cancel_drop", |b| {
        b.iter(|| {
            let (ctx, handle) = black_box(&root).with_timeout(Duration::from_secs(30));
            assert!(ctx.deadline().is_some());
            handle.cancel();
            assert!(ctx.is_done());
        })
    });

    group.bench_function("derive_cancel_drop", |b| {
        b.iter(|| {
            let (ctx, handle) = black_box(&root).with_cancel();
            handle.cancel();
            assert!(ctx.is_done());
        })
    });

    group.bench_function("extensions_insert_drop", |b| {
        // `background()` is a context without a node: inserting it costs only the map.
        b.iter(|| {
            let mut ext = http::Extensions::new();
            ext.insert(black_box(Context::background()));
            assert!(ext.get::<Context>().is_some());
        })
    });

    group.bench_function("header_lookups", |b| {
        let grpc_timeout = http::HeaderName::from_static("grpc-timeout");
        let baggage = http::HeaderName::from_static("baggage");
        let req = Request::get("/")
            .header(http::header::HOST, "127.0.0.1")
            .body(())
            .unwrap();
        b.iter(|| {
            let headers = black_box(&req).headers();
            let found = headers.get(&grpc_timeout).is_some()
                || headers.get(&baggage).is_some()
                || headers.get(http::header::CONTENT_TYPE).is_some();
            assert!(!black_box(found));
        })
    });
    group.finish();
}

criterion_group!(benches, bench, parts);
criterion_main!(benches);

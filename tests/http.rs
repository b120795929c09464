//! `ctxcore::http`: the request context layer, the client layer, `grpc-timeout`, baggage.

use ctxcore::http::{
    grpc_timeout, Baggage, ClientGone, PropagateDeadlineLayer, RequestContextLayer,
};
use ctxcore::{Context, Error};
use http::{HeaderValue, Request, Response};
use http_body_util::BodyExt;
use std::convert::Infallible;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tower::{Service, ServiceBuilder, ServiceExt};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A service that hands the request's context out and answers `body`.
fn echo_ctx(
    layer: RequestContextLayer,
    tx: std::sync::mpsc::Sender<Context>,
) -> impl Service<
    Request<String>,
    Response = Response<ctxcore::http::ContextBody<String>>,
    Error = Infallible,
> {
    ServiceBuilder::new()
        .layer(layer)
        .service_fn(move |req: Request<String>| {
            let tx = tx.clone();
            async move {
                tx.send(req.extensions().get::<Context>().unwrap().clone())
                    .unwrap();
                Ok::<_, Infallible>(Response::new("hello".to_string()))
            }
        })
}

fn request_with(timeout: Option<&'static str>) -> Request<String> {
    let mut b = Request::builder();
    if let Some(t) = timeout {
        b = b.header("grpc-timeout", t);
    }
    b.body(String::new()).unwrap()
}

/// The deadline the request's context got, as time left when the request arrived.
fn deadline_of(layer: RequestContextLayer, req: Request<String>) -> Option<Duration> {
    let (tx, rx) = std::sync::mpsc::channel();
    let mut svc = echo_ctx(layer, tx);
    let start = Instant::now();
    let _res = rt().block_on(async { svc.ready().await.unwrap().call(req).await.unwrap() });
    let ctx = rx.recv().unwrap();
    ctx.deadline().map(|d| d - start)
}

fn near(got: Option<Duration>, want: Duration) -> bool {
    got.is_some_and(|g| {
        g <= want + Duration::from_millis(200) && g + Duration::from_millis(500) > want
    })
}

#[test]
fn grpc_timeout_malformed_values_are_none() {
    for bad in [
        &b""[..],
        b"S",
        b"123456789S",
        b"-1S",
        b"+1S",
        b"1 S",
        b" 1S",
        b"1x",
        b"1",
        b"1.5S",
        b"1SS",
    ] {
        let v = HeaderValue::from_bytes(bad).unwrap();
        assert_eq!(grpc_timeout::parse(&v), None, "{bad:?}");
    }
    let non_ascii = HeaderValue::from_bytes("１S".as_bytes()).unwrap();
    assert_eq!(grpc_timeout::parse(&non_ascii), None);
    let huge = grpc_timeout::parse(&HeaderValue::from_static("99999999H")).unwrap();
    assert_eq!(huge, Duration::from_secs(99_999_999 * 3600));
}

#[test]
fn request_deadline_is_the_earliest() {
    let root = Context::background();
    let layer = || RequestContextLayer::new(&root);
    assert_eq!(deadline_of(layer(), request_with(None)), None);
    assert!(near(
        deadline_of(layer(), request_with(Some("3S"))),
        Duration::from_secs(3)
    ));
    let default = layer().default_timeout(Duration::from_secs(7));
    assert!(near(
        deadline_of(default.clone(), request_with(None)),
        Duration::from_secs(7)
    ));
    // A header wins over the default, even a longer one; a malformed one counts as absent.
    assert!(near(
        deadline_of(default.clone(), request_with(Some("20S"))),
        Duration::from_secs(20)
    ));
    assert!(near(
        deadline_of(default.clone(), request_with(Some("1 S"))),
        Duration::from_secs(7)
    ));
    // Absurd values are capped, and never overflow.
    let capped = default.max_timeout(Duration::from_secs(9));
    assert!(near(
        deadline_of(capped.clone(), request_with(Some("99999999H"))),
        Duration::from_secs(9)
    ));
    assert!(near(
        deadline_of(capped, request_with(Some("2S"))),
        Duration::from_secs(2)
    ));
    assert!(deadline_of(layer(), request_with(Some("99999999H"))).is_some());
    // The root's earlier deadline wins.
    let (short_root, _h) = root.with_timeout(Duration::from_secs(1));
    let got = deadline_of(
        RequestContextLayer::new(&short_root),
        request_with(Some("5S")),
    );
    assert!(got.unwrap() <= Duration::from_secs(1));
}

#[test]
fn context_ends_with_the_body_or_client_gone() {
    rt().block_on(async {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut svc = echo_ctx(RequestContextLayer::new(&Context::background()), tx);
        // Body read to the end: done, plain cancel.
        let res = svc
            .ready()
            .await
            .unwrap()
            .call(request_with(None))
            .await
            .unwrap();
        let ctx = rx.recv().unwrap();
        assert!(!ctx.is_done(), "alive while the body is unsent");
        assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "hello");
        assert_eq!(ctx.err(), Some(Error::Canceled));
        assert!(ctx.cause().unwrap().downcast_ref::<ClientGone>().is_none());
        // Body dropped unread: client gone.
        let res = svc
            .ready()
            .await
            .unwrap()
            .call(request_with(None))
            .await
            .unwrap();
        let ctx = rx.recv().unwrap();
        drop(res);
        assert!(ctx.cause().unwrap().downcast_ref::<ClientGone>().is_some());
    });
}

#[test]
fn dropped_service_future_is_client_gone() {
    rt().block_on(async {
        let (tx, rx) = oneshot::channel();
        let mut tx = Some(tx);
        let mut svc = ServiceBuilder::new()
            .layer(RequestContextLayer::new(&Context::background()))
            .service_fn(move |req: Request<String>| {
                let ctx = req.extensions().get::<Context>().unwrap().clone();
                let _ = tx.take().unwrap().send(ctx);
                async { std::future::pending::<Result<Response<String>, Infallible>>().await }
            });
        let fut = svc.ready().await.unwrap().call(request_with(None));
        let ctx = rx.await.unwrap();
        drop(fut);
        assert!(ctx.cause().unwrap().downcast_ref::<ClientGone>().is_some());
    });
}

/// The layer with a 5 ms default timeout around a handler that hands its context out and
/// answers with `answer`.
fn five_ms<F, B>(
    answer: impl Fn() -> F + Clone,
) -> (
    impl Service<
        Request<String>,
        Response = Response<ctxcore::http::ContextBody<B>>,
        Error = Infallible,
    >,
    std::sync::mpsc::Receiver<Context>,
)
where
    F: std::future::Future<Output = Result<Response<B>, Infallible>>,
    B: http_body::Body,
{
    let (tx, rx) = std::sync::mpsc::channel();
    let svc = ServiceBuilder::new()
        .layer(
            RequestContextLayer::new(&Context::background())
                .default_timeout(Duration::from_millis(5)),
        )
        .service_fn(move |req: Request<String>| {
            tx.send(req.extensions().get::<Context>().unwrap().clone())
                .unwrap();
            answer()
        });
    (svc, rx)
}

/// Drops `held` (the request's future or its response) as soon as `ctx`'s deadline has
/// passed, spinning on the clock, before the timer thread is likely to have fired it; the
/// context must report its deadline, not a client gone.
fn drop_past_the_deadline<T>(ctx: &Context, held: T) {
    let deadline = ctx.deadline().unwrap();
    while Instant::now() < deadline {
        std::hint::spin_loop();
    }
    drop(held);
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    assert!(ctx.cause().unwrap().downcast_ref::<ClientGone>().is_none());
}

/// An outer timeout with the same deadline (tonic's own `grpc-timeout`) may drop the
/// request a moment before the layer's timer fires: the context then reports its deadline.
#[test]
fn request_dropped_after_its_deadline_is_deadline_exceeded() {
    for _ in 0..20 {
        let (mut svc, rx) = five_ms(std::future::pending::<Result<Response<String>, Infallible>>);
        let mut fut = Box::pin(svc.call(request_with(None)));
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(std::future::Future::poll(fut.as_mut(), &mut cx).is_pending());
        drop_past_the_deadline(&rx.recv().unwrap(), fut);
    }
}

/// A response body that never ends (a stream the server is still sending).
struct Endless;

impl http_body::Body for Endless {
    type Data = bytes::Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Infallible>>> {
        std::task::Poll::Pending
    }
}

/// As for the service future: a response body dropped unfinished at or after its
/// context's deadline reports the deadline.
#[test]
fn body_dropped_after_its_deadline_is_deadline_exceeded() {
    for _ in 0..20 {
        let (mut svc, rx) = five_ms(|| std::future::ready(Ok(Response::new(Endless))));
        let res = rt().block_on(svc.call(request_with(None))).unwrap();
        let ctx = rx.recv().unwrap();
        assert!(!ctx.is_done(), "the body is still being sent");
        drop_past_the_deadline(&ctx, res);
    }
}

async fn slow_answer(content_type: &'static str) -> Response<ctxcore::http::ContextBody<String>> {
    let mut svc = ServiceBuilder::new()
        .layer(
            RequestContextLayer::new(&Context::background())
                .default_timeout(Duration::from_millis(50)),
        )
        .service_fn(|_req: Request<String>| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok::<_, Infallible>(Response::new("late".to_string()))
        });
    let req = Request::builder()
        .header("content-type", content_type)
        .body(String::new())
        .unwrap();
    let start = Instant::now();
    let res = svc.ready().await.unwrap().call(req).await.unwrap();
    assert!(start.elapsed() < Duration::from_secs(5));
    res
}

#[test]
fn deadline_first_answers_504_or_grpc_deadline_exceeded() {
    rt().block_on(async {
        let res = slow_answer("text/plain").await;
        assert_eq!(res.status(), 504);
        let res = slow_answer("application/grpc+proto").await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["grpc-status"], "4");
        assert!(res
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .is_empty());
    });
}

#[test]
fn root_cancel_ends_in_flight_requests() {
    rt().block_on(async {
        let (root, stop) = Context::background().with_cancel();
        let mut svc = ServiceBuilder::new()
            .layer(RequestContextLayer::new(&root))
            .service_fn(|req: Request<String>| async move {
                let ctx = req.extensions().get::<Context>().unwrap().clone();
                ctx.done().await;
                Ok::<_, Infallible>(Response::new(format!("{:?}", ctx.err())))
            });
        let fut = svc.ready().await.unwrap().call(request_with(None));
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            stop.cancel();
        });
        let res = fut.await.unwrap();
        assert_eq!(
            res.into_body().collect().await.unwrap().to_bytes(),
            "Some(Canceled)"
        );
    });
}

type Client = tower::util::BoxService<Request<String>, Response<String>, tower::BoxError>;

/// A client whose "network" answers with the grpc-timeout and baggage it was sent, after `delay`.
fn client(delay: Duration) -> Client {
    let svc = ServiceBuilder::new()
        .layer(PropagateDeadlineLayer::new())
        .service_fn(move |req: Request<String>| async move {
            tokio::time::sleep(delay).await;
            let h = |n: &str| {
                req.headers()
                    .get(n)
                    .map(|v| v.to_str().unwrap().to_string())
                    .unwrap_or_default()
            };
            Ok::<_, Infallible>(Response::new(format!(
                "{}|{}",
                h("grpc-timeout"),
                h("baggage")
            )))
        });
    tower::util::BoxService::new(svc)
}

fn outgoing(ctx: Option<&Context>, timeout: Option<&'static str>) -> Request<String> {
    let mut req = request_with(timeout);
    if let Some(ctx) = ctx {
        req.extensions_mut().insert(ctx.clone());
    }
    req
}

#[test]
fn client_layer_propagates_and_cancels() {
    rt().block_on(async {
        let mut c = client(Duration::ZERO);
        // Without a context: unchanged.
        let res = c
            .ready()
            .await
            .unwrap()
            .call(outgoing(None, Some("7S")))
            .await
            .unwrap();
        assert_eq!(res.body(), "7S|");
        // The time left, and the baggage.
        let (ctx, _h) = Context::background().with_timeout(Duration::from_secs(2));
        let ctx = ctx.with_value(Baggage::new().with("user", "a b"));
        let res = c
            .ready()
            .await
            .unwrap()
            .call(outgoing(Some(&ctx), None))
            .await
            .unwrap();
        let (timeout, baggage) = res.body().split_once('|').unwrap();
        let left = grpc_timeout::parse(&HeaderValue::from_str(timeout).unwrap()).unwrap();
        assert!(left <= Duration::from_secs(2) && left > Duration::from_secs(1));
        assert_eq!(baggage, "user=a%20b");
        // An existing earlier header is kept; a later one is replaced.
        let res = c
            .ready()
            .await
            .unwrap()
            .call(outgoing(Some(&ctx), Some("5m")))
            .await
            .unwrap();
        assert!(res.body().starts_with("5m|"));
        let res = c
            .ready()
            .await
            .unwrap()
            .call(outgoing(Some(&ctx), Some("1H")))
            .await
            .unwrap();
        assert!(!res.body().starts_with("1H|"));
        // A done context: not sent.
        let (done, h) = Context::background().with_cancel();
        h.cancel();
        let err = c
            .ready()
            .await
            .unwrap()
            .call(outgoing(Some(&done), None))
            .await
            .unwrap_err();
        assert_eq!(err.downcast_ref::<Error>(), Some(&Error::Canceled));
        // Done during the call: dropped at once.
        let mut slow = client(Duration::from_secs(30));
        let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(30));
        let start = Instant::now();
        let err = slow
            .ready()
            .await
            .unwrap()
            .call(outgoing(Some(&ctx), None))
            .await
            .unwrap_err();
        assert_eq!(err.downcast_ref::<Error>(), Some(&Error::DeadlineExceeded));
        assert!(start.elapsed() < Duration::from_secs(5));
    });
}

#[test]
fn baggage_limits_and_malformed_members() {
    let mut headers = http::HeaderMap::new();
    let members: Vec<String> = (0..70).map(|i| format!("k{i}=v{i}")).collect();
    headers.insert("baggage", members.join(",").parse().unwrap());
    let b = Baggage::from_headers(&headers).unwrap();
    assert_eq!((b.len(), b.skipped()), (64, 6));
    // Over 8192 bytes in all, across two headers: ignored whole.
    let mut headers = http::HeaderMap::new();
    headers.append(
        "baggage",
        format!("a={}", "x".repeat(5000)).parse().unwrap(),
    );
    headers.append(
        "baggage",
        format!("b={}", "y".repeat(5000)).parse().unwrap(),
    );
    assert_eq!(Baggage::from_headers(&headers), None);
    // Malformed members skipped, the rest kept.
    let b = Baggage::parse("ok=1,no key=2,bad=%G1,=3,quote=\"x\",fine=%41");
    assert_eq!(b.iter().collect::<Vec<_>>(), [("ok", "1"), ("fine", "A")]);
    assert_eq!(b.skipped(), 4);
}

#[test]
fn server_baggage_reaches_the_context() {
    let (tx, rx) = std::sync::mpsc::channel();
    let mut svc = echo_ctx(RequestContextLayer::new(&Context::background()), tx);
    let req = Request::builder()
        .header("baggage", "tenant=acme")
        .body(String::new())
        .unwrap();
    let _res = rt().block_on(async { svc.ready().await.unwrap().call(req).await.unwrap() });
    let ctx = rx.recv().unwrap();
    assert_eq!(ctx.value::<Baggage>().unwrap().get("tenant"), Some("acme"));
}

/// A real hyper server; the client writes a request head, then vanishes. (A head announcing
/// a body that the handler never reads is not seen by hyper 1's http1 server until the
/// handler answers: that case is not covered.)
#[test]
fn client_that_sends_headers_and_vanishes_is_client_gone() {
    use hyper_util::rt::TokioIo;
    use std::io::Write;
    let baseline = ctxcore::live::snapshot();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (ctx_tx, ctx_rx) = std::sync::mpsc::channel::<Context>();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let root = Context::background();
    let svc = ServiceBuilder::new()
        .layer(RequestContextLayer::new(&root))
        .service_fn(move |req: Request<hyper::body::Incoming>| {
            let ctx = req.extensions().get::<Context>().unwrap().clone();
            drop(req); // the body is never read
            ctx_tx.send(ctx.clone()).unwrap();
            async move {
                ctx.done().await;
                Ok::<_, Infallible>(Response::new(String::new()))
            }
        });
    let server = runtime.spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let service = hyper::service::service_fn(move |req| svc.clone().oneshot(req));
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .await;
    });
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    client
        .write_all(b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let ctx = ctx_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(!ctx.is_done());
    drop(client);
    assert!(
        ctx.wait_timeout(Duration::from_secs(10)),
        "request context not done"
    );
    assert!(ctx.cause().unwrap().downcast_ref::<ClientGone>().is_some());
    runtime.block_on(server).unwrap();
    drop((ctx, runtime));
    ctxcore::live::wait_for_baseline(&baseline, Duration::from_secs(2))
        .unwrap_or_else(|r| panic!("{r}"));
}

/// Behaviour 30: on a root of a manual clock, a request's deadline is exactly
/// `now() + grpc-timeout` (or `+ default_timeout`), advancing past it answers 504, and the
/// client layer writes the time left on that clock.
#[test]
fn layers_measure_on_the_request_context_clock() {
    use ctxcore::clock::Clock;
    let clock = Clock::manual();
    let root = Context::root(&clock);
    // Exact deadlines.
    let (tx, rx) = std::sync::mpsc::channel();
    let layer = RequestContextLayer::new(&root).default_timeout(Duration::from_secs(30));
    let mut svc = echo_ctx(layer, tx);
    let t0 = clock.now();
    rt().block_on(async {
        for req in [request_with(Some("1500m")), request_with(None)] {
            let _ = svc.ready().await.unwrap().call(req).await.unwrap();
        }
    });
    let with_header = rx.recv().unwrap();
    let with_default = rx.recv().unwrap();
    assert_eq!(
        with_header.deadline(),
        Some(t0 + Duration::from_millis(1500))
    );
    assert_eq!(with_default.deadline(), Some(t0 + Duration::from_secs(30)));
    assert_eq!(with_header.clock().now(), t0);

    // A handler that never answers: the 504 comes when the clock passes the deadline, and
    // not before, however long real time runs.
    let mut slow = ServiceBuilder::new()
        .layer(RequestContextLayer::new(&root).default_timeout(Duration::from_secs(5)))
        .service_fn(|_req: Request<String>| async {
            std::future::pending::<()>().await;
            Ok::<_, Infallible>(Response::new(String::new()))
        });
    rt().block_on(async {
        let call = slow.ready().await.unwrap().call(request_with(None));
        let mut call = std::pin::pin!(call);
        let early = tokio::time::timeout(Duration::from_millis(50), call.as_mut()).await;
        assert!(early.is_err(), "no answer before the manual clock moves");
        let c = clock.clone();
        std::thread::spawn(move || c.advance(Duration::from_secs(5)))
            .join()
            .unwrap();
        let res = tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(res.status(), 504);
    });

    // The client layer: the time left on the request context's clock.
    let (ctx, _h) = root.with_timeout(Duration::from_secs(3));
    clock.advance(Duration::from_secs(1));
    rt().block_on(async {
        let mut c = client(Duration::ZERO);
        let res = c
            .ready()
            .await
            .unwrap()
            .call(outgoing(Some(&ctx), None))
            .await
            .unwrap();
        let (timeout, _) = res.body().split_once('|').unwrap();
        let sent = grpc_timeout::parse(&HeaderValue::from_str(timeout).unwrap());
        assert_eq!(sent, Some(Duration::from_secs(2)), "{timeout}");
    });
}

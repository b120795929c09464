//! `RequestContextLayer` on a real tonic server, as a plain tower layer: the handler finds
//! its context in the request's extensions, with the deadline the client's `grpc-timeout`
//! asked for, and the work it spawns under that context stops when the deadline passes,
//! when the client goes away, or when the server's root is cancelled.
//!
//! The service is written by hand (what `tonic-build` would generate, for one unary
//! method) with a codec of raw bytes, so the test needs neither protoc nor prost.

use bytes::{Buf, BufMut, Bytes};
use ctxcore::http::{ClientGone, RequestContextLayer};
use ctxcore::{Context, Error};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::NamedService;
use tonic::transport::{Channel, Server};
use tonic::{Code, Status};

/// gRPC messages as raw bytes.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// What the handler reports: `hang` reached it, or its sub-task saw the context done.
#[derive(Debug)]
enum Event {
    Started,
    Ended(Ended),
}

/// What a sub-task saw when the request's context became done.
#[derive(Debug)]
struct Ended {
    err: Option<Error>,
    client_gone: bool,
    at: Instant,
}

/// The service `ctxcore.test.Work` with one unary method, `Run`. The request names what
/// the handler does: `deadline` answers the time left on the request's context in
/// milliseconds; `hang` reports that it started, spawns a sub-task that reports when the
/// context is done, then never answers.
#[derive(Clone)]
struct Work {
    events: mpsc::UnboundedSender<Event>,
}

impl NamedService for Work {
    const NAME: &'static str = "ctxcore.test.Work";
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl tower::Service<http::Request<tonic::body::Body>> for Work {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut std::task::Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let events = self.events.clone();
        Box::pin(async move {
            let handler = tower::service_fn(move |req: tonic::Request<Bytes>| {
                let events = events.clone();
                async move { run(req, events).await }
            });
            let mut grpc = tonic::server::Grpc::new(RawCodec);
            Ok(grpc.unary(handler, req).await)
        })
    }
}

/// The handler: what a user of tonic writes, with the context from the extensions.
async fn run(
    req: tonic::Request<Bytes>,
    events: mpsc::UnboundedSender<Event>,
) -> Result<tonic::Response<Bytes>, Status> {
    let ctx = req
        .extensions()
        .get::<Context>()
        .cloned()
        .ok_or_else(|| Status::internal("no request context"))?;
    match &req.get_ref()[..] {
        b"deadline" => {
            let left = ctx
                .deadline()
                .map(|d| d.saturating_duration_since(Instant::now()).as_millis());
            Ok(tonic::Response::new(Bytes::from(format!("{left:?}"))))
        }
        b"hang" => {
            let _ = events.send(Event::Started);
            tokio::spawn(async move {
                ctx.done().await;
                let client_gone = ctx
                    .cause()
                    .is_some_and(|c| c.downcast_ref::<ClientGone>().is_some());
                let _ = events.send(Event::Ended(Ended {
                    err: ctx.err(),
                    client_gone,
                    at: Instant::now(),
                }));
            });
            std::future::pending().await
        }
        _ => Err(Status::invalid_argument("unknown command")),
    }
}

/// A tonic server on 127.0.0.1 with the layer; returns the client channel, the receiver
/// of the handler's reports and the server's root handle.
async fn serve(
    layer: impl FnOnce(&Context) -> RequestContextLayer,
) -> (
    Channel,
    mpsc::UnboundedReceiver<Event>,
    ctxcore::CancelHandle,
) {
    let (root, root_handle) = Context::background().with_cancel_shared();
    let (tx, rx) = mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tokio_stream_of(listener);
    let router = Server::builder()
        .layer(layer(&root))
        .add_service(Work { events: tx });
    let stop = root.clone();
    tokio::spawn(async move {
        router
            .serve_with_incoming_shutdown(incoming, async move { stop.done().await })
            .await
            .unwrap();
    });
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    (channel, rx, root_handle)
}

/// The listener's connections as the stream tonic accepts.
fn tokio_stream_of(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures::stream::unfold(listener, |l| async move {
        let conn = l.accept().await.map(|(s, _)| s);
        Some((conn, l))
    })
}

/// One call of `Run` with `body`, with `timeout` sent as `grpc-timeout`. The header is
/// written as metadata rather than with `set_timeout`, which would also make the client
/// give up on its own: the test wants the server's answer.
async fn call(
    channel: &Channel,
    body: &'static [u8],
    timeout: Option<Duration>,
) -> Result<Bytes, Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let mut req = tonic::Request::new(Bytes::from_static(body));
    if let Some(t) = timeout {
        let value = ctxcore::http::grpc_timeout::encode(t);
        let value = value.to_str().unwrap().parse().unwrap();
        req.metadata_mut().insert("grpc-timeout", value);
    }
    let path = http::uri::PathAndQuery::from_static("/ctxcore.test.Work/Run");
    grpc.unary(req, path, RawCodec)
        .await
        .map(tonic::Response::into_inner)
}

/// The time left the handler saw, in milliseconds.
async fn left_ms(channel: &Channel, timeout: Option<Duration>) -> u128 {
    let got = call(channel, b"deadline", timeout).await.unwrap();
    let text = std::str::from_utf8(&got).unwrap();
    let inner = text
        .strip_prefix("Some(")
        .and_then(|t| t.strip_suffix(')'))
        .unwrap_or_else(|| panic!("the request context has no deadline: {text}"));
    inner.parse().unwrap()
}

/// The handler's next report.
async fn next_event(events: &mut mpsc::UnboundedReceiver<Event>) -> Event {
    tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("the handler reported within 5 s")
        .expect("the server is still running")
}

/// What the next sub-task saw when its context became done.
async fn next_end(events: &mut mpsc::UnboundedReceiver<Event>) -> Ended {
    match next_event(events).await {
        Event::Ended(end) => end,
        other => panic!("expected a sub-task's end, got {other:?}"),
    }
}

/// Starts a `hang` call without a timeout and returns once the handler has it.
async fn hanging_call(
    channel: &Channel,
    events: &mut mpsc::UnboundedReceiver<Event>,
) -> tokio::task::JoinHandle<Result<Bytes, Status>> {
    let call = tokio::spawn({
        let channel = channel.clone();
        async move { call(&channel, b"hang", None).await }
    });
    assert!(matches!(next_event(events).await, Event::Started));
    call
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_sees_the_clients_grpc_timeout_the_default_and_the_cap() {
    let (channel, _events, _root) = serve(|root| {
        RequestContextLayer::new(root)
            .default_timeout(Duration::from_secs(30))
            .max_timeout(Duration::from_secs(60))
    })
    .await;
    let asked = left_ms(&channel, Some(Duration::from_secs(5))).await;
    assert!(
        (4_000..=5_000).contains(&asked),
        "asked 5 s, saw {asked} ms"
    );
    let default = left_ms(&channel, None).await;
    assert!(
        (29_000..=30_000).contains(&default),
        "default 30 s, saw {default} ms"
    );
    let capped = left_ms(&channel, Some(Duration::from_secs(3_600))).await;
    assert!(
        (59_000..=60_000).contains(&capped),
        "cap 60 s, saw {capped} ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_stops_the_handlers_sub_tasks_with_deadline_exceeded() {
    let (channel, mut events, _root) = serve(RequestContextLayer::new).await;
    let start = Instant::now();
    let status = call(&channel, b"hang", Some(Duration::from_millis(200)))
        .await
        .unwrap_err();
    // tonic's server reads `grpc-timeout` too, and its own timeout, started a moment before
    // the layer's, usually answers first, with `Cancelled` ("Timeout expired"); the layer's
    // answer is `DeadlineExceeded`. Either way the call ends at its deadline.
    assert!(
        matches!(status.code(), Code::Cancelled | Code::DeadlineExceeded),
        "{status:?}"
    );
    assert!(start.elapsed() >= Duration::from_millis(200));
    assert!(matches!(next_event(&mut events).await, Event::Started));
    let end = next_end(&mut events).await;
    assert_eq!(end.err, Some(Error::DeadlineExceeded), "{end:?}");
    assert!(!end.client_gone, "{end:?}");
    let after = end.at - start;
    assert!(
        after >= Duration::from_millis(200) && after < Duration::from_millis(200 + 250),
        "the sub-task stopped {after:?} after the call began (deadline 200 ms)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_goes_away_stops_the_handlers_sub_tasks_with_client_gone() {
    let (channel, mut events, _root) = serve(RequestContextLayer::new).await;
    let pending = hanging_call(&channel, &mut events).await;
    // Leave: the aborted call resets its stream.
    pending.abort();
    let left = Instant::now();
    let end = next_end(&mut events).await;
    assert_eq!(end.err, Some(Error::Canceled), "{end:?}");
    assert!(end.client_gone, "{end:?}");
    assert!(
        end.at - left < Duration::from_millis(50),
        "the sub-task stopped {:?} after the client left",
        end.at - left
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_the_root_stops_in_flight_requests() {
    let (channel, mut events, root) = serve(RequestContextLayer::new).await;
    let pending = hanging_call(&channel, &mut events).await;
    root.cancel();
    let end = next_end(&mut events).await;
    assert_eq!(end.err, Some(Error::Canceled), "{end:?}");
    assert!(!end.client_gone, "{end:?}");
    pending.abort();
}

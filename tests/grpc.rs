//! gRPC through the gateway, against tonic servers on loopback: unary calls
//! mirrored and compared field by field (with the services' descriptors)
//! or as bytes (without), server-streaming calls passed through as they
//! come, statuses in trailers intact, and the gateway's own failures said
//! in gRPC.

mod support;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::PathAndQuery;
use prost::Message as _;
use support::*;
use tokio::sync::Notify;
use tonic::codegen::{BoxFuture, Service};
use tonic::server::{NamedService, ServerStreamingService, UnaryService};
use tonic::{Code, Request, Response, Status};
use tonic_prost::ProstCodec;

#[derive(Clone, PartialEq, prost::Message)]
struct ItemRequest {
    #[prost(string, tag = "1")]
    id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Price {
    #[prost(int64, tag = "1")]
    cents: i64,
    #[prost(string, tag = "2")]
    currency: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Item {
    #[prost(string, tag = "1")]
    id: String,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(message, repeated, tag = "3")]
    prices: Vec<Price>,
}

/// How one catalog answers.
#[derive(Clone)]
struct Catalog {
    /// The price of every item, in cents.
    cents: i64,
    /// Between the streamed items: the test says when to go on.
    go_on: Arc<Notify>,
    delay: Duration,
    /// Answers item "missing" rather than NOT_FOUND.
    knows_missing: bool,
}

impl Catalog {
    fn item(&self, id: &str) -> Item {
        Item {
            id: id.into(),
            name: "Lamp".into(),
            prices: vec![Price {
                cents: self.cents,
                currency: "EUR".into(),
            }],
        }
    }
}

struct GetItem(Catalog);

impl UnaryService<ItemRequest> for GetItem {
    type Response = Item;
    type Future = BoxFuture<Response<Item>, Status>;
    fn call(&mut self, req: Request<ItemRequest>) -> Self::Future {
        let catalog = self.0.clone();
        Box::pin(async move {
            tokio::time::sleep(catalog.delay).await;
            let id = req.into_inner().id;
            if id == "missing" && !catalog.knows_missing {
                return Err(Status::not_found("no such item: 100% gone ✗"));
            }
            Ok(Response::new(catalog.item(&id)))
        })
    }
}

struct Watch(Catalog);

impl ServerStreamingService<ItemRequest> for Watch {
    type Response = Item;
    type ResponseStream = Pin<Box<dyn futures_util::Stream<Item = Result<Item, Status>> + Send>>;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;
    fn call(&mut self, req: Request<ItemRequest>) -> Self::Future {
        let catalog = self.0.clone();
        Box::pin(async move {
            let id = req.into_inner().id;
            let stream = async_stream(catalog, id);
            Ok(Response::new(stream))
        })
    }
}

/// Three items; the second and third only after the test said go on.
fn async_stream(
    catalog: Catalog,
    id: String,
) -> Pin<Box<dyn futures_util::Stream<Item = Result<Item, Status>> + Send>> {
    Box::pin(futures_util::stream::unfold(0, move |n| {
        let (catalog, id) = (catalog.clone(), id.clone());
        async move {
            if n == 3 {
                return None;
            }
            if n > 0 {
                catalog.go_on.notified().await;
            }
            Some((Ok(catalog.item(&format!("{id}-{n}"))), n + 1))
        }
    }))
}

#[derive(Clone)]
struct CatalogServer(Catalog);

impl NamedService for CatalogServer {
    const NAME: &'static str = "shop.Catalog";
}

impl<B> Service<http::Request<B>> for CatalogServer
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let catalog = self.0.clone();
        match req.uri().path() {
            "/shop.Catalog/GetItem" => Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(ProstCodec::<Item, ItemRequest>::default());
                Ok(grpc.unary(GetItem(catalog), req).await)
            }),
            "/shop.Catalog/Watch" => Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(ProstCodec::<Item, ItemRequest>::default());
                Ok(grpc.server_streaming(Watch(catalog), req).await)
            }),
            _ => Box::pin(async move { Ok(Status::unimplemented("no such method").into_http()) }),
        }
    }
}

/// A tonic server for `catalog` on a loopback port; its `http://` URL.
async fn serve(catalog: Catalog) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(CatalogServer(catalog))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    format!("http://{addr}")
}

fn catalog(cents: i64) -> Catalog {
    Catalog {
        cents,
        go_on: Arc::new(Notify::new()),
        delay: Duration::ZERO,
        knows_missing: false,
    }
}

type Transport = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    tonic::body::Body,
>;

/// A gRPC client over HTTP/2 to `base` (h2c, or TLS trusting `ca`).
fn grpc_client(base: &str, ca: Option<&support::tls::TestCa>) -> tonic::client::Grpc<Transport> {
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    let tls = match ca {
        Some(ca) => ca.client(&[]),
        None => support::tls::TestCa::new().client(&[]),
    };
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http2()
        .wrap_connector(http);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build(connector);
    tonic::client::Grpc::with_origin(client, base.parse().unwrap())
}

async fn get_item(base: &str, ca: Option<&support::tls::TestCa>, id: &str) -> Result<Item, Status> {
    let mut grpc = grpc_client(base, ca);
    grpc.ready().await.map_err(|e| Status::unknown(e.to_string()))?;
    let req = Request::new(ItemRequest { id: id.into() });
    grpc.unary(
        req,
        PathAndQuery::from_static("/shop.Catalog/GetItem"),
        ProstCodec::default(),
    )
    .await
    .map(Response::into_inner)
}

fn descriptor_set(dir: &std::path::Path) -> std::path::PathBuf {
    let files = protox::compile(["shop.proto"], ["tests/grpc"]).unwrap();
    let path = dir.join("shop.pb");
    std::fs::write(&path, files.encode_to_vec()).unwrap();
    path
}

/// Comparisons that found the answers equal, or equal but for ignored
/// headers (two `Date`s a second apart, as on a busy machine).
fn equal_answers(g: &switchyard::gateway::Gateway) -> f64 {
    metric(g, "switchyard_comparisons_total", &[("result", "match")])
        + metric(g, "switchyard_comparisons_total", &[("result", "ignored")])
}

fn grpc_backends(old: &str, new: &str, extra: &str) -> String {
    format!("backends:\n  old: {{ url: \"{old}\", protocol: http2 }}\n  new: {{ url: \"{new}\", protocol: http2 }}\n{extra}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_calls_are_mirrored_and_compared_field_by_field() {
    let dir = tempfile::tempdir().unwrap();
    let protos = descriptor_set(dir.path());
    let (old, new) = (serve(catalog(1000)).await, serve(catalog(1200)).await);
    let g = gateway(&grpc_backends(
        &old,
        &new,
        &format!(
            "shadow: {{ percent: 100, methods: [POST] }}\ndiff: {{ grpc: {{ descriptor_set: \"{}\" }} }}\n",
            protos.display()
        ),
    ));
    let item = get_item(&proxy(&g), None, "lamp").await.unwrap();
    assert_eq!(item.prices[0].cents, 1000, "old serves at 0 %");
    eventually(Duration::from_secs(10), "the call compared", || {
        metric(&g, "switchyard_comparisons_total", &[("result", "diff")]) == 1.0
    })
    .await;
    let report = get(&client(), &format!("{}/report.json", admin(&g)), &[]).await.json();
    // Real differences only: a `Date` a second apart is an ignored one.
    let fields: Vec<String> = report["endpoints"][0]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["verdict"] == "real")
        .map(|f| f["field"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        fields,
        vec!["body:/prices/*/cents"],
        "only the price differs, by field path"
    );
    let samples = get(
        &client(),
        &format!("{}/diffs?field=body:/prices/*/cents", admin(&g)),
        &[],
    )
    .await
    .json();
    let text = samples.to_string();
    assert!(text.contains("1000") && text.contains("1200"), "{text}");
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_descriptors_messages_are_compared_as_bytes() {
    let (old, new) = (serve(catalog(1000)).await, serve(catalog(1200)).await);
    let g = gateway(&grpc_backends(
        &old,
        &new,
        "shadow: { percent: 100, methods: [POST] }\n",
    ));
    get_item(&proxy(&g), None, "lamp").await.unwrap();
    eventually(Duration::from_secs(10), "the call compared", || {
        metric(&g, "switchyard_comparisons_total", &[("result", "diff")]) == 1.0
    })
    .await;
    let samples = get(&client(), &format!("{}/diffs?field=body", admin(&g)), &[])
        .await
        .json();
    let text = samples.to_string();
    assert!(text.contains("binary_changed"), "{text}");
    assert!(
        text.contains("set diff.grpc.descriptor_set"),
        "the report says why: {text}"
    );
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_in_trailers_reach_the_client_and_are_compared() {
    let (old, new) = (serve(catalog(1000)).await, serve(catalog(1000)).await);
    let g = gateway(&grpc_backends(
        &old,
        &new,
        "shadow: { percent: 100, methods: [POST] }\n",
    ));
    let status = get_item(&proxy(&g), None, "missing").await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), "no such item: 100% gone ✗", "grpc-message intact");
    eventually(Duration::from_secs(10), "the failed call compared", || {
        metric(&g, "switchyard_comparisons_total", &[]) == 1.0
    })
    .await;
    assert_eq!(equal_answers(&g), 1.0, "the same status on both sides is no difference");
    stop(g).await;

    // Differing statuses are a difference, found in the trailers.
    let old = serve(catalog(1000)).await;
    let new = serve(Catalog {
        knows_missing: true,
        ..catalog(1000)
    })
    .await;
    let g = gateway(&grpc_backends(
        &old,
        &new,
        "shadow: { percent: 100, methods: [POST] }\n",
    ));
    assert_eq!(
        get_item(&proxy(&g), None, "missing").await.unwrap_err().code(),
        Code::NotFound
    );
    eventually(Duration::from_secs(10), "the calls compared", || {
        metric(&g, "switchyard_comparisons_total", &[("result", "diff")]) == 1.0
    })
    .await;
    let samples = get(&client(), &format!("{}/diffs?field=header:grpc-status", admin(&g)), &[])
        .await
        .json();
    assert!(
        samples.to_string().contains("\"5\""),
        "old said NOT_FOUND (5): {samples}"
    );
    stop(g).await;
}

#[tokio::test]
async fn server_streaming_calls_pass_through_as_they_come() {
    let c = catalog(1000);
    let go_on = c.go_on.clone();
    let old = serve(c).await;
    let g = gateway(&grpc_backends(&old, &old, ""));
    let mut grpc = grpc_client(&proxy(&g), None);
    grpc.ready().await.unwrap();
    let resp = grpc
        .server_streaming(
            Request::new(ItemRequest { id: "lamp".into() }),
            PathAndQuery::from_static("/shop.Catalog/Watch"),
            ProstCodec::<ItemRequest, Item>::default(),
        )
        .await
        .unwrap();
    let mut stream = resp.into_inner();
    // The backend holds the rest of the stream until the first item is
    // here: a gateway that buffered would wait forever.
    let first = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("the first item arrives while the stream is open")
        .unwrap()
        .unwrap();
    assert_eq!(first.id, "lamp-0");
    go_on.notify_one();
    let second = stream.message().await.unwrap().unwrap();
    assert_eq!(second.id, "lamp-1");
    go_on.notify_one();
    assert_eq!(stream.message().await.unwrap().unwrap().id, "lamp-2");
    assert!(
        stream.message().await.unwrap().is_none(),
        "the stream ends with an OK status"
    );
    stop(g).await;
}

#[tokio::test]
async fn the_gateways_own_failures_are_grpc_statuses() {
    let dead = Refusing::new();
    let g = gateway(&grpc_backends(&dead.url(), &dead.url(), ""));
    let status = get_item(&proxy(&g), None, "lamp").await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("could not connect to the old backend"),
        "{status:?}"
    );
    stop(g).await;

    let slow = serve(Catalog {
        delay: Duration::from_secs(5),
        ..catalog(1)
    })
    .await;
    let g = gateway(&grpc_backends(&format!("{slow}\", timeout: \"200ms"), &slow, ""));
    let status = get_item(&proxy(&g), None, "lamp").await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    stop(g).await;
}

#[tokio::test]
async fn grpc_over_the_tls_listener() {
    let ca = support::tls::TestCa::new();
    let leaf = ca.issue("gateway", &["127.0.0.1"]);
    let old = serve(catalog(1000)).await;
    let g = gateway(&format!(
        "{}tls:\n  listen: \"127.0.0.1:0\"\n  certificates: [{{ cert_file: \"{}\", key_file: \"{}\" }}]\n",
        grpc_backends(&old, &old, ""),
        leaf.cert_file.display(),
        leaf.key_file.display()
    ));
    let base = format!("https://{}", g.tls_addr.unwrap());
    let item = get_item(&base, Some(&ca), "lamp").await.unwrap();
    assert_eq!(item.name, "Lamp");
    stop(g).await;
}

#[tokio::test]
async fn a_modules_refusal_is_a_grpc_status() {
    let old = serve(catalog(1000)).await;
    let g = gateway(&grpc_backends(
        &old,
        &old,
        "modules:\n  - rate_limit: { key: \"global\", rate: 1, per: \"1h\", burst: 1 }\n",
    ));
    get_item(&proxy(&g), None, "lamp").await.unwrap();
    let status = get_item(&proxy(&g), None, "lamp").await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "a 429 said in gRPC: {status:?}");
    stop(g).await;
}

#[tokio::test]
async fn streaming_calls_are_not_mirrored_when_the_descriptors_say_they_stream() {
    let dir = tempfile::tempdir().unwrap();
    let protos = descriptor_set(dir.path());
    let old = serve(catalog(1000)).await;
    let g = gateway(&grpc_backends(
        &old,
        &old,
        &format!(
            "shadow: {{ percent: 100, methods: [POST] }}\ndiff: {{ grpc: {{ descriptor_set: \"{}\" }} }}\n",
            protos.display()
        ),
    ));
    let mut grpc = grpc_client(&proxy(&g), None);
    grpc.ready().await.unwrap();
    let mut stream = grpc
        .server_streaming(
            Request::new(ItemRequest { id: "lamp".into() }),
            PathAndQuery::from_static("/shop.Catalog/Watch"),
            ProstCodec::<ItemRequest, Item>::default(),
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stream.message().await.unwrap().unwrap().id, "lamp-0");
    assert_eq!(
        metric(&g, "switchyard_shadow_requests_total", &[("outcome", "skipped_stream")]),
        1.0
    );
    drop(stream);
    // A unary call on the same route is still mirrored.
    get_item(&proxy(&g), None, "lamp").await.unwrap();
    eventually(Duration::from_secs(10), "the unary call compared", || {
        equal_answers(&g) == 1.0
    })
    .await;
    stop(g).await;
}

//! End-to-end checks of what other services rely on: the W3C trace context crosses a real
//! gRPC hop (tonic client → HTTP/2 → tonic server → exported OpenTelemetry span), and the
//! operations HTTP endpoint answers as the brief says.
//!
//! Each test runs on its own current-thread Tokio runtime (the `#[tokio::test]` default) and
//! installs its subscriber with `set_default`, which is thread-local: the in-process server's
//! tasks run on the same thread, so they see the test's subscriber and no other test's.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use opentelemetry::trace::{SpanKind, TraceContextExt as _};
use opentelemetry::Value;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tern_telemetry::grpc::{self, TraceInterceptor};
use tern_telemetry::tonic_health::pb::health_client::HealthClient;
use tern_telemetry::tonic_health::pb::HealthCheckRequest;
use tern_telemetry::Health;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

const CHECK: &str = "grpc.health.v1.Health/Check";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN_ID: &str = "00f067aa0ba902b7";

/// Fails the test instead of hanging it when something never answers.
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Starts tonic-health's Health service with the production trace hook on an ephemeral port.
async fn start_health_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (_reporter, service) = tern_telemetry::tonic_health::server::health_reporter();
    tokio::spawn(async move {
        Server::builder()
            .trace_fn(grpc::server_span)
            .add_service(service)
            .serve_with_incoming(TcpIncoming::from(listener))
            .await
    });
    addr
}

async fn connect(addr: SocketAddr) -> Channel {
    let endpoint = Channel::from_shared(format!("http://{addr}")).expect("valid uri");
    within("connect", endpoint.connect())
        .await
        .expect("connect to in-process server")
}

fn check_request() -> tonic::Request<HealthCheckRequest> {
    tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    })
}

/// Flushes until a span named `name` has been exported. The server span ends when tonic drops
/// the call's future, which can be just after the client has its response, so one flush right
/// after the call could race it.
async fn exported_span(
    provider: &SdkTracerProvider,
    exporter: &InMemorySpanExporter,
    name: &str,
) -> SpanData {
    within(&format!("span {name} to be exported"), async {
        loop {
            provider.force_flush().expect("flush");
            let spans = exporter.get_finished_spans().expect("finished spans");
            if let Some(span) = spans.into_iter().find(|s| s.name == name) {
                return span;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

#[tokio::test]
async fn client_trace_context_becomes_server_span_parent() {
    let exporter = InMemorySpanExporter::default();
    let (subscriber, provider) =
        tern_telemetry::subscriber_with_exporter("propagation-test", exporter.clone());
    let _default = tracing::subscriber::set_default(subscriber);

    let addr = start_health_server().await;
    let mut client = HealthClient::new(connect(addr).await);
    let mut request = check_request();
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01")
            .parse()
            .expect("ascii metadata"),
    );
    within("Check", client.check(request))
        .await
        .expect("Check succeeds");

    let span = exported_span(&provider, &exporter, CHECK).await;
    assert_eq!(span.span_context.trace_id().to_string(), TRACE_ID);
    assert_eq!(span.parent_span_id.to_string(), PARENT_SPAN_ID);
    assert!(span.parent_span_is_remote, "parent came over the wire");
    assert!(span.span_context.is_sampled(), "sampled flag is honoured");
    assert_eq!(span.span_kind, SpanKind::Server);
    assert_eq!(
        attribute(&span, "rpc.system"),
        Some(&Value::from("grpc")),
        "{:?}",
        span.attributes
    );
    assert_eq!(
        attribute(&span, "rpc.service"),
        Some(&Value::from("grpc.health.v1.Health"))
    );
    assert_eq!(attribute(&span, "rpc.method"), Some(&Value::from("Check")));
    assert_eq!(attribute(&span, "trace_id"), Some(&Value::from(TRACE_ID)));

    provider.shutdown().expect("shutdown");
}

#[tokio::test]
async fn trace_interceptor_carries_client_span_to_server() {
    let exporter = InMemorySpanExporter::default();
    let (subscriber, provider) =
        tern_telemetry::subscriber_with_exporter("propagation-test", exporter.clone());
    let _default = tracing::subscriber::set_default(subscriber);

    let addr = start_health_server().await;
    let channel = connect(addr).await;

    let client_span = tracing::info_span!("client.call");
    let client_cx = client_span.context();
    let client_trace_id = client_cx.span().span_context().trace_id().to_string();
    let client_span_id = client_cx.span().span_context().span_id().to_string();

    // Through the interceptor: the server span joins the client's trace.
    let seen_inside = async {
        let mut client = HealthClient::with_interceptor(channel.clone(), TraceInterceptor);
        within("Check", client.check(check_request()))
            .await
            .expect("Check succeeds");
        grpc::current_trace_id()
    }
    .instrument(client_span.clone())
    .await;
    assert_eq!(
        seen_inside.as_deref(),
        Some(client_trace_id.as_str()),
        "current_trace_id names the entered span's trace"
    );
    assert_eq!(client_trace_id.len(), 32);

    let server = exported_span(&provider, &exporter, CHECK).await;
    assert_eq!(server.span_context.trace_id().to_string(), client_trace_id);
    assert_eq!(server.parent_span_id.to_string(), client_span_id);

    // Control: the same call in the same span without the interceptor starts a new trace,
    // so the match above is the interceptor's doing and not an in-process leak of the span.
    exporter.reset();
    async {
        let mut client = HealthClient::new(channel.clone());
        within("Check", client.check(check_request()))
            .await
            .expect("Check succeeds");
    }
    .instrument(client_span.clone())
    .await;
    let untraced = exported_span(&provider, &exporter, CHECK).await;
    assert_ne!(
        untraced.span_context.trace_id().to_string(),
        client_trace_id
    );

    drop(client_span);
    provider.shutdown().expect("shutdown");
}

/// A minimal HTTP/1.1 GET; returns the status code, the raw head and the body.
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    within(&format!("GET {path}"), async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.expect("read");
        let response = String::from_utf8(response).expect("utf-8 response");
        let (head, body) = response
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("no header/body separator in {response:?}"));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no status code in {head:?}"));
        (status, head.to_owned(), body.to_owned())
    })
    .await
}

#[tokio::test]
async fn serve_http_exposes_metrics_health_and_readiness() {
    let counter = prometheus::IntCounter::new(
        "tern_telemetry_test_requests_total",
        "Requests counted by the serve_http test.",
    )
    .expect("valid metric");
    tern_telemetry::metrics::registry()
        .register(Box::new(counter.clone()))
        .expect("register once");
    counter.inc_by(7);

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let health = Health::default();
    tokio::spawn(tern_telemetry::serve_http(listener, health.clone()));

    let (status, head, body) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(
        body.contains("tern_telemetry_test_requests_total 7"),
        "counter missing from /metrics:\n{body}"
    );
    assert!(tern_telemetry::metrics::render().contains("tern_telemetry_test_requests_total 7"));

    assert_eq!(http_get(addr, "/healthz").await.0, 200);

    assert!(!health.is_ready());
    assert_eq!(http_get(addr, "/readyz").await.0, 503);
    health.set_ready(true);
    assert_eq!(http_get(addr, "/readyz").await.0, 200);
    health.set_ready(false);
    assert_eq!(http_get(addr, "/readyz").await.0, 503);

    assert_eq!(http_get(addr, "/nope").await.0, 404);
}

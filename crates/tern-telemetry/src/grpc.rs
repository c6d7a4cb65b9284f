//! W3C trace-context propagation across gRPC hops.
//!
//! The brief requires the trace context to travel in gRPC metadata across every hop
//! (smtp → queue → store, access → store). The server side extracts it in tonic's `trace_fn`
//! hook, which sees every request before routing, so no service can forget it; the client
//! side injects it with an interceptor. Both use the global propagator that
//! [`crate::init`] sets to W3C TraceContext (`traceparent` / `tracestate`).

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry::Context;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Creates the span for one incoming gRPC call; pass it to tonic's
/// `Server::builder().trace_fn(tern_telemetry::grpc::server_span)`.
///
/// The span is an INFO span named `grpc.server` carrying the OpenTelemetry semantic-convention
/// fields `otel.name = "pkg.Service/Method"`, `otel.kind = "server"`, `rpc.system = "grpc"`,
/// `rpc.service` and `rpc.method`, so exported spans are named by RPC and group correctly in
/// trace viewers. Its parent is the W3C trace context extracted from the request headers via
/// the global propagator; without a valid incoming context the span starts a new trace.
///
/// It also records the trace id as the `trace_id` field, so every log line written while the
/// call is handled names its trace (the brief's "the logs all name" the trace id).
pub fn server_span(req: &::http::Request<()>) -> Span {
    let path = req.uri().path();
    let full_method = path.strip_prefix('/').unwrap_or(path);
    let (service, method) = full_method.rsplit_once('/').unwrap_or(("", full_method));
    let span = tracing::info_span!(
        "grpc.server",
        otel.name = full_method,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
        trace_id = tracing::field::Empty,
    );

    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(req.headers()))
    });
    if parent.span().span_context().is_valid() {
        // Fails only when no OpenTelemetry layer is installed or the span is disabled; then
        // there is nothing to parent and the call is simply untraced.
        let _ = span.set_parent(parent);
    }
    if let Some(trace_id) = trace_id_of(&span) {
        span.record("trace_id", trace_id.as_str());
    }
    span
}

/// Makes `span` part of the trace `trace_id` (32 hex digits) when it has no parent yet: work
/// that resumes later from stored state (a queue entry picked up by a delivery worker
/// minutes after it was accepted) continues the trace the message arrived with, so one
/// trace covers its whole delivery. An invalid id leaves the span as it is.
pub fn continue_trace(span: &Span, trace_id: &str) {
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    let Ok(trace) = TraceId::from_hex(trace_id) else {
        return;
    };
    if trace == TraceId::INVALID {
        return;
    }
    // The stored entry keeps the trace id, not the accepting span's id: a fresh remote
    // parent id in the same trace links the worker's spans into it.
    let parent = SpanContext::new(
        trace,
        SpanId::from_bytes(rand_span_id()),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    let _ = span.set_parent(Context::new().with_remote_span_context(parent));
}

fn rand_span_id() -> [u8; 8] {
    // Not security-relevant: only has to be unlikely to collide within one trace.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    let mixed = nanos ^ (std::process::id() as u64).rotate_left(32) ^ 0x9E37_79B9_7F4A_7C15;
    mixed.max(1).to_be_bytes()
}

/// Injects the current tracing span's OpenTelemetry context into outgoing gRPC metadata
/// (`traceparent`, and `tracestate` when present), so the next hop continues this trace.
///
/// Use it directly when building a `tonic::Request` by hand; [`TraceInterceptor`] does it for
/// every call of a client. Does nothing when there is no valid current trace context.
pub fn inject_current(metadata: &mut MetadataMap) {
    let cx = Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&cx, &mut MetadataInjector(metadata));
    });
}

/// A tonic client interceptor that calls [`inject_current`] on every request, so a client
/// propagates the trace without each call site remembering to:
/// `XClient::with_interceptor(channel, TraceInterceptor)`.
///
/// Tonic runs interceptors synchronously inside the calling future, so "current span" is the
/// span the caller is in when it makes the call.
#[derive(Clone, Copy, Debug, Default)]
pub struct TraceInterceptor;

impl tonic::service::Interceptor for TraceInterceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        inject_current(request.metadata_mut());
        Ok(request)
    }
}

/// The trace id (32 lowercase hex characters) of the current span, if it has a valid
/// OpenTelemetry context: the id that `Received` headers, ternctl and logs name.
pub fn current_trace_id() -> Option<String> {
    trace_id_of(&Span::current())
}

fn trace_id_of(span: &Span) -> Option<String> {
    trace_id_in(&span.context())
}

fn trace_id_in(cx: &Context) -> Option<String> {
    let span_ref = cx.span();
    let span_context = span_ref.span_context();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// Reads propagation fields from HTTP/2 request headers (gRPC metadata are headers).
struct HeaderExtractor<'a>(&'a ::http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        // A non-ASCII (hence invalid) header is treated as absent, never as an error.
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|key| key.as_str()).collect()
    }
}

/// Writes propagation fields into gRPC ASCII metadata.
struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // The propagator only produces valid lowercase ASCII keys and values; anything else is
        // dropped rather than failing the RPC over telemetry.
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value),
        ) {
            self.0.insert(key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_trace_id_outside_a_traced_span() {
        assert_eq!(current_trace_id(), None);
    }

    #[test]
    fn extractor_ignores_non_ascii_headers() {
        let mut headers = ::http::HeaderMap::new();
        headers.insert(
            "traceparent",
            ::http::HeaderValue::from_bytes(b"00-\xff").expect("opaque bytes are allowed"),
        );
        assert_eq!(HeaderExtractor(&headers).get("traceparent"), None);
    }
}

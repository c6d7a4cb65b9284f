//! `init` installs process-global state, so it gets its own test binary (one process) and a
//! single test: the first call succeeds, a second is refused, trace ids exist, and dropping the
//! guard with OTLP export configured neither panics nor hangs on a multi-threaded runtime.

use std::time::{Duration, Instant};

use tern_telemetry::grpc::current_trace_id;
use tern_telemetry::LogFormat;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_once_with_otlp_export_then_guard_flushes_without_hanging() {
    // Nothing listens on the discard port, so the export fails fast: the point is that
    // building the OTLP/gRPC exporter, recording spans and the shutdown path all work.
    // Safe: this is the only test in this binary, so no other thread reads the environment.
    std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9");

    let guard = tern_telemetry::init("tern-telemetry-init-test", LogFormat::Json)
        .expect("first init succeeds");

    let span = tracing::info_span!("init.test.work");
    let trace_id = span
        .in_scope(current_trace_id)
        .expect("spans get trace ids from the installed OpenTelemetry layer");
    assert_eq!(trace_id.len(), 32);
    assert!(trace_id.bytes().all(|b| b.is_ascii_hexdigit()));
    drop(span);
    assert_eq!(current_trace_id(), None, "no span, no trace id");

    let second = tern_telemetry::init("tern-telemetry-init-test", LogFormat::Text);
    assert!(second.is_err(), "a second init must be refused");

    let started = Instant::now();
    drop(guard);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "shutdown took {:?}",
        started.elapsed()
    );
}

//! The global `tracing` subscriber: structured logs to stderr plus OpenTelemetry spans.

use std::fmt;
use std::io::IsTerminal;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanExporter, TracerProviderBuilder};
use opentelemetry_sdk::Resource;
use tracing::level_filters::LevelFilter;
use tracing::Subscriber;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::fmt::TestWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer, Registry};

/// Environment variables that switch on OTLP export. The first is the contract in the
/// architecture brief; the second is the standard per-signal variant, honoured so that an
/// operator who only sets the traces endpoint is not silently ignored.
const OTLP_ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
];

/// The log filter when `RUST_LOG` is unset or empty: `info`, except the OpenTelemetry crates'
/// own start-up chatter, which would otherwise open every service's log. Their warnings and
/// errors (a collector that cannot be reached) still show.
const DEFAULT_LOG_FILTER: &str =
    "info,opentelemetry=warn,opentelemetry_sdk=warn,opentelemetry_otlp=warn";

/// How long a tracer-provider shutdown may block a single-threaded runtime, which cannot make
/// progress on the export while it is blocked (see [`TelemetryGuard`]).
const CURRENT_THREAD_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);

/// The stderr log layer, boxed so text and JSON output share one subscriber type.
type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync + 'static>;

/// The shape of the log lines written to stderr.
///
/// Text is for people at a terminal (`cargo xtask up`); JSON is for log shippers in
/// production, which must not have to parse free-form text to find fields like `trace_id`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum LogFormat {
    /// Human-readable lines, coloured when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl FromStr for LogFormat {
    type Err = ParseLogFormatError;

    /// Parses `text` or `json` (ASCII case-insensitive), the spellings used by service flags,
    /// `TERN_*` environment variables and TOML configs.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("text") {
            Ok(Self::Text)
        } else if s.eq_ignore_ascii_case("json") {
            Ok(Self::Json)
        } else {
            Err(ParseLogFormatError {
                input: s.to_owned(),
            })
        }
    }
}

impl fmt::Display for LogFormat {
    /// Prints the same spelling [`FromStr`] accepts, so configs round-trip.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Text => "text",
            Self::Json => "json",
        })
    }
}

/// A log format other than `text` or `json` was given.
///
/// A real error type (rather than `anyhow::Error`) so that clap's `value_parser` and serde
/// can use [`LogFormat::from_str`] directly and report the bad value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseLogFormatError {
    input: String,
}

impl fmt::Display for ParseLogFormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown log format {:?} (expected \"text\" or \"json\")",
            self.input
        )
    }
}

impl std::error::Error for ParseLogFormatError {}

/// Keeps the tracer provider alive and flushes it when the service exits.
///
/// Spans are exported in batches on a background thread; without an explicit shutdown the
/// last batch (often the spans describing why the process stopped) would be lost. Hold the
/// guard in `main` until the end.
///
/// Dropping it inside a multi-threaded Tokio runtime (the `#[tokio::main]` default) moves the
/// blocking shutdown off the async workers so the OTLP/gRPC client can still run. On a
/// current-thread runtime the export cannot progress while the only thread waits, so the
/// shutdown is bounded to one second rather than hanging exit.
#[must_use = "dropping the guard immediately shuts the tracer provider down"]
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl fmt::Debug for TelemetryGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryGuard").finish_non_exhaustive()
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        use tokio::runtime::{Handle, RuntimeFlavor};
        let provider = &self.provider;
        let result = match Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(|| provider.shutdown()),
            Ok(_) => provider.shutdown_with_timeout(CURRENT_THREAD_SHUTDOWN_TIMEOUT),
            Err(_) => provider.shutdown(),
        };
        if let Err(err) = result {
            tracing::warn!(error = %err, "flushing trace spans at shutdown failed");
        }
    }
}

/// Installs the global tracing subscriber: a fmt layer to stderr (text or JSON, filtered by
/// `RUST_LOG`, default `info` with the OpenTelemetry crates at `warn`) plus an OpenTelemetry
/// layer, which exports over OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, with the resource attribute
/// `service.name = service`.
///
/// The OpenTelemetry layer is installed even without an endpoint so that trace ids exist and
/// propagate across hops on a developer machine with no collector. Always sets the global
/// text-map propagator to W3C TraceContext and the global tracer provider, and bridges the
/// `log` crate into `tracing`.
///
/// # Errors
///
/// - `RUST_LOG` is set but is not a valid filter (better than silently logging the wrong level);
/// - OTLP export is requested but `init` was called outside a Tokio runtime (the tonic
///   client needs one) or the exporter cannot be built;
/// - a global subscriber or `log` logger is already installed: call `init` once per process.
pub fn init(service: &str, format: LogFormat) -> anyhow::Result<TelemetryGuard> {
    set_propagator();

    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .parse(log_filter_spec())
        .context("RUST_LOG is not a valid tracing filter")?;
    let fmt_layer = fmt_layer(
        format,
        filter,
        std::io::stderr,
        std::io::stderr().is_terminal(),
    );

    let otlp_endpoint = otlp_endpoint();
    let provider = match &otlp_endpoint {
        Some(_) => {
            tokio::runtime::Handle::try_current().context(
                "OTLP trace export is configured, but tern_telemetry::init was called outside a \
                 Tokio runtime (the OTLP/gRPC client needs one)",
            )?;
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .build()
                .context("building the OTLP/gRPC span exporter")?;
            provider_builder(service)
                .with_batch_exporter(exporter)
                .build()
        }
        None => provider_builder(service).build(),
    };

    build_subscriber(service, &provider, fmt_layer)
        .try_init()
        .context("installing the global tracing subscriber (tern_telemetry::init called twice?)")?;
    opentelemetry::global::set_tracer_provider(provider.clone());

    match otlp_endpoint {
        Some(endpoint) => {
            tracing::info!(service, %endpoint, %format, "telemetry ready, exporting traces over OTLP/gRPC");
        }
        None => tracing::debug!(service, %format, "telemetry ready, trace export disabled"),
    }
    Ok(TelemetryGuard { provider })
}

/// Builds the same subscriber as [`init`], but exporting spans to a caller-supplied exporter
/// and without installing anything globally except the W3C TraceContext propagator.
///
/// This exists so tests can observe real exported spans (e.g. with
/// `opentelemetry_sdk::trace::InMemorySpanExporter`) through exactly the production layers,
/// using `tracing::subscriber::set_default` or `with_default`. The exporter runs in a batch
/// processor: call `force_flush` on the returned provider before inspecting it.
///
/// Log lines go to stderr through libtest's capture (`eprint!`), so passing tests stay quiet.
/// An invalid `RUST_LOG` is ignored here (invalid directives are dropped) rather than failing.
pub fn subscriber_with_exporter<E: SpanExporter + 'static>(
    service: &str,
    exporter: E,
) -> (impl Subscriber + Send + Sync, SdkTracerProvider) {
    set_propagator();
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .parse_lossy(log_filter_spec());
    let fmt_layer = fmt_layer(LogFormat::Text, filter, TestWriter::with_stderr(), false);
    let provider = provider_builder(service)
        .with_batch_exporter(exporter)
        .build();
    (build_subscriber(service, &provider, fmt_layer), provider)
}

/// Sets the process-wide propagator used by [`crate::grpc`] to W3C TraceContext, the format
/// the brief requires in gRPC metadata. Idempotent.
fn set_propagator() {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
}

/// `RUST_LOG` if set and non-empty, else [`DEFAULT_LOG_FILTER`].
fn log_filter_spec() -> String {
    std::env::var("RUST_LOG")
        .ok()
        .filter(|spec| !spec.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_LOG_FILTER.to_owned())
}

/// The configured OTLP endpoint, if export is switched on (an empty variable counts as unset).
fn otlp_endpoint() -> Option<String> {
    OTLP_ENDPOINT_VARS
        .iter()
        .filter_map(|var| std::env::var(var).ok())
        .map(|value| value.trim().to_owned())
        .find(|value| !value.is_empty())
}

fn provider_builder(service: &str) -> TracerProviderBuilder {
    SdkTracerProvider::builder().with_resource(
        Resource::builder()
            .with_service_name(service.to_owned())
            .build(),
    )
}

fn fmt_layer<W>(format: LogFormat, filter: EnvFilter, writer: W, ansi: bool) -> BoxedLayer
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer().with_writer(writer);
    match format {
        LogFormat::Text => layer.with_ansi(ansi).with_filter(filter).boxed(),
        LogFormat::Json => layer.json().with_filter(filter).boxed(),
    }
}

/// What the OpenTelemetry layer turns into spans: INFO and above regardless of `RUST_LOG`,
/// except the OpenTelemetry crates themselves, so exporting spans never produces spans.
fn otel_filter() -> Targets {
    Targets::new()
        .with_default(LevelFilter::INFO)
        .with_target("opentelemetry", LevelFilter::OFF)
        .with_target("opentelemetry_sdk", LevelFilter::OFF)
        .with_target("opentelemetry_otlp", LevelFilter::OFF)
}

fn build_subscriber(
    service: &str,
    provider: &SdkTracerProvider,
    fmt_layer: BoxedLayer,
) -> impl Subscriber + Send + Sync + for<'a> LookupSpan<'a> {
    let otel_layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(service.to_owned()))
        .with_filter(otel_filter());
    Registry::default().with(fmt_layer).with(otel_layer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_format_parses_both_spellings_and_rejects_others() {
        assert_eq!("text".parse::<LogFormat>(), Ok(LogFormat::Text));
        assert_eq!(" JSON ".parse::<LogFormat>(), Ok(LogFormat::Json));
        let err = "yaml".parse::<LogFormat>().unwrap_err();
        assert!(err.to_string().contains("yaml"), "{err}");
        assert_eq!(LogFormat::Json.to_string().parse(), Ok(LogFormat::Json));
    }
}

//! The process-wide Prometheus registry and its text rendering.
//!
//! Every service registers its counters, gauges and histograms here so one `/metrics`
//! endpoint ([`crate::serve_http`]) exposes all of them. Name metrics `tern_<service>_...`;
//! the registry adds no prefix, so names stay greppable across code and dashboards.

use prometheus::{Encoder as _, Registry, TextEncoder};

/// The process-wide Prometheus registry every service registers into.
///
/// It is the `prometheus` crate's default registry, so metrics created with the crate's
/// `register_*!` macros are served as well as those registered explicitly with
/// `registry().register(Box::new(metric.clone()))`.
pub fn registry() -> &'static Registry {
    prometheus::default_registry()
}

/// Renders the registry in the Prometheus text exposition format (what `/metrics` serves).
///
/// Rendering only fails if a collector produces inconsistent metric families; rather than
/// failing a scrape-driven caller, the error is logged and an empty document returned.
pub fn render() -> String {
    encode().unwrap_or_else(|err| {
        tracing::error!(error = %err, "rendering Prometheus metrics failed");
        String::new()
    })
}

/// The content type of [`render`]'s output, for the `Content-Type` header.
pub(crate) fn content_type() -> String {
    TextEncoder::new().format_type().to_owned()
}

/// Fallible rendering, so the HTTP handler can answer 500 instead of an empty 200.
pub(crate) fn encode() -> prometheus::Result<String> {
    TextEncoder::new().encode_to_string(&registry().gather())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_includes_registered_metrics() {
        let counter = prometheus::IntCounter::new(
            "tern_telemetry_unit_test_total",
            "A counter registered by a unit test.",
        )
        .expect("valid metric");
        registry()
            .register(Box::new(counter.clone()))
            .expect("registered once");
        counter.inc_by(3);
        let text = render();
        assert!(
            text.contains("tern_telemetry_unit_test_total 3"),
            "missing counter in:\n{text}"
        );
    }
}

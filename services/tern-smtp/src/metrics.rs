//! tern-smtp's Prometheus metrics, labelled by listener (`mx`, `submission`, `submissions`).

use std::sync::OnceLock;

use prometheus::{IntCounterVec, IntGaugeVec, Opts};

struct Metrics {
    sessions: IntGaugeVec,
    sessions_total: IntCounterVec,
    refused: IntCounterVec,
    replies: IntCounterVec,
    accepted: IntCounterVec,
    accepted_octets: IntCounterVec,
    spf: IntCounterVec,
}

fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| {
        let registry = tern_telemetry::metrics::registry();
        let vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)
                .expect("static metric definition");
            let _ = registry.register(Box::new(c.clone()));
            c
        };
        let sessions = IntGaugeVec::new(
            Opts::new("tern_smtp_sessions", "Open sessions"),
            &["listener"],
        )
        .expect("static metric definition");
        let _ = registry.register(Box::new(sessions.clone()));
        Metrics {
            sessions,
            sessions_total: vec(
                "tern_smtp_sessions_total",
                "Sessions accepted",
                &["listener"],
            ),
            refused: vec(
                "tern_smtp_connections_refused_total",
                "Connections refused by the connection limits or an unavailable store",
                &["listener"],
            ),
            replies: vec(
                "tern_smtp_replies_total",
                "Replies sent, by listener and reply class (2xx, 3xx, 4xx, 5xx)",
                &["listener", "class"],
            ),
            accepted: vec(
                "tern_smtp_messages_accepted_total",
                "Messages committed to the queue and answered 250",
                &["listener"],
            ),
            accepted_octets: vec(
                "tern_smtp_accepted_octets_total",
                "Octets of accepted messages",
                &["listener"],
            ),
            spf: vec(
                "tern_smtp_spf_results_total",
                "SPF checks at MAIL FROM on the MX listener, by result (pass, fail, softfail, neutral, none, temperror, permerror)",
                &["result"],
            ),
        }
    })
}

/// Counts a session as open while it lives.
pub struct SessionGauge(&'static str);

impl SessionGauge {
    /// A session on `listener` started.
    pub fn open(listener: &'static str) -> Self {
        metrics().sessions.with_label_values(&[listener]).inc();
        metrics()
            .sessions_total
            .with_label_values(&[listener])
            .inc();
        Self(listener)
    }
}

impl Drop for SessionGauge {
    fn drop(&mut self) {
        metrics().sessions.with_label_values(&[self.0]).dec();
    }
}

/// A connection was turned away before the greeting.
pub fn refused(listener: &str) {
    metrics().refused.with_label_values(&[listener]).inc();
}

/// A reply was sent.
pub fn reply(listener: &str, code: u16) {
    let class = match code / 100 {
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    };
    metrics()
        .replies
        .with_label_values(&[listener, class])
        .inc();
}

/// A message was accepted.
pub fn accepted(listener: &str, octets: u64) {
    metrics().accepted.with_label_values(&[listener]).inc();
    metrics()
        .accepted_octets
        .with_label_values(&[listener])
        .inc_by(octets);
}

/// Counts one SPF check with its result.
pub fn spf_checked(result: &str) {
    metrics().spf.with_label_values(&[result]).inc();
}

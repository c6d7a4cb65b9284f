//! The access node's Prometheus metrics, labelled by protocol (`pop3`, `imap`).

use std::sync::OnceLock;

use prometheus::{IntCounterVec, IntGaugeVec, Opts};

struct Metrics {
    sessions: IntGaugeVec,
    sessions_total: IntCounterVec,
    refused: IntCounterVec,
    failed_commands: IntCounterVec,
    commands: IntCounterVec,
}

fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| {
        let registry = tern_telemetry::metrics::registry();
        let gauge = |name: &str, help: &str| {
            let g = IntGaugeVec::new(Opts::new(name, help), &["protocol"])
                .expect("static metric definition");
            let _ = registry.register(Box::new(g.clone()));
            g
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounterVec::new(Opts::new(name, help), &["protocol"])
                .expect("static metric definition");
            let _ = registry.register(Box::new(c.clone()));
            c
        };
        Metrics {
            sessions: gauge("tern_access_sessions", "Open sessions"),
            sessions_total: counter("tern_access_sessions_total", "Sessions accepted"),
            refused: counter(
                "tern_access_connections_refused_total",
                "Connections refused by the connection limits",
            ),
            failed_commands: counter(
                "tern_access_failed_commands_total",
                "Commands answered with an error",
            ),
            commands: {
                let c = IntCounterVec::new(
                    Opts::new(
                        "tern_access_commands_total",
                        "Commands answered, by protocol and reply class (IMAP: ok, no, bad; POP3: ok, err)",
                    ),
                    &["protocol", "class"],
                )
                .expect("static metric definition");
                let _ = registry.register(Box::new(c.clone()));
                c
            },
        }
    })
}

/// Counts a session as open while it lives.
pub struct SessionGauge(&'static str);

impl SessionGauge {
    /// A session of `protocol` started.
    pub fn open(protocol: &'static str) -> Self {
        metrics().sessions.with_label_values(&[protocol]).inc();
        metrics()
            .sessions_total
            .with_label_values(&[protocol])
            .inc();
        Self(protocol)
    }
}

impl Drop for SessionGauge {
    fn drop(&mut self) {
        metrics().sessions.with_label_values(&[self.0]).dec();
    }
}

/// A connection was refused by the limits.
pub fn refused(protocol: &str) {
    metrics().refused.with_label_values(&[protocol]).inc();
}

/// A command was answered; `class` is the reply class (`ok`, `no`, `bad`, `err`).
pub fn command_answered(protocol: &str, class: &str) {
    metrics()
        .commands
        .with_label_values(&[protocol, class])
        .inc();
}

/// A command was answered with an error.
pub fn command_failed(protocol: &str) {
    metrics()
        .failed_commands
        .with_label_values(&[protocol])
        .inc();
}

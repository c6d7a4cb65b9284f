//! tern-queue's Prometheus metrics: messages enqueued, recipient outcomes per route,
//! DSNs sent, attempts, and delivery latency.
//!
//! Queue depth and the oldest entry's age are the store's to count (it holds the entries):
//! see `tern_store_queue_entries` and `tern_store_queue_oldest_entry_age_seconds`.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts};

struct Metrics {
    enqueued: IntCounter,
    outcomes: IntCounterVec,
    bounces: IntCounter,
    attempts: IntCounter,
    delivery_seconds: HistogramVec,
    attempt_seconds: HistogramVec,
}

fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| {
        let registry = tern_telemetry::metrics::registry();
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("static metric definition");
            let _ = registry.register(Box::new(c.clone()));
            c
        };
        let outcomes = IntCounterVec::new(
            Opts::new(
                "tern_queue_recipients_total",
                "Recipient outcomes of delivery attempts, by route (local, remote) and outcome (delivered, deferred, failed)",
            ),
            &["route", "outcome"],
        )
        .expect("static metric definition");
        let _ = registry.register(Box::new(outcomes.clone()));
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), &["route"])
                .expect("static metric definition");
            let _ = registry.register(Box::new(h.clone()));
            h
        };
        Metrics {
            enqueued: counter(
                "tern_queue_messages_enqueued_total",
                "Messages committed to the queue through this node's Enqueue API",
            ),
            outcomes,
            bounces: counter(
                "tern_queue_bounces_total",
                "Delivery status notifications (bounces) queued to senders",
            ),
            attempts: counter(
                "tern_queue_attempts_total",
                "Delivery attempts of queue entries",
            ),
            delivery_seconds: histogram(
                "tern_queue_delivery_seconds",
                "Time from acceptance to delivery of each recipient, by route",
                vec![
                    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
                    3600.0, 14400.0, 86400.0,
                ],
            ),
            attempt_seconds: histogram(
                "tern_queue_attempt_seconds",
                "Duration of one delivery to a route (one store write, or one SMTP transaction chain)",
                vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0],
            ),
        }
    })
}

/// Registers every metric, so a scrape lists them before the first message.
pub fn register() {
    let _ = metrics();
}

/// A message was enqueued.
pub fn enqueued() {
    metrics().enqueued.inc();
}

/// A DSN was queued.
pub fn bounced() {
    metrics().bounces.inc();
}

/// One attempt at an entry started.
pub fn attempt() {
    metrics().attempts.inc();
}

/// One recipient's outcome; `since_accepted` is set for deliveries.
pub fn outcome(route: &str, outcome: &str, since_accepted: Option<Duration>) {
    let m = metrics();
    m.outcomes.with_label_values(&[route, outcome]).inc();
    if let Some(d) = since_accepted {
        m.delivery_seconds
            .with_label_values(&[route])
            .observe(d.as_secs_f64());
    }
}

/// The time one route's delivery took within an attempt.
pub fn route_took(route: &str, took: Duration) {
    metrics()
        .attempt_seconds
        .with_label_values(&[route])
        .observe(took.as_secs_f64());
}

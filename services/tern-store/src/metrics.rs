//! tern-store's Prometheus metrics beyond the Raft gauges of the health watcher: commit
//! latency, replication lag per follower, RocksDB size per column family, and the depth and
//! oldest age of the delivery queue.
//!
//! Queue depth lives here, not in tern-queue, because the store holds the entries: any
//! store node can count them from its applied state, while a queue worker only sees what it
//! leases. Sizes and depth are sampled every [`SAMPLE_EVERY`] by a background task, so a
//! scrape never walks RocksDB.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
};

use crate::keys::{self, cf};
use crate::node::Node;

/// How often sizes and queue depth are sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// The queue count stops at this many entries (a bound on one sample's work).
pub const MAX_COUNTED_ENTRIES: usize = 1_000_000;

struct Metrics {
    commit_seconds: Histogram,
    follower_lag: IntGaugeVec,
    rocksdb_bytes: IntGaugeVec,
    queue_entries: IntGauge,
    queue_oldest_age: IntGauge,
    applied_commands: IntCounterVec,
    log_syncs: IntCounter,
    log_entries: IntCounter,
    password_checks: IntCounterVec,
    message_reads: IntCounterVec,
}

fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| {
        let registry = tern_telemetry::metrics::registry();
        let commit_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "tern_store_commit_seconds",
                "Time from proposing a write to its outcome (Raft commit and apply on a majority)",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )
        .expect("static metric definition");
        let gauge_vec = |name: &str, help: &str, label: &str| {
            IntGaugeVec::new(Opts::new(name, help), &[label]).expect("static metric definition")
        };
        let follower_lag = gauge_vec(
            "tern_store_raft_follower_lag_entries",
            "On the leader: log entries each follower or learner is behind the leader's last log index",
            "follower",
        );
        let rocksdb_bytes = gauge_vec(
            "tern_store_rocksdb_bytes",
            "Bytes on disk (SST and blob files) and in memtables, per column family",
            "cf",
        );
        let queue_entries = IntGauge::new(
            "tern_store_queue_entries",
            "Queue entries (messages waiting for delivery or retry), as this node has applied",
        )
        .expect("static metric definition");
        let queue_oldest_age = IntGauge::new(
            "tern_store_queue_oldest_entry_age_seconds",
            "Age of the oldest queue entry (0 when the queue is empty)",
        )
        .expect("static metric definition");
        let applied_commands = IntCounterVec::new(
            Opts::new(
                "tern_store_applied_commands_total",
                "State-machine commands this node has applied, by kind (accept, enqueue, lease, deliver, update-entry, ...): the replicated writes the services cost",
            ),
            &["kind"],
        )
        .expect("static metric definition");
        // Group commit made visible: entries per synced append, and (with the applied
        // commands) commands per entry.
        let log_syncs = IntCounter::new(
            "tern_store_log_syncs_total",
            "Synced appends to this node's Raft log (one fsync of RocksDB's WAL each)",
        )
        .expect("static metric definition");
        let log_entries = IntCounter::new(
            "tern_store_log_entries_total",
            "Entries appended to this node's Raft log",
        )
        .expect("static metric definition");
        let password_checks = IntCounterVec::new(
            Opts::new(
                "tern_store_password_checks_total",
                "Password checks by how they were decided (cache: a success remembered by the credential cache; argon2: a full argon2id run, unknown users and wrong passwords included)",
            ),
            &["how"],
        )
        .expect("static metric definition");
        let message_reads = IntCounterVec::new(
            Opts::new(
                "tern_store_message_reads_total",
                "Reads of stored messages for clients, by what was read (body: all or part of a body; header: a header record; header_from_body: a header cut from its body, for a body without a record; header_too_large: a header over 64 KiB without a record, left for the caller to read with the body)",
            ),
            &["part"],
        )
        .expect("static metric definition");
        let _ = registry.register(Box::new(message_reads.clone()));
        let _ = registry.register(Box::new(password_checks.clone()));
        let _ = registry.register(Box::new(log_syncs.clone()));
        let _ = registry.register(Box::new(log_entries.clone()));
        let _ = registry.register(Box::new(applied_commands.clone()));
        let _ = registry.register(Box::new(commit_seconds.clone()));
        let _ = registry.register(Box::new(follower_lag.clone()));
        let _ = registry.register(Box::new(rocksdb_bytes.clone()));
        let _ = registry.register(Box::new(queue_entries.clone()));
        let _ = registry.register(Box::new(queue_oldest_age.clone()));
        Metrics {
            commit_seconds,
            follower_lag,
            rocksdb_bytes,
            queue_entries,
            queue_oldest_age,
            applied_commands,
            log_syncs,
            log_entries,
            password_checks,
            message_reads,
        }
    })
}

/// Counts one read of a stored message's `part` (body, header, header_from_body).
pub fn message_read(part: &str) {
    metrics().message_reads.with_label_values(&[part]).inc();
}

/// Counts one password check decided `how` (cache, argon2).
pub fn password_checked(how: &str) {
    metrics().password_checks.with_label_values(&[how]).inc();
}

/// Counts one synced append of `entries` entries to the Raft log.
pub fn log_synced(entries: u64) {
    let m = metrics();
    m.log_syncs.inc();
    m.log_entries.inc_by(entries);
}

/// Registers every metric, so a scrape lists them before their first sample.
pub fn register() {
    let _ = metrics();
}

/// Counts one applied command of this kind.
pub fn command_applied(kind: &str) {
    metrics().applied_commands.with_label_values(&[kind]).inc();
}

/// Observes one write's commit latency.
pub fn commit_observed(started: Instant) {
    metrics()
        .commit_seconds
        .observe(started.elapsed().as_secs_f64());
}

/// Sets the replication lag of each follower (on the leader); clears it elsewhere.
pub fn set_follower_lag(lags: &[(u64, u64)]) {
    let m = metrics();
    m.follower_lag.reset();
    for (id, lag) in lags {
        m.follower_lag
            .with_label_values(&[&id.to_string()])
            .set(*lag as i64);
    }
}

/// Samples sizes and queue depth every [`SAMPLE_EVERY`] until the process ends.
pub async fn sample_forever(node: Arc<Node>) {
    loop {
        let n = node.clone();
        // RocksDB calls block: keep them off the async workers.
        let _ = tokio::task::spawn_blocking(move || sample(&n)).await;
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
}

fn sample(node: &Node) {
    let m = metrics();
    let db = &node.db;
    for name in cf::ALL {
        let Some(handle) = db.cf_handle(name) else {
            continue;
        };
        let prop = |p: &str| {
            db.property_int_value_cf(&handle, p)
                .ok()
                .flatten()
                .unwrap_or(0)
        };
        let bytes = prop("rocksdb.total-sst-files-size")
            + prop("rocksdb.live-blob-file-size")
            + prop("rocksdb.size-all-mem-tables");
        m.rocksdb_bytes
            .with_label_values(&[name])
            .set(bytes.min(i64::MAX as u64) as i64);
    }
    // Under the state lock, like every read of the state machine: a snapshot install must
    // not swap the queue out from under the count.
    let counted = node.state.read_engine(|engine| {
        let prefix = keys::QUEUE_ENTRY_PREFIX;
        let mut count = 0usize;
        let mut oldest_ms: Option<i64> = None;
        for item in engine
            .scan(cf::QUEUE, prefix, prefix)?
            .take(MAX_COUNTED_ENTRIES)
        {
            let (key, _) = item?;
            if oldest_ms.is_none() {
                // Queue ids start with their creation time in hex milliseconds, so the
                // first key is the oldest entry.
                oldest_ms = key
                    .get(1..12)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| i64::from_str_radix(h, 16).ok());
            }
            count += 1;
        }
        Ok((count, oldest_ms))
    });
    let Ok((count, oldest_ms)) = counted else {
        return;
    };
    m.queue_entries.set(count as i64);
    let age = oldest_ms
        .map(|t| (crate::api::now_ms() - t).max(0) / 1000)
        .unwrap_or(0);
    m.queue_oldest_age.set(age);
}

//! Issue 7's metrics must-show: every service's `/metrics` parses with a Prometheus text
//! parser Tern did not write (the prometheus-parse crate), and the counters move as mail is
//! sent and read. Also readiness: an access node is ready only while it reaches a store
//! quorum.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use prometheus_parse::{Sample, Scrape, Value};
use tern_e2e::journey;
use tern_testkit::platform::{http_get, Platform};

/// Every sample of every service, by service name.
type Scrapes = BTreeMap<String, Vec<Sample>>;

/// Scrapes every service; `require_samples` insists that each one has samples (before any
/// traffic, a service whose metrics all carry labels has none yet, which is valid).
async fn scrape_all(p: &Platform, require_samples: bool) -> anyhow::Result<Scrapes> {
    let mut out = BTreeMap::new();
    for (service, addr) in p.metrics_endpoints() {
        let (status, body) = http_get(&addr, "/metrics").await?;
        anyhow::ensure!(status == 200, "{service} /metrics answered {status}");
        let scrape = Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
            .with_context(|| format!("{service} /metrics does not parse:\n{body}"))?;
        anyhow::ensure!(
            !require_samples || !scrape.samples.is_empty(),
            "{service} has no samples"
        );
        out.insert(service, scrape.samples);
    }
    Ok(out)
}

/// The sum of `metric` over the samples whose labels include `labels`: counter and gauge
/// values, or for a histogram its observation count.
fn value(samples: &[Sample], metric: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.metric == metric || s.metric == format!("{metric}_count"))
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => {
                if s.metric == metric || s.metric.ends_with("_count") {
                    *v
                } else {
                    0.0
                }
            }
            Value::Histogram(buckets) => buckets.iter().map(|b| b.count).fold(0.0, f64::max),
            Value::Summary(_) => 0.0,
        })
        .sum()
}

fn has_metric(samples: &[Sample], metric: &str) -> bool {
    samples
        .iter()
        .any(|s| s.metric == metric || s.metric.starts_with(&format!("{metric}_")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metrics_endpoint_parses_and_the_counters_move() -> anyhow::Result<()> {
    // Every message through a delivery worker, so the queue's attempt metrics move (with
    // delivery at acceptance, local-only mail never reaches a worker).
    let mut p = Platform::builder()
        .users(&["alice", "bob", "carol"])
        .deliver_on_accept(false)
        .queue(&[])
        .smtp(&[])
        .access(&[])
        .access_tls(true)
        .start()
        .await?;
    let before = scrape_all(&p, false).await?;

    // Mail in (submission, two local recipients), then read over IMAP and POP3.
    let submission = p.smtp().port("submission").to_string();
    let needle = format!("<metrics-{}@client.example.test>", std::process::id());
    journey::python(&[
        "send",
        "--port",
        &submission,
        "--user",
        "carol@example.test",
        "--password",
        "pw-carol",
        "--message-id",
        &needle,
        "--to",
        "alice@example.test",
        "--to",
        "bob@example.test",
    ])?;
    let imap = p.access().imap_port().to_string();
    let pop3 = p.access().pop3_port().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let read = journey::python(&[
            "imap",
            "--port",
            &imap,
            "--user",
            "alice@example.test",
            "--password",
            "pw-alice",
            "--needle",
            &needle,
        ]);
        if read.is_ok() {
            break;
        }
        if Instant::now() > deadline {
            return read;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    journey::python(&[
        "pop3",
        "--port",
        &pop3,
        "--user",
        "bob@example.test",
        "--password",
        "pw-bob",
        "--needle",
        &needle,
    ])?;

    // Sampled gauges (RocksDB size, queue depth) refresh every 10 s: wait for one round.
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let after = scrape_all(&p, true).await?;
        let sized = (1..=3).all(|i| {
            value(
                &after[&format!("tern-store-{i}")],
                "tern_store_rocksdb_bytes",
                &[],
            ) > 0.0
        });
        if sized {
            break after;
        }
        if Instant::now() > deadline {
            bail!("tern_store_rocksdb_bytes never sampled");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let moved = |service: &str, metric: &str, labels: &[(&str, &str)]| {
        let (b, a) = (
            value(&before[service], metric, labels),
            value(&after[service], metric, labels),
        );
        assert!(
            a > b,
            "{service} {metric}{labels:?} did not move: {b} -> {a}"
        );
    };

    // SMTP: connections and replies per listener and class, accepted messages.
    moved(
        "tern-smtp",
        "tern_smtp_sessions_total",
        &[("listener", "submission")],
    );
    moved(
        "tern-smtp",
        "tern_smtp_replies_total",
        &[("listener", "submission"), ("class", "2xx")],
    );
    moved("tern-smtp", "tern_smtp_messages_accepted_total", &[]);
    moved("tern-smtp", "tern_smtp_accepted_octets_total", &[]);
    // Queue: enqueued, delivered per route, attempts, latency histograms.
    moved("tern-queue", "tern_queue_messages_enqueued_total", &[]);
    moved(
        "tern-queue",
        "tern_queue_recipients_total",
        &[("route", "local"), ("outcome", "delivered")],
    );
    moved("tern-queue", "tern_queue_attempts_total", &[]);
    moved(
        "tern-queue",
        "tern_queue_delivery_seconds",
        &[("route", "local")],
    );
    moved(
        "tern-queue",
        "tern_queue_attempt_seconds",
        &[("route", "local")],
    );
    for m in ["tern_queue_bounces_total", "tern_queue_recipients_total"] {
        assert!(has_metric(&after["tern-queue"], m), "tern-queue lacks {m}");
    }
    // Access: sessions and commands per protocol and reply class.
    for protocol in ["imap", "pop3"] {
        moved(
            "tern-access",
            "tern_access_sessions_total",
            &[("protocol", protocol)],
        );
        moved(
            "tern-access",
            "tern_access_commands_total",
            &[("protocol", protocol), ("class", "ok")],
        );
    }
    // Store: commit latency moved on some node; Raft term, applied index; the leader reports
    // each follower's lag; every node reports RocksDB size and queue depth.
    let commits: f64 = (1..=3)
        .map(|i| {
            let s = format!("tern-store-{i}");
            value(&after[&s], "tern_store_commit_seconds", &[])
                - value(&before[&s], "tern_store_commit_seconds", &[])
        })
        .sum();
    assert!(commits > 0.0, "no store commit latency observed");
    let mut leaders = 0;
    for i in 1..=3 {
        let s = &after[&format!("tern-store-{i}")];
        assert!(value(s, "tern_store_raft_term", &[]) >= 1.0);
        assert!(value(s, "tern_store_raft_last_applied", &[]) >= 1.0);
        for m in [
            "tern_store_raft_leader_changes_total",
            "tern_store_queue_entries",
            "tern_store_queue_oldest_entry_age_seconds",
            "tern_store_rocksdb_bytes",
        ] {
            assert!(has_metric(s, m), "tern-store-{i} lacks {m}");
        }
        if value(s, "tern_store_raft_is_leader", &[]) == 1.0 {
            leaders += 1;
            let followers = s
                .iter()
                .filter(|x| x.metric == "tern_store_raft_follower_lag_entries")
                .count();
            assert_eq!(followers, 2, "the leader reports the lag of both followers");
        }
    }
    assert_eq!(leaders, 1, "exactly one store node says it leads");

    // Readiness follows the store quorum: with two of three store nodes gone the access
    // node leaves the load balancer (503), and comes back when they return.
    let access_metrics = p.access().metrics.clone();
    assert_eq!(http_get(&access_metrics, "/readyz").await?.0, 200);
    p.cluster.kill(1);
    p.cluster.kill(2);
    wait_status(&access_metrics, 503, Duration::from_secs(40)).await?;
    assert_eq!(
        http_get(&access_metrics, "/healthz").await?.0,
        200,
        "alive all the same"
    );
    p.cluster.spawn(1).await?;
    p.cluster.spawn(2).await?;
    wait_status(&access_metrics, 200, Duration::from_secs(60)).await?;
    Ok(())
}

async fn wait_status(addr: &str, want: u16, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let got = http_get(addr, "/readyz").await.map(|r| r.0).unwrap_or(0);
        if got == want {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("/readyz of {addr} stayed {got}, wanted {want}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

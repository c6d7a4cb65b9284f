//! `tern-store-bench`: appends per second for messages of a fixed size at a given
//! concurrency, against a fresh loopback cluster of real tern-store processes.
//! Run through `cargo xtask bench store`, which sweeps nodes and concurrency.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use tern_testkit::{append, Platform};

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    store: tern_testkit::bench::StoreArgs,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Messages in total.
    #[arg(long, default_value_t = 2000)]
    messages: usize,
    /// Message size in octets.
    #[arg(long, default_value_t = 4096)]
    size: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let platform = Platform::builder()
        .store_bin(&args.store.store_bin)
        .stores(args.store.nodes)
        .users(&["bench"])
        .start()
        .await?;
    let cluster = &platform.cluster;
    let leader = cluster.wait_leader(Duration::from_secs(10)).await?;
    let before = tern_testkit::bench::LogCounts::scrape(&cluster.nodes[leader].metrics).await?;
    // Clients talk to the leader, as an access node usually ends up doing (followers forward).
    // Logged in as the bench user, as an access node does before it touches a mailbox.
    let channel = cluster.session(leader, "bench@example.test").await?;
    let body = Arc::new(vec![b'x'; args.size]);
    let per_client = args.messages.div_ceil(args.concurrency);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.concurrency {
        let mut client =
            tern_proto::store::v1::messages_client::MessagesClient::new(channel.clone());
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_client);
            for i in 0..per_client {
                let t = Instant::now();
                append(
                    &mut client,
                    "bench@example.test",
                    "INBOX",
                    &body,
                    &format!("bench-{c}-{i}"),
                )
                .await?;
                latencies.push(t.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let log = tern_testkit::bench::LogCounts::scrape(&cluster.nodes[leader].metrics)
        .await?
        .since(&before);
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len() - 1))
            .copied()
            .unwrap_or_default()
    };
    let n = latencies.len();
    println!(
        "nodes={} concurrency={} messages={} size={} appends_per_sec={:.0} mb_per_sec={:.2} p50_ms={:.1} p99_ms={:.1} entries_per_sync={:.2} commands_per_entry={:.2}",
        args.store.nodes,
        args.concurrency,
        n,
        args.size,
        n as f64 / elapsed,
        (n * args.size) as f64 / elapsed / 1e6,
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        log.entries as f64 / log.syncs.max(1) as f64,
        log.commands as f64 / log.entries.max(1) as f64,
    );
    drop(platform);
    Ok(())
}

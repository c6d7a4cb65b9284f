//! `tern-queue-bench`: deliveries per second through tern-queue, from Enqueue to the message
//! being in place — local mailboxes (1 and 10 recipients per message) and a loopback SMTP
//! sink. Run through `cargo xtask bench queue`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use tern_proto::queue::v1 as qpb;
use tern_proto::queue::v1::queue_client::QueueClient;
use tern_proto::store::v1 as pb;
use tern_testkit::{Platform, StoreCluster};
use tern_trust::Role;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    store: tern_testkit::bench::StoreArgs,
    /// Messages per run.
    #[arg(long, default_value_t = 500)]
    messages: usize,
    /// Concurrent Enqueue clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Message size in octets.
    #[arg(long, default_value_t = 4096)]
    size: usize,
}

/// A loopback SMTP sink that accepts everything and counts messages.
async fn sink(count: Arc<AtomicUsize>) -> anyhow::Result<u16> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut r = BufReader::new(r);
                let _ = w.write_all(b"220 sink ESMTP\r\n").await;
                let mut line = Vec::new();
                let mut in_data = false;
                loop {
                    line.clear();
                    if r.read_until(b'\n', &mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let reply: &[u8] = if in_data {
                        if line != b".\r\n" {
                            continue;
                        }
                        in_data = false;
                        count.fetch_add(1, Ordering::Relaxed);
                        b"250 2.0.0 ok\r\n"
                    } else {
                        let upper = line.to_ascii_uppercase();
                        if upper.starts_with(b"EHLO") {
                            b"250-sink\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
                        } else if upper.starts_with(b"DATA") {
                            in_data = true;
                            b"354 go\r\n"
                        } else if upper.starts_with(b"QUIT") {
                            let _ = w.write_all(b"221 bye\r\n").await;
                            return;
                        } else {
                            b"250 ok\r\n"
                        }
                    };
                    if w.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(port)
}

/// Enqueues `messages` messages to `rcpts` from `clients` concurrent clients.
async fn enqueue_all(platform: &Platform, args: &Args, rcpts: &[String]) -> anyhow::Result<()> {
    let body = {
        let mut b = b"From: bench@example.net\r\nSubject: bench\r\n\r\n".to_vec();
        while b.len() < args.size {
            b.extend_from_slice(
                b"0123456789 the quick brown fox jumps over the lazy dog 0123456789\r\n",
            );
        }
        b.truncate(args.size);
        Arc::new(b)
    };
    let per_client = args.messages.div_ceil(args.clients);
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        // One connection per client, as separate tern-smtp nodes would have.
        let mut client = QueueClient::new(platform.queue_channel().await?);
        let (body, rcpts) = (body.clone(), rcpts.to_vec());
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_client {
                let req = qpb::EnqueueRequest {
                    envelope: Some(qpb::Envelope {
                        sender: "bench@example.net".into(),
                        recipients: rcpts
                            .iter()
                            .map(|a| qpb::Recipient {
                                address: a.clone(),
                                ..Default::default()
                            })
                            .collect(),
                        size: body.len() as u64,
                        ..Default::default()
                    }),
                    chunk: body.to_vec().into(),
                    last: true,
                };
                client.enqueue(futures::stream::iter(vec![req])).await?;
            }
            Ok::<_, tonic::Status>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

async fn queue_len(cluster: &StoreCluster) -> anyhow::Result<usize> {
    let mut q = pb::queue_client::QueueClient::new(cluster.channel(0, Role::Admin).await?);
    Ok(q.list(pb::ListQueueRequest { limit: 100_000 })
        .await?
        .into_inner()
        .entries
        .len())
}

async fn drained(cluster: &StoreCluster) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    while queue_len(cluster).await? > 0 {
        if Instant::now() > deadline {
            anyhow::bail!("the queue did not drain within 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let users: Vec<String> = (1..=10).map(|i| format!("user{i:02}")).collect();
    let names: Vec<&str> = users.iter().map(String::as_str).collect();
    let delivered = Arc::new(AtomicUsize::new(0));
    let port = sink(delivered.clone()).await?;
    let transport = format!("remote.example=127.0.0.1:{port}");
    let platform = Platform::builder()
        .store_bin(&args.store.store_bin)
        .stores(args.store.nodes)
        .users(&names)
        .queue(&["--transports", &transport])
        .start()
        .await?;
    let cluster = &platform.cluster;
    let local_one = vec!["user01@example.test".to_string()];
    let local_ten: Vec<String> = users.iter().map(|u| format!("{u}@example.test")).collect();
    let remote = vec!["sink@remote.example".to_string()];
    println!(
        "==> {} store nodes, {} messages of {} octets per run, {} enqueue clients",
        args.store.nodes, args.messages, args.size, args.clients
    );
    for (name, rcpts) in [
        ("local, 1 recipient", &local_one),
        ("local, 10 recipients", &local_ten),
        ("remote (SMTP sink)", &remote),
    ] {
        let started = Instant::now();
        enqueue_all(&platform, &args, rcpts).await?;
        let enqueued = started.elapsed().as_secs_f64();
        drained(cluster).await?;
        let secs = started.elapsed().as_secs_f64();
        let messages = args.messages.div_ceil(args.clients) * args.clients;
        let deliveries = messages * rcpts.len();
        println!(
            "run={name:?} messages={messages} recipient_deliveries={deliveries} secs={secs:.2} enqueue_secs={enqueued:.2} messages_per_sec={:.0} deliveries_per_sec={:.0}",
            messages as f64 / secs,
            deliveries as f64 / secs
        );
    }
    println!(
        "sink received {} messages",
        delivered.load(Ordering::Relaxed)
    );
    Ok(())
}

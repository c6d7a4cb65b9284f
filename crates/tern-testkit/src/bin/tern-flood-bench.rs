//! `tern-flood-bench`: what a wrong-password flood costs the platform (issue 16). Run
//! through `cargo xtask bench flood`.
//!
//! Starts a platform (3 store nodes, queue, SMTP, access), floods one account with wrong
//! passwords over IMAP, POP3 and SMTP AUTH from `--clients` connections on ten loopback /24s
//! for `--secs`, and meanwhile measures: each store node's worst resident memory, the worst
//! latency of `ternctl cluster status` (run about twice a second), and the delay of a message
//! sent over SMTP every five seconds until it is in the recipient's INBOX. The goals
//! are at most 1 GiB, 2 s and 5 s.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use tern_proto::client::TracedChannel;
use tern_proto::store::v1::messages_client::MessagesClient;
use tern_testkit::flood::{self, rss_bytes, Flood, Target};
use tern_testkit::{fetch, list_all, Platform};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    store: tern_testkit::bench::StoreArgs,
    /// Flooding connections.
    #[arg(long, default_value_t = 200)]
    clients: usize,
    /// Length of the flood, seconds.
    #[arg(long, default_value_t = 30)]
    secs: u64,
}

const RECIPIENT: &str = "bob@example.test";

/// Sends probe `n` to [`RECIPIENT`] over SMTP on `port`; Ok once it got 250 after DATA.
async fn send_probe(port: u16, n: usize) -> anyhow::Result<()> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    let expect = |line: &mut String, code: &'static str| {
        let ok = line.starts_with(code);
        let got = line.trim_end().to_string();
        line.clear();
        if ok {
            Ok(())
        } else {
            Err(anyhow::anyhow!("expected {code}, got {got:?}"))
        }
    };
    async fn reply(
        r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
        line: &mut String,
    ) -> anyhow::Result<()> {
        loop {
            line.clear();
            anyhow::ensure!(r.read_line(line).await? > 0, "connection closed");
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(());
            }
        }
    }
    reply(&mut r, &mut line).await?;
    expect(&mut line, "220")?;
    for (cmd, code) in [
        ("EHLO probe.test\r\n".to_string(), "250"),
        ("MAIL FROM:<sender@remote.test>\r\n".to_string(), "250"),
        (format!("RCPT TO:<{RECIPIENT}>\r\n"), "250"),
        ("DATA\r\n".to_string(), "354"),
        (
            format!("Subject: flood-probe-{n}\r\n\r\nsent during the flood\r\n.\r\n"),
            "250",
        ),
    ] {
        w.write_all(cmd.as_bytes()).await?;
        reply(&mut r, &mut line).await?;
        expect(&mut line, code)?;
    }
    let _ = w.write_all(b"QUIT\r\n").await;
    Ok(())
}

/// Probes sent (number → when accepted) and their delivery delays, shared with the poller.
#[derive(Default)]
struct Probes {
    sent: HashMap<usize, Instant>,
    delays: HashMap<usize, Duration>,
}

/// Polls [`RECIPIENT`]'s INBOX every 200 ms and records when each probe arrives.
async fn poll_deliveries(
    mut msgs: MessagesClient<TracedChannel>,
    probes: Arc<Mutex<Probes>>,
    flood_ends: Instant,
    until: Instant,
) -> anyhow::Result<()> {
    let mut seen = HashSet::new();
    while Instant::now() < until {
        let list = list_all(&mut msgs, RECIPIENT, "INBOX").await?;
        for m in list.messages {
            if !seen.insert(m.uid) {
                continue;
            }
            let body = fetch(&mut msgs, RECIPIENT, "INBOX", m.uid).await?;
            let text = String::from_utf8_lossy(&body);
            let Some(n) = text
                .split("flood-probe-")
                .nth(1)
                .and_then(|rest| rest.split("\r\n").next())
                .and_then(|n| n.parse::<usize>().ok())
            else {
                continue;
            };
            if let Ok(mut probes) = probes.lock() {
                if let Some(at) = probes.sent.get(&n).copied() {
                    probes.delays.insert(n, at.elapsed());
                }
            }
        }
        let done = probes
            .lock()
            .map(|p| p.delays.len() == p.sent.len() && Instant::now() > flood_ends)
            .unwrap_or(true);
        if done {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let p = flood::platform(
        Platform::builder()
            .store_bin(&args.store.store_bin)
            .stores(args.store.nodes),
        &["victim", "bob"],
    )
    .await?;
    let pids: Vec<u32> = p.cluster.nodes.iter().filter_map(|n| n.pid()).collect();
    let rss0: u64 = pids
        .iter()
        .filter_map(|p| rss_bytes(*p).ok())
        .max()
        .unwrap_or(0);
    println!(
        "==> {} connections guessing one password over IMAP, POP3 and SMTP AUTH from 10 /24s for {} s",
        args.clients, args.secs
    );
    // Logged in before the flood: the recipient's mailbox is read through it meanwhile.
    let leader = p.cluster.wait_leader(Duration::from_secs(20)).await?;
    let msgs = p.cluster.messages(leader, RECIPIENT).await?;
    // The operator's view of the cluster, asked of the leader all through the flood.
    let endpoint = p.cluster.endpoint(leader);
    let flood = Flood::start(Target::of(&p, "victim@example.test"), args.clients, 10);
    let flood_ends = Instant::now() + Duration::from_secs(args.secs);
    let probes = Arc::new(Mutex::new(Probes::default()));
    let measure = async {
        let mx = p.smtp().port("mx");
        let mut worst_rss = rss0;
        let mut worst_status = Duration::ZERO;
        let mut status_failures = 0u32;
        let mut refused_probes = 0u32;
        let mut next_probe = Instant::now();
        let mut n = 0;
        while Instant::now() < flood_ends {
            if Instant::now() >= next_probe {
                next_probe += Duration::from_secs(5);
                match send_probe(mx, n).await {
                    Ok(()) => {
                        if let Ok(mut probes) = probes.lock() {
                            probes.sent.insert(n, Instant::now());
                        }
                    }
                    Err(e) => {
                        refused_probes += 1;
                        println!("    probe {n} refused: {e:#}");
                    }
                }
                n += 1;
            }
            for pid in &pids {
                worst_rss = worst_rss.max(rss_bytes(*pid).context("a store node is gone")?);
            }
            let t = Instant::now();
            let mut ternctl = tokio::process::Command::from(p.cluster.ternctl()?);
            let out = ternctl
                .args(["cluster", "status", "--endpoint", &endpoint])
                .output()
                .await?;
            worst_status = worst_status.max(t.elapsed());
            if !out.status.success() {
                if status_failures == 0 {
                    println!(
                        "    ternctl cluster status failed: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
                status_failures += 1;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        anyhow::Ok((worst_rss, worst_status, status_failures, refused_probes))
    };
    let (measured, polled) = tokio::join!(
        measure,
        poll_deliveries(
            msgs,
            probes.clone(),
            flood_ends,
            flood_ends + Duration::from_secs(60)
        )
    );
    let (worst_rss, worst_status, status_failures, refused_probes) = measured?;
    polled?;
    let tally = flood.stop().await;
    let (refused, later, broken) = tally.get();

    println!("    answers to the flood: {refused} wrong password, {later} try later; {broken} connections broken or timed out");
    println!(
        "    store RSS (worst node): {:.0} MiB before, {:.0} MiB worst during (goal <= 1024 MiB)",
        rss0 as f64 / 1048576.0,
        worst_rss as f64 / 1048576.0
    );
    println!(
        "    ternctl cluster status: worst {:.2} s, {status_failures} failed (goal <= 2 s)",
        worst_status.as_secs_f64()
    );
    let probes = probes.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    let mut numbers: Vec<_> = probes.sent.keys().copied().collect();
    numbers.sort_unstable();
    let shown: Vec<String> = numbers
        .iter()
        .map(|n| {
            probes.delays.get(n).map_or("not delivered".into(), |d| {
                format!("{:.1}", d.as_secs_f64())
            })
        })
        .collect();
    let worst = probes.delays.values().max().copied().unwrap_or_default();
    println!(
        "    delivery delay of {} probes sent during the flood ({refused_probes} refused), s: {}; worst {:.1} s (goal <= 5 s)",
        numbers.len(),
        shown.join(" "),
        worst.as_secs_f64()
    );
    Ok(())
}

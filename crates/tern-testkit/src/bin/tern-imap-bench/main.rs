//! `tern-imap-bench`: IMAP operations per second of Tern side by side with Dovecot, and the
//! memory one tern-access node spends per idle IMAP connection.
//!
//! Workload: every client has a user of its own (`benchNN@example.test`, so clients never
//! contend on one mailbox) whose INBOX holds the same `--messages` messages on both servers.
//! A client logs in and SELECTs once (not timed), then repeats a cycle of seven commands,
//! each counted as one operation: SELECT INBOX; UID FETCH of three header fields of 20
//! messages; UID FETCH BODY.PEEK[] of one message; UID STORE +FLAGS (\Seen) on one; APPEND
//! of a 4 KiB message (synchronizing literal); UID STORE +FLAGS (\Deleted) on the appended
//! message; EXPUNGE. Only commands that complete within `--secs` count; the cycle under way
//! at the deadline is then finished untimed, so every mailbox ends as it started. Runs
//! alternate between the two servers, with the same load generator, so they share the
//! machine's noise; each configuration runs `--repeat` times and the best run is reported.
//!
//! Idle connections: a fresh tern-access node (same store cluster) gets
//! `--idle-connections` connections (10,000) that read the greeting; the first
//! `--idle-logins` of them also LOG IN (a sample of 2,000 by default: each LOGIN is an
//! argon2id check in the store, and all 10,000 would take minutes on 2 cores), the rest stay
//! greeted but not authenticated (tern-access closes those after 60 s, so they are opened
//! last, quickly, and measured at once). The node's VmRSS (/proc/PID/status) before and
//! after gives the bytes per connection, for both kinds and overall.
//!
//! The IMAP client is [`tern_testkit::imap_client`]. Run it through `cargo xtask bench imap`,
//! which builds it and installs Dovecot.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::Parser;
use tern_testkit::dovecot::Dovecot;
use tern_testkit::imap_client::{append_uid, number_after, Imap, Reply};
use tern_testkit::{load_mailboxes, Platform};
use tokio::sync::Barrier;

mod idle;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    store: tern_testkit::bench::StoreArgs,
    /// xtask/scripts/dovecot.sh; without it only Tern is measured.
    #[arg(long)]
    dovecot_script: Option<PathBuf>,
    /// Messages in each user's INBOX (at least 20: the header FETCH spans 20).
    #[arg(long, default_value_t = 100)]
    messages: usize,
    /// Client counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    clients: Vec<usize>,
    /// Seconds of each timed run.
    #[arg(long, default_value_t = 15.0)]
    secs: f64,
    /// Runs per configuration and server; the best is reported.
    #[arg(long, default_value_t = 2)]
    repeat: usize,
    /// Idle connections opened to one tern-access node (0: skip that measure).
    #[arg(long, default_value_t = 10_000)]
    idle_connections: usize,
    /// How many of the idle connections log in; the others stay greeted, not authenticated.
    /// Each LOGIN costs an argon2id verification in the store (25 to 30 a second on 2
    /// cores), so by default a sample logs in rather than all 10,000 (which takes minutes).
    #[arg(long, default_value_t = 2_000)]
    idle_logins: usize,
}

const PASSWORD: &str = "bench-password";
const DOVECOT_PORT_SEARCH_FROM: u16 = 21_143;
/// Messages per header FETCH.
const HEADER_SPAN: usize = 20;
/// Size of each APPENDed message.
const APPEND_SIZE: usize = 4096;

/// Sizes cycle through these (octets).
const SIZES: [usize; 4] = [1_200, 3_000, 8_000, 24_000];

fn corpus(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let size = SIZES[i % SIZES.len()];
            let mut m = format!(
                "From: Sender {i} <sender{i}@example.net>\r\nTo: bench@example.test\r\nSubject: message {i}\r\nMessage-ID: <bench-{i}@example.net>\r\nDate: Mon, 02 Jan 2023 10:{:02}:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n",
                i % 60
            )
            .into_bytes();
            tern_testkit::bench::pad_body(&mut m, size);
            m
        })
        .collect()
}

/// A message of exactly [`APPEND_SIZE`] octets, unique per client and cycle of a run.
fn appended(client: &str, n: u64) -> Vec<u8> {
    let mut m = format!(
        "From: Load Generator <load@example.net>\r\nTo: {client}\r\nSubject: appended {n}\r\nMessage-ID: <append-{n}-{client}>\r\nDate: Tue, 03 Jan 2023 11:00:00 +0000\r\n\r\n"
    )
    .into_bytes();
    let filler = b"appended by tern-imap-bench, padding to four kibibytes.....\r\n";
    while m.len() + filler.len() <= APPEND_SIZE {
        m.extend_from_slice(filler);
    }
    while m.len() < APPEND_SIZE - 2 {
        m.push(b'x');
    }
    m.extend_from_slice(b"\r\n");
    m.truncate(APPEND_SIZE);
    m
}

fn users(n: usize) -> Vec<String> {
    (1..=n)
        .map(|i| format!("bench{i:02}@example.test"))
        .collect()
}

// ---------------------------------------------------------------------------------------
// The mixed workload
// ---------------------------------------------------------------------------------------

/// The commands of one cycle, in order (for the latency breakdown).
const STEPS: [&str; 7] = [
    "SELECT",
    "FETCH-headers",
    "FETCH-body",
    "STORE-Seen",
    "APPEND",
    "STORE-Deleted",
    "EXPUNGE",
];

/// What one client did.
#[derive(Clone, Copy, Default)]
struct Counts {
    ops: u64,
    cycles: u64,
    /// Per step of [`STEPS`]: timed commands and their summed latency.
    step_ops: [u64; 7],
    step_nanos: [u64; 7],
    /// STORE \Deleted without a FETCH back, or EXPUNGE that expunged nothing: the appended
    /// message was not seen by the session (it would stay in the mailbox).
    unexpected: u64,
}

/// What one measured run did.
#[derive(Clone, Copy, Default)]
struct Run {
    counts: Counts,
    secs: f64,
}

impl Run {
    fn ops_per_sec(&self) -> f64 {
        self.counts.ops as f64 / self.secs
    }

    /// Mean latency of each command of the cycle, in ms.
    fn latencies(&self) -> String {
        STEPS
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let n = self.counts.step_ops[i];
                let ms = if n == 0 {
                    0.0
                } else {
                    self.counts.step_nanos[i] as f64 / n as f64 / 1e6
                };
                format!("{name}={ms:.1}")
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Logs in, selects INBOX and lists its UIDs: the untimed start of a client.
async fn setup(port: u16, user: &str) -> anyhow::Result<(Imap, Vec<u32>)> {
    let mut c = Imap::connect(port, 64 << 10).await?;
    c.login(user, PASSWORD)
        .await
        .with_context(|| format!("LOGIN {user}"))?;
    let mut reply = Reply::default();
    c.command("SELECT INBOX", &mut reply).await?;
    c.command("UID FETCH 1:* (UID)", &mut reply).await?;
    let mut uids: Vec<u32> = reply
        .untagged
        .iter()
        .filter(|l| l.contains(" FETCH "))
        .filter_map(|l| number_after(l, "UID "))
        .collect();
    uids.sort_unstable();
    if uids.len() < HEADER_SPAN {
        bail!(
            "{user}: INBOX has {} messages, the workload needs at least {HEADER_SPAN}",
            uids.len()
        );
    }
    Ok((c, uids))
}

/// One client: the command cycle until `secs` have passed since all clients were ready.
async fn client(port: u16, user: String, secs: f64, ready: Arc<Barrier>) -> anyhow::Result<Counts> {
    let started = setup(port, &user).await;
    // Every client reaches the barrier, even a failed one, so the others are not stuck.
    ready.wait().await;
    let (mut c, uids) = started?;
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut counts = Counts::default();
    let mut reply = Reply::default();
    let n = uids.len();
    let mut cycle: u64 = 0;
    while Instant::now() < deadline {
        let k = cycle as usize;
        let mut timed = 0u64;
        let mut sent = Instant::now();
        // Commands run one after the other, so each starts when the previous one ended.
        let mut done = |counts: &mut Counts, step: usize| {
            let now = Instant::now();
            if now <= deadline {
                counts.ops += 1;
                counts.step_ops[step] += 1;
                counts.step_nanos[step] += (now - sent).as_nanos() as u64;
                timed += 1;
            }
            sent = now;
        };
        c.command("SELECT INBOX", &mut reply).await?;
        done(&mut counts, 0);
        let first = (k * 7) % (n - HEADER_SPAN + 1);
        c.command(
            &format!(
                "UID FETCH {}:{} (BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])",
                uids[first],
                uids[first + HEADER_SPAN - 1]
            ),
            &mut reply,
        )
        .await?;
        done(&mut counts, 1);
        c.command(
            &format!("UID FETCH {} BODY.PEEK[]", uids[(k * 13 + 3) % n]),
            &mut reply,
        )
        .await?;
        done(&mut counts, 2);
        c.command(
            &format!("UID STORE {} +FLAGS (\\Seen)", uids[(k * 17 + 5) % n]),
            &mut reply,
        )
        .await?;
        done(&mut counts, 3);
        c.append("INBOX", &appended(&user, cycle), &mut reply)
            .await?;
        done(&mut counts, 4);
        let Some(new_uid) = append_uid(&reply.tagged) else {
            bail!("APPEND answered without APPENDUID: {}", reply.tagged);
        };
        c.command(
            &format!("UID STORE {new_uid} +FLAGS (\\Deleted)"),
            &mut reply,
        )
        .await?;
        done(&mut counts, 5);
        if !reply.untagged.iter().any(|l| l.contains(" FETCH ")) {
            counts.unexpected += 1;
        }
        c.command("EXPUNGE", &mut reply).await?;
        done(&mut counts, 6);
        if !reply.untagged.iter().any(|l| l.ends_with(" EXPUNGE")) {
            counts.unexpected += 1;
        }
        if timed == 7 {
            counts.cycles += 1;
        }
        cycle += 1;
    }
    let _ = c.command("LOGOUT", &mut reply).await;
    Ok(counts)
}

async fn measure(port: u16, users: &[String], clients: usize, secs: f64) -> anyhow::Result<Run> {
    let ready = Arc::new(Barrier::new(clients));
    let handles: Vec<_> = users[..clients]
        .iter()
        .map(|u| tokio::spawn(client(port, u.clone(), secs, ready.clone())))
        .collect();
    let mut run = Run {
        secs,
        ..Run::default()
    };
    for h in handles {
        let c = h.await??;
        run.counts.ops += c.ops;
        run.counts.cycles += c.cycles;
        run.counts.unexpected += c.unexpected;
        for i in 0..STEPS.len() {
            run.counts.step_ops[i] += c.step_ops[i];
            run.counts.step_nanos[i] += c.step_nanos[i];
        }
    }
    Ok(run)
}

// ---------------------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------------------

/// `--max-connections` flags admitting `connections` sessions (all from 127.0.0.1).
fn connection_limits(connections: usize) -> Vec<String> {
    let limit = (connections + 1000).max(20_000).to_string();
    vec![
        "--max-connections".into(),
        limit.clone(),
        "--max-connections-per-ip".into(),
        limit,
    ]
}

/// Tern with `users` (password [`PASSWORD`]) holding `corpus`: the store cluster and one
/// access node admitting the idle-connection measure's sessions.
async fn start_tern(
    args: &Args,
    users: &[String],
    corpus: &[Vec<u8>],
    scratch: &Path,
) -> anyhow::Result<Platform> {
    let limits = connection_limits(args.idle_connections);
    let limits: Vec<&str> = limits.iter().map(String::as_str).collect();
    let p = Platform::builder()
        .store_bin(&args.store.store_bin)
        .stores(args.store.nodes)
        .access(&limits)
        .scratch(scratch)
        .start()
        .await?;
    load_mailboxes(&p.cluster, users, PASSWORD, corpus).await?;
    Ok(p)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.messages < HEADER_SPAN {
        bail!("--messages must be at least {HEADER_SPAN}");
    }
    if args.clients.contains(&0) {
        bail!("--clients: every count must be at least 1");
    }
    let nofile = idle::raise_nofile(args.idle_connections as libc::rlim_t + 4096)?;
    if (nofile as usize) < args.idle_connections + 256 {
        bail!(
            "RLIMIT_NOFILE is {nofile}, too low for {} idle connections (raise the hard limit)",
            args.idle_connections
        );
    }
    let max_clients = args.clients.iter().copied().max().unwrap_or(1);
    let users = users(max_clients);
    let corpus = corpus(args.messages);
    let corpus_octets: usize = corpus.iter().map(Vec::len).sum();
    let (scratch, corpus_dir) =
        tern_testkit::bench::scratch_with_corpus("tern-imap-bench-", &corpus)?;
    println!(
        "==> corpus: {} messages, {:.2} MB per INBOX; {} users (one per client)",
        corpus.len(),
        corpus_octets as f64 / 1e6,
        users.len()
    );
    println!(
        "==> starting Tern ({} store nodes + tern-access) and loading the mailboxes",
        args.store.nodes
    );
    let t = Instant::now();
    let mut platform = start_tern(&args, &users, &corpus, scratch.path()).await?;
    println!("    loaded in {:.1} s", t.elapsed().as_secs_f64());
    let dovecot = match &args.dovecot_script {
        Some(script) => {
            println!("==> starting Dovecot");
            Some(Dovecot::start(
                script,
                "imap",
                &scratch.path().join("dovecot"),
                DOVECOT_PORT_SEARCH_FROM,
                &users,
                PASSWORD,
                &corpus_dir,
            )?)
        }
        None => None,
    };

    let mut servers: Vec<(&str, u16)> = vec![("tern", platform.access().imap_port())];
    if let Some(d) = &dovecot {
        servers.push(("dovecot", d.port));
    }
    let mut best: Vec<(usize, &str, Run)> = Vec::new();
    for &clients in &args.clients {
        for rep in 0..args.repeat {
            for &(name, port) in &servers {
                let run = measure(port, &users, clients, args.secs)
                    .await
                    .with_context(|| format!("{name}, {clients} clients"))?;
                println!(
                    "    clients={clients} run={} server={name} ops={} cycles={} secs={:.1} ops_per_sec={:.0}{}",
                    rep + 1,
                    run.counts.ops,
                    run.counts.cycles,
                    run.secs,
                    run.ops_per_sec(),
                    if run.counts.unexpected > 0 {
                        format!(" unexpected={} (appended message not expunged)", run.counts.unexpected)
                    } else {
                        String::new()
                    }
                );
                println!("      mean latency ms: {}", run.latencies());
                match best
                    .iter_mut()
                    .find(|(c, n, _)| *c == clients && *n == name)
                {
                    Some((_, _, b)) if b.ops_per_sec() >= run.ops_per_sec() => {}
                    Some((_, _, b)) => *b = run,
                    None => best.push((clients, name, run)),
                }
            }
        }
    }
    drop(dovecot);
    // The measured access node goes; the idle measure starts a fresh one.
    platform.access_mut().kill();

    println!(
        "\nIMAP mixed workload, operations per second, best of {} runs of {} s each.",
        args.repeat, args.secs
    );
    println!(
        "One cycle = SELECT INBOX; UID FETCH 3 header fields of {HEADER_SPAN} messages; UID FETCH BODY.PEEK[] of 1; UID STORE +FLAGS (\\Seen) on 1; APPEND {APPEND_SIZE} octets; UID STORE +FLAGS (\\Deleted) on it; EXPUNGE (7 operations). Each client has its own INBOX of {} messages.",
        args.messages
    );
    println!(
        "  {:<8} {:>12} {:>14} {:>14}",
        "CLIENTS", "TERN OPS/S", "DOVECOT OPS/S", "TERN/DOVECOT"
    );
    let find = |clients: usize, name: &str| {
        best.iter()
            .find(|(c, n, _)| *c == clients && *n == name)
            .map(|b| b.2)
    };
    for &clients in &args.clients {
        let tern = find(clients, "tern");
        let peer = find(clients, "dovecot");
        let rate = |r: Option<Run>| {
            r.map(|r| format!("{:.0}", r.ops_per_sec()))
                .unwrap_or_else(|| "-".into())
        };
        let ratio = match (tern, peer) {
            (Some(t), Some(p)) if p.ops_per_sec() > 0.0 => {
                format!("{:.2}", t.ops_per_sec() / p.ops_per_sec())
            }
            _ => "-".into(),
        };
        println!(
            "  {:<8} {:>12} {:>14} {:>14}",
            clients,
            rate(tern),
            rate(peer),
            ratio
        );
    }

    if args.idle_connections > 0 {
        println!();
        idle::idle_measure(&args, &platform, &users)
            .await
            .map_err(|e| anyhow!("idle-connection measure: {e:#}"))?;
    }
    drop(platform);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appended_messages_are_4_kib() {
        assert_eq!(appended("bench01@example.test", 12345).len(), APPEND_SIZE);
        assert!(appended("b@example.test", 1).ends_with(b"\r\n"));
    }
}

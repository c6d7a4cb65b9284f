//! `tern-pop3-bench`: POP3 RETR throughput of Tern side by side with Dovecot, in one run.
//!
//! Both servers get the same users (one per client: a POP3 maildrop admits one session at a
//! time) holding the same corpus of messages of mixed sizes. Each client logs in, RETRs every
//! message, and QUITs without deleting, `--rounds` times. Runs alternate between the two
//! servers, with the same load generator, so they share the machine's noise; each
//! configuration runs `--repeat` times and the best run is reported. Run it through
//! `cargo xtask bench pop3`, which builds it and installs Dovecot.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use tern_testkit::dovecot::Dovecot;
use tern_testkit::{load_mailboxes, Platform};

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    store: tern_testkit::bench::StoreArgs,
    /// xtask/scripts/dovecot.sh; without it only Tern is measured.
    #[arg(long)]
    dovecot_script: Option<PathBuf>,
    /// Messages per maildrop.
    #[arg(long, default_value_t = 200)]
    messages: usize,
    /// Client counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    clients: Vec<usize>,
    /// Sessions per client (each RETRs the whole maildrop).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Runs per configuration and server; the best is reported.
    #[arg(long, default_value_t = 2)]
    repeat: usize,
}

const PASSWORD: &str = "bench-password";
const DOVECOT_PORT_SEARCH_FROM: u16 = 21_110;

/// Sizes cycle through these (octets): short notes to attachments.
const SIZES: [usize; 5] = [1_200, 3_000, 8_000, 24_000, 70_000];

fn corpus(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let size = SIZES[i % SIZES.len()];
            let mut m = format!(
                "From: sender{i}@example.net\r\nTo: bench@example.test\r\nSubject: message {i}\r\nMessage-ID: <bench-{i}@example.net>\r\nDate: Mon, 02 Jan 2023 10:00:00 +0000\r\n\r\n"
            )
            .into_bytes();
            let mut line = 0;
            while m.len() < size {
                // Some lines start with a dot, to exercise byte-stuffing on both servers.
                let prefix = if line % 17 == 0 { "." } else { "" };
                m.extend_from_slice(
                    format!("{prefix}{line:06} the quick brown fox jumps over the lazy dog\r\n")
                        .as_bytes(),
                );
                line += 1;
            }
            m
        })
        .collect()
}

fn users(n: usize) -> Vec<String> {
    (1..=n)
        .map(|i| format!("bench{i:02}@example.test"))
        .collect()
}

/// What one measured run moved.
#[derive(Clone, Copy, Default)]
struct Run {
    messages: u64,
    octets: u64,
    secs: f64,
}

impl Run {
    fn msgs_per_sec(&self) -> f64 {
        self.messages as f64 / self.secs
    }
    fn mb_per_sec(&self) -> f64 {
        self.octets as f64 / self.secs / 1e6
    }
}

/// Reads one status line; fails unless it is +OK.
fn expect_ok(r: &mut BufReader<TcpStream>, line: &mut Vec<u8>, what: &str) -> anyhow::Result<()> {
    line.clear();
    r.read_until(b'\n', line)?;
    if !line.starts_with(b"+OK") {
        bail!("{what}: {}", String::from_utf8_lossy(line).trim_end());
    }
    Ok(())
}

/// Reads a multi-line body up to the terminating CRLF.CRLF; returns its octets.
fn read_multiline(r: &mut BufReader<TcpStream>) -> anyhow::Result<u64> {
    // The status line ended with CRLF, so the terminator is always "\r\n.\r\n" counting the
    // two octets before the body.
    let mut tail = *b"\r\n\0\0\0";
    let mut tail_len = 2usize;
    let mut total = 0u64;
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            bail!("connection closed inside a multi-line response");
        }
        let mut consumed = buf.len();
        let mut done = false;
        for (i, &b) in buf.iter().enumerate() {
            if tail_len == 5 {
                tail.copy_within(1.., 0);
                tail[4] = b;
            } else {
                tail[tail_len] = b;
                tail_len += 1;
            }
            if tail_len == 5 && &tail == b"\r\n.\r\n" {
                consumed = i + 1;
                done = true;
                break;
            }
        }
        total += consumed as u64;
        r.consume(consumed);
        if done {
            return Ok(total.saturating_sub(3));
        }
    }
}

/// One client: `rounds` sessions, each retrieving every message.
fn client(port: u16, user: &str, rounds: usize) -> anyhow::Result<(u64, u64)> {
    let (mut messages, mut octets) = (0u64, 0u64);
    let mut line = Vec::with_capacity(256);
    for _ in 0..rounds {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        let mut w = stream.try_clone()?;
        let mut r = BufReader::with_capacity(64 * 1024, stream);
        expect_ok(&mut r, &mut line, "greeting")?;
        write!(w, "USER {user}\r\n")?;
        expect_ok(&mut r, &mut line, "USER")?;
        write!(w, "PASS {PASSWORD}\r\n")?;
        expect_ok(&mut r, &mut line, "PASS")?;
        w.write_all(b"STAT\r\n")?;
        expect_ok(&mut r, &mut line, "STAT")?;
        let count: usize = std::str::from_utf8(&line)?
            .split_whitespace()
            .nth(1)
            .context("STAT count")?
            .parse()?;
        for n in 1..=count {
            write!(w, "RETR {n}\r\n")?;
            expect_ok(&mut r, &mut line, "RETR")?;
            octets += read_multiline(&mut r)?;
            messages += 1;
        }
        w.write_all(b"QUIT\r\n")?;
        expect_ok(&mut r, &mut line, "QUIT")?;
        let mut rest = Vec::new();
        let _ = r.read_to_end(&mut rest);
    }
    Ok((messages, octets))
}

fn measure(port: u16, users: &[String], clients: usize, rounds: usize) -> anyhow::Result<Run> {
    let started = Instant::now();
    let handles: Vec<_> = users[..clients]
        .iter()
        .map(|u| {
            let u = u.clone();
            std::thread::spawn(move || client(port, &u, rounds))
        })
        .collect();
    let mut run = Run::default();
    for h in handles {
        let (m, o) = h
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
        run.messages += m;
        run.octets += o;
    }
    run.secs = started.elapsed().as_secs_f64();
    Ok(run)
}

/// Tern with `users` (password [`PASSWORD`]) holding `corpus`: the store cluster and one
/// access node.
async fn start_tern(
    args: &Args,
    users: &[String],
    corpus: &[Vec<u8>],
    scratch: &Path,
) -> anyhow::Result<Platform> {
    let p = Platform::builder()
        .store_bin(&args.store.store_bin)
        .stores(args.store.nodes)
        .access(&[])
        .scratch(scratch)
        .start()
        .await?;
    load_mailboxes(&p.cluster, users, PASSWORD, corpus).await?;
    Ok(p)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let max_clients = args.clients.iter().copied().max().unwrap_or(1);
    let users = users(max_clients);
    let corpus = corpus(args.messages);
    let corpus_octets: usize = corpus.iter().map(Vec::len).sum();
    let (scratch, corpus_dir) =
        tern_testkit::bench::scratch_with_corpus("tern-pop3-bench-", &corpus)?;
    println!(
        "==> corpus: {} messages, {:.1} MB per maildrop; {} maildrops",
        corpus.len(),
        corpus_octets as f64 / 1e6,
        users.len()
    );
    println!(
        "==> starting Tern ({} store nodes + tern-access) and loading the maildrops",
        args.store.nodes
    );
    let platform = start_tern(&args, &users, &corpus, scratch.path()).await?;
    let dovecot = match &args.dovecot_script {
        Some(script) => {
            println!("==> starting Dovecot");
            Some(Dovecot::start(
                script,
                "pop3",
                &scratch.path().join("dovecot"),
                DOVECOT_PORT_SEARCH_FROM,
                &users,
                PASSWORD,
                &corpus_dir,
            )?)
        }
        None => None,
    };

    let mut servers: Vec<(&str, u16)> = vec![("tern", platform.access().pop3_port())];
    if let Some(d) = &dovecot {
        servers.push(("dovecot", d.port));
    }
    let mut best: Vec<(usize, &str, Run)> = Vec::new();
    for &clients in &args.clients {
        for rep in 0..args.repeat {
            for &(name, port) in &servers {
                let users = users.clone();
                let rounds = args.rounds;
                let run =
                    tokio::task::spawn_blocking(move || measure(port, &users, clients, rounds))
                        .await??;
                println!(
                    "    clients={clients} run={} server={name} messages={} octets={} secs={:.2} msgs_per_sec={:.0} mb_per_sec={:.1}",
                    rep + 1,
                    run.messages,
                    run.octets,
                    run.secs,
                    run.msgs_per_sec(),
                    run.mb_per_sec()
                );
                match best
                    .iter_mut()
                    .find(|(c, n, _)| *c == clients && *n == name)
                {
                    Some((_, _, b)) if b.msgs_per_sec() >= run.msgs_per_sec() => {}
                    Some((_, _, b)) => *b = run,
                    None => best.push((clients, name, run)),
                }
            }
        }
    }
    println!("\nRETR throughput, best of {} runs ({} sessions per client, each retrieving all {} messages):", args.repeat, args.rounds, args.messages);
    println!(
        "  {:<8} {:<8} {:>10} {:>8} {:>12}",
        "CLIENTS", "SERVER", "MSGS/S", "MB/S", "TERN/PEER"
    );
    for &clients in &args.clients {
        let tern = best
            .iter()
            .find(|(c, n, _)| *c == clients && *n == "tern")
            .map(|b| b.2);
        for (c, name, run) in best.iter().filter(|(c, _, _)| *c == clients) {
            let ratio = match (*name, tern) {
                ("tern", _) => String::new(),
                (_, Some(t)) => format!("{:.2}", t.msgs_per_sec() / run.msgs_per_sec()),
                _ => String::new(),
            };
            println!(
                "  {:<8} {:<8} {:>10.0} {:>8.1} {:>12}",
                c,
                name,
                run.msgs_per_sec(),
                run.mb_per_sec(),
                ratio
            );
        }
    }
    drop(dovecot);
    Ok(())
}

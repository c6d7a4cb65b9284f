//! `tern-smtp-bench`: SMTP ingress throughput of Tern side by side with Postfix, in one run.
//!
//! Both servers accept mail for `alice@example.test` on loopback and deliver it into her
//! mailbox (Tern: tern-smtp → tern-queue → the store's INBOX; Postfix: smtpd → cleanup →
//! queue → virtual(8) maildir). Each client opens one connection and sends its share of the
//! messages as pipelined transactions (MAIL, RCPT and DATA in one write, then the content);
//! a message counts when its 250 arrives, which on both servers means "on disk" (Tern: a Raft
//! majority committed it; Postfix: the queue file was fsynced). The run also waits until every
//! message is delivered, for the end-to-end rate. The same load generator drives both; runs
//! alternate between the servers so they share the machine's noise, and the best of
//! `--repeat` runs is reported. Run it through `cargo xtask bench smtp`.
//!
//! For each Tern run it also prints the store leader's Raft entries and fsyncs per message,
//! and at the largest client count how long a message took from its 250 to an IMAP session
//! in IDLE on the mailbox (p50 and p99, matched by rank: see [`visibility_ms`]).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use tern_testkit::service::free_loopback_port;
use tern_testkit::{list_all, Platform};

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    store: tern_testkit::bench::StoreArgs,
    /// xtask/scripts/postfix-smtp.sh; without it only Tern is measured.
    #[arg(long)]
    postfix_script: Option<PathBuf>,
    /// Messages per run.
    #[arg(long, default_value_t = 1000)]
    messages: usize,
    /// Client counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    clients: Vec<usize>,
    /// Message size in octets.
    #[arg(long, default_value_t = 4096)]
    size: usize,
    /// Runs per configuration and server; the best is reported.
    #[arg(long, default_value_t = 2)]
    repeat: usize,
}

const POSTFIX_PORT_SEARCH_FROM: u16 = 22_525;

/// One measured run.
#[derive(Clone, Copy, Default)]
struct Run {
    messages: usize,
    accept_secs: f64,
    deliver_secs: f64,
}

impl Run {
    fn accepted_per_sec(&self) -> f64 {
        self.messages as f64 / self.accept_secs
    }
    fn delivered_per_sec(&self) -> f64 {
        self.messages as f64 / self.deliver_secs
    }
}

/// A message of about `size` octets with a unique Message-ID.
fn message(size: usize, id: &str) -> Vec<u8> {
    let mut m = format!(
        "From: bench@example.net\r\nTo: alice@example.test\r\nSubject: bench {id}\r\nMessage-ID: <{id}@example.net>\r\nDate: Mon, 02 Jan 2023 10:00:00 +0000\r\n\r\n"
    )
    .into_bytes();
    tern_testkit::bench::pad_body(&mut m, size);
    m.extend_from_slice(b".\r\n");
    m
}

/// Reads one reply (multi-line replies to their last line); returns its code.
fn reply(r: &mut BufReader<TcpStream>, line: &mut String) -> anyhow::Result<u16> {
    loop {
        line.clear();
        if r.read_line(line)? == 0 {
            bail!("connection closed");
        }
        if line.len() < 4 {
            bail!("short reply {line:?}");
        }
        if line.as_bytes()[3] == b' ' {
            return line[..3].parse().context("reply code");
        }
    }
}

fn expect(
    r: &mut BufReader<TcpStream>,
    line: &mut String,
    code: u16,
    what: &str,
) -> anyhow::Result<()> {
    let got = reply(r, line)?;
    if got != code {
        bail!("{what}: expected {code}, got {}", line.trim_end());
    }
    Ok(())
}

/// One client: `count` pipelined transactions on one connection; returns when each 250 at
/// the end of DATA arrived.
fn client(port: u16, count: usize, size: usize, tag: &str) -> anyhow::Result<Vec<Instant>> {
    let tcp = TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut w = tcp.try_clone()?;
    let mut r = BufReader::new(tcp);
    let mut line = String::new();
    expect(&mut r, &mut line, 220, "greeting")?;
    w.write_all(b"EHLO bench.example.net\r\n")?;
    expect(&mut r, &mut line, 250, "EHLO")?;
    let mut acked = Vec::with_capacity(count);
    for i in 0..count {
        w.write_all(b"MAIL FROM:<bench@example.net>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")?;
        expect(&mut r, &mut line, 250, "MAIL")?;
        expect(&mut r, &mut line, 250, "RCPT")?;
        expect(&mut r, &mut line, 354, "DATA")?;
        w.write_all(&message(size, &format!("{tag}-{i}")))?;
        expect(&mut r, &mut line, 250, "end of data")?;
        acked.push(Instant::now());
    }
    w.write_all(b"QUIT\r\n")?;
    Ok(acked)
}

/// Sends `messages` from `clients` connections; returns the seconds until the last 250, and
/// when each 250 arrived (in order).
fn load(
    port: u16,
    messages: usize,
    clients: usize,
    size: usize,
    run: &str,
) -> anyhow::Result<(f64, Vec<Instant>)> {
    let started = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let count = messages / clients + usize::from(c < messages % clients);
            let tag = format!("{run}-c{c}");
            std::thread::spawn(move || client(port, count, size, &tag))
        })
        .collect();
    let mut acked = Vec::with_capacity(messages);
    for t in threads {
        acked.extend(
            t.join()
                .map_err(|_| anyhow::anyhow!("client thread panicked"))??,
        );
    }
    acked.sort();
    Ok((started.elapsed().as_secs_f64(), acked))
}

/// An IMAP session in IDLE on alice's INBOX, noting when the server reports each new
/// message (`* N EXISTS`): the time at which the n-th message of the run became visible.
struct IdleWatch {
    task: tokio::task::JoinHandle<anyhow::Result<Vec<Instant>>>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl IdleWatch {
    async fn start(port: u16) -> anyhow::Result<Self> {
        let mut imap = tern_testkit::imap_client::Imap::connect(port, 64 << 10).await?;
        imap.login("alice@example.test", "pw-alice").await?;
        let mut reply = tern_testkit::imap_client::Reply::default();
        imap.command("SELECT INBOX", &mut reply).await?;
        let base = reply
            .untagged
            .iter()
            .find_map(|l| {
                l.strip_prefix("* ")?
                    .strip_suffix(" EXISTS")?
                    .parse::<u64>()
                    .ok()
            })
            .context("SELECT gave no EXISTS")?;
        imap.idle().await?;
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            loop {
                let line = tokio::select! {
                    l = imap.next_line() => l?,
                    _ = &mut stopped => return Ok(seen),
                };
                let Some(n) = line
                    .strip_prefix("* ")
                    .and_then(|l| l.strip_suffix(" EXISTS"))
                    .and_then(|n| n.parse::<u64>().ok())
                else {
                    continue;
                };
                let now = Instant::now();
                while base + (seen.len() as u64) < n {
                    seen.push(now);
                }
            }
        });
        Ok(Self { task, stop })
    }

    /// Stops watching; the instants at which the 1st, 2nd, ... new message was reported.
    async fn finish(self) -> anyhow::Result<Vec<Instant>> {
        let _ = self.stop.send(());
        self.task.await?
    }
}

/// p50 and p99 in ms of "the k-th 250 → the k-th message visible in IDLE", matching by
/// rank: messages take UIDs in commit order and a 250 follows its commit, so the k-th
/// acknowledgement and the k-th EXISTS are the same message unless two commits' answers
/// overtake each other (then the pair's latencies are swapped, not the distribution's
/// shape). A message visible before its 250 reached the client counts as 0.
fn visibility_ms(acked: &[Instant], visible: &[Instant]) -> Option<(f64, f64)> {
    let mut lat: Vec<f64> = acked
        .iter()
        .zip(visible)
        .map(|(a, v)| v.saturating_duration_since(*a).as_secs_f64() * 1e3)
        .collect();
    if lat.is_empty() {
        return None;
    }
    lat.sort_by(f64::total_cmp);
    let at = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    Some((at(0.50), at(0.99)))
}

struct Postfix {
    script: PathBuf,
    dir: PathBuf,
    port: u16,
}

impl Postfix {
    fn start(script: &Path, dir: &Path) -> anyhow::Result<Self> {
        let port = free_loopback_port(POSTFIX_PORT_SEARCH_FROM)?;
        let out = Command::new("bash")
            .arg(script)
            .arg("start")
            .arg(dir)
            .arg(port.to_string())
            .args(["example.test", "alice"])
            .output()?;
        if !out.status.success() {
            bail!(
                "starting Postfix: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(Self {
            script: script.to_path_buf(),
            dir: dir.to_path_buf(),
            port,
        })
    }

    fn delivered(&self) -> anyhow::Result<usize> {
        let out = Command::new("bash")
            .arg(&self.script)
            .arg("count")
            .arg(&self.dir)
            .args(["example.test", "alice"])
            .output()?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .context("postfix-smtp.sh count")
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(&self.script)
            .arg("stop")
            .arg(&self.dir)
            .output();
    }
}

/// The Tern side (store cluster, queue and SMTP node): messages in alice's INBOX.
async fn delivered(tern: &Platform) -> anyhow::Result<usize> {
    let leader = tern.cluster.wait_leader(Duration::from_secs(10)).await?;
    let mut m = tern.cluster.messages(leader, "alice@example.test").await?;
    Ok(list_all(&mut m, "alice@example.test", "INBOX")
        .await?
        .messages
        .len())
}

/// The Raft log counters of the store leader.
async fn leader_log(tern: &Platform) -> anyhow::Result<tern_testkit::bench::LogCounts> {
    let leader = tern.cluster.wait_leader(Duration::from_secs(10)).await?;
    tern_testkit::bench::LogCounts::scrape(&tern.cluster.nodes[leader].metrics).await
}

/// Store cluster, queue, SMTP node (greeting 220: it checks the store has a leader) and an
/// access node for the IDLE session that sees messages arrive. SPF is off: the Postfix
/// beside it checks none, and the comparison is of acceptance, like for like.
async fn start_tern(args: &Args, scratch: &Path) -> anyhow::Result<Platform> {
    Platform::builder()
        .store_bin(&args.store.store_bin)
        .stores(args.store.nodes)
        .users(&["alice"])
        .smtp(&["--spf", "false"])
        .access(&[])
        .scratch(scratch)
        .start()
        .await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Postfix's delivery agent runs as `nobody`: the scratch directory must be reachable.
    let scratch = tempfile::Builder::new()
        .prefix("tern-smtp-bench-")
        .tempdir_in("/tmp")?;
    std::fs::set_permissions(
        scratch.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    println!(
        "==> starting Tern ({} store nodes + tern-queue + tern-smtp)",
        args.store.nodes
    );
    let tern = start_tern(&args, scratch.path()).await?;
    let postfix = match &args.postfix_script {
        Some(script) => {
            println!("==> starting Postfix");
            Some(Postfix::start(script, &scratch.path().join("postfix"))?)
        }
        None => None,
    };
    let mut best: Vec<(usize, &str, Run)> = Vec::new();
    let mut sent = (0usize, 0usize);
    for &clients in &args.clients {
        for rep in 0..args.repeat {
            for name in ["tern", "postfix"] {
                let port = match name {
                    "tern" => tern.smtp().port("mx"),
                    _ => match &postfix {
                        Some(p) => p.port,
                        None => continue,
                    },
                };
                let run_tag = format!("{name}-{clients}-{rep}");
                let (messages, size) = (args.messages, args.size);
                let log_before = match name {
                    "tern" => Some(leader_log(&tern).await?),
                    _ => None,
                };
                // On Tern at the largest client count, an IMAP session in IDLE sees each
                // message arrive.
                let idle = match (name, args.clients.iter().max()) {
                    ("tern", Some(&most)) if clients == most => {
                        let imap = tern.access().imap.as_deref().context("no IMAP listener")?;
                        let port = imap.rsplit(':').next().unwrap_or("").parse()?;
                        Some(IdleWatch::start(port).await?)
                    }
                    _ => None,
                };
                let started = Instant::now();
                let (accept_secs, acked) = tokio::task::spawn_blocking(move || {
                    load(port, messages, clients, size, &run_tag)
                })
                .await??;
                // Wait for every accepted message to be in the mailbox.
                let target = if name == "tern" {
                    &mut sent.0
                } else {
                    &mut sent.1
                };
                *target += messages;
                let expected = *target;
                let deadline = Instant::now() + Duration::from_secs(600);
                loop {
                    let n = match name {
                        "tern" => delivered(&tern).await.unwrap_or(0),
                        _ => postfix
                            .as_ref()
                            .map(|p| p.delivered().unwrap_or(0))
                            .unwrap_or(0),
                    };
                    if n >= expected {
                        break;
                    }
                    if Instant::now() > deadline {
                        bail!("{name}: only {n} of {expected} messages delivered");
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let run = Run {
                    messages,
                    accept_secs,
                    deliver_secs: started.elapsed().as_secs_f64(),
                };
                let visibility = match idle {
                    Some(watch) => {
                        let visible = watch.finish().await?;
                        match visibility_ms(&acked, &visible) {
                            Some((p50, p99)) => format!(
                                " visible_in_idle_p50_ms={p50:.1} visible_in_idle_p99_ms={p99:.1} (of {})",
                                visible.len().min(acked.len())
                            ),
                            None => " visible_in_idle=none".to_string(),
                        }
                    }
                    None => String::new(),
                };
                // The leader's log: what each message cost in Raft entries and fsyncs.
                let log = match log_before {
                    Some(before) => {
                        let l = leader_log(&tern).await?.since(&before);
                        format!(
                            " raft_entries_per_message={:.2} fsyncs_per_message={:.2}",
                            l.entries as f64 / messages as f64,
                            l.syncs as f64 / messages as f64
                        )
                    }
                    None => String::new(),
                };
                println!(
                    "    clients={clients} run={} server={name} messages={messages} accept_secs={:.2} accepted_per_sec={:.0} delivered_per_sec={:.0}{log}{visibility}",
                    rep + 1,
                    run.accept_secs,
                    run.accepted_per_sec(),
                    run.delivered_per_sec()
                );
                match best
                    .iter_mut()
                    .find(|(c, n, _)| *c == clients && *n == name)
                {
                    Some((_, _, b)) if b.accepted_per_sec() >= run.accepted_per_sec() => {}
                    Some((_, _, b)) => *b = run,
                    None => best.push((clients, name, run)),
                }
            }
        }
    }
    println!(
        "\nSMTP ingress, best of {} runs ({} messages of {} octets to one local mailbox per run):",
        args.repeat, args.messages, args.size
    );
    println!(
        "  {:<8} {:<8} {:>12} {:>10} {:>13} {:>11}",
        "CLIENTS", "SERVER", "ACCEPTED/S", "TERN/PEER", "DELIVERED/S", "TERN/PEER"
    );
    for &clients in &args.clients {
        let tern = best
            .iter()
            .find(|(c, n, _)| *c == clients && *n == "tern")
            .map(|b| b.2);
        for (c, name, run) in best.iter().filter(|(c, _, _)| *c == clients) {
            let (ra, rd) = match (*name, tern) {
                ("tern", _) | (_, None) => (String::new(), String::new()),
                (_, Some(t)) => (
                    format!("{:.2}", t.accepted_per_sec() / run.accepted_per_sec()),
                    format!("{:.2}", t.delivered_per_sec() / run.delivered_per_sec()),
                ),
            };
            println!(
                "  {:<8} {:<8} {:>12.0} {:>10} {:>13.0} {:>11}",
                c,
                name,
                run.accepted_per_sec(),
                ra,
                run.delivered_per_sec(),
                rd
            );
        }
    }
    drop(postfix);
    drop(tern);
    Ok(())
}

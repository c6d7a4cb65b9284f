//! `tern-chaos`: a store cluster under a seeded schedule of faults while clients append
//! messages and change and read their flags; the recorded histories are then checked with
//! `tern-history`. Run through `cargo xtask chaos [--minutes N] [--nodes N] [--seed S]`.
//!
//! What it covers:
//! - faults ([`faults::SCHEDULE`]): SIGKILL of the leader, of a follower, or (5 nodes or more) of
//!   the leader and a follower at once, each restarted after the hold; SIGSTOP/SIGCONT;
//!   network partitions through the fault proxy in front of each node's advertised address,
//!   which cuts the connections given processes open ([`tern_testkit::faultproxy::FaultProxy::block_from`]): a node
//!   isolated, a minority (with or without the leader) split from the majority, a one-way
//!   cut between the leader and a follower, a bridge (two groups apart, one node reaching
//!   both), a service (tern-queue, tern-smtp, tern-access) cut off from one node or all;
//!   every connection to a node reset; every link to a node slowed by 50 to 400 ms;
//!   stalled clients on the SMTP, IMAP or POP3 listener;
//! - load: APPEND with a delivery id (resubmitted with the same Message-ID and id after an
//!   unknown outcome), STORE +FLAGS/-FLAGS and FETCH FLAGS through the store API on any node;
//!   SMTP submissions through tern-smtp, tern-queue and local delivery; IMAP APPEND, UID MOVE,
//!   STORE \Deleted with UID EXPUNGE, and POP3 DELE and QUIT through tern-access
//!   ([`mailboxes`], [`pop3`]); user, alias, domain and mailbox-list changes and reads ([`names`]);
//! - checks: nothing acknowledged lost, duplicated, corrupted or made up; UIDs never reused
//!   and growing in append order; each message's flags linearizable; every message the IMAP
//!   and POP3 workers touched found exactly once where their acknowledged and unknown
//!   changes allow ([`tern_history::placement`]); HIGHESTMODSEQ never going back within an
//!   IMAP session; every message relayed to the remote sink there exactly once; users,
//!   aliases and the mailbox list linearizable.
//!
//! Also among the faults: a node's disk filled below its free-space margin ([`disk`]) and
//! a process's clock jumping (`tern-clock`).
//! The same seed gives the same fault schedule and the same client choices; the timing of a
//! real cluster makes the outcomes differ between runs.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use tern_history::mail::{self, Appended, Found, Outcome, Submitted, UidSeen};
use tern_history::models::{Flags, FlagsAnswer, FlagsOp};
use tern_history::{linearizable_by_key, Operation};
use tern_proto::store::v1 as pb;
use tern_testkit::faultproxy::Mode;
use tern_testkit::{fetch, list_all, Platform, StoreCluster};

#[path = "chaos/disk.rs"]
mod disk;
#[path = "chaos/faults.rs"]
mod faults;
#[path = "chaos/mailboxes.rs"]
mod mailboxes;
#[path = "chaos/names.rs"]
mod names;
#[path = "chaos/pop3.rs"]
mod pop3;
#[path = "chaos/sink.rs"]
mod sink;
#[path = "chaos/smtp.rs"]
mod smtp;
#[path = "chaos/store_api.rs"]
mod store_api;

use faults::{inject, Listener, Rng, Service, Targets};
use mailboxes::{ImapWorker, IMAP_USER, POP3_USER};
use store_api::{Client, BACKOFF};
use tern_history::placement::{check_placement, Placed};

const ACCOUNT: &str = "alice@example.test";
const KEYWORDS: [&str; 4] = ["\\Flagged", "\\Answered", "$chaos1", "$chaos2"];
/// Longest a client waits for one operation before it counts the outcome as unknown.
const OP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    store: tern_testkit::bench::StoreArgs,
    /// The schedule's seed (default: from the clock; printed either way).
    #[arg(long)]
    seed: Option<u64>,
    /// How long faults are injected.
    #[arg(long, default_value_t = 1.0)]
    minutes: f64,
    /// Concurrent clients of the store API.
    #[arg(long, default_value_t = 4)]
    clients: u32,
    /// Concurrent SMTP senders (through tern-smtp, tern-queue and local delivery); 0 runs
    /// the store alone.
    #[arg(long, default_value_t = 2)]
    smtp_clients: u32,
    /// Concurrent clients changing users, aliases and alice's mailbox names (and reading
    /// them).
    #[arg(long, default_value_t = 1)]
    name_clients: u32,
    /// Concurrent IMAP workers through tern-access (APPEND, MOVE, delete), and with any,
    /// one POP3 worker (DELE); 0 runs without tern-access.
    #[arg(long, default_value_t = 2)]
    imap_clients: u32,
    /// Size of the tmpfs each store node keeps its `db/` on, which the disk-fill fault
    /// fills; 0 keeps the data on the plain disk, without that fault.
    #[arg(long, default_value_t = 2048)]
    tmpfs_mb: u64,
    /// Draw only these faults (comma-separated, e.g. `disk-full,clock-jump`), to look at
    /// one closely; the default is the whole schedule.
    #[arg(long, value_delimiter = ',')]
    faults: Vec<faults::Kind>,
    /// More flags for every store node (repeat it: `--store-arg=--election-timeout-ms=500`),
    /// to see how a setting changes recovery.
    #[arg(long = "store-arg", allow_hyphen_values = true)]
    store_args: Vec<String>,
}

/// Everything the clients saw.
#[derive(Default)]
struct Record {
    submitted: BTreeMap<String, Submitted>,
    /// Messages sent through tern-smtp to the remote recipient (checked at the sink).
    submitted_remote: BTreeMap<String, Submitted>,
    /// What the IMAP and POP3 workers did to each of their messages.
    placed: BTreeMap<String, Placed>,
    /// HIGHESTMODSEQ going back within an IMAP session.
    modseq_backwards: Vec<String>,
    appends: Vec<Appended>,
    uids: Vec<UidSeen>,
    flag_ops: Vec<(u32, Operation<FlagsOp, FlagsAnswer>)>,
    /// UIDs acknowledged, for the flag operations to choose from.
    known: Vec<u32>,
    operations: u64,
    unknown: u64,
    /// What the unknown outcomes said, for the report.
    unknown_causes: BTreeMap<String, u64>,
    /// What the definite refusals of writes said, for the report (a full disk's shows
    /// here).
    refused_causes: BTreeMap<String, u64>,
    /// Completion times (µs) of successful operations.
    successes: Vec<u64>,
}

impl Record {
    /// Where a submission is recorded: with the mailbox's, or the remote recipient's.
    fn submissions(&mut self, remote: bool) -> &mut BTreeMap<String, Submitted> {
        if remote {
            &mut self.submitted_remote
        } else {
            &mut self.submitted
        }
    }
}

fn digest(body: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut h);
    h.finish()
}

/// Whether a failed call may still have taken effect. A connection that was refused never
/// carried the request, and the store says when a write was not appended; everything else
/// that is not a definite refusal (a time-out, a cut connection, "outcome unknown") may have.
fn outcome_unknown(status: &tonic::Status) -> bool {
    let text = status.message();
    // Refused before anything was proposed: no connection, no leader, or a node below its
    // free-space margin (tern-store checks it before a write goes to the log).
    let never_sent = text.contains("Connection refused")
        || text.contains("low on disk space")
        || text.contains("tcp connect error")
        || text.contains("no leader elected")
        || text.contains("not the leader");
    if never_sent {
        return false;
    }
    matches!(
        status.code(),
        tonic::Code::Unavailable
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Unknown
            | tonic::Code::Internal
            | tonic::Code::Cancelled
    )
}

/// The cause of an outcome, shortened for the report.
fn cause<T>(result: &Result<Result<T, tonic::Status>, tokio::time::error::Elapsed>) -> String {
    match result {
        Err(_) => format!("no answer within {OP_TIMEOUT:?}"),
        Ok(Err(s)) => shape(&format!("{:?}: {}", s.code(), s.message())),
        Ok(Ok(_)) => String::new(),
    }
}

/// A message with its numbers (ports, node ids, sizes) as `N` and cut to 70 characters, so
/// that causes of one kind add up in the report.
fn shape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if !c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('N') {
            out.push('N');
        }
    }
    out.chars().take(70).collect()
}

/// Where the first line that starts with `prefix` starts.
fn find_line(body: &[u8], prefix: &[u8]) -> Option<usize> {
    if body.starts_with(prefix) {
        return Some(0);
    }
    body.windows(prefix.len() + 2)
        .position(|w| w.starts_with(b"\r\n") && &w[2..] == prefix)
        .map(|at| at + 2)
}

/// Reads every message back from the leader once the cluster has settled.
async fn settle_and_read(
    cluster: &StoreCluster,
) -> anyhow::Result<(Vec<Found>, Vec<UidSeen>, Vec<pb::MessageRecord>)> {
    let leader = cluster.wait_leader(Duration::from_secs(60)).await?;
    let applied = cluster.status(leader).await?.last_applied;
    for i in 0..cluster.nodes.len() {
        cluster
            .wait_applied(i, applied, Duration::from_secs(60))
            .await?;
    }
    let mut msgs = cluster.messages(leader, ACCOUNT).await?;
    let listing = list_all(&mut msgs, ACCOUNT, "INBOX").await?;
    let uid_validity = listing.mailbox.as_ref().map_or(0, |m| m.uid_validity);
    let mut found = Vec::new();
    let mut uids = Vec::new();
    for m in &listing.messages {
        let body = fetch(&mut msgs, ACCOUNT, "INBOX", m.uid).await?;
        let message_id = tern_mail::header::first_field(&body, "Message-ID").unwrap_or_default();
        uids.push(UidSeen {
            mailbox: "INBOX".into(),
            uid_validity,
            uid: m.uid,
            message_id: message_id.clone(),
        });
        // A message that came through SMTP starts with the trace fields tern-smtp added
        // (Received:); what was sent starts at its Message-ID field.
        let sent = find_line(&body, b"Message-ID:").map_or(&body[..], |at| &body[at..]);
        found.push(Found {
            message_id,
            digest: digest(sent),
        });
    }
    Ok((found, uids, listing.messages))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    println!(
        "chaos: seed {seed}, {} store nodes, {} store clients, {} SMTP senders, {} IMAP workers and {} POP3 worker, {} minutes",
        args.store.nodes,
        args.clients,
        args.smtp_clients,
        args.imap_clients,
        u32::from(args.imap_clients > 0),
        args.minutes
    );
    anyhow::ensure!(
        args.tmpfs_mb <= disk::MAX_TMPFS_MB,
        "--tmpfs-mb is at most {}",
        disk::MAX_TMPFS_MB
    );
    let scratch = tempfile::tempdir()?;
    // Every process started from here reads its clock offset in this directory (the clock
    // fault writes one); set before any is started, while nothing else reads the
    // environment.
    let clocks = scratch.path().join("clocks");
    std::fs::create_dir(&clocks)?;
    std::env::set_var(tern_clock::FAULT_DIR_ENV, &clocks);
    let store_bin = match args.tmpfs_mb {
        0 => args.store.store_bin.clone(),
        mb => disk::wrapper(scratch.path(), &args.store.store_bin, mb)?,
    };
    let mut platform = Platform::builder()
        .stores(args.store.nodes)
        .store_bin(&store_bin)
        .proxied_stores()
        // The store-API clients log in once, as a test does; an access node renews its
        // tokens at half-life, these do not, so tokens must outlive the run (with the
        // default 15 minutes, a 30-minute run's store-API clients were refused from then on).
        .store_args(
            &["--session-ttl-secs", "43200"]
                .into_iter()
                .chain(args.store_args.iter().map(String::as_str))
                .collect::<Vec<_>>(),
        )
        .users(&["alice", IMAP_USER, POP3_USER]);
    let sink = sink::Sink::start().await?;
    if args.smtp_clients > 0 {
        let transport = format!("remote.test=127.0.0.1:{}", sink.addr.port());
        platform = platform.queue(&["--transports", &transport]).smtp(&[]);
    }
    if args.imap_clients > 0 {
        platform = platform.access(&[]);
    }
    let mut platform = platform.start().await?;
    let smtp_addr = (args.smtp_clients > 0).then(|| platform.smtp().mx.clone());
    let mut targets = Targets {
        disks: args.tmpfs_mb > 0,
        only: args.faults.clone(),
        clocks: Some(clocks),
        ..Targets::default()
    };
    let services = &mut targets.services;
    if args.smtp_clients > 0 {
        services.extend(platform.queue().pid().map(|pid| Service {
            name: "tern-queue",
            pid,
        }));
        services.extend(platform.smtp().pid().map(|pid| Service {
            name: "tern-smtp",
            pid,
        }));
    }
    let access_ports = (args.imap_clients > 0).then(|| {
        let a = platform.access();
        (a.imap_port(), a.pop3_port())
    });
    if args.imap_clients > 0 {
        services.extend(platform.access().pid().map(|pid| Service {
            name: "tern-access",
            pid,
        }));
        let a = platform.access();
        for (name, addr, opening) in [
            ("IMAP", &a.imap, &b"a1 LOGIN {12}\r\n"[..]),
            ("POP3", &a.pop3, &b"USER alice@exam"[..]),
        ] {
            if let Some(addr) = addr {
                targets.listeners.push(Listener {
                    name,
                    addr: addr.clone(),
                    opening,
                });
            }
        }
    }
    if let Some(addr) = &smtp_addr {
        targets.listeners.push(Listener {
            name: "SMTP",
            addr: addr.clone(),
            opening: b"EHLO stalled.test\r\nMAIL FROM:<x@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nSubject: half",
        });
    }
    if let Some((imap, _)) = access_ports {
        mailboxes::prepare(imap, args.imap_clients).await?;
    }
    if args.smtp_clients > 0 {
        smtp::add_remote_alias(&platform.cluster).await?;
    }
    let cluster = &mut platform.cluster;
    let leader = cluster.wait_leader(Duration::from_secs(30)).await?;
    let mut nodes = Vec::new();
    for i in 0..cluster.nodes.len() {
        nodes.push(cluster.messages(i, ACCOUNT).await?);
    }
    let _ = leader;
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(args.minutes * 60.0);
    let record = Arc::new(Mutex::new(Record::default()));
    let mut rng = Rng(seed);
    let mut tasks = Vec::new();
    for id in 0..args.clients {
        let client = Client {
            id,
            rng: Rng(rng.next()),
            nodes: nodes.clone(),
            record: record.clone(),
            started,
            sent: 0,
        };
        tasks.push(tokio::spawn(client.run(until)));
    }
    if let Some(addr) = smtp_addr {
        for id in 0..args.smtp_clients {
            let sender = smtp::SmtpSender {
                id,
                addr: addr.clone(),
                record: record.clone(),
                started,
            };
            tasks.push(tokio::spawn(sender.run(until)));
        }
    }
    if let Some((imap_port, pop3_port)) = access_ports {
        for id in 0..args.imap_clients {
            let worker = ImapWorker {
                user: IMAP_USER,
                prefix: "i",
                id,
                port: imap_port,
                rng: Rng(rng.next()),
                record: record.clone(),
                started,
                modseqs: Default::default(),
            };
            tasks.push(tokio::spawn(worker.run(until)));
        }
        let worker = pop3::Pop3Worker {
            imap: ImapWorker {
                user: POP3_USER,
                prefix: "p",
                id: 0,
                port: imap_port,
                rng: Rng(rng.next()),
                record: record.clone(),
                started,
                modseqs: Default::default(),
            },
            pop3_port,
        };
        tasks.push(tokio::spawn(worker.run(until)));
    }
    let name_history = Arc::new(Mutex::new(names::NameHistory::default()));
    if args.name_clients > 0 {
        let (directories, mailboxes) = names::clients(cluster).await?;
        for id in 0..args.name_clients {
            let client = names::NameClient {
                id,
                rng: Rng(rng.next()),
                cluster_nodes: cluster.nodes.len(),
                directories: directories.clone(),
                mailboxes: mailboxes.clone(),
                record: record.clone(),
                started,
            };
            tasks.push(tokio::spawn(client.run(until, name_history.clone())));
        }
    }
    let faults = inject(cluster, &targets, &mut rng, until, started).await?;
    for t in tasks {
        t.await?;
    }
    for p in &cluster.proxies {
        p.set_mode(Mode::Pass);
        p.block_from(&[]);
    }
    if args.smtp_clients > 0 {
        smtp::queue_drained(cluster, Duration::from_secs(180)).await?;
    }
    let (found, final_uids, final_records) = settle_and_read(cluster).await?;
    let (found_in, worker_uids) = if args.imap_clients > 0 {
        mailboxes::read_placed(cluster, args.imap_clients).await?
    } else {
        Default::default()
    };

    let mut r = record.lock().unwrap_or_else(|p| p.into_inner());
    // The final flags, read after everything, close each message's flag history.
    let end = started.elapsed().as_micros() as u64 + 1;
    for m in &final_records {
        r.flag_ops.push((
            m.uid,
            Operation::done(
                u32::MAX,
                end,
                end + 1,
                FlagsOp::Fetch,
                FlagsAnswer::Flags(m.flags.iter().cloned().collect()),
            ),
        ));
    }
    let submitted: Vec<Submitted> = r.submitted.values().cloned().collect();
    let delivery = mail::check_delivery(&submitted, &found);
    // What reached the remote side: each message the sink acknowledged, by its Message-ID.
    let at_sink: Vec<Found> = sink
        .received()
        .iter()
        .map(|m| {
            let sent = find_line(m, b"Message-ID:").map_or(&m[..], |at| &m[at..]);
            Found {
                message_id: tern_mail::header::first_field(m, "Message-ID").unwrap_or_default(),
                digest: digest(sent),
            }
        })
        .collect();
    let remote: Vec<Submitted> = r.submitted_remote.values().cloned().collect();
    let relayed = mail::check_delivery(&remote, &at_sink);
    let placed: Vec<Placed> = r.placed.values().cloned().collect();
    let placement = check_placement(&placed, &found_in);
    let mut seen = r.uids.clone();
    seen.extend(final_uids);
    seen.extend(worker_uids);
    let reused = mail::reused_uids(&seen);
    let disordered = mail::uids_out_of_order(&r.appends);
    let ops: Vec<Operation<FlagsOp, FlagsAnswer>> =
        r.flag_ops.iter().map(|(_, o)| o.clone()).collect();
    let keys: Vec<u32> = r.flag_ops.iter().map(|(k, _)| *k).collect();
    let indexed: Vec<(usize, Operation<FlagsOp, FlagsAnswer>)> =
        ops.into_iter().enumerate().collect();
    // Partition by message (the key travels with each operation).
    let mut by_uid: BTreeMap<u32, Vec<Operation<FlagsOp, FlagsAnswer>>> = BTreeMap::new();
    for (i, op) in indexed {
        by_uid.entry(keys[i]).or_default().push(op);
    }
    let mut linearizable = true;
    for (uid, ops) in &by_uid {
        if let Err((_, verdict)) = linearizable_by_key(&Flags, ops, |_| *uid) {
            linearizable = false;
            println!("flags of UID {uid} are not linearizable: {verdict:?}");
        }
    }
    if !names::check(&name_history.lock().unwrap_or_else(|p| p.into_inner())) {
        linearizable = false;
    }
    // Recovery: from a fault's start, and from its healing, to the next operation that
    // succeeded; the worst of either over every fault, and which fault it followed.
    // The slowest few are printed, so that a slow kind of fault shows as a pattern.
    let next_success = |t: u64| r.successes.iter().filter(|&&s| s > t).min().map(|s| s - t);
    let mut recoveries: Vec<(u64, &String, &str)> = faults
        .spans
        .iter()
        .flat_map(|(began, healed, what)| {
            [
                next_success(*began).map(|d| (d, what, "its start")),
                next_success(*healed).map(|d| (d, what, "its healing")),
            ]
        })
        .flatten()
        .collect();
    recoveries.sort_by_key(|(d, _, _)| std::cmp::Reverse(*d));
    let worst_recovery = recoveries.first().map_or(0, |(d, _, _)| *d);
    for (i, (d, what, from)) in recoveries.iter().take(5).enumerate() {
        let rank = if i == 0 { "worst" } else { "next" };
        println!(
            "{rank} recovery: {:.1} s from {from}, {what}",
            *d as f64 / 1e6
        );
    }
    for (what, list) in [
        ("lost", &delivery.lost),
        ("duplicated", &delivery.duplicated),
        (
            "duplicated after an unknown outcome (the client resubmitted)",
            &delivery.duplicated_after_unknown,
        ),
        ("corrupted", &delivery.corrupted),
        ("found but never accepted", &delivery.phantom),
        ("relayed: lost", &relayed.lost),
        ("relayed: sent to the sink twice", &relayed.duplicated),
        (
            "relayed: twice after an unknown outcome (the client resubmitted)",
            &relayed.duplicated_after_unknown,
        ),
        ("relayed: corrupted", &relayed.corrupted),
        ("relayed: never accepted", &relayed.phantom),
    ] {
        if !list.is_empty() {
            println!("{what}: {}", list.join(" "));
        }
    }
    for (what, list) in [
        ("IMAP/POP3 lost", &placement.lost),
        ("IMAP/POP3 duplicated", &placement.duplicated),
        ("IMAP/POP3 corrupted", &placement.corrupted),
        ("IMAP/POP3 found but never appended", &placement.phantom),
    ] {
        if !list.is_empty() {
            println!("{what}: {}", list.join(" "));
        }
    }
    for v in &r.modseq_backwards {
        println!("modseq went back: {v}");
    }
    for (id, mailbox) in &placement.misplaced {
        println!("IMAP/POP3 misplaced: {id} found in {mailbox}, where it cannot be");
    }
    for u in &reused {
        println!(
            "UID reused: {} {}/{} for {}",
            u.mailbox, u.uid_validity, u.uid, u.message_id
        );
    }
    for (a, b) in &disordered {
        println!(
            "UIDs out of append order: {} (returned before) >= {}",
            a.uid, b.uid
        );
    }
    for (why, n) in &r.unknown_causes {
        println!("unknown outcomes: {n} × {why}");
    }
    for (why, n) in &r.refused_causes {
        println!("refused writes: {n} × {why}");
    }
    let through_smtp = submitted
        .iter()
        .chain(&remote)
        .filter(|s| s.message_id.starts_with("<s") && s.outcomes.contains(&Outcome::Accepted))
        .count();
    let steps = |f: fn(&tern_history::placement::Step) -> bool| {
        placed
            .iter()
            .flat_map(|p| &p.steps)
            .filter(|(s, o)| f(s) && *o == Outcome::Accepted)
            .count()
    };
    use tern_history::placement::Step;
    println!(
        "{through_smtp} messages accepted through SMTP ({} relayed to the remote sink), {} appended through the store API; through tern-access: {} appended, {} moved, {} deleted ({} left)",
        at_sink.len(),
        r.appends.iter().filter(|a| a.mailbox == "INBOX").count(),
        steps(|s| matches!(s, Step::Append(_))),
        steps(|s| matches!(s, Step::Move { .. })),
        steps(|s| matches!(s, Step::Delete(_))),
        found_in.len(),
    );
    let unknown_ok = r.unknown * 100 <= r.operations;
    if !unknown_ok {
        println!("more than 1% of the operations had an unknown outcome");
    }
    // A store-API append resubmitted after an unknown outcome keeps its delivery id, so the
    // store must not keep two copies of it (an SMTP resubmission is a new message to the
    // server, and may).
    let dedup_broken: Vec<&String> = delivery
        .duplicated_after_unknown
        .iter()
        .filter(|id| id.starts_with("<c"))
        .collect();
    for id in &dedup_broken {
        println!("stored twice despite one delivery id: {id}");
    }
    let clean = delivery.is_clean()
        && relayed.is_clean()
        && placement.is_clean()
        && dedup_broken.is_empty()
        && r.modseq_backwards.is_empty()
        && reused.is_empty()
        && disordered.is_empty();
    println!(
        "chaos: seed {seed}, {} faults ({} leader kills, {} partitions), {} operations, {} unknown outcomes, lost {}, duplicated {}, linearizable {}, worst recovery {:.1} s",
        faults.total,
        faults.leader_kills,
        faults.partitions,
        r.operations,
        r.unknown,
        delivery.lost.len() + placement.lost.len() + relayed.lost.len(),
        delivery.duplicated.len() + placement.duplicated.len() + relayed.duplicated.len(),
        if linearizable { "yes" } else { "no" },
        worst_recovery as f64 / 1e6,
    );
    if !(clean && linearizable && unknown_ok) {
        std::process::exit(1);
    }
    Ok(())
}

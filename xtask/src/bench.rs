//! `cargo xtask bench store`: tern-store's replicated append throughput over a small matrix
//! (3 and 1 nodes × concurrency 1, 16, 64), printed with the machine it ran on, because an
//! fsync-bound number means nothing without the CPU and the disk behind it.
//!
//! `cargo xtask bench pop3`: RETR throughput from 1 and 16 clients, Tern beside a private
//! Dovecot (installed from Debian's packages by `xtask/scripts/dovecot.sh pop3`) on loopback.
//!
//! `cargo xtask bench imap`: operations per second of a mixed IMAP workload (SELECT, header
//! and body FETCH, STORE, APPEND, EXPUNGE) from 1, 16 and 64 clients, Tern beside a private
//! Dovecot IMAP server (`xtask/scripts/dovecot.sh imap`) on loopback, and the memory of one
//! tern-access node per idle connection with 10,000 of them open.
//!
//! `cargo xtask bench flood`: a wrong-password flood against a whole platform, and what it
//! costs (store memory, `ternctl cluster status` latency, delivery delay).
//!
//! `cargo xtask bench queue` and `cargo xtask bench smtp`: queue deliveries per second, and
//! SMTP ingress beside a private Postfix (xtask/scripts/postfix-smtp.sh).
//!
//! The measuring is done by the `tern-*-bench` binaries (in crates/tern-testkit); this module
//! only drives them. [`run_bench`] is the single place that knows the store bench's command
//! line and output; the others print their own tables, the peer benchmarks through
//! [`peer_bench`].

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context};

use crate::cargo::{self, Profile};
use crate::prereq;
use crate::table;

const NODES: [u32; 2] = [3, 1];
const CONCURRENCY: [u32; 3] = [1, 16, 64];
const MESSAGE_SIZE: u32 = 4096;
const MESSAGES: u32 = 2000;
const MESSAGES_QUICK: u32 = 200;

/// One run's outcome.
struct BenchResult {
    /// Parsed from the result line, when it could be found there.
    appends_per_sec: Option<f64>,
    /// The result line as printed, shown in full so nothing the bench reports is lost.
    line: String,
    secs: f64,
}

pub fn store(profile: Profile, quick: bool, messages: Option<u32>) -> anyhow::Result<()> {
    prereq::ensure()?;
    println!("==> building tern-store (and tern-store-bench)");
    cargo::run(profile.build())?;
    let target = cargo::target_dir();
    let store_bin = cargo::bin(&target, profile, "tern-store")?;
    let bench_bin = cargo::bin(&target, profile, "tern-store-bench")?;
    let messages = messages.unwrap_or(if quick { MESSAGES_QUICK } else { MESSAGES });

    let mut rows = Vec::new();
    for nodes in NODES {
        for concurrency in CONCURRENCY {
            println!(
                "==> {nodes} node{}, concurrency {concurrency}, {messages} messages of {MESSAGE_SIZE} bytes",
                if nodes == 1 { "" } else { "s" }
            );
            let r = run_bench(&bench_bin, &store_bin, nodes, concurrency, messages)?;
            println!("    {}", r.line);
            rows.push((nodes, concurrency, r));
        }
    }

    println!("\nMachine");
    for (k, v) in machine(&target) {
        println!("  {k:<8} {v}");
    }
    println!("  build    {}", profile.describe());
    println!(
        "\ntern-store appends ({messages} messages of {MESSAGE_SIZE} bytes per run){}",
        if quick {
            ", --quick: a smoke test, not a measurement"
        } else {
            ""
        }
    );
    let mut lines = vec![vec![
        "NODES".to_string(),
        "CONCURRENCY".into(),
        "APPENDS/S".into(),
        "ENTRIES/FSYNC".into(),
        "WALL".into(),
        "RESULT LINE".into(),
    ]];
    for (nodes, conc, r) in &rows {
        lines.push(vec![
            nodes.to_string(),
            conc.to_string(),
            r.appends_per_sec
                .map(|a| format!("{a:.0}"))
                .unwrap_or_else(|| "?".into()),
            parse_field(&r.line, "entries_per_sync")
                .map(|a| format!("{a:.2}"))
                .unwrap_or_else(|| "?".into()),
            format!("{:.1}s", r.secs),
            r.line.clone(),
        ]);
    }
    print!("{}", table::render(&lines));
    Ok(())
}

/// Runs tern-flood-bench (a wrong-password flood against a whole platform).
pub fn flood(profile: Profile, quick: bool) -> anyhow::Result<()> {
    platform_bench(
        profile,
        "the platform and tern-flood-bench",
        "tern-flood-bench",
        &["--clients", "60", "--secs", "8"],
        quick,
    )
}

/// Runs tern-queue-bench.
pub fn queue(profile: Profile, quick: bool) -> anyhow::Result<()> {
    platform_bench(
        profile,
        "tern-store, tern-queue and tern-queue-bench",
        "tern-queue-bench",
        &["--messages", "48"],
        quick,
    )
}

/// `cargo xtask chaos`: builds, then runs tern-chaos against the built tern-store.
pub fn chaos(profile: Profile, minutes: f64, nodes: u16, seed: Option<u64>) -> anyhow::Result<()> {
    prereq::ensure()?;
    println!("==> building tern-store and tern-chaos");
    cargo::run(profile.build())?;
    let target = cargo::target_dir();
    let mut cmd = Command::new(cargo::bin(&target, profile, "tern-chaos")?);
    cmd.arg("--store-bin")
        .arg(cargo::bin(&target, profile, "tern-store")?)
        .arg("--nodes")
        .arg(nodes.to_string())
        .arg("--minutes")
        .arg(minutes.to_string());
    if let Some(seed) = seed {
        cmd.arg("--seed").arg(seed.to_string());
    }
    let shown = cargo::display(&cmd);
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` found a fault ({status}): see its last lines");
    }
    Ok(())
}

/// Builds the workspace and runs `bench` (a tern-testkit benchmark binary that starts its own
/// platform from `--store-bin`) with its output on the terminal, `quick_args` added for a
/// smoke run; then prints the machine.
fn platform_bench(
    profile: Profile,
    building: &str,
    bench: &str,
    quick_args: &[&str],
    quick: bool,
) -> anyhow::Result<()> {
    prereq::ensure()?;
    println!("==> building {building}");
    cargo::run(profile.build())?;
    let target = cargo::target_dir();
    let store_bin = cargo::bin(&target, profile, "tern-store")?;
    let bench_bin = cargo::bin(&target, profile, bench)?;
    let mut cmd = Command::new(&bench_bin);
    cmd.arg("--store-bin").arg(&store_bin);
    if quick {
        cmd.args(quick_args);
    }
    let shown = cargo::display(&cmd);
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    print_machine(&target, profile, quick);
    Ok(())
}

fn print_machine(target: &Path, profile: Profile, quick: bool) {
    println!("\nMachine");
    for (k, v) in machine(target) {
        println!("  {k:<8} {v}");
    }
    println!(
        "  build    {}{}",
        profile.describe(),
        if quick {
            "\n  --quick: a smoke test, not a measurement"
        } else {
            ""
        }
    );
}

/// Runs tern-pop3-bench beside Dovecot (`xtask/scripts/dovecot.sh pop3`).
pub fn pop3(profile: Profile, quick: bool, no_peer: bool) -> anyhow::Result<()> {
    peer_bench(PeerBench {
        profile,
        bench: "tern-pop3-bench",
        services: "tern-store, tern-access",
        peer: "Dovecot's POP3 server",
        script: "xtask/scripts/dovecot.sh",
        script_args: &["pop3"],
        script_flag: "--dovecot-script",
        quick_args: &["--messages", "20", "--rounds", "1", "--repeat", "1"],
        peer_build: "Dovecot as Debian ships it (optimized C)",
        quick,
        no_peer,
    })
}

/// Runs tern-imap-bench beside Dovecot (`xtask/scripts/dovecot.sh imap`).
pub fn imap(profile: Profile, quick: bool, no_peer: bool) -> anyhow::Result<()> {
    peer_bench(PeerBench {
        profile,
        bench: "tern-imap-bench",
        services: "tern-store, tern-access",
        peer: "Dovecot's IMAP server",
        script: "xtask/scripts/dovecot.sh",
        script_args: &["imap"],
        script_flag: "--dovecot-script",
        quick_args: &[
            "--messages",
            "40",
            "--secs",
            "3",
            "--repeat",
            "1",
            "--idle-logins",
            "200",
        ],
        peer_build: "Dovecot as Debian ships it (optimized C)",
        quick,
        no_peer,
    })
}

/// Runs tern-smtp-bench beside Postfix (xtask/scripts/postfix-smtp.sh).
pub fn smtp(profile: Profile, quick: bool, no_peer: bool) -> anyhow::Result<()> {
    peer_bench(PeerBench {
        profile,
        bench: "tern-smtp-bench",
        services: "tern-store, tern-queue, tern-smtp",
        peer: "Postfix",
        script: "xtask/scripts/postfix-smtp.sh",
        script_args: &[],
        script_flag: "--postfix-script",
        quick_args: &["--messages", "64", "--repeat", "1"],
        peer_build: "Postfix as Debian ships it (optimized C)",
        quick,
        no_peer,
    })
}

/// A benchmark that measures Tern side by side with a peer server run by a script.
struct PeerBench {
    /// Which build of Tern is measured.
    profile: Profile,
    /// The load generator binary (crates/tern-testkit).
    bench: &'static str,
    /// What is built, for the progress line.
    services: &'static str,
    /// The peer, for messages.
    peer: &'static str,
    /// The script that installs and runs the peer (`install`, then driven by the bench).
    script: &'static str,
    /// Arguments before the script's sub-command: the protocol for dovecot.sh, which
    /// serves both IMAP and POP3 (the bench binary passes the same one itself).
    script_args: &'static [&'static str],
    /// The bench's flag that takes the script.
    script_flag: &'static str,
    /// Flags for `--quick`.
    quick_args: &'static [&'static str],
    /// How the peer was built, for the machine summary.
    peer_build: &'static str,
    quick: bool,
    no_peer: bool,
}

/// Builds, installs the peer (measuring Tern alone when that fails or `--no-peer`), runs the
/// bench with its output on the terminal, then prints the machine.
fn peer_bench(b: PeerBench) -> anyhow::Result<()> {
    prereq::ensure()?;
    println!("==> building {} and {}", b.services, b.bench);
    cargo::run(b.profile.build())?;
    let target = cargo::target_dir();
    let store_bin = cargo::bin(&target, b.profile, "tern-store")?;
    let bench_bin = cargo::bin(&target, b.profile, b.bench)?;
    let script = cargo::workspace_root().join(b.script);
    let mut peer = !b.no_peer;
    if peer {
        println!("==> making sure {} is installed", b.peer);
        let ok = Command::new("bash")
            .arg(&script)
            .args(b.script_args)
            .arg("install")
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            println!(
                "    {} could not be installed: measuring Tern alone",
                b.peer
            );
            peer = false;
        }
    }
    let mut cmd = Command::new(&bench_bin);
    cmd.arg("--store-bin").arg(&store_bin);
    if peer {
        cmd.arg(b.script_flag).arg(&script);
    }
    if b.quick {
        cmd.args(b.quick_args);
    }
    let shown = cargo::display(&cmd);
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    print_machine(&target, b.profile, b.quick);
    println!("  peer     {}", b.peer_build);
    Ok(())
}

/// Runs tern-store-bench once. Adapt here if its flags or output change.
fn run_bench(
    bench_bin: &Path,
    store_bin: &Path,
    nodes: u32,
    concurrency: u32,
    messages: u32,
) -> anyhow::Result<BenchResult> {
    let mut cmd = Command::new(bench_bin);
    cmd.arg("--store-bin")
        .arg(store_bin)
        .args(["--nodes", &nodes.to_string()])
        .args(["--concurrency", &concurrency.to_string()])
        .args(["--messages", &messages.to_string()])
        .args(["--size", &MESSAGE_SIZE.to_string()])
        .stdin(Stdio::null());
    let shown = cargo::display(&cmd);
    let started = Instant::now();
    let out = cmd
        .output()
        .with_context(|| format!("cannot start `{shown}`"))?;
    let secs = started.elapsed().as_secs_f64();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "`{shown}` failed ({}); last lines of its stderr:\n{}",
            out.status,
            tail.join("\n")
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string();
    if line.is_empty() {
        bail!("`{shown}` printed no result line");
    }
    Ok(BenchResult {
        appends_per_sec: parse_appends_per_sec(&line),
        line,
        secs,
    })
}

/// Finds the throughput in a result line. Accepted forms: `appends_per_sec=1234.5` (also
/// `appends/s=`, `throughput=`, `ops_per_sec=`, as `key=value` or `key: value` or a JSON
/// object), or `1234.5 appends/s`.
fn parse_appends_per_sec(line: &str) -> Option<f64> {
    // tern-store-bench prints `key=value` pairs; this is the one the table shows.
    parse_field(line, "appends_per_sec")
}

/// The number after `key=` in a line of `key=value` pairs.
fn parse_field(line: &str, key: &str) -> Option<f64> {
    line.split_whitespace()
        .find_map(|t| t.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

/// CPU, memory, kernel and the disk under the target directory (where the bench's data lives
/// unless it says otherwise).
fn machine(target: &Path) -> Vec<(&'static str, String)> {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get().to_string())
        .unwrap_or_else(|_| "?".into());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let ram = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| format!("{:.1} GiB", kb as f64 / (1024.0 * 1024.0)))
        .unwrap_or_else(|| "?".into());
    let kernel = command_output("uname", &["-r"]).unwrap_or_else(|| "?".into());
    let disk = command_output("df", &["-hT", &target.to_string_lossy()])
        .and_then(|s| s.lines().last().map(describe_df_line))
        .unwrap_or_else(|| "?".into());
    vec![
        ("cpus", format!("{cpus} × {model}")),
        ("memory", ram),
        ("kernel", kernel),
        ("disk", disk),
    ]
}

/// `df -hT` row → "/dev/sda1 (ext4) 252G, 53G free, mounted on /".
fn describe_df_line(line: &str) -> String {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() >= 7 {
        format!(
            "{} ({}) {}, {} free, mounted on {}",
            f[0], f[1], f[2], f[4], f[6]
        )
    } else {
        line.to_string()
    }
}

fn command_output(prog: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(prog)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_line_forms() {
        assert_eq!(
            parse_appends_per_sec("nodes=3 concurrency=16 appends_per_sec=1234.5 p99_ms=12"),
            Some(1234.5)
        );
        assert_eq!(parse_appends_per_sec("appends_per_sec=oops"), None);
        assert_eq!(parse_appends_per_sec("nothing here"), None);
    }

    #[test]
    fn df_rows() {
        assert_eq!(
            describe_df_line("/dev/sda1 ext4 252G 190G 53G 79% /"),
            "/dev/sda1 (ext4) 252G, 53G free, mounted on /"
        );
    }
}

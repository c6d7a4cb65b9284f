//! `cargo xtask` — the project's task runner, in Rust so it needs nothing but cargo.
//!
//! - `up`: build and run the local platform in the foreground (see [`up`]).
//! - `test`: the whole check suite CI runs (see [`suite`]).
//! - `bench store`: the store's append benchmark matrix (see [`bench`]).
//! - `bench pop3`: POP3 RETR throughput, Tern beside Dovecot (see [`bench`]).
//! - `bench imap`: IMAP mixed-workload operations per second, Tern beside Dovecot, and
//!   memory per idle IMAP connection (see [`bench`]).
//! - `bench queue`: queue deliveries per second, local and remote (see [`bench`]).
//! - `bench smtp`: SMTP ingress throughput, Tern beside Postfix (see [`bench`]).
//!
//! Deliberately synchronous and light on dependencies (anyhow, clap, serde_json, libc, and
//! the std-only `tern-spawn` it shares with the test kit for starting services): it mostly
//! starts processes and waits for them, and it is compiled before anything else on a fresh
//! machine.

mod bench;
mod cargo;
mod password;
mod prereq;
mod procs;
mod signals;
mod suite;
mod table;
mod up;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "Tern's development tasks")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Build and run the platform on loopback in the foreground; Ctrl-C stops it.
    ///
    /// Starts N tern-store nodes (gRPC on 127.0.0.1:7101..), waits for a leader, creates the
    /// domain example.test with users alice@ and bob@ (development password printed and kept
    /// in DATA_DIR/dev-password), then supervises the nodes. Data survives restarts.
    Up {
        /// Number of store nodes (1..=99); 3 tolerates one failure, 5 two.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=99))]
        nodes: u16,
        /// Where node data, logs and the dev password live. Default: .tern/dev in the workspace.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Run the release build (`cargo build --release`, its own build directory; the
        /// first one compiles RocksDB again), for measuring with your own tools.
        #[arg(long)]
        release: bool,
        /// DNS servers (`IP:PORT,...`) for tern-smtp's SPF checks and tern-queue's MX
        /// lookups. Without them tern-smtp checks no SPF and tern-queue uses the system's.
        #[arg(long, value_name = "IP:PORT,...")]
        dns_servers: Option<String>,
    },
    /// Run the whole suite as CI does: fmt check, build, tests (clippy is `lint`).
    ///
    /// Arguments after `--` go to `cargo test --workspace`, e.g.
    /// `cargo xtask test -- some_test_name -- --nocapture`.
    Test {
        /// Extra arguments for `cargo test --workspace`.
        #[arg(last = true, value_name = "CARGO_TEST_ARGS")]
        args: Vec<String>,
    },
    /// Clippy over the whole workspace with warnings as errors (not part of `test`: it
    /// compiles RocksDB's C++ a second time).
    Lint,
    /// Benchmarks (the dev profile unless `--release`).
    Bench(BenchArgs),
    /// A store cluster under a seeded schedule of faults (SIGKILL and restart of the leader
    /// or a follower, SIGSTOP, a node cut off from its peers) while clients append and change
    /// flags; then checks the histories: nothing acknowledged lost or duplicated, UIDs never
    /// reused, flags linearizable. The last line is the verdict; the exit status is nonzero
    /// unless it is clean.
    Chaos {
        /// Minutes of faults.
        #[arg(long, default_value_t = 1.0)]
        minutes: f64,
        /// Store nodes (3 tolerates one failure, 5 two).
        #[arg(long, default_value_t = 3)]
        nodes: u16,
        /// The schedule's seed (default: from the clock; printed either way).
        #[arg(long)]
        seed: Option<u64>,
        /// Measure the release build instead of the dev profile.
        #[arg(long)]
        release: bool,
    },
}

#[derive(Debug, clap::Args)]
struct BenchArgs {
    /// Measure the release build (`cargo build --release`, its own build directory): what
    /// published figures come from. Without it, the dev profile the tests use.
    #[arg(long, global = true)]
    release: bool,
    #[command(subcommand)]
    target: BenchTarget,
}

#[derive(Debug, Subcommand)]
enum BenchTarget {
    /// Replicated append throughput of tern-store for 3 and 1 nodes at concurrency 1, 16, 64.
    Store {
        /// Fewer messages per run: a smoke test of the benchmark, not a measurement.
        #[arg(long)]
        quick: bool,
        /// Messages per run (overrides the default of 2000, or 200 with --quick).
        #[arg(long, value_name = "M")]
        messages: Option<u32>,
    },
    /// Queue deliveries per second: local (1 and 10 recipients) and to a loopback SMTP sink.
    Queue {
        /// Fewer messages: a smoke test of the benchmark, not a measurement.
        #[arg(long)]
        quick: bool,
    },
    /// SMTP ingress: messages accepted (250 after DATA) and delivered per second from 1 and
    /// 16 clients, Tern side by side with Postfix on loopback.
    Smtp {
        /// Fewer messages and runs: a smoke test of the benchmark, not a measurement.
        #[arg(long)]
        quick: bool,
        /// Tern only (no Postfix install or run).
        #[arg(long)]
        no_peer: bool,
    },
    /// POP3 RETR throughput (messages and MB per second) from 1 and 16 clients, Tern side by
    /// side with Dovecot's POP3 on loopback.
    Pop3 {
        /// Fewer messages and rounds: a smoke test of the benchmark, not a measurement.
        #[arg(long)]
        quick: bool,
        /// Tern only (no Dovecot install or run).
        #[arg(long)]
        no_peer: bool,
    },
    /// A wrong-password flood (200 connections over IMAP, POP3 and SMTP AUTH from ten
    /// loopback /24s for 30 s): store memory, `ternctl cluster status` latency and delivery
    /// delay while it lasts.
    Flood {
        /// 60 connections for 8 s: a smoke test of the benchmark, not a measurement.
        #[arg(long)]
        quick: bool,
    },
    /// IMAP operations per second for a mixed workload (SELECT, FETCH headers, FETCH bodies,
    /// STORE flags, APPEND, EXPUNGE) from 1, 16 and 64 clients, Tern side by side with
    /// Dovecot's IMAP on loopback; then memory per idle connection with 10,000 idle IMAP
    /// connections on one tern-access node.
    Imap {
        /// Shorter runs, one each, and 200 of the 10,000 idle connections logged in (instead
        /// of 2,000): a smoke test of the benchmark, not a measurement.
        #[arg(long)]
        quick: bool,
        /// Tern only (no Dovecot install or run).
        #[arg(long)]
        no_peer: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Task::Up {
            nodes,
            data_dir,
            release,
            dns_servers,
        } => up::run(
            nodes,
            data_dir,
            if release {
                cargo::Profile::Release
            } else {
                cargo::Profile::Dev
            },
            dns_servers,
        ),
        Task::Test { args } => suite::run(&args),
        Task::Lint => suite::lint(),
        Task::Chaos {
            minutes,
            nodes,
            seed,
            release,
        } => bench::chaos(
            if release {
                cargo::Profile::Release
            } else {
                cargo::Profile::Dev
            },
            minutes,
            nodes,
            seed,
        ),
        Task::Bench(b) => {
            let p = if b.release {
                cargo::Profile::Release
            } else {
                cargo::Profile::Dev
            };
            match b.target {
                BenchTarget::Store { quick, messages } => bench::store(p, quick, messages),
                BenchTarget::Pop3 { quick, no_peer } => bench::pop3(p, quick, no_peer),
                BenchTarget::Imap { quick, no_peer } => bench::imap(p, quick, no_peer),
                BenchTarget::Queue { quick } => bench::queue(p, quick),
                BenchTarget::Flood { quick } => bench::flood(p, quick),
                BenchTarget::Smtp { quick, no_peer } => bench::smtp(p, quick, no_peer),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

//! End-to-end tests of Tern: mail followed across real processes of several services
//! (tern-store nodes, tern-queue, tern-smtp, tern-access) started by
//! [`tern_testkit::Platform`], driven by clients Tern did not write.
//!
//! The tests are `tests/*.rs`, one binary per protocol or concern (`smtp`, `pop3`, `imap`,
//! `delivery`, `delivery_trace`, `metrics`). They run the workspace's service binaries,
//! which `cargo test --workspace --all-targets` builds first; run alone
//! (`cargo test --workspace --test smtp`), they refuse binaries older than the sources and
//! say to run `cargo build --workspace --all-targets`. Tests of one service's process alone
//! stay with that service (`services/*/tests`).
//!
//! This library holds what the test binaries share: where the client scripts are
//! (`clients/`, Python scenarios), the Python mail journey and reading a mailbox
//! ([`mailbox`]). Dependencies: `anyhow` for
//! errors with context, `tern-testkit` for the platform and the client installer, `tokio`
//! for waiting.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context};
use tern_testkit::clients::{require, Client};

pub mod journey;
pub mod mailbox;

/// `clients/NAME`: a client script (Python's smtplib, imaplib, poplib scenarios).
pub fn client_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("clients")
        .join(name)
}

/// Runs `python3 clients/SCRIPT ARGS` and returns its stdout; the scenario must exit 0
/// and print `PASS SCENARIO` (its first argument).
pub fn python_scenario(script: &str, scenario: &str, args: &[&str]) -> anyhow::Result<String> {
    require(Client::Python)?;
    let out = Command::new("python3")
        .arg(client_script(script))
        .arg(scenario)
        .args(args)
        .output()
        .context("running python3")?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() || !stdout.contains(&format!("PASS {scenario}")) {
        bail!(
            "{script} scenario {scenario} failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(stdout)
}

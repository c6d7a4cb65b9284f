//! `cargo xtask test`: the one command CI runs (`.ci/run`), so a developer can run exactly
//! what CI will. Steps run in order from cheapest to dearest and stop at the first failure.
//!
//! Clippy is `cargo xtask lint`, not a step here: `cargo check`/`clippy` run RocksDB's build
//! script separately from `cargo build`, which would compile its C++ a second time (about
//! 20 minutes on 2 cores) and push CI past its time budget.

use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};

use crate::cargo::{self, cargo};
use crate::prereq;

pub fn run(extra_test_args: &[String]) -> anyhow::Result<()> {
    let started = Instant::now();
    println!("==> [1/5] prerequisites");
    prereq::ensure()?;
    prereq::ensure_cargo_component("fmt", "rustfmt")?;

    let mut test = cargo(["test", "--workspace", "--all-targets"]);
    test.args(extra_test_args);
    let steps: [(&str, Command); 4] = [
        ("formatting", cargo(["fmt", "--all", "--", "--check"])),
        ("build", cargo::build_workspace()),
        ("tests", test),
        ("doc tests", cargo(["test", "--workspace", "--doc"])),
    ];
    let total = steps.len() + 1;
    for (i, (what, cmd)) in steps.into_iter().enumerate() {
        let shown = cargo::display(&cmd);
        println!("==> [{}/{total}] {what}: {shown}", i + 2);
        let step_started = Instant::now();
        let mut cmd = cmd;
        let status = cmd
            .status()
            .with_context(|| format!("cannot start `{shown}`"))?;
        if !status.success() {
            bail!(
                "step {}/{total} ({what}) failed ({status}) after {}: `{shown}`",
                i + 2,
                minutes(step_started.elapsed().as_secs())
            );
        }
        println!(
            "==> {what} passed in {}",
            minutes(step_started.elapsed().as_secs())
        );
    }
    println!(
        "==> all {total} steps passed in {}",
        minutes(started.elapsed().as_secs())
    );
    Ok(())
}

fn minutes(secs: u64) -> String {
    if secs < 60 {
        format!("{secs}s")
    } else {
        format!("{}m{:02}s", secs / 60, secs % 60)
    }
}

/// `cargo xtask lint`: clippy over every target with warnings as errors.
pub fn lint() -> anyhow::Result<()> {
    prereq::ensure()?;
    prereq::ensure_cargo_component("clippy", "clippy")?;
    let mut cmd = cargo([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    let shown = cargo::display(&cmd);
    println!("==> lints: {shown}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{shown}`"))?;
    if !status.success() {
        bail!("lints failed ({status})");
    }
    Ok(())
}

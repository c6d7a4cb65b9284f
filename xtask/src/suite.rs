//! `cargo xtask test`: the one command CI runs (`.ci/run`), so a developer can run exactly
//! what CI will. Steps run in order from cheapest to dearest and stop at the first failure.

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
    prereq::ensure_cargo_component("clippy", "clippy")?;

    let mut test = cargo(["test", "--workspace"]);
    test.args(extra_test_args);
    let steps: [(&str, Command); 4] = [
        ("formatting", cargo(["fmt", "--all", "--", "--check"])),
        (
            "lints",
            cargo([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]),
        ),
        ("build", cargo(["build", "--workspace", "--all-targets"])),
        ("tests", test),
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

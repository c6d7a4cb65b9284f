//! `cargo xtask test`: the one command CI runs (`.ci/run`), so a developer can run exactly
//! what CI will. Steps run in order from cheapest to dearest and stop at the first failure.
//!
//! Clippy is `cargo xtask lint`, not a step here: `cargo check`/`clippy` run RocksDB's build
//! script separately from `cargo build`, which would compile its C++ a second time (about
//! 20 minutes on 2 cores) and push CI past its time budget.
//!
//! The Helm chart step ([`chart_check`]) runs `charts/tern/tests/check_chart.py`: real Helm v4
//! code (the helm-sdkpy library, in a virtualenv kept in the target directory) lints,
//! packages and installs the chart into a stub API server for the default values and every
//! `charts/tern/ci/*-values.yaml`, and each rendered object is validated offline against the
//! Kubernetes schemas. It needs Python 3.12+ (found in the prerequisites step) and no build.
//!
//! Tests marked `#[ignore = "heavy: ..."]` (a GiB through the cluster, say) run after the
//! others, in a step of their own and one at a time, so they do not compete with the rest of
//! the suite for the machine's cores; `cargo test` alone skips them.
//!
//! The last steps run every cargo-fuzz target for a bounded time ([`FUZZ`]), starting from the
//! committed seeds (`fuzz/seeds/TARGET`), with new inputs kept outside the clone (in the
//! target directory).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};

use crate::cargo::{self, cargo};
use crate::prereq;

/// Fuzz targets (crate directory, target, seconds) run by every `cargo xtask test`.
const FUZZ: [(&str, &str, u32); 12] = [
    ("crates/tern-sasl/fuzz", "sasl_exchange", 10),
    ("services/tern-access/fuzz", "pop3_command", 30),
    ("services/tern-access/fuzz", "pop3_wire", 15),
    ("services/tern-access/fuzz", "imap_structure", 20),
    ("services/tern-access/fuzz", "imap_command", 20),
    ("services/tern-access/fuzz", "imap_utf7", 15),
    ("crates/tern-smtp-proto/fuzz", "smtp_command", 25),
    ("crates/tern-smtp-proto/fuzz", "smtp_reply", 15),
    ("crates/tern-smtp-proto/fuzz", "xtext", 10),
    ("services/tern-queue/fuzz", "message_id", 10),
    ("services/tern-smtp/fuzz", "smtp_data", 20),
    ("services/tern-smtp/fuzz", "auth_results", 10),
];

pub fn run(extra_test_args: &[String]) -> anyhow::Result<()> {
    let started = Instant::now();
    let total = 7 + FUZZ.len();
    println!("==> [1/{total}] prerequisites");
    prereq::ensure()?;
    prereq::ensure_cargo_component("fmt", "rustfmt")?;
    prereq::ensure_cargo_fuzz()?;
    let python = prereq::python_for_chart_check()?;
    println!("==> Python for the Helm chart check: {}", python.display());

    let mut test = cargo(["test", "--workspace", "--all-targets"]);
    test.args(extra_test_args);
    let mut steps: Vec<(String, Command)> = vec![
        (
            "formatting".into(),
            cargo(["fmt", "--all", "--", "--check"]),
        ),
        ("Helm chart".into(), chart_check(&python)),
        ("build".into(), cargo::build_workspace()),
        ("tests".into(), test),
        (
            "heavy tests, alone".into(),
            cargo([
                "test",
                "--workspace",
                "--all-targets",
                "--",
                "--ignored",
                "--test-threads=1",
            ]),
        ),
        ("doc tests".into(), cargo(["test", "--workspace", "--doc"])),
    ];
    for (dir, target, secs) in FUZZ {
        steps.push((
            format!("fuzz {target} for {secs}s"),
            fuzz(dir, target, secs)?,
        ));
    }
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

/// The Helm chart check, run by `python` (3.12+) from the workspace root. The script makes
/// its virtualenv (pinned helm-sdkpy and kubernetes-validate) on first use: about half a
/// minute, later runs take seconds.
fn chart_check(python: &Path) -> Command {
    let mut cmd = Command::new(python);
    cmd.arg("charts/tern/tests/check_chart.py")
        .arg("--venv")
        .arg(cargo::target_dir().join("chart-venv"))
        .current_dir(cargo::workspace_root());
    cmd
}

/// `cargo fuzz run` for `secs` seconds. libFuzzer writes new inputs to its first corpus
/// directory (kept under the target directory) and only reads the committed seeds.
fn fuzz(dir: &str, target: &str, secs: u32) -> anyhow::Result<Command> {
    let build = cargo::target_dir().join("fuzz");
    let scratch = build.join("corpus").join(target);
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    // The committed seeds (hand-written inputs); fuzz/corpus is libFuzzer's own and ignored.
    let seeds = cargo::workspace_root().join(dir).join("seeds").join(target);
    let mut cmd = cargo(["fuzz", "run", "--fuzz-dir", dir, "--target-dir"]);
    cmd.arg(&build)
        .arg(target)
        .arg(&scratch)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={secs}"))
        // cargo-fuzz needs nightly flags (-Zsanitizer); the stable toolchain allows them
        // with this switch, and no other toolchain can be fetched on these machines.
        .env("RUSTC_BOOTSTRAP", "1");
    Ok(cmd)
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

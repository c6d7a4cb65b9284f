//! Running cargo and finding what it built.
//!
//! Nested cargo commands use the same cargo binary that runs xtask (`$CARGO`) from the
//! workspace root, and inherit `CARGO_TARGET_DIR`, so `cargo xtask up` reuses whatever the
//! developer or CI already built; they do not inherit what `cargo run` set for xtask itself,
//! which made every nested build recompile part of the dependency graph
//! ([`set_by_cargo_run`]).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// The workspace root: `cargo run` exports CARGO_MANIFEST_DIR (xtask's own directory) to the
/// running program; the compile-time value is the fallback for running the binary by hand.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .filter(|d| d.join("Cargo.toml").is_file())
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or(manifest_dir)
}

/// `cargo` as a command, run from the workspace root, without the variables `cargo run`
/// set for xtask (see [`set_by_cargo_run`]).
pub fn cargo<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let bin = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(bin);
    cmd.args(args).current_dir(workspace_root());
    for (name, _) in std::env::vars_os() {
        if set_by_cargo_run(&name) {
            cmd.env_remove(&name);
        }
    }
    cmd
}

/// Whether `name` is one of the variables cargo sets for the program it runs
/// (`cargo run --package xtask` sets them for xtask): the package's manifest location and
/// metadata (`CARGO_MANIFEST_DIR`, `CARGO_MANIFEST_PATH`, `CARGO_PKG_*`) and the other
/// per-unit values. A nested cargo must not inherit them. Cargo fingerprints a build
/// script's `rerun-if-env-changed` variables with the values in its *own* environment, and
/// ring's build script declares `CARGO_MANIFEST_DIR`, `CARGO_PKG_NAME` and
/// `CARGO_PKG_VERSION_*`: seeing xtask's values where `cargo build` saw none, the nested
/// build reran ring's build script and recompiled ring and everything above it (rustls,
/// hyper-rustls, rustls-platform-verifier, kube-client, ...), and the developer's next
/// plain `cargo build` recompiled them back. User settings (`CARGO_TARGET_DIR`,
/// `CARGO_HOME`, `CARGO_BUILD_*`, `CARGO_PROFILE_*`, `CARGO_LOG`, ...) are kept.
pub fn set_by_cargo_run(name: &OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    name.starts_with("CARGO_PKG_")
        || matches!(
            name,
            "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_MANIFEST_LINKS"
                | "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_TARGET_TMPDIR"
                | "CARGO_RUSTC_CURRENT_DIR"
                | "OUT_DIR"
        )
}

/// Human form of a command line, for "==> running ..." lines.
pub fn display(cmd: &Command) -> String {
    let prog = Path::new(cmd.get_program())
        .file_name()
        .unwrap_or(cmd.get_program())
        .to_string_lossy()
        .into_owned();
    std::iter::once(prog)
        .chain(cmd.get_args().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` with inherited stdio; an error names the command and its exit status.
pub fn run(mut cmd: Command) -> anyhow::Result<()> {
    let shown = display(&cmd);
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// Cargo's target directory: what `cargo metadata` says (it knows about config files and
/// CARGO_TARGET_DIR), else CARGO_TARGET_DIR, else ./target.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = metadata_target_dir() {
        return dir;
    }
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                workspace_root().join(d)
            }
        }
        _ => workspace_root().join("target"),
    }
}

fn metadata_target_dir() -> Option<PathBuf> {
    let out = cargo([
        "metadata",
        "--format-version",
        "1",
        "--no-deps",
        "--offline",
    ])
    .stderr(std::process::Stdio::null())
    .output()
    .ok()?;
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v.get("target_directory")?.as_str().map(PathBuf::from)
}

/// Which build a task runs: the dev profile everything else uses, or the release build the
/// benchmarks' published figures come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Workspace crates -O0, dependencies optimized (`[profile.dev.package.*]`).
    Dev,
    /// `cargo build --release`: everything optimized.
    Release,
}

impl Profile {
    /// The build of this profile: [`build_workspace`] for dev; for release the workspace's
    /// binaries only (tests are never run from it), always this one command, so RocksDB's
    /// C++ is compiled once per machine for it too.
    pub fn build(self) -> Command {
        match self {
            Profile::Dev => build_workspace(),
            Profile::Release => cargo(["build", "--release", "--workspace", "--bins"]),
        }
    }

    /// Its directory under the target directory.
    fn dir(self) -> &'static str {
        match self {
            Profile::Dev => "debug",
            Profile::Release => "release",
        }
    }

    /// How it is built, in words, for benchmark reports.
    pub fn describe(self) -> &'static str {
        match self {
            Profile::Dev => {
                "Tern in the dev profile (workspace crates -O0, dependencies optimized)"
            }
            Profile::Release => "Tern in the release profile (cargo build --release)",
        }
    }
}

/// A binary of `profile`, checked to exist.
pub fn bin(target: &Path, profile: Profile, name: &str) -> anyhow::Result<PathBuf> {
    let path = target
        .join(profile.dir())
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !path.is_file() {
        bail!("{} was not built (expected at {})", name, path.display());
    }
    Ok(path)
}

/// The one build every task uses: the whole workspace with every target.
///
/// Always this exact command, never `-p PACKAGE`: cargo unifies features differently for a
/// subset of packages, and a different feature set for any of librocksdb-sys's dependencies
/// (libc, say) gives RocksDB a new hash and a 20-minute C++ rebuild. One command, one
/// feature set, one RocksDB build shared by `up`, `test` and `bench`.
pub fn build_workspace() -> Command {
    cargo(["build", "--workspace", "--all-targets"])
}

#[cfg(test)]
mod tests {
    use super::set_by_cargo_run;
    use std::ffi::OsStr;

    #[test]
    fn what_cargo_run_sets_is_cleared_and_user_settings_kept() {
        for run in [
            "CARGO_MANIFEST_DIR",
            "CARGO_MANIFEST_PATH",
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION_MAJOR",
            "CARGO_PKG_RUST_VERSION",
            "OUT_DIR",
        ] {
            assert!(set_by_cargo_run(OsStr::new(run)), "{run}");
        }
        for user in [
            "CARGO",
            "CARGO_TARGET_DIR",
            "CARGO_HOME",
            "CARGO_LOG",
            "CARGO_BUILD_JOBS",
            "CARGO_PROFILE_DEV_OPT_LEVEL",
            "RUSTFLAGS",
            "PATH",
        ] {
            assert!(!set_by_cargo_run(OsStr::new(user)), "{user}");
        }
    }
}

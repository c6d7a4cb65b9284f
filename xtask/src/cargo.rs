//! Running cargo and finding what it built.
//!
//! Nested cargo commands use the same cargo binary that runs xtask (`$CARGO`) from the
//! workspace root, and inherit `CARGO_TARGET_DIR`, so `cargo xtask up` reuses whatever the
//! developer or CI already built.

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

/// `cargo` as a command, run from the workspace root.
pub fn cargo<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let bin = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(bin);
    cmd.args(args).current_dir(workspace_root());
    cmd
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

/// A binary of the dev profile, checked to exist.
pub fn debug_bin(target: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let path = target
        .join("debug")
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

//! Making sure a fresh machine can build the workspace.
//!
//! The only system dependency is libclang: rust-rocksdb generates its bindings with bindgen at
//! build time (`bindgen-runtime` loads libclang.so). A C++ compiler is expected to be there
//! already (it is on the project's machines); protoc is not needed because tern-proto compiles
//! the .proto files with protox. Installing here, rather than documenting a manual step, keeps
//! `cargo xtask up` and CI's `.ci/run` working on a machine nobody prepared.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};

/// Installs what the build needs, or fails saying what is missing.
pub fn ensure() -> anyhow::Result<()> {
    if !cfg!(target_os = "linux") || libclang_available() {
        return Ok(());
    }
    println!("==> libclang not found (RocksDB's bindings are generated with it); installing libclang-dev with apt-get");
    install_libclang().context(
        "libclang is missing and could not be installed; install it by hand \
         (Debian/Ubuntu: `apt-get install libclang-dev`) or set LIBCLANG_PATH to the directory \
         that holds libclang.so",
    )?;
    if !libclang_available() {
        bail!("libclang-dev was installed but no libclang.so was found; set LIBCLANG_PATH to the directory that holds it");
    }
    println!("==> libclang installed");
    Ok(())
}

fn libclang_available() -> bool {
    if let Some(dir) = std::env::var_os("LIBCLANG_PATH").filter(|p| !p.is_empty()) {
        return dir_has_libclang(Path::new(&dir));
    }
    // The unversioned libclang.so in an LLVM tree comes with libclang-dev, whose dependencies
    // also bring clang's own headers (bindgen fails without them): a bare libclang1-NN
    // runtime library is not enough.
    let Ok(entries) = std::fs::read_dir("/usr/lib") else {
        return false;
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("llvm"))
        .any(|e| e.path().join("lib/libclang.so").exists())
}

fn dir_has_libclang(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| is_libclang(&e.file_name().to_string_lossy()))
    })
}

/// `libclang.so`, `libclang.so.1`, `libclang-14.so.1`, ... but not `libclang-cpp.so.14`
/// (the C++ API library, which bindgen cannot use) nor the static `libclangAST.a` family.
fn is_libclang(name: &str) -> bool {
    if name.starts_with("libclang.so") {
        return true;
    }
    name.strip_prefix("libclang-")
        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()) && rest.contains(".so"))
}

fn install_libclang() -> anyhow::Result<()> {
    apt(&["update"])?;
    // RocksDB's C++ also needs a C++ compiler, which libclang-dev does not pull in.
    let have_cxx = Command::new("c++")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let mut args = vec!["install", "-y", "--no-install-recommends", "libclang-dev"];
    if !have_cxx {
        args.push("g++");
    }
    apt(&args)
}

/// `apt-get ARGS`, through `sudo -n` (never prompting) when not root.
fn apt(args: &[&str]) -> anyhow::Result<()> {
    let mut cmd = if is_root() {
        Command::new("apt-get")
    } else {
        let mut c = Command::new("sudo");
        c.args(["-n", "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]);
        c
    };
    cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    crate::cargo::run(cmd)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Installs cargo-fuzz (pinned: its newest release may need a newer rustc than the one
/// toolchain these machines have) when `cargo fuzz` is missing.
pub fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    let ok = crate::cargo::cargo(["fuzz", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Ok(());
    }
    println!("==> installing cargo-fuzz (the fuzz step runs the parsers' fuzz targets)");
    crate::cargo::run(crate::cargo::cargo([
        "install",
        "cargo-fuzz",
        "--locked",
        "--version",
        "0.13.2",
    ]))
}

/// A Python of at least this version runs the Helm chart check: helm-sdkpy, which carries
/// Helm v4 as a library (no helm binary can be installed on the project's machines), needs it.
const CHART_PYTHON: (u32, u32) = (3, 12);

/// Finds a Python for the Helm chart check (`charts/tern/tests/check_chart.py`, which makes
/// its own virtualenv): `python3.12`, `python3.13`, `python3.14` or `python3` on PATH, else
/// the oldest suitable pyenv installation (`$PYENV_ROOT/versions/3.12.*`, ...). Each
/// candidate is run to check its version (a pyenv shim for a version that is not selected
/// fails there). Fails naming what was tried: the chart check is never skipped silently.
pub fn python_for_chart_check() -> anyhow::Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = ["python3.12", "python3.13", "python3.14", "python3"]
        .into_iter()
        .map(PathBuf::from)
        .collect();
    let pyenv_root = std::env::var_os("PYENV_ROOT")
        .filter(|r| !r.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pyenv")));
    if let Some(root) = &pyenv_root {
        let mut versions: Vec<((u32, u32, u32), PathBuf)> =
            std::fs::read_dir(root.join("versions"))
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| {
                    let v = cpython_version(&e.file_name().to_string_lossy())?;
                    (v >= (CHART_PYTHON.0, CHART_PYTHON.1, 0))
                        .then(|| (v, e.path().join("bin/python3")))
                })
                .collect();
        versions.sort();
        candidates.extend(versions.into_iter().map(|(_, path)| path));
    }
    let check = format!(
        "import sys; sys.exit(0 if sys.version_info >= ({}, {}) else 1)",
        CHART_PYTHON.0, CHART_PYTHON.1
    );
    for python in &candidates {
        let ok = Command::new(python)
            .args(["-c", &check])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(python.clone());
        }
    }
    let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    bail!(
        "the Helm chart check needs Python {}.{} or newer (helm-sdkpy carries Helm as a library \
         for it) and none was found; tried {}. Install one (e.g. `pyenv install 3.12`) or put \
         python3.12 on PATH",
        CHART_PYTHON.0,
        CHART_PYTHON.1,
        tried.join(", ")
    )
}

/// `3.12.1` -> (3, 12, 1); pyenv's other installations (`3.13-dev`, `pypy3.10-7.3.12`,
/// `miniconda3-latest`, `3.13.0t`) -> None.
fn cpython_version(name: &str) -> Option<(u32, u32, u32)> {
    let mut parts = name.split('.');
    let mut next = || parts.next()?.parse::<u32>().ok();
    let v = (next()?, next()?, next()?);
    parts.next().is_none().then_some(v)
}

/// Checks that a cargo subcommand (fmt, clippy) is installed, naming the rustup component if not.
pub fn ensure_cargo_component(subcommand: &str, component: &str) -> anyhow::Result<()> {
    let ok = crate::cargo::cargo([subcommand, "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        bail!("`cargo {subcommand}` is not available; install it with `rustup component add {component}`");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{cpython_version, is_libclang};

    #[test]
    fn pyenv_version_names() {
        assert_eq!(cpython_version("3.12.1"), Some((3, 12, 1)));
        assert_eq!(cpython_version("3.13.0"), Some((3, 13, 0)));
        for other in [
            "3.13-dev",
            "3.13.0t",
            "pypy3.10-7.3.12",
            "miniconda3-latest",
            "3.12",
            "system",
        ] {
            assert_eq!(cpython_version(other), None, "{other}");
        }
    }

    #[test]
    fn libclang_names() {
        for yes in [
            "libclang.so",
            "libclang.so.1",
            "libclang-14.so",
            "libclang-14.so.1",
            "libclang-14.0.6.so",
        ] {
            assert!(is_libclang(yes), "{yes}");
        }
        for no in [
            "libclang-cpp.so.14",
            "libclangAST.a",
            "libclang.a",
            "libclang-14.a",
        ] {
            assert!(!is_libclang(no), "{no}");
        }
    }
}

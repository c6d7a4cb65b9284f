//! Making sure a fresh machine can build the workspace.
//!
//! The only system dependency is libclang: rust-rocksdb generates its bindings with bindgen at
//! build time (`bindgen-runtime` loads libclang.so). A C++ compiler is expected to be there
//! already (it is on the project's machines); protoc is not needed because tern-proto compiles
//! the .proto files with protox. Installing here, rather than documenting a manual step, keeps
//! `cargo xtask up` and CI's `.ci/run` working on a machine nobody prepared.

use std::path::Path;
use std::process::Command;

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
    use super::is_libclang;

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

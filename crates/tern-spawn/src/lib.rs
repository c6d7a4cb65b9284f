//! Starting a Tern service binary as a child process and learning the addresses it bound.
//!
//! Every Tern service takes `--metrics-listen` and `--addr-file`: given port 0 it binds what
//! the OS assigns and then writes `name=HOST:PORT` lines (`grpc`, `metrics`, `mx`, `imap`, ...)
//! to the addr file. Two callers start services that way: `cargo xtask up` (synchronous, one
//! process group per node, output to a log it appends to) and the test kit (async, inside a
//! tokio runtime). This crate is the part they share, the command line and one non-blocking
//! step of "has it started yet", so each caller keeps its own way of waiting between steps
//! (`std::thread::sleep` in xtask, `tokio::time::sleep` in tests, which must not block a
//! runtime worker).
//!
//! Why a crate of its own and not a module of `tern-testkit`: xtask is compiled first on a
//! fresh machine with `cargo run --package xtask` and keeps its dependencies light (anyhow,
//! clap, serde_json, libc); depending on the test kit would drag tokio, tonic and the
//! generated protocol code into that first compile, and with a feature set different from
//! the workspace build's, compiled a second time. This crate depends on nothing.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

/// How often a caller should look at the addr file while a service starts.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// How long a service may take to bind its listeners and write its addr file.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// `name -> HOST:PORT` from an addr file.
pub type Addrs = BTreeMap<String, String>;

/// `bin ARGS --metrics-listen 127.0.0.1:0 --addr-file ADDR_FILE`, after removing a stale
/// addr file (one left by an earlier run would report the old, OS-assigned ports). The
/// caller adds stdio, environment and process-group settings and spawns it.
pub fn service_command(bin: &Path, args: &[String], addr_file: &Path) -> std::io::Result<Command> {
    match std::fs::remove_file(addr_file) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .arg("--metrics-listen")
        .arg("127.0.0.1:0")
        .arg("--addr-file")
        .arg(addr_file);
    Ok(cmd)
}

/// The addresses in `addr_file`, or `None` while the service has not written it.
pub fn read_addrs(addr_file: &Path) -> Option<Addrs> {
    let text = std::fs::read_to_string(addr_file).ok()?;
    Some(parse_addrs(&text))
}

/// `name=HOST:PORT` lines; blank values and lines without `=` are skipped.
pub fn parse_addrs(text: &str) -> Addrs {
    text.lines()
        .filter_map(|line| {
            let (k, v) = line.trim().split_once('=')?;
            let (k, v) = (k.trim(), v.trim());
            (!k.is_empty() && !v.is_empty()).then(|| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// The port of `HOST:PORT`.
pub fn port_of(addr: &str) -> Option<u16> {
    addr.rsplit(':').next()?.parse().ok()
}

/// Where a starting service stands.
#[derive(Debug)]
pub enum Startup {
    /// No addr file yet, and the process is alive.
    Starting,
    /// The addr file is there: the listeners are bound.
    Ready(Addrs),
    /// The process exited before writing its addr file.
    Exited(ExitStatus),
}

/// One look at a starting service: its addr file first (a service that wrote it and then
/// exited is reported by whoever watches it next), then whether it died.
pub fn poll_startup(child: &mut Child, addr_file: &Path) -> std::io::Result<Startup> {
    if let Some(addrs) = read_addrs(addr_file) {
        return Ok(Startup::Ready(addrs));
    }
    Ok(match child.try_wait()? {
        Some(status) => Startup::Exited(status),
        None => Startup::Starting,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addr_lines() {
        let a = parse_addrs("grpc=127.0.0.1:7101\nmetrics= 127.0.0.1:40001 \nbad\nempty=\n");
        assert_eq!(a.len(), 2);
        assert_eq!(a["grpc"], "127.0.0.1:7101");
        assert_eq!(a["metrics"], "127.0.0.1:40001");
        assert_eq!(port_of(&a["metrics"]), Some(40001));
        assert_eq!(port_of("nonsense"), None);
    }

    #[test]
    fn a_process_that_dies_before_its_addr_file_is_reported() -> std::io::Result<()> {
        let dir = std::env::temp_dir().join(format!("tern-spawn-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let addr_file = dir.join("addr");
        std::fs::write(&addr_file, "grpc=stale:1\n")?;
        // `false` ignores its arguments and exits 1: the stale file must be gone first.
        let mut cmd = service_command(Path::new("false"), &[], &addr_file)?;
        assert!(!addr_file.exists());
        let mut child = cmd.spawn()?;
        let status = child.wait()?;
        assert!(matches!(
            poll_startup(&mut child, &addr_file)?,
            Startup::Exited(s) if s == status
        ));
        std::fs::write(&addr_file, "grpc=127.0.0.1:9\n")?;
        assert!(matches!(
            poll_startup(&mut child, &addr_file)?,
            Startup::Ready(a) if a["grpc"] == "127.0.0.1:9"
        ));
        std::fs::remove_dir_all(&dir)
    }
}

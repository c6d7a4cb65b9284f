//! The processes of `cargo xtask up` (store nodes, the access node): start, watch, stop.
//!
//! Each node runs in its own process group so the terminal's Ctrl-C reaches only xtask, which
//! then stops the nodes in order (SIGTERM, grace period, SIGKILL) instead of racing them. On
//! Linux each node also gets SIGTERM if xtask itself dies (PR_SET_PDEATHSIG), so a killed
//! xtask leaves no orphans holding the ports. Output goes to DIR/<service>/log, keeping the
//! terminal for xtask's own messages.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::signals;

/// First dev gRPC port is BASE_PORT + 1 (ARCHITECTURE.md: store nodes on 7101..).
pub const BASE_PORT: u16 = 7100;

/// One service process.
pub struct Node {
    /// Raft id of a store node; 0 for the other services.
    pub id: u16,
    /// How messages name it: "tern-store node 2", "tern-access".
    pub name: String,
    pub dir: PathBuf,
    pub log: PathBuf,
    /// gRPC HOST:PORT; replaced by what the node reports in its addr file.
    pub grpc: String,
    /// Metrics HOST:PORT from the addr file, once written.
    pub metrics: Option<String>,
    child: Option<Child>,
}

/// A node still running when its handle goes away (a panic, an early return the code did not
/// plan for) is killed and reaped, so `xtask up` never leaves store processes behind.
impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Node {
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.grpc)
    }

    fn addr_file(&self) -> PathBuf {
        self.dir.join("addr")
    }

    /// Picks up the addresses the node wrote after binding (`grpc=` and `metrics=` lines).
    pub fn read_addr_file(&mut self) {
        let Some(mut addrs) = tern_spawn::read_addrs(&self.addr_file()) else {
            return;
        };
        if let Some(grpc) = addrs.remove("grpc") {
            self.grpc = grpc;
        }
        if let Some(metrics) = addrs.remove("metrics") {
            self.metrics = Some(metrics);
        }
    }
}

/// `1=127.0.0.1:7101,2=127.0.0.1:7102,...` for `nodes` nodes.
pub fn initial_members(nodes: u16) -> String {
    (1..=nodes)
        .map(|i| format!("{i}=127.0.0.1:{}", BASE_PORT + i))
        .collect::<Vec<_>>()
        .join(",")
}

/// Fails early, with a useful message, when a dev port is taken (typically by another
/// `cargo xtask up`), instead of letting the nodes die one by one.
pub fn check_ports_free(nodes: u16, others: &[u16]) -> anyhow::Result<()> {
    for port in (1..=nodes)
        .map(|i| BASE_PORT + i)
        .chain(others.iter().copied())
    {
        if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            bail!(
                "127.0.0.1:{port} is not free ({e}); is another `cargo xtask up` or Tern service running?"
            );
        }
    }
    Ok(())
}

/// Starts store node `id` of `nodes` with its data under `data_dir/store-ID`, plus `extra`
/// arguments (the cluster certificate flags).
pub fn spawn(
    store_bin: &Path,
    id: u16,
    nodes: u16,
    data_dir: &Path,
    extra: &[String],
) -> anyhow::Result<Node> {
    let dir = data_dir.join(format!("store-{id}"));
    let listen = format!("127.0.0.1:{}", BASE_PORT + id);
    let mut args = vec![
        "--id".to_string(),
        id.to_string(),
        "--listen".into(),
        listen.clone(),
        "--data-dir".into(),
        dir.display().to_string(),
        "--initial-members".into(),
        initial_members(nodes),
        // A development cluster is always this version: local users get a message in the
        // write that accepts it.
        "--deliver-on-accept".into(),
        "true".into(),
    ];
    args.extend_from_slice(extra);
    let mut node = spawn_service(store_bin, &format!("tern-store node {id}"), &dir, &args)?;
    node.id = id;
    node.grpc = listen;
    Ok(node)
}

/// Starts a service binary with `args` plus `--metrics-listen 127.0.0.1:0 --addr-file
/// DIR/addr` (the command line the test kit uses too, from `tern-spawn`), logging to
/// DIR/log.
pub fn spawn_service(bin: &Path, name: &str, dir: &Path, args: &[String]) -> anyhow::Result<Node> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let addr = dir.join("addr");
    // Removes a stale addr file from the last run, which would report old (random)
    // metrics ports.
    let mut cmd = tern_spawn::service_command(bin, args, &addr)
        .with_context(|| format!("removing {}", addr.display()))?;
    let log = dir.join("log");
    let mut out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .with_context(|| format!("opening {}", log.display()))?;
    writeln!(
        out,
        "---- started by cargo xtask up (pid {}) ----",
        std::process::id()
    )?;
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0);
    stop_with_parent(&mut cmd);
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {} for {name}", bin.display()))?;
    Ok(Node {
        id: 0,
        name: name.to_string(),
        dir: dir.to_path_buf(),
        log,
        grpc: String::new(),
        metrics: None,
        child: Some(child),
    })
}

/// Linux: the node gets SIGTERM when xtask dies, however it dies.
#[cfg(target_os = "linux")]
fn stop_with_parent(cmd: &mut Command) {
    // SAFETY: the closure runs between fork and exec and only calls prctl, which is
    // async-signal-safe; it allocates nothing and takes no locks.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn stop_with_parent(_cmd: &mut Command) {}

/// Reaps processes that exited since the last call and returns (name, status) for each.
pub fn reap(nodes: &mut [Node]) -> Vec<(String, ExitStatus)> {
    let mut exited = Vec::new();
    for n in nodes.iter_mut() {
        if let Some(child) = n.child.as_mut() {
            match child.try_wait() {
                Ok(Some(status)) => {
                    exited.push((n.name.clone(), status));
                    n.child = None;
                }
                Ok(None) => {}
                Err(e) => {
                    eprintln!("xtask: cannot query {}: {e}", n.name);
                }
            }
        }
    }
    exited
}

/// "status 1" or "signal 9 (SIGKILL)".
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("status {c}"),
        (None, Some(s)) => format!("signal {s} ({})", signals::name(s)),
        _ => status.to_string(),
    }
}

/// SIGTERM to every running node, up to `grace` for them to exit, then SIGKILL.
pub fn stop_all(nodes: &mut [Node], grace: Duration) {
    let running = nodes.iter().filter(|n| n.is_running()).count();
    if running == 0 {
        return;
    }
    println!(
        "stopping {} process{} (SIGTERM, up to {}s)...",
        running,
        if running == 1 { "" } else { "es" },
        grace.as_secs()
    );
    let first_interrupts = signals::interrupts();
    for n in nodes.iter_mut() {
        if let Some(child) = n.child.as_ref() {
            if let Err(e) = signals::terminate(child.id()) {
                eprintln!("xtask: cannot signal {}: {e}", n.name);
            }
        }
    }
    let deadline = Instant::now() + grace;
    loop {
        for (name, status) in reap(nodes) {
            println!("{name} stopped ({})", describe(status));
        }
        if !nodes.iter().any(Node::is_running) {
            return;
        }
        // A second Ctrl-C means "now".
        if Instant::now() >= deadline || signals::interrupts() > first_interrupts {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for n in nodes.iter_mut() {
        if let Some(mut child) = n.child.take() {
            println!("{} did not stop in time; sending SIGKILL", n.name);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members() {
        assert_eq!(initial_members(1), "1=127.0.0.1:7101");
        assert_eq!(
            initial_members(3),
            "1=127.0.0.1:7101,2=127.0.0.1:7102,3=127.0.0.1:7103"
        );
    }
}

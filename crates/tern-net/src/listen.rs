//! Binding a service's optional listeners and publishing where they ended up.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::drain::Drain;

/// The tasks a running node started (its listeners, health and metrics), all aborted when the
/// node stops: accepting ends at once, and sessions in progress end with the process.
#[derive(Debug, Default)]
pub struct Tasks(Vec<JoinHandle<()>>);

impl Tasks {
    /// Spawns `task` on the runtime and keeps its handle.
    pub fn spawn<F>(&mut self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.0.push(tokio::spawn(task));
    }

    /// Aborts every task.
    pub fn abort_all(self) {
        for t in self.0 {
            t.abort();
        }
    }
}

/// What a node that serves sessions keeps in order to stop: the tasks it started and the
/// [`Drain`] its sessions watch. The two ways to stop are the same for every such service.
#[derive(Debug)]
pub struct Serving {
    /// The node's listeners, health and metrics.
    pub tasks: Tasks,
    drain: Drain,
    drain_time: Duration,
}

impl Serving {
    /// No tasks yet; `drain` is the one the node's sessions watch, `drain_time` how long a
    /// clean stop waits for them.
    pub fn new(drain: Drain, drain_time: Duration) -> Self {
        Self {
            tasks: Tasks::default(),
            drain,
            drain_time,
        }
    }

    /// Stops accepting; sessions in progress end with the process.
    pub fn stop(self) {
        self.tasks.abort_all();
    }

    /// The clean stop (SIGTERM): stops accepting, tells the sessions to finish (each
    /// protocol decides how, at its next command) and waits up to the drain time for them.
    /// Returns the sessions still open then.
    pub async fn shutdown(self) -> usize {
        self.tasks.abort_all();
        self.drain.drain(self.drain_time).await
    }
}

impl Extend<JoinHandle<()>> for Tasks {
    fn extend<I: IntoIterator<Item = JoinHandle<()>>>(&mut self, handles: I) {
        self.0.extend(handles);
    }
}

/// Binds `addr`, or nothing when it is empty (the listener is switched off). `what` names the
/// listener in the error.
pub async fn bind_optional(addr: &str, what: &str) -> anyhow::Result<Option<TcpListener>> {
    if addr.is_empty() {
        return Ok(None);
    }
    TcpListener::bind(addr)
        .await
        .map(Some)
        .with_context(|| format!("binding the {what} listener to {addr}"))
}

/// Refuses `listen` (the setting `what`) unless it is a loopback address: plain-text login
/// (`loopback_plaintext_auth`) is for development listeners only. An empty `listen` is a
/// listener switched off, and passes.
pub fn require_loopback(what: &str, listen: &str) -> anyhow::Result<()> {
    if listen.is_empty() {
        return Ok(());
    }
    let addr: SocketAddr = listen
        .parse()
        .with_context(|| format!("{what} {listen:?}"))?;
    if !addr.ip().is_loopback() {
        anyhow::bail!(
            "loopback_plaintext_auth is for development listeners on a loopback address, \
             not {addr}"
        );
    }
    Ok(())
}

/// The next connection of `listener`, with Nagle's algorithm off (replies are small and must
/// go out at once). A failed accept (out of descriptors and the like) is logged and retried
/// after 100 ms instead of spinning or ending the listener.
pub async fn accept_retrying(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                let _ = tcp.set_nodelay(true);
                return (tcp, peer);
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Writes `name=address` lines for the listeners that are on, replacing the file atomically
/// (write, then rename), so a test or `cargo xtask up` waiting for it never reads half of it.
pub fn write_addr_file(path: &Path, entries: &[(&str, Option<SocketAddr>)]) -> anyhow::Result<()> {
    let text: String = entries
        .iter()
        .filter_map(|(name, addr)| addr.map(|a| format!("{name}={a}\n")))
        .collect();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn off_listeners_are_skipped_and_the_file_lists_the_rest() {
        assert!(bind_optional("", "test").await.unwrap().is_none());
        let l = bind_optional("127.0.0.1:0", "test").await.unwrap().unwrap();
        let a = l.local_addr().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("addr");
        write_addr_file(&path, &[("one", Some(a)), ("two", None)]).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("one={a}\n")
        );
        assert!(bind_optional("256.0.0.1:1", "bad").await.is_err());
    }
}

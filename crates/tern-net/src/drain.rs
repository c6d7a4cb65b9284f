//! Stopping a listener without cutting work in progress: on SIGTERM a node stops accepting,
//! tells each session that it is draining (SMTP answers its next command with 421, IMAP
//! sends `* BYE`, POP3 closes after the command in progress), and waits, up to a configured
//! drain time, until every session has ended. A Kubernetes scale-down or rolling update then
//! never cuts a message in the middle of DATA: the pod's terminationGracePeriodSeconds
//! follows the drain time.
//!
//! Two values shared through `watch` channels: the "draining" flag, which sessions await
//! next to their reads (the future is cancel-safe), and the number of open sessions, which
//! the stopping node awaits.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// The draining state of one node, cloned into every session.
#[derive(Debug, Clone)]
pub struct Drain(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    draining: watch::Sender<bool>,
    open: watch::Sender<usize>,
}

impl Default for Drain {
    fn default() -> Self {
        Self(Arc::new(Inner {
            draining: watch::Sender::new(false),
            open: watch::Sender::new(0),
        }))
    }
}

/// Held by a session while it runs; counts it as open.
#[derive(Debug)]
pub struct SessionGuard(Drain);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0 .0.open.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Drain {
    /// Counts a new session as open until the guard is dropped.
    pub fn session(&self) -> SessionGuard {
        self.0.open.send_modify(|n| *n += 1);
        SessionGuard(self.clone())
    }

    /// Sessions open now.
    pub fn open(&self) -> usize {
        *self.0.open.borrow()
    }

    /// Whether the node is shutting down.
    pub fn is_draining(&self) -> bool {
        *self.0.draining.borrow()
    }

    /// Resolves once the node is shutting down (at once if it already is). Cancel-safe: a
    /// session selects on it next to its read.
    pub async fn draining(&self) {
        let mut rx = self.0.draining.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|d| *d).await;
    }

    /// Starts draining and waits up to `limit` for every session to end. Returns the
    /// number still open when it gave up (0 when all ended in time).
    pub async fn drain(&self, limit: Duration) -> usize {
        self.0.draining.send_replace(true);
        let mut rx = self.0.open.subscribe();
        let ended = tokio::time::timeout(limit, rx.wait_for(|n| *n == 0)).await;
        match ended {
            Ok(_) => 0,
            Err(_) => self.open(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_waits_for_open_sessions_and_wakes_them() {
        let drain = Drain::default();
        let guard = drain.session();
        let session = {
            let drain = drain.clone();
            tokio::spawn(async move {
                drain.draining().await;
                // The session finishes its work after being told, then ends.
                tokio::time::sleep(Duration::from_millis(50)).await;
                drop(guard);
            })
        };
        assert_eq!(drain.open(), 1);
        assert!(!drain.is_draining());
        assert_eq!(drain.drain(Duration::from_secs(10)).await, 0);
        assert!(drain.is_draining());
        assert_eq!(drain.open(), 0);
        session.await.expect("session task");
    }

    #[tokio::test]
    async fn drain_gives_up_after_its_limit() {
        let drain = Drain::default();
        let _stuck = drain.session();
        assert_eq!(drain.drain(Duration::from_millis(50)).await, 1);
        // Sessions that start late see the flag at once.
        tokio::time::timeout(Duration::from_secs(1), drain.draining())
            .await
            .expect("already draining");
    }
}

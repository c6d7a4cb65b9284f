//! Outbound SMTP connections kept open for reuse, with a bound on concurrent connections
//! per destination address: many messages to one host share a few connections instead of
//! opening one each (and a destination is never flooded).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::smtp::client::{ClientConfig, ClientError, Connection};

/// Idle connections and per-destination limits.
pub struct Pool {
    idle: Mutex<HashMap<Key, Vec<(Connection, Instant)>>>,
    limits: Mutex<HashMap<SocketAddr, Arc<Semaphore>>>,
    max_per_destination: usize,
    idle_for: Duration,
    /// Connections opened so far (for metrics and tests).
    opened: std::sync::atomic::AtomicU64,
}

/// Connections are shared only between deliveries with the same TLS requirement.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    addr: SocketAddr,
    /// The name the certificate was checked against (and EHLO/SNI were for).
    server_name: String,
    tls_required: bool,
}

/// A connection checked out of the pool, holding one of its destination's slots.
pub struct Pooled {
    /// The connection.
    pub conn: Connection,
    /// Whether it came from the idle list (a failure then may just be a stale connection).
    pub reused: bool,
    key: Key,
    _permit: OwnedSemaphorePermit,
}

impl Pool {
    /// A pool allowing `max_per_destination` connections to one address, keeping idle ones
    /// for `idle_for`.
    pub fn new(max_per_destination: usize, idle_for: Duration) -> Self {
        Self {
            idle: Mutex::default(),
            limits: Mutex::default(),
            max_per_destination,
            idle_for,
            opened: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Connections opened since start.
    pub fn opened(&self) -> u64 {
        self.opened.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn limit(&self, addr: SocketAddr) -> Arc<Semaphore> {
        self.limits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(addr)
            .or_insert_with(|| Arc::new(Semaphore::new(self.max_per_destination)))
            .clone()
    }

    /// An idle connection to `addr` if one is fresh, else a new one (waiting for a slot when
    /// the destination is at its limit).
    pub async fn get(
        &self,
        addr: SocketAddr,
        server_name: &str,
        config: &ClientConfig,
        tls_required: bool,
    ) -> Result<Pooled, ClientError> {
        let key = Key {
            addr,
            server_name: server_name.to_ascii_lowercase(),
            tls_required,
        };
        let permit = self
            .limit(addr)
            .acquire_owned()
            .await
            .map_err(|_| ClientError::Protocol("connection pool closed".into()))?;
        // An idle connection the peer closed meanwhile fails its NOOP and is dropped.
        while let Some(mut conn) = self.take_idle(&key) {
            if conn.noop().await.is_ok() && conn.is_reusable() {
                return Ok(Pooled {
                    conn,
                    reused: true,
                    key,
                    _permit: permit,
                });
            }
        }
        let conn = Connection::connect(addr, server_name, config).await?;
        self.opened
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Pooled {
            conn,
            reused: false,
            key,
            _permit: permit,
        })
    }

    fn take_idle(&self, key: &Key) -> Option<Connection> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(key)?;
        while let Some((conn, since)) = list.pop() {
            if since.elapsed() < self.idle_for {
                return Some(conn);
            }
            tokio::spawn(conn.quit());
        }
        None
    }

    /// Gives a connection that finished a transaction cleanly back for reuse.
    pub fn put(&self, pooled: Pooled) {
        let Pooled { conn, key, .. } = pooled;
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_default()
            .push((conn, Instant::now()));
    }

    /// Closes idle connections older than the idle time (called periodically).
    pub fn reap(&self) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        for list in idle.values_mut() {
            let (keep, expired): (Vec<_>, Vec<_>) = std::mem::take(list)
                .into_iter()
                .partition(|(_, since)| since.elapsed() < self.idle_for);
            *list = keep;
            for (conn, _) in expired {
                tokio::spawn(conn.quit());
            }
        }
        idle.retain(|_, l| !l.is_empty());
    }
}

//! Bounds on concurrent connections, in total and per client address, so one client (or a
//! flood) cannot take every session slot or file descriptor.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Counts open connections; [`ConnectionLimiter::try_acquire`] hands out a guard that frees
/// its slot when dropped.
#[derive(Clone)]
pub struct ConnectionLimiter {
    inner: Arc<Mutex<Counts>>,
    max_total: usize,
    max_per_ip: usize,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The listener is full.
    #[error("too many connections")]
    Total,
    /// This client address has too many connections open.
    #[error("too many connections from your address")]
    PerIp,
}

/// One connection's slot.
pub struct Slot {
    limiter: ConnectionLimiter,
    ip: IpAddr,
}

impl ConnectionLimiter {
    /// A limiter allowing `max_total` connections, at most `max_per_ip` from one address.
    pub fn new(max_total: usize, max_per_ip: usize) -> Self {
        Self {
            inner: Arc::default(),
            max_total,
            max_per_ip,
        }
    }

    /// Takes a slot for a connection from `ip`, or says why not.
    pub fn try_acquire(&self, ip: IpAddr) -> Result<Slot, Refused> {
        let mut c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if c.total >= self.max_total {
            return Err(Refused::Total);
        }
        let n = c.per_ip.entry(ip).or_default();
        if *n >= self.max_per_ip {
            return Err(Refused::PerIp);
        }
        *n += 1;
        c.total += 1;
        Ok(Slot {
            limiter: self.clone(),
            ip,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).total
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.limiter.inner.lock().unwrap_or_else(|p| p.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_and_total_bounds_and_release() {
        let l = ConnectionLimiter::new(3, 2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let s1 = l.try_acquire(a).unwrap();
        let _s2 = l.try_acquire(a).unwrap();
        assert_eq!(l.try_acquire(a).err(), Some(Refused::PerIp));
        let _s3 = l.try_acquire(b).unwrap();
        assert_eq!(l.try_acquire(b).err(), Some(Refused::Total));
        drop(s1);
        assert_eq!(l.open(), 2);
        assert!(l.try_acquire(a).is_ok());
    }
}

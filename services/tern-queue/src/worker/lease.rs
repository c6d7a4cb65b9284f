//! What an attempt knows of its lease on a queue entry, so that it never starts sending a
//! message's final dot when another worker may already have the entry.
//!
//! The store grants a lease for `lease_secs` from when it applies the Lease or Renew. The
//! attempt renews it every third of that; a renewal sent at `t` that succeeds makes the lease
//! good until at least `t + lease` (the store applied it after `t`). When renewals fail (the
//! store is unreachable), the lease is treated as gone a margin (a third of the lease)
//! before it could lapse, and when the store answers that the lease is no longer ours it is
//! gone at once. An attempt checks [`Lease::held`] before remote delivery and right before
//! the final dot of DATA: an attempt abandoned there has sent nothing a server could accept.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One attempt's view of its lease.
#[derive(Debug)]
pub struct Lease {
    lost: AtomicBool,
    good_until: Mutex<Instant>,
    margin: Duration,
}

impl Lease {
    /// A lease of length `lease` asked for at `asked` (the store granted it later, so the
    /// lease lasts at least until `asked + lease`).
    pub fn granted_at(asked: Instant, lease: Duration) -> Self {
        Self {
            lost: AtomicBool::new(false),
            good_until: Mutex::new(asked + lease),
            margin: lease / 3,
        }
    }

    /// A renewal sent at `sent` succeeded.
    pub fn renewed(&self, sent: Instant, lease: Duration) {
        let mut until = self.good_until.lock().unwrap_or_else(|p| p.into_inner());
        *until = (*until).max(sent + lease);
    }

    /// The store said the lease is no longer ours.
    pub fn lose(&self) {
        self.lost.store(true, Ordering::SeqCst);
    }

    /// Whether the attempt may still send: the lease was not lost and is good for at least
    /// the margin longer.
    pub fn held(&self) -> bool {
        self.held_at(Instant::now())
    }

    fn held_at(&self, now: Instant) -> bool {
        let until = *self.good_until.lock().unwrap_or_else(|p| p.into_inner());
        !self.lost.load(Ordering::SeqCst) && now + self.margin < until
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_given_up_a_margin_before_it_could_lapse() {
        let t0 = Instant::now();
        let lease = Lease::granted_at(t0, Duration::from_secs(30));
        assert!(lease.held_at(t0));
        assert!(lease.held_at(t0 + Duration::from_secs(19)));
        // 30 s lease, 10 s margin: not past 20 s without a renewal.
        assert!(!lease.held_at(t0 + Duration::from_secs(20)));
        lease.renewed(t0 + Duration::from_secs(15), Duration::from_secs(30));
        assert!(lease.held_at(t0 + Duration::from_secs(34)));
        assert!(!lease.held_at(t0 + Duration::from_secs(35)));
        // An older renewal's answer arriving late does not shorten it.
        lease.renewed(t0, Duration::from_secs(30));
        assert!(lease.held_at(t0 + Duration::from_secs(34)));
        lease.lose();
        assert!(!lease.held_at(t0));
    }
}

//! Successful password checks remembered for a while, like Dovecot's `auth_cache`: a
//! client that logs in again (IMAP clients open several connections, POP3 clients poll)
//! costs no argon2id run.
//!
//! What is kept is never the password: for each address, a SHA-256 digest of a random key
//! of this process, the address, the argon2id hash the password was checked against, and
//! the password. A hit needs the same password *and* the same stored hash, and the stored
//! hash is read (linearizably) on every check, so a password change applied on this node
//! (a new hash with a new salt) or a removed user misses at once, with no invalidation to
//! get wrong. Failed checks are not kept (a wrong password always costs argon2, as it must
//! for the throttling of guesses to mean anything). The key dies with the process, so the
//! digests are worthless outside it. Entries live `ttl` at most and there are at most
//! `capacity`; a full cache drops its expired entries, and when that frees less than a
//! tenth of it, it is emptied and starts again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::RngCore;
use sha2::{Digest, Sha256};

/// The cache of one store node.
pub struct CredentialCache {
    key: [u8; 32],
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<String, ([u8; 32], Instant)>>,
}

impl CredentialCache {
    /// A cache keeping `capacity` checks for `ttl` each (either 0: nothing is kept).
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        Self {
            key,
            ttl,
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, ([u8; 32], Instant)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The keyed digest of one check; every field is length-prefixed, so no two different
    /// checks share an input.
    fn digest(&self, address: &str, stored_hash: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.key);
        for field in [address, stored_hash, password] {
            h.update((field.len() as u64).to_be_bytes());
            h.update(field.as_bytes());
        }
        h.finalize().into()
    }

    /// Whether `password` was found right for `address`, against `stored_hash`, within the
    /// last `ttl`.
    pub fn hit(&self, address: &str, stored_hash: &str, password: &str, now: Instant) -> bool {
        if self.capacity == 0 {
            return false;
        }
        let wanted = self.digest(address, stored_hash, password);
        match self.entries().get(address) {
            Some((kept, at)) => {
                now.saturating_duration_since(*at) < self.ttl && constant_time_eq(kept, &wanted)
            }
            None => false,
        }
    }

    /// Remembers that `password` is right for `address` against `stored_hash`.
    pub fn remember(&self, address: &str, stored_hash: &str, password: &str, now: Instant) {
        if self.capacity == 0 || self.ttl.is_zero() {
            return;
        }
        let digest = self.digest(address, stored_hash, password);
        let mut entries = self.entries();
        if entries.len() >= self.capacity && !entries.contains_key(address) {
            // Expired entries go first; a cache that this frees by less than a tenth starts
            // again, so a full cache of live entries is not scanned at every login.
            let ttl = self.ttl;
            entries.retain(|_, (_, at)| now.saturating_duration_since(*at) < ttl);
            if entries.len() + self.capacity / 10 >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(address.to_string(), (digest, now));
    }
}

/// Equality that takes as long whichever byte differs.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA";

    #[test]
    fn a_remembered_check_hits_with_the_same_password_and_hash_only() {
        let c = CredentialCache::new(10, Duration::from_secs(60));
        let now = Instant::now();
        assert!(!c.hit("a@x.test", HASH, "pw", now), "nothing kept yet");
        c.remember("a@x.test", HASH, "pw", now);
        assert!(c.hit("a@x.test", HASH, "pw", now));
        assert!(!c.hit("a@x.test", HASH, "pw2", now), "another password");
        assert!(
            !c.hit("a@x.test", "$argon2id$new", "pw", now),
            "the password changed"
        );
        assert!(!c.hit("b@x.test", HASH, "pw", now), "another user");
    }

    #[test]
    fn entries_expire_and_the_cache_stays_bounded() {
        let c = CredentialCache::new(2, Duration::from_secs(60));
        let now = Instant::now();
        c.remember("a@x.test", HASH, "pw", now);
        assert!(!c.hit("a@x.test", HASH, "pw", now + Duration::from_secs(61)));
        c.remember("b@x.test", HASH, "pw", now);
        c.remember("c@x.test", HASH, "pw", now);
        assert_eq!(c.entries().len(), 1, "full: emptied, then the new one");
        assert!(c.hit("c@x.test", HASH, "pw", now));
    }

    #[test]
    fn a_full_cache_drops_expired_entries_before_live_ones() {
        let c = CredentialCache::new(2, Duration::from_secs(60));
        let start = Instant::now();
        c.remember("old@x.test", HASH, "pw", start);
        let later = start + Duration::from_secs(50);
        c.remember("live@x.test", HASH, "pw", later);
        let now = start + Duration::from_secs(70);
        c.remember("new@x.test", HASH, "pw", now);
        assert_eq!(c.entries().len(), 2, "the expired one made room");
        assert!(c.hit("live@x.test", HASH, "pw", now), "the live one stayed");
        assert!(c.hit("new@x.test", HASH, "pw", now));
    }

    #[test]
    fn a_cache_of_nothing_keeps_nothing_and_fields_cannot_run_together() {
        let off = CredentialCache::new(0, Duration::from_secs(60));
        off.remember("a@x.test", HASH, "pw", Instant::now());
        assert!(!off.hit("a@x.test", HASH, "pw", Instant::now()));
        let c = CredentialCache::new(10, Duration::from_secs(60));
        assert_ne!(c.digest("ab", "c", "d"), c.digest("a", "bc", "d"));
        let other = CredentialCache::new(10, Duration::from_secs(60));
        assert_ne!(
            c.digest("a", "b", "c"),
            other.digest("a", "b", "c"),
            "keyed"
        );
    }
}

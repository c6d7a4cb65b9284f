//! Failed-login throttling by account and by client network (pure; the caller passes time).
//!
//! An attacker guessing passwords rotates source addresses; counting failures per exact
//! address stops little. Failures are counted per client network (the /24 of an IPv4
//! address, the /64 of an IPv6 one, the unit a provider hands out), across all accounts, and
//! per account *from* a client network, each in a leaky bucket: `limit` failures fill it,
//! and it drains at `limit` per `window`. While either bucket of a request is full, the
//! password is not checked at all (no argon2 work); the caller answers "try again later".
//!
//! The account count is kept per network on purpose: an account-wide count would let anyone
//! lock any user out with ten wrong passwords a minute, from anywhere. This way the owner,
//! on a network that has not been failing, still gets in during a flood; a distributed
//! guesser gets at most `limit` tries per account per network per window, and every try it
//! gets costs it a slot in the bounded argon2 pool ([`crate::password`]). A success does not
//! empty the buckets: otherwise one known password would launder an attacker's failures
//! against others from that network.
//!
//! The counts live in each store node's memory (a node throttles the checks it runs), in
//! maps of bounded size: when a map is full, drained buckets are dropped first, then the
//! whole map (the argon2 pool still bounds the cost of what gets through).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Most keys tracked in each map.
const MAX_KEYS: usize = 65_536;
/// Longest account name kept as a key (an address is at most 254 octets; a longer name is
/// not an account, and must not make each key cost what a client chose to send).
const MAX_ACCOUNT_KEY: usize = 256;

/// Limits for one kind of key.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    /// Failures that fill the bucket.
    pub failures: u32,
    /// Time in which a full bucket drains.
    pub window: Duration,
}

/// The network a client address belongs to, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Network {
    /// The first three octets of an IPv4 address.
    V4([u8; 3]),
    /// The first eight octets of an IPv6 address.
    V6([u8; 8]),
}

impl Network {
    /// The /24 or /64 of `ip` (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                Network::V4([o[0], o[1], o[2]])
            }
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Network::of(IpAddr::V4(v4)),
                None => {
                    let o = v6.octets();
                    let mut net = [0u8; 8];
                    net.copy_from_slice(&o[..8]);
                    Network::V6(net)
                }
            },
        }
    }
}

/// Which limit refused a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    /// This client network already has its share of the checks running or waiting.
    Share,
    /// Too many recent failures for this account from this client network.
    Account,
    /// Too many recent failures from this client network.
    Network,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    level: f64,
    at: Instant,
}

/// Leaky buckets of one kind of key.
#[derive(Debug)]
struct Buckets<K> {
    limit: Limit,
    map: HashMap<K, Bucket>,
}

impl<K: Hash + Eq> Buckets<K> {
    fn new(limit: Limit) -> Self {
        Self {
            limit,
            map: HashMap::new(),
        }
    }

    /// Failures drained per second.
    fn rate(&self) -> f64 {
        f64::from(self.limit.failures) / self.limit.window.as_secs_f64().max(0.001)
    }

    fn level(&self, key: &K, now: Instant) -> f64 {
        self.map.get(key).map_or(0.0, |b| {
            let drained = now.saturating_duration_since(b.at).as_secs_f64() * self.rate();
            (b.level - drained).max(0.0)
        })
    }

    fn full(&self, key: &K, now: Instant) -> bool {
        self.level(key, now) + 1.0 > f64::from(self.limit.failures)
    }

    fn add(&mut self, key: K, now: Instant) {
        let level = self.level(&key, now) + 1.0;
        if self.map.len() >= MAX_KEYS && !self.map.contains_key(&key) {
            let rate = self.rate();
            self.map.retain(|_, b| {
                b.level - now.saturating_duration_since(b.at).as_secs_f64() * rate > 0.0
            });
            if self.map.len() >= MAX_KEYS {
                self.map.clear();
            }
        }
        self.map.insert(key, Bucket { level, at: now });
    }
}

/// Failed-login counts of one store node, and the checks each client network has running
/// or waiting now.
#[derive(Debug)]
pub struct LoginThrottle {
    accounts: Buckets<(String, Option<Network>)>,
    networks: Buckets<Network>,
    /// Checks admitted and not yet finished, per client network.
    running: HashMap<Network, u32>,
    /// The most a network that has been failing may have in `running`: its share of the
    /// password pool, so that a flood from a few networks leaves room in the pool's queue
    /// for everyone else. A network without recent failures is not held to it (an office
    /// behind one address logging in at nine is not a flood).
    share: u32,
}

/// The key of `account` from `client`: the account name cut to [`MAX_ACCOUNT_KEY`] octets
/// (at a character boundary) and the client's network.
fn account_key(account: &str, client: Option<IpAddr>) -> (String, Option<Network>) {
    let mut end = account.len().min(MAX_ACCOUNT_KEY);
    while !account.is_char_boundary(end) {
        end -= 1;
    }
    (account[..end].to_string(), client.map(Network::of))
}

impl LoginThrottle {
    /// Counts with these limits per account from one client network, and per client network.
    pub fn new(account: Limit, network: Limit, share: u32) -> Self {
        Self {
            accounts: Buckets::new(account),
            networks: Buckets::new(network),
            running: HashMap::new(),
            share: share.max(1),
        }
    }

    /// Takes one of `client`'s network's share of the pool for a check about to run
    /// (clients without an address are not counted); refused when the network already has
    /// its share running and has failed logins in its count. Give it back with
    /// [`LoginThrottle::finish`].
    pub fn start(&mut self, client: Option<IpAddr>, now: Instant) -> Result<(), Throttled> {
        let Some(ip) = client else {
            return Ok(());
        };
        let net = Network::of(ip);
        let failing = self.networks.level(&net, now) >= 1.0;
        let n = self.running.entry(net).or_insert(0);
        if *n >= self.share && failing {
            return Err(Throttled::Share);
        }
        *n += 1;
        Ok(())
    }

    /// Gives back what [`LoginThrottle::start`] took.
    pub fn finish(&mut self, client: Option<IpAddr>) {
        let Some(ip) = client else {
            return;
        };
        let net = Network::of(ip);
        if let Some(n) = self.running.get_mut(&net) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.running.remove(&net);
            }
        }
    }

    /// Whether a password check for `account` (normalized) from `client` may run now.
    pub fn admit(
        &self,
        account: &str,
        client: Option<IpAddr>,
        now: Instant,
    ) -> Result<(), Throttled> {
        if self.accounts.full(&account_key(account, client), now) {
            return Err(Throttled::Account);
        }
        if let Some(ip) = client {
            if self.networks.full(&Network::of(ip), now) {
                return Err(Throttled::Network);
            }
        }
        Ok(())
    }

    /// Counts a failed check.
    pub fn failed(&mut self, account: &str, client: Option<IpAddr>, now: Instant) {
        self.accounts.add(account_key(account, client), now);
        if let Some(ip) = client {
            self.networks.add(Network::of(ip), now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> LoginThrottle {
        LoginThrottle::new(
            Limit {
                failures: 3,
                window: Duration::from_secs(60),
            },
            Limit {
                failures: 5,
                window: Duration::from_secs(60),
            },
            2,
        )
    }

    #[test]
    fn a_failing_network_gets_its_share_of_the_pool_and_no_more() {
        let mut t = throttle();
        let now = Instant::now();
        // A network without failures may run more than its share (a busy NAT).
        for _ in 0..5 {
            assert_eq!(t.start(ip("10.0.0.1"), now), Ok(()));
        }
        for _ in 0..5 {
            t.finish(ip("10.0.0.1"));
        }
        t.failed("x@x", ip("10.0.0.9"), now);
        assert_eq!(t.start(ip("10.0.0.1"), now), Ok(()));
        assert_eq!(t.start(ip("10.0.0.2"), now), Ok(()));
        assert_eq!(t.start(ip("10.0.0.3"), now), Err(Throttled::Share));
        // Another network, and a client without an address, are not affected.
        assert_eq!(t.start(ip("10.0.1.1"), now), Ok(()));
        assert_eq!(t.start(None, now), Ok(()));
        t.finish(ip("10.0.0.1"));
        assert_eq!(t.start(ip("10.0.0.3"), now), Ok(()));
        for c in ["10.0.0.2", "10.0.0.3", "10.0.1.1"] {
            t.finish(ip(c));
        }
        assert!(t.running.is_empty(), "nothing left once all finished");
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn networks_are_slash_24_and_slash_64() {
        let n = |s: &str| Network::of(s.parse().unwrap());
        assert_eq!(n("192.0.2.1"), n("192.0.2.254"));
        assert_ne!(n("192.0.2.1"), n("192.0.3.1"));
        assert_eq!(n("2001:db8:1:2::1"), n("2001:db8:1:2:ffff::9"));
        assert_ne!(n("2001:db8:1:2::1"), n("2001:db8:1:3::1"));
        assert_eq!(n("::ffff:192.0.2.7"), n("192.0.2.1"));
    }

    #[test]
    fn an_account_fills_per_network_whatever_the_address_and_its_owner_still_gets_in() {
        let mut t = throttle();
        let now = Instant::now();
        for i in 1..=3 {
            assert_eq!(t.admit("a@x", ip(&format!("10.9.0.{i}")), now), Ok(()));
            t.failed("a@x", ip(&format!("10.9.0.{i}")), now);
        }
        // Any address of that network: refused for this account.
        assert_eq!(
            t.admit("a@x", ip("10.9.0.200"), now),
            Err(Throttled::Account)
        );
        // The owner on another network is not locked out, nor is another account.
        assert_eq!(t.admit("a@x", ip("10.8.0.1"), now), Ok(()));
        assert_eq!(t.admit("b@x", ip("10.9.0.1"), now), Ok(()));
        // It drains: one failure's worth every 20 s.
        assert_eq!(
            t.admit("a@x", ip("10.9.0.1"), now + Duration::from_secs(21)),
            Ok(())
        );
    }

    #[test]
    fn a_long_name_costs_a_bounded_key() {
        let mut t = throttle();
        let now = Instant::now();
        let long = "x".repeat(40 << 10);
        t.failed(&long, ip("10.0.0.1"), now);
        let key = t.accounts.map.keys().next().expect("one key");
        assert_eq!(key.0.len(), MAX_ACCOUNT_KEY);
    }

    #[test]
    fn a_network_fills_across_accounts_and_addresses() {
        let mut t = throttle();
        let now = Instant::now();
        for i in 1..=5 {
            let user = format!("u{i}@x");
            assert_eq!(t.admit(&user, ip(&format!("10.0.0.{i}")), now), Ok(()));
            t.failed(&user, ip(&format!("10.0.0.{i}")), now);
        }
        assert_eq!(
            t.admit("new@x", ip("10.0.0.200"), now),
            Err(Throttled::Network)
        );
        assert_eq!(t.admit("new@x", ip("10.0.1.200"), now), Ok(()));
        assert_eq!(t.admit("new@x", None, now), Ok(()));
    }

    #[test]
    fn maps_stay_bounded() {
        let mut t = throttle();
        let now = Instant::now();
        for i in 0..(MAX_KEYS as u32 + 10) {
            let v6: IpAddr =
                std::net::Ipv6Addr::new(0x2001, 0xdb8, (i >> 16) as u16, i as u16, 0, 0, 0, 1)
                    .into();
            t.failed(&format!("u{i}@x"), Some(v6), now);
        }
        assert!(t.accounts.map.len() <= MAX_KEYS);
        assert!(t.networks.map.len() <= MAX_KEYS);
    }
}

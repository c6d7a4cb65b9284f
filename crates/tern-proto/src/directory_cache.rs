//! A cache of the directory's positive answers for SMTP and queue nodes, kept current by
//! the store's directory feed (`Directory.WatchDirectory`), so that a RCPT for a known user
//! costs no store round trip.
//!
//! The rules, and why:
//! - Only positive answers are kept (a local user, an alias, a list). An unknown user or a
//!   domain that is not hosted is always asked of the store, with its linearizable read,
//!   before it becomes a 550 or a remote route: a refusal is never stale.
//! - Answers are used only while the feed is connected. The feed names the addresses and
//!   domains each applied batch changed; a changed name drops every cached entry of its
//!   domain (coarse, and cheap: directory changes are rare next to mail, and it needs no
//!   knowledge of how the store normalizes addresses). A reset (a gap in the feed, a
//!   snapshot installed on the feed's node) drops everything.
//! - A read that was in flight when a change or a reset arrived is not cached (the
//!   [`Ticket`]'s epoch), so a cache never keeps what a change it already saw replaced.
//! - A reconnect resumes after the last change seen, on any store node; the node sends the
//!   changes since in its first message, and the cache drops them before answering again.
//! - Each entry lives at most [`CacheSettings::ttl`]: the bound on how stale a positive
//!   answer can be when the feed's node is cut off from the cluster and hears of no changes.
//! - At most [`CacheSettings::capacity`] entries; a full cache is emptied and starts again.
//!
//! The store's answer carries the mailbox's usage, which changes with every delivery; the
//! cache keeps none (`used_bytes` is 0 in a cached answer). Neither SMTP nor routing reads it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use prometheus::IntCounterVec;
use tonic::Status;

use crate::client::StoreClient;
use crate::store::v1 as pb;
use crate::store::v1::directory_client::DirectoryClient;
use pb::resolve_response::Kind;

/// How big and how fresh a cache is.
#[derive(Debug, Clone, Copy)]
pub struct CacheSettings {
    /// Entries kept at most; 0: no cache, every lookup reads the store.
    pub capacity: usize,
    /// Longest an entry is used.
    pub ttl: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            capacity: 100_000,
            ttl: Duration::from_secs(60),
        }
    }
}

/// What a read started under: it may fill the cache only if nothing changed since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

/// The cache itself, without I/O: what the feed said and what reads found.
#[derive(Debug)]
pub struct CacheCore {
    settings: CacheSettings,
    entries: HashMap<String, (pb::ResolveResponse, Instant)>,
    /// The feed is connected and its first message was applied.
    live: bool,
    /// Bumped by every change, reset and disconnection.
    epoch: u64,
    /// The last change's log index: where a reconnect resumes.
    cursor: u64,
}

/// The key of an address, if it can be cached: only an ASCII address whose domain has no
/// trailing dot, whose lowercase form is then exactly the store's canonical form (the form
/// the feed names changes in). Other forms (internationalized, odd) always go to the store.
fn key(address: &str) -> Option<String> {
    let a = address.trim();
    let (_, domain) = a.rsplit_once('@')?;
    (a.is_ascii() && !domain.is_empty() && !domain.ends_with('.')).then(|| a.to_ascii_lowercase())
}

/// The domain of a key or a feed name (a name without `@` is a domain).
fn domain(name: &str) -> &str {
    name.rsplit_once('@').map_or(name, |(_, d)| d)
}

impl CacheCore {
    /// An empty cache, not live until the feed connects.
    pub fn new(settings: CacheSettings) -> Self {
        Self {
            settings,
            entries: HashMap::new(),
            live: false,
            epoch: 0,
            cursor: 0,
        }
    }

    /// The cached answer for `address`, if the feed is live and the entry young enough.
    pub fn get(&self, address: &str, now: Instant) -> Option<pb::ResolveResponse> {
        if !self.live {
            return None;
        }
        let (answer, at) = self.entries.get(&key(address)?)?;
        (now.saturating_duration_since(*at) < self.settings.ttl).then(|| answer.clone())
    }

    /// Taken before a read of the store, given back with its answer to [`Self::insert`].
    pub fn ticket(&self) -> Ticket {
        Ticket(self.epoch)
    }

    /// Keeps a positive answer read under `ticket`; whether it was kept.
    pub fn insert(
        &mut self,
        ticket: Ticket,
        address: &str,
        answer: &pb::ResolveResponse,
        now: Instant,
    ) -> bool {
        let positive = matches!(
            Kind::try_from(answer.kind),
            Ok(Kind::LocalUser | Kind::Alias | Kind::List)
        );
        let Some(key) = key(address) else {
            return false;
        };
        if !positive || !self.live || ticket.0 != self.epoch {
            return false;
        }
        if self.entries.len() >= self.settings.capacity {
            self.entries.clear();
        }
        let mut kept = answer.clone();
        if let Some(u) = kept.user.as_mut() {
            u.used_bytes = 0;
        }
        self.entries.insert(key, (kept, now));
        true
    }

    /// Where a reconnect resumes.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Applies one feed message (the first of a stream included): after it, the cache is
    /// live. A reset empties it; names drop their domains' entries.
    pub fn apply(&mut self, change: &pb::DirectoryChange) {
        self.epoch += 1;
        if change.reset {
            self.entries.clear();
        } else if !change.names.is_empty() {
            let domains: HashSet<&str> = change.names.iter().map(|n| domain(n)).collect();
            self.entries.retain(|k, _| !domains.contains(domain(k)));
        }
        self.cursor = self.cursor.max(change.index);
        self.live = true;
    }

    /// The feed broke: nothing cached is used until it is back, and reads in flight are
    /// not kept. Entries stay, for a resume that covers what was missed.
    pub fn disconnected(&mut self) {
        self.epoch += 1;
        self.live = false;
    }
}

fn lookups() -> &'static IntCounterVec {
    static C: OnceLock<IntCounterVec> = OnceLock::new();
    C.get_or_init(|| {
        let c = IntCounterVec::new(
            prometheus::Opts::new(
                "tern_directory_cache_lookups_total",
                "Recipient lookups by this node's directory cache, by result (hit, miss)",
            ),
            &["result"],
        )
        .expect("static metric definition");
        let _ = tern_telemetry::metrics::registry().register(Box::new(c.clone()));
        c
    })
}

/// Recipient lookups of one SMTP or queue node: the store's Resolve, behind a cache that
/// follows the directory feed in a task of its own (unless the capacity is 0).
#[derive(Clone)]
pub struct Resolver {
    core: Option<Arc<Mutex<CacheCore>>>,
    store: StoreClient,
}

/// The poison-tolerant lock of a cache core.
fn lock(core: &Mutex<CacheCore>) -> std::sync::MutexGuard<'_, CacheCore> {
    core.lock().unwrap_or_else(|p| p.into_inner())
}

impl Resolver {
    /// A resolver over `store`; with a capacity, starts following the feed, and the cache
    /// answers from the feed's first message on.
    pub fn start(store: StoreClient, settings: CacheSettings) -> Self {
        let core = (settings.capacity > 0).then(|| Arc::new(Mutex::new(CacheCore::new(settings))));
        if let Some(core) = &core {
            tokio::spawn(follow(core.clone(), store.clone()));
        }
        Self { core, store }
    }

    /// Resolves `address`: from the cache when it holds a positive answer, else with the
    /// store's linearizable read (whose positive answer is then kept).
    pub async fn resolve(&self, address: &str) -> Result<pb::ResolveResponse, Status> {
        let ticket = match &self.core {
            Some(core) => {
                let c = lock(core);
                if let Some(hit) = c.get(address, Instant::now()) {
                    lookups().with_label_values(&["hit"]).inc();
                    return Ok(hit);
                }
                lookups().with_label_values(&["miss"]).inc();
                Some(c.ticket())
            }
            None => None,
        };
        let req = pb::ResolveRequest {
            address: address.to_string(),
        };
        let answer = self
            .store
            .call(|ch| {
                let req = req.clone();
                async move { DirectoryClient::new(ch).resolve(req).await }
            })
            .await?
            .into_inner();
        if let (Some(core), Some(ticket)) = (&self.core, ticket) {
            lock(core).insert(ticket, address, &answer, Instant::now());
        }
        Ok(answer)
    }
}

/// Follows the feed for as long as the process runs, reconnecting (to the next node) with a
/// back-off from 100 ms to 5 s.
async fn follow(core: Arc<Mutex<CacheCore>>, store: StoreClient) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let after = lock(&core).cursor();
        let request = pb::WatchDirectoryRequest { after_index: after };
        match DirectoryClient::new(store.channel())
            .watch_directory(request)
            .await
        {
            Ok(stream) => {
                let mut stream = stream.into_inner();
                while let Ok(Some(change)) = stream.message().await {
                    lock(&core).apply(&change);
                    backoff = Duration::from_millis(100);
                }
                tracing::debug!("directory feed ended; reconnecting");
            }
            Err(e) => tracing::debug!(error = %e, "directory feed unavailable"),
        }
        lock(&core).disconnected();
        store.advance();
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: u64) -> pb::ResolveResponse {
        pb::ResolveResponse {
            kind: Kind::LocalUser as i32,
            user: Some(pb::User {
                id,
                address: format!("u{id}@x.test"),
                quota_bytes: 0,
                used_bytes: 99,
            }),
            targets: vec![],
        }
    }

    fn change(index: u64, reset: bool, names: &[&str]) -> pb::DirectoryChange {
        pb::DirectoryChange {
            index,
            reset,
            names: names.iter().map(|n| n.to_string()).collect(),
        }
    }

    fn live() -> (CacheCore, Instant) {
        let mut c = CacheCore::new(CacheSettings::default());
        c.apply(&change(10, false, &[]));
        (c, Instant::now())
    }

    #[test]
    fn a_positive_answer_is_kept_without_its_usage_and_found_in_any_case() {
        let (mut c, now) = live();
        assert!(c.insert(c.ticket(), "U1@X.test", &user(1), now));
        let hit = c.get(" u1@x.TEST", now).expect("a hit");
        assert_eq!(
            hit.user.as_ref().map(|u| (u.id, u.used_bytes)),
            Some((1, 0))
        );
    }

    #[test]
    fn only_addresses_already_in_canonical_form_are_kept() {
        let (mut c, now) = live();
        for odd in ["u1@x.test.", "u1@bücher.test", "no-at-sign", "u1@"] {
            assert!(!c.insert(c.ticket(), odd, &user(1), now), "{odd}");
            assert!(c.get(odd, now).is_none());
        }
    }

    #[test]
    fn negative_answers_are_never_kept() {
        let (mut c, now) = live();
        for kind in [Kind::Unknown, Kind::Remote] {
            let answer = pb::ResolveResponse {
                kind: kind as i32,
                ..Default::default()
            };
            assert!(!c.insert(c.ticket(), "nobody@x.test", &answer, now));
        }
        assert!(c.is_empty());
    }

    #[test]
    fn nothing_is_kept_or_used_before_the_feed_connects_or_after_it_breaks() {
        let mut c = CacheCore::new(CacheSettings::default());
        let now = Instant::now();
        assert!(!c.insert(c.ticket(), "u1@x.test", &user(1), now));
        c.apply(&change(10, false, &[]));
        assert!(c.insert(c.ticket(), "u1@x.test", &user(1), now));
        c.disconnected();
        assert!(c.get("u1@x.test", now).is_none(), "used while disconnected");
        // A resume that covered the gap finds the entry again.
        c.apply(&change(12, false, &[]));
        assert!(c.get("u1@x.test", now).is_some());
        assert_eq!(c.cursor(), 12);
    }

    #[test]
    fn a_change_drops_its_domain_and_a_reset_drops_everything() {
        let (mut c, now) = live();
        for (a, id) in [("u1@x.test", 1), ("u2@x.test", 2), ("u3@y.test", 3)] {
            assert!(c.insert(c.ticket(), a, &user(id), now));
        }
        c.apply(&change(11, false, &["u1@x.test"]));
        assert!(c.get("u2@x.test", now).is_none(), "the whole domain goes");
        assert!(c.get("u3@y.test", now).is_some());
        c.apply(&change(12, false, &["y.test"]));
        assert!(
            c.get("u3@y.test", now).is_none(),
            "a domain name drops its addresses"
        );
        assert!(c.insert(c.ticket(), "u3@y.test", &user(3), now));
        c.apply(&change(0, true, &[]));
        assert!(c.is_empty());
        assert_eq!(c.cursor(), 12, "a lagged reset keeps the resume point");
    }

    #[test]
    fn a_read_in_flight_across_a_change_is_not_kept() {
        let (mut c, now) = live();
        let ticket = c.ticket();
        // The user is removed while its lookup is on the way back.
        c.apply(&change(11, false, &["u1@x.test"]));
        assert!(!c.insert(ticket, "u1@x.test", &user(1), now));
        let ticket = c.ticket();
        c.disconnected();
        c.apply(&change(11, false, &[]));
        assert!(!c.insert(ticket, "u1@x.test", &user(1), now));
    }

    #[test]
    fn entries_age_out_and_a_full_cache_starts_again() {
        let mut c = CacheCore::new(CacheSettings {
            capacity: 2,
            ttl: Duration::from_secs(60),
        });
        c.apply(&change(1, false, &[]));
        let now = Instant::now();
        assert!(c.insert(c.ticket(), "u1@x.test", &user(1), now));
        assert!(c.get("u1@x.test", now + Duration::from_secs(61)).is_none());
        assert!(c.insert(c.ticket(), "u2@x.test", &user(2), now));
        assert!(c.insert(c.ticket(), "u3@x.test", &user(3), now));
        assert_eq!(c.len(), 1, "full: emptied, then the new entry");
    }
}

//! A delivery worker: leases due entries from the store, routes and delivers each, and
//! reports the outcome back (delivered, deferred with the next attempt time, or failed and
//! bounced). Workers keep no state of their own: any number can run, and when one dies its
//! leases expire and another takes its entries over. Local delivery carries an idempotency
//! key (queue id + account), so an entry taken over after a crash is never delivered twice
//! into a mailbox.

mod bounce;
mod lease;
mod remote;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tern_proto::client::StoreClient;
use tern_proto::store::v1 as pb;
use tern_proto::store::v1::messages_client::MessagesClient;
use tern_proto::store::v1::queue_client::QueueClient;
use tern_proto::store::v1::queue_recipient::State;
use tern_smtp_proto::params::MailParams;
use tern_smtp_proto::xtext;
use tokio::sync::Semaphore;
use tracing::Instrument;

use self::lease::Lease;
use crate::config::QueueConfig;
use crate::mx::MxResolver;
use crate::pool::Pool;
use crate::routing::{self, Route};
use crate::smtp::client::{ClientConfig, TlsPolicy};
use tern_proto::directory_cache::{CacheSettings, Resolver};

/// A host to send to (its name, for TLS and logs) with the addresses to try, in order.
type NextHop = (String, Vec<SocketAddr>);

/// Entries asked for in one lease.
const LEASE_BATCH: u32 = 32;

/// What a worker needs.
pub struct Worker {
    store: StoreClient,
    /// Recipient lookups for routing (known ones from the directory cache).
    directory: Resolver,
    config: Arc<QueueConfig>,
    id: String,
    mx: MxResolver,
    pool: Pool,
    opportunistic: ClientConfig,
    verified: ClientConfig,
    /// Entries with an attempt running in this process.
    in_flight: Mutex<HashSet<String>>,
    /// One permit per concurrent attempt (`concurrency`); all free when nothing runs.
    slots: Arc<Semaphore>,
}

/// Aborts the task when dropped (also when the attempt panics), so a lease is never renewed
/// for an attempt that is gone.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The wall clock (due times and retry times are wall-clock instants in the store).
use tern_clock::now_ms;

/// Delay before attempt `attempts + 1`: the first retry after `first`, doubling up to `max`
/// (Postfix's minimal_backoff_time / maximal_backoff_time).
pub fn backoff(first: Duration, max: Duration, attempts: u32) -> Duration {
    let factor = 1u32 << attempts.saturating_sub(1).min(20);
    first.saturating_mul(factor).min(max)
}

/// A per-recipient outcome of one attempt.
#[derive(Debug, Clone)]
struct Outcome {
    state: State,
    reply: String,
    remote_mta: Option<String>,
    /// How the message went, for the timeline: "host [addr]:port with TLS".
    via: Option<String>,
}

impl Outcome {
    fn delivered(reply: impl Into<String>) -> Self {
        Self {
            state: State::Delivered,
            reply: reply.into(),
            remote_mta: None,
            via: None,
        }
    }
    fn deferred(reply: impl Into<String>) -> Self {
        Self {
            state: State::Deferred,
            reply: reply.into(),
            remote_mta: None,
            via: None,
        }
    }
    fn failed(reply: impl Into<String>) -> Self {
        Self {
            state: State::Failed,
            reply: reply.into(),
            remote_mta: None,
            via: None,
        }
    }
    fn from_reply(reply: &tern_smtp_proto::reply::Reply, host: &str) -> Self {
        let state = if reply.is_positive() {
            State::Delivered
        } else if reply.is_permanent() {
            State::Failed
        } else {
            State::Deferred
        };
        Self {
            state,
            reply: reply.to_string(),
            remote_mta: Some(host.to_string()),
            via: None,
        }
    }
}

impl Worker {
    /// A worker for `config`; `tls_roots` are extra trusted CAs for verified TLS.
    pub fn new(
        store: StoreClient,
        config: Arc<QueueConfig>,
        id: String,
        tls_roots: Vec<rustls_pki_types::CertificateDer<'static>>,
    ) -> anyhow::Result<Self> {
        let servers: Vec<SocketAddr> = config
            .dns_servers
            .iter()
            .map(|s| s.parse())
            .collect::<Result<_, _>>()?;
        let mx = MxResolver::new(&servers, Duration::from_secs(5))?;
        let base = ClientConfig {
            helo_name: config.hostname.clone(),
            tls: TlsPolicy::Opportunistic,
            extra_roots: tls_roots,
            ..ClientConfig::default()
        };
        let verified = ClientConfig {
            tls: TlsPolicy::Required,
            ..base.clone()
        };
        let directory = Resolver::start(
            store.clone(),
            CacheSettings {
                capacity: config.directory_cache_entries,
                ttl: Duration::from_secs(config.directory_cache_ttl_secs.max(1)),
            },
        );
        Ok(Self {
            store,
            directory,
            pool: Pool::new(
                config.max_connections_per_destination,
                Duration::from_secs(config.connection_idle_secs),
            ),
            slots: Arc::new(Semaphore::new(config.concurrency)),
            config,
            id,
            mx,
            opportunistic: base,
            verified,
            in_flight: Mutex::default(),
        })
    }

    /// Connections opened to remote hosts so far.
    pub fn connections_opened(&self) -> u64 {
        self.pool.opened()
    }

    /// Waits up to `limit` for the attempts in flight to end (each records its outcome
    /// with the store, so a message a remote server accepted is not sent again by the next
    /// worker). Call after [`Worker::run`] has returned, so no new attempt starts. Returns
    /// whether every attempt ended in time.
    pub async fn drain(&self, limit: Duration) -> bool {
        let all = u32::try_from(self.config.concurrency).unwrap_or(u32::MAX);
        tokio::time::timeout(limit, self.slots.acquire_many(all))
            .await
            .is_ok()
    }

    /// Attempts running now.
    pub fn attempts_in_flight(&self) -> usize {
        self.config
            .concurrency
            .saturating_sub(self.slots.available_permits())
    }

    /// Leases and delivers until `stop` turns true.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let slots = self.slots.clone();
        let poll = Duration::from_millis(self.config.poll_ms.max(10));
        let mut last_reap = std::time::Instant::now();
        loop {
            if *stop.borrow() {
                return;
            }
            if last_reap.elapsed() > Duration::from_secs(5) {
                self.pool.reap();
                last_reap = std::time::Instant::now();
            }
            let free = slots.available_permits();
            if free == 0 {
                // Every slot is busy: lease again as soon as one frees up, not a poll later.
                tokio::select! {
                    p = slots.clone().acquire_owned() => drop(p),
                    _ = stop.changed() => {}
                }
                continue;
            }
            let mut leased = 0;
            {
                // The leases run from no later than this (see Lease::granted_at).
                let asked = std::time::Instant::now();
                match self.lease(free.min(LEASE_BATCH as usize) as u32).await {
                    Ok(entries) => {
                        leased = entries.len();
                        for entry in entries {
                            let Ok(permit) = slots.clone().acquire_owned().await else {
                                return;
                            };
                            let me = self.clone();
                            let span = tracing::info_span!(
                                "deliver",
                                queue_id = %entry.id,
                                trace_id = %entry.trace_id
                            );
                            tern_telemetry::grpc::continue_trace(&span, &entry.trace_id);
                            tokio::spawn(
                                async move {
                                    me.process(entry, asked).await;
                                    drop(permit);
                                }
                                .instrument(span),
                            );
                        }
                    }
                    Err(e) => tracing::warn!(error = %e.message(), "leasing queue entries failed"),
                }
            }
            if leased == 0 {
                tokio::select! {
                    _ = tokio::time::sleep(poll) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }

    async fn lease(&self, max: u32) -> Result<Vec<pb::QueueEntry>, tonic::Status> {
        let req = pb::LeaseRequest {
            owner: self.id.clone(),
            max_entries: max,
            lease_ms: self.config.lease_secs * 1000,
        };
        self.store
            .call(|ch| {
                let req = req.clone();
                async move { QueueClient::new(ch).lease(req).await }
            })
            .await
            .map(|r| r.into_inner().entries)
    }

    /// Keeps the lease on `id` alive while the entry is being delivered, telling `lease` of
    /// each renewal; the lease is lost when the store says it is no longer ours (it expired
    /// and someone else may have the entry now), and the attempt then stops before sending
    /// anything more. When renewals fail, [`Lease::held`] turns false by itself in time.
    fn keep_leased(&self, id: &str, lease: Arc<Lease>) -> AbortOnDrop {
        let (store, owner, id) = (self.store.clone(), self.id.clone(), id.to_string());
        let lease_ms = self.config.lease_secs * 1000;
        AbortOnDrop(tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(lease_ms / 3)).await;
                let req = pb::RenewLeaseRequest {
                    id: id.clone(),
                    owner: owner.clone(),
                    lease_ms,
                };
                let sent = std::time::Instant::now();
                let renewed = store
                    .call(|ch| {
                        let req = req.clone();
                        async move { QueueClient::new(ch).renew(req).await }
                    })
                    .await;
                match renewed {
                    Ok(_) => lease.renewed(sent, Duration::from_millis(lease_ms)),
                    Err(e)
                        if matches!(
                            e.code(),
                            tonic::Code::FailedPrecondition | tonic::Code::NotFound
                        ) =>
                    {
                        tracing::warn!(queue_id = %id, error = %e.message(), "lease lost; stopping this attempt");
                        lease.lose();
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(queue_id = %id, error = %e.message(), "renewing the lease failed")
                    }
                }
            }
        }))
    }

    async fn fetch_blob(&self, blob: &str) -> Result<Vec<u8>, tonic::Status> {
        let req = pb::FetchBlobRequest {
            blob: blob.to_string(),
            offset: 0,
            length: 0,
        };
        self.store
            .call(|ch| {
                let req = req.clone();
                async move {
                    let mut stream = MessagesClient::new(ch)
                        .max_decoding_message_size(64 << 20)
                        .fetch_blob(req)
                        .await?
                        .into_inner();
                    let mut body = Vec::new();
                    while let Some(chunk) = stream.next().await {
                        body.extend_from_slice(&chunk?.data);
                    }
                    Ok(body)
                }
            })
            .await
    }

    /// One attempt at an entry; always ends with an Update (or leaves the lease to expire
    /// when the store cannot be reached, so another attempt happens later).
    async fn process(&self, entry: pb::QueueEntry, asked: std::time::Instant) {
        // This worker may lease an entry again after its own lease lapsed while an attempt
        // is still running: never run two attempts of one entry side by side.
        if !self
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(entry.id.clone())
        {
            return;
        }
        let lease = Arc::new(Lease::granted_at(
            asked,
            Duration::from_secs(self.config.lease_secs),
        ));
        let renewal = self.keep_leased(&entry.id, lease.clone());
        let result = self.attempt(&entry, &lease).await;
        drop(renewal);
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&entry.id);
        if let Err(e) = result {
            tracing::warn!(error = %e, "delivery attempt failed before it could be recorded; the lease will expire and the entry be retried");
        }
    }

    async fn attempt(&self, entry: &pb::QueueEntry, lease: &Lease) -> anyhow::Result<()> {
        let now = now_ms();
        let mut recipients = entry.recipients.clone();
        let mut events: Vec<pb::QueueEvent> = Vec::new();
        let event = |kind: &str, detail: String| pb::QueueEvent {
            at: now_ms(),
            kind: kind.to_string(),
            detail,
        };

        // Route what is still to be delivered; completed recipients stay as they are.
        let active: Vec<String> = recipients
            .iter()
            .filter(|r| is_active(r))
            .map(|r| r.address.clone())
            .collect();
        let finals = match routing::expand(&self.directory, &active).await {
            Ok(f) => f,
            Err(status) => {
                // The directory is unreachable: try again later, nothing else changes.
                let reply = format!("451 4.3.0 directory unavailable: {}", status.message());
                events.push(event("deferred", reply));
                return self
                    .finish(entry, recipients, events, now, Vec::new())
                    .await;
            }
        };
        let before: Vec<String> = active.clone();
        let mut kept: Vec<pb::QueueRecipient> =
            recipients.drain(..).filter(|r| !is_active(r)).collect();
        let mut routes: BTreeMap<String, Route> = BTreeMap::new();
        // Mail from a client that did not authenticate has an unverified sender (no SPF check
        // yet): a failure of a recipient an alias or list led to is not bounced to it, or
        // anyone could aim bounces at a third party through a hosted alias (backscatter).
        let from_outside = MailParams::from_stored(&entry.mail_params)
            .submitter()
            .is_none();
        let mut unbounced: Vec<String> = Vec::new();
        for f in &finals {
            let old = entry
                .recipients
                .iter()
                .find(|r| r.address.eq_ignore_ascii_case(&f.address));
            if kept
                .iter()
                .any(|k| k.address.eq_ignore_ascii_case(&f.address))
            {
                continue;
            }
            let original = entry
                .recipients
                .iter()
                .find(|r| r.address.eq_ignore_ascii_case(&f.original));
            let mut r = old.cloned().unwrap_or_else(|| pb::QueueRecipient {
                address: f.address.clone(),
                state: State::Pending as i32,
                ..Default::default()
            });
            // A recipient reached through an alias or list inherits the DSN parameters of
            // the recipient it was reached from; one addressed directly keeps its own.
            if old.is_none() {
                if r.orcpt.is_empty() && !f.address.eq_ignore_ascii_case(&f.original) {
                    r.orcpt = original
                        .map(|o| o.orcpt.clone())
                        .filter(|o| !o.is_empty())
                        .unwrap_or_else(|| format!("rfc822;{}", xtext::encode(&f.original)));
                }
                if f.expanded && from_outside {
                    r.notify = "NEVER".into();
                    unbounced.push(f.address.clone());
                } else if r.notify.is_empty() {
                    if let Some(o) = original {
                        r.notify = o.notify.clone();
                    }
                }
            }
            routes.insert(f.address.to_ascii_lowercase(), f.route.clone());
            kept.push(r);
        }
        recipients = kept;
        let after: Vec<String> = finals.iter().map(|f| f.address.clone()).collect();
        if after != before {
            events.push(event(
                "routed",
                format!("{} -> {}", before.join(", "), after.join(", ")),
            ));
        }
        if !unbounced.is_empty() {
            events.push(event(
                "no-bounce",
                format!(
                    "{}: reached through an alias or list by mail from a client that did not \
                     authenticate; NOTIFY=NEVER, so a failure is not bounced to the unverified \
                     sender (backscatter)",
                    unbounced.join(", ")
                ),
            ));
        }

        // Deliver: local recipients in one store write, remote ones per destination.
        let mut outcomes: BTreeMap<String, Outcome> = BTreeMap::new();
        let (mut local, mut remote) = (Vec::new(), Vec::new());
        for r in recipients.iter().filter(|r| is_active(r)) {
            match routes.get(&r.address.to_ascii_lowercase()) {
                Some(Route::Local) => local.push(r.address.clone()),
                Some(Route::Remote) => remote.push(r.clone()),
                Some(Route::Unknown) | None => {
                    outcomes.insert(
                        r.address.to_ascii_lowercase(),
                        Outcome::failed("550 5.1.1 no such user here"),
                    );
                }
            }
        }
        crate::metrics::attempt();
        let mut remote_routes = std::collections::HashSet::new();
        if !local.is_empty() {
            let started = std::time::Instant::now();
            for (address, outcome) in self.deliver_local(entry, &local).await {
                outcomes.insert(address.to_ascii_lowercase(), outcome);
            }
            crate::metrics::route_took("local", started.elapsed());
        }
        if !lease.held() {
            anyhow::bail!(
                "the lease was lost or may have lapsed; another worker may have the entry"
            );
        }
        if !remote.is_empty() {
            // Only remote delivery needs the content here; local delivery names it.
            let body = self.fetch_blob(&entry.blob).await?;
            let started = std::time::Instant::now();
            for (address, outcome) in self.deliver_remote(entry, &remote, &body, lease).await {
                remote_routes.insert(address.to_ascii_lowercase());
                outcomes.insert(address.to_ascii_lowercase(), outcome);
            }
            crate::metrics::route_took("remote", started.elapsed());
        }

        // Record the outcomes; what is still deferred past the lifetime fails.
        let expired = now.saturating_sub(entry.created_at)
            > (self.config.max_lifetime_secs as i64).saturating_mul(1000);
        let mut newly_failed = Vec::new();
        for r in recipients.iter_mut().filter(|r| is_active(r)) {
            let Some(mut o) = outcomes.remove(&r.address.to_ascii_lowercase()) else {
                continue;
            };
            r.attempts += 1;
            if o.state == State::Deferred && expired {
                o = Outcome {
                    state: State::Failed,
                    reply: format!(
                        "{} (gave up: 4.4.7 message expired after {} s in the queue)",
                        o.reply, self.config.max_lifetime_secs
                    ),
                    remote_mta: o.remote_mta,
                    via: o.via,
                };
            }
            let kind = match o.state {
                State::Delivered => "delivered",
                State::Failed => "failed",
                _ => "deferred",
            };
            let route = if remote_routes.contains(&r.address.to_ascii_lowercase()) {
                "remote"
            } else {
                "local"
            };
            let since_accepted = (o.state == State::Delivered).then(|| {
                Duration::from_millis(now_ms().saturating_sub(entry.created_at).max(0) as u64)
            });
            crate::metrics::outcome(route, kind, since_accepted);
            let detail = match &o.via {
                Some(via) => format!("{}: {} (via {via})", r.address, o.reply),
                None => format!("{}: {}", r.address, o.reply),
            };
            events.push(event(kind, detail));
            r.state = o.state as i32;
            r.last_reply = o.reply.clone();
            if o.state == State::Failed {
                newly_failed.push((r.clone(), o.remote_mta.clone()));
            }
        }
        self.finish(entry, recipients, events, now, newly_failed)
            .await
    }

    /// Bounces what failed, then reports to the store: completed, or rescheduled.
    async fn finish(
        &self,
        entry: &pb::QueueEntry,
        recipients: Vec<pb::QueueRecipient>,
        mut events: Vec<pb::QueueEvent>,
        now: i64,
        newly_failed: Vec<(pb::QueueRecipient, Option<String>)>,
    ) -> anyhow::Result<()> {
        if !newly_failed.is_empty() {
            if entry.sender.is_empty() {
                events.push(pb::QueueEvent {
                    at: now_ms(),
                    kind: "not-bounced".into(),
                    detail: "the sender is the null path <>: no DSN is sent (RFC 5321 §4.5.5)"
                        .into(),
                });
            } else {
                let wanted: Vec<_> = newly_failed
                    .iter()
                    .filter(|(r, _)| wants_failure_dsn(&r.notify))
                    .collect();
                if !wanted.is_empty() {
                    match self.bounce(entry, &wanted, now).await {
                        Ok(id) => {
                            crate::metrics::bounced();
                            events.push(pb::QueueEvent {
                                at: now_ms(),
                                kind: "bounced".into(),
                                detail: format!("DSN to <{}> queued as {id}", entry.sender),
                            })
                        }
                        // Without the DSN the entry must not complete: retry the attempt.
                        Err(e) => anyhow::bail!("queueing the DSN failed: {e}"),
                    }
                }
            }
        }
        // The same steps go to the log, inside this attempt's span, which continues the
        // trace the message arrived with.
        for e in &events {
            tracing::info!(kind = %e.kind, detail = %e.detail, "queue event");
        }
        let pending = recipients.iter().any(is_active);
        let attempts = entry.attempts + 1;
        let delay = backoff(
            Duration::from_secs(self.config.first_retry_secs),
            Duration::from_secs(self.config.max_retry_secs),
            attempts,
        );
        let req = pb::UpdateEntryRequest {
            id: entry.id.clone(),
            owner: self.id.clone(),
            recipients,
            events,
            next_attempt_at: now_ms() + delay.as_millis() as i64,
            release: true,
            complete: !pending,
        };
        self.store
            .call(|ch| {
                let req = req.clone();
                async move { QueueClient::new(ch).update(req).await }
            })
            .await?;
        Ok(())
    }

    /// Delivers the entry's content, which the store holds, into the accounts' INBOXes: the
    /// request names it by hash, so it crosses neither the network nor the Raft log again.
    async fn deliver_local(
        &self,
        entry: &pb::QueueEntry,
        accounts: &[String],
    ) -> Vec<(String, Outcome)> {
        let header = pb::DeliverHeader {
            targets: accounts
                .iter()
                .map(|a| pb::DeliveryTarget {
                    account: a.clone(),
                    mailbox: String::new(),
                    delivery_id: format!("{}/{}", entry.id, a.to_ascii_lowercase()),
                    flags: vec![],
                })
                .collect(),
            internal_date: 0,
            size: 0,
            blob: entry.blob.clone(),
        };
        let result = self
            .store
            .call(|ch| {
                let msgs = vec![pb::DeliverRequest {
                    header: Some(header.clone()),
                    chunk: vec![],
                }];
                async move {
                    MessagesClient::new(ch)
                        .deliver(futures::stream::iter(msgs))
                        .await
                }
            })
            .await;
        match result {
            Ok(resp) => resp
                .into_inner()
                .results
                .into_iter()
                .map(|r| {
                    let outcome = if r.error.is_empty() {
                        Outcome::delivered(format!(
                            "250 2.0.0 delivered to INBOX (uid {}){}",
                            r.uid,
                            if r.duplicate { ", already there" } else { "" }
                        ))
                    } else if r.code == tonic::Code::ResourceExhausted as i32 {
                        Outcome::deferred(format!("452 4.2.2 {}", r.error))
                    } else if r.code == tonic::Code::NotFound as i32 {
                        Outcome::failed(format!("550 5.1.1 {}", r.error))
                    } else {
                        Outcome::deferred(format!("451 4.3.0 {}", r.error))
                    };
                    (r.account, outcome)
                })
                .collect(),
            Err(status) => accounts
                .iter()
                .map(|a| {
                    (
                        a.clone(),
                        Outcome::deferred(format!("451 4.3.0 store: {}", status.message())),
                    )
                })
                .collect(),
        }
    }
}

/// Pending or deferred: still to be delivered.
fn is_active(r: &pb::QueueRecipient) -> bool {
    matches!(
        State::try_from(r.state).unwrap_or(State::Pending),
        State::Pending | State::Deferred
    )
}

/// RFC 3461: NOTIFY=NEVER, or a NOTIFY list without FAILURE, asks for no failure DSN.
fn wants_failure_dsn(notify: &str) -> bool {
    notify.is_empty()
        || notify
            .split(',')
            .any(|n| n.trim().eq_ignore_ascii_case("FAILURE"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_first_retry_up_to_the_maximum() {
        let (first, max) = (Duration::from_secs(300), Duration::from_secs(4000));
        let delays: Vec<u64> = (1..=6).map(|a| backoff(first, max, a).as_secs()).collect();
        assert_eq!(delays, vec![300, 600, 1200, 2400, 4000, 4000]);
        assert_eq!(backoff(first, max, 1000).as_secs(), 4000);
    }

    #[test]
    fn dsn_parameters() {
        assert!(wants_failure_dsn(""));
        assert!(wants_failure_dsn("SUCCESS,FAILURE"));
        assert!(!wants_failure_dsn("NEVER"));
        assert!(!wants_failure_dsn("DELAY"));
    }
}

//! A delivery worker: leases due entries from the store, routes and delivers each, and
//! reports the outcome back (delivered, deferred with the next attempt time, or failed and
//! bounced). Workers keep no state of their own: any number can run, and when one dies its
//! leases expire and another takes its entries over. Local delivery carries an idempotency
//! key (queue id + account), so an entry taken over after a crash is never delivered twice
//! into a mailbox.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tern_proto::client::StoreClient;
use tern_proto::store::v1 as pb;
use tern_proto::store::v1::messages_client::MessagesClient;
use tern_proto::store::v1::queue_client::QueueClient;
use tern_proto::store::v1::queue_recipient::State;
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::config::QueueConfig;
use crate::dsn;
use crate::mx::{MxError, MxResolver};
use crate::pool::Pool;
use crate::routing::{self, Route};
use crate::smtp::client::{ClientConfig, ClientError, Envelope, Rcpt, TlsPolicy};

/// A host to send to (its name, for TLS and logs) with the addresses to try, in order.
type NextHop = (String, Vec<SocketAddr>);

/// Entries asked for in one lease.
const LEASE_BATCH: u32 = 32;

/// What a worker needs.
pub struct Worker {
    store: StoreClient,
    config: Arc<QueueConfig>,
    id: String,
    mx: MxResolver,
    pool: Pool,
    opportunistic: ClientConfig,
    verified: ClientConfig,
    /// Entries with an attempt running in this process.
    in_flight: Mutex<HashSet<String>>,
}

/// Aborts the task when dropped (also when the attempt panics), so a lease is never renewed
/// for an attempt that is gone.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

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
    fn from_reply(reply: &crate::smtp::reply::Reply, host: &str) -> Self {
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
        Ok(Self {
            store,
            pool: Pool::new(
                config.max_connections_per_destination,
                Duration::from_secs(config.connection_idle_secs),
            ),
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

    /// Leases and delivers until `stop` turns true.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let slots = Arc::new(Semaphore::new(self.config.concurrency));
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
                                    me.process(entry).await;
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

    /// Keeps the lease on `id` alive while the entry is being delivered; `lost` turns true
    /// when the store says the lease is no longer ours (it expired and someone else may have
    /// the entry now), and the attempt then stops before sending anything more.
    fn keep_leased(&self, id: &str, lost: Arc<AtomicBool>) -> AbortOnDrop {
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
                let renewed = store
                    .call(|ch| {
                        let req = req.clone();
                        async move { QueueClient::new(ch).renew(req).await }
                    })
                    .await;
                match renewed {
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.code(),
                            tonic::Code::FailedPrecondition | tonic::Code::NotFound
                        ) =>
                    {
                        tracing::warn!(queue_id = %id, error = %e.message(), "lease lost; stopping this attempt");
                        lost.store(true, Ordering::SeqCst);
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
    async fn process(&self, entry: pb::QueueEntry) {
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
        let lost = Arc::new(AtomicBool::new(false));
        let renewal = self.keep_leased(&entry.id, lost.clone());
        let result = self.attempt(&entry, &lost).await;
        drop(renewal);
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&entry.id);
        if let Err(e) = result {
            tracing::warn!(error = %e, "delivery attempt failed before it could be recorded; the lease will expire and the entry be retried");
        }
    }

    async fn attempt(&self, entry: &pb::QueueEntry, lost: &AtomicBool) -> anyhow::Result<()> {
        let now = now_ms();
        let body = self.fetch_blob(&entry.blob).await?;
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
        let finals = match routing::expand(&self.store, &active).await {
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
                        .unwrap_or_else(|| format!("rfc822;{}", xtext(&f.original)));
                }
                if r.notify.is_empty() {
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
            for (address, outcome) in self.deliver_local(entry, &local, &body).await {
                outcomes.insert(address.to_ascii_lowercase(), outcome);
            }
            crate::metrics::route_took("local", started.elapsed());
        }
        if lost.load(Ordering::SeqCst) {
            anyhow::bail!("the lease was lost; another worker has the entry");
        }
        if !remote.is_empty() {
            let started = std::time::Instant::now();
            for (address, outcome) in self.deliver_remote(entry, &remote, &body).await {
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

    async fn deliver_local(
        &self,
        entry: &pb::QueueEntry,
        accounts: &[String],
        body: &[u8],
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
            size: body.len() as u64,
        };
        let result = self
            .store
            .call(|ch| {
                let mut msgs = vec![pb::DeliverRequest {
                    header: Some(header.clone()),
                    chunk: vec![],
                }];
                msgs.extend(body.chunks(1 << 20).map(|c| pb::DeliverRequest {
                    header: None,
                    chunk: c.to_vec(),
                }));
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

    /// The hosts to try for `domain`, in order, each with its addresses.
    async fn next_hops(&self, domain: &str) -> Result<Vec<NextHop>, Outcome> {
        let fixed = self
            .config
            .transports
            .get(domain)
            .or(self.config.relay_host.as_ref());
        if let Some(hop) = fixed {
            // A next hop without a port means the SMTP port.
            let hop = &if hop
                .rsplit_once(':')
                .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            {
                hop.clone()
            } else {
                format!("{hop}:25")
            };
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host(hop.as_str())
                .await
                .map(|a| a.collect())
                .unwrap_or_default();
            if addrs.is_empty() {
                return Err(Outcome::deferred(format!(
                    "451 4.4.4 cannot resolve the next hop {hop}"
                )));
            }
            let host = hop.rsplit_once(':').map(|(h, _)| h).unwrap_or(hop);
            return Ok(vec![(host.trim_matches(['[', ']']).to_string(), addrs)]);
        }
        match self.mx.destinations(domain).await {
            Ok(dests) => Ok(dests
                .into_iter()
                .map(|d| {
                    let addrs = d
                        .addrs
                        .iter()
                        .map(|ip| SocketAddr::new(*ip, self.config.remote_port))
                        .collect();
                    (d.host, addrs)
                })
                .collect()),
            Err(MxError::Permanent(why)) => Err(Outcome::failed(format!(
                "550 5.1.2 no mail server for {domain}: {why}"
            ))),
            Err(MxError::Temporary(why)) => Err(Outcome::deferred(format!(
                "451 4.4.3 MX lookup for {domain} failed: {why}"
            ))),
        }
    }

    /// Sends to remote recipients: one transaction per destination host carrying all of its
    /// recipients; on a connection failure or a temporary refusal of the whole transaction
    /// the next MX host is tried (RFC 5321 §5.1).
    async fn deliver_remote(
        &self,
        entry: &pb::QueueEntry,
        rcpts: &[pb::QueueRecipient],
        body: &[u8],
    ) -> Vec<(String, Outcome)> {
        // Group recipients by domain, and domains by their (identical) list of next hops, so
        // that one host gets one copy with all of its recipients.
        let mut by_domain: BTreeMap<String, Vec<pb::QueueRecipient>> = BTreeMap::new();
        for r in rcpts {
            let domain = r
                .address
                .rsplit_once('@')
                .map(|(_, d)| d.to_ascii_lowercase())
                .unwrap_or_default();
            by_domain.entry(domain).or_default().push(r.clone());
        }
        let mut out = Vec::new();
        let mut groups: Vec<(Vec<NextHop>, Vec<pb::QueueRecipient>, bool)> = Vec::new();
        for (domain, list) in by_domain {
            let tls_required = self
                .config
                .tls_required_domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(&domain));
            match self.next_hops(&domain).await {
                Ok(hops) => {
                    if let Some(g) = groups
                        .iter_mut()
                        .find(|(h, _, t)| *h == hops && *t == tls_required)
                    {
                        g.1.extend(list);
                    } else {
                        groups.push((hops, list, tls_required));
                    }
                }
                Err(o) => out.extend(list.into_iter().map(|r| (r.address, o.clone()))),
            }
        }
        for (hops, list, tls_required) in groups {
            out.extend(self.send_via(entry, &hops, &list, body, tls_required).await);
        }
        out
    }

    async fn send_via(
        &self,
        entry: &pb::QueueEntry,
        hops: &[NextHop],
        rcpts: &[pb::QueueRecipient],
        body: &[u8],
        tls_required: bool,
    ) -> Vec<(String, Outcome)> {
        let envelope = Envelope {
            from: entry.sender.clone(),
            mail_params: dsn_mail_params(&entry.mail_params),
            rcpts: rcpts
                .iter()
                .map(|r| Rcpt {
                    address: r.address.clone(),
                    dsn_params: rcpt_dsn_params(r),
                })
                .collect(),
        };
        let config = if tls_required {
            &self.verified
        } else {
            &self.opportunistic
        };
        let mut last = Outcome::deferred("451 4.4.1 no destination could be reached");
        for (host, addrs) in hops {
            for addr in addrs {
                match self
                    .transact(*addr, host, config, tls_required, &envelope, body)
                    .await
                {
                    Ok((tx, tls)) => {
                        let data = tx.data.clone();
                        let via = format!(
                            "{host} [{addr}] {}",
                            if tls { "with TLS" } else { "without TLS" }
                        );
                        return rcpts
                            .iter()
                            .zip(tx.rcpts.iter())
                            .map(|(r, reply)| {
                                let mut o = match (&data, reply.is_positive()) {
                                    (Some(d), true) => Outcome::from_reply(d, host),
                                    _ => Outcome::from_reply(reply, host),
                                };
                                o.via = Some(via.clone());
                                (r.address.clone(), o)
                            })
                            .collect();
                    }
                    Err(TransactError::Whole(o)) => {
                        if o.state == State::Failed {
                            return rcpts
                                .iter()
                                .map(|r| (r.address.clone(), o.clone()))
                                .collect();
                        }
                        tracing::info!(%host, %addr, reply = %o.reply, "trying the next destination");
                        last = o;
                    }
                    Err(TransactError::HostRefused(o)) => {
                        tracing::info!(%host, %addr, reply = %o.reply, "host refused us; trying the next destination");
                        last = o;
                    }
                }
            }
        }
        rcpts
            .iter()
            .map(|r| (r.address.clone(), last.clone()))
            .collect()
    }

    async fn transact(
        &self,
        addr: SocketAddr,
        host: &str,
        config: &ClientConfig,
        tls_required: bool,
        envelope: &Envelope,
        body: &[u8],
    ) -> Result<(crate::smtp::client::Transaction, bool), TransactError> {
        // One client span per transaction, in the delivery's trace, named by the OpenTelemetry
        // conventions for a client call to a server.
        let span = tracing::info_span!(
            "smtp.send",
            otel.name = "SMTP send",
            otel.kind = "client",
            server.address = %host,
            server.port = addr.port(),
            network.peer.address = %addr.ip(),
            mail.recipients = envelope.rcpts.len(),
            tls = tracing::field::Empty,
            reply = tracing::field::Empty,
        );
        async {
            // The pool checks an idle connection with NOOP before handing it out; once a
            // send has started it is never repeated here (the peer may already have it).
            let mut pooled = self
                .pool
                .get(addr, host, config, tls_required)
                .await
                .map_err(|e| TransactError::from_client(&e, host))?;
            let tls = pooled.conn.is_tls();
            tracing::Span::current().record("tls", tls);
            match pooled.conn.send(envelope, body).await {
                Ok(tx) => {
                    // After a clean transaction the client leaves the connection ready for
                    // the next one; a connection that saw a 421 or an error is dropped.
                    if pooled.conn.is_reusable() {
                        self.pool.put(pooled);
                    }
                    let last = tx.data.as_ref().unwrap_or(&tx.mail).to_string();
                    tracing::Span::current().record("reply", last.as_str());
                    if !tx.mail.is_positive() {
                        return Err(TransactError::Whole(Outcome::from_reply(&tx.mail, host)));
                    }
                    Ok((tx, tls))
                }
                Err(e) => Err(TransactError::from_client(&e, host)),
            }
        }
        .instrument(span)
        .await
    }

    /// Queues a DSN to the sender for `failed` recipients; returns its queue id.
    async fn bounce(
        &self,
        entry: &pb::QueueEntry,
        failed: &[&(pb::QueueRecipient, Option<String>)],
        now: i64,
    ) -> anyhow::Result<String> {
        let original = self.fetch_blob(&entry.blob).await?;
        let reports: Vec<dsn::RecipientReport> = failed
            .iter()
            .map(|(r, mta)| {
                let (code, enhanced) = reply_codes(&r.last_reply);
                dsn::RecipientReport {
                    address: r.address.clone(),
                    original_recipient: (!r.orcpt.is_empty()).then(|| r.orcpt.clone()),
                    action: dsn::Action::Failed,
                    status: dsn::status_for_reply(code, enhanced.as_deref()),
                    remote_mta: mta.clone(),
                    diagnostic: Some(format!("smtp; {}", r.last_reply)),
                    last_attempt: Some(now / 1000),
                    will_retry_until: None,
                }
            })
            .collect();
        let envid = mail_param(&entry.mail_params, "ENVID");
        let headers_only =
            mail_param(&entry.mail_params, "RET").is_some_and(|v| v.eq_ignore_ascii_case("HDRS"));
        let message_id = format!(
            "{}.{}.dsn.{}@{}",
            entry.id,
            entry.attempts,
            hex::encode(rand::random::<[u8; 4]>()),
            self.config.hostname
        );
        let boundary = format!("{}/{}", entry.id, hex::encode(rand::random::<[u8; 8]>()));
        let from = format!("MAILER-DAEMON@{}", self.config.hostname);
        let report = dsn::Report {
            reporting_mta: &self.config.hostname,
            envelope_id: envid.as_deref(),
            arrival_date: entry.created_at / 1000,
            sender: &entry.sender,
            from: &from,
            message_id: &message_id,
            boundary: &boundary,
            now: now / 1000,
            recipients: &reports,
            return_content: if headers_only {
                dsn::ReturnContent::HeadersOnly
            } else {
                dsn::ReturnContent::Full
            },
        };
        let message = dsn::build(&report, &original);
        // One DSN per set of failed recipients of an entry, even if the attempt is retried
        // (after a crash before the outcome was recorded, say).
        let mut failed_addresses: Vec<String> = failed
            .iter()
            .map(|(r, _)| r.address.to_ascii_lowercase())
            .collect();
        failed_addresses.sort();
        let request_id = format!(
            "dsn/{}/{}",
            entry.id,
            hex::encode(sha_like(failed_addresses.join(",").as_bytes()))
        );
        let header = pb::EnqueueHeader {
            sender: String::new(),
            recipients: vec![pb::QueueRecipient {
                address: entry.sender.clone(),
                ..Default::default()
            }],
            trace_id: entry.trace_id.clone(),
            mail_params: String::new(),
            received_from: format!("{} (bounce of {})", self.config.hostname, entry.id),
            message_id: format!("<{message_id}>"),
            request_id,
            size: message.len() as u64,
        };
        let created = self
            .store
            .call(|ch| {
                let msgs = vec![pb::EnqueueRequest {
                    header: Some(header.clone()),
                    chunk: message.clone(),
                }];
                async move {
                    QueueClient::new(ch)
                        .enqueue(futures::stream::iter(msgs))
                        .await
                }
            })
            .await;
        match created {
            Ok(c) => Ok(c.into_inner().id),
            // Queued (and perhaps already delivered) by an earlier run of this attempt.
            Err(s) if s.code() == tonic::Code::AlreadyExists => {
                Ok(crate::api::already_enqueued_id(s.message())
                    .unwrap_or_else(|| s.message().to_string()))
            }
            Err(s) => Err(s.into()),
        }
    }
}

/// A short stable digest (FNV-1a, 64 bits) for idempotency keys; not for security.
fn sha_like(data: &[u8]) -> [u8; 8] {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h.to_be_bytes()
}

/// A failure that concerns the whole transaction with one host.
enum TransactError {
    Whole(Outcome),
    /// This host refused us before any transaction (5xx greeting or EHLO): the next MX may
    /// well accept (Postfix's smtp_skip_5xx_greeting).
    HostRefused(Outcome),
}

impl TransactError {
    fn from_client(e: &ClientError, host: &str) -> Self {
        if let ClientError::Rejected { stage, reply } = e {
            if matches!(*stage, "greeting" | "EHLO" | "HELO") {
                return TransactError::HostRefused(Outcome::from_reply(reply, host));
            }
        }
        let mut o = match e {
            ClientError::Rejected { reply, .. } => Outcome::from_reply(reply, host),
            other if other.is_permanent() => Outcome::failed(format!("554 5.0.0 {other}")),
            other => Outcome::deferred(format!("451 4.4.1 {host}: {other}")),
        };
        o.remote_mta = Some(host.to_string());
        TransactError::Whole(o)
    }
}

/// RFC 3461 §4 xtext: `+`, `=` and octets outside 33..=126 as `+HH`.
fn xtext(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (33..=126).contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
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

/// The value of `NAME=value` among MAIL FROM parameters.
fn mail_param(params: &str, name: &str) -> Option<String> {
    params.split_whitespace().find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.eq_ignore_ascii_case(name).then(|| v.to_string())
    })
}

/// The DSN parameters of MAIL FROM that are relayed on (RET, ENVID).
fn dsn_mail_params(params: &str) -> Vec<String> {
    params
        .split_whitespace()
        .filter(|p| {
            let k = p.split('=').next().unwrap_or("");
            k.eq_ignore_ascii_case("RET") || k.eq_ignore_ascii_case("ENVID")
        })
        .map(str::to_string)
        .collect()
}

fn rcpt_dsn_params(r: &pb::QueueRecipient) -> Vec<String> {
    let mut p = Vec::new();
    if !r.notify.is_empty() {
        p.push(format!("NOTIFY={}", r.notify));
    }
    if !r.orcpt.is_empty() {
        p.push(format!("ORCPT={}", r.orcpt));
    }
    p
}

/// The basic and enhanced codes at the start of a recorded reply ("550 5.1.1 ...").
fn reply_codes(reply: &str) -> (u16, Option<String>) {
    let mut words = reply.split_whitespace();
    let code = words.next().and_then(|c| c.parse().ok()).unwrap_or(554);
    let enhanced = words
        .next()
        .filter(|w| w.split('.').count() == 3 && w.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .map(str::to_string);
    (code, enhanced)
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
        assert_eq!(
            mail_param("BODY=8BITMIME RET=HDRS ENVID=x1", "ret").as_deref(),
            Some("HDRS")
        );
        assert_eq!(
            dsn_mail_params("BODY=8BITMIME RET=HDRS ENVID=x1"),
            vec!["RET=HDRS", "ENVID=x1"]
        );
        assert_eq!(
            reply_codes("550 5.1.1 unknown user"),
            (550, Some("5.1.1".into()))
        );
        assert_eq!(reply_codes("451 try later"), (451, None));
    }
}

//! Remote delivery: each recipient domain's MX hosts, one transaction per destination host
//! with all of its recipients over pooled connections, the next MX on a temporary failure,
//! and every recipient's outcome from its own reply.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use tern_proto::store::v1 as pb;
use tern_proto::store::v1::queue_recipient::State;
use tern_smtp_proto::params::MailParams;
use tracing::Instrument;

use super::lease::Lease;
use super::{NextHop, Outcome, Worker};
use crate::mx::MxError;
use crate::smtp::client::{ClientConfig, ClientError, Envelope, Rcpt};

impl Worker {
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
    pub(super) async fn deliver_remote(
        &self,
        entry: &pb::QueueEntry,
        rcpts: &[pb::QueueRecipient],
        body: &[u8],
        lease: &Lease,
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
            out.extend(
                self.send_via(entry, &hops, &list, body, tls_required, lease)
                    .await,
            );
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
        lease: &Lease,
    ) -> Vec<(String, Outcome)> {
        let envelope = Envelope {
            from: entry.sender.clone(),
            mail_params: MailParams::from_stored(&entry.mail_params).dsn_params(),
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
        let outgoing = Outgoing {
            envelope: &envelope,
            body,
            lease,
        };
        let mut last = Outcome::deferred("451 4.4.1 no destination could be reached");
        for (host, addrs) in hops {
            for addr in addrs {
                // An attempt whose lease may have lapsed sends nothing more, to no host.
                if !lease.held() {
                    let o = Outcome::deferred(
                        "451 4.4.7 lease on the entry may have lapsed; attempt abandoned",
                    );
                    return rcpts
                        .iter()
                        .map(|r| (r.address.clone(), o.clone()))
                        .collect();
                }
                match self
                    .transact(*addr, host, config, tls_required, &outgoing)
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
        outgoing: &Outgoing<'_>,
    ) -> Result<(crate::smtp::client::Transaction, bool), TransactError> {
        let Outgoing {
            envelope,
            body,
            lease,
        } = *outgoing;
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
            // The final dot only while the lease holds: a server that has the message
            // whole must not get it again from the worker that takes the entry over.
            match pooled
                .conn
                .send_guarded(envelope, body, &|| lease.held())
                .await
            {
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
}

/// What one attempt sends to each host it tries: the envelope, the message, and the lease
/// that must still hold when the final dot goes.
#[derive(Clone, Copy)]
struct Outgoing<'a> {
    envelope: &'a Envelope,
    body: &'a [u8],
    lease: &'a Lease,
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

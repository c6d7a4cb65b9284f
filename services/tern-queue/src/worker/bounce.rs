//! Bounces: the delivery status notification (RFC 3464) for recipients that failed, queued
//! to the sender once per set of failed recipients, however often the attempt is retried.

use tern_proto::store::v1 as pb;
use tern_proto::store::v1::queue_client::QueueClient;
use tern_smtp_proto::enhanced;
use tern_smtp_proto::params::{MailParams, Ret};

use super::Worker;
use crate::dsn;

impl Worker {
    /// Queues a DSN to the sender for `failed` recipients; returns its queue id.
    pub(super) async fn bounce(
        &self,
        entry: &pb::QueueEntry,
        failed: &[&(pb::QueueRecipient, Option<String>)],
        now: i64,
    ) -> anyhow::Result<String> {
        let original = self.fetch_blob(&entry.blob).await?;
        let reports: Vec<dsn::RecipientReport> = failed
            .iter()
            .map(|(r, mta)| {
                let (code, given) = enhanced::codes_of_text(&r.last_reply);
                dsn::RecipientReport {
                    address: r.address.clone(),
                    original_recipient: (!r.orcpt.is_empty()).then(|| r.orcpt.clone()),
                    action: dsn::Action::Failed,
                    status: enhanced::status_for_reply(code, given.as_deref()),
                    remote_mta: mta.clone(),
                    diagnostic: Some(format!("smtp; {}", r.last_reply)),
                    last_attempt: Some(now / 1000),
                    will_retry_until: None,
                }
            })
            .collect();
        let params = MailParams::from_stored(&entry.mail_params);
        let headers_only = params.ret == Some(Ret::Hdrs);
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
            envelope_id: params.envid.as_deref(),
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
                    chunk: message.clone().into(),
                }];
                async move {
                    QueueClient::new(ch)
                        .enqueue(futures::stream::iter(msgs))
                        .await
                }
            })
            .await;
        // Queued (and perhaps already delivered, `completed`) by an earlier run of this
        // attempt: the store answers with that entry's id.
        Ok(created?.into_inner().id)
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

//! The SMTP part of the chaos load: senders through tern-smtp (to the local user, and every
//! other message to a remote recipient that tern-queue relays to the [`super::sink`]), and
//! the wait for the queue to drain once the faults end.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tern_history::mail::{Outcome, Submitted};
use tern_proto::store::v1 as pb;
use tern_proto::store::v1::queue_client::QueueClient as StoreQueueClient;
use tern_testkit::smtp_client::{submit, Submission};
use tern_testkit::StoreCluster;
use tern_trust::Role;

use super::{digest, Record, ACCOUNT};

/// The hosted alias the senders use for remote mail: the MX takes mail for hosted
/// addresses only, and the worker expands it to [`REMOTE_TARGET`].
pub const REMOTE_RCPT: &str = "fwd@example.test";
/// Where the alias leads: a domain relayed to the sink.
pub const REMOTE_TARGET: &str = "far@remote.test";

/// Creates the alias [`REMOTE_RCPT`] → [`REMOTE_TARGET`].
pub async fn add_remote_alias(cluster: &StoreCluster) -> anyhow::Result<()> {
    let leader = cluster.wait_leader(Duration::from_secs(30)).await?;
    let mut dir = tern_proto::store::v1::directory_client::DirectoryClient::new(
        cluster.channel(leader, Role::Admin).await?,
    );
    dir.add_alias(pb::AddAliasRequest {
        address: REMOTE_RCPT.into(),
        targets: vec![REMOTE_TARGET.into()],
    })
    .await?;
    Ok(())
}

/// A sender through tern-smtp: each message has its own Message-ID; after an unknown
/// outcome (a 4xx or no answer to the end of DATA) it is sent again, unchanged, up to three
/// more times, as a sending MTA would.
pub struct SmtpSender {
    pub id: u32,
    pub addr: String,
    pub record: Arc<Mutex<Record>>,
    pub started: Instant,
}

impl SmtpSender {
    pub async fn run(self, until: Instant) {
        let mut sent = 0u64;
        while Instant::now() < until {
            sent += 1;
            let message_id = format!("<s{}-{sent}@chaos.test>", self.id);
            // Every other message goes to a remote recipient (through a hosted alias), through
            // the queue to the sink.
            let remote = sent.is_multiple_of(2);
            let to = if remote { REMOTE_RCPT } else { ACCOUNT };
            let body = format!(
                "Message-ID: {message_id}\r\nSubject: chaos smtp\r\n\r\nsender {} message {sent}\r\n",
                self.id
            )
            .into_bytes();
            self.record
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .submissions(remote)
                .insert(
                    message_id.clone(),
                    Submitted {
                        message_id: message_id.clone(),
                        digest: digest(&body),
                        outcomes: Vec::new(),
                    },
                );
            for _ in 0..4 {
                let answer = submit(
                    &self.addr,
                    "chaos@remote.test",
                    to,
                    &body,
                    Duration::from_secs(30),
                )
                .await;
                let ret = self.started.elapsed().as_micros() as u64;
                let outcome = {
                    let mut r = self.record.lock().unwrap_or_else(|p| p.into_inner());
                    r.operations += 1;
                    let outcome = match &answer {
                        Submission::Accepted => {
                            r.successes.push(ret);
                            Outcome::Accepted
                        }
                        Submission::Refused(why) => {
                            let why = super::shape(&format!("SMTP: {why}"));
                            *r.refused_causes.entry(why).or_default() += 1;
                            Outcome::Refused
                        }
                        Submission::Unknown(why) => {
                            r.unknown += 1;
                            let why = super::shape(&format!("SMTP: {why}"));
                            *r.unknown_causes.entry(why).or_default() += 1;
                            Outcome::Unknown
                        }
                    };
                    if let Some(s) = r.submissions(remote).get_mut(&message_id) {
                        s.outcomes.push(outcome);
                    }
                    outcome
                };
                match outcome {
                    Outcome::Accepted => break,
                    // Not taken: a sender would try again later; this one moves on.
                    Outcome::Refused => {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        break;
                    }
                    Outcome::Unknown => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            }
        }
    }
}

/// Waits until the store's queue is empty (every accepted message delivered), for up to
/// `limit`.
pub async fn queue_drained(cluster: &StoreCluster, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let leader = cluster.wait_leader(Duration::from_secs(30)).await?;
        let mut q = StoreQueueClient::new(cluster.channel(leader, Role::Admin).await?);
        if let Ok(list) = q.list(pb::ListQueueRequest { limit: 10 }).await {
            if list.into_inner().entries.is_empty() {
                return Ok(());
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the queue still holds entries {limit:?} after the faults ended"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

//! The store-API clients of `tern-chaos`: on any node at random, APPEND (each message with
//! its own Message-ID and delivery id, sent again unchanged after an unknown outcome), STORE
//! +FLAGS/-FLAGS of a keyword and FETCH FLAGS, each recorded for the checker.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tern_history::mail::{Appended, Outcome, Submitted, UidSeen};
use tern_history::models::{FlagsAnswer, FlagsOp};
use tern_history::Operation;
use tern_proto::client::TracedChannel;
use tern_proto::store::v1 as pb;
use tern_proto::store::v1::messages_client::MessagesClient;
use tern_testkit::append;

use super::faults::Rng;
use super::{cause, digest, outcome_unknown, Record, ACCOUNT, KEYWORDS, OP_TIMEOUT};

/// The set of one UID.
fn one_uid(uid: u32) -> Option<pb::UidSet> {
    Some(pb::UidSet {
        ranges: vec![pb::UidRange {
            first: uid,
            last: uid,
        }],
    })
}

/// Pause after a failed operation, so a client does not spin against a node that is down.
pub const BACKOFF: Duration = Duration::from_millis(100);

pub struct Client {
    pub id: u32,
    pub rng: Rng,
    pub nodes: Vec<MessagesClient<TracedChannel>>,
    pub record: Arc<Mutex<Record>>,
    pub started: Instant,
    pub sent: u64,
}

impl Client {
    fn now(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    fn pick(&mut self) -> MessagesClient<TracedChannel> {
        let i = self.rng.below(self.nodes.len() as u64) as usize;
        self.nodes[i].clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub async fn run(mut self, until: Instant) {
        while Instant::now() < until {
            let known = self.lock().known.clone();
            let ok = match self.rng.below(4) {
                0 | 1 => self.append().await,
                _ if known.is_empty() => self.append().await,
                2 => {
                    let uid = known[self.rng.below(known.len() as u64) as usize];
                    self.store(uid).await
                }
                _ => {
                    let uid = known[self.rng.below(known.len() as u64) as usize];
                    self.fetch_flags(uid).await
                }
            };
            if !ok {
                tokio::time::sleep(BACKOFF).await;
            }
        }
    }

    /// Appends one message; after an unknown outcome, submits it again with the same
    /// Message-ID and delivery id (up to three times), as a careful client does.
    async fn append(&mut self) -> bool {
        self.sent += 1;
        let message_id = format!("<c{}-{}@chaos.test>", self.id, self.sent);
        let body = format!(
            "Message-ID: {message_id}\r\nSubject: chaos\r\n\r\nclient {} message {}\r\n",
            self.id, self.sent
        )
        .into_bytes();
        self.lock().submitted.insert(
            message_id.clone(),
            Submitted {
                message_id: message_id.clone(),
                digest: digest(&body),
                outcomes: Vec::new(),
            },
        );
        // The message may take effect in any of its submissions: its interval starts at the
        // first (a resubmission that finds it stored answers with the first one's UID).
        let first_call = self.now();
        for _ in 0..4 {
            let mut node = self.pick();
            let result = tokio::time::timeout(
                OP_TIMEOUT,
                append(&mut node, ACCOUNT, "INBOX", &body, &message_id),
            )
            .await;
            let ret = self.now();
            let outcome = {
                let mut r = self.lock();
                r.operations += 1;
                let outcome = match result {
                    Ok(Ok(resp)) => {
                        r.appends.push(Appended {
                            mailbox: "INBOX".into(),
                            call: first_call,
                            ret,
                            uid_validity: resp.uid_validity,
                            uid: resp.uid,
                        });
                        r.uids.push(UidSeen {
                            mailbox: "INBOX".into(),
                            uid_validity: resp.uid_validity,
                            uid: resp.uid,
                            message_id: message_id.clone(),
                        });
                        r.known.push(resp.uid);
                        r.successes.push(ret);
                        Outcome::Accepted
                    }
                    Ok(Err(ref s)) if !outcome_unknown(s) => {
                        *r.refused_causes.entry(cause(&result)).or_default() += 1;
                        Outcome::Refused
                    }
                    _ => {
                        r.unknown += 1;
                        *r.unknown_causes.entry(cause(&result)).or_default() += 1;
                        Outcome::Unknown
                    }
                };
                if let Some(s) = r.submitted.get_mut(&message_id) {
                    s.outcomes.push(outcome);
                }
                outcome
            };
            match outcome {
                Outcome::Accepted => return true,
                Outcome::Refused => return false,
                Outcome::Unknown => tokio::time::sleep(BACKOFF).await,
            }
        }
        false
    }

    async fn store(&mut self, uid: u32) -> bool {
        let flag = KEYWORDS[self.rng.below(KEYWORDS.len() as u64) as usize].to_string();
        let add = self.rng.below(2) == 0;
        let set: BTreeSet<String> = [flag.clone()].into();
        let input = if add {
            FlagsOp::Add(set)
        } else {
            FlagsOp::Remove(set)
        };
        let mut node = self.pick();
        let call = self.now();
        let req = pb::StoreFlagsRequest {
            account: ACCOUNT.into(),
            mailbox: "INBOX".into(),
            uids: one_uid(uid),
            mode: if add {
                pb::store_flags_request::Mode::Add
            } else {
                pb::store_flags_request::Mode::Remove
            } as i32,
            flags: vec![flag],
            unchanged_since: 0,
        };
        let result = tokio::time::timeout(OP_TIMEOUT, node.store_flags(req)).await;
        let ret = self.now();
        let client = self.id;
        let mut r = self.lock();
        r.operations += 1;
        let op = match result {
            Ok(Ok(resp)) => {
                r.successes.push(ret);
                let answer = resp
                    .into_inner()
                    .updated
                    .into_iter()
                    .find(|m| m.uid == uid)
                    .map(|m| FlagsAnswer::Flags(m.flags.into_iter().collect()));
                Operation {
                    client,
                    call,
                    ret: Some(ret),
                    input,
                    output: answer,
                }
            }
            Ok(Err(s)) if !outcome_unknown(&s) => return false,
            _ => {
                r.unknown += 1;
                *r.unknown_causes.entry(cause(&result)).or_default() += 1;
                Operation::unknown(client, call, input)
            }
        };
        let ok = op.ret.is_some();
        r.flag_ops.push((uid, op));
        ok
    }

    async fn fetch_flags(&mut self, uid: u32) -> bool {
        let mut node = self.pick();
        let call = self.now();
        let req = pb::ListMessagesRequest {
            account: ACCOUNT.into(),
            mailbox: "INBOX".into(),
            uids: one_uid(uid),
            changed_since: 0,
        };
        let result = tokio::time::timeout(OP_TIMEOUT, node.list(req)).await;
        let ret = self.now();
        let client = self.id;
        let mut r = self.lock();
        r.operations += 1;
        match result {
            Ok(Ok(resp)) => {
                r.successes.push(ret);
                let answer = match resp
                    .into_inner()
                    .messages
                    .into_iter()
                    .find(|m| m.uid == uid)
                {
                    Some(m) => FlagsAnswer::Flags(m.flags.into_iter().collect()),
                    None => FlagsAnswer::Gone,
                };
                r.flag_ops.push((
                    uid,
                    Operation::done(client, call, ret, FlagsOp::Fetch, answer),
                ));
                true
            }
            // A read changes nothing: one that failed, whatever the cause, had no outcome to
            // know, and is left out of the history.
            _ => false,
        }
    }
}

//! The IMAP and POP3 part of the chaos load, through a real tern-access node: IMAP workers
//! APPEND into a mailbox of their own, MOVE messages to a second one and delete (STORE
//! \Deleted, UID EXPUNGE) from either; a POP3 worker APPENDs into another user's INBOX over
//! IMAP and deletes with DELE and QUIT. Every change is one [`Step`] of its message, with
//! the outcome the client saw: a tagged OK (+OK) is acknowledged, a tagged NO or BAD (-ERR)
//! refused, and a broken or timed-out exchange unknown. APPENDUID and COPYUID feed the UID
//! checks. [`read_placed`] reads every mailbox back at the end for
//! [`tern_history::placement::check_placement`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tern_history::mail::{Appended, Found, Outcome, UidSeen};
use tern_history::placement::{FoundIn, Placed, Step};
use tern_testkit::imap_client::{append_uid, definitely_refused, number_after, Imap, Reply};
use tern_testkit::{fetch, list_all, StoreCluster};

use super::faults::Rng;
use super::{digest, find_line, Record, BACKOFF, OP_TIMEOUT};

/// The IMAP workers' user (`W<n>` and `A<n>` are worker n's mailboxes).
pub const IMAP_USER: &str = "bob";
/// The POP3 worker's user.
pub const POP3_USER: &str = "carol";

fn address(user: &str) -> String {
    format!("{user}@example.test")
}

/// A place as the checker names it: the user and the mailbox.
pub fn place(user: &str, mailbox: &str) -> String {
    format!("{user}/{mailbox}")
}

/// Every mailbox the workers use, by user, for the final read.
pub fn mailboxes(imap_workers: u32) -> Vec<(&'static str, String)> {
    let mut v: Vec<(&'static str, String)> = (0..imap_workers)
        .flat_map(|k| [(IMAP_USER, format!("W{k}")), (IMAP_USER, format!("A{k}"))])
        .collect();
    v.push((POP3_USER, "INBOX".into()));
    v
}

pub async fn login(port: u16, user: &str) -> anyhow::Result<Imap> {
    let mut s = tokio::time::timeout(OP_TIMEOUT, Imap::connect(port, 16 << 10)).await??;
    tokio::time::timeout(OP_TIMEOUT, s.login(&address(user), &format!("pw-{user}"))).await??;
    // CONDSTORE on: SELECT reports HIGHESTMODSEQ, which must never go back in a session.
    let mut reply = Reply::default();
    tokio::time::timeout(OP_TIMEOUT, s.command("ENABLE CONDSTORE", &mut reply)).await??;
    Ok(s)
}

/// Creates the IMAP workers' mailboxes before the faults start.
pub async fn prepare(port: u16, imap_workers: u32) -> anyhow::Result<()> {
    let mut s = login(port, IMAP_USER).await?;
    let mut reply = Reply::default();
    for (_, mailbox) in mailboxes(imap_workers)
        .into_iter()
        .filter(|(u, _)| *u == IMAP_USER)
    {
        s.command(&format!("CREATE {mailbox}"), &mut reply).await?;
    }
    Ok(())
}

/// How an IMAP exchange ended.
pub fn outcome(result: &Result<anyhow::Result<()>, tokio::time::error::Elapsed>) -> Outcome {
    match result {
        Ok(Ok(())) => Outcome::Accepted,
        Ok(Err(e)) if definitely_refused(e) => Outcome::Refused,
        _ => Outcome::Unknown,
    }
}

pub fn why(result: &Result<anyhow::Result<()>, tokio::time::error::Elapsed>) -> String {
    match result {
        Err(_) => format!("no answer within {OP_TIMEOUT:?}"),
        Ok(Err(e)) => format!("{e:#}").chars().take(70).collect(),
        Ok(Ok(())) => String::new(),
    }
}

/// The three numbers of a `[COPYUID v src dst]` code in any line of the reply (single UIDs).
fn copy_uid(reply: &Reply) -> Option<(u32, u32)> {
    let line = reply
        .untagged
        .iter()
        .chain([&reply.tagged])
        .find(|l| l.contains("[COPYUID "))?;
    let at = line.find("[COPYUID ")?;
    let mut parts = line[at + 9..].split([' ', ']']);
    let validity = parts.next()?.parse().ok()?;
    let _source = parts.next()?;
    Some((validity, parts.next()?.parse().ok()?))
}

/// A message a worker believes present: its UID where it is, and its Message-ID.
#[derive(Clone)]
pub struct Held {
    pub uid: u32,
    pub message_id: String,
}

pub struct ImapWorker {
    /// Whose mailboxes ([`IMAP_USER`], or [`POP3_USER`] for the POP3 worker's appends).
    pub user: &'static str,
    /// The Message-ID prefix (`i` for IMAP workers, `p` for the POP3 worker).
    pub prefix: &'static str,
    pub id: u32,
    pub port: u16,
    pub rng: Rng,
    pub record: Arc<Mutex<Record>>,
    pub started: Instant,
    /// HIGHESTMODSEQ of each mailbox as this session's SELECTs saw it.
    pub modseqs: BTreeMap<String, u64>,
}

impl ImapWorker {
    fn now(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one operation and files its step under its message.
    pub fn record(
        &self,
        message_id: &str,
        step: Step,
        result: &Result<anyhow::Result<()>, tokio::time::error::Elapsed>,
    ) -> Outcome {
        self.record_outcome(message_id, step, outcome(result), || {
            format!("IMAP: {}", why(result))
        })
    }

    /// [`ImapWorker::record`] for an outcome already classified.
    pub fn record_outcome(
        &self,
        message_id: &str,
        step: Step,
        o: Outcome,
        cause: impl FnOnce() -> String,
    ) -> Outcome {
        let ret = self.now();
        let mut r = self.lock();
        r.operations += 1;
        match o {
            Outcome::Accepted => r.successes.push(ret),
            Outcome::Unknown => {
                r.unknown += 1;
                *r.unknown_causes.entry(cause()).or_default() += 1;
            }
            Outcome::Refused => {}
        }
        if let Some(p) = r.placed.get_mut(message_id) {
            p.steps.push((step, o));
        }
        o
    }

    pub async fn run(mut self, until: Instant) {
        let (work, archive) = (format!("W{}", self.id), format!("A{}", self.id));
        let mut session: Option<(Imap, String)> = None;
        let mut in_work: Vec<Held> = Vec::new();
        let mut in_archive: Vec<Held> = Vec::new();
        let mut sent = 0u64;
        while Instant::now() < until {
            let (mut s, selected) = match session.take() {
                Some(s) => s,
                None => match login(self.port, self.user).await {
                    Ok(s) => {
                        self.modseqs.clear();
                        (s, String::new())
                    }
                    Err(_) => {
                        tokio::time::sleep(BACKOFF).await;
                        continue;
                    }
                },
            };
            let choice = self.rng.below(10);
            let kept = if choice < 4 || in_work.is_empty() {
                sent += 1;
                self.append(&mut s, &work, sent, &mut in_work)
                    .await
                    .then_some(selected)
            } else if choice < 7 {
                let i = self.rng.below(in_work.len() as u64) as usize;
                let held = in_work.swap_remove(i);
                self.move_one(
                    &mut s,
                    &selected,
                    held,
                    &work,
                    &archive,
                    &mut in_work,
                    &mut in_archive,
                )
                .await
            } else {
                let from_archive = !in_archive.is_empty() && self.rng.below(2) == 0;
                let (list, mailbox) = if from_archive {
                    (&mut in_archive, &archive)
                } else {
                    (&mut in_work, &work)
                };
                let i = self.rng.below(list.len() as u64) as usize;
                let held = list.swap_remove(i);
                self.delete(&mut s, &selected, held, mailbox, list).await
            };
            match kept {
                Some(selected) => session = Some((s, selected)),
                // The exchange broke: a client that lost track reconnects.
                None => tokio::time::sleep(BACKOFF).await,
            }
        }
    }

    /// APPENDs a new message into `work`; whether the session is still usable.
    pub async fn append(
        &mut self,
        s: &mut Imap,
        work: &str,
        n: u64,
        in_work: &mut Vec<Held>,
    ) -> bool {
        let message_id = format!("<{}{}-{n}@chaos.test>", self.prefix, self.id);
        let body = format!(
            "Message-ID: {message_id}\r\nSubject: chaos imap\r\n\r\nworker {}{} message {n}\r\n",
            self.prefix, self.id
        )
        .into_bytes();
        self.lock().placed.insert(
            message_id.clone(),
            Placed {
                message_id: message_id.clone(),
                digest: digest(&body),
                steps: Vec::new(),
            },
        );
        let call = self.now();
        let mut reply = Reply::default();
        let result = tokio::time::timeout(OP_TIMEOUT, s.append(work, &body, &mut reply)).await;
        let place_name = place(self.user, work);
        let o = self.record(&message_id, Step::Append(place_name.clone()), &result);
        if o == Outcome::Accepted {
            let uid = append_uid(&reply.tagged);
            let validity = number_after(&reply.tagged, "[APPENDUID ");
            if let (Some(uid), Some(uid_validity)) = (uid, validity) {
                self.saw(&place_name, call, uid_validity, uid, &message_id);
                in_work.push(Held { uid, message_id });
            }
        }
        o != Outcome::Unknown
    }

    /// Notes a UID the server gave a message (APPENDUID, COPYUID).
    fn saw(&self, mailbox: &str, call: u64, uid_validity: u32, uid: u32, message_id: &str) {
        let ret = self.now();
        let mut r = self.lock();
        r.appends.push(Appended {
            mailbox: mailbox.into(),
            call,
            ret,
            uid_validity,
            uid,
        });
        r.uids.push(UidSeen {
            mailbox: mailbox.into(),
            uid_validity,
            uid,
            message_id: message_id.into(),
        });
    }

    #[allow(clippy::too_many_arguments)]
    async fn move_one(
        &mut self,
        s: &mut Imap,
        selected: &str,
        held: Held,
        work: &str,
        archive: &str,
        in_work: &mut Vec<Held>,
        in_archive: &mut Vec<Held>,
    ) -> Option<String> {
        if !self.select(s, selected, work).await? {
            in_work.push(held);
            return Some(String::new());
        }
        let call = self.now();
        let mut reply = Reply::default();
        let cmd = format!("UID MOVE {} {archive}", held.uid);
        let result = tokio::time::timeout(OP_TIMEOUT, s.command(&cmd, &mut reply)).await;
        let step = Step::Move {
            from: place(self.user, work),
            to: place(self.user, archive),
        };
        match self.record(&held.message_id, step, &result) {
            Outcome::Accepted => {
                if let Some((validity, uid)) = copy_uid(&reply) {
                    let name = place(self.user, archive);
                    self.saw(&name, call, validity, uid, &held.message_id);
                    in_archive.push(Held {
                        uid,
                        message_id: held.message_id,
                    });
                }
                Some(work.to_string())
            }
            Outcome::Refused => {
                in_work.push(held);
                Some(work.to_string())
            }
            Outcome::Unknown => None,
        }
    }

    async fn delete(
        &mut self,
        s: &mut Imap,
        selected: &str,
        held: Held,
        mailbox: &str,
        list: &mut Vec<Held>,
    ) -> Option<String> {
        if !self.select(s, selected, mailbox).await? {
            list.push(held);
            return Some(String::new());
        }
        let mut reply = Reply::default();
        let flag = format!("UID STORE {} +FLAGS.SILENT (\\Deleted)", held.uid);
        match tokio::time::timeout(OP_TIMEOUT, s.command(&flag, &mut reply)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) if definitely_refused(&e) => {
                list.push(held);
                return Some(mailbox.to_string());
            }
            // The flag may be set; nothing expunges it but a UID EXPUNGE of its UID, which
            // this client, having lost track of it, will not send.
            _ => return None,
        }
        let cmd = format!("UID EXPUNGE {}", held.uid);
        let result = tokio::time::timeout(OP_TIMEOUT, s.command(&cmd, &mut reply)).await;
        let step = Step::Delete(place(self.user, mailbox));
        match self.record(&held.message_id, step, &result) {
            Outcome::Accepted => Some(mailbox.to_string()),
            Outcome::Refused => {
                list.push(held);
                Some(mailbox.to_string())
            }
            Outcome::Unknown => None,
        }
    }
}

/// The number of a `[HIGHESTMODSEQ n]` response code (a 63-bit value: not a UID).
fn highest_modseq(line: &str) -> Option<u64> {
    let at = line.find("[HIGHESTMODSEQ ")? + "[HIGHESTMODSEQ ".len();
    let digits: String = line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

impl ImapWorker {
    /// SELECTs `mailbox` unless it is selected: Some(true) when it is, Some(false) when the
    /// server refused, None when the exchange broke. A HIGHESTMODSEQ lower than this session
    /// saw before for the mailbox is recorded as a violation (RFC 7162 section 3.1.2: the
    /// mod-sequence only grows).
    async fn select(&mut self, s: &mut Imap, selected: &str, mailbox: &str) -> Option<bool> {
        if selected == mailbox {
            return Some(true);
        }
        let mut reply = Reply::default();
        let cmd = format!("SELECT {mailbox}");
        match tokio::time::timeout(OP_TIMEOUT, s.command(&cmd, &mut reply)).await {
            Ok(Ok(())) => {
                let highest = reply.untagged.iter().find_map(|l| highest_modseq(l));
                if let Some(h) = highest {
                    let before = self.modseqs.insert(mailbox.to_string(), h).unwrap_or(0);
                    if h < before {
                        self.lock().modseq_backwards.push(format!(
                            "{} {mailbox}: HIGHESTMODSEQ {h} after {before}",
                            address(self.user)
                        ));
                    }
                }
                Some(true)
            }
            Ok(Err(e)) if definitely_refused(&e) => Some(false),
            _ => None,
        }
    }
}

/// Reads every worker mailbox back from the leader (once the cluster has settled): each
/// message where it is, and the UIDs it has there.
pub async fn read_placed(
    cluster: &StoreCluster,
    imap_workers: u32,
) -> anyhow::Result<(Vec<FoundIn>, Vec<UidSeen>)> {
    let leader = cluster.wait_leader(Duration::from_secs(60)).await?;
    let mut found = Vec::new();
    let mut uids = Vec::new();
    for (user, mailbox) in mailboxes(imap_workers) {
        let account = address(user);
        let mut msgs = cluster.messages(leader, &account).await?;
        let listing = list_all(&mut msgs, &account, &mailbox).await?;
        let uid_validity = listing.mailbox.as_ref().map_or(0, |m| m.uid_validity);
        let name = place(user, &mailbox);
        for m in &listing.messages {
            let body = fetch(&mut msgs, &account, &mailbox, m.uid).await?;
            let message_id =
                tern_mail::header::first_field(&body, "Message-ID").unwrap_or_default();
            uids.push(UidSeen {
                mailbox: name.clone(),
                uid_validity,
                uid: m.uid,
                message_id: message_id.clone(),
            });
            let sent = find_line(&body, b"Message-ID:").map_or(&body[..], |at| &body[at..]);
            found.push(FoundIn {
                mailbox: name.clone(),
                message: Found {
                    message_id,
                    digest: digest(sent),
                },
            });
        }
    }
    Ok((found, uids))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_codes_are_read() {
        let reply = Reply {
            untagged: vec!["* OK [COPYUID 1700 12 40] moved".into()],
            tagged: "OK done".into(),
        };
        assert_eq!(copy_uid(&reply), Some((1700, 40)));
        let none = Reply {
            untagged: vec![],
            tagged: "OK no such message".into(),
        };
        assert_eq!(copy_uid(&none), None);
        assert_eq!(
            highest_modseq("* OK [HIGHESTMODSEQ 98765432109] highest"),
            Some(98_765_432_109)
        );
        assert_eq!(highest_modseq("* OK [UIDNEXT 5] next"), None);
    }
}

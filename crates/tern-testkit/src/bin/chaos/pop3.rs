//! The POP3 worker of the chaos load: it APPENDs messages into [`POP3_USER`]'s INBOX over
//! IMAP (an [`ImapWorker`] of its own) and deletes them over POP3: USER, PASS, LIST, RETR
//! of one message to read its Message-ID, DELE, QUIT. A deletion takes effect only in
//! POP3's UPDATE state (RFC 1939 section 6), so a session that breaks before QUIT deleted
//! nothing (refused), a +OK to QUIT is acknowledged, and a QUIT without an answer unknown.

use std::time::{Duration, Instant};

use tern_history::mail::Outcome;
use tern_history::placement::Step;
use tern_testkit::imap_client::Imap;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::mailboxes::{login, place, Held, ImapWorker, POP3_USER};
use super::{BACKOFF, OP_TIMEOUT};

/// Longest POP3 answer line read.
const MAX_LINE: u64 = 4096;

pub struct Pop3Worker {
    /// Appends and records (its user is [`POP3_USER`]).
    pub imap: ImapWorker,
    pub pop3_port: u16,
}

/// One POP3 connection.
struct Pop3 {
    r: BufReader<TcpStream>,
}

impl Pop3 {
    async fn connect(port: u16) -> anyhow::Result<Self> {
        let s = TcpStream::connect(("127.0.0.1", port)).await?;
        let mut c = Pop3 {
            r: BufReader::new(s),
        };
        c.status().await?;
        Ok(c)
    }

    /// Reads a status line; an error unless it is +OK.
    async fn status(&mut self) -> anyhow::Result<String> {
        let mut line = String::new();
        (&mut self.r).take(MAX_LINE).read_line(&mut line).await?;
        anyhow::ensure!(!line.is_empty(), "connection closed");
        anyhow::ensure!(line.starts_with("+OK"), "{}", line.trim_end());
        Ok(line)
    }

    async fn command(&mut self, cmd: &str) -> anyhow::Result<String> {
        self.r
            .get_mut()
            .write_all(format!("{cmd}\r\n").as_bytes())
            .await?;
        self.status().await
    }

    /// The lines of a multi-line answer, dot-stuffing undone, up to the terminating dot.
    async fn lines(&mut self) -> anyhow::Result<Vec<String>> {
        let mut out = Vec::new();
        loop {
            let mut line = String::new();
            (&mut self.r).take(MAX_LINE).read_line(&mut line).await?;
            anyhow::ensure!(!line.is_empty(), "connection closed in a multi-line answer");
            let line = line.trim_end_matches(['\r', '\n']);
            if line == "." {
                return Ok(out);
            }
            out.push(line.strip_prefix('.').unwrap_or(line).to_string());
        }
    }
}

impl Pop3Worker {
    pub async fn run(mut self, until: Instant) {
        let mut imap: Option<Imap> = None;
        let mut sent = 0u64;
        while Instant::now() < until {
            // Two appends for each deletion, so the INBOX holds some messages.
            let s = match imap.take() {
                Some(s) => Some(s),
                None => login(self.imap.port, POP3_USER).await.ok(),
            };
            let Some(mut s) = s else {
                tokio::time::sleep(BACKOFF).await;
                continue;
            };
            let mut held: Vec<Held> = Vec::new();
            sent += 1;
            if self.imap.append(&mut s, "INBOX", sent, &mut held).await {
                imap = Some(s);
            }
            if sent.is_multiple_of(2) {
                self.delete_one().await;
            }
        }
    }

    /// One POP3 session that deletes one of this worker's messages.
    async fn delete_one(&mut self) {
        let Ok(pop) = tokio::time::timeout(OP_TIMEOUT, Pop3::connect(self.pop3_port)).await else {
            return;
        };
        let Ok(mut pop) = pop else { return };
        let chosen = tokio::time::timeout(OP_TIMEOUT, self.choose(&mut pop)).await;
        let Ok(Ok(Some((n, message_id)))) = chosen else {
            return;
        };
        if !matches!(
            tokio::time::timeout(OP_TIMEOUT, pop.command(&format!("DELE {n}"))).await,
            Ok(Ok(_))
        ) {
            // Not in UPDATE state: nothing was deleted.
            return;
        }
        let quit = tokio::time::timeout(OP_TIMEOUT, pop.command("QUIT")).await;
        let (outcome, why) = match &quit {
            Ok(Ok(_)) => (Outcome::Accepted, String::new()),
            // -ERR [SYS/TEMP] (RFC 3206): the server's own backend failed; the deletion may
            // or may not have been made.
            Ok(Err(e)) if e.to_string().starts_with("-ERR") && !e.to_string().contains("[SYS/") => {
                (Outcome::Refused, String::new())
            }
            Ok(Err(e)) => (Outcome::Unknown, e.to_string()),
            Err(_) => (Outcome::Unknown, format!("no answer within {OP_TIMEOUT:?}")),
        };
        let step = Step::Delete(place(POP3_USER, "INBOX"));
        let why: String = why.chars().take(70).collect();
        self.imap
            .record_outcome(&message_id, step, outcome, || format!("POP3 QUIT: {why}"));
        if outcome != Outcome::Accepted {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Logs in, picks a message at random and reads its Message-ID; None when the maildrop
    /// is empty or the message is not one of this worker's.
    async fn choose(&mut self, pop: &mut Pop3) -> anyhow::Result<Option<(u64, String)>> {
        pop.command(&format!("USER {POP3_USER}@example.test"))
            .await?;
        pop.command(&format!("PASS pw-{POP3_USER}")).await?;
        pop.command("LIST").await?;
        let listed = pop.lines().await?;
        if listed.is_empty() {
            return Ok(None);
        }
        let pick = self.imap.rng.below(listed.len() as u64) as usize;
        let Some(n) = listed[pick]
            .split(' ')
            .next()
            .and_then(|n| n.parse::<u64>().ok())
        else {
            return Ok(None);
        };
        pop.command(&format!("RETR {n}")).await?;
        let message_id = pop
            .lines()
            .await?
            .into_iter()
            .find_map(|l| l.strip_prefix("Message-ID: ").map(|v| v.trim().to_string()));
        Ok(message_id
            .filter(|id| id.starts_with(&format!("<{}{}-", self.imap.prefix, self.imap.id)))
            .map(|id| (n, id)))
    }
}

//! A small IMAP client for the benchmarks and `tern-chaos`: tagged commands, responses read
//! up to the tagged status line, `{n}` literals inside them skipped by length. It is not a
//! conformance reference (the tests use Python's imaplib and async-imap for that); it is
//! fast and tells a refusal (a tagged NO or BAD: [`Refused`]) from a broken exchange (every
//! other error), which is what a client needs to know whether a command may have taken
//! effect.

use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Bound on any one exchange with a server.
pub const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// The server answered the command with a tagged NO or BAD: it did not take effect.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// Whether `err` (from [`Imap`]) is a tagged NO or BAD rather than a broken exchange.
pub fn refused(err: &anyhow::Error) -> bool {
    err.downcast_ref::<Refused>().is_some()
}

/// Whether `err` is a refusal that says the command did not take effect: not NO
/// [UNAVAILABLE] or [SERVERBUG] (RFC 5530), which a server answers when its own backend
/// failed and the change may or may not have been made.
pub fn definitely_refused(err: &anyhow::Error) -> bool {
    err.downcast_ref::<Refused>()
        .is_some_and(|r| !r.0.contains("[UNAVAILABLE]") && !r.0.contains("[SERVERBUG]"))
}

/// One IMAP connection.
pub struct Imap {
    r: BufReader<TcpStream>,
    tag: u64,
    /// Current tag, as sent.
    tag_text: String,
    /// Scratch for one physical line.
    raw: Vec<u8>,
    /// Scratch for the command being sent.
    out: Vec<u8>,
}

/// The untagged lines of the last response (literal contents left out) and its tagged line.
#[derive(Default)]
pub struct Reply {
    pub untagged: Vec<String>,
    pub tagged: String,
}

/// The length of the literal announced at the end of `line` (`{n}` or `{n+}`).
pub fn literal_len(line: &[u8]) -> Option<u64> {
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|b| *b == b'{')?;
    let digits = &inner[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

impl Imap {
    /// Connects and reads the greeting (`* OK` or `* PREAUTH`).
    pub async fn connect(port: u16, buffer: usize) -> anyhow::Result<Self> {
        let stream = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(("127.0.0.1", port)))
            .await
            .context("connect timed out")??;
        stream.set_nodelay(true)?;
        let mut c = Imap {
            r: BufReader::with_capacity(buffer, stream),
            tag: 0,
            tag_text: String::new(),
            raw: Vec::with_capacity(256),
            out: Vec::with_capacity(256),
        };
        let mut greeting = Vec::new();
        tokio::time::timeout(IO_TIMEOUT, c.read_line(&mut greeting))
            .await
            .context("no greeting")??;
        if !(greeting.starts_with(b"* OK") || greeting.starts_with(b"* PREAUTH")) {
            bail!("greeting: {}", String::from_utf8_lossy(&greeting));
        }
        Ok(c)
    }

    /// Reads one logical response line into `out`, CRLF removed; the contents of literals
    /// are skipped (only the `{n}` announcing each stays).
    async fn read_line(&mut self, out: &mut Vec<u8>) -> anyhow::Result<()> {
        out.clear();
        loop {
            self.raw.clear();
            let n = self.r.read_until(b'\n', &mut self.raw).await?;
            if n == 0 {
                bail!(
                    "connection closed by the server (after {:?})",
                    String::from_utf8_lossy(out)
                );
            }
            let mut body = &self.raw[..];
            body = body.strip_suffix(b"\n").unwrap_or(body);
            body = body.strip_suffix(b"\r").unwrap_or(body);
            out.extend_from_slice(body);
            match literal_len(body) {
                Some(len) => {
                    let skipped =
                        tokio::io::copy(&mut (&mut self.r).take(len), &mut tokio::io::sink())
                            .await?;
                    if skipped < len {
                        bail!("connection closed inside a literal");
                    }
                }
                None => return Ok(()),
            }
        }
    }

    fn next_tag(&mut self) {
        self.tag += 1;
        self.tag_text = format!("a{}", self.tag);
    }

    /// Reads lines until the tagged one (or, with `continuation`, a `+` line, which returns
    /// `Ok(true)`). Fails unless the tagged status is OK.
    async fn read_reply(&mut self, reply: &mut Reply, continuation: bool) -> anyhow::Result<bool> {
        let mut line = Vec::with_capacity(256);
        loop {
            self.read_line(&mut line).await?;
            if line.starts_with(b"* ") {
                reply
                    .untagged
                    .push(String::from_utf8_lossy(&line).into_owned());
                continue;
            }
            if line.starts_with(b"+") {
                if continuation {
                    return Ok(true);
                }
                bail!(
                    "unexpected continuation request: {}",
                    String::from_utf8_lossy(&line)
                );
            }
            let tag = self.tag_text.as_bytes();
            if line.len() > tag.len() && line.starts_with(tag) && line[tag.len()] == b' ' {
                let text = String::from_utf8_lossy(&line[tag.len() + 1..]).into_owned();
                if !text.starts_with("OK") {
                    return Err(Refused(format!("{} {}", self.tag_text, text)).into());
                }
                reply.tagged = text;
                return Ok(false);
            }
            bail!(
                "unexpected response line: {}",
                String::from_utf8_lossy(&line)
            );
        }
    }

    /// Sends `cmd` with a fresh tag and reads its response; fails unless it is OK.
    pub async fn command(&mut self, cmd: &str, reply: &mut Reply) -> anyhow::Result<()> {
        reply.untagged.clear();
        reply.tagged.clear();
        self.next_tag();
        self.out.clear();
        self.out.extend_from_slice(self.tag_text.as_bytes());
        self.out.push(b' ');
        self.out.extend_from_slice(cmd.as_bytes());
        self.out.extend_from_slice(b"\r\n");
        let exchange = async {
            self.r.get_mut().write_all(&self.out).await?;
            self.read_reply(reply, false).await
        };
        tokio::time::timeout(IO_TIMEOUT, exchange)
            .await
            .with_context(|| format!("{cmd}: no answer within {IO_TIMEOUT:?}"))?
            .with_context(|| cmd.to_string())?;
        Ok(())
    }

    /// APPEND with a synchronizing literal: waits for the server's `+` before the message.
    pub async fn append(
        &mut self,
        mailbox: &str,
        msg: &[u8],
        reply: &mut Reply,
    ) -> anyhow::Result<()> {
        reply.untagged.clear();
        reply.tagged.clear();
        self.next_tag();
        let head = format!("{} APPEND {mailbox} {{{}}}\r\n", self.tag_text, msg.len());
        let exchange = async {
            self.r.get_mut().write_all(head.as_bytes()).await?;
            if !self.read_reply(reply, true).await? {
                bail!("the server answered before the literal: {}", reply.tagged);
            }
            let w = self.r.get_mut();
            w.write_all(msg).await?;
            w.write_all(b"\r\n").await?;
            self.read_reply(reply, false).await?;
            Ok::<_, anyhow::Error>(())
        };
        tokio::time::timeout(IO_TIMEOUT, exchange)
            .await
            .context("APPEND: no answer in time")?
            .context("APPEND")?;
        Ok(())
    }

    /// Starts IDLE (RFC 2177): sends it and waits for the server's `+`; untagged lines then
    /// come from [`Imap::next_line`].
    pub async fn idle(&mut self) -> anyhow::Result<()> {
        self.next_tag();
        let line = format!("{} IDLE\r\n", self.tag_text);
        let mut reply = Reply::default();
        let exchange = async {
            self.r.get_mut().write_all(line.as_bytes()).await?;
            self.read_reply(&mut reply, true).await
        };
        let continued = tokio::time::timeout(IO_TIMEOUT, exchange)
            .await
            .context("IDLE: no answer in time")??;
        anyhow::ensure!(continued, "IDLE ended at once: {}", reply.tagged);
        Ok(())
    }

    /// The next response line (an untagged one while idling), CRLF removed.
    pub async fn next_line(&mut self) -> anyhow::Result<String> {
        let mut line = Vec::with_capacity(64);
        self.read_line(&mut line).await?;
        Ok(String::from_utf8_lossy(&line).into_owned())
    }

    pub async fn login(&mut self, user: &str, password: &str) -> anyhow::Result<()> {
        let mut reply = Reply::default();
        self.command(&format!("LOGIN \"{user}\" \"{password}\""), &mut reply)
            .await
    }
}

/// The number after `key ` in `text`.
pub fn number_after(text: &str, key: &str) -> Option<u32> {
    let at = text.find(key)? + key.len();
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The UID in an `[APPENDUID <uidvalidity> <uid>]` response code (RFC 4315).
pub fn append_uid(text: &str) -> Option<u32> {
    let at = text.find("[APPENDUID ")?;
    text[at..].split([' ', ']']).nth(2)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_at_line_end() {
        assert_eq!(literal_len(b"* 1 FETCH (BODY[] {123}"), Some(123));
        assert_eq!(literal_len(b"* 1 FETCH (BODY[] {7+}"), Some(7));
        assert_eq!(literal_len(b"* OK done"), None);
        assert_eq!(literal_len(b"* OK {x}"), None);
        assert_eq!(literal_len(b"* OK {}"), None);
    }

    #[test]
    fn numbers_in_responses() {
        assert_eq!(
            number_after("* 3 FETCH (UID 17 FLAGS ())", "UID "),
            Some(17)
        );
        assert_eq!(number_after("* 3 FETCH (FLAGS ())", "UID "), None);
        assert_eq!(
            append_uid("OK [APPENDUID 1700000000 101] APPEND completed"),
            Some(101)
        );
        assert_eq!(append_uid("OK APPEND completed"), None);
    }

    #[test]
    fn refusals_are_told_apart() {
        let no: anyhow::Error = Refused("a1 NO [TRYCREATE] no such mailbox".into()).into();
        assert!(refused(&no.context("APPEND")));
        assert!(!refused(&anyhow::anyhow!(
            "connection closed by the server"
        )));
        let unavailable: anyhow::Error =
            Refused("a2 NO [UNAVAILABLE] the store is unavailable, try again".into()).into();
        assert!(refused(&unavailable) && !definitely_refused(&unavailable));
        let no: anyhow::Error = Refused("a3 NO [NONEXISTENT] no such mailbox".into()).into();
        assert!(definitely_refused(&no));
    }
}

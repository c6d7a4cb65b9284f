//! One SMTP conversation (RFC 5321 §4.1, §3.3 transaction state) on one connection: the
//! command loop, the policy of each listener, AUTH (RFC 4954), STARTTLS (RFC 3207), DATA and
//! BDAT (RFC 3030) streamed to the queue, limits and time-outs.
//!
//! Replies are written to a buffer and flushed when the client has nothing more pipelined
//! (RFC 2920 §3.2), so a pipelined batch gets its replies in one write.
//!
//! This module holds the connection loop and the dispatch; the commands live by concern in
//! [`envelope`] (MAIL, RCPT, VRFY, EXPN), [`transfer`] (DATA, BDAT) and [`auth`] (AUTH).

use std::net::SocketAddr;

mod auth;
mod envelope;
mod transfer;

use tern_net::connection::{Connection, Read};
use tern_proto::queue::v1 as qpb;
use tern_smtp_proto::command::{self, Command, Mailbox, ParseError};
use tern_smtp_proto::params::MailParams;
use tern_smtp_proto::reply::Reply;

use crate::backend::{Account, MessageSink};
use crate::compose::Composer;
use crate::data::LineNormalizer;
use crate::metrics;
use crate::server::{Listener, SmtpContext};

/// Longest command line, CRLF included (RFC 5321 §4.5.3.1.4).
pub const MAX_COMMAND_LINE: usize = 512;
/// Longest AUTH line or SASL response (RFC 4954 §4: 12,288 octets).
pub const MAX_AUTH_LINE: usize = 12_288;
/// Longest MAIL or RCPT line: SIZE (RFC 1870), AUTH= (RFC 4954 §5) and the DSN parameters
/// (RFC 3461) each extend the 512 octets of a plain command.
pub const MAX_PATH_LINE: usize = 2_048;
/// Octets of decoded message collected before they go to the queue.
const FORWARD_CHUNK: usize = 64 << 10;

/// The envelope of the transaction in progress.
struct Transaction {
    from: Option<Mailbox>,
    /// The sender checks' Authentication-Results field, first in the message.
    auth_results: Option<String>,
    /// The MAIL parameters; SMTPUTF8 among them decides whether addresses may be UTF-8.
    params: MailParams,
    rcpts: Vec<qpb::Recipient>,
    rcpt_attempted: bool,
    span: tracing::Span,
    trace_id: String,
    bdat: Option<Bdat>,
}

/// A BDAT transfer in progress.
struct Bdat {
    /// When the first chunk began: the message time limit counts from here.
    started: tokio::time::Instant,
    sink: Option<MessageSink>,
    normalizer: LineNormalizer,
    composer: Composer,
    octets: u64,
    too_big: bool,
}

/// What the loop does after a reply.
enum Flow {
    Continue,
    Close,
    StartTls,
}

/// One connection's conversation.
pub struct Session<'a> {
    ctx: &'a SmtpContext,
    listener: Listener,
    peer: SocketAddr,
    conn: Connection,
    helo: Option<(String, bool)>,
    auth: Option<Account>,
    tx: Option<Transaction>,
    errors: u32,
    auth_failures: u32,
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

impl<'a> Session<'a> {
    /// A session over an accepted (and, for submissions, already encrypted) connection.
    pub fn new(
        ctx: &'a SmtpContext,
        listener: Listener,
        peer: SocketAddr,
        conn: Connection,
    ) -> Self {
        Self {
            ctx,
            listener,
            peer,
            conn,
            helo: None,
            auth: None,
            tx: None,
            errors: 0,
            auth_failures: 0,
        }
    }

    fn reply(&mut self, reply: Reply) {
        metrics::reply(self.listener.name(), reply.code);
        // Protocol errors count toward the bound, and so do unknown or relay-refused
        // recipients (counted where RCPT answers): an address prober runs into it. As with
        // Postfix's hard error limit ("errors without delivering mail"), a message accepted
        // clears the count, so a sender with a few stale addresses per message is not cut off.
        if matches!(reply.code, 500..=504 | 530 | 535 | 538 | 555) {
            self.errors += 1;
        }
        reply.write_to(self.conn.out());
    }

    /// The final reply to a message (DATA's end, BDAT LAST): an accepted one clears the
    /// error count.
    fn reply_to_message(&mut self, reply: Reply) {
        if reply.code == 250 {
            self.errors = 0;
        }
        self.reply(reply);
    }

    /// Writes the queued replies, within the connection's write time-out.
    async fn flush(&mut self) -> std::io::Result<()> {
        self.conn.flush().await
    }

    /// Runs the conversation to its end, or until STARTTLS: then the connection is returned
    /// (its `220` sent) for the caller to upgrade it and run a new session over it.
    pub async fn run(mut self, greet: bool) -> std::io::Result<Option<Connection>> {
        let host = self.ctx.hostname.clone();
        if greet && self.ctx.drain.is_draining() {
            self.reply(self.shutting_down_reply());
            self.flush().await?;
            return Ok(None);
        }
        if greet && !self.ctx.backend.store_up() {
            metrics::refused(self.listener.name());
            self.reply(Reply::plain(
                421,
                vec![format!("{host} Service not available, try again later")],
            ));
            self.flush().await?;
            return Ok(None);
        }
        if greet {
            self.reply(Reply::plain(220, vec![format!("{host} ESMTP Tern")]));
            self.flush().await?;
        }
        let drain = self.ctx.drain.clone();
        loop {
            // A node that is shutting down answers the next command with 421 (RFC 5321
            // §3.8): a command already pipelined is read first, and a message in DATA or
            // BDAT is never waited on here, so it completes.
            let read = tokio::select! {
                biased;
                // Not between the chunks of a BDAT message: its LAST chunk completes it.
                () = drain.draining(), if !self.conn.has_pipelined_input() && !self.in_bdat() => {
                    self.reply(self.shutting_down_reply());
                    self.conn.close().await;
                    return Ok(None);
                }
                read = self.conn.read_line(MAX_AUTH_LINE, self.ctx.command_timeout) => read?,
            };
            let flow = match read {
                Read::TimedOut => {
                    self.reply(self.timeout_reply());
                    Flow::Close
                }
                Read::Eof => {
                    let _ = self.flush().await;
                    return Ok(None);
                }
                Read::TooLong => {
                    self.reply(Reply::new(500, "5.5.2", "Line too long"));
                    Flow::Continue
                }
                Read::Done => {
                    // At most MAX_AUTH_LINE octets, copied so the session can be borrowed.
                    let line = self.conn.line().to_vec();
                    self.command_line(&line).await?
                }
            };
            let flow = if self.errors >= self.ctx.max_errors && !matches!(flow, Flow::Close) {
                self.reply(Reply::new(
                    421,
                    "4.7.0",
                    format!("{host} Error: too many errors"),
                ));
                Flow::Close
            } else {
                flow
            };
            match flow {
                // RFC 2920 §3.2: replies wait while more pipelined commands are already
                // here, and go out before the server would block for input.
                Flow::Continue => self.conn.flush_unless_pipelined().await?,
                Flow::Close => {
                    self.conn.close().await;
                    return Ok(None);
                }
                Flow::StartTls => {
                    self.flush().await?;
                    // RFC 3207 §4.2: after the handshake the server forgets everything it
                    // learned before, so the caller upgrades the connection (refusing
                    // input pipelined behind STARTTLS) and starts a new session over it.
                    return Ok(Some(self.conn));
                }
            }
        }
    }

    /// One command line (without its CRLF): its length bound by verb, then the command.
    async fn command_line(&mut self, line: &[u8]) -> std::io::Result<Flow> {
        let verb = |v: &[u8]| line.len() >= 5 && line[..5].eq_ignore_ascii_case(v);
        let limit = if verb(b"AUTH ") {
            MAX_AUTH_LINE
        } else if verb(b"MAIL ") || verb(b"RCPT ") {
            MAX_PATH_LINE
        } else {
            MAX_COMMAND_LINE
        };
        if line.len() + 2 > limit {
            self.reply(Reply::new(500, "5.5.2", "Line too long"));
            return Ok(Flow::Continue);
        }
        if verb(b"BDAT ") || line.eq_ignore_ascii_case(b"BDAT") {
            return match command::parse(line) {
                Ok(cmd) => self.dispatch(Ok(cmd), false).await,
                Err(_) => {
                    // The chunk's length is unknown: its octets would be read as commands.
                    // RFC 3030 leaves closing as the only safe answer.
                    self.reply(Reply::new(
                        501,
                        "5.5.4",
                        "Syntax: BDAT size [LAST]; closing",
                    ));
                    Ok(Flow::Close)
                }
            };
        }
        self.dispatch(command::parse(line), verb(b"MAIL ")).await
    }

    async fn dispatch(
        &mut self,
        parsed: Result<Command, ParseError>,
        is_mail: bool,
    ) -> std::io::Result<Flow> {
        let cmd = match parsed {
            Ok(c) => c,
            Err(ParseError::Unknown) => {
                self.reply(Reply::new(500, "5.5.2", "Error: command not recognized"));
                return Ok(Flow::Continue);
            }
            Err(ParseError::Syntax(why)) => {
                self.reply(Reply::new(501, "5.5.4", format!("Syntax error: {why}")));
                return Ok(Flow::Continue);
            }
            Err(ParseError::BadAddress(why)) => {
                // X.1.7 is the sender's address, X.1.3 a recipient's (RFC 3463).
                let enhanced = if is_mail { "5.1.7" } else { "5.1.3" };
                self.reply(Reply::new(
                    501,
                    enhanced,
                    format!("Bad address syntax: {why}"),
                ));
                return Ok(Flow::Continue);
            }
        };
        let host = self.ctx.hostname.clone();
        match cmd {
            Command::Helo(domain) => {
                self.tx = None;
                self.helo = Some((domain, false));
                self.reply(Reply::plain(250, vec![host]));
            }
            Command::Ehlo(domain) => {
                self.tx = None;
                let lines = self.ehlo_lines(&domain);
                self.helo = Some((domain, true));
                self.reply(Reply::plain(250, lines));
            }
            Command::Mail { from, params } => self.mail(from, params).await,
            Command::Rcpt { to, params } => self.rcpt(to, params).await,
            Command::Data => return self.data().await,
            Command::Bdat { size, last } => return self.bdat(size, last).await,
            Command::Rset => {
                self.tx = None;
                self.reply(Reply::new(250, "2.0.0", "Ok"));
            }
            Command::Noop => self.reply(Reply::new(250, "2.0.0", "Ok")),
            Command::Quit => {
                self.reply(Reply::new(221, "2.0.0", format!("{host} Bye")));
                return Ok(Flow::Close);
            }
            Command::Help(_) => self.reply(Reply {
                code: 214,
                enhanced: Some("2.0.0".into()),
                lines: vec![
                    "Commands: HELO EHLO MAIL RCPT DATA BDAT RSET VRFY EXPN NOOP HELP QUIT STARTTLS AUTH".into(),
                    "See RFC 5321; https://www.rfc-editor.org/rfc/rfc5321".into(),
                ],
            }),
            Command::Vrfy(arg) => self.vrfy(&arg).await,
            Command::Expn(arg) => self.expn(&arg).await,
            // RFC 5321 §4.1 withdrew TURN, SEND, SOML and SAML; §4.2.4 gives 502 as their
            // answer, which is what this is (the issue asks for exactly this reply).
            Command::Obsolete(verb) => self.reply(Reply::new(
                502,
                "5.5.1",
                format!("{verb} is obsolete (RFC 5321) and not offered"),
            )),
            Command::StartTls => {
                if self.conn.is_tls() {
                    self.reply(Reply::new(503, "5.5.1", "TLS already active"));
                } else if self.ctx.tls.is_none() {
                    self.reply(Reply::new(502, "5.5.1", "STARTTLS not available"));
                } else {
                    self.reply(Reply::new(220, "2.0.0", "Ready to start TLS"));
                    return Ok(Flow::StartTls);
                }
            }
            Command::Auth { mechanism, initial } => return self.authenticate(&mechanism, initial).await,
        }
        Ok(Flow::Continue)
    }

    fn auth_offered(&self) -> bool {
        self.listener != Listener::Mx && (self.conn.is_tls() || self.ctx.plaintext_auth)
    }

    fn ehlo_lines(&self, domain: &str) -> Vec<String> {
        let mut lines = vec![
            format!("{} Hello {domain} [{}]", self.ctx.hostname, self.peer.ip()),
            "PIPELINING".into(),
            format!("SIZE {}", self.ctx.max_message_size),
            "8BITMIME".into(),
            "SMTPUTF8".into(),
            "ENHANCEDSTATUSCODES".into(),
            "CHUNKING".into(),
            "DSN".into(),
        ];
        if self.ctx.tls.is_some() && !self.conn.is_tls() {
            lines.push("STARTTLS".into());
        }
        if self.auth_offered() && self.auth.is_none() {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        lines.push("HELP".into());
        lines
    }

    /// Whether a BDAT message is under way (chunks received, LAST not yet).
    fn in_bdat(&self) -> bool {
        self.tx.as_ref().is_some_and(|t| t.bdat.is_some())
    }

    /// The 421 for a node that is shutting down (RFC 5321 §3.8, RFC 3463 X.3.2).
    fn shutting_down_reply(&self) -> Reply {
        Reply::new(
            421,
            "4.3.2",
            format!(
                "{} Service shutting down, try again later",
                self.ctx.hostname
            ),
        )
    }

    /// The 421 for a client that stayed silent too long (RFC 5321 §4.5.3.2).
    fn timeout_reply(&self) -> Reply {
        Reply::new(
            421,
            "4.4.2",
            format!("{} Error: timeout exceeded", self.ctx.hostname),
        )
    }
}

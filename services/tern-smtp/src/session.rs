//! One SMTP conversation (RFC 5321 §4.1, §3.3 transaction state) on one connection: the
//! command loop, the policy of each listener, AUTH (RFC 4954), STARTTLS (RFC 3207), DATA and
//! BDAT (RFC 3030) streamed to the queue, limits and time-outs.
//!
//! Replies are written to a buffer and flushed when the client has nothing more pipelined
//! (RFC 2920 §3.2), so a pipelined batch gets its replies in one write.

use std::net::SocketAddr;

use base64::Engine;
use tern_net::conn::Conn;
use tern_net::line::{read_line, Line};
use tern_proto::queue::v1 as qpb;
use tern_proto::store::v1::resolve_response::Kind;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tracing::Instrument;

use crate::backend::{Account, MessageSink, SinkError};
use crate::command::{self, Command, Mailbox, Param, ParseError};
use crate::compose::Composer;
use crate::data::{DataDecoder, LineNormalizer, Outcome};
use crate::metrics;
use crate::reply::Reply;
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
    mail_params: Vec<String>,
    smtputf8: bool,
    rcpts: Vec<qpb::Recipient>,
    rcpt_attempted: bool,
    span: tracing::Span,
    trace_id: String,
    bdat: Option<Bdat>,
}

/// A BDAT transfer in progress.
struct Bdat {
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
    reader: BufReader<Conn>,
    out: Vec<u8>,
    helo: Option<(String, bool)>,
    auth: Option<Account>,
    tx: Option<Transaction>,
    errors: u32,
    auth_failures: u32,
}

fn io_timeout(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{what} timed out"))
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

impl<'a> Session<'a> {
    /// A session over an accepted (and, for submissions, already encrypted) connection.
    pub fn new(ctx: &'a SmtpContext, listener: Listener, peer: SocketAddr, conn: Conn) -> Self {
        Self {
            ctx,
            listener,
            peer,
            reader: BufReader::with_capacity(16 << 10, conn),
            out: Vec::with_capacity(4096),
            helo: None,
            auth: None,
            tx: None,
            errors: 0,
            auth_failures: 0,
        }
    }

    fn reply(&mut self, reply: Reply) {
        metrics::reply(self.listener.name(), reply.code);
        // Protocol errors count toward the bound; a refused recipient does not (a sender with
        // many stale addresses is not an attacker), as Postfix's hard error limit does not
        // for ordinary rejections.
        if matches!(reply.code, 500..=504 | 530 | 535 | 538 | 555) {
            self.errors += 1;
        }
        reply.write_to(&mut self.out);
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let timeout = self.ctx.command_timeout;
        let out = &self.out;
        let conn = self.reader.get_mut();
        let written = tokio::time::timeout(timeout, async {
            conn.write_all(out).await?;
            conn.flush().await
        })
        .await;
        self.out.clear();
        written.map_err(|_| io_timeout("write"))?
    }

    /// Runs the conversation to its end, or until STARTTLS: then the plain connection is
    /// returned for the caller to run the handshake and a new session over it.
    pub async fn run(mut self, greet: bool) -> std::io::Result<Option<Conn>> {
        let host = self.ctx.hostname.clone();
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
        let mut line = Vec::with_capacity(512);
        loop {
            let read = tokio::time::timeout(
                self.ctx.command_timeout,
                read_line(&mut self.reader, &mut line, MAX_AUTH_LINE),
            )
            .await;
            let flow = match read {
                Err(_) => {
                    self.reply(self.timeout_reply());
                    Flow::Close
                }
                Ok(Err(e)) => return Err(e),
                Ok(Ok(Line::Eof)) => {
                    let _ = self.flush().await;
                    return Ok(None);
                }
                Ok(Ok(Line::TooLong)) => {
                    self.reply(Reply::new(500, "5.5.2", "Line too long"));
                    Flow::Continue
                }
                Ok(Ok(Line::Complete)) => {
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
                        Flow::Continue
                    } else if verb(b"BDAT ") || line.eq_ignore_ascii_case(b"BDAT") {
                        match command::parse(&line) {
                            Ok(cmd) => self.dispatch(Ok(cmd), false).await?,
                            Err(_) => {
                                // The chunk's length is unknown: its octets would be read as
                                // commands. RFC 3030 leaves closing as the only safe answer.
                                self.reply(Reply::new(
                                    501,
                                    "5.5.4",
                                    "Syntax: BDAT size [LAST]; closing",
                                ));
                                Flow::Close
                            }
                        }
                    } else {
                        let parsed = command::parse(&line);
                        self.dispatch(parsed, verb(b"MAIL ")).await?
                    }
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
                Flow::Continue => {
                    // RFC 2920 §3.2: replies wait while more pipelined commands are already
                    // here, and go out before the server would block for input.
                    if !self.reader.buffer().contains(&b'\n') {
                        self.flush().await?;
                    }
                }
                Flow::Close => {
                    self.flush().await?;
                    let _ = self.reader.get_mut().shutdown().await;
                    return Ok(None);
                }
                Flow::StartTls => {
                    // Anything pipelined after STARTTLS would be taken as if it came over TLS
                    // (CVE-2011-0411): such a client is cut off.
                    let pipelined = !self.reader.buffer().is_empty();
                    self.flush().await?;
                    if pipelined {
                        return Ok(None);
                    }
                    // RFC 3207 §4.2: after the handshake the server forgets everything it
                    // learned before, so the caller starts a new session over TLS.
                    return Ok(Some(self.reader.into_inner()));
                }
            }
        }
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
                if self.reader.get_ref().is_tls() {
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
        self.listener != Listener::Mx && (self.reader.get_ref().is_tls() || self.ctx.plaintext_auth)
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
        if self.ctx.tls.is_some() && !self.reader.get_ref().is_tls() {
            lines.push("STARTTLS".into());
        }
        if self.auth_offered() && self.auth.is_none() {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        lines.push("HELP".into());
        lines
    }

    async fn mail(&mut self, from: Option<Mailbox>, params: Vec<Param>) {
        let Some((_, esmtp)) = &self.helo else {
            return self.reply(Reply::new(503, "5.5.1", "Error: send HELO/EHLO first"));
        };
        let esmtp = *esmtp;
        if self.tx.is_some() {
            return self.reply(Reply::new(503, "5.5.1", "Error: nested MAIL command"));
        }
        if self.listener != Listener::Mx && self.auth.is_none() {
            if !self.auth_offered() {
                return self.reply(Reply::new(
                    530,
                    "5.7.0",
                    "Must issue a STARTTLS command first",
                ));
            }
            return self.reply(Reply::new(530, "5.7.0", "Authentication required"));
        }
        if !esmtp && !params.is_empty() {
            return self.reply(Reply::new(555, "5.5.4", "Parameters need EHLO"));
        }
        let mut smtputf8 = false;
        let mut kept = Vec::new();
        let mut seen: Vec<&str> = Vec::new();
        for p in &params {
            if seen.contains(&p.keyword.as_str()) {
                return self.reply(Reply::new(
                    501,
                    "5.5.4",
                    format!("Duplicate parameter {}", p.keyword),
                ));
            }
            seen.push(&p.keyword);
            let value = p.value.as_deref();
            match (p.keyword.as_str(), value) {
                ("SIZE", Some(v)) => {
                    let Ok(size) = v.parse::<u64>() else {
                        return self.reply(Reply::new(501, "5.5.4", "Bad SIZE value"));
                    };
                    if size > self.ctx.max_message_size {
                        return self.reply(Reply::new(
                            552,
                            "5.3.4",
                            "Message size exceeds fixed maximum message size",
                        ));
                    }
                }
                ("BODY", Some(v))
                    if v.eq_ignore_ascii_case("7BIT") || v.eq_ignore_ascii_case("8BITMIME") =>
                {
                    kept.push(format!("BODY={}", v.to_ascii_uppercase()));
                }
                ("BODY", _) => {
                    return self.reply(Reply::new(555, "5.5.4", "Unsupported BODY value"));
                }
                ("SMTPUTF8", None) => {
                    smtputf8 = true;
                    kept.push("SMTPUTF8".into());
                }
                ("RET", Some(v))
                    if v.eq_ignore_ascii_case("FULL") || v.eq_ignore_ascii_case("HDRS") =>
                {
                    kept.push(format!("RET={}", v.to_ascii_uppercase()));
                }
                ("ENVID", Some(v)) if v.len() <= 100 && command::decode_xtext(v).is_some() => {
                    kept.push(format!("ENVID={v}"));
                }
                // RFC 4954 §5: accepted, and not trusted from anyone.
                ("AUTH", Some(_)) => {}
                _ => {
                    return self.reply(Reply::new(
                        555,
                        "5.5.4",
                        format!("Unsupported or malformed parameter {}", p.keyword),
                    ));
                }
            }
        }
        if let Some(f) = &from {
            if !f.is_ascii() && !smtputf8 {
                return self.reply(Reply::new(553, "5.6.7", "Non-ASCII address needs SMTPUTF8"));
            }
            if f.domain.is_empty() {
                return self.reply(Reply::new(501, "5.1.7", "Bad sender address syntax"));
            }
        }
        if let (Some(account), Some(f)) = (self.auth.clone(), &from) {
            match self.ctx.backend.owns(&account, &f.address()).await {
                Ok(true) => {}
                Ok(false) => {
                    return self.reply(Reply::new(
                        553,
                        "5.7.1",
                        format!(
                            "Sender address rejected: not owned by user {}",
                            account.address
                        ),
                    ))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "sender check failed");
                    return self.reply(Reply::new(451, "4.3.0", "Temporary lookup failure"));
                }
            }
        }
        let span = tracing::info_span!(
            "smtp.transaction",
            listener = self.listener.name(),
            peer = %self.peer,
            from = from.as_ref().map(|m| m.address()).unwrap_or_default(),
            queue_id = tracing::field::Empty,
        );
        let trace_id = span
            .in_scope(tern_telemetry::grpc::current_trace_id)
            .unwrap_or_else(|| random_hex(16));
        self.tx = Some(Transaction {
            from,
            mail_params: kept,
            smtputf8,
            rcpts: Vec::new(),
            rcpt_attempted: false,
            span,
            trace_id,
            bdat: None,
        });
        self.reply(Reply::new(250, "2.1.0", "Ok"));
    }

    async fn rcpt(&mut self, to: Mailbox, params: Vec<Param>) {
        let max = self.ctx.max_recipients;
        let Some(tx) = self.tx.as_mut() else {
            return self.reply(Reply::new(503, "5.5.1", "Error: need MAIL command"));
        };
        if tx.bdat.is_some() {
            return self.reply(Reply::new(503, "5.5.1", "Error: BDAT in progress"));
        }
        tx.rcpt_attempted = true;
        if tx.rcpts.len() >= max {
            return self.reply(Reply::new(452, "4.5.3", "Error: too many recipients"));
        }
        let smtputf8 = tx.smtputf8;
        let mut notify = String::new();
        let mut orcpt = String::new();
        let mut seen: Vec<&str> = Vec::new();
        for p in &params {
            if seen.contains(&p.keyword.as_str()) {
                return self.reply(Reply::new(
                    501,
                    "5.5.4",
                    format!("Duplicate parameter {}", p.keyword),
                ));
            }
            seen.push(&p.keyword);
            match (p.keyword.as_str(), p.value.as_deref()) {
                ("NOTIFY", Some(v)) if valid_notify(v) => notify = v.to_ascii_uppercase(),
                ("ORCPT", Some(v)) if valid_orcpt(v) => orcpt = v.to_string(),
                _ => {
                    return self.reply(Reply::new(
                        555,
                        "5.5.4",
                        format!("Unsupported or malformed parameter {}", p.keyword),
                    ))
                }
            }
        }
        if !to.is_ascii() && !smtputf8 {
            return self.reply(Reply::new(553, "5.6.7", "Non-ASCII address needs SMTPUTF8"));
        }
        let address = if to.domain.is_empty() {
            self.ctx.postmaster.clone()
        } else {
            to.address()
        };
        let resolved = match self.ctx.backend.resolve(&address).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "recipient lookup failed");
                return self.reply(Reply::new(
                    451,
                    "4.3.0",
                    "Temporary lookup failure, try again later",
                ));
            }
        };
        let kind = Kind::try_from(resolved.kind).unwrap_or(Kind::Unknown);
        let reply = match kind {
            Kind::LocalUser | Kind::List => Reply::new(250, "2.1.5", "Ok"),
            Kind::Alias => {
                if self.forwards_elsewhere(&resolved.targets).await {
                    Reply::new(251, "2.1.5", "User not local; will forward")
                } else {
                    Reply::new(250, "2.1.5", "Ok")
                }
            }
            Kind::Remote if self.auth.is_some() => Reply::new(250, "2.1.5", "Ok"),
            Kind::Remote => Reply::new(554, "5.7.1", format!("<{address}>: Relay access denied")),
            Kind::Unknown => Reply::new(
                550,
                "5.1.1",
                format!("<{address}>: Recipient address rejected: User unknown"),
            ),
        };
        if reply.code < 300 {
            if let Some(tx) = self.tx.as_mut() {
                tx.rcpts.push(qpb::Recipient {
                    address,
                    notify,
                    orcpt,
                });
            }
        }
        self.reply(reply);
    }

    /// Whether an alias sends anything outside the hosted domains (RFC 5321's 251).
    async fn forwards_elsewhere(&self, targets: &[String]) -> bool {
        for t in targets.iter().take(16) {
            if let Ok(r) = self.ctx.backend.resolve(t).await {
                if r.kind == Kind::Remote as i32 {
                    return true;
                }
            }
        }
        false
    }

    async fn vrfy(&mut self, arg: &str) {
        if self.auth.is_none() {
            return self.reply(Reply::new(
                252,
                "2.0.0",
                "Cannot VRFY user, but will accept message and attempt delivery",
            ));
        }
        let address = arg.trim_matches(['<', '>']);
        match self.ctx.backend.resolve(address).await {
            Ok(r) if r.kind == Kind::LocalUser as i32 => {
                self.reply(Reply::new(250, "2.1.5", format!("<{address}>")))
            }
            Ok(r) if r.kind == Kind::Unknown as i32 => self.reply(Reply::new(
                550,
                "5.1.1",
                format!("<{address}>: User unknown"),
            )),
            Ok(_) => self.reply(Reply::new(
                252,
                "2.0.0",
                "Cannot VRFY user, but will accept message and attempt delivery",
            )),
            Err(_) => self.reply(Reply::new(451, "4.3.0", "Temporary lookup failure")),
        }
    }

    async fn expn(&mut self, arg: &str) {
        if self.auth.is_none() {
            return self.reply(Reply::new(502, "5.5.1", "EXPN not available"));
        }
        let address = arg.trim_matches(['<', '>']);
        match self.ctx.backend.resolve(address).await {
            Ok(r) if r.kind == Kind::List as i32 && !r.targets.is_empty() => self.reply(Reply {
                code: 250,
                enhanced: Some("2.1.5".into()),
                lines: r.targets.iter().map(|t| format!("<{t}>")).collect(),
            }),
            Ok(_) => self.reply(Reply::new(
                550,
                "5.1.1",
                format!("<{address}>: not a mailing list"),
            )),
            Err(_) => self.reply(Reply::new(451, "4.3.0", "Temporary lookup failure")),
        }
    }

    /// Checks that DATA or BDAT may start; the refusal otherwise.
    fn transfer_refusal(&self) -> Option<Reply> {
        match &self.tx {
            None => Some(Reply::new(503, "5.5.1", "Error: need MAIL command")),
            Some(tx) if tx.rcpts.is_empty() && !tx.rcpt_attempted => {
                Some(Reply::new(503, "5.5.1", "Error: need RCPT command"))
            }
            Some(tx) if tx.rcpts.is_empty() => {
                Some(Reply::new(554, "5.5.1", "Error: no valid recipients"))
            }
            _ => None,
        }
    }

    /// The Received field that goes first in the message (RFC 5321 §4.4), naming the trace
    /// id, and the protocol as RFC 3848 / RFC 6531 spell it.
    fn received_header(&self, tx: &Transaction) -> Vec<u8> {
        let (helo, esmtp) = self.helo.clone().unwrap_or_default();
        let tls = self.reader.get_ref().is_tls();
        let mut proto = String::from(match (tx.smtputf8, esmtp) {
            (true, _) => "UTF8SMTP",
            (false, true) => "ESMTP",
            (false, false) => "SMTP",
        });
        if esmtp || tx.smtputf8 {
            if tls {
                proto.push('S');
            }
            if self.auth.is_some() {
                proto.push('A');
            }
        }
        let helo: String = helo.chars().filter(|c| !c.is_control()).take(255).collect();
        let mut h = format!(
            "Received: from {helo} ([{}])\r\n\tby {} (Tern) with {proto} id {}",
            self.peer.ip(),
            self.ctx.hostname,
            tx.trace_id
        );
        if let [only] = tx.rcpts.as_slice() {
            h.push_str(&format!("\r\n\tfor <{}>", only.address));
        }
        h.push_str(&format!("; {}\r\n", tern_mail::date::rfc5322(now_secs())));
        h.into_bytes()
    }

    fn composer(&self, tx: &Transaction) -> Composer {
        let adds = if self.listener == Listener::Mx {
            Vec::new()
        } else {
            vec![
                (
                    "Message-ID",
                    format!("<{}@{}>", random_hex(12), self.ctx.hostname),
                ),
                ("Date", tern_mail::date::rfc5322(now_secs())),
            ]
        };
        Composer::new(self.received_header(tx), adds)
    }

    fn open_sink(&self, tx: &Transaction) -> MessageSink {
        let (helo, _) = self.helo.clone().unwrap_or_default();
        let envelope = qpb::Envelope {
            sender: tx.from.as_ref().map(Mailbox::address).unwrap_or_default(),
            recipients: tx.rcpts.clone(),
            mail_params: tx.mail_params.join(" "),
            received_from: format!("{helo} [{}]", self.peer.ip()),
            message_id: String::new(),
            request_id: random_hex(16),
            size: 0,
        };
        let _enter = tx.span.enter();
        self.ctx.backend.open(envelope)
    }

    async fn data(&mut self) -> std::io::Result<Flow> {
        if let Some(r) = self.transfer_refusal() {
            self.reply(r);
            return Ok(Flow::Continue);
        }
        let Some(tx) = self.tx.take() else {
            return Ok(Flow::Continue);
        };
        if tx.bdat.is_some() {
            self.tx = Some(tx);
            self.reply(Reply::new(503, "5.5.1", "Error: DATA after BDAT"));
            return Ok(Flow::Continue);
        }
        let mut sink = self.open_sink(&tx);
        let mut composer = self.composer(&tx);
        // 354 carries no enhanced code (RFC 2034 §4 lists none for it).
        self.reply(Reply::plain(
            354,
            vec!["End data with <CR><LF>.<CR><LF>".into()],
        ));
        self.flush().await?;
        let mut decoder = DataDecoder::new(self.ctx.max_message_size);
        let mut decoded = Vec::with_capacity(FORWARD_CHUNK);
        let mut ready = Vec::with_capacity(FORWARD_CHUNK * 2);
        let outcome = loop {
            // A time-out or the client going away mid-message: nothing of it is kept.
            if !self.content().await? {
                return Ok(Flow::Close);
            }
            let (used, done) = decoder.feed(self.reader.buffer(), &mut decoded);
            self.reader.consume(used);
            composer.push(&decoded, &mut ready);
            decoded.clear();
            if ready.len() >= FORWARD_CHUNK {
                sink.write(&ready).instrument(tx.span.clone()).await;
                ready.clear();
            }
            if let Some(outcome) = done {
                break outcome;
            }
        };
        let reply = match outcome {
            Outcome::Complete => {
                composer.finish(&mut ready);
                sink.write(&ready).instrument(tx.span.clone()).await;
                self.commit(sink, &tx, decoder.size()).await
            }
            Outcome::TooBig => Reply::new(
                552,
                "5.3.4",
                "Message size exceeds fixed maximum message size",
            ),
            Outcome::LineTooLong => Reply::new(
                554,
                "5.6.0",
                format!(
                    "Message has a line longer than {} octets",
                    crate::data::MAX_LINE
                ),
            ),
        };
        self.reply(reply);
        Ok(Flow::Continue)
    }

    async fn commit(&self, sink: MessageSink, tx: &Transaction, octets: u64) -> Reply {
        match sink.commit().instrument(tx.span.clone()).await {
            Ok(queued) => {
                tx.span.record("queue_id", queued.queue_id.as_str());
                tracing::info!(parent: &tx.span, queue_id = %queued.queue_id, trace_id = %tx.trace_id, queue_trace_id = %queued.trace_id, octets, recipients = tx.rcpts.len(), "message accepted");
                metrics::accepted(self.listener.name(), octets);
                Reply::new(250, "2.0.0", format!("Ok: queued as {}", queued.queue_id))
            }
            Err(SinkError::TooBig(e)) => {
                tracing::info!(parent: &tx.span, error = %e, "message refused by the queue as too large");
                Reply::new(
                    552,
                    "5.3.4",
                    "Message size exceeds fixed maximum message size",
                )
            }
            Err(SinkError::Temporary(e)) => {
                tracing::warn!(parent: &tx.span, error = %e, "message not accepted: queue failure");
                Reply::new(451, "4.3.0", "Error: queue unavailable, try again later")
            }
        }
    }

    /// Waits for message content (DATA or a BDAT chunk) within the data time-out. False when
    /// the client went away, or stayed silent (then 421 is queued for the caller's close).
    async fn content(&mut self) -> std::io::Result<bool> {
        match tokio::time::timeout(self.ctx.data_timeout, self.reader.fill_buf()).await {
            Ok(r) => Ok(!r?.is_empty()),
            Err(_) => {
                self.reply(self.timeout_reply());
                Ok(false)
            }
        }
    }

    /// The 421 for a client that stayed silent too long (RFC 5321 §4.5.3.2).
    fn timeout_reply(&self) -> Reply {
        Reply::new(
            421,
            "4.4.2",
            format!("{} Error: timeout exceeded", self.ctx.hostname),
        )
    }

    /// Reads and drops `size` octets (a BDAT chunk that cannot be taken).
    async fn discard(&mut self, mut size: u64) -> std::io::Result<bool> {
        while size > 0 {
            if !self.content().await? {
                return Ok(false);
            }
            let n = self.reader.buffer().len().min(size as usize);
            self.reader.consume(n);
            size -= n as u64;
        }
        Ok(true)
    }

    async fn bdat(&mut self, size: u64, last: bool) -> std::io::Result<Flow> {
        let refusal = match &self.tx {
            Some(tx) if tx.bdat.is_some() => None,
            _ => self.transfer_refusal(),
        };
        if let Some(r) = refusal {
            // RFC 3030 §2: the chunk is read off the wire whatever the reply.
            if !self.discard(size).await? {
                return Ok(Flow::Close);
            }
            self.reply(r);
            return Ok(Flow::Continue);
        }
        let Some(mut tx) = self.tx.take() else {
            return Ok(Flow::Continue);
        };
        let mut bdat = match tx.bdat.take() {
            Some(b) => b,
            None => Bdat {
                sink: Some(self.open_sink(&tx)),
                normalizer: LineNormalizer::default(),
                composer: self.composer(&tx),
                octets: 0,
                too_big: false,
            },
        };
        bdat.octets += size;
        if bdat.octets > self.ctx.max_message_size {
            bdat.too_big = true;
            bdat.sink = None;
        }
        let mut remaining = size;
        let mut ready = Vec::with_capacity(FORWARD_CHUNK * 2);
        let mut normalized = Vec::with_capacity(FORWARD_CHUNK);
        while remaining > 0 {
            if !self.content().await? {
                return Ok(Flow::Close);
            }
            let buf = self.reader.buffer();
            let n = buf.len().min(remaining as usize);
            if !bdat.too_big {
                bdat.normalizer.feed(&buf[..n], &mut normalized);
                bdat.composer.push(&normalized, &mut ready);
                normalized.clear();
            }
            self.reader.consume(n);
            remaining -= n as u64;
            if ready.len() >= FORWARD_CHUNK {
                if let Some(sink) = bdat.sink.as_mut() {
                    sink.write(&ready).instrument(tx.span.clone()).await;
                }
                ready.clear();
            }
        }
        if bdat.too_big {
            // The transaction is over; later chunks of it get 503 (and are read off).
            self.reply(Reply::new(
                552,
                "5.3.4",
                "Message size exceeds fixed maximum message size",
            ));
            return Ok(Flow::Continue);
        }
        if !last {
            if let Some(sink) = bdat.sink.as_mut() {
                sink.write(&ready).instrument(tx.span.clone()).await;
            }
            tx.bdat = Some(bdat);
            self.tx = Some(tx);
            self.reply(Reply::new(250, "2.0.0", format!("{size} octets received")));
            return Ok(Flow::Continue);
        }
        bdat.normalizer.finish(&mut normalized);
        bdat.composer.push(&normalized, &mut ready);
        bdat.composer.finish(&mut ready);
        let reply = match bdat.sink.take() {
            Some(_) if bdat.normalizer.long_line() => Reply::new(
                554,
                "5.6.0",
                format!(
                    "Message has a line longer than {} octets",
                    crate::data::MAX_LINE
                ),
            ),
            Some(mut sink) => {
                sink.write(&ready).instrument(tx.span.clone()).await;
                self.commit(sink, &tx, bdat.octets).await
            }
            None => Reply::new(451, "4.3.0", "Error: queue unavailable, try again later"),
        };
        self.reply(reply);
        Ok(Flow::Continue)
    }

    /// One SASL response, decoded: the initial response if the client gave one, else the
    /// line after a `334 challenge`. `Err` carries what the session does instead (after the
    /// reply: cancelled with `*`, bad base64, too long, timed out, closed).
    async fn sasl_response(
        &mut self,
        initial: Option<String>,
        challenge: &str,
    ) -> std::io::Result<Result<Vec<u8>, Flow>> {
        let line = match initial {
            Some(i) => i.into_bytes(),
            None => {
                self.out
                    .extend_from_slice(format!("334 {challenge}\r\n").as_bytes());
                self.flush().await?;
                let mut line = Vec::new();
                let read = tokio::time::timeout(
                    self.ctx.command_timeout,
                    read_line(&mut self.reader, &mut line, MAX_AUTH_LINE),
                )
                .await;
                match read {
                    Ok(Ok(Line::Complete)) => line,
                    Ok(Ok(Line::TooLong)) => {
                        self.reply(Reply::new(
                            500,
                            "5.5.6",
                            "Authentication exchange line is too long",
                        ));
                        return Ok(Err(Flow::Continue));
                    }
                    Ok(Ok(Line::Eof)) => return Ok(Err(Flow::Close)),
                    Ok(Err(e)) => return Err(e),
                    Err(_) => {
                        self.reply(self.timeout_reply());
                        return Ok(Err(Flow::Close));
                    }
                }
            }
        };
        if line == b"*" {
            self.reply(Reply::new(501, "5.0.0", "Authentication cancelled"));
            return Ok(Err(Flow::Continue));
        }
        if line == b"=" {
            return Ok(Ok(Vec::new()));
        }
        match base64::engine::general_purpose::STANDARD.decode(&line) {
            Ok(raw) => Ok(Ok(raw)),
            Err(_) => {
                self.reply(Reply::new(501, "5.5.2", "Invalid base64 data"));
                Ok(Err(Flow::Continue))
            }
        }
    }

    async fn authenticate(
        &mut self,
        mechanism: &str,
        initial: Option<String>,
    ) -> std::io::Result<Flow> {
        if self.listener == Listener::Mx {
            self.reply(Reply::new(
                502,
                "5.5.1",
                "AUTH not available on this port; use submission",
            ));
            return Ok(Flow::Continue);
        }
        if self.helo.as_ref().is_none_or(|(_, esmtp)| !esmtp) {
            self.reply(Reply::new(503, "5.5.1", "Error: send EHLO first"));
            return Ok(Flow::Continue);
        }
        if self.auth.is_some() {
            self.reply(Reply::new(503, "5.5.1", "Error: already authenticated"));
            return Ok(Flow::Continue);
        }
        if self.tx.is_some() {
            self.reply(Reply::new(
                503,
                "5.5.1",
                "Error: AUTH not allowed during a mail transaction",
            ));
            return Ok(Flow::Continue);
        }
        if !self.auth_offered() {
            self.reply(Reply::new(
                538,
                "5.7.11",
                "Encryption required for requested authentication mechanism",
            ));
            return Ok(Flow::Continue);
        }
        let (user, password) = match mechanism {
            "PLAIN" => {
                let raw = match self.sasl_response(initial, "").await? {
                    Ok(raw) => raw,
                    Err(flow) => return Ok(flow),
                };
                let parts: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
                let [authz, authc, pass] = parts.as_slice() else {
                    self.reply(Reply::new(501, "5.5.2", "Invalid PLAIN response"));
                    return Ok(Flow::Continue);
                };
                if !authz.is_empty() && authz != authc {
                    // Acting for another user (proxy authorization) is not offered.
                    return Ok(self.auth_failed().await);
                }
                (
                    String::from_utf8_lossy(authc).into_owned(),
                    String::from_utf8_lossy(pass).into_owned(),
                )
            }
            "LOGIN" => {
                // The challenges are "Username:" and "Password:" in base64.
                let user = match self.sasl_response(initial, "VXNlcm5hbWU6").await? {
                    Ok(user) => user,
                    Err(flow) => return Ok(flow),
                };
                let pass = match self.sasl_response(None, "UGFzc3dvcmQ6").await? {
                    Ok(pass) => pass,
                    Err(flow) => return Ok(flow),
                };
                (
                    String::from_utf8_lossy(&user).into_owned(),
                    String::from_utf8_lossy(&pass).into_owned(),
                )
            }
            _ => {
                self.reply(Reply::new(
                    504,
                    "5.5.4",
                    "Unrecognized authentication mechanism",
                ));
                return Ok(Flow::Continue);
            }
        };
        match self.ctx.backend.check_password(&user, &password).await {
            Ok(Some(account)) => {
                tracing::info!(user = %account.address, "authenticated");
                self.auth = Some(account);
                self.reply(Reply::new(235, "2.7.0", "Authentication successful"));
                Ok(Flow::Continue)
            }
            Ok(None) => {
                tracing::info!(user = %user, "authentication failed");
                Ok(self.auth_failed().await)
            }
            Err(e) => {
                tracing::warn!(error = %e, "password check failed");
                self.reply(Reply::new(454, "4.7.0", "Temporary authentication failure"));
                Ok(Flow::Continue)
            }
        }
    }

    /// A wrong password: a pause (against guessing), 535, and 421 after too many.
    async fn auth_failed(&mut self) -> Flow {
        self.auth_failures += 1;
        tokio::time::sleep(self.ctx.auth_failure_delay).await;
        self.reply(Reply::new(
            535,
            "5.7.8",
            "Authentication credentials invalid",
        ));
        if self.auth_failures >= self.ctx.max_auth_failures {
            self.reply(Reply::new(
                421,
                "4.7.0",
                format!(
                    "{} Error: too many failed authentications",
                    self.ctx.hostname
                ),
            ));
            return Flow::Close;
        }
        Flow::Continue
    }
}

fn valid_notify(v: &str) -> bool {
    if v.eq_ignore_ascii_case("NEVER") {
        return true;
    }
    v.split(',').all(|w| {
        ["SUCCESS", "FAILURE", "DELAY"]
            .iter()
            .any(|k| w.eq_ignore_ascii_case(k))
    })
}

fn valid_orcpt(v: &str) -> bool {
    v.split_once(';').is_some_and(|(kind, addr)| {
        !kind.is_empty()
            && kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && v.len() <= 500
            && (command::decode_xtext(addr).is_some() || kind.eq_ignore_ascii_case("utf-8"))
    })
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

//! The outbound SMTP client (RFC 5321 + ESMTP) the delivery workers use to hand mail to a
//! remote MX.
//!
//! One [`Connection`] is one SMTP session with one host: [`Connection::connect`] reads the
//! greeting, says EHLO (HELO for servers that refuse EHLO), negotiates STARTTLS according to
//! the [`TlsPolicy`] and says EHLO again over TLS (RFC 3207 §4.2). [`Connection::send`] runs one
//! mail transaction for all the recipients of one destination host and returns every
//! per-recipient reply, so the worker can deliver, defer and bounce each recipient on its own.
//! After a transaction the session is clean (RSET after a failed one), so a pool can reuse it
//! for the next message ([`Connection::reset`], [`Connection::noop`], [`Connection::is_reusable`]).
//!
//! Design points:
//! - **Bounded input.** Replies are read into one buffer and parsed with [`reply::parse`], which
//!   refuses overlong lines and replies, so a hostile server cannot make a worker buffer without
//!   limit; every read and write has a deadline ([`ClientConfig`], RFC 5321 §4.5.3.2 values by
//!   default), so a stalled server cannot hold a worker.
//! - **PIPELINING** (RFC 2920): MAIL, the RCPTs and DATA go in one write and the replies are
//!   read in order. Recipients are sent in groups of at most 100 commands per write, so a huge
//!   recipient list cannot deadlock with both TCP directions full (RFC 2920 §3.1).
//! - **Exact bytes.** The body goes in canonical CRLF form, dot-stuffed, with the sizes that
//!   `tern_mail::lines` computes, so the announced SIZE is what the server receives, and no bare
//!   CR or LF ever reaches the wire (no SMTP smuggling through our relay).
//! - **TLS.** `Opportunistic` encrypts whenever STARTTLS is offered but does not verify the
//!   certificate, as MTAs do (RFC 7435: most MX certificates would not verify, and refusing
//!   them would only push delivery to plain text); if the handshake fails it reconnects once in
//!   plain text, as Postfix does with `smtp_tls_security_level = may`. `Required` verifies the
//!   chain against webpki-roots plus the configured extra roots and the MX host name, and is a
//!   temporary failure when STARTTLS is missing or verification fails. rustls allows only
//!   TLS 1.2 and 1.3. Data a server sends after its STARTTLS reply and before the handshake is
//!   refused (the response-injection attack of CVE-2011-0411 on the client side).
//! - **Privacy.** Nothing of the message content is logged; logs carry the peer, the stage and
//!   the server's reply text.
//!
//! BDAT (CHUNKING, RFC 3030) is detected but not used: DATA works with every server and the
//! body is already canonical.

mod config;
mod envelope;
mod error;
mod tls;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tern_mail::lines;
use tern_smtp_proto::reply::{self, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

pub use config::{ClientConfig, TlsPolicy};
pub use envelope::{Envelope, Extensions, Rcpt, Transaction};
pub use error::ClientError;

use envelope::{check_envelope, check_helo_name};
use tls::tls_setup;

/// Octets asked for per read.
const READ_CHUNK: usize = 8 * 1024;
/// The most unparsed input ever held: one maximal reply plus one read.
const MAX_BUFFER: usize = reply::MAX_LINE * reply::MAX_LINES + READ_CHUNK;
/// Message data is written in blocks of this size, each under `data_block_timeout`.
const WRITE_CHUNK: usize = 64 * 1024;
/// What ends DATA (after the message's last CRLF): RFC 5321 §4.1.1.4.
const END_OF_DATA: &[u8] = b".\r\n";
/// Most RCPT commands sent in one pipelined write.
const PIPELINE_GROUP: usize = 100;
/// Longest wait for the reply to a QUIT: the transaction is already over by then.
const QUIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The transport under the session: TCP, then TLS after STARTTLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// During the STARTTLS upgrade, and after a failed handshake.
    Closed,
}

impl Stream {
    async fn read_buf(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read_buf(buf).await,
            Stream::Tls(s) => s.read_buf(buf).await,
            Stream::Closed => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.write_all(data).await,
            Stream::Tls(s) => s.write_all(data).await,
            Stream::Closed => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush().await,
            Stream::Tls(s) => s.flush().await,
            Stream::Closed => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.shutdown().await,
            Stream::Tls(s) => s.shutdown().await,
            Stream::Closed => Ok(()),
        }
    }
}

/// The deadlines of a [`ClientConfig`], copied into each connection.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    command: Duration,
    data_init: Duration,
    data_block: Duration,
    data_end: Duration,
}

/// One SMTP session with one server, ready for transactions after [`Connection::connect`].
pub struct Connection {
    stream: Stream,
    /// Input received and not yet parsed; never more than `MAX_BUFFER`.
    buf: Vec<u8>,
    extensions: Extensions,
    tls: bool,
    /// False once the session is in an unknown state (I/O error, timeout, protocol error,
    /// 421) or closing; such a connection must be dropped, not reused.
    usable: bool,
    peer: SocketAddr,
    helo_name: String,
    timeouts: Timeouts,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.peer)
            .field("tls", &self.tls)
            .field("usable", &self.usable)
            .field("extensions", &self.extensions)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Opens a session with the server at `addr`, whose host name (the MX name, used for SNI
    /// and certificate verification) is `server_name`: greeting, EHLO (or HELO), STARTTLS per
    /// the policy, EHLO again over TLS. A 4xx/5xx greeting or EHLO/HELO is
    /// [`ClientError::Rejected`].
    pub async fn connect(
        addr: SocketAddr,
        server_name: &str,
        config: &ClientConfig,
    ) -> Result<Connection, ClientError> {
        check_helo_name(&config.helo_name)?;
        match Self::establish(addr, server_name, config, true).await {
            Err(ClientError::Tls(why)) if config.tls == TlsPolicy::Opportunistic => {
                tracing::warn!(peer = %addr, error = %why, "TLS failed, retrying in plain text");
                Self::establish(addr, server_name, config, false).await
            }
            other => other,
        }
    }

    /// One attempt of [`Connection::connect`]; `try_tls == false` skips STARTTLS (the
    /// opportunistic retry after a failed handshake).
    async fn establish(
        addr: SocketAddr,
        server_name: &str,
        config: &ClientConfig,
        try_tls: bool,
    ) -> Result<Connection, ClientError> {
        let tcp = match timeout(config.connect_timeout, TcpStream::connect(addr)).await {
            Err(_) => return Err(ClientError::Timeout("connect")),
            Ok(Err(e)) => return Err(ClientError::Connect(e)),
            Ok(Ok(s)) => s,
        };
        // Commands are written whole, so Nagle would only delay them.
        let _ = tcp.set_nodelay(true);
        let mut conn = Connection {
            stream: Stream::Plain(tcp),
            buf: Vec::with_capacity(READ_CHUNK),
            extensions: Extensions::default(),
            tls: false,
            usable: true,
            peer: addr,
            helo_name: config.helo_name.clone(),
            timeouts: Timeouts {
                command: config.command_timeout,
                data_init: config.data_init_timeout,
                data_block: config.data_block_timeout,
                data_end: config.data_end_timeout,
            },
        };
        match conn.open(server_name, config, try_tls).await {
            Ok(()) => {
                tracing::debug!(peer = %addr, tls = conn.tls, extensions = ?conn.extensions, "SMTP session open");
                Ok(conn)
            }
            Err(e) => {
                if matches!(e, ClientError::Rejected { .. } | ClientError::Tls(_)) {
                    conn.quit_quietly().await;
                }
                Err(e)
            }
        }
    }

    async fn open(
        &mut self,
        server_name: &str,
        config: &ClientConfig,
        try_tls: bool,
    ) -> Result<(), ClientError> {
        let greeting = self.read_reply(self.timeouts.command, "greeting").await?;
        if !greeting.is_positive() {
            return Err(ClientError::Rejected {
                stage: "greeting",
                reply: greeting,
            });
        }
        self.hello().await?;
        if try_tls && self.extensions.starttls {
            self.starttls(server_name, config).await
        } else if config.tls == TlsPolicy::Required {
            Err(ClientError::Tls(
                "server does not offer STARTTLS and TLS is required".to_owned(),
            ))
        } else {
            Ok(())
        }
    }

    /// EHLO, or HELO when the server refuses EHLO with a 5xx (RFC 5321 §4.1.4); sets the
    /// extensions.
    async fn hello(&mut self) -> Result<(), ClientError> {
        let ehlo = format!("EHLO {}\r\n", self.helo_name);
        let reply = self.command(ehlo.as_bytes(), "EHLO").await?;
        if reply.is_positive() {
            self.extensions = Extensions::from_ehlo(&reply);
            return Ok(());
        }
        if !reply.is_permanent() {
            return Err(ClientError::Rejected {
                stage: "EHLO",
                reply,
            });
        }
        tracing::debug!(peer = %self.peer, reply = %reply, "EHLO refused, trying HELO");
        let helo = format!("HELO {}\r\n", self.helo_name);
        let reply = self.command(helo.as_bytes(), "HELO").await?;
        if !reply.is_positive() {
            return Err(ClientError::Rejected {
                stage: "HELO",
                reply,
            });
        }
        self.extensions = Extensions::default();
        Ok(())
    }

    /// STARTTLS, the handshake, and EHLO again (RFC 3207 §4.2: forget what was said before).
    async fn starttls(
        &mut self,
        server_name: &str,
        config: &ClientConfig,
    ) -> Result<(), ClientError> {
        let (tls_config, name) = tls_setup(server_name, self.peer, config)?;
        let reply = self.command(b"STARTTLS\r\n", "STARTTLS").await?;
        if !reply.is_positive() {
            if config.tls == TlsPolicy::Required {
                return Err(ClientError::Tls(format!("STARTTLS refused: {reply}")));
            }
            tracing::debug!(peer = %self.peer, reply = %reply, "STARTTLS refused, going on in plain text");
            return Ok(());
        }
        if !self.buf.is_empty() {
            // Anything here was sent in plain text but would be read as if it came over TLS.
            return Err(ClientError::Tls(
                "server sent data after its STARTTLS reply".to_owned(),
            ));
        }
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Closed) else {
            return Err(ClientError::Protocol(
                "STARTTLS on an encrypted session".to_owned(),
            ));
        };
        let connector = TlsConnector::from(tls_config);
        let tls = match timeout(self.timeouts.command, connector.connect(name, tcp)).await {
            Err(_) => return Err(ClientError::Tls("handshake timed out".to_owned())),
            Ok(Err(e)) => return Err(ClientError::Tls(format!("handshake failed: {e}"))),
            Ok(Ok(s)) => s,
        };
        self.stream = Stream::Tls(Box::new(tls));
        self.tls = true;
        self.extensions = Extensions::default();
        self.hello().await
    }

    /// The extensions of the server's last EHLO reply, so the caller can see limits (SIZE)
    /// before choosing what to send.
    pub fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    /// Whether the session runs over TLS, for the `Received:`/DSN/trace record of the delivery.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Whether the session is in a known state and may carry another transaction; false after
    /// an I/O error, a timeout, a protocol error or a 421, when a pool must drop it.
    pub fn is_reusable(&self) -> bool {
        self.usable
    }

    /// Runs one mail transaction: `message` (stored form, any line ends) to every recipient of
    /// `envelope`.
    ///
    /// Returns the per-recipient replies and the final reply ([`Transaction`]); a refused MAIL
    /// is [`ClientError::Rejected`]. Nothing is sent when the message is over the server's SIZE
    /// limit ([`ClientError::TooBig`]) or an address needs SMTPUTF8 the server lacks
    /// ([`ClientError::NeedsSmtpUtf8`]). After a failed transaction the session is RSET so it
    /// can be reused; after any other error it is not reusable.
    pub async fn send(
        &mut self,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<Transaction, ClientError> {
        self.send_guarded(envelope, message, &|| true).await
    }

    /// [`Connection::send`], asking `may_end` right before the final dot of DATA: when it
    /// says no, the dot is not sent, the transaction ends with
    /// [`ClientError::Abandoned`] and the connection is dropped, so the server discards
    /// what it received (RFC 5321 §4.1.1.4: no dot, no message). The queue's worker uses it
    /// to stop when its lease may have lapsed.
    pub async fn send_guarded(
        &mut self,
        envelope: &Envelope,
        message: &[u8],
        may_end: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<Transaction, ClientError> {
        self.check_usable()?;
        check_envelope(envelope)?;
        let result = self.transact(envelope, message, may_end).await;
        if let Err(e) = &result {
            if !e.keeps_session() {
                self.usable = false;
            }
            tracing::debug!(peer = %self.peer, error = %e, "transaction failed");
        }
        result
    }

    async fn transact(
        &mut self,
        envelope: &Envelope,
        message: &[u8],
        may_end: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<Transaction, ClientError> {
        let ext = self.extensions.clone();
        let needs_utf8 =
            !envelope.from.is_ascii() || envelope.rcpts.iter().any(|r| !r.address.is_ascii());
        if needs_utf8 && !ext.smtputf8 {
            return Err(ClientError::NeedsSmtpUtf8);
        }
        let size = lines::size(message);
        if let Some(limit) = ext.size {
            if limit > 0 && size > limit {
                return Err(ClientError::TooBig { limit });
            }
        }
        let mut mail = format!("MAIL FROM:<{}>", envelope.from);
        if ext.size.is_some() {
            mail.push_str(&format!(" SIZE={size}"));
        }
        if ext.eightbitmime && message.iter().any(|&b| b >= 0x80) {
            mail.push_str(" BODY=8BITMIME");
        }
        if needs_utf8 {
            mail.push_str(" SMTPUTF8");
        }
        if ext.dsn {
            for p in &envelope.mail_params {
                mail.push(' ');
                mail.push_str(p);
            }
        }
        mail.push_str("\r\n");
        let rcpts: Vec<String> = envelope
            .rcpts
            .iter()
            .map(|r| {
                let mut cmd = format!("RCPT TO:<{}>", r.address);
                if ext.dsn {
                    for p in &r.dsn_params {
                        cmd.push(' ');
                        cmd.push_str(p);
                    }
                }
                cmd.push_str("\r\n");
                cmd
            })
            .collect();
        if ext.pipelining {
            self.transact_pipelined(mail, &rcpts, message, may_end)
                .await
        } else {
            self.transact_stepwise(mail, &rcpts, message, may_end).await
        }
    }

    /// RFC 2920: MAIL, RCPTs and DATA in one write (groups of [`PIPELINE_GROUP`] RCPTs),
    /// then every reply in order.
    async fn transact_pipelined(
        &mut self,
        mail: String,
        rcpts: &[String],
        message: &[u8],
        may_end: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<Transaction, ClientError> {
        let groups: Vec<&[String]> = rcpts.chunks(PIPELINE_GROUP).collect();
        let mut out = mail.into_bytes();
        let mut mail_reply = None;
        let mut rcpt_replies = Vec::with_capacity(rcpts.len());
        let mut data_reply = None;
        for (i, group) in groups.iter().enumerate() {
            for cmd in group.iter() {
                out.extend_from_slice(cmd.as_bytes());
            }
            let last = i + 1 == groups.len();
            if last {
                out.extend_from_slice(b"DATA\r\n");
            }
            self.write(&out, self.timeouts.command, "MAIL").await?;
            out.clear();
            if mail_reply.is_none() {
                mail_reply = Some(self.read_reply(self.timeouts.command, "MAIL").await?);
            }
            for _ in group.iter() {
                rcpt_replies.push(self.read_reply(self.timeouts.command, "RCPT").await?);
            }
            if last {
                data_reply = Some(self.read_reply(self.timeouts.data_init, "DATA").await?);
            } else if !mail_reply.as_ref().is_some_and(Reply::is_positive) {
                // No point sending more recipients for a refused MAIL.
                break;
            }
        }
        let mail_reply = mail_reply
            .ok_or_else(|| ClientError::Protocol("no recipients to pipeline".to_owned()))?;
        let accepted = rcpt_replies.iter().any(Reply::is_positive);
        if let Some(data) = &data_reply {
            if data.is_intermediate() {
                if mail_reply.is_positive() && accepted {
                    let end = self.send_body(message, may_end).await?;
                    return Ok(Transaction {
                        mail: mail_reply,
                        rcpts: rcpt_replies,
                        data: Some(end),
                    });
                }
                // RFC 2920 §3.1 forbids a 354 here, but some servers send it: end the (empty)
                // data at once rather than send the message to nobody.
                self.write(b".\r\n", self.timeouts.data_block, "message data")
                    .await?;
                self.read_reply(self.timeouts.data_end, "end of data")
                    .await?;
            } else if data.is_positive() {
                return Err(ClientError::Protocol(format!(
                    "unexpected reply to DATA: {data}"
                )));
            }
        }
        self.finish_failed(
            mail_reply,
            rcpt_replies,
            accepted.then_some(data_reply).flatten(),
        )
        .await
    }

    /// Without PIPELINING: one command, one reply; DATA only when a recipient was accepted.
    async fn transact_stepwise(
        &mut self,
        mail: String,
        rcpts: &[String],
        message: &[u8],
        may_end: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<Transaction, ClientError> {
        let mail_reply = self.command(mail.as_bytes(), "MAIL").await?;
        if !mail_reply.is_positive() {
            return self.finish_failed(mail_reply, Vec::new(), None).await;
        }
        let mut rcpt_replies = Vec::with_capacity(rcpts.len());
        for cmd in rcpts {
            rcpt_replies.push(self.command(cmd.as_bytes(), "RCPT").await?);
        }
        if !rcpt_replies.iter().any(Reply::is_positive) {
            return self.finish_failed(mail_reply, rcpt_replies, None).await;
        }
        self.write(b"DATA\r\n", self.timeouts.command, "DATA")
            .await?;
        let data = self.read_reply(self.timeouts.data_init, "DATA").await?;
        if data.is_positive() {
            return Err(ClientError::Protocol(format!(
                "unexpected reply to DATA: {data}"
            )));
        }
        if !data.is_intermediate() {
            return self
                .finish_failed(mail_reply, rcpt_replies, Some(data))
                .await;
        }
        let end = self.send_body(message, may_end).await?;
        Ok(Transaction {
            mail: mail_reply,
            rcpts: rcpt_replies,
            data: Some(end),
        })
    }

    /// Ends a transaction that sent no message: RSET so the session can be reused (a failed
    /// RSET only makes it unreusable; the outcome is known), then the result.
    async fn finish_failed(
        &mut self,
        mail: Reply,
        rcpts: Vec<Reply>,
        data: Option<Reply>,
    ) -> Result<Transaction, ClientError> {
        if let Err(e) = self.reset().await {
            tracing::debug!(peer = %self.peer, error = %e, "RSET after a failed transaction failed");
        }
        if !mail.is_positive() {
            return Err(ClientError::Rejected {
                stage: "MAIL",
                reply: mail,
            });
        }
        Ok(Transaction { mail, rcpts, data })
    }

    /// Sends the message as canonical CRLF, dot-stuffed, ended by CRLF.CRLF (RFC 5321
    /// §4.5.2), in blocks under the data-block deadline, and reads the final reply.
    async fn send_body(
        &mut self,
        message: &[u8],
        may_end: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<Reply, ClientError> {
        let mut wire = Vec::new();
        lines::dot_stuff(&lines::canonical(message), &mut wire);
        // Everything but the end marker first; the marker only once `may_end` allows it.
        let body = wire.len() - END_OF_DATA.len();
        for block in wire[..body].chunks(WRITE_CHUNK) {
            match timeout(self.timeouts.data_block, self.stream.write_all(block)).await {
                Err(_) => return Err(ClientError::Timeout("message data")),
                Ok(r) => r.map_err(ClientError::Io)?,
            }
        }
        drop(wire);
        if !may_end() {
            return Err(ClientError::Abandoned);
        }
        match timeout(self.timeouts.data_block, self.stream.write_all(END_OF_DATA)).await {
            Err(_) => return Err(ClientError::Timeout("message data")),
            Ok(r) => r.map_err(ClientError::Io)?,
        }
        match timeout(self.timeouts.data_block, self.stream.flush()).await {
            Err(_) => return Err(ClientError::Timeout("message data")),
            Ok(r) => r.map_err(ClientError::Io)?,
        }
        let end = self
            .read_reply(self.timeouts.data_end, "end of data")
            .await?;
        if end.is_intermediate() {
            return Err(ClientError::Protocol(format!(
                "unexpected reply after data: {end}"
            )));
        }
        Ok(end)
    }

    /// RSET (RFC 5321 §4.1.1.5): abandons any transaction so the session can carry the next
    /// message. A refusal or failure makes the connection unreusable.
    pub async fn reset(&mut self) -> Result<(), ClientError> {
        self.simple(b"RSET\r\n", "RSET").await
    }

    /// NOOP: checks that a pooled session is still alive before it is given a message. A
    /// refusal or failure makes the connection unreusable.
    pub async fn noop(&mut self) -> Result<(), ClientError> {
        self.simple(b"NOOP\r\n", "NOOP").await
    }

    /// QUIT, best effort and within a short deadline, then close: the server learns the
    /// session ended on purpose, and nothing that goes wrong here matters any more.
    pub async fn quit(mut self) {
        self.quit_quietly().await;
    }

    async fn simple(&mut self, cmd: &'static [u8], stage: &'static str) -> Result<(), ClientError> {
        self.check_usable()?;
        let result = match self.command(cmd, stage).await {
            Ok(reply) if reply.is_positive() => Ok(()),
            Ok(reply) => Err(ClientError::Rejected { stage, reply }),
            Err(e) => Err(e),
        };
        if result.is_err() {
            self.usable = false;
        }
        result
    }

    async fn quit_quietly(&mut self) {
        let limit = self.timeouts.command.min(QUIT_TIMEOUT);
        if matches!(self.stream, Stream::Closed) {
            return;
        }
        if self.write(b"QUIT\r\n", limit, "QUIT").await.is_ok() {
            let _ = self.read_reply(limit, "QUIT").await;
        }
        let _ = timeout(limit, self.stream.shutdown()).await;
        self.usable = false;
    }

    fn check_usable(&self) -> Result<(), ClientError> {
        if self.usable {
            Ok(())
        } else {
            Err(ClientError::Protocol(
                "connection unusable after an earlier error".to_owned(),
            ))
        }
    }

    /// Writes one command and reads its reply, both under the command deadline.
    async fn command(&mut self, cmd: &[u8], stage: &'static str) -> Result<Reply, ClientError> {
        self.write(cmd, self.timeouts.command, stage).await?;
        self.read_reply(self.timeouts.command, stage).await
    }

    async fn write(
        &mut self,
        data: &[u8],
        limit: Duration,
        stage: &'static str,
    ) -> Result<(), ClientError> {
        let stream = &mut self.stream;
        let io = async {
            stream.write_all(data).await?;
            stream.flush().await
        };
        match timeout(limit, io).await {
            Err(_) => Err(ClientError::Timeout(stage)),
            Ok(r) => r.map_err(ClientError::Io),
        }
    }

    /// Reads until one complete reply is buffered, under `limit` in all; the buffer never
    /// grows beyond one maximal reply plus one read.
    async fn read_reply(
        &mut self,
        limit: Duration,
        stage: &'static str,
    ) -> Result<Reply, ClientError> {
        let Connection { stream, buf, .. } = self;
        let io = async {
            loop {
                match reply::parse(buf) {
                    Ok(Some((reply, used))) => {
                        buf.drain(..used);
                        return Ok(reply);
                    }
                    Ok(None) => {}
                    Err(e) => return Err(ClientError::Protocol(format!("{stage}: {e}"))),
                }
                if buf.len() >= MAX_BUFFER {
                    return Err(ClientError::Protocol(format!("{stage}: reply too long")));
                }
                buf.reserve(READ_CHUNK);
                let n = stream.read_buf(buf).await.map_err(ClientError::Io)?;
                if n == 0 {
                    return Err(ClientError::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("connection closed by the server during {stage}"),
                    )));
                }
            }
        };
        let result = match timeout(limit, io).await {
            Err(_) => Err(ClientError::Timeout(stage)),
            Ok(r) => r,
        };
        match &result {
            // 421: the server is closing the session (RFC 5321 §3.8).
            Ok(reply) if reply.code == 421 => self.usable = false,
            Ok(_) => {}
            Err(_) => self.usable = false,
        }
        result
    }
}

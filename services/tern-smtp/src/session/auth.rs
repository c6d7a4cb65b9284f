//! AUTH (RFC 4954) with PLAIN (RFC 4616) and LOGIN: the SMTP side of the exchange (`334`
//! challenges, the reply to each way an exchange can fail), the password check and the pause
//! and limit after failures. The SASL rules themselves (base64, `*`, UTF-8, the authorization
//! identity) are [`tern_sasl`]'s, shared with IMAP and POP3.

use base64::Engine;
use tern_net::connection::Read;
use tern_sasl::{Credentials, Exchange, Mechanism, SaslError, Step};
use tern_smtp_proto::reply::Reply;

use super::{Flow, Session, MAX_AUTH_LINE};
use crate::server::Listener;

impl Session<'_> {
    /// Sends one `334` challenge and reads the client's response line. `Err` carries what the
    /// session does instead (after the reply: too long, timed out, closed).
    async fn sasl_challenge(&mut self, challenge: &[u8]) -> std::io::Result<Result<Vec<u8>, Flow>> {
        let encoded = base64::engine::general_purpose::STANDARD.encode(challenge);
        self.conn.queue(format!("334 {encoded}\r\n").as_bytes());
        self.flush().await?;
        match self
            .conn
            .read_line(MAX_AUTH_LINE, self.ctx.command_timeout)
            .await?
        {
            Read::Done => Ok(Ok(self.conn.line().to_vec())),
            Read::TooLong => {
                self.reply(Reply::new(
                    500,
                    "5.5.6",
                    "Authentication exchange line is too long",
                ));
                Ok(Err(Flow::Continue))
            }
            Read::Eof => Ok(Err(Flow::Close)),
            Read::TimedOut => {
                self.reply(self.timeout_reply());
                Ok(Err(Flow::Close))
            }
        }
    }

    /// Runs the exchange to its end: the credentials, or the flow after the session has
    /// answered a cancelled, malformed or refused exchange.
    async fn sasl_exchange(
        &mut self,
        mechanism: Mechanism,
        initial: Option<String>,
    ) -> std::io::Result<Result<Credentials, Flow>> {
        let (mut exchange, mut step) =
            match Exchange::start(mechanism, initial.as_deref().map(str::as_bytes)) {
                Ok(started) => started,
                Err(e) => return Ok(Err(self.sasl_refused(&e).await)),
            };
        loop {
            let challenge = match step {
                Step::Done(credentials) => return Ok(Ok(credentials)),
                Step::Challenge(challenge) => challenge,
            };
            let line = match self.sasl_challenge(challenge).await? {
                Ok(line) => line,
                Err(flow) => return Ok(Err(flow)),
            };
            step = match exchange.respond(&line) {
                Ok(step) => step,
                Err(e) => return Ok(Err(self.sasl_refused(&e).await)),
            };
        }
    }

    /// Answers an exchange that ended without credentials. Acting as another user counts
    /// and pauses like a wrong password; the rest are syntax errors (RFC 4954 section 4).
    async fn sasl_refused(&mut self, error: &SaslError) -> Flow {
        let reply = match error {
            SaslError::Cancelled => Reply::new(501, "5.0.0", "Authentication cancelled"),
            SaslError::NotBase64 => Reply::new(501, "5.5.2", "Invalid base64 data"),
            SaslError::TooLong | SaslError::Malformed(..) => {
                Reply::new(501, "5.5.2", error.to_string())
            }
            SaslError::AuthzidDiffers => return self.auth_failed().await,
        };
        self.reply(reply);
        Flow::Continue
    }

    pub(super) async fn authenticate(
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
        let Some(mechanism) = Mechanism::from_name(mechanism) else {
            self.reply(Reply::new(
                504,
                "5.5.4",
                "Unrecognized authentication mechanism",
            ));
            return Ok(Flow::Continue);
        };
        let Credentials { user, password } = match self.sasl_exchange(mechanism, initial).await? {
            Ok(credentials) => credentials,
            Err(flow) => return Ok(flow),
        };
        match self
            .ctx
            .backend
            .check_password(&user, &password, self.peer.ip())
            .await
        {
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

//! AUTH (RFC 4954) with PLAIN (RFC 4616) and LOGIN: the SASL exchange, the decoding of the
//! two mechanisms (kept together here, to move to the shared SASL crate as one piece), the
//! password check and the pause and limit after failures.

use base64::Engine;
use tern_net::line::{read_line, Line};
use tern_smtp_proto::reply::Reply;

use super::{Flow, Session, MAX_AUTH_LINE};
use crate::server::Listener;

impl Session<'_> {
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

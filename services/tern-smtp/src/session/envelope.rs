//! The envelope commands: MAIL (with its typed parameters and the sender-ownership check of
//! submission), RCPT (directory lookup, relay refusal, DSN parameters), VRFY and EXPN.

use tern_proto::queue::v1 as qpb;
use tern_proto::store::v1::resolve_response::Kind;
use tern_smtp_proto::command::{Mailbox, Param};
use tern_smtp_proto::params::{MailParams, ParamError, RcptParams};
use tern_smtp_proto::reply::Reply;

use super::{random_hex, Session, Transaction};
use crate::inbound::SpfVerdict;
use crate::server::Listener;

impl Session<'_> {
    pub(super) async fn mail(&mut self, from: Option<Mailbox>, params: Vec<Param>) {
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
        let params = match MailParams::from_params(&params, self.ctx.max_message_size) {
            Ok(p) => p,
            Err(e) => return self.reply(param_refusal(&e)),
        };
        if let Some(f) = &from {
            if !f.is_ascii() && !params.smtputf8 {
                return self.reply(Reply::new(553, "5.6.7", "Non-ASCII address needs SMTPUTF8"));
            }
            if f.domain.is_empty() {
                return self.reply(Reply::new(501, "5.1.7", "Bad sender address syntax"));
            }
        }
        if self.auth.is_some() && from.is_none() {
            // Bounces come from the server, not from a logged-in user: a null sender would
            // let one send mail no one can reply to or be bounced for.
            return self.reply(Reply::new(
                553,
                "5.7.1",
                "A null sender is not allowed after AUTH",
            ));
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
        let auth_results = match self.sender_checks(from.as_ref()).await {
            Ok(field) => field,
            Err(refusal) => return self.reply(refusal),
        };
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
            auth_results,
            params,
            rcpts: Vec::new(),
            rcpt_attempted: false,
            span,
            trace_id,
            bdat: None,
        });
        self.reply(Reply::new(250, "2.1.0", "Ok"));
    }

    /// The MX listener's checks of an unauthenticated sender (SPF, [`crate::inbound`]): the
    /// Authentication-Results field for the message, or the refusal of the MAIL command.
    async fn sender_checks(&self, from: Option<&Mailbox>) -> Result<Option<String>, Reply> {
        let ctx = self.ctx;
        let Some(checks) = ctx.inbound.as_ref() else {
            return Ok(None);
        };
        if self.listener != Listener::Mx || self.auth.is_some() {
            return Ok(None);
        }
        let helo = self.helo.as_ref().map(|(h, _)| h.as_str()).unwrap_or("");
        let sender = from.map(Mailbox::address).unwrap_or_default();
        let Some(check) = checks.spf(self.peer.ip(), helo, &sender).await else {
            return Ok(None);
        };
        // Whether the domain is hosted matters only to a hard fail (whose domain published a
        // valid record, so its postmaster address parses); asked by the domain, not by the
        // sender's local part, which the directory might not parse.
        let hosted = if check.needs_hosting() {
            let domain = sender.rsplit_once('@').map_or("", |(_, d)| d);
            match ctx.backend.resolve(&format!("postmaster@{domain}")).await {
                Ok(r) => Kind::try_from(r.kind).unwrap_or(Kind::Unknown) != Kind::Remote,
                Err(e) => {
                    tracing::warn!(error = %e, "sender domain lookup failed");
                    return Err(Reply::new(451, "4.3.0", "Temporary lookup failure"));
                }
            }
        } else {
            false
        };
        match check.verdict(hosted) {
            SpfVerdict::Refuse(refusal) => Err(refusal),
            SpfVerdict::Accept(field) => Ok(Some(field)),
        }
    }

    pub(super) async fn rcpt(&mut self, to: Mailbox, params: Vec<Param>) {
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
        let smtputf8 = tx.params.smtputf8;
        let params = match RcptParams::from_params(&params) {
            Ok(p) => p,
            Err(e) => return self.reply(param_refusal(&e)),
        };
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
        if matches!(kind, Kind::Unknown) || reply.code == 554 {
            // Probing for valid addresses (or for a relay) counts toward the error bound.
            self.errors += 1;
        }
        if reply.code < 300 {
            if let Some(tx) = self.tx.as_mut() {
                tx.rcpts.push(qpb::Recipient {
                    address,
                    notify: params.notify,
                    orcpt: params.orcpt,
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

    pub(super) async fn vrfy(&mut self, arg: &str) {
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

    pub(super) async fn expn(&mut self, arg: &str) {
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
}

/// The reply refusing a MAIL or RCPT parameter list.
fn param_refusal(e: &ParamError) -> Reply {
    let (code, enhanced) = match e {
        ParamError::Duplicate(_) | ParamError::BadSize => (501, "5.5.4"),
        ParamError::TooBig => (552, "5.3.4"),
        ParamError::UnsupportedBody | ParamError::Unsupported(_) => (555, "5.5.4"),
    };
    Reply::new(code, enhanced, e.to_string())
}

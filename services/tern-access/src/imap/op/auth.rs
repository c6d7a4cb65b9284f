//! The not-authenticated state: STARTTLS, LOGIN and AUTHENTICATE PLAIN (RFC 4616, with
//! SASL-IR's initial response or one continuation), by the shared rules of [`tern_sasl`].

use std::io;

use imap_codec::imap_types::auth::AuthMechanism;
use imap_codec::imap_types::command::CommandBody;

use tern_sasl::{Exchange, Mechanism, SaslError, Step};

use super::{bad, no, ok, Done};
use crate::imap::backend::ImapBackend;
use crate::imap::session::{Next, Session, Sink};

/// The reply to an AUTHENTICATE that ended without credentials. The SASL rules themselves
/// (base64, `*`, UTF-8, the authorization identity) are [`tern_sasl`]'s, shared with SMTP and
/// POP3.
fn sasl_refused(error: SaslError) -> Done {
    match error {
        SaslError::AuthzidDiffers => {
            Done::No("[AUTHORIZATIONFAILED] acting as another user is not allowed".into())
        }
        SaslError::Cancelled => Done::Bad("AUTHENTICATE cancelled".into()),
        other => Done::Bad(other.to_string()),
    }
}

impl<B: ImapBackend> Session<B> {
    /// The commands before login; anything else needs a login first.
    pub(crate) async fn not_authenticated(
        &mut self,
        tag: &str,
        body: CommandBody<'static>,
        next: &mut Next,
    ) -> io::Result<Done> {
        match body {
            CommandBody::StartTLS => {
                if self.tls {
                    return bad("TLS is already active");
                }
                if !self.settings.starttls {
                    return bad("STARTTLS is not available here");
                }
                *next = Next::StartTls;
                ok("Begin TLS negotiation now")
            }
            CommandBody::Login { username, password } => {
                if !self.plaintext_ok() {
                    return no("[PRIVACYREQUIRED] LOGIN needs TLS first (STARTTLS or port 993)");
                }
                let user = String::from_utf8_lossy(username.as_ref()).into_owned();
                let pass = String::from_utf8_lossy(password.declassify().as_ref()).into_owned();
                self.login(&user, &pass, next).await
            }
            CommandBody::Authenticate {
                mechanism,
                initial_response,
            } => {
                if !matches!(mechanism, AuthMechanism::Plain) {
                    return no("[CANNOT] only AUTHENTICATE PLAIN is offered");
                }
                if !self.plaintext_ok() {
                    return no("[PRIVACYREQUIRED] authentication needs TLS first");
                }
                // imap-codec has decoded SASL-IR's base64 already.
                let initial = initial_response.map(|r| r.declassify().to_vec());
                match Exchange::start_decoded(Mechanism::Plain, initial.as_deref()) {
                    Ok((_, Step::Done(c))) => self.login(&c.user, &c.password, next).await,
                    // PLAIN's one challenge is empty; the response comes on its own line.
                    Ok((_, Step::Challenge(_))) => {
                        *next = Next::AuthContinue(tag.to_string());
                        Ok(Done::Later)
                    }
                    Err(e) => Ok(sasl_refused(e)),
                }
            }
            _ => bad("log in first"),
        }
    }

    /// The client's answer to AUTHENTICATE PLAIN's empty challenge.
    pub async fn auth_response(
        &mut self,
        tag: &str,
        line: &[u8],
        out: &mut Sink<'_>,
    ) -> io::Result<Next> {
        let mut next = Next::Continue;
        // PLAIN takes one response, so the exchange starts afresh from its empty challenge.
        let step = Exchange::start(Mechanism::Plain, None).and_then(|(mut ex, _)| ex.respond(line));
        let done = match step {
            Ok(Step::Done(c)) => self.login(&c.user, &c.password, &mut next).await?,
            Ok(Step::Challenge(_)) => Done::Bad("PLAIN takes one response".into()),
            Err(e) => sasl_refused(e),
        };
        match done {
            Done::Ok(t) => out.line(&format!("{tag} OK {t}")),
            Done::No(t) => out.line(&format!("{tag} NO {t}")),
            Done::Bad(t) => out.line(&format!("{tag} BAD AUTHENTICATE: {t}")),
            Done::Later => {}
        }
        self.bye_if_deleted(out, &mut next);
        Ok(next)
    }

    async fn login(&mut self, user: &str, pass: &str, next: &mut Next) -> io::Result<Done> {
        match self.backend.check_password(user, pass).await {
            Ok(Some(address)) => {
                tracing::info!(account = %address, "imap login");
                self.account = Some(address);
                ok(format!("[CAPABILITY {}] Logged in", self.capabilities()))
            }
            Ok(None) => {
                self.auth_failures += 1;
                if self.auth_failures >= self.settings.max_auth_failures {
                    *next = Next::Close;
                    return no("[AUTHENTICATIONFAILED] authentication failed; closing");
                }
                *next = Next::Delay;
                no("[AUTHENTICATIONFAILED] authentication failed")
            }
            Err(_) => no("[UNAVAILABLE] the directory is unavailable, try again"),
        }
    }
}

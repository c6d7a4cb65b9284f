//! The not-authenticated state: STARTTLS, LOGIN and AUTHENTICATE PLAIN (RFC 4616, with
//! SASL-IR's initial response or one continuation).

use std::io;

use base64::Engine;
use imap_codec::imap_types::auth::AuthMechanism;
use imap_codec::imap_types::command::CommandBody;

use super::{bad, no, ok, Done};
use crate::imap::backend::ImapBackend;
use crate::imap::session::{Next, Session, Sink};

/// SASL PLAIN's message (`authzid NUL authcid NUL password`) as the user to log in and the
/// password, or the reply refusing it. An authzid other than the authcid is refused.
fn decode_plain(data: &[u8]) -> Result<(String, String), Done> {
    let parts: Vec<&[u8]> = data.split(|b| *b == 0).collect();
    let [authz, authc, pass] = parts[..] else {
        return Err(Done::Bad(
            "PLAIN wants authzid NUL authcid NUL password".into(),
        ));
    };
    let (authz, authc, pass) = (
        String::from_utf8_lossy(authz),
        String::from_utf8_lossy(authc).into_owned(),
        String::from_utf8_lossy(pass).into_owned(),
    );
    if !authz.is_empty() && !authz.eq_ignore_ascii_case(&authc) {
        return Err(Done::No(
            "[AUTHORIZATIONFAILED] acting as another user is not allowed".into(),
        ));
    }
    Ok((authc, pass))
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
                match initial_response {
                    Some(r) => {
                        let data = r.declassify().to_vec();
                        self.plain(&data, next).await
                    }
                    None => {
                        *next = Next::AuthContinue(tag.to_string());
                        Ok(Done::Later)
                    }
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
        let done = if line == b"*" {
            Done::Bad("AUTHENTICATE cancelled".into())
        } else {
            match base64::engine::general_purpose::STANDARD.decode(line) {
                Ok(data) => self.plain(&data, &mut next).await?,
                Err(_) => Done::Bad("the response is not base64".into()),
            }
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

    async fn plain(&mut self, data: &[u8], next: &mut Next) -> io::Result<Done> {
        match decode_plain(data) {
            Ok((user, pass)) => self.login(&user, &pass, next).await,
            Err(refused) => Ok(refused),
        }
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

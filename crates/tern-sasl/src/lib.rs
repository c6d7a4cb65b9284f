//! Server-side SASL (RFC 4422) for every Tern protocol that authenticates a user: SMTP AUTH
//! (RFC 4954), IMAP AUTHENTICATE (RFC 3501 §6.2.2) and POP3 AUTH (RFC 5034).
//!
//! Why one crate: the three protocols used to decode PLAIN three ways (one compared the
//! authorization identity case-insensitively and decoded UTF-8 lossily, one compared bytes,
//! one required strict UTF-8), so the same credentials could log in over one protocol and
//! not another. Here the rules are written once:
//!
//! - Client responses are standard base64 with padding; anything else is refused
//!   ([`SaslError::NotBase64`]). A lone `=` is an empty initial response (RFC 4954 §4,
//!   RFC 4959) and a lone `*` cancels the exchange ([`SaslError::Cancelled`]).
//! - Identities and passwords must be UTF-8 (RFC 4616 §2): a lossy decode would turn two
//!   different byte strings into the same password.
//! - An authorization identity may be given only if it names the authenticating user
//!   itself, compared as the directory compares addresses (trimmed, lower-cased); acting
//!   for another user (proxy authorization) is not offered.
//! - No part may be empty except the authorization identity.
//!
//! The crate is sans-I/O: [`Exchange`] turns client responses into either the next
//! challenge or the finished [`Credentials`]; each protocol frames challenges its own way
//! (`334 ...`, `+ ...`) and maps [`SaslError`] to its own reply. Password checking is not
//! here: the directory does it.
//!
//! Room is left for SCRAM-SHA-256 and OAUTHBEARER as further [`Mechanism`] variants; they are
//! not offered yet (SCRAM needs the store to keep salted SCRAM keys, not only argon2id hashes).
//!
//! Dependencies: `base64` for the response encoding; `thiserror` for the error type.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// Longest decoded client response accepted, in octets. Addresses are at most 320 octets
/// and nobody's password is near 1 KiB; the protocols' line limits bound the input before
/// this, this bounds what a mechanism keeps.
pub const MAX_RESPONSE: usize = 2048;

/// A SASL mechanism the server offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// RFC 4616: one response, `authzid NUL authcid NUL password`.
    Plain,
    /// The widespread pre-standard LOGIN mechanism (draft-murchison-sasl-login): user name
    /// and password in two responses. Outlook and older clients still use it for SMTP.
    Login,
}

impl Mechanism {
    /// Every mechanism, in the order servers advertise them.
    pub const ALL: [Mechanism; 2] = [Mechanism::Plain, Mechanism::Login];

    /// The mechanism named `name` (case-insensitive, as RFC 4422 §3.1 requires).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }

    /// The registered name, as advertised.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
        }
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why an exchange ended without credentials. Each protocol turns these into its own reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// The client sent `*`.
    #[error("authentication cancelled")]
    Cancelled,
    /// A response was not standard base64.
    #[error("the response is not base64")]
    NotBase64,
    /// A response did not have the mechanism's shape; the text says how.
    #[error("malformed {0} response: {1}")]
    Malformed(Mechanism, &'static str),
    /// A response was longer than [`MAX_RESPONSE`] decoded octets.
    #[error("the response is too long")]
    TooLong,
    /// The authorization identity names someone other than the authenticating user.
    #[error("acting as another user is not allowed")]
    AuthzidDiffers,
}

/// The outcome of a successful exchange: who claims to be logging in, with what password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The authentication identity (the address the directory looks up).
    pub user: String,
    /// The password, to be checked by the directory. Never logged: see the Debug impl.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// What the server does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send this challenge (raw bytes: the protocol base64-encodes it) and wait for the next
    /// response.
    Challenge(&'static [u8]),
    /// The exchange is complete; check these credentials.
    Done(Credentials),
}

/// One authentication exchange in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    mechanism: Mechanism,
    /// LOGIN's user name, once given.
    login_user: Option<String>,
}

impl Exchange {
    /// Starts an exchange. `initial` is the initial response as the client sent it on the
    /// command line (still base64; `=` for an empty one), if it sent one.
    pub fn start(mechanism: Mechanism, initial: Option<&[u8]>) -> Result<(Self, Step), SaslError> {
        let mut exchange = Exchange {
            mechanism,
            login_user: None,
        };
        let step = match initial {
            Some(response) => exchange.respond(response)?,
            None => exchange.first_challenge(),
        };
        Ok((exchange, step))
    }

    /// The mechanism of this exchange.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    fn first_challenge(&self) -> Step {
        match self.mechanism {
            // PLAIN's first challenge is empty: the client speaks first.
            Mechanism::Plain => Step::Challenge(b""),
            Mechanism::Login => Step::Challenge(b"Username:"),
        }
    }

    /// Starts an exchange whose initial response the protocol's grammar has already
    /// decoded from base64 (IMAP's SASL-IR, which imap-codec parses).
    pub fn start_decoded(
        mechanism: Mechanism,
        initial: Option<&[u8]>,
    ) -> Result<(Self, Step), SaslError> {
        let mut exchange = Exchange {
            mechanism,
            login_user: None,
        };
        let step = match initial {
            Some(data) => exchange.respond_decoded(data)?,
            None => exchange.first_challenge(),
        };
        Ok((exchange, step))
    }

    /// Takes the client's next response line (base64, without the line ending).
    pub fn respond(&mut self, line: &[u8]) -> Result<Step, SaslError> {
        let data = decode_response(line)?;
        self.respond_decoded(&data)
    }

    /// Takes a response already decoded from base64.
    pub fn respond_decoded(&mut self, data: &[u8]) -> Result<Step, SaslError> {
        if data.len() > MAX_RESPONSE {
            return Err(SaslError::TooLong);
        }
        match self.mechanism {
            Mechanism::Plain => plain(data).map(Step::Done),
            Mechanism::Login => match self.login_user.take() {
                None => {
                    self.login_user = Some(login_part(data, "empty user name")?);
                    Ok(Step::Challenge(b"Password:"))
                }
                Some(user) => Ok(Step::Done(Credentials {
                    user,
                    password: login_part(data, "empty password")?,
                })),
            },
        }
    }
}

/// Decodes one client response: `*` cancels, `=` is empty, otherwise strict base64.
pub fn decode_response(line: &[u8]) -> Result<Vec<u8>, SaslError> {
    let line = line.trim_ascii();
    match line {
        b"*" => return Err(SaslError::Cancelled),
        b"=" | b"" => return Ok(Vec::new()),
        _ => {}
    }
    // Four base64 characters carry three octets: refuse before decoding anything larger.
    if line.len() > MAX_RESPONSE.div_ceil(3) * 4 {
        return Err(SaslError::TooLong);
    }
    STANDARD.decode(line).map_err(|_| SaslError::NotBase64)
}

/// RFC 4616: `[authzid] NUL authcid NUL passwd`, all UTF-8, authcid and passwd non-empty.
fn plain(data: &[u8]) -> Result<Credentials, SaslError> {
    let malformed = |why| SaslError::Malformed(Mechanism::Plain, why);
    let mut parts = data.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("want authzid NUL authcid NUL password"));
    };
    let text = |bytes| std::str::from_utf8(bytes).map_err(|_| malformed("not UTF-8"));
    let (authzid, user, password) = (text(authzid)?, text(authcid)?, text(password)?);
    if user.is_empty() || password.is_empty() {
        return Err(malformed("empty user name or password"));
    }
    if !authzid.is_empty() && !same_identity(authzid, user) {
        return Err(SaslError::AuthzidDiffers);
    }
    Ok(Credentials {
        user: user.to_string(),
        password: password.to_string(),
    })
}

fn login_part(data: &[u8], empty: &'static str) -> Result<String, SaslError> {
    let malformed = |why| SaslError::Malformed(Mechanism::Login, why);
    if data.is_empty() {
        return Err(malformed(empty));
    }
    if data.contains(&0) {
        return Err(malformed("NUL in response"));
    }
    std::str::from_utf8(data)
        .map(str::to_string)
        .map_err(|_| malformed("not UTF-8"))
}

/// Whether two identities name the same account, compared the way the directory compares
/// addresses (trimmed, lower-cased).
fn same_identity(a: &str, b: &str) -> bool {
    a.trim().to_lowercase() == b.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(raw: &[u8]) -> Vec<u8> {
        STANDARD.encode(raw).into_bytes()
    }

    fn done(user: &str, password: &str) -> Step {
        Step::Done(Credentials {
            user: user.into(),
            password: password.into(),
        })
    }

    #[test]
    fn plain_with_an_initial_response() {
        let ir = b64(b"\0alice@example.test\0secret");
        let (_, step) = Exchange::start(Mechanism::Plain, Some(&ir)).unwrap();
        assert_eq!(step, done("alice@example.test", "secret"));
    }

    #[test]
    fn plain_after_an_empty_challenge() {
        let (mut ex, step) = Exchange::start(Mechanism::Plain, None).unwrap();
        assert_eq!(step, Step::Challenge(b""));
        let step = ex
            .respond(&b64(b"alice@example.test\0alice@example.test\0pw"))
            .unwrap();
        assert_eq!(step, done("alice@example.test", "pw"));
    }

    #[test]
    fn plain_authzid_must_be_the_user_compared_like_the_directory() {
        let ok = b64(b"Alice@Example.TEST\0alice@example.test\0pw");
        assert!(Exchange::start(Mechanism::Plain, Some(&ok)).is_ok());
        let other = b64(b"bob@example.test\0alice@example.test\0pw");
        assert_eq!(
            Exchange::start(Mechanism::Plain, Some(&other)).unwrap_err(),
            SaslError::AuthzidDiffers
        );
    }

    #[test]
    fn plain_refuses_bad_shapes_and_encodings() {
        for raw in [
            &b"alice\0pw"[..],
            b"\0alice\0pw\0extra",
            b"\0\0pw",
            b"\0alice\0",
            b"\0al\xffice\0pw",
            b"\0alice\0p\xc3w",
        ] {
            let err = Exchange::start(Mechanism::Plain, Some(&b64(raw))).unwrap_err();
            assert!(
                matches!(err, SaslError::Malformed(Mechanism::Plain, _)),
                "{raw:?}: {err:?}"
            );
        }
        assert_eq!(
            Exchange::start(Mechanism::Plain, Some(b"not base64!")).unwrap_err(),
            SaslError::NotBase64
        );
        // Unpadded base64 is not the standard encoding.
        assert_eq!(
            Exchange::start(Mechanism::Plain, Some(b"AGEAYg")).unwrap_err(),
            SaslError::NotBase64
        );
        let huge = b64(&vec![b'a'; MAX_RESPONSE * 2]);
        assert_eq!(
            Exchange::start(Mechanism::Plain, Some(&huge)).unwrap_err(),
            SaslError::TooLong
        );
    }

    #[test]
    fn cancel_and_empty_initial_response() {
        assert_eq!(
            Exchange::start(Mechanism::Plain, Some(b"*")).unwrap_err(),
            SaslError::Cancelled
        );
        // `=` is an empty initial response: PLAIN refuses it as malformed.
        assert!(matches!(
            Exchange::start(Mechanism::Plain, Some(b"=")).unwrap_err(),
            SaslError::Malformed(..)
        ));
        let (mut ex, _) = Exchange::start(Mechanism::Login, None).unwrap();
        assert_eq!(ex.respond(b"*").unwrap_err(), SaslError::Cancelled);
    }

    #[test]
    fn login_asks_for_user_then_password() {
        let (mut ex, step) = Exchange::start(Mechanism::Login, None).unwrap();
        assert_eq!(step, Step::Challenge(b"Username:"));
        assert_eq!(
            ex.respond(&b64(b"bob@example.test")).unwrap(),
            Step::Challenge(b"Password:")
        );
        assert_eq!(
            ex.respond(&b64(b"pw")).unwrap(),
            done("bob@example.test", "pw")
        );

        let (mut ex, step) = Exchange::start(Mechanism::Login, Some(&b64(b"bob"))).unwrap();
        assert_eq!(step, Step::Challenge(b"Password:"));
        assert!(ex.respond(b"=").is_err(), "empty password");
        let (_, step) = Exchange::start(Mechanism::Login, None).unwrap();
        assert_eq!(step, Step::Challenge(b"Username:"));
    }

    #[test]
    fn a_response_decoded_by_the_protocol_follows_the_same_rules() {
        let (_, step) =
            Exchange::start_decoded(Mechanism::Plain, Some(b"\0alice@example.test\0pw")).unwrap();
        assert_eq!(step, done("alice@example.test", "pw"));
        assert_eq!(
            Exchange::start_decoded(Mechanism::Plain, Some(b"bob\0alice\0pw")).unwrap_err(),
            SaslError::AuthzidDiffers
        );
        assert_eq!(
            Exchange::start_decoded(Mechanism::Plain, Some(&vec![b'a'; MAX_RESPONSE + 1]))
                .unwrap_err(),
            SaslError::TooLong
        );
    }

    #[test]
    fn mechanism_names_are_case_insensitive() {
        assert_eq!(Mechanism::from_name("plain"), Some(Mechanism::Plain));
        assert_eq!(Mechanism::from_name("LOGIN"), Some(Mechanism::Login));
        assert_eq!(Mechanism::from_name("CRAM-MD5"), None);
    }

    #[test]
    fn credentials_never_print_the_password() {
        let c = Credentials {
            user: "a".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}

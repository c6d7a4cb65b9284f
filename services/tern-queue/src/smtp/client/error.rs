//! Why a connection or a transaction failed, classified for retry or bounce.

use std::io;

use tern_smtp_proto::reply::Reply;

/// Why a connection or a transaction failed, classified so the worker knows whether to retry.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TCP connection could not be made.
    #[error("connect failed: {0}")]
    Connect(io::Error),
    /// The server did not answer (or accept data) within the configured time; names the stage.
    #[error("timed out during {0}")]
    Timeout(&'static str),
    /// The connection broke.
    #[error("I/O error: {0}")]
    Io(io::Error),
    /// The server broke the protocol (malformed or overlong reply, unexpected reply), or the
    /// envelope could not be sent as given.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// STARTTLS failed or was missing under [`TlsPolicy::Required`], or the certificate did
    /// not verify.
    #[error("TLS: {0}")]
    Tls(String),
    /// The server refused the greeting, EHLO/HELO, MAIL, RSET or NOOP (`stage` names which).
    #[error("{stage} refused: {reply}")]
    Rejected {
        /// The command (or "greeting") that was refused.
        stage: &'static str,
        /// The server's reply.
        reply: Reply,
    },
    /// The message is larger than the limit the server announced with SIZE (RFC 1870); found
    /// before sending.
    #[error("message larger than the server's limit of {limit} octets")]
    TooBig {
        /// The server's announced limit in octets.
        limit: u64,
    },
    /// An address is not ASCII and the server does not offer SMTPUTF8 (RFC 6531 §3.2).
    #[error("an address needs SMTPUTF8, which the server does not offer")]
    NeedsSmtpUtf8,
    /// The sender withdrew before the final dot of DATA (the queue's lease on the entry
    /// may have lapsed); the server got no complete message.
    #[error("abandoned before the end of data")]
    Abandoned,
}

impl ClientError {
    /// Whether retrying cannot help, so the worker should bounce now: a 5xx rejection, a
    /// message over the server's size limit, or a non-ASCII address the server cannot take.
    /// Everything else (network trouble, timeouts, 4xx, TLS) is temporary.
    pub fn is_permanent(&self) -> bool {
        match self {
            ClientError::Rejected { reply, .. } => reply.is_permanent(),
            ClientError::TooBig { .. } | ClientError::NeedsSmtpUtf8 => true,
            _ => false,
        }
    }

    /// Whether the session is still in a known state after this error.
    pub(super) fn keeps_session(&self) -> bool {
        matches!(
            self,
            ClientError::Rejected { .. } | ClientError::TooBig { .. } | ClientError::NeedsSmtpUtf8
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permanence() {
        let reply = |code| Reply {
            code,
            enhanced: None,
            lines: vec![String::new()],
        };
        let rejected = |code| ClientError::Rejected {
            stage: "MAIL",
            reply: reply(code),
        };
        assert!(rejected(550).is_permanent());
        assert!(!rejected(451).is_permanent());
        assert!(ClientError::TooBig { limit: 1 }.is_permanent());
        assert!(ClientError::NeedsSmtpUtf8.is_permanent());
        assert!(!ClientError::Timeout("MAIL").is_permanent());
        assert!(!ClientError::Tls("x".into()).is_permanent());
        assert!(!ClientError::Protocol("x".into()).is_permanent());
    }
}

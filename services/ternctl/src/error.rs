//! Turning failures into one line an operator can act on, and into the exit status.
//!
//! The store speaks gRPC status codes (see store.proto); operators and scripts want words.
//! Connection problems get their own wording because "transport error" from the HTTP/2 stack
//! says nothing about which URL was tried or why it failed; a refused TLS handshake gets its
//! words in [`crate::tls`], and a missing certificate or profile in [`crate::profile`].

use std::fmt;

use tonic::{Code, Status};

/// The endpoint could not be reached (connect refused, timed out, bad address).
#[derive(Debug)]
pub struct Unreachable {
    pub url: String,
    pub cause: String,
}

impl fmt::Display for Unreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot reach tern-store at {}: {}", self.url, self.cause)
    }
}

impl std::error::Error for Unreachable {}

/// A mistake on the command line that clap cannot see (an endpoint that is not a URL, ...).
/// Exits with 2 like clap's own usage errors.
#[derive(Debug)]
pub struct Usage(pub String);

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// Exit status for an error: 2 for usage and configuration errors (the command line, the
/// environment or a profile must change), 1 for everything else.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<Usage>().is_some()
        || err.downcast_ref::<crate::profile::ProfileError>().is_some()
    {
        2
    } else {
        1
    }
}

/// One line describing `err`, without a trailing newline.
pub fn describe(err: &anyhow::Error) -> String {
    let text = if let Some(status) = find_status(err) {
        let mut line = describe_status(status);
        // Context added on the way up ("adding domain x") goes in front of the status.
        let ctx: Vec<String> = err
            .chain()
            .take_while(|e| e.downcast_ref::<Status>().is_none())
            .map(|e| e.to_string())
            .collect();
        if !ctx.is_empty() {
            line = format!("{}: {line}", ctx.join(": "));
        }
        line
    } else {
        chain_text(err.chain())
    };
    one_line(&text)
}

fn find_status(err: &anyhow::Error) -> Option<&Status> {
    err.chain().find_map(|e| e.downcast_ref::<Status>())
}

/// Words for a gRPC status. The store's codes carry fixed meanings (store.proto's header), so
/// the word says what happened and the message says to what.
pub fn describe_status(status: &Status) -> String {
    if status.code() == Code::Cancelled && status.message() == "Timeout expired" {
        return format!(
            "timed out: no answer from tern-store within {}s",
            crate::client::REQUEST_TIMEOUT.as_secs()
        );
    }
    let word = match status.code() {
        Code::AlreadyExists => "already exists",
        Code::NotFound => "not found",
        Code::InvalidArgument => "invalid",
        Code::Unavailable => "no quorum / unavailable",
        Code::ResourceExhausted => "over limit",
        Code::FailedPrecondition => "precondition failed",
        Code::DeadlineExceeded => "timed out",
        // tonic reports its own per-request timeout as CANCELLED("Timeout expired").
        Code::Cancelled => "timed out or cancelled",
        Code::PermissionDenied => "permission denied",
        Code::Unauthenticated => "unauthenticated",
        Code::Unimplemented => "not supported by this tern-store",
        Code::Aborted => "aborted (conflict, retry)",
        Code::OutOfRange => "out of range",
        Code::Internal | Code::DataLoss | Code::Unknown | Code::Ok => "store error",
    };
    let msg = status.message().trim();
    if msg.is_empty() {
        format!("{word}: {}", status.code().description())
    } else {
        format!("{word}: {msg}")
    }
}

/// Joins an error chain with ": ", skipping links that only repeat the previous one (hyper and
/// tonic often wrap an error in a type whose Display includes the inner message).
pub fn chain_text<'a>(
    chain: impl Iterator<Item = &'a (dyn std::error::Error + 'static)>,
) -> String {
    let mut parts: Vec<String> = Vec::new();
    for e in chain {
        let s = e.to_string();
        if s.is_empty() || parts.last().is_some_and(|p| p.contains(&s)) {
            continue;
        }
        parts.push(s);
    }
    parts.join(": ")
}

fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn status_words() {
        let e = anyhow::Error::new(Status::already_exists("domain example.test"));
        assert_eq!(describe(&e), "already exists: domain example.test");
        let e = anyhow::Error::new(Status::not_found("user x@example.test"));
        assert_eq!(describe(&e), "not found: user x@example.test");
        let e = anyhow::Error::new(Status::invalid_argument("bad address"));
        assert_eq!(describe(&e), "invalid: bad address");
        let e = anyhow::Error::new(Status::unavailable("no leader"));
        assert_eq!(describe(&e), "no quorum / unavailable: no leader");
        let e = anyhow::Error::new(Status::unavailable(""));
        assert!(describe(&e).starts_with("no quorum / unavailable: "));
        let e = anyhow::Error::new(Status::cancelled("Timeout expired"));
        assert_eq!(
            describe(&e),
            "timed out: no answer from tern-store within 15s"
        );
    }

    #[test]
    fn context_goes_in_front() {
        let r: Result<(), Status> = Err(Status::not_found("no such entry"));
        let e = r.context("queue show Q1").unwrap_err();
        assert_eq!(describe(&e), "queue show Q1: not found: no such entry");
    }

    #[test]
    fn multi_line_messages_become_one_line() {
        let e = anyhow::Error::new(Status::internal("first\nsecond\n"));
        assert_eq!(describe(&e), "store error: first; second");
    }

    #[test]
    fn usage_errors_exit_2() {
        assert_eq!(exit_code(&anyhow::Error::new(Usage("x".into()))), 2);
        assert_eq!(exit_code(&anyhow::anyhow!("x")), 1);
        assert_eq!(
            exit_code(&anyhow::Error::new(
                crate::profile::ProfileError::NoCertificate
            )),
            2
        );
        let e = anyhow::Error::new(Unreachable {
            url: "http://127.0.0.1:1".into(),
            cause: "connection refused".into(),
        });
        assert_eq!(exit_code(&e), 1);
        assert_eq!(
            describe(&e),
            "cannot reach tern-store at http://127.0.0.1:1: connection refused"
        );
    }
}

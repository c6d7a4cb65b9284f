//! tern-access settings: declared once here; the file < `TERN_*` environment < flags layering,
//! the flags and `--help` come from [`tern_config`].

use std::path::PathBuf;

tern_config::settings! {
    program: "tern-access",
    about: "Tern's IMAP and POP3 access node",
    check: AccessConfig::validate,
    groups: [internet_listener, cluster_tls],
/// Effective settings of one access node.
pub struct AccessConfig {
    /// Store nodes (`host:port`); any of them serves any request.
    #[default = vec!["127.0.0.1:7101".into()]]
    pub store: Vec<String>,
    /// POP3 listener (STLS offered when a certificate is configured); empty = off.
    #[default = "127.0.0.1:2110".into()]
    pub pop3_listen: String,
    /// POP3S listener (implicit TLS, RFC 8314); empty = off. Needs a certificate.
    pub pop3s_listen: String,
    /// IMAP listener (STARTTLS offered when a certificate is configured); empty = off.
    #[default = "127.0.0.1:2143".into()]
    pub imap_listen: String,
    /// IMAPS listener (implicit TLS, RFC 8314); empty = off. Needs a certificate.
    pub imaps_listen: String,
    /// IMAP autologout time of an authenticated session; RFC 3501 §5.4 asks for at least
    /// 30 minutes, so lower values are raised to that.
    #[default = 1800]
    pub imap_idle_timeout_secs: u64,
    /// Largest message APPEND accepts, in octets (the literal is refused above it).
    #[default = 25 << 20]
    pub max_message_bytes: u32,
    /// Development only: allow USER/PASS and AUTH on unencrypted connections. Refused
    /// unless every plain-text listener is bound to a loopback address.
    pub loopback_plaintext_auth: bool,
    /// HTTP listen address for /metrics, /healthz and /readyz.
    #[default = "127.0.0.1:0".into()]
    pub metrics_listen: String,
    /// Written after binding: `pop3=…`, `pop3s=…`, `imap=…`, `imaps=…`, `metrics=…` lines.
    pub addr_file: Option<PathBuf>,
    /// Idle time before a session is closed (RFC 1939 asks for at least 10 minutes).
    #[default = 600]
    pub idle_timeout_secs: u64,
    /// A client that stops reading our replies (in the middle of a RETR or FETCH) for this
    /// long loses its session, and a POP3 session its maildrop lock.
    #[default = 60]
    pub write_timeout_secs: u64,
    /// On SIGTERM, how long sessions may take to finish the command in progress (a FETCH
    /// or RETR being sent) before the process exits; idle sessions are closed at once. The
    /// chart's terminationGracePeriodSeconds is this plus a margin.
    #[default = 30]
    pub drain_secs: u64,
    /// Failed commands before the connection is closed.
    #[default = 20]
    pub max_errors: u32,
    /// How long the POP3 maildrop lock lives without renewal; a node that dies holding it
    /// frees it after this long.
    #[default = 60]
    pub lock_ttl_secs: u64,
    /// How long a store request is retried across store nodes before the client is told to
    /// try again later.
    #[default = 15]
    pub store_retry_secs: u64,
    /// "text" or "json".
    #[default = "text".into()]
    pub log_format: String,
}
}

impl AccessConfig {
    /// Refuses settings that would be unsafe or cannot work.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.store.is_empty() {
            anyhow::bail!("no store nodes configured (--store)");
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            anyhow::bail!("tls_cert and tls_key go together");
        }
        if !self.pop3s_listen.is_empty() && self.tls_cert.is_none() {
            anyhow::bail!("the POP3S listener needs tls_cert and tls_key");
        }
        if !self.imaps_listen.is_empty() && self.tls_cert.is_none() {
            anyhow::bail!("the IMAPS listener needs tls_cert and tls_key");
        }
        if self.loopback_plaintext_auth {
            for (what, listen) in [
                ("pop3_listen", &self.pop3_listen),
                ("imap_listen", &self.imap_listen),
            ] {
                tern_net::listen::require_loopback(what, listen)?;
            }
        }
        if self.idle_timeout_secs < 600 {
            tracing::warn!(
                idle_timeout_secs = self.idle_timeout_secs,
                "idle timeout below RFC 1939's 10 minutes"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_auth_only_on_loopback() {
        let mut c = AccessConfig {
            loopback_plaintext_auth: true,
            ..Default::default()
        };
        assert!(c.validate().is_ok());
        c.pop3_listen = "0.0.0.0:110".into();
        assert!(c.validate().is_err());
        c.pop3_listen = "127.0.0.1:110".into();
        c.imap_listen = "0.0.0.0:143".into();
        assert!(c.validate().is_err());
    }

    #[test]
    fn pop3s_needs_a_certificate_and_the_flags_reach_the_settings() {
        let load = |args: &[&str]| {
            let args = ["tern-access"].iter().chain(args).map(|a| a.to_string());
            tern_config::parse::<AccessConfig>(args, [])
        };
        let c = load(&["--store", "a:1,b:2", "--pop3-listen", "127.0.0.1:10"]);
        let Ok(tern_config::Parsed::Run(c)) = c else {
            panic!("settings expected: {c:?}");
        };
        assert_eq!(c.store, vec!["a:1", "b:2"]);
        assert_eq!(c.pop3_listen, "127.0.0.1:10");
        let refused = load(&["--pop3s-listen", "127.0.0.1:995"]);
        assert!(
            matches!(refused, Err(tern_config::Error::Invalid(_))),
            "{refused:?}"
        );
    }
}

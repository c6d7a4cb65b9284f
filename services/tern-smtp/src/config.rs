//! tern-smtp settings (`deploy/smtp.example.toml`): declared once here; the file < `TERN_*`
//! environment < flags layering, the flags and `--help` come from [`tern_config`].

use std::path::PathBuf;

use anyhow::Context;

tern_config::settings! {
    program: "tern-smtp",
    about: "Tern's SMTP ingress",
    check: SmtpConfig::validate,
    groups: [internet_listener, cluster_tls],
/// Effective settings of one SMTP ingress node.
pub struct SmtpConfig {
    /// Store nodes (`host:port`), for the directory.
    #[default = vec!["127.0.0.1:7101".into()]]
    pub store: Vec<String>,
    /// Queue nodes (`host:port`), for Enqueue.
    #[default = vec!["127.0.0.1:7201".into()]]
    pub queue: Vec<String>,
    /// This server's name in the greeting, EHLO and Received fields.
    #[default = "localhost".into()]
    pub hostname: String,
    /// MX listener (port 25): mail for hosted domains, no AUTH; empty = off.
    #[default = "127.0.0.1:2525".into()]
    pub mx_listen: String,
    /// Submission listener (port 587, RFC 6409): AUTH required, STARTTLS; empty = off.
    pub submission_listen: String,
    /// Submissions listener (port 465, implicit TLS, RFC 8314); empty = off.
    pub submissions_listen: String,
    /// Development only: allow AUTH on unencrypted submission connections. Refused unless
    /// the submission listener is bound to a loopback address.
    pub loopback_plaintext_auth: bool,
    /// Where `<postmaster>` (RCPT TO without a domain, RFC 5321 §4.5.1) is delivered.
    pub postmaster: String,
    /// HTTP listen address for /metrics, /healthz and /readyz.
    #[default = "127.0.0.1:0".into()]
    pub metrics_listen: String,
    /// Written after binding: `mx=…`, `submission=…`, `submissions=…`, `metrics=…` lines.
    pub addr_file: Option<PathBuf>,
    /// Largest message in octets (advertised with SIZE).
    #[default = 25 << 20]
    pub max_message_size: u64,
    /// Recipients per message before 452 (RFC 5321 §4.5.3.1.8 asks for at least 100).
    #[default = 100]
    pub max_recipients: usize,
    /// Errors (refused commands, unknown or relay-refused recipients) without a message
    /// accepted before 421 and close.
    #[default = 20]
    pub max_errors: u32,
    /// On submission, refuse a message whose header From names an address the logged-in
    /// user does not own (their own address, or an alias that delivers to them).
    #[default = true]
    pub sender_header_check: bool,
    /// Wait for the next command (RFC 5321 §4.5.3.2.7: at least 5 minutes).
    #[default = 300]
    pub command_timeout_secs: u64,
    /// Wait for the next piece of DATA/BDAT content.
    #[default = 300]
    pub data_timeout_secs: u64,
    /// Longest time one message's content may take to arrive, whatever the pace (a sender
    /// that trickles a line now and then keeps each read under `data_timeout_secs` but
    /// cannot hold a session and its queue stream past this): 421 4.4.2 and close.
    #[default = 900]
    pub message_time_limit_secs: u64,
    /// On SIGTERM, how long sessions in progress may take to finish (a message in DATA
    /// completes; every other session is answered 421 at its next command) before the
    /// process exits. The chart's terminationGracePeriodSeconds is this plus a margin.
    #[default = 30]
    pub drain_secs: u64,
    /// How long a store request is retried across store nodes before the client is told
    /// to try again later.
    #[default = 10]
    pub store_retry_secs: u64,
    /// Known recipients (users, aliases, lists) kept in this node's directory cache, which
    /// the store's directory feed keeps current; unknown ones are always asked of the store.
    /// 0 turns the cache off (every RCPT is a store read).
    #[default = 100_000]
    pub directory_cache_entries: usize,
    /// Longest a cached recipient is used: the bound on staleness while the store node that
    /// feeds the cache is cut off from the cluster.
    #[default = 60]
    pub directory_cache_ttl_secs: u64,
    /// DNS servers (`ip:port`, comma-separated on the command line) for the inbound checks;
    /// empty = the system's resolvers (`/etc/resolv.conf`). The same setting as tern-queue's.
    pub dns_servers: Vec<String>,
    /// SPF (RFC 7208) at MAIL FROM on the MX listener: the result goes into an
    /// Authentication-Results field, and a sender claiming a hosted domain that fails its
    /// SPF is refused (550 5.7.23).
    #[default = true]
    pub spf: bool,
    /// Client networks exempt from the inbound checks (trusted relays), as CIDRs
    /// (`192.0.2.0/24`) or addresses. None by default: loopback is checked like any client.
    pub trusted_networks: Vec<String>,
    /// "text" or "json".
    #[default = "text".into()]
    pub log_format: String,
}
}

impl SmtpConfig {
    /// Refuses settings that would be unsafe or cannot work.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.store.is_empty() {
            anyhow::bail!("no store nodes configured (--store)");
        }
        if self.queue.is_empty() {
            anyhow::bail!("no queue nodes configured (--queue)");
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            anyhow::bail!("tls_cert and tls_key go together");
        }
        if !self.submissions_listen.is_empty() && self.tls_cert.is_none() {
            anyhow::bail!("the submissions listener needs tls_cert and tls_key");
        }
        // The queue takes messages up to 64 MiB; the Received, Message-ID and Date fields this
        // server adds need room too.
        if self.max_message_size > 60 << 20 {
            anyhow::bail!("max_message_size is at most 62914560 (60 MiB)");
        }
        if self.max_recipients < 100 {
            anyhow::bail!("max_recipients must be at least 100 (RFC 5321 §4.5.3.1.8)");
        }
        for ns in &self.dns_servers {
            ns.parse::<std::net::SocketAddr>()
                .with_context(|| format!("DNS server {ns:?} is not ip:port"))?;
        }
        for net in &self.trusted_networks {
            crate::inbound::parse_network(net)?;
        }
        if self.loopback_plaintext_auth {
            tern_net::listen::require_loopback("submission_listen", &self.submission_listen)?;
        }
        Ok(())
    }

    /// The postmaster address: configured, or `postmaster@` the server's domain.
    pub fn postmaster_address(&self) -> String {
        if !self.postmaster.is_empty() {
            return self.postmaster.clone();
        }
        // mx.example.net → example.net; a name of two labels is the domain itself.
        let domain = match self.hostname.split_once('.') {
            Some((_, rest)) if rest.contains('.') => rest,
            _ => &self.hostname,
        };
        format!("postmaster@{domain}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_auth_only_on_loopback_and_limits() {
        let mut c = SmtpConfig {
            loopback_plaintext_auth: true,
            submission_listen: "127.0.0.1:2587".into(),
            ..Default::default()
        };
        assert!(c.validate().is_ok());
        c.submission_listen = "0.0.0.0:587".into();
        assert!(c.validate().is_err());
        let c = SmtpConfig {
            max_recipients: 50,
            ..Default::default()
        };
        assert!(c.validate().is_err());
        let c = SmtpConfig {
            submissions_listen: "127.0.0.1:465".into(),
            ..Default::default()
        };
        assert!(c.validate().is_err());
    }

    #[test]
    fn the_flags_reach_the_settings() {
        let args = [
            "tern-smtp",
            "--hostname",
            "mx.example.test",
            "--max-recipients",
            "300",
        ];
        let parsed = tern_config::parse::<SmtpConfig>(args.map(String::from), []);
        let Ok(tern_config::Parsed::Run(c)) = parsed else {
            panic!("settings expected: {parsed:?}");
        };
        assert_eq!(c.hostname, "mx.example.test");
        assert_eq!(c.max_recipients, 300);
        assert_eq!(c.postmaster_address(), "postmaster@example.test");
    }
}

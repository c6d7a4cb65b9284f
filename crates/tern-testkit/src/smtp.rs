//! A real `tern-smtp` process on loopback ports the OS assigns, killed when dropped.

use std::path::Path;
use std::time::Duration;

use crate::dns::{DnsServer, Zone};
use crate::service::{addr_list, ServiceProcess};

/// One tern-smtp process with its three listeners.
pub struct SmtpNode {
    /// MX listener (`127.0.0.1:port`).
    pub mx: String,
    /// Submission listener (STARTTLS, AUTH).
    pub submission: String,
    /// Submissions listener (implicit TLS).
    pub submissions: String,
    /// Metrics/health address.
    pub metrics: String,
    process: ServiceProcess,
    /// The loopback DNS server the SPF checks ask, unless the caller gave its own.
    _dns: Option<DnsServer>,
}

/// The zone the SPF checks of a test node see by default: every name under `test` and
/// `example` is NXDOMAIN (SPF `none`, at once), anything else is refused (`temperror`, at
/// once). Never the machine's resolver: offline, it would make every MAIL
/// FROM wait for a time-out.
fn default_zone() -> Zone {
    Zone::new().apex("test").apex("example")
}

impl SmtpNode {
    /// Starts tern-smtp against `store` and `queue` (gRPC addresses) with all three
    /// listeners on loopback, TLS from `cert`/`key`, host name `mx.example.test`, short
    /// time-outs for tests, plus `extra_args`. Unless those name `--dns-servers` (or turn
    /// `--spf` off), SPF asks a loopback DNS server of its own ([`default_zone`]).
    pub async fn start(
        dir: &Path,
        store: &[String],
        queue: &[String],
        cert: &Path,
        key: &Path,
        extra_args: &[&str],
    ) -> anyhow::Result<Self> {
        let mut args = vec![
            "--store".to_string(),
            addr_list(store),
            "--queue".into(),
            addr_list(queue),
            "--hostname".into(),
            "mx.example.test".into(),
            "--mx-listen".into(),
            "127.0.0.1:0".into(),
            "--submission-listen".into(),
            "127.0.0.1:0".into(),
            "--submissions-listen".into(),
            "127.0.0.1:0".into(),
            "--tls-cert".into(),
            cert.display().to_string(),
            "--tls-key".into(),
            key.display().to_string(),
            "--auth-failure-delay-ms".into(),
            "200".into(),
        ];
        args.extend(extra_args.iter().map(|s| s.to_string()));
        let own_dns = !extra_args
            .iter()
            .any(|a| a.starts_with("--dns-servers") || a.starts_with("--spf"));
        let dns = if own_dns {
            let server = DnsServer::start(default_zone()).await?;
            args.extend(["--dns-servers".into(), server.addr.to_string()]);
            Some(server)
        } else {
            None
        };
        let process = ServiceProcess::start("tern-smtp", dir, &args).await?;
        let get = |k: &str| process.addrs.get(k).cloned().unwrap_or_default();
        Ok(SmtpNode {
            mx: get("mx"),
            submission: get("submission"),
            submissions: get("submissions"),
            metrics: get("metrics"),
            process,
            _dns: dns,
        })
    }

    /// A listener's port by name (`mx`, `submission`, `submissions`).
    pub fn port(&self, name: &str) -> u16 {
        self.process.port(name)
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        self.process.log_text()
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// SIGKILLs the process.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Sends SIGTERM (the clean stop) without waiting.
    pub fn terminate(&self) {
        self.process.terminate();
    }

    /// Waits up to `limit` for the process to exit.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        self.process.wait_exit(limit).await
    }
}

//! The clients Tern did not write that the tests drive (Python's mail modules, swaks,
//! isync's mbsync, fetchmail, curl, Postfix's smtp-sink), made present with the parts the
//! tests use by one installer.
//!
//! Each client is checked by what the tests need from it, not by "the command exists":
//! swaks installed without its recommended Perl modules runs, but `swaks --tls` then fails
//! with "TLS not available: requires Net::SSLeay", so swaks counts as present only when
//! `swaks --support` reports TLS. When a check fails, the client's Debian packages (the
//! program and the libraries the check needs, named explicitly because a
//! `--no-install-recommends` install skips them) are installed with apt-get, and the check
//! runs again; a client that still fails its check is an error naming what is missing.
//! Tests run in parallel (and several test binaries at once), so installs take an
//! exclusive lock on `/tmp/tern-apt.lock` (dpkg allows one at a time) and check again
//! under it.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context};

/// A client some test drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// `python3` with `ssl`, `smtplib`, `imaplib`, `poplib` and `email` (the scenario
    /// scripts under `tests/clients`).
    Python,
    /// swaks with TLS (`--tls`) and AUTH (`--auth LOGIN`).
    Swaks,
    /// isync's `mbsync`.
    Mbsync,
    /// `fetchmail`.
    Fetchmail,
    /// `curl` with the pop3 protocol.
    Curl,
    /// Postfix's `smtp-sink` test server.
    SmtpSink,
}

impl Client {
    /// Every client, for a prerequisites step that installs them all up front.
    pub const ALL: [Client; 6] = [
        Client::Python,
        Client::Swaks,
        Client::Mbsync,
        Client::Fetchmail,
        Client::Curl,
        Client::SmtpSink,
    ];

    /// Debian packages that provide the client with the parts its check needs.
    pub fn packages(self) -> &'static [&'static str] {
        match self {
            Client::Python => &["python3"],
            Client::Swaks => &["swaks", "libio-socket-ssl-perl", "libnet-ssleay-perl"],
            Client::Mbsync => &["isync"],
            Client::Fetchmail => &["fetchmail"],
            Client::Curl => &["curl"],
            // Installed by the benchmark's script, which also keeps the system Postfix
            // instance from listening on port 25.
            Client::SmtpSink => &["postfix"],
        }
    }

    /// Where `smtp-sink` is (Debian's postfix package).
    pub const SMTP_SINK: &'static str = "/usr/sbin/smtp-sink";

    /// `Ok` when the client can do what the tests ask of it; otherwise what is missing.
    pub fn check(self) -> Result<(), String> {
        match self {
            Client::Python => {
                let script = "import ssl, smtplib, imaplib, poplib, email.policy, json";
                run_ok("python3", &["-c", script])
            }
            Client::Swaks => {
                let support = output("swaks", &["--support"])?;
                swaks_support(&support)
            }
            Client::Mbsync => run_ok("mbsync", &["--version"]),
            Client::Fetchmail => run_ok("fetchmail", &["--version"]),
            Client::Curl => {
                let version = output("curl", &["--version"])?;
                curl_protocols(&version, &["pop3"])
            }
            Client::SmtpSink => {
                if Path::new(Client::SMTP_SINK).is_file() {
                    Ok(())
                } else {
                    Err(format!("{} is missing", Client::SMTP_SINK))
                }
            }
        }
    }
}

/// Makes `client` usable by the tests, installing its packages when its check fails.
pub fn require(client: Client) -> anyhow::Result<()> {
    if client.check().is_ok() {
        return Ok(());
    }
    let _lock = AptLock::take()?;
    let why = match client.check() {
        Ok(()) => return Ok(()),
        Err(why) => why,
    };
    install(client).with_context(|| format!("{client:?} is not usable ({why})"))?;
    client.check().map_err(|after| {
        anyhow::anyhow!(
            "{client:?} is still not usable after installing {:?}: {after}",
            client.packages()
        )
    })
}

fn install(client: Client) -> anyhow::Result<()> {
    if client == Client::SmtpSink {
        let script = crate::bins::workspace_root().join("xtask/scripts/postfix-smtp.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg("install")
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        if !out.status.success() {
            bail!(
                "{} install failed: {}",
                script.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        return Ok(());
    }
    let packages = client.packages();
    if apt_install(packages).is_err() {
        // Stale package lists are the usual cause: refresh once and retry.
        apt(&["update", "-q"])?;
        apt_install(packages)?;
    }
    Ok(())
}

fn apt_install(packages: &[&str]) -> anyhow::Result<()> {
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend_from_slice(packages);
    apt(&args)
}

fn apt(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
        .context("running apt-get (installing test clients needs root and Debian's apt)")?;
    if !out.status.success() {
        bail!(
            "apt-get {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// An exclusive `flock` on `/tmp/tern-apt.lock`, released when dropped (the file closes).
struct AptLock {
    _file: File,
}

impl AptLock {
    fn take() -> anyhow::Result<AptLock> {
        let f = File::create("/tmp/tern-apt.lock").context("creating /tmp/tern-apt.lock")?;
        // SAFETY: flock on a file descriptor this function owns for the lock's lifetime.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error()).context("locking /tmp/tern-apt.lock");
        }
        Ok(AptLock { _file: f })
    }
}

fn run_ok(program: &str, args: &[&str]) -> Result<(), String> {
    output(program, args).map(|_| ())
}

/// stdout and stderr of a command that must exit 0.
fn output(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("`{program}` cannot run: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        return Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            text.trim()
        ));
    }
    Ok(text)
}

/// What the tests need from `swaks --support`: TLS and basic AUTH (PLAIN, LOGIN).
pub fn swaks_support(support: &str) -> Result<(), String> {
    let missing: Vec<&str> = ["TLS", "Basic AUTH"]
        .into_iter()
        .filter(|f| {
            !support
                .lines()
                .any(|l| l.trim() == format!("=== {f} supported"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let reasons: Vec<&str> = support.lines().filter(|l| l.starts_with("***")).collect();
    Err(format!(
        "swaks lacks {}: {}",
        missing.join(" and "),
        reasons.join("; ")
    ))
}

/// Whether `curl --version` lists every protocol in `wanted`.
pub fn curl_protocols(version: &str, wanted: &[&str]) -> Result<(), String> {
    let listed: Vec<&str> = version
        .lines()
        .find_map(|l| l.strip_prefix("Protocols:"))
        .map(|p| p.split_whitespace().collect())
        .unwrap_or_default();
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|w| !listed.contains(w))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("curl lacks the protocols {}", missing.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swaks_without_its_tls_modules_is_not_enough() {
        // `swaks --support` of Debian's swaks installed with --no-install-recommends.
        let bare = "=== AUTH CRAM-MD5 supported\n=== Basic AUTH supported\n\
                    *** MX Routing not available: requires Net::DNS\n\
                    === Socket Transport supported\n\
                    *** TLS not available: requires Net::SSLeay\n";
        let why = swaks_support(bare).err().unwrap_or_default();
        assert!(why.contains("TLS") && why.contains("Net::SSLeay"), "{why}");
        let full = "=== Basic AUTH supported\n=== TLS supported\n";
        assert_eq!(swaks_support(full), Ok(()));
    }

    #[test]
    fn curl_protocol_list() {
        let v = "curl 7.88.1 (x86_64-pc-linux-gnu)\nProtocols: dict file http imap pop3 pop3s smtp\nFeatures: SSL\n";
        assert_eq!(curl_protocols(v, &["pop3", "pop3s"]), Ok(()));
        assert!(curl_protocols(v, &["pop3", "gopher"]).is_err());
        assert!(curl_protocols("curl 8\n", &["pop3"]).is_err());
    }
}

//! Dovecot, the peer server the POP3 and IMAP benchmarks measure Tern beside, run through
//! `xtask/scripts/dovecot.sh imap|pop3` (which installs Debian's package and configures a
//! private instance), stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::bail;

use crate::service::free_loopback_port;

/// A running private Dovecot instance.
pub struct Dovecot {
    /// The port it listens on (loopback).
    pub port: u16,
    script: PathBuf,
    protocol: &'static str,
    dir: PathBuf,
}

impl Dovecot {
    /// Starts Dovecot serving `protocol` ("imap" or "pop3") with `script` in `dir` on the
    /// first free loopback port from `port_from`, with `users` (whole addresses) sharing
    /// `password`, each maildrop a copy of `corpus_dir`.
    pub fn start(
        script: &Path,
        protocol: &'static str,
        dir: &Path,
        port_from: u16,
        users: &[String],
        password: &str,
        corpus_dir: &Path,
    ) -> anyhow::Result<Self> {
        let port = free_loopback_port(port_from)?;
        let out = Command::new("bash")
            .arg(script)
            .arg(protocol)
            .arg("start")
            .arg(dir)
            .arg(port.to_string())
            .arg(users.join(","))
            .arg(password)
            .arg(corpus_dir)
            .output()?;
        if !out.status.success() {
            bail!(
                "starting Dovecot: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        println!("    {}", String::from_utf8_lossy(&out.stdout).trim());
        Ok(Self {
            script: script.to_path_buf(),
            protocol,
            dir: dir.to_path_buf(),
            port,
        })
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(&self.script)
            .arg(self.protocol)
            .arg("stop")
            .arg(&self.dir)
            .output();
    }
}

//! Drives `clients/mail_journey.py` (Python's smtplib, imaplib and poplib), shared by the
//! delivery-trace and metrics tests.

use std::process::Command;

use anyhow::{bail, Context};

/// Runs `mail_journey.py ARGS`; its output is in the error when it fails.
pub fn python(args: &[&str]) -> anyhow::Result<()> {
    tern_testkit::clients::require(tern_testkit::clients::Client::Python)?;
    let out = Command::new("python3")
        .arg(crate::client_script("mail_journey.py"))
        .args(args)
        .output()
        .context("running python3")?;
    if !out.status.success() {
        bail!(
            "mail_journey.py {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

//! Drives `tests/clients/mail_journey.py` (Python's smtplib, imaplib and poplib), shared by
//! the delivery-trace and metrics tests.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context};

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/mail_journey.py")
}

/// Runs `mail_journey.py ARGS`; its output is in the error when it fails.
pub fn python(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("python3")
        .arg(script())
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

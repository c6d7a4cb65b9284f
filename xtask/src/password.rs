//! The development password shared by the seeded users.
//!
//! Generated once per data directory and kept next to the data (mode 0600), so every
//! `cargo xtask up` prints the password that actually works, and no fixed password ships in
//! the repository.

use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Context};

const LEN: usize = 16;
const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// The password in `path`, creating it when absent. The flag is true when it was just created.
pub fn load_or_create(path: &Path) -> anyhow::Result<(String, bool)> {
    match std::fs::read_to_string(path) {
        Ok(s) => {
            let pw = s.trim().to_string();
            if pw.is_empty() || !pw.bytes().all(|b| b.is_ascii_alphanumeric()) {
                bail!(
                    "{} does not hold a development password; delete it to generate a new one",
                    path.display()
                );
            }
            // Tighten permissions if someone loosened them.
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("chmod 600 {}", path.display()))?;
            Ok((pw, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let pw = generate()?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("creating {}", path.display()))?;
            writeln!(f, "{pw}").with_context(|| format!("writing {}", path.display()))?;
            Ok((pw, true))
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// 16 alphanumerics from the kernel's CSPRNG, by rejection sampling (no modulo bias).
fn generate() -> anyhow::Result<String> {
    let mut urandom = std::fs::File::open("/dev/urandom").context("opening /dev/urandom")?;
    let mut out = String::with_capacity(LEN);
    let limit = 256 - 256 % ALPHABET.len(); // 248: the largest multiple of 62 below 256
    let mut buf = [0u8; 64];
    while out.len() < LEN {
        urandom
            .read_exact(&mut buf)
            .context("reading /dev/urandom")?;
        for &b in &buf {
            if (b as usize) < limit && out.len() < LEN {
                out.push(ALPHABET[b as usize % ALPHABET.len()] as char);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_reused() {
        let dir = std::env::temp_dir().join(format!("xtask-pw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("dev-password");
        let _ = std::fs::remove_file(&path);
        let (a, fresh) = load_or_create(&path).unwrap();
        assert!(fresh);
        assert_eq!(a.len(), LEN);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (b, fresh) = load_or_create(&path).unwrap();
        assert!(!fresh);
        assert_eq!(a, b);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

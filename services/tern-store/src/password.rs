//! argon2id password hashing (the `argon2` crate, RustCrypto's implementation, with its
//! OWASP-recommended defaults). Hashing runs on a blocking thread: it is deliberately slow.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use crate::error::{AppError, AppResult};

/// Longest password accepted (argon2 takes any length; this bounds the work per request).
pub const MAX_PASSWORD: usize = 1024;

/// Hashes a password into a PHC string.
pub async fn hash(password: String) -> AppResult<String> {
    if password.is_empty() || password.len() > MAX_PASSWORD {
        return Err(AppError::invalid(format!(
            "a password must be 1 to {MAX_PASSWORD} octets"
        )));
    }
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| AppError::internal(format!("hashing: {e}")))
    })
    .await
    .map_err(|e| AppError::internal(e.to_string()))?
}

/// A valid hash of a random password, verified against when the user does not exist so that
/// a wrong address takes as long as a wrong password.
static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Checks `password` against `hash` (or against a dummy when `hash` is `None`).
pub async fn verify(password: String, hash: Option<String>) -> bool {
    if password.len() > MAX_PASSWORD {
        return false;
    }
    tokio::task::spawn_blocking(move || {
        let known = hash.is_some();
        let phc = hash.unwrap_or_else(|| {
            DUMMY
                .get_or_init(|| {
                    let salt = SaltString::generate(&mut OsRng);
                    Argon2::default()
                        .hash_password(b"tern-dummy-password", &salt)
                        .map(|h| h.to_string())
                        .unwrap_or_default()
                })
                .clone()
        });
        let ok = PasswordHash::new(&phc)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false);
        known && ok
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn hash_and_verify() {
        let h = super::hash("s3cret".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(super::verify("s3cret".into(), Some(h.clone())).await);
        assert!(!super::verify("wrong".into(), Some(h)).await);
        assert!(!super::verify("s3cret".into(), None).await);
        assert!(super::hash(String::new()).await.is_err());
    }
}

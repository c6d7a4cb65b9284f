//! Session tokens: what an access node must show the store to touch one account's mail.
//!
//! A successful `CheckPassword` from an `access` caller returns a token bound to the account
//! that logged in; that node's later mailbox and message calls carry it (gRPC metadata
//! [`METADATA`]), and the store admits a call only for the token's account. So a compromised
//! access node reads the mail of the users who log in through it while it is compromised,
//! not every mailbox of the cluster.
//!
//! A token is `v1.KEYID.EXPIRES.ACCOUNTHEX.MAC`: the signing key's id, the expiry in unix
//! milliseconds, the account's normalized address in hex (so no character of an address can
//! collide with the separator) and HMAC-SHA256 over everything before the MAC. The keys are
//! state-machine data ([`SessionKey`], replicated like any other record), so every store
//! node verifies what any other issued. A key signs new tokens for [`ROTATE_AFTER_MS`]; it is
//! kept until every token it can have signed has expired, then dropped by the command that
//! adds its successor. This module is pure: time comes in as an argument.

use ring::hmac;
use serde::{Deserialize, Serialize};

/// The gRPC metadata key a session token travels under (one definition, beside the client
/// that sends it).
pub use tern_proto::session::METADATA;
/// A key signs new tokens for this long; after that the next token asks for a new key.
pub const ROTATE_AFTER_MS: i64 = 12 * 3600 * 1000;
/// The longest lifetime a token may have (the `session_ttl_secs` setting's ceiling), so a
/// key can be dropped once it is older than `ROTATE_AFTER_MS + MAX_TTL_MS`.
pub const MAX_TTL_MS: i64 = 12 * 3600 * 1000;
/// The version tag every token starts with.
const VERSION: &str = "v1";

/// One signing key, as the state machine keeps it.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionKey {
    /// Tokens name their key by this id (1, 2, ... in the order keys were added).
    pub id: u64,
    /// When the key was added (unix ms, the command's time).
    pub created_ms: i64,
    /// The HMAC key.
    pub secret: [u8; 32],
}

/// Never prints the secret.
impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKey")
            .field("id", &self.id)
            .field("created_ms", &self.created_ms)
            .finish_non_exhaustive()
    }
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The normalized address of the account that logged in.
    pub account: String,
    /// When the token stops being accepted (unix ms).
    pub expires_ms: i64,
}

/// Why a token was refused. The texts name no secret and no token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not of the token's shape.
    #[error("the session token is malformed")]
    Malformed,
    /// Signed by a key this node does not know (yet, or any more).
    #[error("the session token's key {0} is unknown")]
    UnknownKey(u64),
    /// The MAC does not match.
    #[error("the session token's signature is not valid")]
    BadSignature,
    /// Past its expiry.
    #[error("the session token has expired")]
    Expired,
    /// Valid, but for another account than the call touches.
    #[error("the session token is for another account")]
    OtherAccount,
}

fn mac_key(key: &SessionKey) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, &key.secret)
}

/// A token for `account` signed with `key`, valid until `expires_ms`.
pub fn issue(key: &SessionKey, account: &str, expires_ms: i64) -> String {
    let signed = format!(
        "{VERSION}.{}.{expires_ms}.{}",
        key.id,
        hex::encode(account.as_bytes())
    );
    let tag = hmac::sign(&mac_key(key), signed.as_bytes());
    format!("{signed}.{}", hex::encode(tag.as_ref()))
}

/// Checks `token` against `keys` at `now_ms`.
pub fn verify(keys: &[SessionKey], token: &str, now_ms: i64) -> Result<Session, TokenError> {
    let (signed, mac) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
    let mut parts = signed.split('.');
    let (Some(VERSION), Some(key_id), Some(expires), Some(account), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(TokenError::Malformed);
    };
    let key_id: u64 = key_id.parse().map_err(|_| TokenError::Malformed)?;
    let expires_ms: i64 = expires.parse().map_err(|_| TokenError::Malformed)?;
    let mac = hex::decode(mac).map_err(|_| TokenError::Malformed)?;
    let key = keys
        .iter()
        .find(|k| k.id == key_id)
        .ok_or(TokenError::UnknownKey(key_id))?;
    // Constant-time comparison, inside ring.
    hmac::verify(&mac_key(key), signed.as_bytes(), &mac).map_err(|_| TokenError::BadSignature)?;
    if expires_ms <= now_ms {
        return Err(TokenError::Expired);
    }
    let account = hex::decode(account)
        .ok()
        .and_then(|a| String::from_utf8(a).ok())
        .ok_or(TokenError::Malformed)?;
    Ok(Session {
        account,
        expires_ms,
    })
}

/// The key new tokens are signed with at `now_ms`: the newest one younger than
/// [`ROTATE_AFTER_MS`], if any (none means "add a key first").
pub fn current_key(keys: &[SessionKey], now_ms: i64) -> Option<&SessionKey> {
    keys.iter()
        .filter(|k| now_ms - k.created_ms < ROTATE_AFTER_MS)
        .max_by_key(|k| k.id)
}

/// The key set after adding one with `secret` at `now_ms`: unchanged when a current key
/// exists already (two nodes that both found none add one key, not two), and without the
/// keys no unexpired token can name any more.
pub fn with_new_key(mut keys: Vec<SessionKey>, secret: [u8; 32], now_ms: i64) -> Vec<SessionKey> {
    if current_key(&keys, now_ms).is_some() {
        return keys;
    }
    let id = keys.iter().map(|k| k.id).max().unwrap_or(0) + 1;
    keys.retain(|k| now_ms - k.created_ms < ROTATE_AFTER_MS + MAX_TTL_MS);
    keys.push(SessionKey {
        id,
        created_ms: now_ms,
        secret,
    });
    keys
}

impl Session {
    /// Admits a call that touches `account` (normalized).
    pub fn admit(&self, account: &str) -> Result<(), TokenError> {
        if self.account == account {
            Ok(())
        } else {
            Err(TokenError::OtherAccount)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3600 * 1000;

    fn keys() -> Vec<SessionKey> {
        with_new_key(Vec::new(), [7; 32], 1_000)
    }

    #[test]
    fn a_token_verifies_for_its_account_until_it_expires() {
        let keys = keys();
        let key = current_key(&keys, 2_000).expect("a current key");
        let token = issue(key, "alice@example.com", 10_000);
        let s = verify(&keys, &token, 9_999).expect("valid");
        assert_eq!(s.account, "alice@example.com");
        assert_eq!(s.expires_ms, 10_000);
        assert_eq!(s.admit("alice@example.com"), Ok(()));
        assert_eq!(s.admit("bob@example.com"), Err(TokenError::OtherAccount));
        assert_eq!(verify(&keys, &token, 10_000), Err(TokenError::Expired));
    }

    #[test]
    fn any_change_to_a_token_breaks_it() {
        let keys = keys();
        let token = issue(&keys[0], "alice@example.com", 10_000);
        // Another account, a later expiry, another key id: each with the old MAC.
        let forged = [
            token.replace(&hex::encode("alice"), &hex::encode("bobby")),
            token.replace(".10000.", ".99999."),
        ];
        for f in &forged {
            assert_ne!(f, &token);
            assert_eq!(verify(&keys, f, 0), Err(TokenError::BadSignature), "{f}");
        }
        assert_eq!(
            verify(&keys, &token.replacen(".1.", ".2.", 1), 0),
            Err(TokenError::UnknownKey(2))
        );
        // Signed with a key of the same id but another secret (another cluster).
        let other = with_new_key(Vec::new(), [8; 32], 1_000);
        assert_eq!(verify(&other, &token, 0), Err(TokenError::BadSignature));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let keys = keys();
        for t in [
            "",
            "v1",
            "v1.1.10000.616c696365",
            "v2.1.10000.616c696365.00",
            "v1.x.10000.616c696365.00",
            "v1.1.10000.zz.00",
            "v1.1.10000.616c696365.zz",
            "v1.1.10000.616c696365.00.00",
        ] {
            assert!(
                matches!(
                    verify(&keys, t, 0),
                    Err(TokenError::Malformed | TokenError::BadSignature)
                ),
                "{t:?}"
            );
        }
    }

    #[test]
    fn keys_rotate_and_old_ones_last_as_long_as_their_tokens() {
        let k1 = with_new_key(Vec::new(), [1; 32], 0);
        // A second add while the first is current changes nothing.
        assert_eq!(with_new_key(k1.clone(), [2; 32], HOUR), k1);
        // After the rotation period a second key comes; the first still verifies.
        let k2 = with_new_key(k1.clone(), [2; 32], 13 * HOUR);
        assert_eq!(k2.len(), 2);
        assert_eq!(current_key(&k2, 13 * HOUR).map(|k| k.id), Some(2));
        let old = issue(&k1[0], "a@b.c", 13 * HOUR);
        assert!(verify(&k2, &old, 12 * HOUR).is_ok());
        // Once no token of the first key can be valid, the next add drops it.
        let k3 = with_new_key(k2, [3; 32], 26 * HOUR);
        assert_eq!(k3.iter().map(|k| k.id).collect::<Vec<_>>(), vec![2, 3]);
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let text = format!("{:?}", keys());
        assert!(!text.contains("7, 7"), "{text}");
    }
}

//! The header record kept beside each stored body: its header section, written when the
//! body is first stored and removed with it. A client's header-only FETCH over many
//! messages (ENVELOPE, header fields, RFC822.HEADER: what a mail client lists a folder by)
//! then reads a few hundred bytes per message instead of whole bodies, and needs no
//! parse to find where the header ends.
//!
//! The record is derived from the body by a pure function, so every node writes the same
//! one in the same apply. A body stored before records existed has none, and [`read`] cuts
//! the header out of the body then; one whose header section is larger than [`MAX_HEAD`]
//! has none either, and [`read`] says so, for the caller to read the body itself.

use crate::error::AppResult;
use crate::keys::{self, cf};
use crate::txn::Txn;

/// The largest header section kept as a record (a larger one, rare and usually hostile, is
/// cut from the body when asked for).
pub const MAX_HEAD: usize = 64 * 1024;

/// Writes `body`'s header record, if it is small enough to keep.
pub(super) fn remember(txn: &mut Txn<'_>, hash: &[u8; 32], body: &[u8]) {
    let head = tern_mail::header::section(body);
    if head.len() <= MAX_HEAD {
        txn.put_raw(cf::BLOB, keys::blob_head_key(hash), head.to_vec());
    }
}

/// Removes the header record of a body that is gone.
pub(super) fn forget(txn: &mut Txn<'_>, hash: &[u8; 32]) {
    txn.delete(cf::BLOB, keys::blob_head_key(hash));
}

/// A body's header section, as [`read`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    /// From the header record.
    Record(Vec<u8>),
    /// Cut from the body (stored before records existed), at most [`MAX_HEAD`] octets.
    FromBody(Vec<u8>),
    /// The body has no record and its header section is larger than [`MAX_HEAD`]: the
    /// caller reads the body instead (a header-only answer never carries more than that).
    TooLarge,
}

/// The header section of the body `hash`, from its record when it has one; `None` when the
/// body is gone.
pub fn read(txn: &Txn<'_>, hash: &[u8; 32]) -> AppResult<Option<Head>> {
    if let Some(head) = txn.get_raw(cf::BLOB, &keys::blob_head_key(hash))? {
        return Ok(Some(Head::Record(head)));
    }
    Ok(txn.get_raw(cf::BLOB, hash)?.map(|body| {
        let head = tern_mail::header::section(&body);
        if head.len() <= MAX_HEAD {
            Head::FromBody(head.to_vec())
        } else {
            Head::TooLarge
        }
    }))
}

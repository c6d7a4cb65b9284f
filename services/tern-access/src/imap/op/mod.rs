//! The command handlers, one module per command or command family (as Stalwart keeps them
//! in `crates/imap/src/op/`). Each adds methods to [`Session`] that check the arguments,
//! call the [`ImapBackend`], update the session's view and return the tagged outcome
//! ([`Done`]); [`Session::handle`] writes it.
//!
//! Shared here: the outcomes, the mapping of store errors to RFC 5530 response codes, and
//! the argument conversions every family uses.

use std::io;

use imap_codec::imap_types::flag::Flag;
use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::sequence::SequenceSet;

use super::backend::{ErrorKind, ImapBackend, StoreError};
use super::sequence::spans;
use super::session::Session;
use super::utf7;

pub mod append;
pub mod auth;
pub mod copy_move;
pub mod expunge;
pub mod fetch;
pub mod list;
pub mod mailbox;
pub mod misc;
pub mod quota;
pub mod search;
pub mod select;
pub mod status;
pub mod store;

/// A command's outcome for the tagged response.
pub(crate) enum Done {
    Ok(String),
    No(String),
    Bad(String),
    /// No tagged reply yet: IDLE and AUTHENTICATE's continuation answer later.
    Later,
}

pub(crate) fn ok(s: impl Into<String>) -> Result<Done, io::Error> {
    Ok(Done::Ok(s.into()))
}
pub(crate) fn no(s: impl Into<String>) -> Result<Done, io::Error> {
    Ok(Done::No(s.into()))
}
pub(crate) fn bad(s: impl Into<String>) -> Result<Done, io::Error> {
    Ok(Done::Bad(s.into()))
}

/// The tagged NO for a store error, with the RFC 5530 response code that fits.
pub(crate) fn store_no(what: &str, s: &StoreError) -> Done {
    let code = match s.kind {
        ErrorKind::NotFound => "[NONEXISTENT] ",
        ErrorKind::AlreadyExists => "[ALREADYEXISTS] ",
        ErrorKind::OverQuota => "[OVERQUOTA] ",
        ErrorKind::Rejected => "[CANNOT] ",
        ErrorKind::PermissionDenied => "[NOPERM] ",
        ErrorKind::Unavailable => "[UNAVAILABLE] ",
    };
    let msg = match s.kind {
        ErrorKind::Rejected
        | ErrorKind::NotFound
        | ErrorKind::AlreadyExists
        | ErrorKind::OverQuota => s.message.clone(),
        ErrorKind::PermissionDenied | ErrorKind::Unavailable => {
            "the store is unavailable, try again".into()
        }
    };
    Done::No(format!("{code}{what}: {msg}"))
}

/// A mailbox argument as the store's UTF-8 name, or why it is not one.
pub(crate) fn mailbox_arg(m: &Mailbox<'_>) -> Result<String, String> {
    match m {
        Mailbox::Inbox => Ok("INBOX".into()),
        Mailbox::Other(o) => utf7::decode(o.as_ref())
            .map_err(|e| format!("mailbox name is not valid modified UTF-7: {e}")),
    }
}

/// The mailbox argument `$m` as the store's UTF-8 name ([`mailbox_arg`]); when it is not
/// one, the enclosing command handler returns a tagged NO saying why. NO, not BAD: the
/// command is well-formed, only the name cannot be a mailbox's (as Dovecot answers).
macro_rules! mailbox_or_no {
    ($m:expr) => {
        match $crate::imap::op::mailbox_arg($m) {
            Ok(name) => name,
            Err(e) => return $crate::imap::op::no(format!("[CANNOT] {e}")),
        }
    };
}
pub(crate) use mailbox_or_no;

pub(crate) fn flag_name(f: &Flag<'_>) -> String {
    f.to_string()
}

impl<B: ImapBackend> Session<B> {
    /// The selected mailbox's name and whether it is read-only.
    pub(crate) fn sel_info(&self) -> (String, bool) {
        self.selected
            .as_ref()
            .map(|s| (s.name.clone(), s.view.read_only))
            .unwrap_or_default()
    }

    /// The UIDs a sequence set (of numbers or, with `uid`, of UIDs) names.
    pub(crate) fn resolve(&self, set: &SequenceSet, uid: bool) -> Result<Vec<u32>, String> {
        let Some(sel) = &self.selected else {
            return Err("no mailbox selected".into());
        };
        let sp = spans(set);
        if uid {
            Ok(sel.view.uids_for_uids(&sp))
        } else {
            sel.view.uids_for_seqs(&sp).map_err(String::from)
        }
    }
}

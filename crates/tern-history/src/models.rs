//! Sequential specifications of what Tern's clients do, for [`crate::linearizable`].

use std::collections::BTreeSet;

use crate::Model;

/// A register: writes replace the value, reads return it. The textbook case, used to test
/// the search itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct Register;

/// An operation on a [`Register`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterOp {
    /// Replace the value.
    Write(u64),
    /// Read it.
    Read,
}

impl Model for Register {
    type State = u64;
    type Input = RegisterOp;
    /// A read's value; a write answers its own value.
    type Output = u64;

    fn init(&self) -> u64 {
        0
    }

    fn step(&self, state: &u64, input: &RegisterOp, output: Option<&u64>) -> Option<u64> {
        match input {
            RegisterOp::Write(v) => Some(*v),
            RegisterOp::Read => match output {
                Some(seen) if seen != state => None,
                _ => Some(*state),
            },
        }
    }
}

/// One message's flags, as IMAP STORE, FETCH FLAGS and EXPUNGE see them (one key per
/// message: mailbox, UIDVALIDITY and UID).
#[derive(Debug, Clone, Copy, Default)]
pub struct Flags;

/// What a client did to a message's flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlagsOp {
    /// STORE +FLAGS.
    Add(BTreeSet<String>),
    /// STORE -FLAGS.
    Remove(BTreeSet<String>),
    /// STORE FLAGS.
    Replace(BTreeSet<String>),
    /// FETCH FLAGS.
    Fetch,
    /// The message was expunged (EXPUNGE, MOVE away, POP3 DELE and QUIT).
    Expunge,
}

/// What the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlagsAnswer {
    /// The flags after a STORE, or what FETCH saw.
    Flags(BTreeSet<String>),
    /// The message is gone.
    Gone,
    /// Done (EXPUNGE).
    Done,
}

impl Model for Flags {
    /// `None` once expunged.
    type State = Option<BTreeSet<String>>;
    type Input = FlagsOp;
    type Output = FlagsAnswer;

    fn init(&self) -> Self::State {
        Some(BTreeSet::new())
    }

    fn step(
        &self,
        state: &Self::State,
        input: &FlagsOp,
        output: Option<&FlagsAnswer>,
    ) -> Option<Self::State> {
        let Some(flags) = state else {
            // Gone: everything after answers Gone (an expunge again is done, nothing more).
            return match (input, output) {
                (_, None) | (_, Some(FlagsAnswer::Gone)) => Some(None),
                (FlagsOp::Expunge, Some(FlagsAnswer::Done)) => Some(None),
                _ => None,
            };
        };
        let next = match input {
            FlagsOp::Add(f) => Some(flags.union(f).cloned().collect()),
            FlagsOp::Remove(f) => Some(flags.difference(f).cloned().collect()),
            FlagsOp::Replace(f) => Some(f.clone()),
            FlagsOp::Fetch => Some(flags.clone()),
            FlagsOp::Expunge => None,
        };
        let answer = match &next {
            Some(f) => FlagsAnswer::Flags(f.clone()),
            None => FlagsAnswer::Done,
        };
        match output {
            Some(o) if *o != answer => None,
            _ => Some(next),
        }
    }
}

/// An account's mailbox names, as CREATE, DELETE and LIST see them.
#[derive(Debug, Clone, Default)]
pub struct Mailboxes {
    /// The names that exist from the start (INBOX).
    pub initial: BTreeSet<String>,
}

/// What a client did to the mailbox list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailboxOp {
    /// CREATE.
    Create(String),
    /// DELETE.
    Delete(String),
    /// LIST "" *.
    List,
}

/// What the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailboxAnswer {
    /// OK.
    Ok,
    /// NO: CREATE of a name that exists, DELETE of one that does not.
    No,
    /// LIST's names.
    Names(BTreeSet<String>),
}

impl Model for Mailboxes {
    type State = BTreeSet<String>;
    type Input = MailboxOp;
    type Output = MailboxAnswer;

    fn init(&self) -> Self::State {
        self.initial.clone()
    }

    fn step(
        &self,
        state: &Self::State,
        input: &MailboxOp,
        output: Option<&MailboxAnswer>,
    ) -> Option<Self::State> {
        let mut next = state.clone();
        let answer = match input {
            MailboxOp::Create(n) => {
                if next.insert(n.clone()) {
                    MailboxAnswer::Ok
                } else {
                    MailboxAnswer::No
                }
            }
            MailboxOp::Delete(n) => {
                if next.remove(n) {
                    MailboxAnswer::Ok
                } else {
                    MailboxAnswer::No
                }
            }
            MailboxOp::List => MailboxAnswer::Names(next.clone()),
        };
        match output {
            Some(o) if *o != answer => None,
            _ => Some(next),
        }
    }
}

//! Checks of what clients saw while a Tern cluster was under faults (issue 18).
//!
//! A fault test records every client operation with the time it was invoked, the time it
//! returned (or none: the client never learned the outcome, a time-out after the request
//! left) and what it answered. This crate says whether such a history could have come from
//! a correct system:
//!
//! - [`linearizable`]: is there an order of the operations, each taking effect at one instant
//!   between its invocation and its return, in which every answer is what a sequential
//!   [`Model`] gives? The search is Wing and Gong's, with Lowe's memoization of (operations
//!   taken, state) as Porcupine does it; histories are split by key first
//!   ([`linearizable_by_key`]), because a history is linearizable exactly when each key's
//!   is, and the search is exponential only in the operations of one key.
//! - [`models`]: the sequential specifications Tern's operations are checked against (a
//!   message's flags, a set of mailbox names).
//! - [`mail`]: the invariants that are not about order: every acknowledged message is in its
//!   mailbox exactly once with its content, and UIDs only grow within a UIDVALIDITY.
//! - [`placement`]: where a message may be after its client appended, moved and deleted it
//!   (outcomes unknown included), and whether it is found there exactly once.
//!
//! An operation whose outcome is unknown may have taken effect at any instant after its
//! invocation, or never; it is given a return time after every other operation and any
//! answer, which covers both. Pure library code without dependencies: it is tested with
//! hand-made histories, linearizable and not, in [`tests`](crate#tests).

pub mod mail;
pub mod models;
pub mod placement;
mod search;

pub use search::{linearizable, linearizable_by_key, Verdict};

/// A sequential specification: what a single copy of the state answers.
pub trait Model {
    /// The state.
    type State: Clone + Eq + std::hash::Hash;
    /// What an operation asks.
    type Input;
    /// What it answered.
    type Output;

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// Applies `input` to `state`; `None` if `output` is not what the state answers
    /// (`output` is `None` for an operation whose outcome is unknown: any answer goes).
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;
}

/// One client operation as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation<I, O> {
    /// Which client ran it (for reports).
    pub client: u32,
    /// When it was invoked (any monotonic unit).
    pub call: u64,
    /// When it returned, if it did; `None`: the outcome is unknown.
    pub ret: Option<u64>,
    /// What it asked.
    pub input: I,
    /// What it answered (`None` with `ret` `None`).
    pub output: Option<O>,
}

impl<I, O> Operation<I, O> {
    /// An operation that returned `output` at `ret`.
    pub fn done(client: u32, call: u64, ret: u64, input: I, output: O) -> Self {
        Self {
            client,
            call,
            ret: Some(ret),
            input,
            output: Some(output),
        }
    }

    /// An operation whose outcome the client never learned.
    pub fn unknown(client: u32, call: u64, input: I) -> Self {
        Self {
            client,
            call,
            ret: None,
            input,
            output: None,
        }
    }
}

#[cfg(test)]
mod tests;

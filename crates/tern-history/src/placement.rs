//! Where a message may be after what its one client did to it: APPEND into a mailbox, MOVE
//! to another, delete (STORE \Deleted and EXPUNGE over IMAP, DELE and QUIT over POP3).
//!
//! One client makes every change to its own messages, one after another, so there is no
//! order to search for: each step moves the message between places, and the set of places
//! it may be in is exact. A step the server refused leaves the set as it was; one whose
//! outcome is unknown may or may not have happened, so the set keeps both. At the end each
//! message must be found exactly once in a place of its set (or nowhere, when nowhere is in
//! the set), with the content it was appended with.

use std::collections::{BTreeMap, BTreeSet};

use crate::mail::{Found, Outcome};

/// One change a client made to a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// APPEND into this mailbox (a message is appended once; it is not resubmitted).
    Append(String),
    /// MOVE (or COPY and expunge) from one mailbox to another.
    Move { from: String, to: String },
    /// Deleted from this mailbox.
    Delete(String),
}

/// Where a message is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Place {
    /// In no mailbox (never appended, or deleted).
    Nowhere,
    /// In this mailbox.
    In(String),
}

/// A message and what its client did to it, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub message_id: String,
    /// The digest of the content appended.
    pub digest: u64,
    pub steps: Vec<(Step, Outcome)>,
}

/// A copy found at the end, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundIn {
    pub mailbox: String,
    pub message: Found,
}

/// What [`check_placement`] found wrong; all empty when nothing is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlacementReport {
    /// Must be in a mailbox, found in none.
    pub lost: Vec<String>,
    /// Found more than once.
    pub duplicated: Vec<String>,
    /// Found where it cannot be: a mailbox it never reached or was acknowledged moved out
    /// of, or anywhere after an acknowledged delete (then "nowhere" was the only place).
    pub misplaced: Vec<(String, String)>,
    /// Found with other content than was appended.
    pub corrupted: Vec<String>,
    /// Found although no client ever appended it.
    pub phantom: Vec<String>,
}

impl PlacementReport {
    pub fn is_clean(&self) -> bool {
        self.lost.is_empty()
            && self.duplicated.is_empty()
            && self.misplaced.is_empty()
            && self.corrupted.is_empty()
            && self.phantom.is_empty()
    }
}

/// Where `place` is after `step` took effect.
fn after(place: &Place, step: &Step) -> Place {
    match (step, place) {
        (Step::Append(to), Place::Nowhere) => Place::In(to.clone()),
        (Step::Move { from, to }, Place::In(at)) if at == from => Place::In(to.clone()),
        (Step::Delete(from), Place::In(at)) if at == from => Place::Nowhere,
        // A step on a message that is not where the step looks for it changes nothing.
        (_, p) => p.clone(),
    }
}

/// Every place the message may be in after its steps.
pub fn possible_places(steps: &[(Step, Outcome)]) -> BTreeSet<Place> {
    let mut places: BTreeSet<Place> = [Place::Nowhere].into();
    for (step, outcome) in steps {
        let moved: BTreeSet<Place> = places.iter().map(|p| after(p, step)).collect();
        match outcome {
            Outcome::Accepted => places = moved,
            Outcome::Refused => {}
            Outcome::Unknown => places.extend(moved),
        }
    }
    places
}

/// Compares what the clients did with what the mailboxes hold at the end.
pub fn check_placement(placed: &[Placed], found: &[FoundIn]) -> PlacementReport {
    let mut copies: BTreeMap<&str, Vec<&FoundIn>> = BTreeMap::new();
    for f in found {
        copies.entry(&f.message.message_id).or_default().push(f);
    }
    let mut report = PlacementReport::default();
    let mut known = BTreeSet::new();
    for p in placed {
        known.insert(p.message_id.as_str());
        let places = possible_places(&p.steps);
        let here = copies
            .get(p.message_id.as_str())
            .map_or(&[][..], Vec::as_slice);
        if here.is_empty() && !places.contains(&Place::Nowhere) {
            report.lost.push(p.message_id.clone());
        }
        if here.len() > 1 {
            report.duplicated.push(p.message_id.clone());
        }
        for f in here {
            if !places.contains(&Place::In(f.mailbox.clone())) {
                report
                    .misplaced
                    .push((p.message_id.clone(), f.mailbox.clone()));
            }
            if f.message.digest != p.digest {
                report.corrupted.push(p.message_id.clone());
            }
        }
    }
    for id in copies.keys() {
        if !known.contains(id) {
            report.phantom.push(id.to_string());
        }
    }
    report
}

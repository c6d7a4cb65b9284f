//! The mail invariants that are not about order: what was acknowledged is there exactly once
//! and intact, and UIDs are never reused or handed out backwards.

use std::collections::{BTreeMap, BTreeSet};

/// How one submission of a message ended, as its client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted (SMTP 250, APPEND OK).
    Accepted,
    /// Refused (a definite failure: nothing was stored).
    Refused,
    /// The client never learned (a time-out or a cut connection after the request left).
    Unknown,
}

/// A message a client submitted, once or more (a resubmission after an unknown outcome keeps
/// its Message-ID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// Its Message-ID.
    pub message_id: String,
    /// A digest of its content, to find corruption.
    pub digest: u64,
    /// How each submission ended, in order.
    pub outcomes: Vec<Outcome>,
}

/// A message found in its mailbox at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Its Message-ID.
    pub message_id: String,
    /// The digest of the content found.
    pub digest: u64,
}

/// What [`check_delivery`] found wrong; all empty when nothing is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Accepted at least once, found never.
    pub lost: Vec<String>,
    /// Found more than once although every submission got a definite answer.
    pub duplicated: Vec<String>,
    /// Found more than once after a resubmission that followed an unknown outcome: the
    /// client may have caused it; reported apart.
    pub duplicated_after_unknown: Vec<String>,
    /// Found with other content than was submitted.
    pub corrupted: Vec<String>,
    /// Found although never accepted and never of unknown outcome (every submission was
    /// refused), or never submitted at all.
    pub phantom: Vec<String>,
}

impl DeliveryReport {
    /// Nothing lost, duplicated, corrupted or made up (duplicates after unknown outcomes
    /// are allowed).
    pub fn is_clean(&self) -> bool {
        self.lost.is_empty()
            && self.duplicated.is_empty()
            && self.corrupted.is_empty()
            && self.phantom.is_empty()
    }
}

/// Compares what was submitted with what is in the mailboxes.
pub fn check_delivery(submitted: &[Submitted], found: &[Found]) -> DeliveryReport {
    let mut copies: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for f in found {
        copies.entry(&f.message_id).or_default().push(f.digest);
    }
    let mut report = DeliveryReport::default();
    let mut known = BTreeSet::new();
    for s in submitted {
        known.insert(s.message_id.as_str());
        let here = copies
            .get(s.message_id.as_str())
            .map_or(&[][..], Vec::as_slice);
        let accepted = s.outcomes.contains(&Outcome::Accepted);
        let unknown = s.outcomes.contains(&Outcome::Unknown);
        if here.is_empty() {
            if accepted {
                report.lost.push(s.message_id.clone());
            }
            continue;
        }
        if !accepted && !unknown {
            report.phantom.push(s.message_id.clone());
        }
        if here.len() > 1 {
            if unknown {
                report.duplicated_after_unknown.push(s.message_id.clone());
            } else {
                report.duplicated.push(s.message_id.clone());
            }
        }
        if here.iter().any(|d| *d != s.digest) {
            report.corrupted.push(s.message_id.clone());
        }
    }
    for id in copies.keys() {
        if !known.contains(id) {
            report.phantom.push(id.to_string());
        }
    }
    report
}

/// One UID a client learned: from an APPEND's APPENDUID, or from a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UidSeen {
    /// The mailbox.
    pub mailbox: String,
    /// Its UIDVALIDITY then.
    pub uid_validity: u32,
    /// The UID.
    pub uid: u32,
    /// The message it named.
    pub message_id: String,
}

/// UIDs named two different messages (a UID reused within one UIDVALIDITY).
pub fn reused_uids(seen: &[UidSeen]) -> Vec<UidSeen> {
    let mut first: BTreeMap<(&str, u32, u32), &str> = BTreeMap::new();
    let mut reused = Vec::new();
    for s in seen {
        let key = (s.mailbox.as_str(), s.uid_validity, s.uid);
        match first.get(&key) {
            Some(m) if *m != s.message_id => reused.push(s.clone()),
            Some(_) => {}
            None => {
                first.insert(key, &s.message_id);
            }
        }
    }
    reused
}

/// An APPEND that was answered with its UID (APPENDUID), with its times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The mailbox.
    pub mailbox: String,
    /// When it was invoked and when it returned.
    pub call: u64,
    /// When it returned.
    pub ret: u64,
    /// The UIDVALIDITY and UID it was given.
    pub uid_validity: u32,
    /// The UID.
    pub uid: u32,
}

/// Pairs of appends to the same mailbox and UIDVALIDITY where the one that returned before
/// the other was invoked got the larger UID: UIDs must grow in the order appends take
/// effect.
pub fn uids_out_of_order(appends: &[Appended]) -> Vec<(Appended, Appended)> {
    let mut by_box: BTreeMap<(&str, u32), Vec<&Appended>> = BTreeMap::new();
    for a in appends {
        by_box
            .entry((a.mailbox.as_str(), a.uid_validity))
            .or_default()
            .push(a);
    }
    let mut wrong = Vec::new();
    for list in by_box.values() {
        for a in list {
            for b in list {
                if a.ret < b.call && a.uid >= b.uid {
                    wrong.push(((*a).clone(), (*b).clone()));
                }
            }
        }
    }
    wrong
}

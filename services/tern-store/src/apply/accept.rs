//! Delivery at acceptance: the recipients of a newly accepted message that are local users
//! addressed directly are delivered into their INBOX inside the same command that accepts
//! it, so the common message to local users costs one replicated write instead of four
//! (enqueue, lease, deliver, complete) and its body crosses to the store once.
//!
//! Only what a deterministic apply can decide is done here: a recipient that is exactly a
//! user's address. Aliases and lists (expansion, duplicate elimination, the backscatter
//! rule), remote and unknown recipients, and a delivery that fails (over quota) stay in the
//! queue entry for a worker, whose rules are unchanged. A recipient delivered here carries
//! the same delivery id a worker would use (`<queue id>/<address>`), so a worker that
//! later tries it finds it done.

use crate::command::Target;
use crate::error::{AppResult, ErrorKind};
use crate::keys::{self, cf};
use crate::model::{QueueEntryRec, QueueEventRec, RcptState, UserRec};
use crate::txn::Txn;

use super::message;

/// Delivers the pending recipients of `e` that are local users into their INBOX; marks
/// them delivered in `e` and returns the events that say so (empty when none was).
pub fn deliver_local(
    txn: &mut Txn<'_>,
    e: &mut QueueEntryRec,
    body: &[u8],
) -> AppResult<Vec<QueueEventRec>> {
    let mut events = Vec::new();
    let internal_date = e.created_at / 1000;
    for r in e.recipients.iter_mut() {
        if r.state != RcptState::Pending {
            continue;
        }
        let Some(user) = txn.get::<UserRec>(cf::DIR, &keys::user_key(&r.address))? else {
            continue;
        };
        if !user.address.eq_ignore_ascii_case(&r.address) {
            continue;
        }
        let target = Target {
            account: user.address.clone(),
            mailbox: String::new(),
            delivery_id: format!("{}/{}", e.id, r.address.to_ascii_lowercase()),
            flags: Vec::new(),
        };
        let savepoint = txn.savepoint();
        // Traced at the acceptance time, after the "received" and "queued" steps.
        let at = Some(e.created_at);
        match message::deliver_one(txn, &target, &e.blob, body, internal_date, at) {
            Ok(done) => {
                r.state = RcptState::Delivered;
                r.attempts += 1;
                r.last_reply = format!("250 2.0.0 delivered to INBOX (uid {})", done.uid);
                events.push(QueueEventRec {
                    at: e.created_at,
                    kind: "delivered".into(),
                    detail: format!("{}: {} at acceptance", r.address, r.last_reply),
                });
            }
            // A storage failure fails the command (and the apply, as everywhere).
            Err(e) if e.kind == ErrorKind::Internal => return Err(e),
            // Over quota, or no INBOX: the worker's rules (defer, bounce) decide.
            Err(_) => txn.rollback_to(savepoint),
        }
    }
    Ok(events)
}

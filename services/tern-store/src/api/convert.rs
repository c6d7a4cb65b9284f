//! Conversions between stored records and protobuf messages.

use tern_proto::store::v1 as pb;

use crate::model::{
    ChangeKind, ChangeRec, MailboxRec, MessageRec, QueueEntryRec, QueueEventRec, QueueRcpt,
    RcptState,
};

/// A mailbox as the API shows it.
pub fn mailbox(m: &MailboxRec) -> pb::Mailbox {
    pb::Mailbox {
        id: m.id,
        name: m.name.clone(),
        uid_validity: m.uid_validity,
        uid_next: m.uid_next,
        highest_modseq: m.highest_modseq,
        messages: m.messages,
        unseen: m.unseen,
        subscribed: m.subscribed,
        special_use: m.special_use.clone(),
        size_bytes: m.size,
        deleted: m.deleted as u64,
        // Kept beside the record (apply::recent); the callers that show it fill these in.
        recent: 0,
        recent_uid: 0,
    }
}

/// A message record as the API shows it.
pub fn message(m: &MessageRec) -> pb::MessageRecord {
    pb::MessageRecord {
        uid: m.uid,
        flags: m.flags.clone(),
        internal_date: m.internal_date,
        size: m.size,
        modseq: m.modseq,
        wire_size: m.wire_size,
        blob: hex::encode(m.blob),
    }
}

/// A change-feed record as the API shows it.
pub fn change(c: &ChangeRec) -> pb::Change {
    use pb::change::Kind;
    let kind = match c.kind {
        ChangeKind::MessageAdded => Kind::MessageAdded,
        ChangeKind::FlagsChanged => Kind::FlagsChanged,
        ChangeKind::Expunged => Kind::Expunged,
        ChangeKind::MailboxCreated => Kind::MailboxCreated,
        ChangeKind::MailboxRenamed => Kind::MailboxRenamed,
        ChangeKind::MailboxDeleted => Kind::MailboxDeleted,
        ChangeKind::SubscriptionChanged => Kind::SubscriptionChanged,
    };
    pb::Change {
        modseq: c.modseq,
        mailbox_id: c.mailbox,
        mailbox: c.mailbox_name.clone(),
        kind: kind as i32,
        uids: c.uids.clone(),
        old_name: c.old_name.clone(),
        flag_sets: c
            .flags
            .iter()
            .map(|f| pb::FlagSet { flags: f.clone() })
            .collect(),
    }
}

/// A queue recipient from the API.
pub fn rcpt_from_pb(r: &pb::QueueRecipient) -> QueueRcpt {
    use pb::queue_recipient::State;
    QueueRcpt {
        address: r.address.clone(),
        state: match r.state() {
            State::Pending => RcptState::Pending,
            State::Delivered => RcptState::Delivered,
            State::Deferred => RcptState::Deferred,
            State::Failed => RcptState::Failed,
        },
        last_reply: r.last_reply.clone(),
        attempts: r.attempts,
        orcpt: r.orcpt.clone(),
        notify: r.notify.clone(),
    }
}

/// A queue recipient for the API.
pub fn rcpt(r: &QueueRcpt) -> pb::QueueRecipient {
    use pb::queue_recipient::State;
    pb::QueueRecipient {
        address: r.address.clone(),
        state: match r.state {
            RcptState::Pending => State::Pending,
            RcptState::Delivered => State::Delivered,
            RcptState::Deferred => State::Deferred,
            RcptState::Failed => State::Failed,
        } as i32,
        last_reply: r.last_reply.clone(),
        attempts: r.attempts,
        orcpt: r.orcpt.clone(),
        notify: r.notify.clone(),
    }
}

/// A queue event from the API.
pub fn event_from_pb(e: &pb::QueueEvent) -> QueueEventRec {
    QueueEventRec {
        at: e.at,
        kind: e.kind.clone(),
        detail: e.detail.clone(),
    }
}

/// A queue entry for the API.
pub fn entry(e: &QueueEntryRec) -> pb::QueueEntry {
    pb::QueueEntry {
        id: e.id.clone(),
        sender: e.sender.clone(),
        recipients: e.recipients.iter().map(rcpt).collect(),
        blob: hex::encode(e.blob),
        size: e.size,
        created_at: e.created_at,
        next_attempt_at: e.next_attempt_at,
        attempts: e.attempts,
        lease_owner: e.lease_owner.clone(),
        lease_expires_at: e.lease_expires_at,
        trace_id: e.trace_id.clone(),
        mail_params: e.mail_params.clone(),
        received_from: e.received_from.clone(),
        events: e
            .events
            .iter()
            .map(|ev| pb::QueueEvent {
                at: ev.at,
                kind: ev.kind.clone(),
                detail: ev.detail.clone(),
            })
            .collect(),
        message_id: e.message_id.clone(),
        completed: false,
    }
}

/// A recorded timeline as the API returns it.
pub fn trace(t: &crate::model::TraceRec) -> pb::Trace {
    pb::Trace {
        trace_id: t.trace_id.clone(),
        message_ids: t.message_ids.clone(),
        queue_ids: t.queue_ids.clone(),
        created_at: t.created_at,
        events: t
            .events
            .iter()
            .map(|e| pb::TraceEvent {
                at: e.at,
                service: e.service.clone(),
                kind: e.kind.clone(),
                detail: e.detail.clone(),
            })
            .collect(),
    }
}

/// A blob named in a request: 64 hex digits of its SHA-256.
pub fn blob_hash(hex_text: &str) -> Result<[u8; 32], tonic::Status> {
    hex::decode(hex_text)
        .ok()
        .and_then(|h| <[u8; 32]>::try_from(h).ok())
        .ok_or_else(|| tonic::Status::invalid_argument("blob must be 64 hex digits"))
}
